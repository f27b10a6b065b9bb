"""The example third-party plugin package examples/harness-softplus, installed like a user would.

It is built and installed with pip into a temporary folder (a copy of the package, so that the
build leaves nothing in the source tree), then used from ``harness`` subprocesses that see it on
PYTHONPATH: the components must appear with their distribution, pass the conformance suite and
run in a benchmark.
"""
from __future__ import annotations

import csv
import io
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
EXAMPLE = ROOT / "examples" / "harness-softplus"
HARNESS = [sys.executable, "-m", "harness.cli"]


def _can_build_here() -> bool:
    """Whether this environment's own setuptools can build the example's wheel (no download).

    The example asks for setuptools >= 68, and building a wheel needs ``bdist_wheel``: part of
    setuptools from 70.1, else the ``wheel`` package. A fresh ``python3 -m venv`` (setuptools
    65.5, no ``wheel``) cannot, so pip then builds in an isolated environment with setuptools
    from the index that installed the harness itself.
    """
    from importlib.metadata import PackageNotFoundError, version

    def release(name: str) -> tuple[int, ...]:
        try:
            parts = version(name).split(".")
        except PackageNotFoundError:
            return ()
        return tuple(int(p) for p in parts[:2] if p.isdigit())

    setuptools = release("setuptools")
    return setuptools >= (68,) and (setuptools >= (70, 1) or release("wheel") != ())


@pytest.fixture(scope="module")
def site(tmp_path_factory) -> Path:
    tmp = tmp_path_factory.mktemp("example_plugin")
    source = tmp / "src"
    shutil.copytree(EXAMPLE, source, ignore=shutil.ignore_patterns("build", "*.egg-info", "__pycache__"))
    target = tmp / "site"
    isolation = ["--no-build-isolation"] if _can_build_here() else []
    proc = subprocess.run([sys.executable, "-m", "pip", "install", "--no-deps", *isolation,
                           "--no-input", "--disable-pip-version-check", "--quiet", "--target", str(target),
                           str(source)], capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    return target


def harness(site: Path, *args: str, cwd: Path | None = None, **env_extra: str) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if k not in ("HARNESS_PLUGINS", "HARNESS_DISABLE_PLUGIN_AUTOLOAD")}
    env["PYTHONPATH"] = str(site)
    env.update(env_extra)
    return subprocess.run(HARNESS + list(args), capture_output=True, text=True, env=env, cwd=cwd, timeout=300)


@pytest.mark.slow
def test_installed_package_ships_the_entry_point(site):
    (dist_info,) = site.glob("harness_softplus-*.dist-info")
    assert "[harness]\nsoftplus = harness_softplus" in (dist_info / "entry_points.txt").read_text()
    assert (site / "harness_softplus" / "architecture.py").is_file()


@pytest.mark.slow
def test_components_are_listed_with_their_distribution(site):
    proc = harness(site, "plugins", "--json")
    assert proc.returncode == 0, proc.stderr
    info = json.loads(proc.stdout)
    assert info["failures"] == []
    by_name = {(kind, e["name"]): e for kind, entries in info["components"].items() for e in entries}
    softplus = by_name[("activation", "softplus")]
    pyramid = by_name[("architecture", "pyramid")]
    for entry in (softplus, pyramid):
        assert entry["provider"] == "harness-softplus" and entry["version"] == "0.1.0"
    assert [p["name"] for p in softplus["params"]] == ["beta"] and softplus["params"][0]["default"] == 1.0
    assert [p["name"] for p in pyramid["params"]] == ["width", "depth", "train_output"]
    assert by_name[("activation", "sigmoid")]["provider"] == "harness"  # built-ins are still there
    # third-party autoloading can be turned off
    off = json.loads(harness(site, "plugins", "--json", HARNESS_DISABLE_PLUGIN_AUTOLOAD="1").stdout)
    assert "softplus" not in [e["name"] for e in off["components"]["activation"]]


@pytest.mark.slow
@pytest.mark.parametrize("name", ["softplus", "pyramid"])
def test_components_pass_the_conformance_suite(site, name):
    proc = harness(site, "check-plugin", name)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "[harness-softplus]" in proc.stdout.splitlines()[0]
    assert " 0 failed" in proc.stdout.splitlines()[-1]


@pytest.mark.slow
def test_a_benchmark_runs_with_the_plugin_components(site, tmp_path):
    bench = EXAMPLE / "benchmarks" / "softplus_pyramid.toml"
    proc = harness(site, "run", str(bench), "--quiet", "--no-figures", "--results-dir", str(tmp_path),
                   "--set", "benchmark.repetitions=1", "--set", "experiments.pyramid.max_epochs=60")
    assert proc.returncode == 0, proc.stderr
    run_dir = Path(proc.stdout.strip().splitlines()[-1])
    rows = [json.loads(line) for line in (run_dir / "rows.jsonl").read_text().splitlines()]
    assert len(rows) == 2 and all(r["status"] == "ok" for r in rows), [r["error"] for r in rows]
    assert sorted(r["components"]["activation"]["params"]["beta"] for r in rows) == [1.0, 4.0]
    for r in rows:
        assert r["plugins"]["activation"] == "harness-softplus"
        assert r["plugins"]["architecture"] == "harness-softplus"
        d = r["params"]["d"]
        # pyramid d -> 4d -> 2d -> d -> 1: the trainable parameter count the experiment reports
        assert r["metrics"]["P"] == d * 4 * d + 4 * d * 2 * d + 2 * d * d + d
        assert r["metrics"]["final_loss"] < r["metrics"]["initial_loss"]
    env = json.loads((run_dir / "env.json").read_text())
    assert env["plugins"]["harness-softplus"] == "0.1.0"
    assert (run_dir / "report.html").is_file()
    # seed_by = []: both sharpnesses got the same seed, so compare pairs them
    assert rows[0]["seed"] == rows[1]["seed"]
    by_beta = {r["components"]["activation"]["params"]["beta"]: r["metrics"]["final_loss"] for r in rows}
    cmp = harness(site, "compare", str(run_dir), "--by", "activation.beta", "-m", "final_loss", "--format", "csv")
    assert cmp.returncode == 0, cmp.stderr
    base, line = list(csv.DictReader(io.StringIO(cmp.stdout)))  # tidy: a line per group
    assert (base["group"], line["group"], line["baseline"]) == ("1.0", "4.0", "1.0")
    assert line["pairs"] == "1"
    assert float(line["diff"]) == pytest.approx(by_beta[4.0] - by_beta[1.0])


@pytest.mark.slow
def test_the_package_own_tests_pass(site):
    env = {k: v for k, v in os.environ.items() if k != "HARNESS_PLUGINS"}
    env.update(PYTHONPATH=str(site), PYTHONDONTWRITEBYTECODE="1")
    # run from outside the source tree, so that the installed copy is the one imported
    proc = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "--rootdir",
                           str(EXAMPLE), str(EXAMPLE / "tests")], capture_output=True, text=True, env=env,
                          cwd=site.parent, timeout=300)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "4 passed" in proc.stdout
