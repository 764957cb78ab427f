"""The store as the rest of the gateway sees it: named async methods, each one unit of
work of the rules (`proxy/rules/`) run by whichever backend the `db` setting names.

Nothing here, or above, knows which backend it runs on. Writes run as transactions;
reads see the latest commits. Every storage failure is `StorageUnavailable`; every
refusal is a `RuleError`.
"""

from __future__ import annotations

import asyncio
import datetime as dt
from collections.abc import Callable, Collection
from typing import TypeVar

from proxy.core.config import TeamLimits
from proxy.core.quotas import budget_periods
from proxy.db.backend import Backend, Listener
from proxy.db.records import (
    Admission,
    Attempt,
    CacheStatus,
    Endpoint,
    Generation,
    Instance,
    OutboxMessage,
    RequestRecord,
    RequestView,
    RunView,
    Team,
    TeamKey,
)
from proxy.db.tx import Tx
from proxy.rules import admission, alerts, budget, leases, outbox, runs, teams, usage
from proxy.rules.admission import AdmissionRequest
from proxy.rules.alerts import BudgetUse
from proxy.rules.runs import Fence
from proxy.rules.usage import UsageRow
from proxy.store.backends import open_backend

__all__ = ["Store", "open_store"]

T = TypeVar("T")
AUTH_CACHE_SIZE = 10_000  # key hashes remembered between auth changes


def open_store(url: str, *, create: bool = True) -> Store:
    """The store the `db` setting names (a path, sqlite:///path or postgresql://...)."""
    return Store(open_backend(url, create=create))


class Store:
    def __init__(self, backend: Backend) -> None:
        self.backend = backend
        self._auth_version = -1
        self._auth_cache: dict[str, Team | None] = {}
        # Notices of auth changes heard (from any process); see `team_for_key`.
        self._auth_news = 0
        self._auth_heard_at = -1  # `_auth_news` when the version was last read
        # One admission per team at a time from this process: a team's admissions wait on
        # its lock in the database anyway, and a flood of them must not take every worker
        # (or the whole writer queue) in front of another team's.
        self._admitting: dict[str, asyncio.Lock] = {}

    async def _write(self, unit: Callable[[Tx], T]) -> T:
        return await self.backend.write(unit)

    async def _read(self, unit: Callable[[Tx], T]) -> T:
        return await self.backend.read(unit)

    def call(self, unit: Callable[[Tx], T]) -> T:
        """Run one unit of work, blocking (the command line has no event loop)."""
        return self.backend.call(unit)

    def subscribe(self, listener: Listener) -> None:
        self.backend.subscribe(listener)

    def watch(self) -> None:
        """Start hearing other processes' news (call on the running loop, at start)."""
        self.backend.subscribe(self._news)

    def _news(self, channel: str) -> None:
        if channel in ("auth", "*"):
            self._auth_news += 1

    def close(self) -> None:
        self.backend.close()

    # -- numbers a restarted process needs again ------------------------------------------

    async def remembered(self, name: str) -> int | None:
        return await self._read(lambda tx: tx.meta(name))

    async def remember(self, name: str, value: int) -> None:
        await self._write(lambda tx: tx.set_meta(name, value))

    async def kv_get(self, name: str) -> str | None:
        return await self._read(lambda tx: tx.kv(name))

    async def kv_set(self, name: str, value: str) -> None:
        await self._write(lambda tx: tx.set_kv(name, value))

    async def kv_delete(self, *names: str) -> None:
        def unit(tx: Tx) -> None:
            for name in names:
                tx.delete_kv(name)

        await self._write(unit)

    async def kv_named(self, prefix: str) -> list[tuple[str, str]]:
        return await self._read(lambda tx: tx.kv_named(prefix))

    # -- teams and keys -------------------------------------------------------------------

    async def create_team(self, team: Team, key: tuple[str, str] | None = None) -> Team:
        """A new team, and its first key (hash, prefix) in the same unit of work: a team is
        never left without the key its creator was shown."""

        def unit(tx: Tx) -> Team:
            made = teams.create_team(tx, team)
            if key is not None:
                teams.add_key(tx, team.name, *key, team.created_at)
            return made

        return await self._write(unit)

    async def add_key(self, team_name: str, key_hash: str, prefix: str, now: float) -> TeamKey:
        return await self._write(lambda tx: teams.add_key(tx, team_name, key_hash, prefix, now))

    async def revoke_keys(
        self, now: float, *, team_name: str | None = None, prefix: str | None = None
    ) -> int:
        return await self._write(
            lambda tx: teams.revoke_keys(tx, now, team_name=team_name, prefix=prefix)
        )

    async def rotate_secret(self, team_name: str, secret: str, now: float, overlap: float) -> None:
        await self._write(lambda tx: teams.rotate_secret(tx, team_name, secret, now, overlap))

    async def set_limits(self, team_name: str, limits: TeamLimits) -> Team:
        return await self._write(lambda tx: teams.set_limits(tx, team_name, limits))

    async def set_webhook(self, team_name: str, url: str | None) -> Team:
        """The team's own webhook URL (None: none), checked by the caller."""
        return await self._write(lambda tx: teams.set_webhook(tx, team_name, url))

    async def budget_use(self, now: float) -> list[BudgetUse]:
        """Every team's spend today and this month (UTC) against its budgets."""
        return await self._read(lambda tx: alerts.budget_use(tx, now))

    async def team_secrets(self, team_id: str, now: float) -> list[str]:
        return await self._read(lambda tx: teams.team_secrets(tx, team_id, now))

    async def team(self, name: str) -> Team:
        return await self._read(lambda tx: teams.team_named(tx, name))

    async def teams(self) -> list[Team]:
        return await self._read(lambda tx: tx.teams())

    async def keys(self, team_name: str | None = None) -> list[TeamKey]:
        return await self._read(lambda tx: tx.keys(team_name))

    async def team_for_key(self, key_hash: str) -> Team | None:
        """The team a live key belongs to; a revoked key finds nothing.

        Answers are remembered only while the store's auth version stands still; every
        change to keys or teams bumps it in the same unit of work, so a revocation (from
        this process or another) takes effect on the very next request. Where the backend
        hears every process's news (PostgreSQL with its listener up), the version is read
        again only after an auth notice; otherwise on every call.
        """
        heard = self._auth_news
        trusted = self.backend.hears_everyone and self._auth_heard_at == heard
        if trusted and key_hash in self._auth_cache:
            return self._auth_cache[key_hash]

        def unit(tx: Tx) -> tuple[int, Team | None, bool]:
            version = tx.meta("auth_version") or 0
            if version == self._auth_version and key_hash in self._auth_cache:
                return version, None, False
            return version, tx.team_for_key(key_hash), True

        version, team, looked_up = await self._read(unit)
        if version != self._auth_version:
            self._auth_cache.clear()
            self._auth_version = version
        # No notice arrived while reading: what was read stands until the next one.
        self._auth_heard_at = heard
        if not looked_up:
            return self._auth_cache.get(key_hash)
        if len(self._auth_cache) >= AUTH_CACHE_SIZE:
            self._auth_cache.clear()
        self._auth_cache[key_hash] = team
        return team

    async def spent(self, team_id: str, now: float) -> tuple[float, float]:
        """Dollars a team has spent today and this month (UTC)."""
        day, month = budget_periods(now)
        spent = await self._read(lambda tx: tx.spent(team_id, day, month))
        return spent[day], spent[month]

    async def usage(
        self, since: dt.date, until: dt.date, team: str | None = None
    ) -> list[UsageRow]:
        """Per team (by name; only `team` if given) per UTC day from `since` to `until`,
        both included: requests HIT, JOIN, MISS, runs paid, failed, refunded, dollars spent
        and saved; days without a request or run are left out. `BadPeriod` for days out of
        order or more than `MAX_DAYS` of them, `UnknownTeam` for an unknown `team`."""
        return await self._read(lambda tx: usage.usage(tx, since, until, team))

    async def rate_tat(self, team_id: str, name: str) -> float | None:
        return await self._read(lambda tx: tx.rate_tat(team_id, name))

    # -- admission ------------------------------------------------------------------------

    async def admit(self, ask: AdmissionRequest, now: float) -> Admission:
        turn = self._admitting.setdefault(ask.team.id, asyncio.Lock())
        async with turn:
            return await self._write(lambda tx: admission.admit(tx, ask, now))

    async def peek_admission(self, ask: AdmissionRequest, now: float) -> CacheStatus | None:
        return await self._read(lambda tx: admission.peek(tx, ask, now))

    # -- runs -----------------------------------------------------------------------------

    async def generation(self, generation_id: str) -> Generation:
        return await self._read(lambda tx: tx.generation(generation_id))

    async def generation_inputs(self, generation_id: str) -> dict[str, object]:
        return await self._read(lambda tx: tx.generation_inputs(generation_id))

    async def request(
        self, team_id: str, request_id: str
    ) -> tuple[RequestRecord, Generation] | None:
        """A team's request and its run; another team's id finds nothing."""
        return await self._read(lambda tx: tx.request_with_generation(team_id, request_id))

    async def requests_of(self, generation_id: str) -> list[RequestRecord]:
        return await self._read(lambda tx: tx.requests_of(generation_id))

    async def mark_submitted(
        self,
        generation_id: str,
        upstream_id: str,
        now: float,
        next_poll_at: float,
        fence: Fence | None = None,
    ) -> Generation:
        return await self._write(
            lambda tx: runs.mark_submitted(tx, generation_id, upstream_id, now, next_poll_at, fence)
        )

    async def record_status(
        self,
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
    ) -> Generation:
        return await self._write(
            lambda tx: runs.record_status(
                tx,
                generation_id,
                status,
                now,
                fence=fence,
                output=output,
                error=error,
                terminal=terminal,
                next_poll_at=next_poll_at,
                cache_ttl=cache_ttl,
                refund=refund,
                answered=answered,
                polled=polled,
            )
        )

    async def record_poll_failure(
        self, generation_id: str, now: float, next_poll_at: float, fence: Fence | None = None
    ) -> Generation:
        return await self._write(
            lambda tx: runs.record_poll_failure(tx, generation_id, now, next_poll_at, fence)
        )

    async def hint(self, upstream_ids: Collection[str], now: float) -> list[str]:
        """Bring forward the next poll of the running runs with these upstream ids whose
        early poll is unspent; returns them. Ids naming no such run cost one read."""
        found = await self._read(lambda tx: tx.hintable(upstream_ids))
        if not found:
            return []
        return await self._write(lambda tx: runs.hint(tx, found, now))

    # -- instances and leases -------------------------------------------------------------

    async def heartbeat(self, instance: str, alive_until: float) -> None:
        await self._write(lambda tx: leases.heartbeat(tx, instance, alive_until))

    async def release(self, instance: str) -> None:
        """A clean stop: the instance's runs are free for another to take at once."""
        await self._write(lambda tx: tx.release(instance))

    async def claim_runs(
        self, instance: str, now: float, *, own: bool = False
    ) -> list[tuple[Generation, int]]:
        return await self._write(lambda tx: leases.claim_runs(tx, instance, now, own=own))

    async def instances(self) -> list[Instance]:
        return await self._read(lambda tx: tx.instances())

    async def lease(self, generation_id: str) -> tuple[str, int] | None:
        """(instance, fencing token) of the run's poller; None once the run ended."""
        return await self._read(lambda tx: tx.lease(generation_id))

    async def lease_holder(self, generation_id: str) -> str | None:
        held = await self.lease(generation_id)
        return None if held is None else held[0]

    # -- the company's upstream budget ----------------------------------------------------

    async def take_upstream(self, kind: str, now: float, per_minute: int) -> float:
        return await self._write(lambda tx: budget.take(tx, kind, now, per_minute))

    async def claim_send(
        self, generation_id: str, now: float, per_minute: int, fence: Fence | None = None
    ) -> float:
        return await self._write(
            lambda tx: budget.claim_send(tx, generation_id, now, per_minute, fence)
        )

    async def unclaim_send(self, generation_id: str, now: float) -> None:
        await self._write(lambda tx: budget.unclaim_send(tx, generation_id, now))

    async def pause_upstream(self, until: float) -> None:
        await self._write(lambda tx: budget.pause(tx, until))

    async def waiting_runs(self) -> int:
        """How many admitted runs wait for a budget slot (never sent), in every process."""
        return await self._read(lambda tx: tx.waiting_count())

    async def upstream_calls_between(self, start: float, end: float) -> list[float]:
        """The times of the calls granted in [start, end]: for tests and operators."""
        return await self._read(lambda tx: tx.calls_between(start, end))

    # -- the webhook outbox ---------------------------------------------------------------

    async def next_due_at(
        self,
        skip_ids: Collection[str] = (),
        skip_endpoints: Collection[tuple[str, str]] = (),
        skip_teams: Collection[str] = (),
        skip_hosts: Collection[str] = (),
    ) -> float | None:
        """When the next pending message is due, leaving out the skipped ones."""
        return await self._read(
            lambda tx: tx.next_due_at(skip_ids, skip_endpoints, skip_teams, skip_hosts)
        )

    async def due_messages(
        self,
        now: float,
        limit: int,
        skip_ids: Collection[str] = (),
        skip_endpoints: Collection[tuple[str, str]] = (),
        skip_teams: Collection[str] = (),
        skip_hosts: Collection[str] = (),
    ) -> list[OutboxMessage]:
        """Pending messages whose next attempt is due, oldest due first (read only),
        leaving out the given ids, (team_id, url) endpoints, teams and hosts: the ones the
        deliverer cannot send now must not fill the batch in front of those it can (one
        team's thousands of due messages would hide every other team's)."""
        return await self._read(
            lambda tx: tx.due_messages(now, limit, skip_ids, skip_endpoints, skip_teams, skip_hosts)
        )

    async def claim(self, message_id: str, now: float, lease_until: float) -> bool:
        """Take one due message (its next attempt moves to `lease_until`, so a crash mid-
        delivery makes it due again then); False if it is no longer due."""
        return await self._write(lambda tx: tx.claim_message(message_id, now, lease_until))

    async def record_attempt(
        self,
        message_id: str,
        at: float,
        *,
        status_code: int | None,
        latency_ms: float,
        response: str | None,
        error: str | None,
        state: str,
        next_attempt_at: float | None,
    ) -> None:
        attempt = Attempt(0, at, status_code, latency_ms, response, error)
        await self._write(
            lambda tx: outbox.record_attempt(
                tx, message_id, attempt, state=state, next_attempt_at=next_attempt_at
            )
        )

    async def messages_for_request(
        self, team_id: str | None, request_id: str
    ) -> list[tuple[OutboxMessage, list[Attempt]]]:
        def unit(tx: Tx) -> list[tuple[OutboxMessage, list[Attempt]]]:
            found = tx.messages_for_request(team_id, request_id)
            return [(message, tx.attempts(message.id)) for message in found]

        return await self._read(unit)

    async def resend(self, message_id: str, now: float) -> OutboxMessage | None:
        return await self._write(lambda tx: outbox.resend(tx, message_id, now))

    async def recover(self, since: float, now: float, team_id: str | None = None) -> int:
        """Queue again every failed or disabled message created since `since`."""
        return await self._write(lambda tx: tx.requeue_failed(since, now, team_id))

    # -- what operators look at (the console): reads only ---------------------------------

    async def runs_in_flight(self, limit: int = 200) -> list[RunView]:
        return await self._read(lambda tx: tx.runs_in_flight(limit))

    async def recent_requests(self, limit: int = 100, team: str | None = None) -> list[RequestView]:
        """The latest requests, of team `team` (a name) or of all; an unknown team raises."""

        def unit(tx: Tx) -> list[RequestView]:
            team_id = None if team is None else teams.team_named(tx, team).id
            return tx.recent_requests(limit, team_id)

        return await self._read(unit)

    async def finished_polls(self, limit: int = 500) -> list[tuple[float, int]]:
        """(seconds from send to finish, upstream polls) of the latest completed runs."""
        return await self._read(lambda tx: tx.finished_polls(limit))

    async def finished_durations(self, limit: int = 500) -> list[float]:
        """Seconds from send to finish of the latest completed runs."""
        return [seconds for seconds, _ in await self.finished_polls(limit)]

    async def endpoints(self, limit: int = 100) -> list[Endpoint]:
        return await self._read(lambda tx: tx.endpoints(limit))

    async def recent_messages(self, limit: int = 50) -> list[tuple[OutboxMessage, str]]:
        return await self._read(lambda tx: tx.recent_messages(limit))

    async def upstream_pause(self) -> tuple[float, float]:
        """(paused_until, submits_until): until when every process holds its calls back."""
        return await self._read(lambda tx: tx.budget_times())
