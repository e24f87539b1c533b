"""Inference layer: the fits of one calculator's preparation in Python, and fits shared between
calculators of one model (the scan's per-point CLs, limits and Z0).

:class:`AsymptoticCalculator` prepares (free fit, Asimov construction, free Asimov fit) and
evaluates in single compiled calls (``histgym._kernels.inference.asymptotic_eval``).  The
same steps are run here one compiled function at a time (:func:`prepare`, :func:`tmu`): the
same functions on the same inputs, hence the same numbers, with each step's inputs and
outputs visible.  A :class:`FitMemo` then recognises a fit whose inputs (start, data, fit
configuration, and the fit state it reads) equal those of a fit already done, and returns that
fit's outputs instead of refitting.  Between the ``qtilde`` calculator of the CLs and limits
and the ``q0`` calculator of the significance, three fits are the same: the free fit to the
data, the POI-fixed fit at 0 to the data (the ``qtilde`` Asimov fit, the ``q0`` observed one)
and at 1 (the first CLs evaluation, the ``q0`` Asimov construction).  :func:`significance`
with a memo so equals :func:`histgym.infer.significance` at two fewer fits and a cheaper
third; where the inputs differ (a fit state improved by a safeguard), it simply fits.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from .._kernels.inference import (
    S_ASIMOV,
    S_FIX,
    S_FREE,
    S_FREE_A,
    minimize_into,
    prepare_asimov,
    tmu_like_fits,
)
from .._kernels.newton import CONVERGED
from ..fit import check_background_only_model
from ..model import Model
from .asymptotics import AsymptoticCalculator
from .results import SignificanceResult
from .teststats import MAX_ITER, TOL, FitSetup

__all__ = ["FitMemo", "prepare", "tmu", "significance"]


def _key(*arrays: Any) -> bytes:
    return b"|".join(np.ascontiguousarray(a).tobytes() for a in arrays)


def _row(calc: AsymptoticCalculator, r: int) -> tuple[np.ndarray, float, int, int, float]:
    return calc._xs[r].copy(), float(calc._fs[r]), int(calc._sts[r]), int(calc._its[r]), float(calc._edms[r])


def _put(calc: AsymptoticCalculator, r: int, state: tuple[np.ndarray, float, int, int, float]) -> None:
    calc._xs[r] = state[0]
    calc._fs[r], calc._sts[r], calc._its[r], calc._edms[r] = state[1:]


class FitMemo:
    """Outputs of fits by their exact inputs (bytes of every array a fit reads), for the
    calculators of one model (the model's buffers are not part of the keys)."""

    def __init__(self) -> None:
        self._free: dict[bytes, tuple[np.ndarray, float, int, int, float]] = {}
        self._tmu: dict[bytes, tuple[float, Any, Any]] = {}
        self.hits = 0


def _setup_key(s: FitSetup, data: np.ndarray) -> bytes:
    return _key(s.fixed, s.lower, s.upper, np.array([s.poi]), data)


def free_fit(calc: AsymptoticCalculator, memo: FitMemo | None) -> None:
    """Row ``S_FREE``: the free fit to the data from ``init`` (``asymptotic_eval``'s first step)."""
    s, m = calc.setup, calc.model
    key = _key(s.init) + _setup_key(s, calc.data) if memo is not None else b""
    if memo is not None and key in memo._free:
        memo.hits += 1
        _put(calc, S_FREE, memo._free[key])
        return
    n = m.n_params
    st, f, it, edm = minimize_into(
        s.init, calc.data, m.fbuf, m.ibuf, s.fixed, s.lower, s.upper, MAX_ITER, TOL,
        calc._xs[S_FREE], np.empty(n), np.empty((n, n)), np.empty(n),
    )  # fmt: skip
    calc._fs[S_FREE], calc._sts[S_FREE], calc._its[S_FREE], calc._edms[S_FREE] = f, st, it, edm
    if memo is not None:
        memo._free[key] = _row(calc, S_FREE)


def tmu(
    calc: AsymptoticCalculator, mu: float, start: np.ndarray, data: np.ndarray, gen: np.ndarray,
    has_gen: bool, row: int, frow: int, memo: FitMemo | None = None,
) -> float:  # fmt: skip
    """``tmu_like_fits`` on the calculator's fit state (rows ``row``: free fit, in and out;
    ``frow``: the POI-fixed fit, out), memoised on its inputs when ``memo`` is given."""
    s, m = calc.setup, calc.model
    key = b""
    if memo is not None:
        key = _key(np.array([mu, float(has_gen)]), start, gen, *_row(calc, row)[:1]) + _key(
            np.array(_row(calc, row)[1:], dtype=np.float64)
        ) + _setup_key(s, data)
        hit = memo._tmu.get(key)
        if hit is not None:
            memo.hits += 1
            t, out_row, out_frow = hit
            _put(calc, row, out_row)
            _put(calc, frow, out_frow)
            return float(t)
    t = float(
        tmu_like_fits(
            mu, start, s.fixed, s.lower, s.upper, s.poi, data, gen, has_gen, m.fbuf, m.ibuf,
            MAX_ITER, TOL, calc._xs, calc._fs, calc._sts, calc._its, calc._edms, row, frow,
        )  # fmt: skip
    )
    if memo is not None:
        memo._tmu[key] = (t, _row(calc, row), _row(calc, frow))
    return t


def prepare(calc: AsymptoticCalculator, memo: FitMemo | None = None) -> None:
    """The calculator's preparation (``asymptotic_eval`` before its first evaluation), step by
    step: the free fit and the POI-fixed fit at the Asimov POI value (memoised), then the
    kernel's :func:`~histgym._kernels.inference.prepare_asimov` (a second start of the free fit
    where it can gain, the Asimov data, the free fit to them).  No-op when already prepared."""
    if calc._sts[S_ASIMOV] >= 0:
        return
    s, m = calc.setup, calc.model
    n = m.n_params
    free_fit(calc, memo)
    tmu(calc, calc._mu_asimov, s.init, calc.data, s.init, False, S_FREE, S_ASIMOV, memo)
    prepare_asimov(
        s.init, s.fixed, s.lower, s.upper, calc.data, m.fbuf, m.ibuf, MAX_ITER, TOL,
        calc._asimov, calc._xs, calc._fs, calc._sts, calc._its, calc._edms,
        np.empty(n), np.empty((n, n)), np.empty(n), np.empty(n),
    )  # fmt: skip


def significance(model: Model, memo: FitMemo | None = None) -> SignificanceResult:
    """:func:`histgym.infer.significance` (default fit configuration) through
    :func:`prepare` and :func:`tmu`: the same fits, shared through ``memo``."""
    calc = AsymptoticCalculator(model, test_stat="q0")
    check_background_only_model(model)
    s = calc.setup
    prepare(calc, memo)
    ok = bool(calc._sts[S_ASIMOV] == CONVERGED)
    t = tmu(calc, 0.0, s.init, calc.data, s.init, False, S_FREE, S_FIX, memo)
    q = 0.0 if calc._xs[S_FREE, s.poi] < 0.0 else t
    ok = ok and bool(calc._sts[S_FIX] == CONVERGED and calc._sts[S_FREE] == CONVERGED)
    ta = tmu(calc, 0.0, s.init, calc._asimov, calc._xs[S_ASIMOV].copy(), True, S_FREE_A, S_FIX)
    qa = 0.0 if calc._xs[S_FREE_A, s.poi] < 0.0 else ta
    ok = ok and bool(calc._sts[S_FIX] == CONVERGED and calc._sts[S_FREE_A] == CONVERGED)
    p_obs, _, _, band = calc._cls(q, qa)
    return SignificanceResult(
        z_obs=math.sqrt(q),
        p_obs=p_obs,
        z_exp=math.sqrt(qa),
        p_exp=band[2],
        p_exp_band=tuple(band),  # type: ignore[arg-type]
        q0=float(q),
        q0_asimov=float(qa),
        converged=ok,
    )
