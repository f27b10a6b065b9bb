"""harness.run(path, jobs=2) from a plain script: worker processes never re-run the script.

``spawn`` starts each worker by importing the parent's main module again; a script that calls
``harness.run`` at top level, without the ``if __name__ == "__main__":`` guard, would start a run
in every worker (multiprocessing's "bootstrapping phase" error, and empty run directories).
"""
from __future__ import annotations

import json
import multiprocessing
import subprocess
import sys

import pytest
from plugins_for_tests import ECHO_SPEC, subprocess_env, write_spec

from harness.errors import UserError
from harness.runner.executors import check_executor

SCRIPT = """
import harness

run_dir = harness.run({spec!r}, jobs=2, results_dir={results!r}, progress=False, figures=False)
print("RUN", run_dir.path)
"""


@pytest.mark.slow
def test_an_unguarded_script_runs_with_two_workers(tmp_path):
    spec = write_spec(tmp_path / "demo.toml", ECHO_SPEC)
    results = tmp_path / "results"
    script = tmp_path / "script.py"
    script.write_text(SCRIPT.format(spec=str(spec), results=str(results)), encoding="utf-8")
    proc = subprocess.run([sys.executable, str(script)], capture_output=True, text=True,
                          env=subprocess_env(), cwd=tmp_path, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert "bootstrapping" not in proc.stderr
    (run_dir,) = (results / "demo").iterdir()  # one run, no empty directories from the workers
    assert proc.stdout.split() == ["RUN", str(run_dir)]
    rows = [json.loads(line) for line in (run_dir / "rows.jsonl").read_text().splitlines()]
    assert len(rows) == 6 and all(r["status"] == "ok" for r in rows)
    assert json.loads((run_dir / "env.json").read_text())["sessions"][0]["jobs"] == 2


def test_a_run_started_while_a_child_imports_the_main_module_fails_at_once(monkeypatch):
    # what a spawn-ed child of another pool (a Dask cluster, the user's own) sees while it
    # imports an unguarded script: refuse before any run directory is made
    monkeypatch.setattr(multiprocessing.current_process(), "_inheriting", True, raising=False)
    with pytest.raises(UserError, match='if __name__ == "__main__":'):
        check_executor("processes")
