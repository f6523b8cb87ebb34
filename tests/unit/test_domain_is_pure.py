"""The domain imports only the standard library and itself: no websockets, structlog or os."""

from __future__ import annotations

import ast
import sys
from pathlib import Path

import pytest

import connector.domain

DOMAIN = Path(connector.domain.__file__).parent
FORBIDDEN_STDLIB = {"asyncio", "os", "socket", "subprocess", "time", "logging"}  # I/O, env, clocks


def _imports(path: Path) -> set[str]:
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module)
    return names


@pytest.mark.parametrize("path", sorted(DOMAIN.rglob("*.py")), ids=lambda p: p.name)
def test_domain_module_imports_only_stdlib_and_domain(path: Path) -> None:
    for name in _imports(path):
        top = name.split(".")[0]
        if top == "connector":
            assert name.startswith("connector.domain"), f"{path.name} imports {name}"
        else:
            assert top in sys.stdlib_module_names, f"{path.name} imports {name}"
            assert top not in FORBIDDEN_STDLIB, f"{path.name} imports {name}"


def _module_imports(path: Path, root: Path) -> set[str]:
    """Every ``connector.*`` module a file imports, type-only imports included."""
    names = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("connector"):
            names.add(node.module)
        elif isinstance(node, ast.Import):
            names.update(a.name for a in node.names if a.name.startswith("connector"))
    return names


def test_no_module_of_the_connector_imports_itself_back() -> None:
    root = DOMAIN.parent
    graph: dict[str, set[str]] = {}
    for path in root.rglob("*.py"):
        name = ".".join(("connector", *path.relative_to(root).with_suffix("").parts))
        graph[name.removesuffix(".__init__")] = _module_imports(path, root)
    seen: dict[str, int] = {}  # 1: on the current path, 2: done

    def visit(module: str, path: list[str]) -> None:
        if seen.get(module) == 2:
            return
        assert seen.get(module) != 1, "import cycle: " + " -> ".join([*path, module])
        seen[module] = 1
        for target in sorted(graph.get(module, ())):
            if target in graph:
                visit(target, [*path, module])
        seen[module] = 2

    for module in sorted(graph):
        visit(module, [])
