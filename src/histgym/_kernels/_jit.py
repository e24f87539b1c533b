"""The only place that sets numba options for histgym's kernels."""

from __future__ import annotations

import functools
import importlib
import os
import sys
import threading
import time
from typing import Any, Callable

import numba

#: Serial kernels: cached on disk, numpy error model (no exceptions from floats), no fastmath.
#: ``forceinline=False`` explicitly: numba otherwise inherits the flag from the function being
#: compiled when a kernel is first compiled from inside a :data:`jit_inline` helper.
jit = numba.njit(cache=True, nogil=True, error_model="numpy", forceinline=False)
#: Small helpers, compiled once and inlined by LLVM into every caller (``alwaysinline``).
#: numba's own ``inline="always"`` copies, re-types and re-lowers a helper's IR at every call
#: site (recursively for helpers that call helpers): 13-28% of the CPU of the cold first runs
#: in benchmarks/README.md (issue 8, third pass); the generated code is the same.
jit_inline = numba.njit(cache=True, nogil=True, error_model="numpy", forceinline=True)
#: Helpers that return many array views, inlined at numba IR level: the views' reference
#: counts then cancel out in the caller (through an LLVM-level call they cost ~4% of a step).
jit_inline_ir = numba.njit(cache=True, nogil=True, error_model="numpy", inline="always")

_jit_parallel = numba.njit(cache=True, nogil=True, error_model="numpy", parallel=True,
                           forceinline=False)


def workqueue_only() -> bool:
    """True when numba's parallel kernels run on the ``workqueue`` threading layer.

    That happens where neither TBB nor OpenMP is available (or ``NUMBA_THREADING_LAYER`` asks
    for it).  ``workqueue`` is not thread-safe: two Python threads launching parallel kernels
    at once abort the process.  histgym then serialises its parallel kernel launches with a
    lock (:func:`jit_parallel`); with TBB or OpenMP nothing changes.
    """
    layer = str(os.environ.get("NUMBA_THREADING_LAYER", "default")).lower()
    if layer == "workqueue":
        return True
    if layer not in ("default", "", "safe", "threadsafe", "forksafe"):
        return False  # tbb or omp chosen explicitly
    candidates = {"safe": ("tbbpool",), "forksafe": ("tbbpool", "omppool")}
    for mod in candidates.get(layer, ("tbbpool", "omppool")):
        try:
            importlib.import_module(f"numba.np.ufunc.{mod}")
            return False
        except ImportError:
            continue
    return True


_WORKQUEUE = workqueue_only()
_LAUNCH_LOCK = threading.RLock()


def jit_parallel(fn: Callable[..., Any]) -> Any:
    """Batched drivers, parallel over the batch axis with ``numba.prange``.

    Under the ``workqueue`` threading layer (see :func:`workqueue_only`) the compiled driver
    is wrapped so that concurrent launches from several Python threads wait for each other
    instead of aborting the process; the compiled dispatcher stays at ``.dispatcher``.
    """
    dispatcher = _jit_parallel(fn)
    if not _WORKQUEUE:
        return dispatcher

    @functools.wraps(fn)
    def locked(*args: Any) -> Any:
        with _LAUNCH_LOCK:
            return dispatcher(*args)

    locked.dispatcher = dispatcher  # type: ignore[attr-defined]
    return locked

def start_thread_pool() -> None:
    """Start numba's thread pool now, keeping torch's thread count if torch is loaded.

    With numba's OpenMP threading layer, the pool's start (on the first
    ``numba.get_num_threads()`` or parallel kernel) resets the OpenMP thread count that torch
    shares: a ``torch.set_num_threads(1)`` made earlier silently became 2 at the first reset of
    a vector environment, and small policies then trained up to ~10x slower on a busy 2-core
    machine.  ``import histgym`` calls this, so a count set before or after it holds.
    """
    torch = sys.modules.get("torch")
    before = torch.get_num_threads() if torch is not None else None
    numba.get_num_threads()
    if before is not None and torch.get_num_threads() != before:
        torch.set_num_threads(before)


_LOAD = [-1e9, 0.0]  # (time of the last read, 1-minute load average)


def thread_count() -> int:
    """numba's current number of threads (``NUMBA_NUM_THREADS`` / ``numba.set_num_threads``)."""
    return int(numba.get_num_threads())


def threads_pay_off(work: int, min_work_per_thread: int = 512) -> bool:
    """Whether a batched driver should run in numba threads rather than in one thread.

    Args:
        work: size of the batch in units of a cheap row (e.g. rows x relative cost).
        min_work_per_thread: work below which a thread's start-up cost dominates.

    True when at least two threads are free (numba's thread count, minus the load average
    of the other processes on the machine, rounded) and each gets ``min_work_per_thread``.
    """
    threads = numba.get_num_threads()
    if threads < 2 or work < 2 * min_work_per_thread:
        return False
    now = time.monotonic()
    if now - _LOAD[0] > 1.0:  # read the load average at most once a second
        try:
            _LOAD[1] = os.getloadavg()[0]
        except OSError:  # pragma: no cover - platforms without getloadavg
            _LOAD[1] = 0.0
        _LOAD[0] = now
    busy = _LOAD[1]
    cpus = os.cpu_count() or 1
    free = min(threads, int(cpus - busy + 0.5) + 1)  # this process counts in the load
    return free >= 2
