"""The store as the rest of the gateway sees it: named async methods, each one unit of
work of the rules (`proxy/rules/`) run by whichever backend the `db` setting names.

Nothing here, or above, knows which backend it runs on. Writes run as transactions;
reads see the latest commits. Every storage failure is `StorageUnavailable`; every
refusal is a `RuleError`.

Most methods only run one rule (or one `Tx` read) with their own arguments: those are
declared in one line each, `name = _writes(rule)` or `_reads(rule)`, and take the rule's
parameters as they are written there. Methods that do more are written out.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Collection, Coroutine
from typing import Any, Concatenate, ParamSpec, TypeAlias, TypeVar

from proxy.core.quotas import budget_periods
from proxy.db.backend import Backend, Listener
from proxy.db.errors import StorageUnavailable
from proxy.db.records import Admission, Attempt, OutboxMessage, RequestView, Team
from proxy.db.tx import Tx
from proxy.rules import admission, alerts, balance, budget, leases, outbox, outputs, runs
from proxy.rules import teams as team_rules  # aliased: `Store.teams` is a method
from proxy.rules import usage as usage_rules  # aliased: `Store.usage` is a method
from proxy.rules.admission import AdmissionRequest
from proxy.store.backends import open_backend
from proxy.store.breaker import Breaker

__all__ = ["Store", "open_store"]

P = ParamSpec("P")
T = TypeVar("T")
AUTH_CACHE_SIZE = 10_000  # key hashes remembered between auth changes

# A Store method made from a unit of work: the unit's parameters after its `Tx`.
_Method: TypeAlias = Callable[Concatenate["Store", P], Coroutine[Any, Any, T]]


def open_store(url: str, *, create: bool = True, wait: bool = False) -> Store:
    """The store the `db` setting names (a path, sqlite:///path or postgresql://...);
    `wait`: a database server that is down is waited for, not an error."""
    return Store(open_backend(url, create=create, wait=wait))


def _writes(unit: Callable[Concatenate[Tx, P], T], doc: str | None = None) -> _Method[P, T]:
    """A method running `unit` with its arguments as one write transaction."""
    return _method(unit, doc, write=True)


def _reads(unit: Callable[Concatenate[Tx, P], T], doc: str | None = None) -> _Method[P, T]:
    """A method running `unit` with its arguments for reading only."""
    return _method(unit, doc, write=False)


def _method(
    unit: Callable[Concatenate[Tx, P], T], doc: str | None, *, write: bool
) -> _Method[P, T]:
    async def method(self: Store, /, *args: P.args, **kwargs: P.kwargs) -> T:
        run = self._write if write else self._read
        return await run(lambda tx: unit(tx, *args, **kwargs))

    method.__doc__ = doc or unit.__doc__
    return method


class Store:
    def __init__(self, backend: Backend) -> None:
        # Every unit of work passes the breaker: an outage is answered at once, not
        # waited out by each caller.
        self.backend = backend
        self.breaker = Breaker(backend)
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
        return await self.breaker.write(unit)

    async def _read(self, unit: Callable[[Tx], T]) -> T:
        return await self.breaker.read(unit)

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
        self.breaker.close()

    async def unready(self) -> str | None:
        """None if a submit can be admitted now, else why not (see `Breaker.ready`)."""
        return await self.breaker.ready()

    # -- numbers a restarted process needs again ------------------------------------------

    remembered = _reads(Tx.meta)
    remember = _writes(Tx.set_meta)
    kv_get = _reads(Tx.kv)
    kv_set = _writes(Tx.set_kv)
    kv_named = _reads(Tx.kv_named)

    async def kv_delete(self, *names: str) -> None:
        def unit(tx: Tx) -> None:
            for name in names:
                tx.delete_kv(name)

        await self._write(unit)

    # -- teams and keys -------------------------------------------------------------------

    async def create_team(self, team: Team, key: tuple[str, str] | None = None) -> Team:
        """A new team, and its first key (hash, prefix) in the same unit of work: a team is
        never left without the key its creator was shown."""

        def unit(tx: Tx) -> Team:
            made = team_rules.create_team(tx, team)
            if key is not None:
                team_rules.add_key(tx, team.name, *key, team.created_at)
            return made

        return await self._write(unit)

    add_key = _writes(team_rules.add_key)
    revoke_keys = _writes(team_rules.revoke_keys)
    rotate_secret = _writes(team_rules.rotate_secret)
    set_limits = _writes(team_rules.set_limits)
    set_webhook = _writes(
        team_rules.set_webhook, "The team's own webhook URL (None: none), checked by the caller."
    )
    budget_use = _reads(
        alerts.budget_use, "Every team's spend today and this month (UTC) against its budgets."
    )
    team_secrets = _reads(team_rules.team_secrets)
    team = _reads(team_rules.team_named)
    teams = _reads(Tx.teams)
    keys = _reads(Tx.keys)

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

        try:
            version, team, looked_up = await self._read(unit)
        except StorageUnavailable:
            # No key can be revoked while the store is out: what was known still holds,
            # so known teams keep polling their finished runs (answered from memory).
            if key_hash in self._auth_cache:
                return self._auth_cache[key_hash]
            raise
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

    usage = _reads(
        usage_rules.usage,
        """Per team (by name; only `team` if given) per UTC day from `since` to `until`,
        both included: requests HIT, JOIN, MISS, runs paid, failed, refunded, dollars spent
        and saved; days without a request or run are left out. `BadPeriod` for days out of
        order or more than `MAX_DAYS` of them, `UnknownTeam` for an unknown `team`.""",
    )
    rate_tat = _reads(Tx.rate_tat)

    # -- admission ------------------------------------------------------------------------

    async def admit(self, ask: AdmissionRequest, now: float) -> Admission:
        turn = self._admitting.setdefault(ask.team.id, asyncio.Lock())
        async with turn:
            return await self._write(lambda tx: admission.admit(tx, ask, now))

    peek_admission = _reads(admission.peek)
    count_submit = _writes(admission.count_submit)

    # -- runs -----------------------------------------------------------------------------

    generation = _reads(Tx.generation)
    generation_inputs = _reads(Tx.generation_inputs)
    request = _reads(
        Tx.request_with_generation,
        "A team's request and its run; another team's id finds nothing.",
    )
    requests_of = _reads(Tx.requests_of)
    mark_submitted = _writes(runs.mark_submitted)
    record_late_upstream_id = _writes(runs.record_late_upstream_id)
    record_status = _writes(runs.record_status)
    record_poll_failure = _writes(runs.record_poll_failure)
    # -- kept outputs
    keep_outputs = _writes(outputs.keep)
    kept_outputs = _reads(outputs.kept_of)
    output_object = _reads(Tx.object_known)
    touch_outputs = _writes(Tx.touch_objects)
    outputs_signing_key = _writes(outputs.signing_key)
    expire_outputs = _writes(outputs.expire)
    outputs_summary = _reads(outputs.summary)
    copies_due = _reads(Tx.copies_due)

    async def hint(self, upstream_ids: Collection[str], now: float) -> list[str]:
        """Bring forward the next poll of the running runs with these upstream ids whose
        early poll is unspent; returns them. Ids naming no such run cost one read."""
        found = await self._read(lambda tx: tx.hintable(upstream_ids))
        if not found:
            return []
        return await self._write(lambda tx: runs.hint(tx, found, now))

    # -- instances and leases -------------------------------------------------------------

    heartbeat = _writes(leases.heartbeat)
    release = _writes(
        Tx.release, "A clean stop: the instance's runs are free for another to take at once."
    )
    claim_runs = _writes(leases.claim_runs)
    instances = _reads(Tx.instances)
    migrations_applied = _reads(Tx.migrations_applied)
    lease = _reads(
        Tx.lease, "(instance, fencing token) of the run's poller; None once the run ended."
    )

    async def lease_holder(self, generation_id: str) -> str | None:
        held = await self.lease(generation_id)
        return None if held is None else held[0]

    # -- the company's upstream budget ----------------------------------------------------

    take_upstream = _writes(budget.take)
    claim_send = _writes(budget.claim_send)
    unclaim_send = _writes(budget.unclaim_send)
    record_balance = _writes(balance.record_reading)
    upstream_balance = _reads(balance.balance)
    queue_place = _reads(
        budget.queue_place, "Where a held run stands in the fair queue (None: not WAITING)."
    )
    pause_upstream = _writes(budget.pause)
    waiting_runs = _reads(
        Tx.waiting_count,
        "How many admitted runs wait for a budget slot (never sent), in every process.",
    )
    upstream_calls_between = _reads(
        Tx.calls_between,
        "The times of the calls granted in [start, end]: for tests and operators.",
    )

    # -- the webhook outbox ---------------------------------------------------------------

    next_due_at = _reads(
        Tx.next_due_at, "When the next pending message is due, leaving out the skipped ones."
    )
    due_messages = _reads(
        Tx.due_messages,
        """Pending messages whose next attempt is due, oldest due first (read only),
        leaving out the given ids, (team_id, url) endpoints, teams and hosts: the ones the
        deliverer cannot send now must not fill the batch in front of those it can (one
        team's thousands of due messages would hide every other team's).""",
    )
    claim = _writes(
        Tx.claim_message,
        """Take one due message (its next attempt moves to `lease_until`, so a crash mid-
        delivery makes it due again then); False if it is no longer due.""",
    )

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

    resend = _writes(outbox.resend)
    recover = _writes(
        Tx.requeue_failed, "Queue again every failed or disabled message created since `since`."
    )

    # -- what operators look at (the console): reads only ---------------------------------

    runs_in_flight = _reads(Tx.runs_in_flight)

    async def recent_requests(self, limit: int = 100, team: str | None = None) -> list[RequestView]:
        """The latest requests, of team `team` (a name) or of all; an unknown team raises."""

        def unit(tx: Tx) -> list[RequestView]:
            team_id = None if team is None else team_rules.team_named(tx, team).id
            return tx.recent_requests(limit, team_id)

        return await self._read(unit)

    finished_polls = _reads(
        Tx.finished_polls,
        "(seconds from send to finish, upstream polls) of the latest completed runs.",
    )

    async def finished_durations(self, limit: int = 500) -> list[float]:
        """Seconds from send to finish of the latest completed runs."""
        return [seconds for seconds, _ in await self.finished_polls(limit)]

    request_view = _reads(Tx.request_view)
    run_requests = _reads(Tx.run_requests)
    run_by_id = _reads(Tx.run_by_id)

    async def requests_page(
        self, limit: int, team: str | None = None, before: float | None = None
    ) -> list[RequestView]:
        """Requests created before `before`, newest first, of team `team` (a name) or of
        all: one page of the console's list; an unknown team raises."""

        def unit(tx: Tx) -> list[RequestView]:
            team_id = None if team is None else team_rules.team_named(tx, team).id
            return tx.requests_before(limit, team_id, before)

        return await self._read(unit)

    endpoints = _reads(Tx.endpoints)
    recent_messages = _reads(Tx.recent_messages)
    upstream_pause = _reads(
        Tx.budget_times,
        "(paused_until, submits_until): until when every process holds its calls back.",
    )
