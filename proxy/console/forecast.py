"""What the poll schedule (`proxy/core/schedule.py`) and its learnt duration model say about
a run: when it should end, when the gateway will see that, how many polls a run takes.
Pure arithmetic over the schedule the gateway follows; nothing is asked of anyone."""

from __future__ import annotations

from typing import Protocol

from proxy.core.schedule import DurationModel

__all__ = ["expected_finish", "scheduled_polls", "seen_at"]

MAX_P = 0.9999
MAX_POLLS = 10_000


class Schedule(Protocol):
    """When the gateway polls a run (`Gateway` is one)."""

    def first_poll_delay(self) -> float: ...

    def next_poll_after(self, elapsed: float) -> float: ...


def expected_finish(model: DurationModel, elapsed: float) -> float:
    """Seconds after its start when a run still going at `elapsed` is as likely to have
    ended as not, by the model: the median of the durations longer than `elapsed`."""
    p = min(1.0 - model.survival(elapsed) / 2.0, MAX_P)
    return max(model.quantile(p), elapsed)


def seen_at(schedule: Schedule, next_poll: float, finish: float) -> float:
    """The elapsed time of the first poll at or after `finish`, polling from `next_poll` on
    as the schedule does: when the gateway learns that a run ended at `finish`."""
    at, polls = next_poll, 0
    while at < finish and polls < MAX_POLLS:
        at, polls = schedule.next_poll_after(at), polls + 1
    return at


def scheduled_polls(schedule: Schedule, duration: float) -> int:
    """The polls the schedule makes of a run lasting `duration` seconds, up to the one that
    sees it finished."""
    at, polls = schedule.first_poll_delay(), 1
    while at < duration and polls < MAX_POLLS:
        at, polls = schedule.next_poll_after(at), polls + 1
    return polls
