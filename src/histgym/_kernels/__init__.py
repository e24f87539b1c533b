"""Kernels layer: numba-compiled HistFactory arithmetic on flat arrays.

Nothing here knows JSON, pyhf objects or Gymnasium: functions take arrays and scalars and
write into preallocated outputs.  The model is passed as two flat buffers (``fbuf`` float64,
``ibuf`` int64, see :mod:`histgym._kernels.layout`) so that a call from Python dispatches
on four arguments only (about 0.3 us of numba overhead).
"""
