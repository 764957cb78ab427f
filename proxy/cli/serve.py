"""`python -m proxy serve`: bind the port first, refuse to start beside a live process
under the same instance id, start the embedded fake upstream when asked (its time scale
and plan carried into the gateway's poll schedule and budget), print the demo banner,
and run uvicorn until a signal, stopping the fake on the way out."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import errno
import secrets
import signal
import socket
import sys
import threading
import time
from collections.abc import Iterator
from types import FrameType
from urllib.parse import urlsplit

from pydantic import SecretStr

from proxy.cli.banner import print_demo
from proxy.cli.common import load_settings
from proxy.cli.embedded import EmbeddedFake, start_fake
from proxy.cli.workers import serve_workers
from proxy.core.config import ProxySettings
from proxy.core.errors import GatewayError
from proxy.db import StoreError
from proxy.store import open_store
from proxy.store.backends import location

__all__ = ["run_serve"]

FAKE_PORT = "embedded_fake_port"  # what the store remembers between starts of `make run`
TWIN_MARGIN = 3.0  # seconds a due heartbeat may be late (a busy store) before it is missed
TWIN_WATCH_STEP = 0.25


def run_serve(args: argparse.Namespace) -> int:
    """Serve until a signal: 0 after a graceful stop, 130 after Ctrl-C, 3 when the app
    failed to start, 4 with no upstream to serve."""
    # Imported here, not at the top: the app and uvicorn (with watchfiles and
    # multiprocessing) are ~0.1 s of imports that admin, migrate and nginx-config never
    # use, and main imports this module for every command.
    import uvicorn

    from proxy.app import create_app
    from proxy.edge.connections import uvicorn_options

    settings = load_settings(
        args, host=args.host, port=args.port, public_url=args.public_url,
        upstream_url=args.upstream_url, clock=args.clock, log_level=args.log_level,
        instance_id=args.instance_id, workflow_modules=args.workflow_modules,
    )  # fmt: skip
    workers = getattr(args, "workers", None)
    workers = 1 if workers is None else workers
    if workers < 1 or (workers > 1 and settings.clock == "virtual"):
        print("--workers takes 1 or more, and more than 1 needs the system clock (a virtual "
              "clock is moved through one process's admin API; each worker keeps its own)",
              file=sys.stderr)  # fmt: skip
        return 2
    with_fake = args.with_fake and settings.upstream_key is None and settings.upstream_url is None
    if settings.upstream_key is None and not with_fake:
        print(
            "no upstream key: set SEGMIND_API_KEY, or pass --with-fake to run against the fake",
            file=sys.stderr,
        )
        return 4
    # The port first: a second `make run` must fail here, before it touches the store
    # (a new demo key, the first one's runs taken over) or starts a fake.
    listener = _bind(settings.host, settings.port)
    fake = None
    try:
        port = listener.getsockname()[1]  # the one the system picked, for --port 0
        settings = settings.model_copy(update={"port": port})
        # The default id is this host and port, and this process holds the port now: no
        # live process on this host can have it, so a fresh heartbeat under it is this
        # gateway's own previous run (killed), whose runs it takes back at once.
        default_id = settings.instance_id is None
        settings = settings.model_copy(update={"instance_id": settings.instance})
        if not default_id:
            _refuse_a_live_twin(settings)
        if with_fake:
            fake_args = [*args.fake_args.split(), *_workflow_flags(settings)]
            scaled = _scaled_for(fake_args, settings)
            fake = _start_fake(settings, _with_plan(fake_args, scaled, settings))
            settings = settings.model_copy(
                update={
                    "upstream_url": fake.url,
                    "upstream_key": fake.key_secret(),
                    **scaled,
                    # A local demo's webhook receiver listens on loopback.
                    "webhook_allow_networks": [
                        *settings.webhook_allow_networks,
                        "127.0.0.0/8",
                        "::1/128",
                    ],
                    # The fake never loads the image and charges no real money, and the
                    # default image (on Segmind's storage) is out of reach offline: the
                    # check would only refuse the demo. Setting it explicitly still wins.
                    "image_preflight": "image_preflight" in settings.model_fields_set
                    and settings.image_preflight,
                    # Kept outputs are copied from the fake's own asset URLs.
                    "output_allow_hosts": [
                        *settings.output_allow_hosts,
                        urlsplit(fake.url).hostname or "127.0.0.1",
                    ],
                    "output_allow_networks": [
                        *settings.output_allow_networks,
                        "127.0.0.0/8",
                        "::1/128",
                    ],
                }
            )
        else:
            print(f"upstream: {settings.upstream_base_url}", flush=True)
        if args.demo_team:
            minted_admin = settings.admin_key is None
            if settings.metrics_token is None and minted_admin:
                # For this run only: /metrics wants a credential, and a demo shows how.
                minted = SecretStr(secrets.token_urlsafe(24))
                settings = settings.model_copy(update={"metrics_token": minted})
            if minted_admin:
                # For this run only, likewise: the console (/admin/ui) opens with the admin key.
                admin_key = SecretStr(secrets.token_urlsafe(24))
                settings = settings.model_copy(update={"admin_key": admin_key})
            print_demo(settings, fake=fake is not None, minted_admin=minted_admin)
        where = f"http://{settings.host}:{settings.port}"
        print(f"gateway listening on {where}" + (f" ({workers} workers)" if workers > 1 else ""),
              flush=True)  # fmt: skip

        def serve_one(settings: ProxySettings, listener: socket.socket) -> int:
            config = uvicorn.Config(
                create_app(settings), log_config=None, access_log=False,
                **uvicorn_options(settings),  # head/body deadlines, connection caps
            )  # fmt: skip
            server = uvicorn.Server(config)
            try:
                with _sigterm_as_exit():
                    server.run(sockets=[listener])
            except KeyboardInterrupt:  # Ctrl-C: uvicorn has shut down gracefully already
                return 130
            # 3: uvicorn has logged why (the gateway's start-up failed)
            return 0 if server.started else 3

        if workers > 1:
            return serve_workers(settings, listener, workers, serve_one)
        return serve_one(settings, listener)
    finally:
        listener.close()
        if fake is not None:
            fake.stop()
    return 0


def _bind(host: str, port: int) -> socket.socket:
    """The gateway's listening socket, bound (uvicorn listens on it once the app is up)."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    listener = socket.socket(family, socket.SOCK_STREAM)
    listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as uvicorn binds
    try:
        listener.bind((host, port))
    except OSError as exc:
        listener.close()
        if exc.errno == errno.EADDRINUSE:
            raise GatewayError(
                f"port {port} on {host} is in use, by another gateway (`make run` already "
                f"running?) or another program; nothing was changed. Stop it, or start this "
                f"one on another port: `PORT={port + 1} make run` or `--port {port + 1}`"
            ) from None
        raise GatewayError(f"cannot listen on {host}:{port}: {exc.strerror}") from None
    return listener


def _refuse_a_live_twin(settings: ProxySettings) -> None:
    """Two live processes under one instance id would both poll (and take back) the same
    runs: refuse to start, having changed nothing in the store.

    A fresh heartbeat alone does not tell a live twin from this process's own previous
    run, killed a moment ago (whose runs a restart must take back at once). A live process
    beats every `lease_seconds / 3`: watch for that next beat, read-only. It comes: a
    twin, refused. The row is released (a clean stop) or stays still: proceed."""
    seen = _heartbeat_of(settings)
    now = time.time()
    if seen is None or seen < now:
        return
    # It last beat at `seen - lease_seconds` (our lease; processes on one store share it).
    next_beat = seen - settings.lease_seconds + settings.lease_seconds / 3
    deadline = max(next_beat, now) + TWIN_MARGIN
    print(
        f"instance id {settings.instance!r} has a fresh heartbeat on this store; waiting up "
        f"to {deadline - now:.0f} s for its next one, to tell a live process from a "
        "killed one",
        file=sys.stderr,
        flush=True,
    )
    while time.time() < deadline:
        time.sleep(TWIN_WATCH_STEP)
        latest = _heartbeat_of(settings)
        if latest is None or latest < time.time():
            return  # released by a clean stop, or lapsed
        if latest > seen:
            raise GatewayError(
                f"a live gateway process on store {location(settings.db)} already "
                f"has instance id {settings.instance!r} (it beat again just now); starting "
                "would take over its runs. Give this process its own id with --instance-id "
                "or PROXY_INSTANCE_ID (or another port, `PORT=...`, when the id is the "
                "default host:port). Nothing was changed"
            )
    return  # no beat when one was due: that process is gone; this one takes its runs


def _heartbeat_of(settings: ProxySettings) -> float | None:
    """Until when the store holds this instance id alive (None: no row), read-only."""
    try:
        store = open_store(settings.db, create=False, wait=True)
    except (OSError, StoreError):
        return None  # a new store has no processes; or not readable now: start says why
    try:
        twin = next((i for i in asyncio.run(store.instances()) if i.id == settings.instance), None)
    except StoreError:
        return None
    finally:
        store.close()
    return None if twin is None else twin.alive_until


def _workflow_flags(settings: ProxySettings) -> list[str]:
    """The embedded fake serves the workflows the gateway was told of, too."""
    return [flag for name in settings.workflow_modules for flag in ("--workflow-module", name)]


def _start_fake(settings: ProxySettings, fake_args: list[str]) -> EmbeddedFake:
    """The fake on the port it had last time on this store, so that results cached then
    (their video URLs name that port) still download."""
    store = open_store(settings.db)
    try:
        before = asyncio.run(store.remembered(FAKE_PORT))
        fake = start_fake(settings.host, fake_args, port=before)
        if before is None:
            asyncio.run(store.remember(FAKE_PORT, fake.port))
    finally:
        store.close()
    print(f"upstream: the fake Segmind at {fake.url} (no SEGMIND_API_KEY set)", flush=True)
    if before is not None and fake.port != before:
        print(
            f"the fake's usual port {before} is busy (another `make run` on this store?), so "
            f"it runs on {fake.port}: video URLs of runs it makes name {fake.port}, and stop "
            "downloading once this gateway stops",
            file=sys.stderr,
            flush=True,
        )
    return fake


@contextlib.contextmanager
def _sigterm_as_exit() -> Iterator[None]:
    """After a graceful shutdown uvicorn re-raises the signal that asked for it; SIGTERM's
    default action would end the process on the spot, skipping the `finally` that stops
    the embedded fake (an orphan on a port). Exit through Python instead."""

    def exit_(signum: int, frame: FrameType | None) -> None:
        raise SystemExit(128 + signum)

    if threading.current_thread() is not threading.main_thread():
        yield  # only the main thread may set handlers; uvicorn sets none there either
        return
    previous = signal.signal(signal.SIGTERM, exit_)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


def _scaled_for(fake_args: list[str], settings: ProxySettings) -> dict[str, float]:
    """A time-scaled fake runs jobs in seconds: scale the poll schedule's expectations
    with it, so the demo is polled as densely, relatively, as real Segmind would be."""
    if "--time-scale" not in fake_args:
        return {}
    try:
        scale = float(fake_args[fake_args.index("--time-scale") + 1])
    except (IndexError, ValueError):
        return {}
    scaled: dict[str, float] = {
        "expected_run_seconds": settings.expected_run_seconds * scale,
        "poll_target_delay": settings.poll_target_delay * scale,
        "upstream_events_poll_delay": settings.upstream_events_poll_delay * scale,
        "poll_min_interval": max(settings.poll_min_interval * scale, 0.05),
        "poll_interval": max(settings.poll_interval * scale, 0.05),
    }
    if scale > 0:
        # Runs 1/scale times faster poll 1/scale times as often; the company budget (and
        # the fake's plan, `_with_plan`) scales with them, or one user's demo runs wait
        # for it. Rate windows stay a real minute on both sides.
        budget = max(1, round(settings.upstream_requests_per_minute / scale))
        plan = _plan_of(fake_args)
        scaled["upstream_requests_per_minute"] = min(budget, plan) if plan else budget
    return scaled


def _plan_of(fake_args: list[str]) -> int | None:
    """The requests a minute a `--plan` in the fake's flags allows (None: no limit given,
    0: unlimited)."""
    if "--plan" not in fake_args or fake_args.index("--plan") + 1 >= len(fake_args):
        return None
    # The fake's plan names (fakeserver --help); the gateway never imports the fake.
    value = fake_args[fake_args.index("--plan") + 1].lower()
    named = {"free": 5, "pro": 50, "unlimited": 0}
    return int(value) if value.isdigit() else named.get(value)


def _with_plan(
    fake_args: list[str], scaled: dict[str, float], settings: ProxySettings
) -> list[str]:
    """The fake's flags with a `--plan` equal to the gateway's company budget, unless one
    is given: a budget at or under the upstream's limit, counted in a sliding window as
    the fake counts it, can never draw a 429."""
    if "--plan" in fake_args:
        return fake_args
    budget = int(scaled.get("upstream_requests_per_minute", settings.upstream_requests_per_minute))
    return [*fake_args, "--plan", str(budget)]
