"""Inference layer: profile-likelihood test statistics, as ``pyhf.infer.test_statistics``.

Definitions follow arXiv:1007.1727 and pyhf 0.7.6 exactly:

* ``tmu`` (Eq. 8) and ``tmu_tilde`` (Eq. 11): ``-2 ln lambda(mu)`` = twice_nll of the fit with
  the POI fixed at ``mu`` minus twice_nll of the free fit, clipped below at 0.
* ``qmu`` (Eq. 14) and ``qmu_tilde`` (Eq. 16): as ``tmu`` but 0 when the free fit's POI
  exceeds ``mu``.
* ``q0`` (Eq. 12): ``tmu`` at ``mu = 0``, and 0 when the free fit's POI is below 0.

The "tilde" forms differ only in the bounds the caller passes: pyhf's suggested bounds put the
POI's lower bound at 0 (``tilde``); ``qmu``/``tmu`` are meant for a POI allowed below 0.
As in pyhf, every fit starts at ``init`` (pyhf's suggested init by default) and uses the same
bounds and fixed flags; the POI-fixed fit sets the POI to ``mu``.

Local minima: the free fit starts at ``init`` (as pyhf); the POI-fixed fit starts at the lower
of ``init`` and the free fit's optimum (POI set to ``mu``), so it is never worse than either.
A free fit that ends above the POI-fixed one is restarted from the POI-fixed optimum (the free
fit can only be lower); when that happens beyond round-off, or a fit does not converge, a
global safeguard refits both from every candidate start and along a POI continuation and keeps
the best (:func:`histgym._kernels.inference.tmu_like_fits`).  A non-converged fit is retried
once from where it stopped.  ``converged`` means: a local minimum (EDM below tolerance) that is
also the lowest point of every start tried.  Fits never produce NaN.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt

from .._kernels.inference import minimize_into, tmu_like_fits, tmu_like_pair
from .._kernels.likelihood import twice_nll_hess
from .._kernels.newton import CONVERGED, STATUS_MESSAGES, covariance_summary
from ..errors import InvalidParameters
from ..checks import check_poi_value
from ..fit import (
    FitResult,
    FixedLike,
    _bounds,
    check_background_only_model,
    check_bounds,
    covariance_from_hessian,
    resolve_fixed,
)
from ..model import FloatArray, Model
from .results import TestStatResult

__all__ = ["q0", "qmu", "qmu_tilde", "tmu", "tmu_tilde", "FitSetup", "setup"]

log = logging.getLogger(__name__)

MAX_ITER = 200
TOL = 1e-10


@dataclass(frozen=True)
class FitSetup:
    """Validated fit configuration shared by every fit of an inference call.

    Attributes:
        model: the model.
        init: float64 [n_params] starting point.
        fixed: bool [n_params] fixed flags (POI floating).
        lower, upper: float64 [n_params] bounds.
        poi: index of the POI.
    """

    model: Model
    init: FloatArray
    fixed: npt.NDArray[np.bool_]
    lower: FloatArray
    upper: FloatArray
    poi: int


def setup(model: Model, init: Any = None, bounds: Any = None, fixed: FixedLike = None) -> FitSetup:
    """Validate ``init``/``bounds``/``fixed`` (None = pyhf's suggested) for inference.

    Raises:
        InvalidParameters: the model has no POI, the POI is fixed, or a shape is wrong.
    """
    if model.poi_index is None:
        msg = "the model has no parameter of interest (the measurement has no 'poi'); "
        raise InvalidParameters(msg + "a POI is required for profile-likelihood test statistics")
    x0 = model.suggested_init() if init is None else model.check_pars(init, name="init").copy()
    mask = np.ascontiguousarray(resolve_fixed(model, fixed, x0))
    poi = int(model.poi_index)
    if mask[poi]:
        msg = (
            f"the POI {model.poi_name!r} is fixed, which makes profile-likelihood inference "
            "impossible; unfix it (pyhf raises InvalidModel here)"
        )
        raise InvalidParameters(msg)
    if bounds is None:
        # copies (upper_limit widens the POI's upper bound in place) of pyhf's suggested bounds
        lo, up = _bounds(model, None)
        lower, upper = lo.copy(), up.copy()
    else:
        b = check_bounds(model, bounds)
        lower = np.ascontiguousarray(b[:, 0], dtype=np.float64)
        upper = np.ascontiguousarray(b[:, 1], dtype=np.float64)
    return FitSetup(model, x0, mask, lower, upper, poi)


@dataclass
class _Min:
    """A minimum found by :func:`minimize` (internal, cheap: no covariance)."""

    x: FloatArray
    twice_nll: float
    status: int
    n_iter: int
    edm: float
    hess: FloatArray | None  # None: computed at ``x`` when needed
    fixed: npt.NDArray[np.bool_]

    _data: FloatArray | None = None  # the data, to compute ``hess`` when it is None

    @property
    def converged(self) -> bool:
        return self.status == CONVERGED

    def to_fit_result(self, model: Model) -> FitResult:
        n = self.x.size
        h = self.hess
        if h is None:
            h = np.zeros((n, n))
            if self.twice_nll < np.finfo(np.float64).max:
                twice_nll_hess(self.x, self._data, model.fbuf, model.ibuf, np.empty(n), h)
        cov = covariance_from_hessian(h, self.fixed) if np.all(np.isfinite(h)) else np.zeros((n, n))
        unc = np.empty(n)
        corr = np.empty((n, n))
        covariance_summary(cov, unc, corr)  # as histgym.fit.fit
        return FitResult(
            bestfit=self.x.copy(),
            uncertainty=unc,
            covariance=cov,
            correlation=corr,
            twice_nll=self.twice_nll,
            converged=self.converged,
            status=self.status,
            message=STATUS_MESSAGES[self.status],
            n_iter=self.n_iter,
            edm=self.edm,
            fixed=self.fixed.copy(),
            parameter_names=model.parameter_names,
        )


def minimize(s: FitSetup, data: FloatArray, x0: FloatArray, fixed: npt.NDArray[np.bool_]) -> _Min:
    """One bounded Newton fit (retried once from its end point if it did not converge).

    A fit that ends non-finite reports the start point, ``twice_nll`` = the largest float64,
    a zero Hessian and status != converged (see :func:`histgym._kernels.inference.minimize_into`).
    """
    n = s.model.n_params
    x = np.empty(n)
    h = np.empty((n, n))
    start = np.ascontiguousarray(x0, dtype=np.float64)
    status, f, it, edm = minimize_into(
        start, data, s.model.fbuf, s.model.ibuf, fixed, s.lower, s.upper, MAX_ITER, TOL,
        x, np.empty(n), h, np.empty(n),
    )  # fmt: skip
    return _Min(x, float(f), int(status), int(it), float(edm), h, fixed)


def _fixed_mask(s: FitSetup) -> npt.NDArray[np.bool_]:
    m = s.fixed.copy()
    m[s.poi] = True
    return m


def fixed_poi_min(s: FitSetup, mu: float, data: FloatArray) -> _Min:
    """POI-fixed fit at ``mu`` from ``s.init`` (pyhf's ``fixed_poi_fit``)."""
    x0 = s.init.copy()
    x0[s.poi] = mu
    return minimize(s, data, x0, _fixed_mask(s))


def free_min(s: FitSetup, data: FloatArray) -> _Min:
    """Free fit from ``s.init`` (pyhf's ``fit``)."""
    return minimize(s, data, s.init, s.fixed)


def tmu_like(
    s: FitSetup, mu: float, data: FloatArray, free: _Min | None = None,
    gen: FloatArray | None = None,
) -> tuple[float, _Min, _Min]:  # fmt: skip
    """(t_mu, POI-fixed fit, free fit); ``free`` may be passed in when already known.

    ``gen`` [n_params]: the parameters that generated ``data`` (Asimov data), an extra
    candidate start of the fits.

    The fits are guarded against local minima as the compiled inference path
    (:func:`histgym._kernels.inference.tmu_like_fits`; the same code, the same numbers).
    """
    n = s.model.n_params
    xs = np.empty((2, n))
    if gen is not None:
        if free is None:
            free = free_min(s, data)
        xs[0] = free.x
        fs = np.array([free.twice_nll, 0.0])
        sts = np.array([free.status, 0], dtype=np.int64)
        its = np.array([free.n_iter, 0], dtype=np.int64)
        edms = np.array([free.edm, 0.0])
        t = tmu_like_fits(
            float(mu), s.init, s.fixed, s.lower, s.upper, s.poi, data,
            np.ascontiguousarray(gen, dtype=np.float64), True, s.model.fbuf, s.model.ibuf,
            MAX_ITER, TOL, xs, fs, sts, its, edms, 0, 1,
        )  # fmt: skip
        res = np.stack([fs, sts, its, edms], axis=1)
    else:
        t, xs, res = _tmu_pair(s, float(mu), data, free)
    mask = _fixed_mask(s)
    f0, st0, it0, edm0 = res[0].tolist()
    if free is None or f0 != free.twice_nll or not (xs[0] == free.x).all():
        free = _Min(xs[0].copy(), f0, int(st0), int(it0), edm0, None, s.fixed, data)
    f1, st1, it1, edm1 = res[1].tolist()
    fixed = _Min(xs[1].copy(), f1, int(st1), int(it1), edm1, None, mask, data)
    return float(t), fixed, free


def _tmu_pair(
    s: FitSetup, mu: float, data: FloatArray, free: _Min | None = None
) -> tuple[float, FloatArray, FloatArray]:
    """(t_mu, xs [2, n_params] (free fit, POI-fixed fit), res [2, 4] (twice_nll, status,
    iterations, edm of each)) in one kernel call
    (:func:`histgym._kernels.inference.tmu_like_pair`)."""
    xs = np.empty((2, s.model.n_params))
    res = np.empty((2, 4))
    if free is not None:
        xs[0] = free.x
        res[0] = (free.twice_nll, free.status, free.n_iter, free.edm)
    t = tmu_like_pair(
        mu, s.init, s.fixed, s.lower, s.upper, s.poi, data, s.model.fbuf, s.model.ibuf,
        MAX_ITER, TOL, free is None, xs, res,
    )  # fmt: skip
    return float(t), xs, res


def _result(model: Model, value: float, mu: float, fixed: _Min, free: _Min) -> TestStatResult:
    return TestStatResult(
        float(value), float(mu), fixed.to_fit_result(model), free.to_fit_result(model)
    )


def _check_tilde(s: FitSetup, name: str, tilde: bool) -> None:
    at_zero = s.lower[s.poi] == 0.0
    if tilde and not at_zero:
        log.debug("%s used with the POI not bounded at zero; use the non-tilde form", name)
    if not tilde and at_zero:
        log.debug("%s used with the POI bounded at zero; use the tilde form", name)


def _qmu_like(
    name: str, tilde: bool, clip_above: bool, mu: float, model: Model, data: Any,
    init: Any, bounds: Any, fixed: FixedLike, return_fits: bool,
) -> float | TestStatResult:  # fmt: skip
    mu = check_poi_value(mu, "mu")
    s = setup(model, init, bounds, fixed)
    _check_tilde(s, name, tilde)
    d = model.check_data(data)
    if not return_fits:  # no FitResult to build: one kernel call
        t, xs, _ = _tmu_pair(s, float(mu), d)
        return 0.0 if clip_above and xs[0, s.poi] > mu else t
    t, fx, fr = tmu_like(s, float(mu), d)
    if clip_above and fr.x[s.poi] > mu:
        t = 0.0
    return _result(model, t, mu, fx, fr)


def qmu(
    mu: float, model: Model, data: Any = None, *, init: Any = None, bounds: Any = None,
    fixed: FixedLike = None, return_fits: bool = False,
) -> float | TestStatResult:  # fmt: skip
    r"""One-sided test statistic :math:`q_\mu` (arXiv:1007.1727 Eq. 14), as pyhf's ``qmu``.

    Args:
        mu: tested POI value.
        model: the model.
        data: float64 [n_data] main bins + auxdata; defaults to the observed data.
        init: float64 [n_params] fit start; defaults to pyhf's suggested init.
        bounds: float64 [n_params, 2]; defaults to pyhf's suggested bounds.
        fixed: bool [n_params] or ``{name: value}``; defaults to pyhf's suggested fixed.
        return_fits: return a :class:`TestStatResult` with both fits instead of a float.

    Returns:
        ``q_mu >= 0`` (0 when the free fit's POI exceeds ``mu``), or a TestStatResult.

    Raises:
        InvalidParameters: no POI, POI fixed, or bad shapes.
        InvalidData: bad data.

    Example:
        >>> import histgym
        >>> from histgym import infer
        >>> model = histgym.from_pyhf(histgym.example_workspace())
        >>> round(infer.qmu(2.0, model), 4)
        2.495
    """
    return _qmu_like("qmu", False, True, mu, model, data, init, bounds, fixed, return_fits)


def qmu_tilde(
    mu: float, model: Model, data: Any = None, *, init: Any = None, bounds: Any = None,
    fixed: FixedLike = None, return_fits: bool = False,
) -> float | TestStatResult:  # fmt: skip
    r""":math:`\tilde{q}_\mu` (arXiv:1007.1727 Eq. 16), as pyhf's ``qmu_tilde``.

    Same as :func:`qmu`; the POI's lower bound (0 with pyhf's suggested bounds) makes it the
    tilde form.  Arguments and return as :func:`qmu`.

    Example:
        >>> import histgym
        >>> from histgym import infer
        >>> model = histgym.from_pyhf(histgym.example_workspace())
        >>> round(infer.qmu_tilde(2.0, model), 4)
        2.495
    """
    return _qmu_like("qmu_tilde", True, True, mu, model, data, init, bounds, fixed, return_fits)


def tmu(
    mu: float, model: Model, data: Any = None, *, init: Any = None, bounds: Any = None,
    fixed: FixedLike = None, return_fits: bool = False,
) -> float | TestStatResult:  # fmt: skip
    r"""Two-sided :math:`t_\mu = -2\ln\lambda(\mu)` (arXiv:1007.1727 Eq. 8), as pyhf's ``tmu``.

    Arguments and return as :func:`qmu` (no clipping for mu_hat > mu).
    """
    return _qmu_like("tmu", False, False, mu, model, data, init, bounds, fixed, return_fits)


def tmu_tilde(
    mu: float, model: Model, data: Any = None, *, init: Any = None, bounds: Any = None,
    fixed: FixedLike = None, return_fits: bool = False,
) -> float | TestStatResult:  # fmt: skip
    r""":math:`\tilde{t}_\mu` (arXiv:1007.1727 Eq. 11), as pyhf's ``tmu_tilde``.

    Arguments and return as :func:`qmu` (no clipping for mu_hat > mu).
    """
    return _qmu_like("tmu_tilde", True, False, mu, model, data, init, bounds, fixed, return_fits)


def q0(
    model: Model, data: Any = None, *, init: Any = None, bounds: Any = None,
    fixed: FixedLike = None, return_fits: bool = False,
) -> float | TestStatResult:  # fmt: skip
    r"""Discovery test statistic :math:`q_0` (arXiv:1007.1727 Eq. 12), as pyhf's ``q0``.

    ``t_0`` from a fit with the POI fixed at 0 and a free fit; 0 when the free fit's POI is
    negative (only possible when the bounds allow it).  Arguments as :func:`qmu`.

    Example:
        >>> import histgym
        >>> from histgym import infer
        >>> model = histgym.from_pyhf(histgym.example_workspace())
        >>> round(infer.q0(model), 4)
        3.5468
    """
    s = setup(model, init, bounds, fixed)
    check_background_only_model(model)
    d = model.check_data(data)
    if not return_fits:
        t, xs, _ = _tmu_pair(s, 0.0, d)
        return 0.0 if xs[0, s.poi] < 0.0 else t
    t, fx, fr = tmu_like(s, 0.0, d)
    if fr.x[s.poi] < 0.0:
        t = 0.0
    return _result(model, t, 0.0, fx, fr)


def batch_tmu_like(
    s: FitSetup,
    mu: FloatArray,
    data: FloatArray,
    fbufs: FloatArray | None = None,
    init: FloatArray | None = None,
) -> tuple[FloatArray, FloatArray, FloatArray, npt.NDArray[np.bool_]]:
    """Batched t_mu: N POI-fixed and N free fits in one parallel kernel call.

    Args:
        s: fit setup (init, bounds, fixed flags shared by every row).
        mu: float64 [N] tested POI value per row.
        data: float64 [N, n_data] data per row.
        fbufs: float64 [N, n_fbuf] model buffers per row; defaults to the model's, shared.
        init: float64 [N, n_params] starting points per row; defaults to ``s.init`` for all.

    Returns:
        ``(t [N], poi_hat [N] of the free fits, free-fit twice_nll [N], converged [N])``;
        never NaN (a row whose fits fail gets t = 0 and converged = False).
    """
    from .._kernels.newton import newton_fit_batch

    model = s.model
    n = mu.shape[0]
    p = model.n_params
    f = model.fbuf.size
    bufs = np.broadcast_to(model.fbuf, (n, f)) if fbufs is None else fbufs
    start = (
        np.repeat(s.init[None, :], n, axis=0)
        if init is None
        else np.asarray(init, dtype=np.float64)
    )
    pars0 = np.ascontiguousarray(np.concatenate([start, start]))
    pars0[:n, s.poi] = mu
    fixed = np.repeat(s.fixed[None, :], 2 * n, axis=0)
    fixed[:n, s.poi] = True
    d2 = np.ascontiguousarray(np.concatenate([data, data]))
    b2 = (
        np.concatenate([bufs, bufs])
        if fbufs is not None
        else np.broadcast_to(model.fbuf, (2 * n, f))
    )
    x = np.empty((2 * n, p))
    status = np.empty(2 * n, dtype=np.int64)
    fval = np.empty(2 * n)
    n_iter = np.empty(2 * n, dtype=np.int64)
    newton_fit_batch(
        pars0, d2, b2, model.ibuf, fixed, s.lower, s.upper, MAX_ITER, TOL, x, status, fval, n_iter
    )
    f_fix, f_free = fval[:n].copy(), fval[n:].copy()
    x_free = x[n:].copy()
    ok = (status[:n] == CONVERGED) & (status[n:] == CONVERGED)
    # free fit above the POI-fixed one (or failed): restart from the POI-fixed optimum
    redo = np.flatnonzero(~(f_free <= f_fix) | (status[n:] != CONVERGED))
    if redo.size:
        m = redo.size
        x2 = np.empty((m, p))
        st2 = np.empty(m, dtype=np.int64)
        fv2 = np.empty(m)
        it2 = np.empty(m, dtype=np.int64)
        fx2 = np.repeat(s.fixed[None, :], m, axis=0)
        start = np.where(np.isfinite(x[redo]).all(axis=1)[:, None], x[redo], s.init[None, :])
        start = np.ascontiguousarray(start)
        start[:, s.poi] = np.clip(start[:, s.poi], s.lower[s.poi], s.upper[s.poi])
        newton_fit_batch(
            start, np.ascontiguousarray(data[redo]), np.ascontiguousarray(bufs[redo]), model.ibuf,
            fx2, s.lower, s.upper, MAX_ITER, TOL, x2, st2, fv2, it2,
        )  # fmt: skip
        better = np.isfinite(fv2) & ~(fv2 >= f_free[redo])
        rows = redo[better]
        f_free[rows] = fv2[better]
        x_free[rows] = x2[better]
        ok[redo] = (status[redo] == CONVERGED) & (st2 == CONVERGED) | (ok[redo] & ~better)
    good = np.isfinite(f_fix) & np.isfinite(f_free)
    t = np.where(good, np.clip(f_fix - f_free, 0.0, None), 0.0)
    poi_hat = np.where(np.isfinite(x_free[:, s.poi]), x_free[:, s.poi], s.init[s.poi])
    f_free = np.where(np.isfinite(f_free), f_free, np.finfo(np.float64).max)
    return t, poi_hat, f_free, ok & good
