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


# -- the layers of proxy/ ---------------------------------------------------------------
#
# Lowest first. A module may import modules of its own layer and of the layers below it,
# never above; function-level imports count as much as module-level ones.
LAYERS: tuple[tuple[str, tuple[str, ...]], ...] = (
    ("core", ("proxy.core",)),  # pure parts: settings, clocks, quotas, keys, signing, SSRF
    # kept outputs' bytes, by content hash: a folder or an S3 bucket; no records, no HTTP
    ("objects", ("proxy.objects",)),
    ("db", ("proxy.db",)),  # reads and writes: units of work, backends, migrations
    ("rules", ("proxy.rules",)),  # the rules, functions of one unit of work
    ("store", ("proxy.store",)),  # `Store`: the rules run on the backend the settings pick
    ("services", ("proxy.services",)),  # the gateway's services: admission, poller, outbox
    ("edge", ("proxy.edge",)),  # HTTP: routes, admin API, bodies, auth, errors as answers
    ("console", ("proxy.console",)),  # the operators' web pages
    ("assembly", ("proxy.app",)),  # the app factory: configures the process
    ("cli", ("proxy.cli",)),  # `python -m proxy`: serve, admin, migrate, demo, nginx-config
    ("entry", ("proxy.__main__", "proxy")),  # these two exactly: not the modules below
)
EXACT = {"proxy", "proxy.__main__"}
STARLETTE_LAYERS = {"edge", "console", "assembly"}
MAX_TOP_FILES = 3
MAX_LINES = 600
DECLARATIVE_TABLES = {"proxy/edge/openapi.py"}  # the OpenAPI document: data, not logic


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _proxy_modules() -> dict[str, Path]:
    return {_module_name(path): path for path in sorted(PROXY.rglob("*.py"))}


def _layer_index(module: str) -> int | None:
    """The rank in LAYERS of the layer a module is in (its longest matching prefix)."""
    best, rank = -1, None
    for i, (_, prefixes) in enumerate(LAYERS):
        for prefix in prefixes:
            below = module.startswith(prefix + ".") and prefix not in EXACT
            if (module == prefix or below) and len(prefix) > best:
                best, rank = len(prefix), i
    return rank


def _layer_of(module: str) -> int:
    rank = _layer_index(module)
    if rank is None:
        raise AssertionError(f"{module} is in no layer: add it to LAYERS in this test")
    return rank


def _edges(modules: dict[str, Path]) -> Iterator[tuple[str, str, int]]:
    """(importer, imported, line) for every import of a module of the project or of a
    third-party package, at any depth of the file (function-level imports included);
    relative imports resolved, `from package import module` read as the module."""
    for name, path in modules.items():
        package = name if path.name == "__init__.py" else name.rpartition(".")[0]
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if isinstance(node, ast.Import):
                for alias in node.names:
                    yield name, alias.name, node.lineno
            elif isinstance(node, ast.ImportFrom):
                base = node.module or ""
                if node.level:
                    anchor = package.split(".")[: len(package.split(".")) - node.level + 1]
                    base = ".".join([*anchor, *([base] if base else [])])
                for alias in node.names:
                    full = f"{base}.{alias.name}"
                    yield name, full if full in modules else base, node.lineno


def test_every_proxy_module_is_in_a_layer_and_imports_none_above_its_own() -> None:
    modules = _proxy_modules()
    upward = [
        f"{source} ({LAYERS[_layer_of(source)][0]}, line {line}) imports {target} "
        f"({LAYERS[_layer_of(target)][0]})"
        for source, target, line in _edges(modules)
        if target in modules and _layer_of(target) > _layer_of(source)
    ]
    assert upward == [], "imports that point up the layers:\n" + "\n".join(upward)


def test_no_import_circle_in_proxy() -> None:
    modules = _proxy_modules()
    graph: dict[str, set[str]] = {name: set() for name in modules}
    for source, target, _ in _edges(modules):
        if target in modules and target != source:
            graph[source].add(target)
    # Tarjan's strongly connected components: any with two or more modules is a circle.
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    circles: list[list[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        for nxt in graph[node]:
            if nxt not in index:
                visit(nxt)
                low[node] = min(low[node], low[nxt])
            elif nxt in stack:
                low[node] = min(low[node], index[nxt])
        if low[node] == index[node]:
            component = []
            while True:
                member = stack.pop()
                component.append(member)
                if member == node:
                    break
            if len(component) > 1:
                circles.append(sorted(component))

    for name in graph:
        if name not in index:
            visit(name)
    assert circles == [], f"import circles: {circles}"


def test_starlette_is_imported_only_at_the_edge_the_console_and_the_assembly() -> None:
    modules = _proxy_modules()
    found = [
        f"{source} (line {line})"
        for source, target, line in _edges(modules)
        if target.partition(".")[0] == "starlette"
        and LAYERS[_layer_of(source)][0] not in STARLETTE_LAYERS
    ]
    assert found == [], "starlette imported below the edge:\n" + "\n".join(found)


def test_nothing_the_services_and_below_import_pulls_in_starlette() -> None:
    """Followed through every import, from each module of the layers under the edge (a
    module that is in no layer counts as under it): errors, rules and services never
    need a web framework to be imported."""
    modules = _proxy_modules()
    graph: dict[str, set[str]] = {name: set() for name in modules}
    for source, target, _ in _edges(modules):
        graph[source].add(target)
    edge = [name for name, _ in LAYERS].index("edge")
    found = []
    for name in modules:
        rank = _layer_index(name)
        if rank is not None and rank >= edge:
            continue
        seen, todo = {name}, [name]
        while todo:
            for nxt in graph.get(todo.pop(), ()):
                if nxt.partition(".")[0] == "starlette":
                    found.append(f"{name} reaches starlette")
                    todo = []
                    break
                if nxt in modules and nxt not in seen:
                    seen.add(nxt)
                    todo.append(nxt)
    assert found == [], "\n".join(found)


def test_the_top_of_proxy_holds_only_the_assembly() -> None:
    top = sorted(path.name for path in PROXY.glob("*.py"))
    assert len(top) <= MAX_TOP_FILES, top


def test_every_layer_package_says_what_belongs_there() -> None:
    for path in sorted(PROXY.rglob("__init__.py")):
        tree = ast.parse(path.read_text())
        doc = ast.get_docstring(tree) or ""
        where = path.relative_to(ROOT)
        assert len(doc.split()) >= 20, f"{where}: say what belongs here and what it may import"


def test_no_two_modules_of_one_layer_share_a_name() -> None:
    seen: dict[tuple[int, str], str] = {}
    clashes = []
    for name, path in _proxy_modules().items():
        if path.name == "__init__.py":
            continue
        key = (_layer_of(name), path.stem)
        if key in seen:
            clashes.append(f"{seen[key]} and {name}")
        seen[key] = name
    assert clashes == [], clashes


def test_no_module_is_over_600_lines_but_the_declarative_tables() -> None:
    long = [
        f"{path.relative_to(ROOT)}: {n} lines"
        for path in sorted(PROXY.rglob("*.py"))
        if (n := len(path.read_text().splitlines())) > MAX_LINES
        and str(path.relative_to(ROOT)) not in DECLARATIVE_TABLES
    ]
    assert long == [], long
