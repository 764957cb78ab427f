"""The README's offline-testing guide works as written: each Python block of its section
"Test your code offline with our cassettes" is run as the test module it claims to be."""

from __future__ import annotations

import re
import socket
import types
from pathlib import Path

import pytest

README = Path(__file__).resolve().parents[2] / "README.md"
SECTION = "## Test your code offline with our cassettes"


def guide_blocks() -> list[str]:
    text = README.read_text()
    start = text.index(SECTION)
    end = text.index("\n## ", start + len(SECTION))
    return re.findall(r"```python\n(.*?)```", text[start:end], re.DOTALL)


def test_the_guide_has_its_examples() -> None:
    assert len(guide_blocks()) >= 2


@pytest.mark.parametrize("block", range(len(guide_blocks())))
def test_each_readme_example_passes_offline(block: int, monkeypatch: pytest.MonkeyPatch) -> None:
    def refuse(*args: object, **kwargs: object) -> None:
        raise AssertionError(f"a README example tried to use the network: {args!r}")

    monkeypatch.setattr(socket, "create_connection", refuse)
    monkeypatch.setattr(socket.socket, "connect", refuse)
    module = types.ModuleType(f"readme_example_{block}")
    exec(compile(guide_blocks()[block], f"README.md example {block}", "exec"), module.__dict__)  # noqa: S102
    tests = [f for name, f in vars(module).items() if name.startswith("test_") and callable(f)]
    assert tests, "an example with no test in it"
    for test in tests:
        test()
