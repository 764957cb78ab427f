"""One process of a concurrent admission test: `python -m tests.store.admitter URL TEAM
COUNT IDENTICAL` opens the store at URL, prints "ready", waits for a line on stdin (so
that every process begins together), admits COUNT requests for TEAM at once (all of one
body if IDENTICAL is 1, else each its own), and prints one JSON line of their outcomes:
"MISS", "JOIN", "HIT" or the name of the limit that refused it."""

from __future__ import annotations

import asyncio
import json
import sys
import time
import uuid

from proxy.rules import AdmissionRequest, LimitReached
from proxy.store import Store, open_store

PRICE = 4.0


async def _one(store: Store, ask: AdmissionRequest) -> str:
    try:
        admission = await store.admit(ask, time.time())
    except LimitReached as exc:
        return exc.limit
    return admission.request.cache_status.value


async def _main(url: str, team_name: str, count: int, identical: bool) -> None:
    store = open_store(url, create=False)
    try:
        team = await store.team(team_name)
        asks = [
            AdmissionRequest(
                team=team,
                request_id=uuid.uuid4().hex,
                generation_id=uuid.uuid4().hex,
                scope_key="same" if identical else uuid.uuid4().hex,
                workflow_id="contract",
                inputs={"n": 0 if identical else i},
                price=PRICE,
                instance=f"admitter-{uuid.uuid4().hex[:6]}",
            )
            for i in range(count)
        ]
        print("ready", flush=True)
        await asyncio.to_thread(sys.stdin.readline)
        outcomes = await asyncio.gather(*(_one(store, ask) for ask in asks))
        print(json.dumps(outcomes), flush=True)
    finally:
        store.close()


if __name__ == "__main__":
    url, team, count, identical = sys.argv[1:5]
    asyncio.run(_main(url, team, int(count), identical == "1"))
