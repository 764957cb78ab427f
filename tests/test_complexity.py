"""No function in the packages is grade D or worse by radon's cyclomatic complexity (21+):
such a function is split into named steps, as the layout issue asks."""

from __future__ import annotations

from pathlib import Path

from radon.complexity import cc_rank, cc_visit

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("client", "fakeserver", "proxy", "workflows")


def test_no_function_is_grade_d_or_worse() -> None:
    found = []
    for package in PACKAGES:
        for path in sorted((ROOT / package).rglob("*.py")):
            for block in cc_visit(path.read_text()):
                if cc_rank(block.complexity) >= "D":
                    where = f"{path.relative_to(ROOT)}:{block.lineno} {block.name}"
                    found.append(f"{where} ({cc_rank(block.complexity)} {block.complexity})")
    assert found == [], "split these into named steps:\n" + "\n".join(found)
