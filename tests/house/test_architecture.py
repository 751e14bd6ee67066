"""The house's rules: stage packages in layers, data flowing one way, no import circles.

Why a test: a layer that imports the one above it works until someone moves an import, and
a format module that learns about the network cannot be used offline. The graph is read
from the source with ``ast``: every ``import`` anywhere in a module, at the top, inside a
function, or under ``if TYPE_CHECKING:`` (a loop there is still a loop for a reader and a
type checker).

The layers, low to high (a package imports only itself and packages to its left)::

    utils < core < world < bundle < data < {family, judges} < {evaluate, train}
          < {publish, serve} < recipe < {cli, train_aspect}
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[2] / "peo_hub"

LAYERS: list[set[str]] = [{"utils"}, {"core"}, {"world"}, {"bundle"}, {"data"}, {"family", "judges"},
                          {"evaluate", "train"}, {"publish", "serve"}, {"recipe"}, {"cli", "train_aspect"}]
RANK = {name: level for level, names in enumerate(LAYERS) for name in names}


def _module_name(path: Path, package: Path = PACKAGE) -> str:
    parts = path.relative_to(package.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _imports(tree: ast.AST, module: str, is_package: bool = False) -> set[str]:
    """Every module named by an import anywhere in the tree (``TYPE_CHECKING`` blocks included)."""
    found: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:  # relative import
                parent = module.split(".") if is_package else module.split(".")[:-1]
                parent = parent[: len(parent) - node.level + 1]
                base = ".".join([*parent, base] if base else parent)
            found.add(base)
            found.update(f"{base}.{alias.name}" for alias in node.names)
    return found


def import_graph(package: Path = PACKAGE) -> dict[str, set[str]]:
    paths = {_module_name(p, package): p for p in package.rglob("*.py")}
    graph = {}
    for name, path in paths.items():
        imported = _imports(ast.parse(path.read_text(encoding="utf-8")), name, path.name == "__init__.py")
        graph[name] = {m for m in imported if m in paths and m != name and m != "peo_hub"}
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


def stage(module: str) -> str | None:
    """``peo_hub.evaluate.sweep`` -> ``evaluate``; ``peo_hub.cli`` -> ``cli``; the package itself -> None."""
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else None


def upward_imports(graph: dict[str, set[str]]) -> list[str]:
    """``a -> b`` for every import of a package at the same or a higher layer than the importer's."""
    found = []
    for module, imported in sorted(graph.items()):
        mine = stage(module)
        for other in sorted(imported):
            theirs = stage(other)
            if mine is None or theirs is None or mine == theirs:
                continue
            if RANK[theirs] >= RANK[mine]:
                found.append(f"{module} -> {other}")
    return found


def test_every_module_belongs_to_a_layer() -> None:
    strays = sorted({stage(m) for m in import_graph()} - set(RANK) - {None})
    assert not strays, f"packages or modules outside the layers: {strays}; add them to LAYERS (and the README)"


def test_the_checkers_catch_what_they_are_for() -> None:
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert find_cycle({"a": {"b"}, "b": set()}) is None
    tree = ast.parse("import x\nif TYPE_CHECKING:\n    import y\ndef f():\n    from peo_hub import z\n")
    assert _imports(tree, "peo_hub.m") == {"x", "y", "peo_hub", "peo_hub.z"}
    assert _imports(ast.parse("from .b import c\n"), "peo_hub.core.a") == {"peo_hub.core.b", "peo_hub.core.b.c"}


def test_a_deliberate_upward_import_is_caught(tmp_path: Path) -> None:
    """Copy the package, add one upward import (a core module that knows the recipe), see it found."""
    import shutil

    copy = tmp_path / "peo_hub"
    shutil.copytree(PACKAGE, copy, ignore=shutil.ignore_patterns("__pycache__"))
    assert upward_imports(import_graph(copy)) == []
    target = copy / "core" / "stats.py"
    target.write_text(target.read_text() + "\n\ndef _peek() -> None:\n    from peo_hub.recipe.schema import Recipe\n")
    assert upward_imports(import_graph(copy)) == ["peo_hub.core.stats -> peo_hub.recipe.schema"]
    (copy / "family" / "lora.py").write_text((copy / "family" / "lora.py").read_text()
                                             + "\nif TYPE_CHECKING:\n    from peo_hub.judges.registry import Judge\n")
    assert "peo_hub.family.lora -> peo_hub.judges.registry" in upward_imports(import_graph(copy))


def test_no_import_cycles_counting_function_level_and_type_checking_imports() -> None:
    cycle = find_cycle(import_graph())
    assert cycle is None, " -> ".join(cycle or [])


def test_packages_import_only_themselves_and_lower_layers() -> None:
    assert upward_imports(import_graph()) == []


# The on-disk format knows nothing of the network or the command line; the network layer
# knows nothing of the command line; only the command line's entry points parse arguments.
OFFLINE = ["peo_hub.bundle.manifest", "peo_hub.bundle.front", "peo_hub.utils.weights", "peo_hub.family.lora",
           "peo_hub.utils.fsutil", "peo_hub.core.policy", "peo_hub.core.pareto", "peo_hub.family.merge",
           "peo_hub.data.formats", "peo_hub.data.chat", "peo_hub.utils.ids", "peo_hub.publish.gguf"]
NETWORK = {"peo_hub.utils.hubio", "peo_hub.bundle.pull", "peo_hub.publish.hub"}


@pytest.mark.parametrize("module", OFFLINE)
def test_format_modules_stay_offline_and_away_from_the_cli(module: str) -> None:
    graph = import_graph()
    reachable, todo = set(), [module]
    while todo:
        for nxt in graph[todo.pop()]:
            if nxt not in reachable:
                reachable.add(nxt)
                todo.append(nxt)
    assert not reachable & (NETWORK | {"peo_hub.cli"}), f"{module} reaches {sorted(reachable & NETWORK)}"


def test_argument_parsing_lives_in_entry_points_only() -> None:
    users = {name for name, path in ((_module_name(p), p) for p in PACKAGE.rglob("*.py"))
             if "argparse" in _imports(ast.parse(path.read_text(encoding="utf-8")), name)}
    assert users <= {"peo_hub.cli", "peo_hub.train_aspect"}, users
