"""The package's layers, read from the code's own imports (those inside functions too).

Layers of harness/, from the top down (docs/design.md draws them): a module imports its own layer
or a lower one, never a higher one, and no chain of imports comes back to where it started.
Plugins (plugins/, installed as ``harness_plugins``) and examples/ import only ``harness`` (the
API), ``harness.plugin``, ``harness.engine`` and modules of their own package.
"""
from __future__ import annotations

import ast
from pathlib import Path
from typing import Iterable

import pytest

ROOT = Path(__file__).resolve().parents[1]

LAYERS = [
    ("harness.cli", "harness.__main__"),
    ("harness.api", "harness"),
    ("harness.benchmarking",),
    ("harness.results",),
    ("harness.runner",),
    ("harness.spec",),
    ("harness.plugin",),
    ("harness.engine",),
    ("harness.errors", "harness.version"),
]
"""Top to bottom; a module belongs to the layer of its longest matching prefix."""

PLUGIN_SURFACE = ("harness.plugin", "harness.engine")
"""What a plugin or an example may import of harness besides the package itself (the API): these
packages and their submodules."""


def module_name(path: Path, root: Path, package: str) -> str:
    parts = list(path.relative_to(root).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts = parts[:-1]
    return ".".join([package, *parts]) if parts else package


def _modules(root: Path, package: str) -> dict[str, Path]:
    return {module_name(p, root, package): p for p in sorted(root.rglob("*.py")) if "__pycache__" not in p.parts}


def _type_checking_blocks(tree: ast.AST) -> set[int]:
    """ids of the nodes under ``if TYPE_CHECKING:``: imports for annotations only, never run."""
    skipped: set[int] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.If) and getattr(node.test, "id", getattr(node.test, "attr", None)) == "TYPE_CHECKING":
            skipped.update(id(n) for child in node.body for n in ast.walk(child))
    return skipped


def imports_of(path: Path, name: str, modules: Iterable[str]) -> set[str]:
    """Every module of ``modules`` that ``name`` (the module at ``path``) imports, at any depth of
    its code: ``from package import submodule`` imports the submodule (and the package only
    where a name is not a submodule)."""
    modules = set(modules)
    tree = ast.parse(path.read_text(), filename=str(path))
    skipped = _type_checking_blocks(tree)
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found: set[str] = set()
    for node in ast.walk(tree):
        if id(node) in skipped:
            continue
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base_parts = package.split(".")
                base_parts = base_parts[:len(base_parts) - (node.level - 1)]
                base = ".".join(base_parts + ([node.module] if node.module else []))
            else:
                base = node.module or ""
            for alias in node.names:
                found.add(f"{base}.{alias.name}" if f"{base}.{alias.name}" in modules else base)
    return {m for m in found if m in modules and m != name}


def graph() -> dict[str, set[str]]:
    """Edges between the project's own modules (harness, its plugins, the example plugin)."""
    modules = {**_modules(ROOT / "harness", "harness"), **_modules(ROOT / "plugins", "harness_plugins")}
    example = ROOT / "examples" / "harness-softplus" / "harness_softplus"
    modules.update(_modules(example, "harness_softplus"))
    return {name: imports_of(path, name, modules) for name, path in modules.items()}


def layer_of(module: str) -> int | None:
    best, rank = "", None
    for i, names in enumerate(LAYERS):
        for prefix in names:
            if (module == prefix or module.startswith(prefix + ".")) and len(prefix) >= len(best):
                if prefix == "harness" and module != "harness":
                    continue
                best, rank = prefix, i
    return rank


def cycles(edges: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected components with more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    out: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in edges.get(v, ()):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                out.append(sorted(component))

    for v in sorted(edges):
        if v not in index:
            visit(v)
    return out


def test_no_import_cycles():
    edges = graph()
    assert cycles(edges) == []


def test_the_engine_imports_nothing_of_harness_outside_it():
    """The numerical engine is self-contained: not even the lowest layer beside it."""
    outside = sorted(f"{src} -> {dst}" for src, targets in graph().items() if src.startswith("harness.engine")
                     for dst in targets if not (dst == "harness.engine" or dst.startswith("harness.engine.")))
    assert outside == []


def test_no_module_imports_a_layer_above_it():
    edges = graph()
    upward = []
    for src, targets in edges.items():
        if not src.startswith("harness.") and src != "harness":
            continue
        for dst in targets:
            if not dst.startswith("harness.") and dst != "harness":
                continue
            a, b = layer_of(src), layer_of(dst)
            assert a is not None and b is not None, (src, dst)
            if b < a:
                upward.append(f"{src} -> {dst}")
    assert upward == []


def _own_unit(module: str) -> str:
    parts = module.split(".")
    return ".".join(parts[:2]) if parts[0] == "harness_plugins" else parts[0]


def test_plugins_and_examples_import_only_the_public_surface():
    edges = graph()
    bad = []
    for src, targets in edges.items():
        if not (src.startswith("harness_plugins") or src.startswith("harness_softplus")):
            continue
        for dst in targets:
            if dst.startswith("harness_plugins") or dst.startswith("harness_softplus"):
                if _own_unit(dst) != _own_unit(src) and dst != "harness_plugins":
                    bad.append(f"{src} -> {dst}")
            elif dst != "harness" and not any(dst == p or dst.startswith(p + ".") for p in PLUGIN_SURFACE):
                bad.append(f"{src} -> {dst}")
    assert bad == []


@pytest.mark.parametrize("top", ["harness", "plugins"])
def test_no_module_over_500_lines(top):
    long = {str(p.relative_to(ROOT)): n for p in (ROOT / top).rglob("*.py")
            if (n := len(p.read_text().splitlines())) > 500}
    assert long == {}
