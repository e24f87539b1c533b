"""Inference layer: batch forms of q0 / qmu_tilde over many replaced sample yields.

One compiled, parallel call fits every row (``newton_fit_batch``): for environments that need
q0 or qmu for many candidate yield vectors of one sample.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from ..checks import check_poi_value
from ..fit import FixedLike
from ..model import FloatArray, Model
from .teststats import batch_tmu_like, setup

__all__ = ["q0_yields_batch", "qmu_tilde_yields_batch"]


def _run(model: Model, channel: str, sample: str, yields: Any, mu: float, data: Any,
         init: Any, bounds: Any, fixed: FixedLike) -> tuple[FloatArray, FloatArray, np.ndarray]:  # fmt: skip
    s = setup(model, init, bounds, fixed)
    bufs = model.sample_yields_buffers(channel, sample, yields)
    n = bufs.shape[0]
    d = model.check_data(data)
    dd = np.ascontiguousarray(np.broadcast_to(d, (n, d.size)))
    t, poi_hat, _, ok = batch_tmu_like(s, np.full(n, float(mu)), dd, bufs)
    return t, poi_hat, ok


def q0_yields_batch(
    model: Model, channel: str, sample: str, yields: Any, data: Any = None, *,
    init: Any = None, bounds: Any = None, fixed: FixedLike = None,
) -> tuple[FloatArray, np.ndarray]:  # fmt: skip
    """q0 for each row of ``yields`` replacing ``sample``'s nominal in ``channel``.

    Args:
        model: the model.
        channel, sample: the controlled sample.
        yields: float64 [N, n_channel_bins].
        data: float64 [n_data]; defaults to the observed data (the same for every row).
        init, bounds, fixed: fit configuration; default to pyhf's suggested ones.

    Returns:
        ``(q0 [N], converged [N])``; never NaN.
    """
    t, poi_hat, ok = _run(model, channel, sample, yields, 0.0, data, init, bounds, fixed)
    return np.where(poi_hat < 0.0, 0.0, t), ok


def qmu_tilde_yields_batch(
    mu: float, model: Model, channel: str, sample: str, yields: Any, data: Any = None, *,
    init: Any = None, bounds: Any = None, fixed: FixedLike = None,
) -> tuple[FloatArray, np.ndarray]:  # fmt: skip
    """qmu_tilde(mu) for each row of ``yields`` (see :func:`q0_yields_batch`).

    Returns:
        ``(qmu_tilde [N], converged [N])``; never NaN.
    """
    mu = check_poi_value(mu, "mu")
    t, poi_hat, ok = _run(model, channel, sample, yields, mu, data, init, bounds, fixed)
    return np.where(poi_hat > mu, 0.0, t), ok
