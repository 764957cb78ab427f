"""`make docs`: the pages build as a site with MkDocs, offline and strict (a link to a page
or heading that does not exist fails the build), and the site holds every page."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from tests.docs.pages import ROOT


def test_the_docs_build_as_a_site(tmp_path: Path) -> None:
    site = tmp_path / "site"
    done = subprocess.run(
        [sys.executable, "-m", "mkdocs", "build", "--strict", "--site-dir", str(site)],
        cwd=ROOT, capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    pages = sorted(p.stem for p in (ROOT / "docs").glob("*.md"))
    built = [
        name for name in pages if (site / ("" if name == "index" else name) / "index.html").exists()
    ]
    assert built == pages


def test_the_site_lists_every_page() -> None:
    config = (ROOT / "mkdocs.yml").read_text()
    assert [p.name for p in sorted((ROOT / "docs").glob("*.md")) if p.name not in config] == []
