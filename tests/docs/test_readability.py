"""The pages read in short pieces, and their commands say where each value comes from:
no paragraph or bullet over `MAX_WORDS`; every `$VARIABLE` a command uses is set on the
page above it (`NAME=value`) or named in the prose or a comment above it; the cache word
"JOIN" is explained where each page first uses it."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from tests.docs.pages import ROOT, blocks, pages, prose

MAX_WORDS = 150
VARIABLE = re.compile(r"\$\{?([A-Za-z_][A-Za-z0-9_]*)")
#: Set by every shell, never by a page.
SHELL_VARIABLES = {"PWD", "HOME", "PATH", "USER"}
#: How a page says what JOIN means: a request that joins a run still in progress.
JOIN_EXPLAINED = re.compile(r"in progress|in flight|joins|already running", re.IGNORECASE)

PAGES = pages()


def _id(path: Path) -> str:
    return path.relative_to(ROOT).as_posix()


@pytest.mark.parametrize("page", PAGES, ids=_id)
def test_no_paragraph_or_bullet_is_over_the_limit(page: Path) -> None:
    long = [str(piece) for piece in prose(page) if piece.words > MAX_WORDS]
    assert long == [], f"split these (at most {MAX_WORDS} words each)"


def _undefined(page: Path) -> list[str]:
    """`$NAME`s a command uses that nothing above it on the page sets or names."""
    text = page.read_text()
    missing = []
    for block in blocks(page):
        if block.language != "sh":
            continue
        above = text[: text.index(block.text)]
        for number, line in enumerate(block.text.splitlines()):
            code = line.split("#", 1)[0] if not line.lstrip().startswith("#") else ""
            before = above + "\n".join(block.text.splitlines()[:number])
            for name in VARIABLE.findall(code):
                set_above = re.search(rf"^\s*(?:export\s+)?{name}=", before, re.M)
                named_above = re.search(rf"`\$?{name}`|#.*\b{name}\b", before)
                set_here = re.match(rf"\s*(?:\w+=\S*\s+)*{name}=", code)
                if not (name in SHELL_VARIABLES or set_above or named_above or set_here):
                    missing.append(f"{block}: ${name} in {line.strip()[:60]!r}")
    return missing


@pytest.mark.parametrize("page", PAGES, ids=_id)
def test_every_variable_a_command_uses_is_set_or_explained_above_it(page: Path) -> None:
    assert _undefined(page) == []


def test_an_unexplained_variable_is_reported() -> None:
    # The check itself: a command using a variable nothing above it names fails it.
    probe = ROOT / "docs" / "_probe_readability.md"
    probe.write_text('# Probe\n\n```sh\nA=1\necho "$A $LISTEN"\n```\n')
    try:
        assert _undefined(probe) == [
            "docs/_probe_readability.md:3 (sh, 'Probe'): $LISTEN in 'echo \"$A $LISTEN\"'"
        ]
    finally:
        probe.unlink()


def _says_join(page: Path) -> bool:
    return re.search(r"\bJOINs?\b", page.read_text()) is not None


@pytest.mark.parametrize("page", [p for p in PAGES if _says_join(p)], ids=_id)
def test_join_is_explained_where_a_page_first_uses_it(page: Path) -> None:
    lines = page.read_text().splitlines()
    first = next(n for n, line in enumerate(lines) if re.search(r"\bJOINs?\b", line))
    around = "\n".join(lines[max(first - 2, 0) : first + 3])
    piece = next((p.text for p in prose(page) if re.search(r"\bJOINs?\b", p.text)), "")
    assert JOIN_EXPLAINED.search(around) or JOIN_EXPLAINED.search(piece), (
        f"{_id(page)}:{first + 1}: say what JOIN means here (a request sharing an identical "
        "run still in progress)"
    )
