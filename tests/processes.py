"""Process trees for tests that start a program which starts its own children (`proxy
demo` starts a gateway, which starts a fake): see the whole tree, and leave none of it
running, whatever the test did (Linux: read from /proc)."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

__all__ = ["alive", "descendants", "group_popen", "stop_group"]

PROC = Path("/proc")


def _stat(pid: int) -> tuple[str, int] | None:
    """(state, parent pid) of a process, or None when it is gone."""
    try:
        text = (PROC / str(pid) / "stat").read_text()
    except OSError:
        return None
    # "pid (comm) state ppid ...": comm may hold spaces and parentheses, so split after it.
    fields = text[text.rindex(")") + 2 :].split()
    return fields[0], int(fields[1])


def alive(pid: int) -> bool:
    """Running (or stopped), not gone and not a zombie waiting to be reaped."""
    stat = _stat(pid)
    return stat is not None and stat[0] not in ("Z", "X")


def descendants(pid: int) -> list[int]:
    """Every living process below `pid`: its children, theirs, and so on."""
    parents: dict[int, list[int]] = {}
    for entry in PROC.iterdir():
        if entry.name.isdigit() and (stat := _stat(int(entry.name))) and stat[0] not in "ZX":
            parents.setdefault(stat[1], []).append(int(entry.name))
    found: list[int] = []
    todo = [pid]
    while todo:
        for child in parents.get(todo.pop(), []):
            found.append(child)
            todo.append(child)
    return found


def stop_group(process: subprocess.Popen[Any], grace: float = 10.0) -> None:
    """Stop a process started as a group leader (`process_group=0`) and everything below it.

    SIGTERM to the whole group, `grace` seconds, then SIGKILL to the group and to any
    descendant that left it (a child that made a session of its own escapes a group
    signal): nothing the test started is left running.
    """
    tree = descendants(process.pid)
    with contextlib.suppress(ProcessLookupError):
        os.killpg(process.pid, signal.SIGTERM)
    with contextlib.suppress(subprocess.TimeoutExpired):
        process.wait(grace)
    with contextlib.suppress(ProcessLookupError):
        os.killpg(process.pid, signal.SIGKILL)
    for pid in tree + descendants(process.pid):
        if alive(pid):
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
    process.wait(10)


@contextlib.contextmanager
def group_popen(argv: list[str], **kwargs: Any) -> Iterator[subprocess.Popen[str]]:
    """`subprocess.Popen(argv, text=True, process_group=0, **kwargs)`, stopped with its whole
    tree (`stop_group`) and its pipes closed when the block ends, however it ends."""
    # Popen's own `with` closes the pipes and reaps the process once the tree is stopped.
    with subprocess.Popen(argv, text=True, process_group=0, **kwargs) as process:
        try:
            yield process
        finally:
            stop_group(process)
