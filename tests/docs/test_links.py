"""Every link in the README and `docs/` resolves: a file of the repository, and a heading in
it where the link names one. Links off the repository are refused: the docs are read
offline, and a page elsewhere can move."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.docs.pages import ROOT, anchors, links, pages


def _broken(page: Path, root: Path = ROOT) -> list[str]:
    broken = []
    for target in links(page):
        if "://" in target or target.startswith("mailto:"):
            broken.append(f"{target}: off the repository")
            continue
        path, _, anchor = target.partition("#")
        file = (page.parent / path).resolve() if path else page
        if not file.is_relative_to(root) or not file.exists():
            broken.append(f"{target}: no such file")
        elif anchor and (file.suffix != ".md" or anchor not in anchors(file)):
            broken.append(f"{target}: no heading #{anchor} in {file.name}")
    return broken


@pytest.mark.parametrize("page", pages(), ids=lambda p: p.relative_to(ROOT).as_posix())
def test_every_link_resolves(page: Path) -> None:
    assert _broken(page) == []


def test_the_readme_links_every_page_of_the_docs() -> None:
    linked = {(ROOT / t.partition("#")[0]).resolve() for t in links(ROOT / "README.md")}
    assert [p.name for p in pages()[1:] if p.resolve() not in linked] == []


def test_the_readme_fits_on_two_screens() -> None:
    # Two screens of a laptop terminal: about 50 lines each.
    assert len((ROOT / "README.md").read_text().splitlines()) <= 100


def test_a_broken_link_is_found(tmp_path: Path) -> None:
    # The checker itself: a missing file and a missing heading are both reported.
    probe = tmp_path / "probe.md"
    probe.write_text(
        "# Title\n\n[a](nowhere.md) [b](#no-such-heading) [c](#title) [d](https://x.example)\n"
        "[e](../outside.md) `[f](in-code.md)`\n"
    )
    (tmp_path.parent / "outside.md").write_text("# Outside\n")
    assert _broken(probe, root=tmp_path) == [
        "nowhere.md: no such file",
        "#no-such-heading: no heading #no-such-heading in probe.md",
        "https://x.example: off the repository",
        "../outside.md: no such file",
    ]
