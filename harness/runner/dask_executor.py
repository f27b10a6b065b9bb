"""The ``dask`` executor: cells as tasks on a Dask cluster (``harness run --executor dask``).

With a ``scheduler`` address (``tcp://HOST:PORT``) the cells go to that existing cluster;
without one, a :class:`distributed.LocalCluster` of ``jobs`` worker processes (one task at a time
each) is started for the run and closed after it. Each cell is one task,
``harness.runner.execute.run_cell(cell)``, submitted with ``pure=False``: the workers compute the rows
and this process (the client) yields each row as its task completes, so the caller writes it at
once and an interrupted run resumes exactly as with the local executors. Cells that run together
(:func:`harness.runner.execute.group_cells`) go as one task, ``run_cells``, returning one row per cell;
a group whose task fails is submitted again as single cells. Rows do not depend on
the executor (a cell is a pure function of its parameters and seed).

Worker death: a cell whose worker dies (a crash, the out-of-memory killer, a lost node) is run
again by the scheduler. The local cluster allows one such retry and sends a worker only the
cells it can run at once (:data:`LOCAL_SCHEDULER_CONFIG`), so that a death touches only the
cell running there; an existing cluster uses its scheduler's settings (Dask's defaults: 3
retries, and a worker may hold one cell queued behind its running ones, which a death also
counts against). A cell that still kills its worker gets a ``failed`` row and the run goes on.
An exception in a task (``run_cell`` turns cell errors into rows itself) is
retried once (``retries=1``) and then becomes a ``failed`` row.

Threads: each cell limits its BLAS and Numba threads to its share of its host's cores,
``cores // (worker threads on that host)`` (the local cluster: ``cores // jobs``), so that
cells never oversubscribe a machine. Timeouts are not supported (a running Dask task cannot be
stopped); use the ``processes`` executor for them.

The workers need the same environment as the client: harness, the plugins the benchmark uses
(installed, or named by ``HARNESS_PLUGINS`` in the workers' environment) and their packages.
"""
from __future__ import annotations

import secrets
import sys
from typing import Any, Callable, Iterator

from harness.errors import UserError
from harness.runner.execute import format_exception, group_cells, run_cell, run_cells
from harness.spec.cells import Cell
from harness.spec.row import Row, make_row

INSTALL_HINT = 'pip install -e ".[dask]" in the harness checkout (dask and distributed)'
"""The PyPI name ``harness`` belongs to another project: install the extra from the checkout."""
CONNECT_TIMEOUT = 10.0
"""Seconds to wait for a scheduler address to answer."""
LOCAL_SCHEDULER_CONFIG = {
    "distributed.scheduler.allowed-failures": 1,
    "distributed.scheduler.worker-saturation": 1.0,
}
"""The local cluster's scheduler: a cell may be in one worker death and run again, not two;
a worker holds only the cells it is running (none queued behind them), so its death touches
no other cell."""


def _distributed():
    try:
        import distributed
    except ImportError as exc:
        raise UserError(f"the dask executor needs dask.distributed, which cannot be imported "
                        f"({exc}); install it with: {INSTALL_HINT}") from None
    return distributed


def check(scheduler: str | None = None, **options: Any) -> None:
    """Raise a :class:`UserError` now if the run could not start: dask.distributed missing, the
    ``scheduler`` not answering, or its workers unable to import harness (a quick connection,
    closed again)."""
    distributed = _distributed()
    if scheduler is not None:
        client = _connect(distributed, scheduler)
        try:
            _check_workers(client, scheduler)
        finally:
            client.close()


def execute(cells: list[Cell], jobs: int = 1, timeout: float | None = None, registry=None,
            scheduler: str | None = None, log: Callable[[str], None] | None = None,
            worker_wait: float | None = None, **options: Any) -> Iterator[Row]:
    """Run ``cells`` on a Dask cluster and yield each row as its task completes.

    ``scheduler``: the address of an existing cluster's scheduler, or ``None`` to start a local
    cluster of ``jobs`` worker processes. Each task rebuilds ``registry`` on its worker from
    its plugin list (``registry.plugins``, :func:`harness.plugin.manager.load_registry`).
    ``log`` receives one line describing the cluster.
    Closing the generator cancels the cells still queued or running.

    ``worker_wait`` (default :data:`WORKER_WAIT`): when no worker has been connected for this
    many seconds while cells remain, stop with a :class:`~harness.errors.RunStopped` (the rows
    so far are kept; a resume finishes the run) instead of waiting forever.
    """
    if timeout is not None:
        raise UserError("the dask executor does not support a timeout (a running Dask task "
                        "cannot be stopped); use --executor processes for timeouts")
    if scheduler is not None and jobs != 1:
        raise UserError("--jobs sets the size of a local Dask cluster; with a scheduler address "
                        "the cluster's workers decide how many cells run at once")
    if options:
        raise TypeError(f"unexpected options for the dask executor: {', '.join(options)}")
    cells = list(cells)
    if not cells:
        return
    if registry is None:
        from harness.plugin.manager import load_registry

        registry = load_registry()
    plugins = tuple(registry.plugins)
    distributed = _distributed()
    cluster = client = None
    futures: dict[Any, Cell | list[Cell]] = {}
    try:
        if scheduler is None:
            cluster, threads = _local_cluster(distributed, min(jobs, len(cells)), jobs)
            client = distributed.Client(cluster, set_as_default=False)
            where = f"local Dask cluster at {cluster.scheduler_address}: {len(cluster.workers)} worker process(es)"
        else:
            client = _connect(distributed, scheduler)
            where = f"Dask scheduler {scheduler}: " + _describe_workers(client)
        cores = _check_workers(client, scheduler)
        if cluster is None:
            threads = host_threads(client.scheduler_info().get("workers", {}), cores)
        if log is not None:
            limit = threads if isinstance(threads, int) else (
                ", ".join(f"{t} on {h.split('://')[-1]}" for h, t in sorted(threads.items()))
                or "cores // task slots of each host")
            log(f"running on the {where}; BLAS/Numba threads per cell: {limit}")
        token = secrets.token_hex(4)

        def submit(cell):
            return client.submit(run_cell_on_worker, cell, threads, plugins, pure=False, retries=1,
                                 key=f"harness-cell-{cell.cell_id}-{token}")

        try:
            slots = jobs if scheduler is None else max(1, sum(client.nthreads().values()))
        except Exception:
            slots = 1
        # cells that can run together go as one task (harness.runner.execute.group_cells), one row each
        for group in group_cells(cells, registry, parts=slots):
            if len(group) == 1:
                futures[submit(group[0])] = group[0]
            else:
                future = client.submit(run_cells_on_worker, group, threads, plugins, pure=False, retries=1,
                                       key=f"harness-group-{group[0].cell_id}-{len(group)}-{token}")
                futures[future] = group
        wait = WORKER_WAIT if worker_wait is None else float(worker_wait)
        done = distributed.as_completed(list(futures), loop=client.loop)
        watch = _WorkerWatch(client, wait)
        while futures:
            batch = done.next_batch(block=False)
            if not batch:
                watch.check()
                with done.thread_condition:  # woken when a future completes
                    done.thread_condition.wait(timeout=0.2)
                continue
            for future in batch:
                cell = futures.pop(future)
                if isinstance(cell, list):  # a group: its rows, or its cells again, each alone
                    if future.status == "finished":
                        yield from future.result()
                    elif future.status == "cancelled":
                        yield _row(future, cell[0])
                    else:
                        for member in cell:
                            again = submit(member)
                            futures[again] = member
                            done.add(again)
                else:
                    yield _row(future, cell)
                future.release()
    finally:
        if client is not None and futures:
            try:
                client.cancel(list(futures), force=True)
            except Exception:
                pass
        futures.clear()
        if client is not None:
            client.close()
        if cluster is not None:
            cluster.close()


WORKER_WAIT = 60.0
"""Seconds a run waits while no Dask worker is connected before it stops (``--worker-wait``)."""


class _WorkerWatch:
    """Raises :class:`~harness.errors.RunStopped` once no worker has been connected for ``wait``
    seconds (asking the scheduler at most every few seconds)."""

    def __init__(self, client, wait: float) -> None:
        import time

        self.client, self.wait = client, wait
        self.clock = time.monotonic
        self.asked = self.clock()
        self.since: float | None = None

    def check(self) -> None:
        now = self.clock()
        if now - self.asked < min(2.0, self.wait / 4):
            return
        self.asked = now
        try:
            alive = len(self.client.nthreads())
        except Exception:  # the scheduler itself is gone: as good as no worker
            alive = 0
        if alive:
            self.since = None
            return
        self.since = now if self.since is None else self.since
        if now - self.since >= self.wait:
            from harness.errors import RunStopped

            raise RunStopped(f"no Dask worker has been connected for {self.wait:g} s (all died, or none "
                             "joined); the cells still to run were cancelled")


def _row(future, cell: Cell) -> Row:
    """The row of a completed future: its result, or a ``failed`` row saying why."""
    if future.status == "finished":
        return future.result()
    if future.status == "cancelled":  # not the cell's doing: the scheduler or the connection went
        raise UserError("the Dask cluster dropped the cells still to run (its scheduler stopped or "
                        "became unreachable); the finished rows are kept: resume the run to finish it")
    exc = future.exception()
    from distributed.scheduler import KilledWorker

    if isinstance(exc, KilledWorker):
        return make_row(cell, "failed", error="the worker process died while running this cell, "
                        f"also after the retries the scheduler allows ({exc})")
    return make_row(cell, "failed", error=f"the Dask task failed: {format_exception(exc)}")


# ----------------------------------------------------------------------------------------------
# clusters


def _local_cluster(distributed, n_workers: int, jobs: int):
    """A LocalCluster of ``n_workers`` single-task worker processes, each limited to
    ``cores // jobs`` BLAS, OpenMP and Numba threads; returns ``(cluster, threads)``."""
    import logging

    import dask

    from harness.runner.executors import threads_per_job
    from harness.runner.threads import THREAD_ENV_VARS

    threads = threads_per_job(jobs)
    env = {key: str(threads) for key in THREAD_ENV_VARS}
    with dask.config.set(LOCAL_SCHEDULER_CONFIG):
        cluster = distributed.LocalCluster(n_workers=n_workers, threads_per_worker=1,
                                           processes=True, dashboard_address=None,
                                           silence_logs=logging.CRITICAL, env=env)
    return cluster, threads


def _connect(distributed, address: str):
    if not isinstance(address, str) or not address.strip():
        raise UserError(f"the Dask scheduler address must look like tcp://HOST:PORT, got {address!r}")
    try:
        return distributed.Client(address.strip(), timeout=CONNECT_TIMEOUT, set_as_default=False)
    except (OSError, TimeoutError, ValueError) as exc:
        raise UserError(f"cannot connect to the Dask scheduler at {address}: {exc or type(exc).__name__} "
                        "(is `dask scheduler` running there, and the address tcp://HOST:PORT?)") from None


def _describe_workers(client) -> str:
    workers = client.scheduler_info().get("workers", {})
    if not workers:
        return "no workers connected yet (cells wait for them)"
    slots = sum(int(w.get("nthreads", 1)) for w in workers.values())
    hosts = {w.get("host") for w in workers.values()}
    return f"{len(workers)} worker(s) on {len(hosts)} host(s), {slots} task slot(s)"


def _check_workers(client, scheduler: str | None) -> dict[str, int]:
    """Fail early, with a clear message, when the workers cannot import harness; returns the
    cores each connected worker may use, by worker address."""
    try:
        return dict(client.run(_probe))
    except (ImportError, AttributeError) as exc:
        where = f"at {scheduler}" if scheduler else "of the local cluster"
        raise UserError(f"the Dask workers {where} cannot run harness cells ({type(exc).__name__}: "
                        f"{exc}); install harness and the benchmark's plugins in their environment") from None


def _probe() -> int:
    import harness.runner.execute  # noqa: F401  (the point: fails where harness is not installed)
    from harness.runner.executors import cpu_count

    return cpu_count()


def _host(address: str) -> str:
    """``tcp://10.0.0.5:4321`` -> ``tcp://10.0.0.5``."""
    return address.rsplit(":", 1)[0]


def host_threads(workers: dict[str, dict], cores: dict[str, int]) -> dict[str, int]:
    """BLAS / Numba threads per cell on each host: its cores // the task slots of all its workers.

    ``workers``: the scheduler's worker table (address -> ``{"nthreads": ..}``); ``cores``:
    cores per worker address. Hosts are keyed as ``tcp://HOST``.
    """
    slots: dict[str, int] = {}
    host_cores: dict[str, int] = {}
    for address, info in workers.items():
        host = _host(address)
        slots[host] = slots.get(host, 0) + max(1, int(info.get("nthreads", 1)))
        if address in cores:
            host_cores[host] = max(host_cores.get(host, 1), int(cores[address]))
    return {h: max(1, host_cores[h] // slots[h]) for h in slots if h in host_cores}


# ----------------------------------------------------------------------------------------------
# on the workers


def run_cell_on_worker(cell: Cell, threads: int | dict[str, int], plugins: tuple = ()) -> Row:
    """The task: limit this worker's BLAS and Numba threads, then run the cell.

    ``threads``: a number, or one per host (:func:`host_threads`); a worker on a host not listed
    (it joined after the run started) takes ``cores // its own task slots``."""
    _limit_worker_threads(threads)
    return run_cell(cell, _worker_registry(plugins))


def run_cells_on_worker(cells: list[Cell], threads: int | dict[str, int], plugins: tuple = ()) -> list[Row]:
    """The task of a group of cells run together (:func:`harness.runner.execute.run_cells`): their
    rows, in order. A group whose task fails (its worker died) is submitted again as single
    cells by the client."""
    _limit_worker_threads(threads)
    return run_cells(cells, _worker_registry(plugins))


def _limit_worker_threads(threads: int | dict[str, int]) -> None:
    """Limit this worker's BLAS and Numba threads (a number, or one per host)."""
    from harness.runner.threads import set_numba_threads

    if not isinstance(threads, int):
        threads = _worker_threads(threads)
    _apply_thread_limit(threads)
    if "numba" not in sys.modules:
        try:
            import numba  # noqa: F401  (its thread count is per calling thread: set it here)
        except ImportError:
            pass
    set_numba_threads(threads)


def _worker_registry(plugins: tuple):
    """The run's registry, rebuilt on this worker from its plugin list."""
    from harness.plugin.manager import load_registry

    return load_registry(plugins)


_APPLIED: int | None = None


def _apply_thread_limit(threads: int) -> None:
    """BLAS / OpenMP limits are per process: set them once per worker (and on a change)."""
    global _APPLIED
    if _APPLIED != threads:
        from harness.runner.threads import limit_threads

        limit_threads(threads)
        _APPLIED = threads


def _worker_threads(per_host: dict[str, int]) -> int:
    from harness.runner.executors import cpu_count

    try:
        from distributed import get_worker

        worker = get_worker()
    except Exception:  # not on a worker (called directly)
        return cpu_count()
    host = _host(worker.address)
    if host in per_host:
        return per_host[host]
    return max(1, cpu_count() // max(1, int(worker.state.nthreads)))
