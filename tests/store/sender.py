"""One process of the fair queue's contract test: `python -m tests.store.sender URL
PER_MINUTE` opens the store at URL, prints "ready", reads one JSON line (the ids of the
WAITING runs it holds), then for each line with a time `t` tries to claim a send slot for
every run of its own still waiting, all at once, at `t`, and prints one JSON line: the
ids it claimed. A line "stop" ends it."""

from __future__ import annotations

import asyncio
import json
import sys

from proxy.store import Store, open_store


async def _claim(store: Store, generation_id: str, now: float, per_minute: int) -> str | None:
    wait = await store.claim_send(generation_id, now, per_minute)
    return generation_id if wait == 0 else None


async def _main(url: str, per_minute: int) -> None:
    store = open_store(url, create=False)
    try:
        print("ready", flush=True)
        waiting = set(json.loads(await asyncio.to_thread(sys.stdin.readline)))
        while (line := (await asyncio.to_thread(sys.stdin.readline)).strip()) != "stop":
            now = float(line)
            claimed = await asyncio.gather(*(_claim(store, g, now, per_minute) for g in waiting))
            sent = [g for g in claimed if g is not None]
            waiting.difference_update(sent)
            print(json.dumps(sent), flush=True)
    finally:
        store.close()


if __name__ == "__main__":
    asyncio.run(_main(sys.argv[1], int(sys.argv[2])))
