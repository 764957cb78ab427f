import doctest

import pytest

from client import _models, _retry


@pytest.mark.parametrize("module", [_models, _retry])
def test_the_worked_examples_in_docstrings_hold(module: object) -> None:
    result = doctest.testmod(module, raise_on_error=False)  # type: ignore[arg-type]
    assert result.attempted > 0
    assert result.failed == 0
