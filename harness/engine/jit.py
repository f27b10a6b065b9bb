"""Numba kernels that are loaded on first call and cached on disk.

``@njit(...)`` takes the options of :func:`numba.njit`, with ``cache=True`` by default. The
decorated function is a :class:`LazyKernel`: nothing of Numba is imported when the module
defining it is (importing Numba takes about half a second, and a process that only reads a
spec, draws figures or lists runs never calls a kernel). The first call imports Numba and
builds the dispatcher; its compiled code then comes from Numba's on-disk cache (``__pycache__``
next to the source file, or ``NUMBA_CACHE_DIR``), so only the first process after an install
or an edit of the source compiles.

The kernels are called from Python only (a kernel calling another kernel would need the real
dispatcher at compile time): :meth:`LazyKernel.dispatcher` gives it where one is needed.
"""
from __future__ import annotations

import functools
import threading
from typing import Any, Callable

__all__ = ["njit", "LazyKernel"]

_lock = threading.Lock()


class LazyKernel:
    """A Numba kernel built on first call (see the module docstring)."""

    def __init__(self, function: Callable, options: dict[str, Any]) -> None:
        functools.update_wrapper(self, function)
        self.py_func = function
        self.options = dict(options)
        self._dispatcher = None

    def dispatcher(self):
        """The :func:`numba.njit` dispatcher (imports Numba and builds it on first use)."""
        if self._dispatcher is None:
            with _lock:
                if self._dispatcher is None:
                    import numba

                    self._dispatcher = numba.njit(**self.options)(self.py_func)
        return self._dispatcher

    def __call__(self, *args: Any) -> Any:
        dispatcher = self._dispatcher
        if dispatcher is None:
            dispatcher = self.dispatcher()
        return dispatcher(*args)

    def __repr__(self) -> str:
        return f"<LazyKernel {self.py_func.__module__}.{self.py_func.__qualname__}>"


def njit(**options: Any) -> Callable[[Callable], LazyKernel]:
    """Decorator: ``@njit(nogil=True)``, as :func:`numba.njit` (``cache=True`` by default) but
    loaded on first call."""
    options.setdefault("cache", True)

    def decorate(function: Callable) -> LazyKernel:
        return LazyKernel(function, options)

    return decorate
