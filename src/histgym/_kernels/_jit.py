"""The only place that sets numba options for histgym's kernels."""

from __future__ import annotations

import numba

#: Serial kernels: cached on disk, numpy error model (no exceptions from floats), no fastmath.
jit = numba.njit(cache=True, nogil=True, error_model="numpy")
#: Batched drivers, parallel over the batch axis with ``numba.prange``.
jit_parallel = numba.njit(cache=True, nogil=True, error_model="numpy", parallel=True)
#: Small helpers inlined at numba IR level into their callers.
jit_inline = numba.njit(cache=True, nogil=True, error_model="numpy", inline="always")
