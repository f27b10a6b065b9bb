"""`harness plugins` and third-party plugins installed through the `harness` entry-point group."""
from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

HARNESS = str(Path(sys.executable).with_name("harness"))

PLUGIN = '''
from harness import Experiment, Param, hookimpl


class Twice(Experiment):
    name = "third_twice"
    help = "doubles x (a third-party experiment)"
    params = (Param("x", float, 1.0, help="the number to double"),)

    def run(self, cell):
        return {"y": 2 * self.x}


@hookimpl
def harness_register_experiments(registry):
    registry.add(Twice)
'''


def install(site: Path, module: str, dist: str, version: str, code: str) -> None:
    """A minimal installed distribution: a module plus its .dist-info with one entry point."""
    (site / f"{module}.py").write_text(code)
    info = site / f"{dist.replace('-', '_')}-{version}.dist-info"
    info.mkdir()
    (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {dist}\nVersion: {version}\n")
    (info / "entry_points.txt").write_text(f"[harness]\n{module} = {module}\n")


@pytest.fixture(scope="module")
def site(tmp_path_factory):
    site = tmp_path_factory.mktemp("site")
    install(site, "third_twice_plugin", "harness-third-demo", "0.1", PLUGIN)
    install(site, "broken_demo_plugin", "harness-broken-demo", "0.2",
            "raise ImportError('kaboom: a dependency is missing')\n")
    return site


def harness(site, *args, **env_extra):
    env = {k: v for k, v in os.environ.items() if k not in ("HARNESS_PLUGINS", "HARNESS_DISABLE_PLUGIN_AUTOLOAD")}
    env["PYTHONPATH"] = str(site)
    env.update(env_extra)
    return subprocess.run([HARNESS, *map(str, args)], env=env, capture_output=True, text=True, timeout=120,
                          cwd=site)


def test_listing_shows_third_party_components_with_their_distribution(site):
    out = harness(site, "plugins")
    assert out.returncode == 0, out.stderr
    lines = out.stdout.splitlines()
    entry = next(i for i, line in enumerate(lines) if line.strip().startswith("third_twice "))
    assert "[harness-third-demo 0.1]" in lines[entry] and "doubles x" in lines[entry]
    assert lines[entry + 1].split() == ["x:", "float", "=", "1.0", "the", "number", "to", "double"]
    assert "experiment:" in lines
    # the broken plugin is named with its error, and the others still loaded
    failed = lines[lines.index("plugins that failed to load:") + 1]
    assert "harness-broken-demo:broken_demo_plugin" in failed and "kaboom" in failed
    assert any("[harness " in line for line in lines)  # built-ins from the harness distribution


def test_listing_as_json(site):
    out = harness(site, "plugins", "--json")
    assert out.returncode == 0, out.stderr
    info = json.loads(out.stdout)
    (twice,) = [e for e in info["components"]["experiment"] if e["name"] == "third_twice"]
    assert twice["provider"] == "harness-third-demo" and twice["version"] == "0.1"
    assert twice["params"][0]["name"] == "x" and twice["params"][0]["default"] == 1.0
    assert twice["slots"] == {}
    assert [f["plugin"] for f in info["failures"]] == ["harness-broken-demo:broken_demo_plugin"]
    assert "ImportError: kaboom" in info["failures"][0]["error"]
    providers = {e["provider"] for entries in info["components"].values() for e in entries}
    assert "harness" in providers


def test_disable_autoload_hides_third_party_plugins(site):
    out = harness(site, "plugins", "--json", HARNESS_DISABLE_PLUGIN_AUTOLOAD="1")
    assert out.returncode == 0, out.stderr
    info = json.loads(out.stdout)
    names = {e["name"] for e in info["components"].get("experiment", [])}
    assert "third_twice" not in names
    assert info["failures"] == []
    assert {e["provider"] for entries in info["components"].values() for e in entries} <= {"harness"}


@pytest.mark.slow
def test_third_party_experiment_runs(site, tmp_path):
    spec = tmp_path / "third.toml"
    spec.write_text(textwrap.dedent("""
        [benchmark]
        name = "third"
        seed = 5
        [[experiments]]
        experiment = "third_twice"
        [experiments.grid]
        x = [1.5, 4.0]
    """))
    out = harness(site, "run", spec, "--results-dir", tmp_path / "results", "-q")
    assert out.returncode == 0, out.stderr
    rows = [json.loads(line) for line in (Path(out.stdout.strip()) / "rows.jsonl").read_text().splitlines()]
    assert sorted(r["metrics"]["y"] for r in rows) == [3.0, 8.0]
    assert {r["plugins"]["experiment"] for r in rows} == {"harness-third-demo"}
    env = json.loads((Path(out.stdout.strip()) / "env.json").read_text())
    assert env["plugins"]["harness-third-demo"] == "0.1"

    hidden = harness(site, "run", spec, "--results-dir", tmp_path / "results",
                     HARNESS_DISABLE_PLUGIN_AUTOLOAD="1")
    assert hidden.returncode == 2 and "third_twice" in hidden.stderr and "Traceback" not in hidden.stderr
