"""`python -m fakeserver` (or `segmind-fake`): serve the fake under uvicorn."""

from __future__ import annotations

import argparse
import socket
import sys
from collections.abc import Sequence
from typing import Any

from pydantic import ValidationError

from .settings import DEMO_KEY, FakeSettings

__all__ = ["main", "parse_args"]


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m fakeserver",
        description="A fake of Segmind's Consistent Character Video Generation workflow API.",
    )
    add = p.add_argument
    add("--host", help="address to listen on (default 127.0.0.1)")
    add("--port", type=int, help="port to listen on (default 8001; 0 picks a free one)")
    add("--public-url", help="base URL put in poll_url and asset URLs (default: served address)")
    add(
        "--api-key",
        dest="api_keys",
        action="append",
        metavar="KEY",
        help=f"a key to accept; repeat for more (default: the demo key {DEMO_KEY!r})",
    )
    add(
        "--restricted-key",
        dest="restricted_keys",
        action="append",
        metavar="KEY",
        help="a key that authenticates but may run no workflow (answers 403)",
    )
    add("--credits", type=float, help="starting credits of every key (default 1000)")
    add("--price", type=float, help="credits a run costs (default 3.9674)")
    add("--plan", help="rate limit: free (5/min), pro (50/min, default), unlimited, or a number")
    add("--time-scale", type=float, help="multiply run durations (0.01 gives ~7 s runs)")
    add("--duration-median", type=float, help="median run duration in seconds (default 673.9)")
    add("--duration-sigma", type=float, help="lognormal spread of run durations (default 0.2)")
    add("--duration-min", type=float, help="shortest run in seconds (default 300)")
    add("--duration-max", type=float, help="longest run in seconds (default 1800)")
    add(
        "--state-file",
        metavar="PATH",
        help="keep jobs, credits and a virtual clock's time in this file across restarts",
    )
    add("--result-ttl", type=float, help="seconds a result is kept after submit (default 3600)")
    add(
        "--output-ttl",
        type=float,
        metavar="SECONDS",
        help="seconds a run's output files are served after it completes (default 7 days)",
    )
    add(
        "--asset-bytes",
        type=int,
        metavar="N",
        help="make each output file N bytes (the video, then filler): realistic sizes",
    )
    add(
        "--asset-rate",
        dest="asset_bytes_per_second",
        type=float,
        metavar="BYTES_PER_SECOND",
        help="serve output files no faster than this (a slow storage host; real time)",
    )
    add("--failure-rate", type=float, help="chance that a run ends FAILED (default 0)")
    add(
        "--failure-key",
        choices=["error_message", "error", "both"],
        help="key of the FAILED reason (default error_message)",
    )
    add(
        "--dead-image-host",
        dest="dead_image_hosts",
        action="append",
        metavar="HOST",
        help="a host whose Character_Image cannot be loaded: its runs are charged, then FAILED",
    )
    add(
        "--notify-url",
        metavar="URL",
        help="POST a GRAPH_RUN-like notification (request_id, status) here when a run ends",
    )
    add("--notify-delay", type=float, help="seconds of the clock after a run ends (default 0)")
    add(
        "--notify-drop-rate",
        type=float,
        help="share of notifications never sent, seeded by --seed (default 0)",
    )
    add(
        "--unknown-inputs",
        choices=["reject", "ignore"],
        help="unknown input names: 400 (reject, default) or ignored",
    )
    add(
        "--output-key",
        dest="output_keys",
        action="append",
        metavar="NAME",
        help="output key name per scene, four times (default Scene_N_Video)",
    )
    add(
        "--workflow-module",
        dest="workflow_modules",
        action="append",
        metavar="MODULE",
        help="a Python module that registers more workflows to serve (workflows.register)",
    )
    add("--seed", type=int, help="seed for ids, durations and chaos: a reproducible run")
    add("--admin-token", help="require X-Admin-Token on /__admin endpoints")
    add(
        "--clock",
        choices=["system", "virtual"],
        help="system (default) or virtual: time stands still until /__admin/clock/advance",
    )
    add("--chaos-error-rate", type=float, help="chance of a 500/502/504 per API request")
    add("--chaos-fault-rate", type=float, help="chance of a network fault per API request")
    add("--chaos-delay-rate", type=float, help="chance of a delay per API request")
    add("--chaos-delay-ms", type=float, help="delay in ms (median, for lognormal)")
    add("--chaos-delay-kind", choices=["fixed", "lognormal", "trickle"])
    add("--config", metavar="FILE", help="a TOML file of settings (same names, underscores)")
    add("--log-level", default="warning", help="uvicorn log level (default warning)")
    return p


def parse_args(argv: Sequence[str] | None = None) -> tuple[FakeSettings, str]:
    args = vars(_parser().parse_args(argv))
    log_level = args.pop("log_level")
    config = args.pop("config")
    given: dict[str, Any] = {k: v for k, v in args.items() if v is not None}
    return FakeSettings.load(config, **given), log_level


def main(argv: Sequence[str] | None = None) -> None:
    try:
        settings, log_level = parse_args(argv)
    except (ValidationError, ValueError) as exc:
        sys.exit(f"fakeserver: bad settings:\n{exc}")
    import uvicorn

    from .app import create_app
    from .catalog import CHARACTER_VIDEO_ID

    # Bound here and handed to uvicorn, never released in between: with --port 0 the port
    # the system picked is known (for poll URLs and the line below) and stays ours.
    listener = _bind(settings.host, settings.port)
    settings = settings.model_copy(update={"port": listener.getsockname()[1]})
    app = create_app(settings)
    keys = settings.api_keys or ([] if settings.restricted_keys else [DEMO_KEY])
    print(f"fake Segmind listening on http://{settings.host}:{settings.port}", flush=True)
    print(f"poll and asset URLs start with {settings.base_url}", flush=True)
    if not settings.api_keys:
        print(f"accepting the demo key: {keys[0]}", flush=True)
    if keys:
        print(
            f"try: curl -s -X POST {settings.base_url}/workflows/{CHARACTER_VIDEO_ID} "
            f"-H 'x-api-key: {keys[0] if not settings.api_keys else '<your key>'}' -d '{{}}'",
            flush=True,
        )
    server = uvicorn.Server(uvicorn.Config(app, log_level=log_level))
    try:
        server.run(sockets=[listener])
    except KeyboardInterrupt:  # Ctrl-C: uvicorn has shut down gracefully already
        pass
    finally:
        listener.close()
    if not server.started:
        sys.exit(3)  # uvicorn has logged why (as `uvicorn.run` exits)


def _bind(host: str, port: int) -> socket.socket:
    """The listening socket, bound (uvicorn listens on it), or exit saying why not."""
    listener = socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET)
    listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as uvicorn binds
    try:
        listener.bind((host, port))
    except OSError as exc:
        listener.close()
        sys.exit(f"fakeserver: cannot listen on {host}:{port}: {exc.strerror}")
    return listener


if __name__ == "__main__":
    main()
