"""The dependency direction, held by reading the imports: the gateway uses the client's
public API only (what it needs from it is exported and documented in `client/__init__.py`,
so the client's private modules can change freely); the fake imports neither the client nor
the gateway; the workflow registry (`workflows`) imports nothing of the project, so all
three can read it."""

from __future__ import annotations

import ast
from collections.abc import Iterator
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
PROXY = ROOT / "proxy"
OURS = ("client", "fakeserver", "proxy", "workflows")


def _imports(package: str) -> Iterator[tuple[str, str]]:
    """(file, module) of every absolute import in a package."""
    for path in sorted((ROOT / package).rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            names = []
            if isinstance(node, ast.ImportFrom) and node.module and not node.level:
                names = [node.module]
            elif isinstance(node, ast.Import):
                names = [alias.name for alias in node.names]
            for name in names:
                yield str(path.relative_to(ROOT)), name


def test_no_proxy_module_imports_a_private_client_module() -> None:
    private = [
        f"{path}: {name}"
        for path, name in _imports("proxy")
        if name.startswith("client.") and name.split(".")[1].startswith("_")
    ]
    assert private == [], "proxy/ imports the client's private modules:\n" + "\n".join(private)


def _ours(package: str) -> set[str]:
    return {name.partition(".")[0] for _, name in _imports(package)} & set(OURS)


def test_the_fake_imports_neither_the_client_nor_the_gateway() -> None:
    assert _ours("fakeserver") == {"fakeserver", "workflows"}


def test_the_registry_imports_nothing_of_the_project() -> None:
    assert _ours("workflows") <= {"workflows"}
