"""Reading the `Prefer` request header (RFC 7240), the per-request way to force behaviour.

    Prefer: code=429
    Prefer: outcome=failed, duration=30
    Prefer: fault=reset

Tokens are separated by commas or semicolons; unknown tokens are refused with a 400 that
lists the known ones, so a typo never silently runs a normal job.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from .errors import ERROR_CODES, InvalidInput
from .jobs import Outcome

__all__ = ["FAULT_KINDS", "Preferences", "parse_prefer"]

FAULT_KINDS = ("reset", "empty", "malformed", "garbage")
KNOWN = ("code", "outcome", "duration", "polls", "status", "fault", "delay", "trickle", "after")
MAX_DELAY_MS = 120_000


@dataclass(frozen=True)
class Preferences:
    code: int | None = None
    fault: str | None = None
    delay_ms: float = 0.0
    trickle_ms: float = 0.0
    after: bool = False  # run the request first, then answer with the forced code/fault
    outcome: Outcome | None = None
    duration: float | None = None
    polls: int | None = None
    status: str | None = None

    @property
    def forces_answer(self) -> bool:
        return self.code is not None or self.fault is not None


def parse_prefer(values: Iterable[str]) -> Preferences:
    tokens: dict[str, str] = {}
    for value in values:
        for raw in value.replace(";", ",").split(","):
            raw = raw.strip()
            if not raw:
                continue
            name, _, val = raw.partition("=")
            name = name.strip().lower()
            if name not in KNOWN:
                # Other Prefer tokens (respond-async, return=minimal, ...) are ignored, as
                # RFC 7240 asks; only the fake's own names are checked strictly.
                continue
            tokens[name] = val.strip().strip('"')
    kwargs: dict[str, object] = {}
    if "code" in tokens:
        code = _number("code", tokens["code"], int)
        if code not in ERROR_CODES:
            codes = ", ".join(map(str, ERROR_CODES))
            raise InvalidInput(f"Prefer code={code} cannot be forced; choose one of {codes}")
        kwargs["code"] = code
    if "fault" in tokens:
        if tokens["fault"] not in FAULT_KINDS:
            raise InvalidInput(
                f"Prefer fault={tokens['fault']!r} is unknown; choose one of "
                f"{', '.join(FAULT_KINDS)}"
            )
        kwargs["fault"] = tokens["fault"]
    for name in ("delay", "trickle"):
        if name in tokens:
            ms = _number(name, tokens[name], float)
            if not 0 <= ms <= MAX_DELAY_MS:
                raise InvalidInput(f"Prefer {name} must be 0 to {MAX_DELAY_MS} milliseconds")
            kwargs[f"{name}_ms"] = ms
    if "after" in tokens:
        kwargs["after"] = tokens["after"].lower() not in ("0", "false", "no")
    if "outcome" in tokens:
        try:
            kwargs["outcome"] = Outcome.parse(tokens["outcome"])
        except ValueError as exc:
            raise InvalidInput(f"Prefer {exc}") from None
    if "duration" in tokens:
        duration = _number("duration", tokens["duration"], float)
        if duration < 0:
            raise InvalidInput("Prefer duration must be zero or more seconds")
        kwargs["duration"] = duration
    if "polls" in tokens:
        polls = _number("polls", tokens["polls"], int)
        if polls < 1:
            raise InvalidInput("Prefer polls must be 1 or more (polls per state)")
        kwargs["polls"] = polls
    if "status" in tokens:
        if not tokens["status"]:
            raise InvalidInput("Prefer status needs a name, e.g. status=ON_HOLD")
        kwargs["status"] = tokens["status"]
    return Preferences(**kwargs)  # type: ignore[arg-type]


def _number(name: str, raw: str, kind: type[int] | type[float]) -> float:
    try:
        return kind(raw)
    except ValueError:
        raise InvalidInput(f"Prefer {name} must be a number; got {raw!r}") from None
