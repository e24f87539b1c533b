"""Kernels layer: write one more sample's yields into packed environment states.

Used when several samples of a channel are controlled at once (e.g. every histogram of a
classifier-based analysis): the states are those of :mod:`histgym._kernels.env_step`, packed
for the controlled sample ``P``/``Q`` describe; nothing is evaluated here (the metric and its
gradient stay in ``env_step``).
"""

from __future__ import annotations

from ._jit import jit
from .env_step import _refresh, _views


@jit
def set_yields_batch(S, P, Q, ibuf, yields):
    """Write row ``k`` of ``yields`` (float64 [N, n_y], already clipped) as the nominal of the
    sample that ``P``/``Q`` control into state ``S[k]`` (float64 [N, n_state]): its head,
    its model buffer (modifiers kept relative) and, for Asimov data, its data."""
    for k in range(S.shape[0]):
        ys, fbuf, ctl_i, ctl_f, data, cfg_i, cfg_f, pvec, x, out, grad = _views(S[k], P, Q)
        for i in range(ys.shape[0]):
            ys[i] = yields[k, i]
        _refresh(ys, fbuf, ibuf, ctl_i, ctl_f, data, cfg_i, pvec)
