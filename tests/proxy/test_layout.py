"""The gateway uses the client's public API only: what it needs from it is exported and
documented in `client/__init__.py`, so the client's private modules can change freely."""

from __future__ import annotations

import ast
from pathlib import Path

PROXY = Path(__file__).resolve().parents[2] / "proxy"


def test_no_proxy_module_imports_a_private_client_module() -> None:
    private = []
    for path in sorted(PROXY.rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            names = []
            if isinstance(node, ast.ImportFrom) and node.module:
                names = [node.module]
            elif isinstance(node, ast.Import):
                names = [alias.name for alias in node.names]
            private += [
                f"{path.relative_to(PROXY.parent)}: {name}"
                for name in names
                if name.startswith("client.") and name.split(".")[1].startswith("_")
            ]
    assert private == [], "proxy/ imports the client's private modules:\n" + "\n".join(private)
