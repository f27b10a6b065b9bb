"""Exit codes of write failures (harness.runner.store.storage_error): a full disk stops a run
resumably (exit 4, saying how to finish), anything else the run directory refuses (read-only,
a directory where a file should be) is exit 2 naming the file; never exit 0 with missing output.
Read-only is simulated (the tests may run as root, which writes anywhere)."""
from __future__ import annotations

import errno
import os
import pathlib
from pathlib import Path

import pytest
from click.testing import CliRunner
from plugins_for_tests import ECHO_SPEC, write_spec

from harness.cli import main
from harness.errors import RunStopped, UserError
from harness.runner.store import storage_error

USES_TEST_PLUGINS = True
pytestmark = pytest.mark.usefixtures("registry")


def invoke(*args):
    return CliRunner().invoke(main, [str(a) for a in args])


@pytest.fixture
def run_dir(tmp_path):
    spec = write_spec(tmp_path / "demo.toml", ECHO_SPEC)
    result = invoke("run", spec, "--results-dir", tmp_path / "r", "-q", "--executor", "inline")
    assert result.exit_code == 0, result.output
    return Path(result.stdout.strip())


def test_storage_error_kinds():
    assert isinstance(storage_error(Path("x"), OSError(errno.ENOSPC, "No space left on device")), RunStopped)
    for code in (errno.EROFS, errno.EACCES, errno.EISDIR):
        err = storage_error(Path("x/y"), OSError(code, os.strerror(code)))
        assert type(err) is UserError and str(err).startswith(f"cannot write x/y: {os.strerror(code)}")


def _refuse(monkeypatch, name: str, code: int):
    """Make opening or writing files called ``name`` fail with ``code``."""
    real_open, real_write = os.open, pathlib.Path.write_text

    def fake_open(path, *args, **kwargs):
        if Path(path).name == name:
            raise OSError(code, os.strerror(code), str(path))
        return real_open(path, *args, **kwargs)

    def fake_write(self, *args, **kwargs):
        if self.name == name:
            raise OSError(code, os.strerror(code), str(self))
        return real_write(self, *args, **kwargs)

    monkeypatch.setattr(os, "open", fake_open)
    monkeypatch.setattr(pathlib.Path, "write_text", fake_write)


def test_resume_of_a_read_only_run_is_exit_2(run_dir, monkeypatch):
    _refuse(monkeypatch, "run.lock", errno.EROFS)
    result = invoke("run", "--resume", run_dir, "-q")
    assert result.exit_code == 2, result.output
    assert "cannot write" in result.output and "Read-only file system" in result.output
    assert "resume with" not in result.output


def test_a_lock_that_is_a_directory_is_exit_2(run_dir):
    (run_dir / "run.lock").mkdir()
    result = invoke("run", "--resume", run_dir, "-q")
    assert result.exit_code == 2 and "run.lock is a directory, not a lock file: remove it" in result.output


def test_plot_on_a_read_only_run_is_exit_2(run_dir, monkeypatch):
    import harness.results.figures as figures

    def read_only(fig, paths):
        raise OSError(errno.EROFS, "Read-only file system", str(next(iter(paths.values()))))

    monkeypatch.setattr(figures, "save_figure", read_only)
    result = invoke("plot", run_dir)
    assert result.exit_code == 2, result.output
    assert "cannot write" in result.output and "a-u_vs_x: Read-only file system" in result.output


@pytest.mark.parametrize("target", ["figures", "report.html.tmp"])
def test_a_disk_that_fills_while_outputs_are_written_is_exit_4(tmp_path, monkeypatch, target):
    import harness.results.figures as figures

    if target == "figures":
        def full(fig, paths):
            raise OSError(errno.ENOSPC, "No space left on device")

        monkeypatch.setattr(figures, "save_figure", full)
    else:
        _refuse(monkeypatch, target, errno.ENOSPC)
    spec = write_spec(tmp_path / "demo.toml", ECHO_SPEC)
    result = invoke("run", spec, "--results-dir", tmp_path / "r", "-q", "--executor", "inline")
    assert result.exit_code == 4, result.output
    assert "No space left on device (free some space)" in result.output
    assert "every row and summary.csv are kept: draw the figures and the report again with: harness plot" \
        in result.output
    run = next((tmp_path / "r" / "demo").iterdir())
    assert (run / "summary.csv").is_file() and len((run / "rows.jsonl").read_text().splitlines()) == 6
