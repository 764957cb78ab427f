"""The documentation as the tests read it: the README and `docs/*.md`, their fenced blocks
(with the heading each sits under) and their links."""

from __future__ import annotations

import re
import shlex
from dataclasses import dataclass
from pathlib import Path

__all__ = ["ROOT", "Block", "Prose", "anchors", "blocks", "commands", "links", "pages", "prose"]

ROOT = Path(__file__).resolve().parents[2]
FENCE = re.compile(r"^```(\S*)\s*$")
HEADING = re.compile(r"^(#{1,6}) (.+?)\s*$")
LINK = re.compile(r"(?<!!)\[[^\]]+\]\(([^)\s]+)\)|!\[[^\]]*\]\(([^)\s]+)\)")


@dataclass(frozen=True)
class Block:
    page: str  # relative to the repository: "README.md", "docs/gateway.md"
    line: int  # of the opening fence, 1-based
    language: str
    heading: str  # the nearest heading above it, without its #s
    text: str

    def __str__(self) -> str:
        return f"{self.page}:{self.line} ({self.language or 'no language'}, {self.heading!r})"


def pages() -> list[Path]:
    return [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]


def _relative(path: Path) -> str:
    return path.relative_to(ROOT).as_posix()


def blocks(path: Path) -> list[Block]:
    found: list[Block] = []
    heading, language, start, lines = "", None, 0, []  # type: ignore[var-annotated]
    for number, line in enumerate(path.read_text().splitlines(), 1):
        fence = FENCE.match(line)
        if language is None:
            if fence:
                language, start, lines = fence[1], number, []
            elif title := HEADING.match(line):
                heading = title[2]
        elif fence and not fence[1]:
            found.append(Block(_relative(path), start, language, heading, "\n".join(lines)))
            language = None
        else:
            lines.append(line)
    return found


def commands(block: Block) -> list[str]:
    """The shell commands of a block, as a shell reads them: continuation lines joined, a
    quoted string kept whole across lines, comment lines dropped."""
    found: list[str] = []
    pending = ""
    for line in block.text.replace("\\\n", " ").splitlines():
        if not pending and (not line.strip() or line.lstrip().startswith("#")):
            continue
        pending = f"{pending}\n{line}" if pending else line.strip()
        try:
            shlex.split(pending, comments=True)
        except ValueError:  # a quote still open: the command goes on
            continue
        found.append(pending)
        pending = ""
    assert not pending, f"{block}: a quote is never closed"
    return found


def _slug(title: str) -> str:
    """GitHub's anchor for a heading: lower case, punctuation but - and _ dropped."""
    text = re.sub(r"[^\w\- ]", "", title.lower())
    return text.replace(" ", "-")


def anchors(path: Path) -> set[str]:
    outside = True
    found: set[str] = set()
    for line in path.read_text().splitlines():
        if FENCE.match(line):
            outside = not outside
        elif outside and (title := HEADING.match(line)):
            found.add(_slug(title[2]))
    return found


def links(path: Path) -> list[str]:
    """Every link target outside code blocks and code spans."""
    outside, found = True, []
    for line in path.read_text().splitlines():
        if FENCE.match(line):
            outside = not outside
        elif outside:
            prose = re.sub(r"`[^`]*`", "", line)
            found += [m[1] or m[2] for m in LINK.finditer(prose)]
    return found


BULLET = re.compile(r"^\s*(?:[-*+]|\d+[.)])\s+")


@dataclass(frozen=True)
class Prose:
    page: str
    line: int  # where the paragraph or bullet starts, 1-based
    kind: str  # "paragraph" or "bullet"
    text: str

    @property
    def words(self) -> int:
        return len(self.text.split())

    def __str__(self) -> str:
        start = " ".join(self.text.split()[:8])
        return f"{self.page}:{self.line} ({self.kind}, {self.words} words: {start}...)"


def prose(path: Path) -> list[Prose]:
    """The paragraphs and bullets of a page, outside code blocks, headings and tables: a
    bullet runs until the next bullet, a blank line or another block; a paragraph until a
    blank line or a block."""
    found: list[Prose] = []
    outside, kind, start, lines = True, "", 0, []  # type: ignore[var-annotated]

    def close() -> None:
        nonlocal kind, lines
        if lines:
            found.append(Prose(_relative(path), start, kind, " ".join(lines)))
        kind, lines = "", []

    for number, line in enumerate(path.read_text().splitlines(), 1):
        if FENCE.match(line):
            close()
            outside = not outside
        elif not outside:
            continue
        elif not line.strip() or HEADING.match(line) or line.lstrip().startswith("|"):
            close()
        elif BULLET.match(line):
            close()
            kind, start, lines = "bullet", number, [BULLET.sub("", line)]
        else:
            if not lines:
                kind, start = "paragraph", number
            lines.append(line.strip())
    close()
    return found
