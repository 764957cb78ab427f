"""A run's life after admission: sent, polled, finished; and who may write it.

Every write of a run's state names the lease it is made under (instance and fencing
token). A process that lost its lease while stalled (its heartbeat lapsed and another
took the run over, with a new token) is refused with `LeaseLost`: it can never overwrite
what the new owner wrote. A terminal state is written with its cache entry or refund and
its webhook messages in one unit of work, so a crash never leaves one without the other.
"""

from __future__ import annotations

from dataclasses import dataclass

from proxy.core.outputs import KeptOutput
from proxy.db.records import Generation
from proxy.db.tx import Tx
from proxy.rules import outputs
from proxy.rules.errors import LeaseLost
from proxy.rules.outbox import enqueue

__all__ = [
    "Fence",
    "hint",
    "locked_run",
    "mark_submitted",
    "record_late_upstream_id",
    "record_poll_failure",
    "record_status",
]


@dataclass(frozen=True)
class Fence:
    """The lease a write is made under."""

    instance: str
    token: int


def locked_run(tx: Tx, generation_id: str, fence: Fence | None) -> Generation:
    """The run, locked for this unit of work, if `fence` is its current lease."""
    run, held = tx.run_and_lease(generation_id)
    _check(generation_id, held, fence)
    return run


def _check(generation_id: str, held: tuple[str, int] | None, fence: Fence | None) -> None:
    """Refuse a write under a lease that is no longer current (no fence: an operator's
    write, or a run with no poller yet, which needs none)."""
    if fence is not None and held is not None and held != (fence.instance, fence.token):
        raise LeaseLost(
            f"run {generation_id} is polled by instance {held[0]} now (lease {held[1]}, "
            f"this process held {fence.token}); this process stops polling it"
        )


def mark_submitted(
    tx: Tx,
    generation_id: str,
    upstream_id: str,
    now: float,
    next_poll_at: float,
    fence: Fence | None = None,
) -> Generation:
    run = locked_run(tx, generation_id, fence)
    return tx.set_submitted(generation_id, upstream_id, now, next_poll_at) or run


def record_late_upstream_id(
    tx: Tx, generation_id: str, upstream_id: str, now: float, next_poll_at: float
) -> Generation | None:
    """The upstream id of a run whose sender could not record it when Segmind answered (its
    store failed then): recorded whichever process holds the run's lease by now, because
    only the sender can know it and a run Segmind accepted must be followed. Only while the
    run is still SUBMITTING with no id; None once it was given up (then Segmind's run is
    past following, and the caller logs it)."""
    run, _ = tx.run_and_lease(generation_id)
    if run.upstream_id == upstream_id:
        return run  # the first attempt did commit: its answer was what the store lost
    if run.terminal or run.upstream_id is not None or run.status != "SUBMITTING":
        return None
    return tx.set_submitted(generation_id, upstream_id, now, next_poll_at)


def record_poll_failure(
    tx: Tx, generation_id: str, now: float, next_poll_at: float, fence: Fence | None = None
) -> Generation:
    locked_run(tx, generation_id, fence)
    tx.set_poll_failure(generation_id, now, next_poll_at)
    return tx.generation(generation_id)


def hint(tx: Tx, generation_ids: list[str], now: float) -> list[str]:
    """A notification named these running runs: each one's next poll comes forward to
    `now` (it waits there for the company budget like any poll), once per run however
    many notifications name it. Returns the runs brought forward; each one's poller, in
    whichever process, hears of it on commit (`hint:<run>`: no other loop wakes)."""
    hinted = [gid for gid in generation_ids if tx.set_hinted(gid, now)]
    for gid in hinted:
        tx.notify(f"hint:{gid}")
    return hinted


def record_status(
    tx: Tx,
    generation_id: str,
    status: str,
    now: float,
    *,
    fence: Fence | None = None,
    output: str | None = None,
    error: str | None = None,
    terminal: bool = False,
    next_poll_at: float | None = None,
    cache_ttl: float = 0.0,
    refund: bool = False,
    answered: str | None = None,
    polled: bool = False,
    kept: list[KeptOutput] | None = None,
    mirror_note: str | None = None,
    mirror_retry_at: float | None = None,
) -> Generation:
    """Write what the upstream said; a terminal state also fills the cache or refunds,
    and queues the webhooks. The request `answered` (already told the outcome in its
    answer) gets no webhook. `polled`: a poll of the upstream said it (counted).
    `kept`/`mirror_note`: a COMPLETED run's copies of its outputs, or why there are none
    (`outputs.keep`), recorded before its webhooks are queued."""
    current, held = tx.run_and_lease(generation_id)
    if current.terminal:
        return current  # terminal states never change
    _check(generation_id, held, fence)
    tx.set_status(
        generation_id,
        status,
        now,
        output=output,
        error=error,
        terminal=terminal,
        next_poll_at=next_poll_at,
        polled=polled,
    )
    if not terminal:
        return tx.generation(generation_id)
    if status == "COMPLETED" and (kept is not None or mirror_note is not None):
        outputs.keep(tx, generation_id, kept or [], mirror_note, now, mirror_retry_at)
    if status == "COMPLETED" and cache_ttl > 0:
        tx.put_cache(current.scope_key, generation_id, now + cache_ttl)
    if status != "COMPLETED" and refund:
        _refund(tx, generation_id)
    finished = tx.generation(generation_id)
    tx.drop_lease(generation_id)
    for request in tx.requests_of(generation_id):
        if request.id != answered:
            enqueue(tx, request, finished, now)
    tx.notify("finished")
    return finished


def _refund(tx: Tx, generation_id: str) -> None:
    team_id, cost, day, month, refunded = tx.charge_of(generation_id)
    if refunded or day is None or month is None:
        return
    for period in (day, month):
        tx.refund_spend(team_id, period, cost)
    tx.set_refunded(generation_id)
