"""Reading the `Prefer` request header (RFC 7240), the per-request way to force behaviour.

    Prefer: code=429
    Prefer: outcome=failed, duration=30
    Prefer: fault=reset

Tokens are separated by commas or semicolons; unknown tokens are refused with a 400 that
lists the known ones, so a typo never silently runs a normal job.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
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
    fields = dict(READERS[name](raw) for name, raw in _tokens(values).items())
    return Preferences(**fields)  # type: ignore[arg-type]


def _tokens(values: Iterable[str]) -> dict[str, str]:
    """The fake's own tokens (name: raw value), the last of each name winning."""
    tokens: dict[str, str] = {}
    for value in values:
        for raw in value.replace(";", ",").split(","):
            name, _, val = raw.strip().partition("=")
            name = name.strip().lower()
            # Other Prefer tokens (respond-async, return=minimal, ...) are ignored, as
            # RFC 7240 asks; only the fake's own names are checked strictly.
            if name in KNOWN:
                tokens[name] = val.strip().strip('"')
    return tokens


def _code(raw: str) -> tuple[str, object]:
    code = _number("code", raw, int)
    if code not in ERROR_CODES:
        codes = ", ".join(map(str, ERROR_CODES))
        raise InvalidInput(f"Prefer code={code} cannot be forced; choose one of {codes}")
    return "code", code


def _fault(raw: str) -> tuple[str, object]:
    if raw not in FAULT_KINDS:
        raise InvalidInput(
            f"Prefer fault={raw!r} is unknown; choose one of {', '.join(FAULT_KINDS)}"
        )
    return "fault", raw


def _milliseconds(name: str) -> Callable[[str], tuple[str, object]]:
    def read(raw: str) -> tuple[str, object]:
        ms = _number(name, raw, float)
        if not 0 <= ms <= MAX_DELAY_MS:
            raise InvalidInput(f"Prefer {name} must be 0 to {MAX_DELAY_MS} milliseconds")
        return f"{name}_ms", ms

    return read


def _outcome(raw: str) -> tuple[str, object]:
    try:
        return "outcome", Outcome.parse(raw)
    except ValueError as exc:
        raise InvalidInput(f"Prefer {exc}") from None


def _duration(raw: str) -> tuple[str, object]:
    duration = _number("duration", raw, float)
    if duration < 0:
        raise InvalidInput("Prefer duration must be zero or more seconds")
    return "duration", duration


def _polls(raw: str) -> tuple[str, object]:
    polls = _number("polls", raw, int)
    if polls < 1:
        raise InvalidInput("Prefer polls must be 1 or more (polls per state)")
    return "polls", polls


def _status(raw: str) -> tuple[str, object]:
    if not raw:
        raise InvalidInput("Prefer status needs a name, e.g. status=ON_HOLD")
    return "status", raw


# One reader per token: the token's raw value to (the Preferences field, its value).
READERS: dict[str, Callable[[str], tuple[str, object]]] = {
    "code": _code,
    "fault": _fault,
    "delay": _milliseconds("delay"),
    "trickle": _milliseconds("trickle"),
    "after": lambda raw: ("after", raw.lower() not in ("0", "false", "no")),
    "outcome": _outcome,
    "duration": _duration,
    "polls": _polls,
    "status": _status,
}
assert set(READERS) == set(KNOWN), "every known token has its reader"


def _number(name: str, raw: str, kind: type[int] | type[float]) -> float:
    try:
        return kind(raw)
    except ValueError:
        raise InvalidInput(f"Prefer {name} must be a number; got {raw!r}") from None
