"""What a run ran on, for ``env.json``: versions, CPU, BLAS, git state, command line, threads,
the machine's DGEMM rate at the start of each session, and each session's wall and CPU time.

Everything here is best effort: a piece that cannot be found is recorded as ``None``, never an
error.
"""
from __future__ import annotations

import os
import platform
import shlex
import subprocess
import sys
import time
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from harness.plugin.machine import cpu_count, cpu_model

PACKAGES = ("harness", "numpy", "scipy", "numba", "llvmlite", "autograd", "matplotlib", "pluggy",
            "click", "threadpoolctl", "torch", "mkl")


def collect(jobs: int, threads: int, timeout: float | None = None,
            argv: list[str] | None = None, current: dict[str, Any] | None = None) -> dict[str, Any]:
    """The environment of this process, with the run's ``jobs`` and ``threads`` per job (or the
    ``current`` :func:`session` record, already measured)."""

    return {
        "python": sys.version.split()[0],
        "implementation": platform.python_implementation(),
        "platform": platform.platform(),
        "machine": platform.machine(),
        "hostname": platform.node(),
        "cpu": cpu_model(),
        "cores": cpu_count(),
        "cores_total": os.cpu_count(),
        "packages": package_versions(),
        "plugins": plugin_distributions(),
        "blas": blas_info(),
        "git": git_state(Path(__file__).resolve().parent.parent),
        "cwd_git": git_state(Path.cwd()),
        **(current if current is not None else session(jobs, threads, timeout, argv)),
    }


def session(jobs: int, threads: int, timeout: float | None = None,
            argv: list[str] | None = None) -> dict[str, Any]:
    """What can change between the first run and a resume: command line, jobs, threads, the
    training kernel's BLAS, and the machine's DGEMM rate measured now (:func:`dgemm`)."""
    return {
        "started": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "command_line": shlex.join(sys.argv if argv is None else argv),
        "jobs": jobs,
        "threads_per_job": threads,
        "timeout": timeout,
        "kernel_blas": kernel_blas_info(),
        "dgemm": dgemm(),
    }


def dgemm() -> dict[str, Any] | None:
    """:func:`harness.plugin.machine.dgemm_gflops` now, on the usable cores: ``{"gflops", "size",
    "repeats", "threads"}`` (``None`` if it cannot be measured)."""
    try:
        from harness.plugin.machine import dgemm_gflops

        return dgemm_gflops()
    except Exception:
        return None


class SessionClock:
    """Wall and CPU time of one session, from its start: :meth:`record` gives ``{"finished",
    "wall_seconds", "cpu_seconds"}`` where CPU time is user + system time of this process and of
    its child processes that have ended (the local executors' workers, stopped at the end of the
    session; not a Dask cluster's workers)."""

    def __init__(self) -> None:
        self.wall0 = time.monotonic()
        self.cpu0 = self.cpu_now()

    @staticmethod
    def cpu_now() -> float:
        t = os.times()
        return t.user + t.system + t.children_user + t.children_system

    def record(self) -> dict[str, Any]:
        return {"finished": datetime.now(timezone.utc).isoformat(timespec="seconds"),
                "wall_seconds": round(time.monotonic() - self.wall0, 3),
                "cpu_seconds": round(self.cpu_now() - self.cpu0, 3)}


def package_versions() -> dict[str, str | None]:
    from importlib import metadata

    out: dict[str, str | None] = {}
    for name in PACKAGES:
        try:
            out[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            out[name] = None
    return out


def plugin_distributions() -> dict[str, str | None]:
    """Distribution -> version for every distribution providing ``harness`` entry points."""
    from importlib import metadata

    from harness.plugin.manager import ENTRY_POINT_GROUP

    out: dict[str, str | None] = {}
    try:
        for ep in metadata.entry_points(group=ENTRY_POINT_GROUP):
            if ep.dist is not None:
                out[ep.dist.name] = ep.dist.version
    except Exception:
        pass
    return dict(sorted(out.items()))


def blas_info() -> list[dict[str, Any]] | None:
    """threadpoolctl's view of the BLAS / OpenMP libraries: NumPy's and SciPy's (loaded here
    first, so that the record does not depend on what this process happened to import)."""
    try:
        import numpy  # noqa: F401  (loads BLAS)
        import scipy.linalg  # noqa: F401  (SciPy's own BLAS and LAPACK: the eigen-solvers')
        from threadpoolctl import threadpool_info

        return threadpool_info()
    except Exception:
        return None


def kernel_blas_info() -> dict[str, Any] | None:
    """The library whose products the compiled training kernel calls
    (:mod:`harness.engine.kernel_blas`): ``{"name": "openblas" | "mkl", "version": ..}``."""
    try:
        from harness.engine.kernel_blas import kernel_blas

        chosen = kernel_blas()
        return {"name": chosen.name, "version": chosen.version}
    except Exception:
        return None


def git_state(path: Path) -> dict[str, Any] | None:
    """``{"commit", "dirty", "root"}`` of the git work tree holding ``path``, else ``None``."""
    def git(*args: str) -> str | None:
        try:
            out = subprocess.run(["git", "-C", str(path), *args], capture_output=True, text=True,
                                 timeout=10, check=True)
        except (OSError, subprocess.SubprocessError):
            return None
        return out.stdout.strip()

    commit = git("rev-parse", "HEAD")
    if not commit:
        return None
    status = git("status", "--porcelain", "--untracked-files=no")
    return {"commit": commit, "dirty": bool(status) if status is not None else None,
            "root": git("rev-parse", "--show-toplevel")}
