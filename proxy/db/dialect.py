"""What differs between the two SQL dialects the store speaks, and nothing else.

Every statement is written once, in the subset SQLite and PostgreSQL share (upserts with
`ON CONFLICT`, partial indexes, row values), with `?` placeholders. A dialect turns that
text into its own: PostgreSQL's driver wants `%s`, locks rows with `FOR UPDATE`, and
names a few functions and types differently.
"""

from __future__ import annotations

import zlib
from dataclasses import dataclass

__all__ = ["POSTGRES", "SQLITE", "Dialect"]


@dataclass(frozen=True)
class Dialect:
    name: str
    placeholder: str
    # Appended to a SELECT that reads rows it is about to change. SQLite needs none: its
    # write transactions (`BEGIN IMMEDIATE`) hold the whole file.
    for_update: str
    skip_locked: str
    greatest: str  # the two-argument maximum: MAX in SQLite, GREATEST in PostgreSQL
    order: str  # the column that keeps insertion order of generations
    types: dict[str, str]
    # A lock on a name for the rest of the transaction (None: the transaction already
    # excludes every other writer).
    name_lock: str | None
    # Makes this transaction's commit return before its record is on disk (None: the
    # dialect's commits already do, e.g. SQLite's WAL with synchronous=NORMAL).
    relaxed_commit: str | None

    def sql(self, text: str) -> str:
        """The statement `text` (written with `?` and {greatest}/{order}) in this dialect."""
        text = text.replace("{greatest}", self.greatest).replace("{order}", self.order)
        if self.placeholder != "?":
            text = text.replace("%", "%%").replace("?", self.placeholder)
        return text

    def ddl(self, text: str) -> str:
        """A schema statement written with {double}, {bytes}... type names."""
        return text.format(**self.types)


def lock_key(name: str) -> int:
    """A stable 32-bit number for a lock's name (PostgreSQL's advisory locks take numbers)."""
    return zlib.crc32(name.encode()) - 2**31


SQLITE = Dialect(
    name="sqlite",
    placeholder="?",
    for_update="",
    skip_locked="",
    greatest="MAX",
    order="rowid",
    types={"double": "REAL", "bytes": "BLOB", "serial": "", "bigint": "INTEGER"},
    name_lock=None,
    relaxed_commit=None,
)

POSTGRES = Dialect(
    name="postgresql",
    placeholder="%s",
    for_update=" FOR UPDATE",
    skip_locked=" FOR UPDATE SKIP LOCKED",
    greatest="GREATEST",
    order="seq",
    types={
        "double": "DOUBLE PRECISION",
        "bytes": "BYTEA",
        "serial": ", seq BIGSERIAL",
        "bigint": "BIGINT",
    },
    # Two keys: a namespace of this gateway's own, then the name's.
    name_lock="SELECT pg_advisory_xact_lock(1398166349, %s)",
    relaxed_commit="SET LOCAL synchronous_commit TO OFF",
)
