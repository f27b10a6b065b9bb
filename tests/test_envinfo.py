"""harness.runner.envinfo: what env.json records."""
from __future__ import annotations

import json
import subprocess
from pathlib import Path

from harness.runner import envinfo


def test_collect_records_versions_cpu_blas_git_and_threads():
    env = envinfo.collect(jobs=2, threads=1, timeout=5.0, argv=["harness", "run", "x y.toml"])
    json.dumps(env)  # JSON-friendly
    assert env["jobs"] == 2 and env["threads_per_job"] == 1 and env["timeout"] == 5.0
    assert env["command_line"] == "harness run 'x y.toml'"
    assert env["cores"] >= 1 and env["packages"]["numpy"] and env["packages"]["harness"]
    assert env["plugins"].get("harness")
    assert any(lib.get("user_api") == "blas" for lib in env["blas"])
    from harness.engine.kernel_blas import mkl_library

    assert env["kernel_blas"]["name"] == ("mkl" if mkl_library() is not None else "openblas")
    assert envinfo.session(1, 1)["kernel_blas"] == env["kernel_blas"]  # recorded per session


def test_git_state_of_a_repository_and_of_a_plain_folder(tmp_path):
    assert envinfo.git_state(tmp_path) is None
    repo = tmp_path / "repo"
    repo.mkdir()
    git = ["git", "-C", str(repo), "-c", "user.name=t", "-c", "user.email=t@example.org"]
    subprocess.run(git + ["init", "-q"], check=True)
    (repo / "f.txt").write_text("a")
    subprocess.run(git + ["add", "f.txt"], check=True)
    subprocess.run(git + ["commit", "-q", "-m", "one"], check=True)
    clean = envinfo.git_state(repo)
    assert len(clean["commit"]) == 40 and clean["dirty"] is False
    assert Path(clean["root"]).resolve() == repo.resolve()
    (repo / "f.txt").write_text("b")
    assert envinfo.git_state(repo)["dirty"] is True
