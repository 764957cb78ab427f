"""A job's progress on a console: the command line's display, also used by `make demo`."""

from __future__ import annotations

from typing import Any

from rich.console import Console, Group
from rich.live import Live
from rich.progress_bar import ProgressBar
from rich.table import Table
from rich.text import Text

from ._config import EXPECTED_RUN_SECONDS
from ._models import Progress

__all__ = ["ProgressDisplay", "clock_text"]


class ProgressDisplay:
    """Progress on stderr: a live panel on a terminal, one line per change elsewhere."""

    def __init__(self, console: Console, request_id: str) -> None:
        self.console = console
        self.request_id = request_id
        self.live: Live | None = None
        self.last_status: str | None = None
        if console.is_terminal:
            self.live = Live(console=console, transient=False, auto_refresh=False)

    def __enter__(self) -> ProgressDisplay:
        if self.live is not None:
            self.live.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        if self.live is not None:
            self.live.stop()

    def update(self, progress: Progress) -> None:
        status = progress.status.status if progress.status else "?"
        if self.live is not None:
            self.live.update(self._render(progress, status), refresh=True)
            return
        if progress.note:
            self.console.print(f"[{progress.elapsed:6.0f} s] {progress.note}", highlight=False)
        elif status != self.last_status:
            self.console.print(f"[{progress.elapsed:6.0f} s] {self.request_id}: {status}")
        self.last_status = status

    def _render(self, progress: Progress, status: str) -> Group:
        bar = ProgressBar(
            total=EXPECTED_RUN_SECONDS, completed=min(progress.elapsed, EXPECTED_RUN_SECONDS)
        )
        head = Text.assemble(
            ("job ", "dim"),
            (self.request_id, "bold"),
            "  ",
            (status, "bold cyan"),
            f"  {clock_text(progress.elapsed)} of ~{clock_text(EXPECTED_RUN_SECONDS)} expected",
            f"  ({progress.polls} polls)",
        )
        states = Table.grid(padding=(0, 2))
        for name, seconds in progress.state_seconds.items():
            states.add_row(Text(name, "cyan"), clock_text(seconds))
        parts: list[Any] = [head, bar, states]
        if progress.note:
            parts.append(Text(progress.note, "yellow"))
        return Group(*parts)


def clock_text(seconds: float) -> str:
    minutes, secs = divmod(int(seconds), 60)
    return f"{minutes}:{secs:02d}"
