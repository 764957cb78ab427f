"""Another team's repository, laid out as the docs' offline-testing guides tell them to:
their test files, the cassettes they vendored beside them, and pytest run with `-W error`
from some other directory. `test_guide_examples` runs it in this project's venv,
`test_outside_team` in a fresh venv that has only the package and its `testing` extra."""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

from client.cassettes import cassette_dir

__all__ = [
    "GUIDE",
    "HARNESS_GUIDE",
    "HARNESS_SECTION",
    "SECTION",
    "guide_blocks",
    "lay_out_harness_tests",
    "lay_out_their_tests",
    "left_running",
    "run_their_tests",
]

DOCS = Path(__file__).resolve().parents[2] / "docs"
GUIDE = DOCS / "cassettes.md"
SECTION = "## Test your code offline with our cassettes"
HARNESS_GUIDE = DOCS / "testing.md"
HARNESS_SECTION = "# Testing your own code offline: mock, server or cassettes"
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
#: The harness guide's conftest: the fixtures start loopback servers, so only connections
#: off this machine fail the test (a Segmind call the mock missed would be one).
LOOPBACK_GUARD = """
import socket

import pytest

LOOPBACK = ("127.0.0.1", "::1", "localhost")


@pytest.fixture(autouse=True)
def _offline(monkeypatch: pytest.MonkeyPatch) -> None:
    create_connection, connect = socket.create_connection, socket.socket.connect

    def guarded_create(address, *args, **kwargs):
        if address[0] not in LOOPBACK:
            raise AssertionError(f"a test tried to leave this machine: {address!r}")
        return create_connection(address, *args, **kwargs)

    def guarded_connect(sock, address):
        if isinstance(address, tuple) and address[0] not in LOOPBACK:
            raise AssertionError(f"a test tried to leave this machine: {address!r}")
        return connect(sock, address)

    monkeypatch.setattr(socket, "create_connection", guarded_create)
    monkeypatch.setattr(socket.socket, "connect", guarded_connect)
"""


def guide_blocks(guide: Path = GUIDE, section: str = SECTION) -> list[str]:
    """The Python blocks of one of the docs' offline-testing sections, in order: from its
    heading to the next heading of its level or higher (or the end of the file)."""
    text = guide.read_text()
    start = text.index(section)
    level = section.split(" ", 1)[0]
    ends = [text.find(f"\n{'#' * n} ", start + len(section)) for n in range(1, len(level) + 1)]
    end = min((at for at in ends if at >= 0), default=len(text))
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


def lay_out_harness_tests(root: Path) -> tuple[Path, int]:
    """`root/tests/` with the harness guide's blocks as test files and a loopback-only
    guard (the product page's script comes from the installed package); returns the folder
    and the tests' count."""
    tests = root / "tests"
    tests.mkdir(parents=True)
    blocks = guide_blocks(HARNESS_GUIDE, HARNESS_SECTION)
    for n, block in enumerate(blocks):
        (tests / f"test_harness_example_{n}.py").write_text(block)
    (tests / "conftest.py").write_text(LOOPBACK_GUARD)
    return tests, sum(block.count("\ndef test_") for block in blocks)


def run_their_tests(python: Path | str, tests: Path, cwd: Path) -> subprocess.CompletedProcess[str]:
    """`python -m pytest -W error` on `tests`, started from `cwd` (not the tests' folder,
    not this repository), with no inherited PYTHONPATH to find this checkout by."""
    cwd.mkdir(parents=True, exist_ok=True)
    env = {"PATH": "/usr/bin:/bin", "HOME": str(cwd), "PYTHONDONTWRITEBYTECODE": "1"}
    return subprocess.run(
        [str(python), "-m", "pytest", "-W", "error", "-p", "no:cacheprovider", "-q", str(tests)],
        cwd=cwd, env=env, capture_output=True, text=True, timeout=120,
    )  # fmt: skip


def left_running(python: Path | str) -> list[str]:
    """Command lines of live processes run by `python` (their venv's interpreter): after
    their test run ends, a server it started and never stopped would be one of these."""
    found = []
    for entry in Path("/proc").iterdir():
        try:
            argv = (entry / "cmdline").read_bytes().split(b"\0")
        except OSError:
            continue
        if entry.name.isdigit() and argv and argv[0].decode(errors="replace") == str(python):
            found.append(" ".join(a.decode(errors="replace") for a in argv))
    return found
