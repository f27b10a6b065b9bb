"""The README's Quick start and CI agree: `.ci/run` runs the README's test command as written."""
from __future__ import annotations

from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def quick_start_commands() -> list[str]:
    text = (ROOT / "README.md").read_text(encoding="utf-8")
    section = text.split("## Quick start", 1)[1].split("\n## ", 1)[0]
    return [line.strip() for line in section.splitlines() if line.startswith("    python3 -m venv")]


def test_ci_runs_the_readme_test_command_verbatim():
    commands = quick_start_commands()
    (test_command,) = [c for c in commands if c.endswith("python -m pytest -q")]
    ci = [line.strip() for line in (ROOT / ".ci" / "run").read_text(encoding="utf-8").splitlines()]
    assert test_command in ci
    # nothing installed before it: the suite must pass with the README's install alone
    before = ci[:ci.index(test_command)]
    assert not [line for line in before if "pip install" in line and not line.startswith("#")]


def test_the_small_benchmark_of_the_quick_start_exists():
    from harness.spec import load_spec

    spec = load_spec(ROOT / "benchmarks" / "ntk_spectrum_small.toml")
    cells = spec.cells()
    assert len(cells) == 300
    ds = sorted({c.params["d"] for c in cells})
    assert len(ds) == 10 and max(ds) == 97 and sorted({c.params["N"] for c in cells}) == [100, 200, 300]
