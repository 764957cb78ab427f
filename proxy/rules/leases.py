"""Which gateway process polls which run, so that several processes on one store poll
each run once, and a run whose process died is taken over by another.

Every process is an *instance* with an id and a heartbeat (`alive_until`, wall-clock
seconds). A run's lease names the instance that polls it and a fencing token: taken with
the admission that created the run (one unit of work, so a run is never without a
poller), dropped when the run ends. An instance whose heartbeat lapsed has lost its
leases: the next live instance to sweep claims them, each with a new token, under one
lock, so two sweepers never both take one run, and the old holder's late writes are
refused (`runs.locked_run`).
"""

from __future__ import annotations

from proxy.db.records import Generation
from proxy.db.tx import Tx

__all__ = ["FORGET_INSTANCES_AFTER", "claim_runs", "heartbeat"]

FORGET_INSTANCES_AFTER = 7 * 86400.0  # seconds a dead instance's row is kept, for operators


def heartbeat(tx: Tx, instance: str, alive_until: float) -> None:
    """Say this instance is alive, and so holds its leases, until `alive_until`."""
    tx.heartbeat(instance, alive_until, alive_until - FORGET_INSTANCES_AFTER)


def claim_runs(
    tx: Tx, instance: str, now: float, *, own: bool = False
) -> list[tuple[Generation, int]]:
    """Take the unfinished runs no live instance polls; returns them with their new
    fencing tokens, oldest first.

    `own=True` (at start) also takes back the runs leased to `instance` itself: a process
    restarted under the same id is the one that held them. Otherwise an instance never
    claims its own runs, which it is already polling or submitting.
    """
    tx.lock_name("lease-sweep")
    return [(run, tx.set_lease(run.id, instance)) for run in tx.claimable(instance, now, own=own)]
