"""The shape of the code (docs/design.md §8): imports flow one way, surfaces stay apart.

Walks every module of `service/` with `ast` (imports inside functions count too: a lazy import
is still a dependency) and fails on a cycle, on an import against the layer order, on a surface
importing another surface, on Starlette below `web/`, and on `verifier.py` importing `service`.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

SERVICE = Path(__file__).resolve().parent.parent / "service"

# Higher imports lower, never the reverse. Modules not named here are foundations (rank 0).
RANKS = {
    "__main__": 9,
    "asgi": 9,
    "app": 8,
    "api": 7,
    "pages": 7,
    "oidc": 7,
    "admin": 7,
    "web": 6,
    "signin": 5,
    "accounts": 5,
    "delivery": 4,
    "store": 3,
    "db": 2,
}
SURFACES = {"api", "pages", "oidc", "admin"}
# Where Starlette may be imported: the HTTP layers and the verifier (its middleware).
STARLETTE_OK = {"__main__", "asgi", "app", "web", "verifier", *SURFACES}


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(SERVICE.parent).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def _imports(path: Path, name: str) -> set[str]:
    """Every module this file imports (absolute names)."""
    tree = ast.parse(path.read_text(), str(path))
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join([*anchor, base] if base else anchor)
            found.add(base)
            # `from service import store` imports the module service.store
            found.update(f"{base}.{alias.name}" for alias in node.names)
    return found


def _graph() -> dict[str, set[str]]:
    modules = {_module_name(p): p for p in SERVICE.rglob("*.py")}
    graph: dict[str, set[str]] = {}
    for name, path in modules.items():
        graph[name] = {m for m in _imports(path, name) if m in modules and m != name}
    return graph


def _top(module: str) -> str:
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else ""


GRAPH = _graph()


def test_the_walk_sees_the_packages() -> None:
    assert "service.app" in GRAPH and "service.store" in GRAPH
    assert any(GRAPH.values()), "no import between service modules was found"


def test_service_has_no_import_cycle() -> None:
    edges = GRAPH
    state: dict[str, int] = {}
    stack: list[str] = []

    def visit(node: str) -> None:
        state[node] = 1
        stack.append(node)
        for dep in sorted(edges[node]):
            if state.get(dep) == 1:
                cycle = stack[stack.index(dep) :] + [dep]
                pytest.fail("import cycle: " + " -> ".join(cycle))
            if dep not in state:
                visit(dep)
        stack.pop()
        state[node] = 2

    for module in sorted(edges):
        if module not in state:
            visit(module)


def test_imports_flow_down_the_layers() -> None:
    wrong = [
        f"{m} -> {d}"
        for m, deps in GRAPH.items()
        for d in deps
        if RANKS.get(_top(d), 0) > RANKS.get(_top(m), 0)
    ]
    assert not wrong, "imports against the layer order: " + ", ".join(sorted(wrong))


def test_surfaces_never_import_each_other() -> None:
    crossing = [
        f"{m} -> {d}"
        for m, deps in GRAPH.items()
        for d in deps
        if _top(m) in SURFACES and _top(d) in SURFACES and _top(m) != _top(d)
    ]
    assert not crossing, "a surface imports another: " + ", ".join(sorted(crossing))


def test_starlette_stays_in_the_http_layers() -> None:
    below = [
        name
        for name in GRAPH
        if _top(name) not in STARLETTE_OK
        and any(m == "starlette" or m.startswith("starlette.") for m in _imports(_path(name), name))
    ]
    assert not below, "Starlette imported below web/: " + ", ".join(sorted(below))


def test_verifier_stands_alone() -> None:
    imported = _imports(SERVICE / "verifier.py", "service.verifier")
    assert not [m for m in imported if m == "service" or m.startswith("service.")]


def _path(name: str) -> Path:
    relative = Path(*name.split(".")[1:])
    package = SERVICE / relative / "__init__.py"
    return package if package.exists() else (SERVICE / relative).with_suffix(".py")
