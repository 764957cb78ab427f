"""The "Several machines" commands as docs/operations.md shows them, read from the section's text
so the replica test runs exactly what an operator reads: one place for both.

The section's shell block holds variable assignments (examples of what differs per
deployment) and commands using them. `step(role, values)` returns one command, named by
what it does (`migrate`, `create-team`, `serve`, `nginx-config`, `nginx`), with the test's
values in place of the variables.
"""

from __future__ import annotations

import re
import shlex
import sys
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

__all__ = ["HEADING", "SECTION", "Step", "block", "step"]

SECTION = Path(__file__).parents[1] / "docs" / "operations.md"
HEADING = "## Several machines"
VARIABLE = re.compile(r"\$(\w+)|\$\{(\w+)\}")
ASSIGNMENT = re.compile(r"^[A-Z_][A-Z0-9_]*=")
ROLES = {
    ("migrate",): "migrate",
    ("admin", "create-team"): "create-team",
    ("serve",): "serve",
    ("nginx-config",): "nginx-config",
}


@dataclass(frozen=True)
class Step:
    argv: list[str]
    env: dict[str, str] = field(default_factory=dict)  # the command's own VAR=value prefix
    stdout: str | None = None  # `> FILE`


def block(path: Path = SECTION, language: str = "sh") -> str:
    """The first `language` block of the "Several machines" section in `path`: the
    commands (`sh`), or the example configuration (`nginx`)."""
    text = path.read_text()
    start = text.index(HEADING)
    found = re.search(rf"```{language}\n(.*?)```", text[start:], re.S)
    if found is None:
        raise ValueError(f"no ```{language} block under {HEADING!r} in {path}")
    return found[1]


def _expand(token: str, values: Mapping[str, str]) -> str:
    def value(m: re.Match[str]) -> str:
        name = m[1] or m[2]
        if name not in values:
            raise KeyError(f"the section uses ${name}; the test gives no value for it")
        return values[name]

    return VARIABLE.sub(value, token)


def step(role: str, values: Mapping[str, str], path: Path = SECTION) -> Step:
    """The block's command for `role`, its variables replaced by `values`."""
    for line in block(path).splitlines():
        tokens = shlex.split(line, comments=True)
        env: dict[str, str] = {}
        while tokens and ASSIGNMENT.match(tokens[0]):
            name, _, value = tokens.pop(0).partition("=")
            env[name] = value
        if not tokens or _role(tokens) != role:
            continue  # another command, or an example value the test brings its own for
        stdout = None
        if ">" in tokens:
            at = tokens.index(">")
            stdout, tokens = _expand(tokens[at + 1], values), tokens[:at]
        argv = [_expand(t, values) for t in tokens]
        if argv[:3] == ["python", "-m", "proxy"]:
            argv[0] = sys.executable  # the project's interpreter, as `python` is in its venv
        return Step(argv, {k: _expand(v, values) for k, v in env.items()}, stdout)
    raise LookupError(f"no {role!r} command in the section's block ({path})")


def _role(tokens: list[str]) -> str:
    if tokens[:3] != ["python", "-m", "proxy"]:
        return tokens[0]
    return next((r for words, r in ROLES.items() if tuple(tokens[3 : 3 + len(words)]) == words),
                " ".join(tokens[3:5]))  # fmt: skip
