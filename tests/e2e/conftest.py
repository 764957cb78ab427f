from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.receiver import Receiver


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    """A team's webhook receiver, listening (`tests/receiver.py`), stopped after."""
    made = Receiver()
    made.start()
    yield made
    made.stop()
