"""Outputs the gateway keeps, as the other services use them: copy a completed run's files
before it is recorded COMPLETED (`copy`, bounded by `mirror_deadline`), hand out signed
URLs to the copies in every answer and webhook (`render`, `rewrite_webhook`: a fresh
signature each time), try failed copies again while Segmind still has the files
(`retry_due`), and apply retention and the size cap (`expire`).

It must never: name a copy in an answer before the unit of work that records it has
committed; hand one team a URL signed for another; or keep a run waiting for its copies
past `mirror_deadline`.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import secrets
import time
from typing import Any, Final
from urllib.parse import quote

import httpx

from client import decode_output
from proxy.core.clock import Clock, fail_after
from proxy.core.config import ProxySettings
from proxy.core.outputs import KeptOutput, sign_output
from proxy.db import OutboxMessage, StorageUnavailable, StoreError
from proxy.objects import ObjectStore, ObjectStoreError, key_of
from proxy.rules.outputs import KeptState
from proxy.services.metrics import Metrics
from proxy.services.mirror import Mirror
from proxy.store import Store

__all__ = ["KEPT_FIELD", "NOTE_FIELD", "OutputService"]

log = logging.getLogger("proxy.outputs")

KEPT_FIELD: Final = "outputs_kept"  # true: the URLs are the gateway's copies
NOTE_FIELD: Final = "outputs_note"  # why they are Segmind's URLs instead
SEGMIND_KEEPS: Final = 7 * 86400.0  # Segmind deletes outputs 7 days after inference
RETRY_EVERY: Final = 3600.0  # seconds between tries of a copy that failed
RETRY_BATCH: Final = 20  # runs whose copy is tried again in one round
UPKEEP_EVERY: Final = 600.0  # seconds between rounds of retention and retries
EXTENSIONS: Final = {
    "video/mp4": "mp4", "video/quicktime": "mov", "video/webm": "webm",
    "image/png": "png", "image/jpeg": "jpg", "image/webp": "webp", "image/gif": "gif",
}  # fmt: skip


class OutputService:
    def __init__(
        self,
        settings: ProxySettings,
        clock: Clock,
        store: Store,
        objects: ObjectStore,
        transport: httpx.AsyncBaseTransport | None = None,
        metrics: Metrics | None = None,
    ) -> None:
        self.settings = settings
        self.metrics = metrics or Metrics()
        self._upkeep: asyncio.Task[None] | None = None
        self.clock = clock
        self.store = store
        self.objects = objects
        self.mirror = Mirror(settings, clock, objects, transport)
        self._secret: bytes | None = None

    async def start(self) -> None:
        """Load the signing key and start the upkeep; again after a failed start (a store
        not yet up) it starts what is missing, never a second upkeep."""
        await self.load_key()
        if self._upkeep is None:
            self._upkeep = asyncio.get_running_loop().create_task(self._keep_up())

    async def load_key(self) -> None:
        """The store's URL-signing key (made by the first process to start on it)."""
        key = await self.store.outputs_signing_key(secrets.token_hex(32))
        self._secret = key.encode()

    @property
    def secret(self) -> bytes:
        if self._secret is None:
            # Not loaded yet: the process started before its store answered.
            raise StorageUnavailable(
                "the gateway's store has not answered since this process started, so its "
                "output URLs cannot be checked yet; retry in a few seconds",
                outage=True,
            )
        return self._secret

    async def aclose(self) -> None:
        if self._upkeep is not None:
            self._upkeep.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._upkeep
        await self.mirror.aclose()
        await self.objects.aclose()

    # -- copying ------------------------------------------------------------------------

    async def copy(self, output: str | None) -> tuple[list[KeptOutput] | None, str | None]:
        """The copies of a completed run's files, or (None, why not). Never longer than
        `mirror_deadline`: past it the run completes with Segmind's URLs."""
        deadline = self.settings.mirror_deadline
        started = time.perf_counter()
        try:
            with fail_after(self.clock, deadline):
                report = await self.mirror.keep(output)
        except TimeoutError:
            self.metrics.output_copy(False, time.perf_counter() - started)
            return None, (
                f"the gateway could not copy the outputs within {deadline:g} s "
                "(mirror_deadline); these are Segmind's URLs, kept by Segmind for 7 days"
            )
        self.metrics.output_copy(report.complete, time.perf_counter() - started)
        if report.complete:
            return report.kept, None
        return None, f"{report.problem}; these are Segmind's URLs, kept by Segmind for 7 days"

    def retry_at(self, finished_at: float, note: str | None) -> float | None:
        """When to try a failed copy again: while Segmind still keeps the files."""
        if note is None:
            return None
        at = self.clock.now() + RETRY_EVERY
        return at if at < finished_at + SEGMIND_KEEPS else None

    def cache_ttl(self, kept: list[KeptOutput] | None) -> float:
        """With copies, a result is reused as long as they are kept."""
        return self.settings.output_retention if kept else self.settings.cache_ttl

    # -- handing out --------------------------------------------------------------------

    def url(self, team_id: str, copy: KeptOutput, expires: int) -> str:
        signature = sign_output(self.secret, copy.sha256, team_id, expires)
        extension = EXTENSIONS.get(copy.content_type, "bin")
        return (
            f"{self.settings.base_url}/v1/outputs/{quote(team_id, safe='')}/"
            f"{copy.sha256}.{extension}?expires={expires}&signature={signature}"
        )

    def render(
        self, team_id: str, output: str | None, state: KeptState | None, ttl: float | None = None
    ) -> tuple[str | None, dict[str, Any]]:
        """A COMPLETED run's output document as `team_id` is shown it, with the fields to
        add to its answer: the gateway's signed URLs where it holds copies."""
        if state is None:
            return output, {}
        if not state.kept:
            return output, {KEPT_FIELD: False, NOTE_FIELD: state.note}
        expires = int(self.clock.now() + (ttl or self.settings.output_url_ttl))
        try:
            document = json.loads(output or "")
            for copy in state.kept:
                document[copy.index]["value"]["data"] = self.url(team_id, copy, expires)
        except (ValueError, LookupError, TypeError):
            return output, {KEPT_FIELD: False, NOTE_FIELD: "the output document changed shape"}
        return json.dumps(document, separators=(",", ":")), {KEPT_FIELD: True}

    async def state_of(self, generation_id: str) -> KeptState | None:
        return await self.store.kept_outputs(generation_id)

    async def rewrite_webhook(self, message: OutboxMessage) -> bytes:
        """A `job.completed` body with the gateway's URLs signed now (valid through the
        rest of the retry schedule too), or the body as queued."""
        if message.event != "job.completed":
            return message.body
        try:
            envelope = json.loads(message.body)
            data = envelope["data"]
            found = await self.store.request(message.team_id, message.request_id)
            if found is None:
                return message.body
            state = await self.state_of(found[1].id)
        except (ValueError, LookupError, TypeError, StoreError):
            return message.body
        ttl = self.settings.output_url_ttl + sum(self.settings.webhook_schedule)
        output, extra = self.render(message.team_id, found[1].output, state, ttl)
        if output is not None and data.get("output") is not None:
            data["output"] = output
            data["videos"] = _videos(output) or data.get("videos")
        data.update(extra)
        return json.dumps(envelope, separators=(",", ":")).encode()

    # -- upkeep -------------------------------------------------------------------------

    async def _keep_up(self) -> None:
        """Every `UPKEEP_EVERY` seconds of the clock: retention and the size cap, copies
        that failed tried again, the stored-bytes gauges refreshed."""
        while True:
            try:
                await self.upkeep()
            except (StoreError, ObjectStoreError) as exc:
                log.warning("kept outputs' upkeep failed; trying again later: %s", exc)
            await self.clock.sleep(UPKEEP_EVERY)

    async def upkeep(self) -> None:
        await self.expire()
        await self.retry_due()
        summary = await self.store.outputs_summary()
        self.metrics.set_outputs_stored(summary.objects, summary.bytes)

    async def retry_due(self) -> int:
        """Try again the copies that failed, while Segmind still keeps the files; a run
        copied now answers with the gateway's URLs, and is cached as long as they live."""
        done = 0
        for generation_id in await self.store.copies_due(self.clock.now(), RETRY_BATCH):
            generation = await self.store.generation(generation_id)
            kept, note = await self.copy(generation.output)
            finished = generation.finished_at or self.clock.now()
            await self.store.keep_outputs(
                generation_id, kept or [], note, self.clock.now(),
                self.retry_at(finished, note),
                cache_until=self.clock.now() + self.settings.output_retention if kept else None,
            )  # fmt: skip
            done += kept is not None
        return done

    async def expire(self) -> int:
        """Retention and the size cap: forget objects (their cache entries end in the same
        unit of work), then delete their bytes. Returns how many."""
        settings, done = self.settings, 0
        while True:
            dropped = await self.store.expire_outputs(
                self.clock.now(), settings.output_retention, settings.output_max_total_bytes
            )
            for sha256 in dropped:
                if await self.store.output_object(sha256) is not None:
                    continue  # the same bytes were kept again meanwhile (content addressed)
                try:
                    await self.objects.delete(key_of(sha256))
                except ObjectStoreError as exc:
                    log.warning("kept output %s not deleted: %s", sha256[:12], exc.message)
            done += len(dropped)
            if not dropped:
                return done
            await asyncio.sleep(0)


def _videos(output: str) -> dict[str, str]:
    items, _ = decode_output(output)
    return {str(i.scene): i.url for i in items if i.scene is not None and i.url}
