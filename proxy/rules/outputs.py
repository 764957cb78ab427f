"""Kept outputs' rules: a run's copies are recorded in the unit of work that completes it
(so no answer or webhook ever names a copy that is not there); retention and the size cap
forget the least recently used objects, and forgetting one ends the cache entries of the
runs that use it in the same unit of work, so a HIT never hands out a dead URL. The bytes
themselves are deleted by the caller after the commit (`proxy/services/outputs.py`).
"""

from __future__ import annotations

from dataclasses import dataclass

from proxy.core.outputs import KeptOutput, dump_kept, load_kept
from proxy.db.tx import Tx

__all__ = ["KeptState", "OutputsSummary", "expire", "keep", "kept_of", "signing_key"]

SIGNING_KEY = "outputs.signing_key"
RETENTION_NOTE = "its kept copies were deleted by the gateway's retention"
SIZE_NOTE = "its kept copies were deleted to stay under output_max_total_bytes"
BATCH = 500  # objects looked at in one unit of work


@dataclass(frozen=True)
class KeptState:
    """A run's copies (all of its outputs), or why there are none."""

    kept: list[KeptOutput]
    note: str | None


@dataclass(frozen=True)
class OutputsSummary:
    objects: int
    bytes: int
    oldest_use: float | None
    failures: int  # runs completed without copies (still to copy, or given up)


def keep(
    tx: Tx,
    generation_id: str,
    kept: list[KeptOutput],
    note: str | None,
    now: float,
    retry_at: float | None = None,
    cache_until: float | None = None,
) -> None:
    """Record a run's copies: all of them (`note` None), or none and why (then it answers
    with Segmind's URLs, and the copy is tried again at `retry_at` if given). A copy made
    after the run completed (`cache_until`) makes its cache entry last as long."""
    if note is not None:
        tx.set_run_outputs(generation_id, None, note, retry_at, now)
        return
    tx.set_run_outputs(generation_id, dump_kept(kept), None, None, now)
    for copy in kept:
        tx.put_object(copy.sha256, copy.size, copy.content_type, now)
        tx.link_object(generation_id, copy.sha256)
    if cache_until is not None:
        tx.put_cache(tx.generation(generation_id).scope_key, generation_id, cache_until)


def kept_of(tx: Tx, generation_id: str) -> KeptState | None:
    found = tx.run_outputs(generation_id)
    if found is None:
        return None
    return KeptState(load_kept(found[0]), found[1])


def signing_key(tx: Tx, candidate: str) -> str:
    """The store's key for signing output URLs: `candidate` if there was none yet. Every
    replica on the store signs with the same key, so any of them serves any URL."""
    current = tx.kv(SIGNING_KEY)
    if current is None:
        tx.set_kv(SIGNING_KEY, candidate)
        return candidate
    return current


def expire(tx: Tx, now: float, retention: float, max_total: int | None) -> list[str]:
    """Forget objects unused for `retention` seconds, then the least recently used ones
    while all of them take more than `max_total` bytes; at most `BATCH` in one unit of
    work. Returns the objects forgotten, whose bytes the caller deletes."""
    dropped: list[str] = []
    _, total, _ = tx.objects_total()
    for sha256, size, used_at in tx.objects_by_use(BATCH):
        if used_at < now - retention:
            tx.drop_object(sha256, RETENTION_NOTE, now)
        elif max_total is not None and total > max_total:
            tx.drop_object(sha256, SIZE_NOTE, now)
        else:
            break
        dropped.append(sha256)
        total -= size
    return dropped


def summary(tx: Tx) -> OutputsSummary:
    objects, total, oldest = tx.objects_total()
    return OutputsSummary(objects, total, oldest, tx.mirror_failures())
