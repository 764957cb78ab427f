"""Another team's repository, laid out as the README's offline-testing guide tells them to:
their test files, the cassettes they vendored beside them, and pytest run with `-W error`
from some other directory. `test_readme_examples` runs it in this project's venv,
`test_outside_team` in a fresh venv that has only the package and its `testing` extra."""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

from client.cassettes import cassette_dir

__all__ = [
    "README",
    "SECTION",
    "guide_blocks",
    "lay_out_their_tests",
    "run_their_tests",
]

README = Path(__file__).resolve().parents[2] / "README.md"
SECTION = "## Test your code offline with our cassettes"
#: The cassettes the guide's examples use, and so the only ones vendored.
VENDORED = ("success.yaml", "gateway_webhook.yaml")
#: Their conftest: any connection attempt fails the test that made it, so "offline" is
#: checked, not assumed (vcrpy in record mode `none` should never get that far).
NETWORK_GUARD = """
import socket

import pytest


@pytest.fixture(autouse=True)
def _offline(monkeypatch: pytest.MonkeyPatch) -> None:
    def refuse(*args: object, **kwargs: object) -> None:
        raise AssertionError(f"a test tried to use the network: {args!r}")

    monkeypatch.setattr(socket, "create_connection", refuse)
    monkeypatch.setattr(socket.socket, "connect", refuse)
"""


def guide_blocks() -> list[str]:
    """The Python blocks of the README's offline-testing section, in order."""
    text = README.read_text()
    start = text.index(SECTION)
    end = text.index("\n## ", start + len(SECTION))
    return re.findall(r"```python\n(.*?)```", text[start:end], re.DOTALL)


def lay_out_their_tests(root: Path, files: dict[str, str]) -> Path:
    """`root/tests/` with `files` (name: source), a network guard, and the vendored YAML in
    `root/tests/cassettes/`; returns the tests folder."""
    tests = root / "tests"
    (tests / "cassettes").mkdir(parents=True)
    for name, source in files.items():
        (tests / name).write_text(source)
    (tests / "conftest.py").write_text(NETWORK_GUARD)
    for name in VENDORED:
        shutil.copy(cassette_dir() / name, tests / "cassettes" / name)
    return tests


def run_their_tests(python: Path | str, tests: Path, cwd: Path) -> subprocess.CompletedProcess[str]:
    """`python -m pytest -W error` on `tests`, started from `cwd` (not the tests' folder,
    not this repository), with no inherited PYTHONPATH to find this checkout by."""
    cwd.mkdir(parents=True, exist_ok=True)
    env = {"PATH": "/usr/bin:/bin", "HOME": str(cwd), "PYTHONDONTWRITEBYTECODE": "1"}
    return subprocess.run(
        [str(python), "-m", "pytest", "-W", "error", "-p", "no:cacheprovider", "-q", str(tests)],
        cwd=cwd, env=env, capture_output=True, text=True, timeout=120,
    )  # fmt: skip
