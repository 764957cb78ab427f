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
out now), and only in the order of the fair queue (`proxy/core/fairqueue.py`): across
teams by start-time fair queueing over the teams with runs waiting, each by its weight;
within a team by urgency (RFC 9218's `u`), then admission. A run goes when the window
has room for it and for every run before it in that order, so a run whose sender is
asleep keeps its place without holding a slot idle for long, and no run is sent twice
(the run's row and the budget row are locked). The queue's state (each team's finish
tag, the virtual time) is on the budget row and `fair_shares`, written with the send.
"""

from __future__ import annotations

from dataclasses import dataclass

from proxy.core import fairqueue
from proxy.core.fairqueue import Backlog
from proxy.db.tx import Tx
from proxy.rules.runs import Fence, locked_run

__all__ = [
    "MARGIN",
    "WINDOW",
    "QueuePlace",
    "claim_send",
    "pause",
    "queue_place",
    "take",
    "unclaim_send",
]

WINDOW = 60.0  # seconds: "requests per minute"
MARGIN = 1.0  # seconds a call is counted beyond the window (see the module's doc)
SPAN = WINDOW + MARGIN  # how long a call counts here
FORGET_EVERY = 1.0  # seconds between deletions of calls out of the window, while it has room


@dataclass(frozen=True)
class QueuePlace:
    """Where a held run stands: 1 is the next run sent; `send_at` on the gateway's clock."""

    position: int
    send_at: float


@dataclass
class _Window:
    """The budget row as this unit of work found it, and the calls counted since."""

    paused_until: float
    submits_until: float
    calls: int  # may still count calls that left the window: never fewer than are in it
    forgotten_at: float
    stored: tuple[int, float]

    @classmethod
    def locked(cls, tx: Tx) -> _Window:
        paused_until, submits_until, calls, forgotten_at = tx.budget_state()
        return cls(paused_until, submits_until, calls, forgotten_at, (calls, forgotten_at))

    def save(self, tx: Tx) -> None:
        if (self.calls, self.forgotten_at) != self.stored:
            tx.set_call_count(self.calls, self.forgotten_at)


def take(tx: Tx, kind: str, now: float, per_minute: int, generation_id: str | None = None) -> float:
    """Spend one upstream call of `kind` ("submit" or "poll") now, or say how many
    seconds to wait before asking again (0.0: go). A poll naming its run
    (`generation_id`) goes by need where the window is short (see `_polls_ahead`)."""
    held_runs = False
    ahead = 0
    if kind != "submit":
        # A poll's record lost in a database crash costs at most a call over the budget
        # (met by the upstream's 429 and the pause); a submit's is kept (claim_send).
        tx.relax_durability()
        # Read before the budget's lock, which every process's every call waits for.
        held_runs = tx.any_waiting()
        if generation_id is not None and not held_runs:
            ahead = _polls_ahead(tx, generation_id, now)
    window = _Window.locked(tx)
    try:
        if ahead:
            # Polls more in need go first where slots are short: this one goes now only
            # if the window has room for it and for every one of them.
            wait = _wait(tx, now, per_minute, window, need=ahead + 1)
            if wait > 0:
                return max(wait, WINDOW / per_minute)
        return _take(tx, kind, now, per_minute, window, held_runs)
    finally:
        window.save(tx)


def _polls_ahead(tx: Tx, generation_id: str, now: float) -> int:
    """How many overdue polls go before this run's: within its team, the runs whose next
    poll is more overdue (earliest deadline first); across teams, a weighted round from
    the teams' most overdue runs (`fairqueue.place` with no history), so no team's runs
    take more than their weighted share of poll slots while others' polls wait."""
    found = tx.overdue_rank(generation_id, now)
    if found is None:
        return 0
    team_id, rank = found
    backlogs = tx.overdue_polls(now)
    if not any(b.team_id == team_id for b in backlogs):
        return rank
    return fairqueue.place(backlogs, team_id, rank, 0.0)


def _take(
    tx: Tx, kind: str, now: float, per_minute: int, window: _Window, held_runs: bool = False
) -> float:
    if now < window.paused_until:
        return window.paused_until - now
    interval = WINDOW / per_minute
    if kind != "submit":
        # Submits before polls: a poll steps aside while a submit waits for its slot, and
        # while any admitted run waits to be sent (its sender may not have asked yet).
        if now < window.submits_until:
            return max(window.submits_until - now, 1e-3)
        if held_runs:
            return max(_wait(tx, now, per_minute, window), interval)
    wait = _wait(tx, now, per_minute, window)
    if wait <= 0:
        tx.add_call(now)
        window.calls += 1
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
    longer WAITING. Refused while runs before it in the fair queue still wait, whoever
    holds them (see the module's doc)."""
    try:
        generation = locked_run(tx, generation_id, fence)
    except KeyError:
        return -1.0
    if generation.status != "WAITING":
        return -1.0  # finished or already sent: nothing to claim
    # The budget's lock last (after the run's): every process's every call waits for it,
    # and the queue's state (tags, virtual time) is read and written under it.
    window = _Window.locked(tx)
    try:
        queue = _queue(tx, generation_id)
        if queue is None:
            return -1.0
        backlogs, team_id, ahead, virtual_time = queue
        # Runs before it in the fair queue go first where slots are short: this one goes
        # now only if the window has room for it and for every one of them.
        wait = _wait(tx, now, per_minute, window, need=ahead + 1) if ahead else 0.0
        if wait > 0:
            # Its turn comes after theirs: at the earliest one slot later.
            return max(wait, WINDOW / per_minute)
        wait = _take(tx, "submit", now, per_minute, window)
    finally:
        window.save(tx)
    if wait <= 0:
        tx.set_waiting(generation_id, now, sending=True)
        tx.set_fair_share(team_id, *fairqueue.after_send(backlogs, team_id, virtual_time))
    return wait


def _queue(tx: Tx, generation_id: str) -> tuple[list[Backlog], str, int, float] | None:
    """(the teams waiting, the run's team, how many waiting runs go before it, the virtual
    time), or None if the run is not WAITING."""
    ranked = tx.waiting_rank(generation_id)
    if ranked is None:
        return None
    team_id, rank = ranked
    backlogs = tx.backlogs()
    virtual_time = tx.virtual_time()
    return backlogs, team_id, fairqueue.place(backlogs, team_id, rank, virtual_time), virtual_time


def queue_place(tx: Tx, generation_id: str, now: float, per_minute: int) -> QueuePlace | None:
    """Where a WAITING run stands in the fair queue: its place (1: next) and when it
    should be sent if no more urgent run arrives and polls take no slots; None once it
    is not WAITING. A read: it locks nothing."""
    queue = _queue(tx, generation_id)
    if queue is None:
        return None
    ahead = queue[2]
    calls = tx.calls_between(now - SPAN, now)
    paused_until = tx.budget_times()[0]  # after an upstream 429 nobody calls before it
    send_at = max(now + _send_in(calls, now, per_minute, ahead + 1), paused_until)
    return QueuePlace(ahead + 1, send_at)


def _send_in(calls: list[float], now: float, per_minute: int, place: int) -> float:
    """Seconds until the window has had room for `place` more calls, the calls now in it
    at `calls` (oldest first), and every later call made the moment it had room."""
    span = SPAN
    times = list(calls)
    at = now
    for _ in range(place):
        if len(times) >= per_minute:
            at = max(at, times[len(times) - per_minute] + span)
        times.append(at)
    return max(at - now, 0.0)


def unclaim_send(tx: Tx, generation_id: str, now: float) -> None:
    """A send that never reached the upstream's queue (it answered 429): the run is
    WAITING again, in its admission place, safe to send later."""
    tx.set_waiting(generation_id, now, sending=False)


def pause(tx: Tx, until: float) -> None:
    """After an upstream 429: no process calls upstream before `until`."""
    tx.raise_budget_times(paused_until=until)


def _wait(tx: Tx, now: float, per_minute: int, window: _Window, need: int = 1) -> float:
    """Seconds until the window has room for `need` more calls (0.0: room now)."""
    span = SPAN
    # Forget the calls that can never count again: whenever the count says the window is
    # too full (it must then be exact), else at most every FORGET_EVERY seconds, which
    # keeps the table to about a window's calls without a deletion at every call.
    if window.calls + need > per_minute or now - window.forgotten_at >= FORGET_EVERY:
        window.calls -= tx.forget_calls(now - span)
        window.forgotten_at = now
    if window.calls + need <= per_minute:
        return 0.0
    if need > per_minute:
        return WINDOW / per_minute  # more wait than a window holds: look again a slot later
    # Room comes when the call `need` places short of the (per_minute+1)-th back leaves.
    return max(tx.nth_latest_call(per_minute - need + 1) + span - now, 1e-3)
