"""The offline-testing guide (docs/cassettes.md) works as written: each Python block of its section
"Test your code offline with our cassettes" is saved as a test file of another team's
repository, with the cassettes vendored beside it as the guide says, and run by pytest
under `-W error` from a different working directory (here in this project's venv;
`test_outside_team` does the same in a fresh venv with only the `testing` extra)."""

from __future__ import annotations

import sys
from pathlib import Path

from tests.contract.outside import guide_blocks, lay_out_their_tests, run_their_tests


def test_the_guide_has_its_examples() -> None:
    blocks = guide_blocks()
    assert len(blocks) >= 2
    assert all("def test_" in block for block in blocks), "an example with no test in it"


def test_the_readme_examples_pass_offline_under_w_error_from_anywhere(tmp_path: Path) -> None:
    blocks = guide_blocks()
    tests = lay_out_their_tests(
        tmp_path / "their-repo",
        {f"test_guide_example_{n}.py": block for n, block in enumerate(blocks)},
    )
    done = run_their_tests(sys.executable, tests, cwd=tmp_path / "somewhere-else")
    printed = done.stdout + done.stderr
    assert done.returncode == 0, printed
    expected = sum(block.count("\ndef test_") + block.startswith("def test_") for block in blocks)
    assert f"{expected} passed in" in done.stdout, printed
    assert "warning" not in printed.lower(), printed
