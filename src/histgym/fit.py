"""Fits layer: maximum-likelihood fits of a :class:`~histgym.Model` (bounded Newton).

``fit`` minimises -2 ln L with the exact Hessian (see ``histgym._kernels.newton``);
uncertainties come from the inverse Hessian of -ln L at the minimum (as Minuit's HESSE).
A fit that does not converge returns ``converged=False`` and warns; it never returns NaN.
"""

from __future__ import annotations

import contextlib
import math
import warnings
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Union

import numpy as np
import numpy.typing as npt

from ._kernels.newton import (
    CONVERGED,
    SMALL,
    STATUS_MESSAGES,
    fit_with_covariance,
    free_covariance,
)
from .checks import check_bool, check_float, check_int, check_poi_value
from .errors import (
    DegenerateModelWarning,
    FitWarning,
    InvalidParameters,
    UnknownName,
    did_you_mean,
)
from .model import FloatArray, Model

__all__ = ["FitResult", "fit", "fixed_poi_fit", "FixedLike"]

#: Fixed parameters: a bool mask [n_params], or {name: value} fixing those at the value.
FixedLike = Union[Sequence[bool], npt.NDArray[np.bool_], Mapping[str, float], None]


@dataclass(frozen=True)
class FitResult:
    """Result of a maximum-likelihood fit.

    Attributes:
        bestfit: float64 [n_params] parameter values at the minimum (pyhf's order).
        uncertainty: float64 [n_params] sqrt of the covariance diagonal (0 for fixed).
        covariance: float64 [n_params, n_params] inverse Hessian of -ln L over the free
            parameters (rows/columns of fixed parameters are 0).
        correlation: float64 [n_params, n_params] (1 on the diagonal of fixed parameters).
        twice_nll: -2 ln L at the minimum.
        converged: True if the EDM fell below the tolerance.
        status: 0 converged, 1 max iterations, 2 line search failed, 3 non-finite start.
        message: human-readable status.
        n_iter: Newton iterations.
        edm: estimated distance to the minimum (units of -ln L).
        fixed: bool [n_params] the parameters that were held fixed.
        parameter_names: the model's parameter names.
    """

    bestfit: FloatArray
    uncertainty: FloatArray
    covariance: FloatArray
    correlation: FloatArray
    twice_nll: float
    converged: bool
    status: int
    message: str
    n_iter: int
    edm: float
    fixed: npt.NDArray[np.bool_]
    parameter_names: list[str] = field(repr=False)

    @property
    def nll(self) -> float:
        """-ln L at the minimum."""
        return 0.5 * self.twice_nll

    def __getitem__(self, name: str) -> tuple[float, float]:
        """(best fit, uncertainty) of the parameter ``name``.

        Raises:
            UnknownName: ``name`` is not a parameter of the model (a ``KeyError``).
        """
        try:
            i = self.parameter_names.index(name)
        except ValueError:
            msg = f"unknown parameter {name!r}." + did_you_mean(str(name), self.parameter_names)
            raise UnknownName(msg) from None
        return float(self.bestfit[i]), float(self.uncertainty[i])


def resolve_fixed(model: Model, fixed: FixedLike, init: FloatArray) -> npt.NDArray[np.bool_]:
    """Fixed mask from ``fixed`` (None = pyhf's suggested); a mapping also sets ``init``."""
    if fixed is None:
        return model.suggested_fixed()
    if isinstance(fixed, Mapping):
        mask = model.suggested_fixed()
        for name, value in fixed.items():
            i = model.index(name)
            mask[i] = True
            init[i] = check_float(f"fixed[{name!r}]", value)
        return mask
    mask = np.asarray(fixed)
    if mask.dtype != np.bool_:
        if mask.dtype.kind not in "iu" or not np.all((mask == 0) | (mask == 1)):
            msg = f"fixed must be a bool mask or a {{name: value}} mapping, got {mask.dtype} values"
            raise InvalidParameters(msg)
        mask = mask.astype(bool)
    if mask.shape != (model.n_params,):
        msg = f"fixed has shape {mask.shape} but the model has {model.n_params} parameters"
        raise InvalidParameters(msg)
    return mask


def _bounds(model: Model, bounds: Any) -> tuple[FloatArray, FloatArray]:
    if bounds is None:
        return model._lower, model._upper
    else:
        b = check_bounds(model, bounds)
    return np.ascontiguousarray(b[:, 0]), np.ascontiguousarray(b[:, 1])


def check_bounds(model: Model, bounds: Any) -> FloatArray:
    """``bounds`` as float64 [n_params, 2], finite with lower <= upper.

    Raises:
        InvalidParameters: wrong shape, non-numeric, NaN/inf or inverted bounds.
    """
    try:
        b = np.asarray(bounds, dtype=np.float64)
    except (TypeError, ValueError):
        raise InvalidParameters(f"bounds must be numbers of shape ({model.n_params}, 2)") from None
    if b.shape != (model.n_params, 2):
        msg = f"bounds have shape {b.shape}; the model needs ({model.n_params}, 2)"
        raise InvalidParameters(msg)
    bad = np.flatnonzero(~np.all(np.isfinite(b), axis=1) | (b[:, 0] > b[:, 1]))
    if bad.size:
        names = [model.parameter_names[i] for i in bad[:5]]
        raise InvalidParameters(f"bounds must be finite with lower <= upper; bad for {names}")
    return b


def covariance_from_hessian(hess2: FloatArray, fixed: npt.NDArray[np.bool_]) -> FloatArray:
    """Covariance of the free parameters from the Hessian of -2 ln L (0 for fixed ones)."""
    cov = np.empty_like(hess2)
    free_covariance(hess2, fixed, cov)
    return cov


@contextlib.contextmanager
def _single_threaded_blas(n: int) -> Iterator[None]:
    """Large fits call LAPACK; on a busy machine BLAS threads slow them 5-100x."""
    if n <= SMALL:
        yield
        return
    from threadpoolctl import threadpool_limits

    with threadpool_limits(limits=1, user_api="blas"):
        yield


def fit(
    model: Model,
    data: Any = None,
    *,
    init: Any = None,
    fixed: FixedLike = None,
    bounds: Any = None,
    max_iter: int = 200,
    tol: float = 1e-10,
    warn: bool = True,
) -> FitResult:
    """Maximum-likelihood fit of ``model`` to ``data``.

    Args:
        model: the model.
        data: float64 [n_data] main bins + auxdata; defaults to the observed data.
        init: starting point [n_params]; defaults to pyhf's suggested init.
        fixed: bool mask [n_params] or ``{name: value}``; defaults to pyhf's suggested fixed.
        bounds: [n_params, 2]; defaults to pyhf's suggested bounds.
        max_iter: maximum Newton iterations, defaults to 200.
        tol: EDM threshold in units of -ln L, defaults to 1e-10.
        warn: emit a :class:`FitWarning` when the fit does not converge, defaults to True.

    Returns:
        A :class:`FitResult`; never NaN (a failed fit reports ``converged=False``).

    Example:
        >>> import histgym
        >>> model = histgym.from_pyhf(histgym.example_workspace())
        >>> result = histgym.fit(model)
        >>> result.converged, round(result["mu"][0], 4)
        (True, 1.0)
    """
    # the checks run only where the plain-type fast test fails (a ~13 us fit spent ~1.5 us here)
    if not (type(max_iter) is int and max_iter >= 1):
        max_iter = check_int("max_iter", max_iter, low=1)
    if not (type(tol) is float and 0.0 < tol < math.inf):
        tol = check_float("tol", tol, low=0.0, low_open=True)
    if warn is not True and warn is not False:
        warn = check_bool("warn", warn)
    d = model.check_data(data)
    x0 = model.suggested_init() if init is None else model.check_pars(init, name="init").copy()
    mask = resolve_fixed(model, fixed, x0)
    lower, upper = _bounds(model, bounds)
    n = model.n_params
    x = np.empty(n)
    cov = np.empty((n, n))
    unc = np.empty(n)
    corr = np.empty((n, n))
    args = (x0, d, model.fbuf, model.ibuf, mask, lower, upper, int(max_iter), float(tol), x, cov,
            unc, corr)  # fmt: skip
    if n <= SMALL:  # no LAPACK involved: skip the thread-limit context (it costs ~1 us)
        status, f, n_iter, edm = fit_with_covariance(*args)
    else:
        with _single_threaded_blas(n):
            status, f, n_iter, edm = fit_with_covariance(*args)
    converged = status == CONVERGED
    message = STATUS_MESSAGES[status]
    if not np.isfinite(f):  # non-finite at the start: reported at the start, no covariance
        f = float(np.finfo(float).max)
    if converged:
        flat = degenerate_parameters(model, unc, mask)
        if flat:
            converged = False
            message = (
                f"degenerate: the free parameters {flat[:5]} have no effect on the likelihood "
                "(singular Hessian); their uncertainties are undefined"
            )
            if warn:
                warnings.warn(message, DegenerateModelWarning, stacklevel=2)
                warn = False
    if not converged and warn:
        warnings.warn(
            f"fit did not converge: {STATUS_MESSAGES[status]} (edm={edm:.3g}, "
            f"{n_iter} iterations)",
            FitWarning,
            stacklevel=2,
        )
    return FitResult(
        bestfit=x,
        uncertainty=unc,
        covariance=cov,
        correlation=corr,
        twice_nll=float(f),
        converged=bool(converged),
        status=int(status),
        message=message,
        n_iter=int(n_iter),
        edm=float(edm),
        fixed=mask,
        parameter_names=model.parameter_names,
    )


def degenerate_parameters(
    model: Model, uncertainty: FloatArray, fixed: npt.NDArray[np.bool_]
) -> list[str]:
    """Names of free parameters whose fitted uncertainty is 0 or not finite.

    A free parameter with no effect on the likelihood makes the Hessian singular; the
    covariance then reports 0 for it.  Such a fit is not a measurement of that parameter.
    """
    if uncertainty.shape[0] <= 64:  # small models: plain Python beats four numpy calls
        names = model.parameter_names
        return [
            names[i]
            for i, (u, f) in enumerate(zip(uncertainty.tolist(), fixed.tolist()))
            if not f and not u > 0.0
        ]
    bad = ~fixed & ~(uncertainty > 0.0)
    return [model.parameter_names[i] for i in np.flatnonzero(bad)]


def check_poi_has_effect(model: Model, init: FloatArray) -> None:
    """Refuse inference on a POI that does not change the expected main-bin yields.

    Raises:
        InvalidParameters: moving the POI by one unit from ``init`` changes no expected yield
            (e.g. it multiplies only empty bins): no test statistic can constrain it.
    """
    poi = model.poi_index
    if poi is None:
        return
    x = np.array(init, dtype=np.float64)
    base = model.expected_data(x, include_auxdata=False)
    x[poi] += 1.0
    moved = model.expected_data(x, include_auxdata=False)
    if np.array_equal(base, moved):
        msg = (
            f"the POI {model.poi_name!r} has no effect on the expected yields (it scales only "
            "empty bins, or nothing): no limit or significance can be computed"
        )
        raise InvalidParameters(msg)


def check_background_only_model(model: Model) -> None:
    """Refuse discovery tests (q0) when the background-only model (POI = 0) predicts exactly no
    events in a bin where every sample is scaled by the POI and some sample is non-empty.

    The likelihood of the POI = 0 hypothesis is then 0 for any data there, so q0 and Z0 are
    infinite; a fit cannot express that and would report about 1e154.

    Raises:
        InvalidParameters: naming the channel and bin.
    """
    poi = model.poi_index
    if poi is None:
        return
    ib = model.ibuf
    # (ibuf, poi, slice, nominal yields as bytes) of the last model state that passed
    passed = model.__dict__.get("_background_only_ok")
    if passed is not None and passed[0] is ib and passed[1] == poi:
        if model.fbuf[passed[2]].tobytes() == passed[3]:
            return
    from ._kernels.layout import field_slice

    where = field_slice("nominal", ib)
    nominal = model.fbuf[where]
    fac_par = ib[field_slice("fac_par", ib)]
    fac_ref = ib[field_slice("fac_ref", ib)]
    fac_ptr = ib[field_slice("fac_ptr", ib)]
    bin_ptr = ib[field_slice("bin_ptr", ib)]
    is_poi = np.concatenate([[0], np.cumsum((fac_par == poi) & (fac_ref < 0))])
    cell_scaled = (is_poi[fac_ptr[1:]] - is_poi[fac_ptr[:-1]]) > 0
    other = np.concatenate([[0], np.cumsum(~cell_scaled)])
    nonzero = np.concatenate([[0], np.cumsum(nominal != 0.0)])
    all_scaled = (other[bin_ptr[1:]] - other[bin_ptr[:-1]]) == 0
    has_events = (nonzero[bin_ptr[1:]] - nonzero[bin_ptr[:-1]]) > 0
    bad = np.flatnonzero(all_scaled & has_events)
    if bad.size:
        b = int(bad[0])
        ch = next(c for c in model.channels if b < model.channel_slice(c).stop)
        i = b - model.channel_slice(ch).start
        msg = (
            f"every sample in bin {i} of channel {ch!r} is scaled by the POI "
            f"{model.poi_name!r}: the background-only model (POI = 0) predicts no events there, "
            "so q0 and Z0 are infinite; a discovery test needs a background in every bin"
        )
        raise InvalidParameters(msg)
    model._background_only_ok = (ib, poi, where, nominal.tobytes())  # type: ignore[attr-defined]


def fixed_poi_fit(
    poi_value: float, model: Model, data: Any = None, *, init: Any = None, **kwargs: Any
) -> FitResult:
    """Fit with the parameter of interest fixed at ``poi_value`` (pyhf's ``fixed_poi_fit``).

    Other keyword arguments as :func:`fit`; ``fixed`` (a mask) is combined with the POI.
    """
    if model.poi_index is None:
        raise InvalidParameters("the model has no parameter of interest (measurement has no poi)")
    x0 = model.suggested_init() if init is None else model.check_pars(init, name="init").copy()
    x0[model.poi_index] = check_poi_value(poi_value)
    fixed = kwargs.pop("fixed", None)
    mask = resolve_fixed(model, fixed, x0)
    mask[model.poi_index] = True
    return fit(model, data, init=x0, fixed=mask, **kwargs)
