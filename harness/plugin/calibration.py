"""Calibrating the cost models of ``harness run --dry-run`` on this machine.

An experiment's :meth:`~harness.plugin.experiment.Experiment.estimate` predicts a cell's seconds from
a cost model (flops, epochs, solver steps) and *rates measured here*: :func:`rates` runs a short
probe that the plugin supplies (typically a few milliseconds to a second of its own kernels at
small sizes: a DGEMM, a few training epochs, one Levenberg-Marquardt fit) and caches what it
measured on disk, so that only the first dry-run on a machine pays for it.

- Probes run on one thread (BLAS and Numba limited to 1) and are timed in *CPU time* of this
  process (:func:`best_time`), not wall time: on a machine shared with other jobs the wall time
  of a probe says more about the neighbours than about the kernel, its CPU time much less.
  Cells of ``-j jobs`` run with ``cores // jobs`` threads each (:func:`for_threads`, set by
  :func:`harness.api.plan`); :func:`speedup` is the model of what the extra threads buy.
- Cache: ``calibration.json`` in ``$HARNESS_CACHE_DIR``, else ``$XDG_CACHE_HOME/harness``, else
  ``~/.cache/harness``; one entry per machine key (host name, CPU model, cores this process may
  use, harness and NumPy versions) and probe name, with the probe's own version (bumped when
  the probe changes).
- Recalibrate: ``harness run FILE --dry-run --recalibrate``, or ``HARNESS_RECALIBRATE=1`` in the
  environment, re-runs the probes and overwrites the cached rates. Delete the file to forget
  every machine.

Timings on a shared or busy machine are noisy: each probe keeps the best of a few repetitions
in CPU time, which a busy machine inflates far less than wall time; the cells of a real run on a
loaded machine are slower than estimated all the same (they share the cores).

:func:`schedule` turns per-cell estimates into the wall time of ``-j jobs`` worker processes,
counting once per worker the set-up costs that a process pays once (``setup_key`` /
``setup_seconds`` of an estimate: compiled kernels, an in-process cache shared by cells).
"""
from __future__ import annotations

import contextlib
import json
import os
import platform
import time
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Callable, Iterable, Iterator, Mapping

CACHE_DIR_ENV = "HARNESS_CACHE_DIR"
RECALIBRATE_ENV = "HARNESS_RECALIBRATE"
CACHE_FILE = "calibration.json"

WORKER_START_SECONDS = 1.0
"""Start-up of one worker process (interpreter, NumPy, the plugins) in :func:`schedule`."""

_threads: int | None = None
_memo: dict[tuple, dict[str, float]] = {}
_recalibrate = False
_consulted: set[str] = set()
_no_probes = False


class _Unmeasured(dict):
    """What :func:`rates` gives inside :func:`no_probes` for a probe never measured here: 1.0
    for every rate (the seconds estimated from it mean nothing; memory estimates are unaffected)."""

    def __missing__(self, key):
        return 1.0

    def get(self, key, default=None):
        return super().get(key, 1.0)


@contextlib.contextmanager
def no_probes() -> Iterator[None]:
    """Inside the block :func:`rates` never runs a probe: cached rates are used, unmeasured ones
    read as 1.0. For estimates wanted only for their memory (``harness run``'s memory check)."""
    global _no_probes
    previous, _no_probes = _no_probes, True
    try:
        yield
    finally:
        _no_probes = previous


def cache_dir() -> Path:
    """Where the calibration is cached (see the module docstring)."""
    if os.environ.get(CACHE_DIR_ENV):
        return Path(os.environ[CACHE_DIR_ENV]).expanduser()
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(base) / "harness"


def cache_path() -> Path:
    return cache_dir() / CACHE_FILE


def recalibrate(on: bool = True) -> None:
    """Make :func:`rates` measure again (once per probe in this process) instead of using the cache."""
    global _recalibrate
    _recalibrate = on
    if on:
        _memo.clear()


def consulted() -> set[str]:
    """The probe names :func:`rates` was asked for in this process."""
    return set(_consulted)


def threads() -> int:
    """The BLAS / Numba threads per cell that estimates are for (default: every core)."""
    if _threads is not None:
        return _threads
    from harness.plugin.machine import cpu_count

    return cpu_count()


@contextlib.contextmanager
def for_threads(n: int | None) -> Iterator[None]:
    """Estimates inside the block are for cells running with ``n`` threads each."""
    global _threads
    previous, _threads = _threads, (None if n is None else max(1, int(n)))
    try:
        yield
    finally:
        _threads = previous


def machine_key() -> str:
    """The cache key: host, CPU model, usable cores, harness and NumPy versions, and the library
    of the training kernel's products (:mod:`harness.engine.kernel_blas`)."""
    import numpy

    from harness.plugin.machine import cpu_count, cpu_model
    from harness.version import __version__

    try:
        from harness.engine.kernel_blas import expected_name

        kernel = expected_name()
    except Exception:
        kernel = "?"
    return (f"{platform.node()}|{platform.machine()}|{cpu_model() or '?'}|cores={cpu_count()}|"
            f"harness={__version__}|numpy={numpy.__version__}|kernel_blas={kernel}")


def speedup(flops_per_call: float, n_threads: int | None = None) -> float:
    """What ``n_threads`` (default :func:`threads`) buy over one thread on kernel calls of
    ``flops_per_call`` flops each: nothing on small calls (thread start-up and synchronisation
    eat the gain; the engine then runs them single-threaded), about 85% per extra thread on
    calls of 1e9 flops and more. A model, not a measurement (see the module docstring)."""
    n = threads() if n_threads is None else max(1, int(n_threads))
    if n == 1 or flops_per_call <= 0:
        return 1.0
    return 1.0 + (parallel_speedup(n) - 1.0) * flops_per_call / (flops_per_call + 5e7)


def parallel_speedup(n_threads: int) -> float:
    """What ``n_threads`` buy over one thread on independent work split between them (e.g. the
    members of a stack trained on parallel threads, :func:`harness.engine.batched_training.train_batch`):
    85% per extra thread (measured 1.5-1.9 on two cores for the training kernel). A model."""
    return 1.0 + 0.85 * (max(1, int(n_threads)) - 1)


@contextlib.contextmanager
def limited_threads(n: int) -> Iterator[None]:
    """BLAS (threadpoolctl) and Numba limited to ``n`` threads inside the block."""
    with contextlib.ExitStack() as stack:
        try:
            from threadpoolctl import threadpool_limits

            stack.enter_context(threadpool_limits(limits=n))
        except Exception:  # an optimisation: never a reason to fail
            pass
        try:
            import numba

            previous = numba.get_num_threads()
            numba.set_num_threads(max(1, min(n, numba.config.NUMBA_NUM_THREADS)))  # type: ignore[attr-defined]
            stack.callback(numba.set_num_threads, previous)
        except Exception:
            pass
        yield


def best_time(fn: Callable[[], Any], repeat: int = 3, budget: float = 1.0) -> float:
    """The shortest CPU time of this process over up to ``repeat`` calls of ``fn()`` (fewer once
    ``budget`` CPU seconds are spent); meant for single-threaded calls (see :func:`rates`)."""
    best, spent = float("inf"), 0.0
    for i in range(max(1, repeat)):
        t0 = time.process_time()
        fn()
        dt = time.process_time() - t0
        best, spent = min(best, dt), spent + dt
        if spent > budget and i >= 1:  # at least two calls: the first may compile kernels
            break
    return best


def _read() -> dict:
    try:
        data = json.loads(cache_path().read_text(encoding="utf-8"))
        return data if isinstance(data, dict) else {}
    except (OSError, ValueError):
        return {}


def _write(key: str, name: str, entry: dict) -> None:
    path = cache_path()
    try:
        data = _read()
        data.setdefault(key, {})[name] = entry
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
        tmp.write_text(json.dumps(data, indent=1, sort_keys=True), encoding="utf-8")
        os.replace(tmp, path)
    except OSError:  # a read-only home: the rates are simply not kept
        pass


def rates(name: str, probe: Callable[[], Mapping[str, float]], version: int = 1) -> dict[str, float]:
    """The rates ``probe()`` measures on this machine, cached (see the module docstring).

    ``probe`` returns ``{name: number}`` (CPU seconds per operation on one thread); it runs with
    BLAS and Numba limited to one thread, should time with :func:`best_time` and take well
    under a second. ``version`` invalidates entries cached by an older probe.
    """
    _consulted.add(name)
    key = machine_key()
    memo_key = (key, name, version)
    if memo_key in _memo:
        return dict(_memo[memo_key])
    if not (_recalibrate or os.environ.get(RECALIBRATE_ENV, "") not in ("", "0")):
        entry = _read().get(key, {}).get(name)
        if isinstance(entry, dict) and entry.get("version") == version and isinstance(entry.get("rates"), dict):
            _memo[memo_key] = {k: float(v) for k, v in entry["rates"].items()}
            return dict(_memo[memo_key])
    if _no_probes:
        return _Unmeasured()
    t0 = time.perf_counter()
    with limited_threads(1):
        measured = {k: float(v) for k, v in dict(probe()).items()}
    _write(key, name, {"version": version, "rates": measured, "probe_seconds": time.perf_counter() - t0,
                       "measured": datetime.now(timezone.utc).isoformat(timespec="seconds")})
    _memo[memo_key] = measured
    return dict(measured)


def cell_seconds(entries: Iterable[Mapping[str, Any]]) -> float:
    """The cells' estimated seconds added up, each ``setup_key``'s ``setup_seconds`` counted once
    (cells without an estimate count as zero): the CPU time a run's cells need, what
    ``--dry-run`` prints as "cells add up to"."""
    entries = list(entries)
    setups = {e.get("setup_key"): float(e.get("setup_seconds") or 0.0) for e in entries
              if e.get("setup_key") is not None}
    return sum(float(e["seconds"]) for e in entries if e.get("seconds") is not None) + sum(setups.values())


def schedule(entries: Iterable[Mapping[str, Any]], jobs: int = 1) -> float | None:
    """Estimated wall time of running ``entries`` (dicts with ``seconds`` and optionally
    ``setup_key``/``setup_seconds`` and ``round``, in grid order) on ``jobs`` workers.

    Cells go, in order, to the worker that is free first (as the process pool hands them out);
    a worker pays each ``setup_key``'s ``setup_seconds`` once, and, with ``jobs > 1``,
    :data:`WORKER_START_SECONDS` to start. Rounds (a threshold search's: ``round``, 0 when not
    given) run one after the other: a round starts when the previous one has finished, as a
    run computes a search's next values from the rows of the last round. Cells without an
    estimate count as zero; ``None`` when no cell has one.
    """
    entries = [e for e in entries if e.get("seconds") is not None]
    if not entries:
        return None
    n = max(1, min(int(jobs), len(entries)))
    start = WORKER_START_SECONDS if jobs > 1 else 0.0
    clock = [start] * n
    paid: list[set] = [set() for _ in range(n)]
    rounds: dict[int, list] = {}
    for e in entries:
        rounds.setdefault(int(e.get("round") or 0), []).append(e)
    for index in sorted(rounds):
        clock = [max(clock)] * n  # the barrier between rounds
        for e in rounds[index]:
            i = min(range(n), key=clock.__getitem__)
            cost = float(e["seconds"])
            key = e.get("setup_key")
            if key is not None and key not in paid[i]:
                paid[i].add(key)
                cost += float(e.get("setup_seconds") or 0.0)
            clock[i] += cost
    return max(clock)
