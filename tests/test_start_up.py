"""What a ``harness`` process loads before it needs it: the command line, the plugins and a
benchmark file's checks load neither Matplotlib nor Numba nor SciPy's LAPACK (each takes longer
to import than a small cell takes to run); the figures' and kernels' processes load them."""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
HEAVY = ("matplotlib", "numba", "scipy.linalg")


def loaded_after(code: str) -> dict[str, bool]:
    """Which of :data:`HEAVY` a fresh interpreter has loaded after running ``code``."""
    probe = f"{code}\nimport json, sys\nprint(json.dumps({{m: m in sys.modules for m in {HEAVY!r}}}))"
    out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True, cwd=ROOT)
    return json.loads(out.stdout.strip().splitlines()[-1])


def test_importing_the_command_line_and_the_api_loads_nothing_heavy():
    assert loaded_after("import harness.cli, harness.api") == dict.fromkeys(HEAVY, False)


def test_checking_a_figure_1_benchmark_loads_nothing_heavy():
    """Reading benchmarks/ntk_spectrum.toml and checking its memory needs (the parent process of
    a run, before any cell) stays light; the eigen-solver's module would load LAPACK."""
    code = ("from harness.plugin.manager import load_registry\n"
            "from harness.spec import load_spec\n"
            "from harness.runner.resources import check_memory\n"
            "registry = load_registry()\n"
            "spec = load_spec('benchmarks/ntk_spectrum.toml', registry=registry)\n"
            "check_memory(spec, registry, force=True)\n")
    assert loaded_after(code) == dict.fromkeys(HEAVY, False)


def test_the_experiments_kernels_do_load_them():
    """The probe can see a module load (it would pass vacuously otherwise)."""
    code = "from harness.engine import eigen\nimport matplotlib.figure\n"
    assert loaded_after(code) == {"matplotlib": True, "numba": False, "scipy.linalg": True}
