"""A worker process and everything it starts, as one process group.

A worker makes itself the leader of a new process group when it starts (:func:`lead_group`), so
that every process a cell starts (a ``subprocess``, a ``fork``) belongs to it; when the parent
ends the worker, after a timeout or at the end of the run, it ends the whole group
(:func:`end_group`). No process a cell started outlives the run: none is left with parent PID 1,
and none keeps the run's standard output open (``out=$(harness run ...)`` returns). A process
that leaves the group on purpose (``setsid``) is its own business.
"""
from __future__ import annotations

import os
import signal
import sys


def lead_group() -> None:
    """In a worker: become the leader of a new process group (its id is the worker's pid)."""
    try:
        os.setpgid(0, 0)
    except OSError:  # already a leader, or not allowed: the worker alone is ended then
        pass


def end_group(pid: int | None) -> None:
    """In the parent: kill the process group that worker ``pid`` leads (the worker and every
    process still in its group). Nothing when there is no such group."""
    if not pid or pid <= 0 or pid == os.getpgrp():
        return
    try:
        os.killpg(pid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError, OSError):
        pass


def die_with_parent() -> None:
    """On Linux, have the kernel kill this worker when the parent process dies."""
    if not sys.platform.startswith("linux"):
        return
    try:
        import ctypes

        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG
        if os.getppid() == 1:  # the parent already died before prctl took effect
            os._exit(1)
    except Exception:
        pass
