"""A property-based fuzz test of the benchmark-file loader (hypothesis): benchmark files generated
from the schema (the registered experiments, their declared parameters and slots, grids, ranges,
derived expressions, searches), valid and mutated (keys dropped, misspelt or added, values of the
wrong type, out of range, huge or not finite), with ``--set`` lines. Each file ends either in a
valid plan (``harness run FILE --dry-run`` exits 0, and the resolved spec loads back to the same
cells) or in one line ``error: ...`` with exit code 2: never a traceback, never another exit code.

Run time is bounded for CI: the default profile ``ci`` draws 60 files, derandomised (the same files
every run). A longer, random exploration::

    HARNESS_FUZZ_PROFILE=long python -m pytest -q tests/test_fuzz_loader.py   # 2,000 files

(``HARNESS_FUZZ_EXAMPLES=N`` sets the number of files of either profile.)
"""
from __future__ import annotations

import os
import string
import tempfile
from pathlib import Path
from typing import Any

import pytest

hypothesis = pytest.importorskip("hypothesis")
from click.testing import CliRunner  # noqa: E402
from hypothesis import HealthCheck, given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402

from harness.cli import main  # noqa: E402
from harness.errors import UserError  # noqa: E402
from harness.plugin.manager import load_registry  # noqa: E402
from harness.spec import parse_spec  # noqa: E402
from harness.spec.tomlwriter import dumps  # noqa: E402

_EXAMPLES = os.environ.get("HARNESS_FUZZ_EXAMPLES")
settings.register_profile("ci", max_examples=int(_EXAMPLES or 60), deadline=None, derandomize=True,
                          suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
settings.register_profile("long", max_examples=int(_EXAMPLES or 2000), deadline=None,
                          suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
PROFILE = os.environ.get("HARNESS_FUZZ_PROFILE", "ci")

REGISTRY = load_registry()
EXPERIMENTS = sorted(REGISTRY.names("experiment"))
WORKDIR = Path(tempfile.mkdtemp(prefix="harness-fuzz-"))
CASES = {"files": 0, "valid": 0, "refused": 0}
"""What the run drew (printed at the end of the module's run with ``-s``)."""

# -- values ------------------------------------------------------------------------------------

NAMES = st.from_regex(r"[A-Za-z0-9][A-Za-z0-9_-]{0,10}", fullmatch=True)
ODD_NAMES = st.one_of(st.text(alphabet=string.ascii_letters + string.digits + "_.- ", min_size=0, max_size=12),
                      st.sampled_from(["..", "a.b", "x" * 70, "fig 1", "-x", "latest"]))


def rarely(draw, valid: st.SearchStrategy, odd: st.SearchStrategy, one_in: int = 8):
    """A draw of ``valid``, or of ``odd`` once in ``one_in`` draws."""
    return draw(odd) if draw(st.integers(0, one_in - 1)) == 0 else draw(valid)
JUNK = st.one_of(
    st.integers(min_value=-10 ** 6, max_value=10 ** 6),
    st.sampled_from([0, -1, 2 ** 63, 10 ** 400, 10 ** 19]),
    st.floats(allow_nan=True, allow_infinity=True, width=64),
    st.sampled_from([1e308, -1e308, 5e-324, 1e-300, 0.5]),
    st.text(max_size=10),
    st.sampled_from(["N", "d", "2*d", "10**9", "1/0", "os.system(1)", "", "relu", "full", "x" * 300]),
    st.booleans(),
    st.lists(st.integers(min_value=-3, max_value=50), max_size=3),
    st.lists(st.text(max_size=3), max_size=2),
    st.dictionaries(NAMES, st.integers(min_value=-2, max_value=5), max_size=2),
)
EXPRESSIONS = st.sampled_from(["2 * i", "i // 2 + 1", "floor(sqrt(100 * i))", "max(2, 2 * round(i))", "i + 1",
                               "i", "1 / (i - i)", "10 ** 10 ** 10", "i ** 0.5", "[i, i]", "i +", "i * 1.5", "0 * i"])


def valid_value(p) -> st.SearchStrategy:
    """A value of declared parameter ``p`` (:class:`harness.plugin.params.Param`), mostly in range."""
    if p.choices:
        return st.sampled_from(list(p.choices))
    types = p.type if isinstance(p.type, tuple) else (p.type,)
    if list in types:
        items = p.item_type if isinstance(p.item_type, tuple) else (p.item_type or int,)
        strings = ["full", "W1", "W2"] if p.name == "kernels" else ["d", "2*d", "relu"]
        item = st.integers(1, 40) if int in items else (st.floats(0.1, 3) if float in items else
                                                        st.sampled_from(strings))
        return st.lists(item, min_size=max(1, p.min_length), max_size=3)
    if bool in types:
        return st.booleans()
    lo = max(p.min, 1) if p.min is not None else 1  # small positive numbers: what most parameters take
    hi = p.max if p.max is not None else lo + 40
    if int in types:
        return st.integers(int(lo), int(min(hi, lo + 40)))
    if float in types:
        lo, hi = (p.min, p.max) if p.min is not None and p.max is not None and p.max < 1 else (lo * 0.1, hi)
        return st.floats(float(lo), float(min(hi, lo + 20.0)), allow_nan=False).filter(lambda x: x > 0)
    return st.sampled_from(["1", "N", "d", "N/2", "1/(10*sqrt(N))", ""])


def typo(name: str) -> st.SearchStrategy:
    return st.sampled_from([name + "s", name[:-1] or "x", name.upper(), "_" + name])


# -- benchmark files -------------------------------------------------------------------------


@st.composite
def blocks(draw) -> dict[str, Any]:
    name = draw(st.sampled_from(EXPERIMENTS))
    cls = REGISTRY.get("experiment", name)
    block: dict[str, Any] = {"experiment": name}
    if draw(st.booleans()):
        block["id"] = rarely(draw, NAMES, ODD_NAMES)
    params = list(cls.params)
    for p in params:
        if p.required or draw(st.integers(0, 5)) == 0:
            block[p.name] = draw(valid_value(p))
    for slot, (kind, default) in dict(cls.slots).items():
        if draw(st.integers(0, 4)) == 0:
            names = sorted(REGISTRY.names(kind))
            chosen = draw(st.sampled_from(names))
            if draw(st.booleans()):
                comp = REGISTRY.get(kind, chosen)
                table: dict[str, Any] = {"name": chosen}
                for cp in comp.params[:2]:
                    if not cp.required and draw(st.booleans()):
                        table[cp.name] = draw(valid_value(cp))
                block[slot] = table
            else:
                block[slot] = chosen
    grid: dict[str, Any] = {}
    numeric = [p for p in params if p.type in (int, float) and not p.choices]
    for p in draw(st.lists(st.sampled_from(numeric), unique_by=lambda p: p.name, max_size=2)) if numeric else []:
        block.pop(p.name, None) if draw(st.integers(0, 3)) else None  # sometimes left set: an overlap
        if draw(st.integers(0, 3)) == 0:
            start = draw(st.integers(1, 20))
            grid[p.name] = draw(st.fixed_dictionaries(
                {"start": st.just(start), "stop": st.integers(start, start + 40)},
                optional={"step": st.integers(-3, 7), "num": st.integers(0, 4),
                          "scale": st.sampled_from(["log", "linear", "exp"])}))
        else:
            grid[p.name] = draw(st.lists(valid_value(p), min_size=1, max_size=3, unique_by=repr))
    if draw(st.integers(0, 3)) == 0:
        grid["i"] = draw(st.lists(st.integers(1, 20), min_size=1, max_size=3, unique=True))
        key = draw(st.sampled_from([p.name for p in numeric] or ["i2"]))
        block.pop(key, None)
        grid.pop(key, None)
        block["derived"] = {key: draw(EXPRESSIONS)}
    if grid:
        block["grid"] = grid
    if numeric and draw(st.integers(0, 5)) == 0:
        axis = draw(st.sampled_from(numeric))
        block.pop(axis.name, None)
        grid.pop(axis.name, None)
        declared = cls.metric_names({**{p.name: p.default for p in params}, "kernels": ["full"]}, {}) or ("loss",)
        search = {"axis": axis.name, "lower": draw(st.integers(1, 10)), "upper": draw(st.integers(5, 200)),
                  "metric": draw(st.one_of(st.sampled_from(list(declared)), typo(list(declared)[0]))),
                  draw(st.sampled_from(["below", "above"])): draw(st.floats(-5, 5)), "max_steps": 3}
        if draw(st.booleans()):
            search["scale"] = draw(st.sampled_from(["linear", "log"]))
        block["search"] = search
    if draw(st.integers(0, 5)) == 0:
        axes = list(grid) + list(block.get("derived", {}))
        block["seed_by"] = draw(st.lists(st.sampled_from(axes + ["zz"] if axes else ["zz"]), max_size=2, unique=True))
    if draw(st.integers(0, 4)) == 0:
        block["repetitions"] = rarely(draw, st.integers(1, 3), st.integers(-1, 0))
    return block


@st.composite
def benchmark_files(draw) -> dict[str, Any]:
    bench: dict[str, Any] = {"name": rarely(draw, NAMES, ODD_NAMES), "seed": draw(st.integers(0, 10 ** 6))}
    if draw(st.booleans()):
        bench["repetitions"] = draw(st.integers(1, 3))
    return {"benchmark": bench, "experiments": draw(st.lists(blocks(), min_size=1, max_size=2))}


def _paths(node: Any, prefix: tuple = ()) -> list[tuple]:
    """Every key path of a nested dict/list document."""
    out = []
    if isinstance(node, dict):
        for k, v in node.items():
            out.append(prefix + (k,))
            out += _paths(v, prefix + (k,))
    elif isinstance(node, list):
        for i, v in enumerate(node):
            out.append(prefix + (i,))
            out += _paths(v, prefix + (i,))
    return out


@st.composite
def mutated(draw, doc: dict[str, Any]) -> dict[str, Any]:
    """``doc`` with a few mutations: a key dropped, misspelt or added, a value replaced by junk."""
    for _ in range(draw(st.integers(0, 3))):
        paths = _paths(doc)
        if not paths:
            break
        path = draw(st.sampled_from(paths))
        parent: Any = doc
        for k in path[:-1]:
            parent = parent[k]
        last = path[-1]
        kind = draw(st.sampled_from(["drop", "rename", "junk", "add"]))
        if isinstance(parent, list):
            if kind == "drop" and len(parent) > 1:
                parent.pop(last)
            else:
                parent[last] = draw(JUNK)
        elif kind == "drop":
            parent.pop(last)
        elif kind == "rename":
            parent[draw(typo(str(last)))] = parent.pop(last)
        elif kind == "junk":
            parent[last] = draw(JUNK)
        else:
            parent[draw(NAMES)] = draw(JUNK)
    return doc


@st.composite
def set_lines(draw, doc: dict[str, Any]) -> list[str]:
    """``--set`` lines: key paths of the document (or near them) with TOML values or raw text."""
    blocks_ = doc.get("experiments") if isinstance(doc.get("experiments"), list) else []
    refs = [str(b.get("id", b.get("experiment"))) for b in blocks_ if isinstance(b, dict)] or ["0"]
    keys = st.one_of(
        st.sampled_from(["benchmark.seed", "benchmark.repetitions", "benchmark.name", "search.lower",
                         "activation.name.x"]),
        st.builds(lambda r, k: f"experiments.{r}.{k}", st.sampled_from(refs + ["nope", "0", "7"]),
                  st.sampled_from(["N", "d", "grid.N", "grid.i", "derived.d", "search.metric", "search.lower",
                                   "activation", "activation.name", "architecture.widths", "repetitions",
                                   "seed_by", "kernels", "max_epochs", "grid.N, d"])),
    )
    values = st.one_of(st.sampled_from(["3", "10**9", "[1, 2]", '"relu"', "relu", "{ a = 1 }", "[1,", "nan",
                                        "inf", "-1", "1e308", "true", "1" * 4400, "[[1, 2], [3, 4]]", ""]),
                       st.text(max_size=8))
    return draw(st.lists(st.builds(lambda k, v: f"{k}={v}", keys, values), max_size=2))


@st.composite
def cases(draw) -> tuple[str, list[str]]:
    doc = draw(benchmark_files())
    if draw(st.integers(0, 2)) == 0:
        doc = draw(mutated(doc))
    overrides = draw(set_lines(doc)) if draw(st.integers(0, 2)) == 0 else []
    return dumps(doc), overrides


@settings(settings.get_profile(PROFILE))
@given(cases())
def test_a_generated_file_ends_in_a_plan_or_one_line_exit_2(case):
    text, overrides = case
    CASES["files"] += 1
    path = WORKDIR / "fuzz.toml"
    path.write_text(text, encoding="utf-8")
    args = ["run", str(path), "--dry-run"] + [a for o in overrides for a in ("-s", o)]
    result = CliRunner().invoke(main, args)
    assert result.exception is None or isinstance(result.exception, SystemExit), \
        f"{type(result.exception).__name__}: {result.exception}\n--- file:\n{text}\n--- --set: {overrides}"
    assert result.exit_code in (0, 2), (result.exit_code, result.output, text, overrides)
    if result.exit_code == 2:
        CASES["refused"] += 1
        lines = result.stderr.strip().splitlines()
        assert len(lines) == 1 and lines[0].startswith("error: "), result.stderr
        assert "Traceback" not in result.output
        return
    CASES["valid"] += 1
    spec = parse_spec(text, str(path), overrides, REGISTRY)
    assert "cells;" in result.stdout or "cells" in result.stdout.splitlines()[-1]
    try:  # the resolved spec (a run directory's spec.toml) loads back to the same cells
        again = parse_spec(spec.to_toml(), "spec.toml", (), REGISTRY)
    except UserError as exc:
        raise AssertionError(f"the resolved spec does not load: {exc}\n--- file:\n{text}\n--- resolved:\n"
                             f"{spec.to_toml()}") from None
    assert [c.cell_id for c in again.cells()] == [c.cell_id for c in spec.cells()]


def teardown_module(module):
    print(f"\nfuzz ({PROFILE}): {CASES['files']} generated files, {CASES['valid']} valid plans, "
          f"{CASES['refused']} refused with one line and exit 2")
