"""The package's seams: no import cycles (function-level imports counted), layers kept apart.

Why a test: a cycle held apart only by a function-level import works until someone moves
the import, and a format module that learns about the network cannot be used offline.
The graph is read from the source with ``ast`` (every ``import`` anywhere in a module,
except under ``if TYPE_CHECKING:``, which never runs).
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parent.parent / "peo_hub"


def _module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _runtime_imports(tree: ast.AST, module: str) -> set[str]:
    """Modules imported by code that can run (``if TYPE_CHECKING:`` blocks skipped)."""
    found: set[str] = set()

    def visit(node: ast.AST) -> None:
        if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
            for child in node.orelse:
                visit(child)
            return
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:  # relative import
                parent = module.split(".")[: -node.level] if not module.endswith("__init__") else module.split(".")
                base = ".".join([*parent, base] if base else parent)
            found.add(base)
            found.update(f"{base}.{alias.name}" for alias in node.names)
        for child in ast.iter_child_nodes(node):
            visit(child)

    visit(tree)
    return found


def import_graph() -> dict[str, set[str]]:
    modules = {_module_name(p): p for p in PACKAGE.rglob("*.py")}
    graph = {}
    for name, path in modules.items():
        imported = _runtime_imports(ast.parse(path.read_text(encoding="utf-8")), name)
        graph[name] = {m for m in imported if m in modules and m != name and m != "peo_hub"}
    return graph


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    state: dict[str, int] = {}
    stack: list[str] = []

    def dfs(node: str) -> list[str] | None:
        state[node] = 1
        stack.append(node)
        for nxt in sorted(graph.get(node, ())):
            if state.get(nxt) == 1:
                return stack[stack.index(nxt):] + [nxt]
            if state.get(nxt) is None:
                cycle = dfs(nxt)
                if cycle:
                    return cycle
        stack.pop()
        state[node] = 2
        return None

    for node in sorted(graph):
        if node not in state:
            cycle = dfs(node)
            if cycle:
                return cycle
    return None


def test_the_cycle_finder_finds_cycles() -> None:
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert find_cycle({"a": {"b"}, "b": set()}) is None
    tree = ast.parse("import x\nif TYPE_CHECKING:\n    import y\ndef f():\n    from peo_hub import z\n")
    assert _runtime_imports(tree, "peo_hub.m") == {"x", "peo_hub", "peo_hub.z"}


def test_no_import_cycles_counting_function_level_imports() -> None:
    cycle = find_cycle(import_graph())
    assert cycle is None, " -> ".join(cycle or [])


# The on-disk format knows nothing of the network or the command line; the network layer
# knows nothing of the command line; only the command line's entry points parse arguments.
FORMAT = {"peo_hub.bundle.manifest", "peo_hub.bundle.front", "peo_hub.utils.weights", "peo_hub.family.lora", "peo_hub.utils.fsutil", "peo_hub.core.policy",
          "peo_hub.core.pareto", "peo_hub.family.merge", "peo_hub.data.formats", "peo_hub.data.chat", "peo_hub.utils.ids", "peo_hub.publish.gguf"}
NETWORK = {"peo_hub.publish.hub"}
CLI = {"peo_hub.cli"}


@pytest.mark.parametrize("module", sorted(FORMAT))
def test_format_modules_stay_offline_and_away_from_the_cli(module: str) -> None:
    graph = import_graph()
    reachable, todo = set(), [module]
    while todo:
        for nxt in graph[todo.pop()]:
            if nxt not in reachable:
                reachable.add(nxt)
                todo.append(nxt)
    assert not reachable & (NETWORK | CLI), f"{module} reaches {sorted(reachable & (NETWORK | CLI))}"


def test_the_network_layer_does_not_reach_the_cli() -> None:
    assert "peo_hub.cli" not in import_graph()["peo_hub.publish.hub"]


def test_argument_parsing_lives_in_entry_points_only() -> None:
    users = {name for name, path in ((_module_name(p), p) for p in PACKAGE.rglob("*.py"))
             if "argparse" in _runtime_imports(ast.parse(path.read_text(encoding="utf-8")), name)}
    assert users <= {"peo_hub.cli", "peo_hub.train_aspect"}, users
