"""Mutation bench: do the tests notice when a rule that costs money or leaks a secret breaks?

A hand-written set of mutants, one small edit each, over the rules where a silent bug is
paid for: admission (idempotency, concurrency, budgets), the company's upstream window,
terminal states and refunds, the canonical cache key, SSRF, webhook signing and
verification, key scrubbing and the submit-retry rule. Each mutant is applied to a copy
of the tracked files (never to the working tree), only the tests of its area are run
against it (`-x`, with a timeout), and the mutant is CAUGHT (by the first failing test)
or SURVIVED. The closing line gives the figure: `caught N of M (ratio)`.

A bench, not a gate: nothing in `make test` runs the whole set (a smoke test runs one
mutant). Before any mutant, the unmutated copy must pass every selected test set, else
the figure means nothing and the run exits 2; a mutant whose original text no longer
occurs exactly once (the code moved on) fails the run loudly too.

    python bench/mutation.py [--jobs 2] [--only NAME ...] [--list]

About 5 minutes for the whole set on two idle cores (SQLite-backed tests; the PostgreSQL
store's tests run only for the locks, which SQLite does not need). Four mutants survive,
each equivalent for the reason written beside it.
"""

from __future__ import annotations

import argparse
import os
import queue
import re
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
TIMEOUT = 90.0  # seconds per pytest run; a mutant that hangs the tests counts as caught
# A hung test fails in 30 s under pytest-timeout, and is named like any other failure.
PYTEST = ("-x", "-q", "-p", "no:cacheprovider", "--timeout=30", "-k", "not postgresql")

STORE = ("tests/store",)  # the contract suite, on SQLite only (`-k` above: fast)
AREAS: dict[str, tuple[str, ...]] = {
    "admission": ("tests/proxy/test_admission.py", "tests/proxy/test_limits.py", *STORE),
    "budget": ("tests/proxy/test_upstream_budget.py", *STORE),
    "runs": ("tests/proxy/test_limits.py", "tests/proxy/test_admission.py", *STORE),
    "key": ("tests/proxy/test_cache_key.py", "tests/proxy/test_admission.py"),
    "ssrf": ("tests/proxy/test_ssrf.py",),
    "signing": (
        "tests/proxy/test_webhook_messages.py",
        "tests/client/test_webhooks.py",
        "tests/proxy/test_webhooks.py",
    ),
    "scrub": (
        "tests/client/test_scrub.py",
        "tests/client/test_errors.py",
        "tests/proxy/test_secrets.py",
        "tests/proxy/test_key_never_leaks.py",
    ),
    "retry": ("tests/proxy/test_upstream_errors.py", "tests/proxy/test_limits.py"),
}
# Locks that only PostgreSQL takes (SQLite serialises every writer): their races.
PG_RACES = ("tests/store/test_contract.py", "-k", "postgresql and (three_processes or overshot)")


@dataclass(frozen=True)
class Mutant:
    name: str
    area: str
    path: str
    original: str
    mutated: str
    breaks: str
    tests: tuple[str, ...] = ()  # instead of the area's tests

    @property
    def selection(self) -> tuple[str, ...]:
        return self.tests or AREAS[self.area]


M = Mutant
MUTANTS: tuple[Mutant, ...] = (
    # -- admission: what a request is charged, and when it is refused
    M(
        "admission-fingerprint",
        "admission",
        "proxy/rules/admission.py",
        "    if fingerprint != ask.fingerprint:",
        "    if False:",
        "an Idempotency-Key replays another body's answer",
    ),
    M(
        "admission-team-lock",
        "admission",
        "proxy/rules/admission.py",
        '    tx.lock_name(f"scope:{ask.scope_key}")\n    tx.lock_team(team.id)\n',
        '    tx.lock_name(f"scope:{ask.scope_key}")\n',
        "two processes admit past a team's limits at once",
        PG_RACES,
    ),
    M(
        "admission-scope-lock",
        "admission",
        "proxy/rules/admission.py",
        '    tx.lock_name(f"scope:{ask.scope_key}")\n',
        "",
        "two identical requests both pay for a run",
        PG_RACES,
    ),
    M(
        "admission-concurrency",
        "admission",
        "proxy/rules/admission.py",
        "    if count >= limit:",
        "    if count > limit:",
        "one run more than the concurrency limit",
    ),
    M(
        "admission-budget-epsilon",
        "admission",
        "proxy/rules/admission.py",
        "if spent + price > budget + 1e-9:",
        "if spent + price > budget:",
        "float noise refuses the run that exactly fills a budget",
    ),
    M(
        "admission-budget-price",
        "admission",
        "proxy/rules/admission.py",
        "if spent + price > budget + 1e-9:",
        "if spent > budget + 1e-9:",
        "a budget overshot by the run that crosses it",
    ),
    M(
        "admission-no-charge",
        "admission",
        "proxy/rules/admission.py",
        "        tx.add_spend(team.id, (day, month), ask.price)\n",
        "",
        "a paid run is never charged against the budgets",
    ),
    M(
        "admission-monthly",
        "admission",
        "proxy/rules/admission.py",
        "            team.limits.monthly_budget,",
        "            None,",
        "the monthly budget is never checked",
    ),
    M(
        "admission-no-cache",
        "admission",
        "proxy/rules/admission.py",
        "if ask.no_cache else _shared(tx, ask, now)",
        "if False else _shared(tx, ask, now)",
        "no_cache answers a cached result",
    ),
    M(
        "admission-rate-kept",
        "admission",
        "proxy/rules/admission.py",
        '        tx.set_rate_tat(team.id, "submits", rate.tat)',
        "        pass",
        "the submit rate never advances",
    ),
    # -- the company's upstream window
    M(
        "budget-margin",
        "budget",
        "proxy/rules/budget.py",
        "SPAN = WINDOW + MARGIN  #",
        "SPAN = WINDOW  #",
        "a call granted a window after another lands in the upstream's window",
    ),
    M(
        "budget-room",
        "budget",
        "proxy/rules/budget.py",
        "    if window.calls + need <= per_minute:",
        "    if window.calls + need <= per_minute + 1:",
        "one call a window over Segmind's limit",
    ),
    M(
        "budget-pause",
        "budget",
        "proxy/rules/budget.py",
        "    if now < window.paused_until:",
        "    if False:",
        "calls go on after an upstream 429",
    ),
    M(
        "budget-polls-step-aside",
        "budget",
        "proxy/rules/budget.py",
        "        if now < window.submits_until:",
        "        if False:",
        "polls take the slot a waiting paid submit needs",
    ),
    M(
        "budget-overtake",
        "budget",
        "proxy/rules/budget.py",
        "wait = _wait(tx, now, per_minute, window, need=ahead + 1) if ahead else 0.0",
        "wait = 0.0",
        "a later-admitted run overtakes a waiting one",
    ),
    M(
        "budget-forget-all",
        "budget",
        "proxy/rules/budget.py",
        "window.calls -= tx.forget_calls(now - span)",
        "window.calls -= tx.forget_calls(now)",
        "calls still in the window are forgotten",
    ),
    M(
        "budget-call-unrecorded",
        "budget",
        "proxy/rules/budget.py",
        "        tx.add_call(now)\n",
        "",
        "a granted call is not stored: other processes do not see it",
    ),
    # -- terminal states, refunds, fencing
    # Survives, equivalent: `_refund` is reached only past record_status's terminal guard,
    # under the run's lock, so a run is refunded once even without its own flag.
    M(
        "runs-refund-once",
        "runs",
        "proxy/rules/runs.py",
        "    if refunded or day is None or month is None:",
        "    if day is None or month is None:",
        "a failed run refunded twice",
    ),
    M(
        "runs-terminal-final",
        "runs",
        "proxy/rules/runs.py",
        "    if current.terminal:\n        return current",
        "    pass",
        "a terminal state overwritten (and refunded, and notified, again)",
    ),
    M(
        "runs-fence",
        "runs",
        "proxy/rules/runs.py",
        "    if fence is not None and held is not None and held != (fence.instance, fence.token):",
        "    if False:",
        "a writer that lost its lease overwrites the new owner",
    ),
    M(
        "runs-fence-token",
        "runs",
        "proxy/rules/runs.py",
        "held != (fence.instance, fence.token)",
        "held[0] != fence.instance",
        "a stale lease of the same instance still writes",
    ),
    M(
        "runs-refund-completed",
        "runs",
        "proxy/rules/runs.py",
        '    if status != "COMPLETED" and refund:',
        "    if refund:",
        "a completed run refunded",
    ),
    M(
        "runs-no-refund",
        "runs",
        "proxy/rules/runs.py",
        "        _refund(tx, generation_id)",
        "        pass",
        "a failed run never refunded",
    ),
    # Survives, equivalent: the HIT read (`Tx.shared`) serves only COMPLETED runs, so the
    # cache row a failed run gets is never served, and expires.
    M(
        "runs-cache-failed",
        "runs",
        "proxy/rules/runs.py",
        '    if status == "COMPLETED" and cache_ttl > 0:',
        "    if cache_ttl > 0:",
        "a failed run is cached and served as a HIT",
    ),
    # -- the canonical key
    M(
        "key-workflow",
        "key",
        "proxy/core/cache.py",
        "[workflow_id, inputs], sort_keys=True",
        "[inputs], sort_keys=True",
        "two workflows' runs share a key",
    ),
    M(
        "key-team-scope",
        "key",
        "proxy/core/cache.py",
        'f"team:{team_id}:{key}"',
        'f"team:{key}"',
        "one team is served another team's result",
    ),
    M(
        "key-order",
        "key",
        "proxy/core/cache.py",
        "sort_keys=True",
        "sort_keys=False",
        "key order makes identical requests pay twice",
    ),
    M(
        "key-defaults",
        "key",
        "proxy/core/cache.py",
        "            return validate_inputs(body, workflow)",
        "            validate_inputs(body, workflow)\n            return dict(body)",
        "{} and the spelled-out defaults pay twice",
    ),
    # -- SSRF
    # Survives, equivalent on Python 3.11: every network in ipaddress's registries is in the
    # tables, embeds a refused IPv4 address or is reserved; the arm is for later registries.
    M(
        "ssrf-stdlib-fallback",
        "ssrf",
        "proxy/core/ssrf/policy.py",
        "    if ip.is_reserved or not ip.is_global:",
        "    if ip.is_reserved:",
        "a non-global address the tables leave out is called",
    ),
    M(
        "ssrf-embedded",
        "ssrf",
        "proxy/core/ssrf/policy.py",
        'return None if inner is None else f"{form} for {v4}, {inner}"',
        "return None",
        "::ffff:127.0.0.1 and its kind are called",
    ),
    M(
        "ssrf-every-address",
        "ssrf",
        "proxy/core/ssrf/resolution.py",
        "    for address in addresses:\n        reason = policy.refusal_reason(address)",
        "    for address in addresses[:1]:\n        reason = policy.refusal_reason(address)",
        "a host with one public and one private record is accepted",
    ),
    M(
        "ssrf-octal",
        "ssrf",
        "proxy/core/ssrf/syntax.py",
        '    elif len(part) > 1 and part.startswith("0"):',
        "    elif False:",
        "0177.0.0.1 read as a public 177.0.0.1",
    ),
    M(
        "ssrf-metadata",
        "ssrf",
        "proxy/core/ssrf/policy.py",
        '        ("169.254.0.0/16", "a link-local address"),\n',
        "",
        "link-local addresses left to the stdlib's fallback",
    ),
    # -- webhook signing and verification
    M(
        "sign-rotation",
        "signing",
        "proxy/core/webhooks.py",
        "for s in secrets_)",
        "for s in secrets_[:1])",
        "a receiver holding the new secret of a rotation rejects every message",
    ),
    M(
        "sign-timestamp",
        "signing",
        "proxy/core/webhooks.py",
        "    moment = dt.datetime.fromtimestamp(int(timestamp), dt.UTC)",
        "    moment = dt.datetime.fromtimestamp(0, dt.UTC)",
        "the signature does not cover the timestamp sent",
    ),
    M(
        "verify-too-old",
        "signing",
        "client/_webhooks.py",
        "    if sent < now - WEBHOOK_TOLERANCE:",
        "    if False:",
        "a recorded delivery replayed days later is accepted",
    ),
    M(
        "verify-any-signature",
        "signing",
        "client/_webhooks.py",
        'if version == "v1" and hmac.compare_digest(expected, base64.b64decode(signature)):',
        'if version == "v1":',
        "any v1 signature is accepted",
    ),
    # -- key scrubbing
    M(
        "scrub-first-only",
        "scrub",
        "client/_errors.py",
        "            text = pattern.sub(marker, text)",
        "            text = pattern.sub(marker, text, count=1)",
        "only the first occurrences of the key are masked",
    ),
    M(
        "scrub-literal-only",
        "scrub",
        "client/_errors.py",
        "            return self._spelled",
        "            return self._literal",
        "a percent- or JSON-escaped key is not masked",
    ),
    M(
        "scrub-header-values",
        "scrub",
        "client/_boundary.py",
        "scrubber.found_in(name) or scrubber.found_in(value) for name, value in items",
        "scrubber.found_in(name) for name, value in items",
        "a key echoed in a header value is handed on",
    ),
    M(
        "scrub-exception-chain",
        "scrub",
        "client/_boundary.py",
        "        link = link.__cause__ or link.__context__",
        "        link = None",
        "httpx's exception under a SegmindError keeps the key",
    ),
    # Survives, equivalent: the client scrubs every answer at its boundary with the same
    # Scrubber and key before a JobStatus exists; this is the gateway's second line.
    M(
        "scrub-poll-answers",
        "scrub",
        "proxy/services/upstream.py",
        "        if not redactor.contains_secret(text):\n            return status",
        "        return status",
        "a poll answer echoing the key is stored and served",
    ),
    # -- the submit-retry rule
    M(
        "retry-sent-submit",
        "retry",
        "proxy/services/upstream.py",
        "if exc.nothing_sent and self._blip(call) and attempt + 1 < SUBMIT_CONNECT_TRIES:",
        "if attempt + 1 < SUBMIT_CONNECT_TRIES:",
        "a submit that may have started a run is sent again (paid twice)",
    ),
    M(
        "retry-timeout-sent",
        "retry",
        "client/_errors.py",
        '    """No answer arrived in time."""\n',
        '    """No answer arrived in time."""\n\n    nothing_sent = True\n',
        "a read timeout taken for a connection that never opened",
    ),
    M(
        "retry-unconfirmed",
        "retry",
        "proxy/services/upstream.py",
        'if action == "submit" and not isinstance(exc, client.ConnectError | client.APIError):',
        "if False:",
        "an unconfirmed submit is told it cost nothing",
    ),
)


@dataclass(frozen=True)
class Outcome:
    mutant: Mutant
    caught: bool
    by: str
    seconds: float


def tracked_copy(into: Path) -> Path:
    """The tracked files (as they are in the working tree) copied under `into`."""
    listed = subprocess.run(
        ["git", "ls-files", "-z"], cwd=ROOT, capture_output=True, check=True
    ).stdout.decode()
    for name in filter(None, listed.split("\0")):
        source = ROOT / name
        if source.is_file():
            target = into / name
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(source, target)
    return into


def _env(copy: Path) -> dict[str, str]:
    env = dict(os.environ)
    # The copy first on the path, also for the servers the tests start: the editable
    # install would otherwise import the working tree's unmutated code.
    env["PYTHONPATH"] = str(copy)
    for name in ("COVERAGE_PROCESS_START", "COVERAGE_PROCESS_CONFIG"):
        env.pop(name, None)
    return env


_FAILED = re.compile(r"^(?:FAILED|ERROR) (\S+)", re.MULTILINE)


def run_tests(copy: Path, selection: Sequence[str]) -> tuple[bool, str]:
    """(passed, the first failing test or why it failed) for `selection` in `copy`."""
    try:
        done = subprocess.run(
            # A later -k wins: PG_RACES selects the PostgreSQL tests back.
            [sys.executable, "-m", "pytest", *PYTEST, *selection],
            cwd=copy,
            env=_env(copy),
            capture_output=True,
            text=True,
            timeout=TIMEOUT,
            check=False,
        )
    except subprocess.TimeoutExpired:
        return False, f"timeout after {TIMEOUT:g} s"
    if done.returncode == 0:
        return True, ""
    found = _FAILED.search(done.stdout)
    if found:
        return False, found.group(1)
    tail = (done.stdout + done.stderr).strip().splitlines()
    return False, f"pytest exit {done.returncode}: {tail[-1] if tail else ''}"


def check_mutants(mutants: Sequence[Mutant]) -> None:
    for mutant in mutants:
        count = (ROOT / mutant.path).read_text().count(mutant.original)
        if count != 1:
            raise SystemExit(
                f"stale mutant {mutant.name}: its original text occurs {count} times in "
                f"{mutant.path} (must be exactly once); update the mutant list"
            )


def check_imports(copy: Path) -> None:
    done = subprocess.run(
        [sys.executable, "-c", "import client, proxy; print(proxy.__file__, client.__file__)"],
        cwd=copy,
        env=_env(copy),
        capture_output=True,
        text=True,
        check=True,
    )
    if any(not Path(p).is_relative_to(copy) for p in done.stdout.split()):
        raise SystemExit(f"the copy's tests would import another tree: {done.stdout.strip()}")


def mutate(copy: Path, mutant: Mutant) -> Outcome:
    target = copy / mutant.path
    source = target.read_text()
    target.write_text(source.replace(mutant.original, mutant.mutated, 1))
    started = time.perf_counter()
    try:
        passed, by = run_tests(copy, mutant.selection)
    finally:
        target.write_text(source)
    return Outcome(mutant, not passed, by, time.perf_counter() - started)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else "")
    parser.add_argument("--jobs", type=int, default=2, help="copies tested side by side")
    parser.add_argument(
        "--only", action="append", default=[], help="run mutants whose name contains this"
    )
    parser.add_argument("--list", action="store_true", help="list the mutants and exit")
    args = parser.parse_args(argv)

    chosen = [m for m in MUTANTS if not args.only or any(o in m.name for o in args.only)]
    if not chosen:
        parser.error(f"no mutant matches {args.only}")
    if args.list:
        for m in chosen:
            print(f"{m.name:28} {m.path:28} {m.breaks}")
        return 0
    check_mutants(MUTANTS)  # all of them: a stale entry fails even a partial run

    started = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="mutation-") as tmp:
        jobs = max(1, min(args.jobs, len(chosen)))
        copies = [tracked_copy(Path(tmp) / f"copy{i}") for i in range(jobs)]
        check_imports(copies[0])
        selections = sorted({m.selection for m in chosen})
        for selection in selections:
            passed, by = run_tests(copies[0], selection)
            if not passed:
                print(f"INVALID: the unmutated code fails {' '.join(selection)}: {by}")
                return 2
        print(f"baseline: {len(selections)} test selections pass unmutated")

        todo: queue.Queue[Mutant] = queue.Queue()
        for m in chosen:
            todo.put(m)
        outcomes: list[Outcome] = []
        lock = threading.Lock()

        def work(copy: Path) -> None:
            while True:
                try:
                    mutant = todo.get_nowait()
                except queue.Empty:
                    return
                outcome = mutate(copy, mutant)
                verdict = f"caught by {outcome.by}" if outcome.caught else "SURVIVED"
                with lock:
                    outcomes.append(outcome)
                    print(
                        f"{mutant.name:28} {outcome.seconds:5.1f} s  {verdict}"
                        + ("" if outcome.caught else f"  ({mutant.breaks})"),
                        flush=True,
                    )

        threads = [threading.Thread(target=work, args=(c,)) for c in copies]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()

    caught = sum(o.caught for o in outcomes)
    survivors = [o.mutant.name for o in outcomes if not o.caught]
    print(f"survivors: {', '.join(survivors) if survivors else 'none'}")
    print(
        f"caught {caught} of {len(outcomes)} ({caught / len(outcomes):.2f}) "
        f"in {time.perf_counter() - started:.0f} s"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
