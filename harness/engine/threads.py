"""Thread settings of the numerical kernels.

The engine uses as many threads as Numba is set to (``numba.set_num_threads``; the runner sets
it per worker so that ``--jobs`` never oversubscribes the cores). Tiled kernels run one tile
per Python thread with single-threaded BLAS calls inside (NumPy's matmul and Numba's nogil
kernels release the GIL), which avoids BLAS's fork/join cost on small products.
"""
from __future__ import annotations

import threading
from contextlib import contextmanager
from typing import Any, Callable, Iterable, Iterator

__all__ = ["engine_threads", "blas_threads", "run_in_threads"]

_controller = None
_controller_lock = threading.Lock()


def engine_threads(threads: int | None = None) -> int:
    """``threads`` if given (>= 1), else Numba's current thread count."""
    if threads is None:
        import numba  # here, not at import: see harness.engine.jit

        return max(1, int(numba.get_num_threads()))
    if int(threads) < 1:
        raise ValueError(f"threads must be >= 1, got {threads}")
    return int(threads)


def _get_controller():
    """A cached :class:`threadpoolctl.ThreadpoolController`. It only sees the libraries loaded
    when it is made, so SciPy's LAPACK (a second OpenBLAS) is loaded first."""
    global _controller
    with _controller_lock:
        if _controller is None:
            import scipy.linalg  # noqa: F401  (loads SciPy's BLAS/LAPACK library)
            from threadpoolctl import ThreadpoolController

            _controller = ThreadpoolController()
        return _controller


@contextmanager
def blas_threads(n: int) -> Iterator[None]:
    """Limit every loaded BLAS library to ``n`` threads inside the block."""
    controller = _get_controller()
    with controller.limit(limits=int(n), user_api="blas"):
        yield


def run_in_threads(work: Callable[[Any, Any], None], items: Iterable[Any], threads: int,
                   make_state: Callable[[], Any] = lambda: None) -> None:
    """Call ``work(state, item)`` for every item, on ``threads`` threads.

    Each thread builds its own ``state`` (its scratch buffers) with ``make_state`` and takes
    items from a shared iterator in order, so put the most expensive items first. BLAS is
    single-threaded inside when ``threads > 1``. The first exception raised by ``work`` is
    re-raised after all threads stop.
    """
    if threads <= 1:
        state = make_state()
        for item in items:
            work(state, item)
        return
    source = iter(items)
    lock = threading.Lock()
    errors: list[BaseException] = []

    def loop() -> None:
        state = make_state()
        while not errors:
            with lock:
                item = next(source, _DONE)
            if item is _DONE:
                return
            try:
                work(state, item)
            except BaseException as exc:  # noqa: BLE001 - re-raised in the caller
                errors.append(exc)
                return

    with blas_threads(1):
        pool = [threading.Thread(target=loop, daemon=True) for _ in range(threads)]
        for t in pool:
            t.start()
        for t in pool:
            t.join()
    if errors:
        raise errors[0]


_DONE = object()
