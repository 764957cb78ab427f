"""`python -m client`: generate character videos, follow jobs, download them, read credits.

Results go to stdout (with `--json`, exactly one JSON document); progress and logs go to
stderr. Exit codes are listed in `client._exit_codes`. The API key is never printed: a 401
says which header carried it and whether it came from `--api-key` or the environment.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import IO, Any

import httpx
from rich.console import Console
from rich.text import Text

from ._client import Client
from ._clock import Clock
from ._config import (
    API_KEY_ENV,
    BASE_URL_ENV,
    DEFAULT_POLL_INTERVAL,
    DEFAULT_WAIT_TIMEOUT,
    EXPECTED_RUN_COST,
    ApiKey,
)
from ._errors import InsufficientCredits, InvalidInput, SegmindError
from ._exit_codes import EXIT_CODES, EXIT_INTERNAL, EXIT_INTERRUPTED, EXIT_OK, exit_code_for
from ._models import CharacterVideoInputs, JobHandle, JobResult, JobStatus
from ._progress import ProgressDisplay
from ._retry import RetryPolicy

__all__ = ["main", "run_cli"]


def _retries(text: str) -> int:
    try:
        count = int(text)
    except ValueError:
        count = -1
    if count < 0:
        raise argparse.ArgumentTypeError(f"expected a whole number of retries >= 0, got {text!r}")
    return count


def _parser() -> argparse.ArgumentParser:
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--base-url", help=f"API base URL (default ${BASE_URL_ENV} or Segmind)")
    common.add_argument("--api-key", help=f"API key (default ${API_KEY_ENV}); never printed")
    common.add_argument(
        "--auth", choices=["x-api-key", "bearer"], default="x-api-key", help="header for the key"
    )
    common.add_argument("--json", action="store_true", help="one JSON document on stdout")
    common.add_argument("--timeout", type=float, default=30.0, help="seconds per HTTP exchange")
    common.add_argument(
        "--retries",
        type=_retries,
        default=RetryPolicy().max_attempts - 1,
        help="retries of a failed exchange, with backoff (default %(default)s; 0 fails fast)",
    )

    waiting = argparse.ArgumentParser(add_help=False)
    waiting.add_argument("--poll-interval", type=float, default=DEFAULT_POLL_INTERVAL)
    waiting.add_argument(
        "--wait-timeout", type=float, default=DEFAULT_WAIT_TIMEOUT, help="give up after (s)"
    )

    codes = "\n".join(f"  {code:>3}  {cls.__name__}" for cls, code in EXIT_CODES.items())
    parser = argparse.ArgumentParser(
        prog="python -m client",
        description="Segmind Consistent Character Video Generation from the command line.",
        epilog=f"exit codes: 0 ok, 1 internal, 2 usage, 130 interrupted, and\n{codes}",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    sub = parser.add_subparsers(dest="command", required=True)

    gen = sub.add_parser(
        "generate", parents=[common, waiting], help="submit a job and (by default) wait for it"
    )
    gen.add_argument("--image", help="URL of the character's photo (default: the sample)")
    gen.add_argument(
        "--scene",
        action="append",
        default=[],
        metavar="TEXT",
        help="a scene prompt; up to 4, in order; missing ones use the defaults",
    )
    gen.add_argument("--webhook-url", help="ask for a webhook when the job ends")
    gen.add_argument("--out", type=Path, help="download the videos into this directory")
    gen.add_argument("--no-wait", action="store_true", help="print the job id and exit")

    status = sub.add_parser("status", parents=[common], help="one poll of a job")
    status.add_argument("id", help="request id or poll URL")

    wait = sub.add_parser("wait", parents=[common, waiting], help="wait for a job to end")
    wait.add_argument("id", help="request id or poll URL")
    wait.add_argument("--out", type=Path, help="download the videos into this directory")

    download = sub.add_parser("download", parents=[common], help="download a finished job")
    download.add_argument("id", help="request id or poll URL")
    download.add_argument("--out", type=Path, required=True, help="directory for the videos")

    sub.add_parser("credits", parents=[common], help="the account's credit balance")
    return parser


def run_cli(
    argv: Sequence[str] | None = None,
    *,
    transport: httpx.BaseTransport | None = None,
    clock: Clock | None = None,
    stdout: IO[str] | None = None,
    stderr: IO[str] | None = None,
) -> int:
    """Run one command and return its exit code (`main` exits with it)."""
    out = stdout or sys.stdout
    err_console = Console(file=stderr or sys.stderr, highlight=False)
    try:
        args = _parser().parse_args(argv)
    except SystemExit as exc:  # argparse: --help (0) or a usage error (2)
        return int(exc.code or 0)
    submitted: list[JobHandle] = []
    try:
        key = ApiKey.resolve(args.api_key, source="the --api-key flag")
        client = Client(
            key,
            base_url=args.base_url,
            auth=args.auth,
            timeout=args.timeout,
            retry=RetryPolicy(max_attempts=args.retries + 1),
            transport=transport,
            clock=clock,
        )
    except SegmindError as error:
        return _fail(args, out, err_console, error, str(error))
    with client:
        try:
            document, human = _dispatch(args, client, err_console, submitted)
        except KeyboardInterrupt:
            if submitted:
                job = submitted[0].request_id
                err_console.print(
                    f"interrupted; job {job} keeps running: python -m client wait {job}"
                )
            else:
                err_console.print("interrupted")
            return EXIT_INTERRUPTED
        except SegmindError as error:
            return _fail(args, out, err_console, error, _explain(error, client))
        except Exception as error:  # a bug: say so, with a code of its own
            err_console.print(f"internal error ({type(error).__name__}): {error}; please report it")
            return EXIT_INTERNAL
    if args.json:
        _emit_json(out, {"ok": True, **document})
    else:
        Console(file=out, highlight=False, soft_wrap=True).print(human)
    return EXIT_OK


def _fail(
    args: argparse.Namespace, out: IO[str], console: Console, error: SegmindError, message: str
) -> int:
    code = exit_code_for(error)
    if args.json:
        _emit_json(out, {"ok": False, "error": _error_document(error, message, code)})
    console.print(Text.assemble(("error: ", "bold red"), message))
    return code


def _dispatch(
    args: argparse.Namespace, client: Client, console: Console, submitted: list[JobHandle]
) -> tuple[dict[str, Any], str]:
    if args.command == "credits":
        credits = client.credits()
        doc: dict[str, Any] = {"credits": credits.credits, "free_credits": credits.free_credits}
        runs = int(credits.total // EXPECTED_RUN_COST)
        return doc, (
            f"credits: {credits.credits:.2f} (free: {credits.free_credits:.2f}); "
            f"enough for about {runs} run(s) at {EXPECTED_RUN_COST:.2f} each"
        )
    if args.command == "status":
        snapshot = client.status(args.id)
        return _status_document(snapshot), _status_line(snapshot)
    if args.command == "download":
        result = client.wait(args.id, timeout=0)
        files = client.download(result, args.out)
        return _result_document(result, files), _result_lines(result, files)
    if args.command == "wait":
        return _wait_and_report(args, client, console, args.id)
    # generate
    if len(args.scene) > 4:
        raise InvalidInput(f"at most 4 --scene options, got {len(args.scene)}")
    fields: dict[str, str] = {f"Scene_{i}": text for i, text in enumerate(args.scene, 1)}
    if args.image is not None:
        fields["Character_Image"] = args.image
    inputs = CharacterVideoInputs.parse(fields)
    handle = client.submit(inputs, webhook_url=args.webhook_url)
    submitted.append(handle)
    console.print(f"submitted job {handle.request_id}")
    if args.no_wait:
        doc = {
            "request_id": handle.request_id,
            "poll_url": handle.poll_url,
            "status": handle.status,
        }
        return doc, (
            f"job {handle.request_id} {handle.status}\npoll: {handle.poll_url}\n"
            f"follow it with: python -m client wait {handle.request_id}"
        )
    return _wait_and_report(args, client, console, handle)


def _wait_and_report(
    args: argparse.Namespace, client: Client, console: Console, job: JobHandle | str
) -> tuple[dict[str, Any], str]:
    label = job.request_id if isinstance(job, JobHandle) else job
    with ProgressDisplay(console, label) as display:
        result = client.wait(
            job,
            poll_interval=args.poll_interval,
            timeout=args.wait_timeout,
            on_update=display.update,
        )
    files = client.download(result, args.out) if args.out is not None else {}
    return _result_document(result, files), _result_lines(result, files)


def _status_document(status: JobStatus) -> dict[str, Any]:
    doc: dict[str, Any] = {"request_id": status.request_id, "status": status.status}
    if status.error:
        doc["error"] = status.error
    if status.state.value == "COMPLETED":
        result = JobResult.from_output(status.request_id, status.output)
        doc["videos"] = {str(k): v for k, v in result.videos.items()}
    return doc


def _status_line(status: JobStatus) -> str:
    line = f"job {status.request_id}: {status.status}"
    if status.error:
        line += f" ({status.error})"
    if status.state.value == "COMPLETED":
        result = JobResult.from_output(status.request_id, status.output)
        line += "".join(f"\n  scene {n}: {url}" for n, url in result.videos.items())
    return line


def _result_document(result: JobResult, files: dict[str, Path]) -> dict[str, Any]:
    doc: dict[str, Any] = {
        "request_id": result.request_id,
        "status": result.status,
        "videos": {str(k): v for k, v in result.videos.items()},
    }
    if not result.videos:
        doc["raw_output"] = result.raw_output
    if files:
        doc["files"] = {name: str(path) for name, path in files.items()}
    return doc


def _result_lines(result: JobResult, files: dict[str, Path]) -> str:
    lines = [f"job {result.request_id}: {result.status}"]
    for scene, url in result.videos.items():
        where = files.get(f"scene_{scene}")
        lines.append(f"  scene {scene}: {where if where is not None else url}")
    if not result.videos:
        lines.append(f"  no videos found; raw output: {json.dumps(result.raw_output)[:500]}")
    return "\n".join(lines)


def _explain(error: SegmindError, client: Client) -> str:
    """The error's message, made concrete where the CLI can learn more."""
    if isinstance(error, InsufficientCredits):
        try:
            balance = client.credits()
        except SegmindError:
            return error.message
        return (
            f"not enough credits: balance {balance.total:.2f}, a run costs "
            f"{EXPECTED_RUN_COST:.2f}; top up the account and retry"
        )
    return str(error)


def _error_document(error: SegmindError, message: str, code: int) -> dict[str, Any]:
    return {
        "type": type(error).__name__,
        "message": message,
        "status_code": error.status_code,
        "request_id": error.request_id,
        "exit_code": code,
    }


def _emit_json(out: IO[str], document: dict[str, Any]) -> None:
    out.write(json.dumps(document, default=str) + "\n")
    out.flush()


def main(argv: Sequence[str] | None = None) -> None:
    """Console-script entry point."""
    sys.exit(run_cli(argv))
