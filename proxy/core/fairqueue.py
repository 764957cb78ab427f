"""The fair queue of paid submits across teams, as arithmetic: start-time fair queueing
(SFQ, Goyal et al. 1996) over the teams that have runs waiting for an upstream slot. Free
of I/O; `proxy/rules/budget.py` keeps its state in the store, so every process follows
one order.

Each team has a virtual finish tag `finish`; the queue has a virtual time `virtual_time`
(the start tag of the last run sent in turn). A team's next waiting run starts at
`max(finish, virtual_time)` (a team back from idle takes no credit for the time it was
away), and each run sent moves its team's tag on by `1 / weight`. Runs go in order of
start tags, so while several teams wait each gets slots in proportion to its weight, and
a team alone gets every slot. Within a team, runs go by urgency then admission
(`rank`); the order inside a team never changes another team's share.

A tie between two teams' tags goes to the team whose id sorts first: a fixed rule every
process agrees on.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

__all__ = ["DEFAULT_URGENCY", "MAX_URGENCY", "Backlog", "after_send", "place", "send_order"]

EPS = 1e-9  # tags are sums of 1/weight: equal within this are equal
RETURN_EDGE = 1e-6  # how far before the virtual time a returning team starts (> EPS)
DEFAULT_URGENCY = 3  # RFC 9218: a request that says nothing
MAX_URGENCY = 7  # RFC 9218: urgencies are 0 (most urgent) to 7


@dataclass(frozen=True)
class Backlog:
    """One team with runs waiting: how many, its weight and its virtual finish tag."""

    team_id: str
    waiting: int
    weight: float = 1.0
    finish: float = 0.0

    def start(self, virtual_time: float) -> float:
        """The start tag of this team's next run. A team behind the virtual time (new, or
        back from idle) starts a hair before it: ahead of a team whose next run starts
        exactly there, as in-order SFQ would have it (its virtual time is the start tag
        of the run last served, one place behind the next)."""
        return self.finish if self.finish >= virtual_time else virtual_time - RETURN_EDGE


def place(backlogs: list[Backlog], team_id: str, rank: int, virtual_time: float) -> int:
    """How many waiting runs, of every team, go before the run at `rank` (0: the team's
    next) of team `team_id`, if every team stays backlogged."""
    mine = next(b for b in backlogs if b.team_id == team_id)
    tag = mine.start(virtual_time) + rank / mine.weight
    ahead = rank
    for other in backlogs:
        if other.team_id != team_id:
            reach = (tag - other.start(virtual_time)) * other.weight
            ahead += _runs_before(reach, other.waiting, wins_ties=other.team_id < team_id)
    return ahead


def _runs_before(reach: float, waiting: int, *, wins_ties: bool) -> int:
    """How many of j = 0..waiting-1 have j < reach (j <= reach when ties go their way)."""
    nearest = round(reach)
    if abs(reach - nearest) < EPS:
        count = nearest + 1 if wins_ties else nearest
    else:
        count = math.floor(reach) + 1
    return min(max(count, 0), waiting)


def after_send(backlogs: list[Backlog], team_id: str, virtual_time: float) -> tuple[float, float]:
    """(the team's new finish tag, the queue's new virtual time) once one run of `team_id`
    is sent; `backlogs` as before the send.

    The virtual time moves to the lowest start tag of the teams still waiting after the
    send: the run that in-order SFQ serves next. Sends within one burst of free slots come
    in any order (several processes take them at once), and this makes the result the
    same whatever that order. It never passes a waiting team's start tag, so no waiting
    team's runs are pushed back; with nobody left waiting, it is the sent run's start."""
    mine = next(b for b in backlogs if b.team_id == team_id)
    start = mine.start(virtual_time)
    finish = start + 1.0 / mine.weight
    waiting = [
        finish if b.team_id == team_id else b.start(virtual_time)
        for b in backlogs
        if b.waiting - (b.team_id == team_id) > 0
    ]
    return finish, max(virtual_time, min(waiting) if waiting else start)


def send_order(backlogs: list[Backlog], virtual_time: float, count: int) -> list[str]:
    """The teams of the next `count` runs sent, in order, if no run arrives meanwhile."""
    queue = {b.team_id: b for b in backlogs if b.waiting > 0}
    order: list[str] = []
    while queue and len(order) < count:
        team_id = min(queue, key=lambda t: (queue[t].start(virtual_time), t))
        finish, virtual_time = after_send(list(queue.values()), team_id, virtual_time)
        b = queue[team_id]
        left = Backlog(team_id, b.waiting - 1, b.weight, finish)
        if left.waiting:
            queue[team_id] = left
        else:
            del queue[team_id]
        order.append(team_id)
    return order
