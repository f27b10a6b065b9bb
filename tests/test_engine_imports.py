"""The import graph of harness/engine and harness/benchmarking, read from the source (imports
inside functions count): the engine imports nothing of harness outside itself, and neither
folder has an import cycle."""
from __future__ import annotations

import ast
from pathlib import Path

import pytest

HARNESS = Path(__file__).resolve().parent.parent / "harness"


def module_imports(folder: str) -> dict[str, set[str]]:
    """``{module: the harness modules it imports}`` for the modules of ``harness/<folder>``
    (dotted names; ``from .x import y`` counts as an import of ``harness.<folder>.x``, or of
    ``harness.<folder>.x.y`` when that is a module)."""
    root = HARNESS / folder
    package = f"harness.{folder}"
    modules = {f"{package}.{p.stem}" if p.stem != "__init__" else package: p for p in root.glob("*.py")}
    graph: dict[str, set[str]] = {}
    for name, path in modules.items():
        base = package.split(".")  # every module here sits directly in the package
        found: set[str] = set()
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if isinstance(node, ast.Import):
                found.update(a.name for a in node.names if a.name.split(".")[0] == "harness")
            elif isinstance(node, ast.ImportFrom):
                if node.level:
                    parts = base[:len(base) - node.level + 1] + ([node.module] if node.module else [])
                    target = ".".join(parts)
                else:
                    target = node.module or ""
                if target.split(".")[0] != "harness":
                    continue
                subs = [f"{target}.{a.name}" for a in node.names if f"{target}.{a.name}" in modules]
                found.update(subs or [target])
        graph[name] = found - {name}
    return graph


def cycle_in(graph: dict[str, set[str]]) -> list[str] | None:
    """One import cycle of ``graph`` as a list of modules (first repeated last), or ``None``."""
    state: dict[str, int] = {}  # 1: on the current path, 2: done
    path: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = 1
        path.append(node)
        for nxt in sorted(graph.get(node, ())):
            if nxt not in graph:
                continue
            if state.get(nxt) == 1:
                return path[path.index(nxt):] + [nxt]
            if nxt not in state:
                found = visit(nxt)
                if found:
                    return found
        path.pop()
        state[node] = 2
        return None

    for start in sorted(graph):
        if start not in state:
            found = visit(start)
            if found:
                return found
    return None


def test_the_engine_imports_nothing_of_harness_outside_it():
    outside = {(m, target) for m, targets in module_imports("engine").items() for target in targets
               if not (target == "harness.engine" or target.startswith("harness.engine."))}
    assert not outside, f"harness/engine imports outside itself: {sorted(outside)}"


@pytest.mark.parametrize("folder", ["engine", "benchmarking"])
def test_no_import_cycle(folder):
    assert cycle_in(module_imports(folder)) is None, " -> ".join(cycle_in(module_imports(folder)))


def test_the_cycle_finder_finds_a_cycle():
    assert cycle_in({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == ["a", "b", "c", "a"]
    assert cycle_in({"a": {"b"}, "b": set(), "c": {"a", "b"}}) is None


def test_the_graph_counts_imports_inside_functions():
    graph = module_imports("engine")
    assert "harness.engine.stacked_gradients" in graph["harness.engine.structured"]  # in a function
    assert "harness.engine.evaluation_cost" in graph["harness.engine.chain_kernels"]  # at the top
