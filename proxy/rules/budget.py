"""The company-wide budget of upstream calls, kept in the store so that every gateway
process sharing it draws on one budget: Segmind's rate limit is per account.

A true sliding window, not a token bucket: the times of the calls granted in the last
window are rows of `upstream_calls`, read and written under the budget row's lock, so no
span of `WINDOW` seconds ever holds more than `per_minute` calls from all the processes
on the store together. (A GCRA with a burst of N lets a sliding minute hold 2N-1 calls,
and Segmind does not document its window, so only this is safe.) Each call is counted
`MARGIN` seconds longer than the window: the upstream counts a call when it arrives, a
little after it was granted here, so a call granted exactly one window after another
could still land inside the upstream's window.

Beside the window, the budget row holds a pause every process honours after an upstream
429 (`paused_until`) and `submits_until`: while a paid submit waits for its turn, polls
step aside, so paid work goes first across processes too. Each is a time on the gateway's
clock; a process that dies leaves nothing that outlasts its own waits.

A paid submit takes its slot with `claim_send`, which in the same unit of work moves its
run from WAITING (never sent: safe to send later, by any process) to SUBMITTING (going
out now), and only in admission order: a run admitted later never overtakes one still
waiting.
"""

from __future__ import annotations

from ..store.tx import Tx
from .runs import Fence, check_fence

__all__ = ["MARGIN", "WINDOW", "claim_send", "pause", "take", "unclaim_send"]

WINDOW = 60.0  # seconds: "requests per minute"
MARGIN = 1.0  # seconds a call is counted beyond the window (see the module's doc)


def take(tx: Tx, kind: str, now: float, per_minute: int) -> float:
    """Spend one upstream call of `kind` ("submit" or "poll") now, or say how many
    seconds to wait before asking again (0.0: go)."""
    paused_until, submits_until = tx.budget_state()
    if now < paused_until:
        return paused_until - now
    interval = WINDOW / per_minute
    if kind != "submit":
        # Submits before polls: a poll steps aside while a submit waits for its slot, and
        # while any admitted run waits to be sent (its sender may not have asked yet).
        if now < submits_until:
            return max(submits_until - now, 1e-3)
        if tx.waiting_count():
            return max(_wait(tx, now, per_minute), interval)
    wait = _wait(tx, now, per_minute)
    if wait <= 0:
        tx.add_call(now)
        return 0.0
    if kind == "submit":
        # Hold polls off until this submit is back for the slot it waits for.
        tx.raise_budget_times(submits_until=now + wait + interval)
    return wait


def claim_send(
    tx: Tx, generation_id: str, now: float, per_minute: int, fence: Fence | None = None
) -> float:
    """Take the budget slot for sending the WAITING run `generation_id` and mark it
    SUBMITTING; or say how many seconds to wait (it stays WAITING); -1.0 when it is no
    longer WAITING. Refused while an earlier-admitted run still waits, whoever holds it."""
    tx.budget_state()  # the budget's lock first, as every budget unit of work takes it
    try:
        generation = tx.generation(generation_id, lock=True)
    except KeyError:
        return -1.0
    if generation.status != "WAITING":
        return -1.0  # finished or already sent: nothing to claim
    check_fence(tx, generation_id, fence)
    if tx.waiting_ahead(generation_id):
        # Its turn comes after the one ahead's: at the earliest one slot later.
        return max(_wait(tx, now, per_minute), WINDOW / per_minute)
    wait = take(tx, "submit", now, per_minute)
    if wait <= 0:
        tx.set_waiting(generation_id, now, sending=True)
    return wait


def unclaim_send(tx: Tx, generation_id: str, now: float) -> None:
    """A send that never reached the upstream's queue (it answered 429): the run is
    WAITING again, in its admission place, safe to send later."""
    tx.set_waiting(generation_id, now, sending=False)


def pause(tx: Tx, until: float) -> None:
    """After an upstream 429: no process calls upstream before `until`."""
    tx.raise_budget_times(paused_until=until)


def _wait(tx: Tx, now: float, per_minute: int) -> float:
    """Seconds until the window has room for one more call (0.0: room now)."""
    span = WINDOW + MARGIN
    # Forget calls that can never count again; the table stays at most `per_minute` rows.
    tx.forget_calls(now - span)
    if tx.call_count() < per_minute:
        return 0.0
    # Room comes when the call that would be the (per_minute+1)-th back leaves the span.
    return max(tx.nth_latest_call(per_minute) + span - now, 1e-3)
