"""The harness guide (docs/testing.md) (mock, server, gateway), run as another team's test files in
this project's venv; `test_outside_team.py` runs them again in a fresh venv from the wheel."""

from __future__ import annotations

import sys
from pathlib import Path

from tests.contract.outside import lay_out_harness_tests, run_their_tests


def test_the_harness_guide_examples_pass(tmp_path: Path) -> None:
    tests, expected = lay_out_harness_tests(tmp_path / "their-repo")
    assert expected >= 6, "the guide lost its examples"
    done = run_their_tests(sys.executable, tests, cwd=tmp_path / "somewhere-else")
    printed = done.stdout + done.stderr
    assert done.returncode == 0, printed
    assert f"{expected} passed in" in done.stdout, printed
