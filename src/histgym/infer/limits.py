"""Inference layer: CLs upper limits on the POI by root finding (asymptotics).

For the observed limit and each of the five expected limits, ``scipy.optimize.brentq`` solves
``CLs(mu) = 1 - cl`` (pyhf's ``upper_limit`` with ``scan=None`` does the same with TOMS 748).
The POI-independent fits are done once (:class:`AsymptoticCalculator`); each evaluation of the
observed CLs costs two POI-fixed fits and of the expected band one.
"""

from __future__ import annotations

import warnings
from typing import Any

import numpy as np
from scipy.optimize import brentq

from ..checks import check_float, check_int
from ..errors import FitWarning, InvalidParameters
from ..fit import FixedLike, check_poi_has_effect
from ..model import Model
from .asymptotics import AsymptoticCalculator
from .results import LimitResult

__all__ = ["upper_limit"]


def upper_limit(
    model: Model, data: Any = None, cl: float = 0.95, *, test_stat: str = "qtilde",
    init: Any = None, bounds: Any = None, fixed: FixedLike = None, xtol: float = 1e-7,
    max_expand: int = 8,
) -> LimitResult:  # fmt: skip
    """Observed and expected CLs upper limits on the POI.

    Args:
        model: the model.
        data: float64 [n_data]; defaults to the observed data.
        cl: confidence level, defaults to 0.95 (CLs = 0.05).
        test_stat: ``"qtilde"`` (default) or ``"q"``.
        init, bounds, fixed: fit configuration; default to pyhf's suggested ones.
        xtol: absolute tolerance on the limit (POI units), defaults to 1e-7.
        max_expand: when CLs at the POI's upper bound is still above ``1 - cl``, the upper
            bound is doubled up to this many times, defaults to 8.

    Returns:
        A :class:`LimitResult`; a limit that could not be bracketed is reported as the
        largest POI value tried with ``converged=False`` (and a :class:`FitWarning`).

    Raises:
        InvalidParameters: no POI, POI fixed, or a POI without effect on the expected yields
            (CLs = 1 for every value: no limit exists).
        InvalidOption: ``cl`` outside (0, 1), ``xtol`` <= 0, ``max_expand`` < 0.

    Example:
        >>> import histgym
        >>> from histgym import infer
        >>> model = histgym.from_pyhf(histgym.example_workspace())
        >>> r = infer.upper_limit(model)
        >>> r.exp[0] < r.exp[2] < r.exp[4]
        True
    """
    cl = check_float("cl", cl, low=0.0, high=1.0, low_open=True, high_open=True)
    xtol = check_float("xtol", xtol, low=0.0, low_open=True)
    max_expand = check_int("max_expand", max_expand, low=0)
    if test_stat not in ("qtilde", "q"):
        raise InvalidParameters(f"upper limits use test_stat 'qtilde' or 'q', got {test_stat!r}")
    alpha = 1.0 - cl
    calc = AsymptoticCalculator(
        model, data, test_stat=test_stat, init=init, bounds=bounds, fixed=fixed
    )
    s = calc.setup
    check_poi_has_effect(model, s.init)  # else CLs = 1 everywhere: no limit exists
    lo = float(s.lower[s.poi])
    hi = float(s.upper[s.poi])
    ok = True

    obs_cache: dict[float, float] = {}
    exp_cache: dict[float, list[float]] = {}  # every evaluation gives the whole band

    def f_obs(mu: float) -> float:
        if mu not in obs_cache:
            nonlocal ok
            q, qa, conv = calc.test_statistics(mu)
            ok = ok and conv
            obs_cache[mu], _, _, exp_cache[mu] = calc._cls(q, qa)
        return obs_cache[mu] - alpha

    def f_exp(mu: float, k: int) -> float:
        if mu not in exp_cache:
            exp_cache[mu] = calc._expected_band(mu)
        return exp_cache[mu][k] - alpha

    def bracket(
        f: Any, a: float, b: float, cache: dict[float, Any], *args: Any
    ) -> tuple[float, float]:
        """Narrow [a, b] (f(a) > 0 >= f(b)) to the first sign change among cached points."""
        for mu in sorted(cache):
            if a < mu < b:
                if f(mu, *args) > 0.0:
                    a = mu
                else:
                    b = mu
                    break
        return a, b

    def solve(f: Any, cache: dict[float, Any], *args: Any) -> float:
        nonlocal hi, ok
        a = max(lo, 0.0)
        fa = f(a, *args)
        if fa <= 0.0:  # already excluded at the lower bound
            return a
        b = hi
        n = 0
        while f(b, *args) > 0.0:
            if n >= max_expand:
                ok = False
                warnings.warn(
                    f"CLs stays above {alpha} up to POI = {b}; returning that value",
                    FitWarning,
                    stacklevel=3,
                )
                return b
            a, b = b, 2.0 * b if b > 0 else 1.0
            s.upper[s.poi] = b  # widen the POI range for the fits
            hi = b
            n += 1
        a, b = bracket(f, a, b, cache, *args)
        return float(
            brentq(f, a, b, args=args, xtol=xtol, rtol=4 * np.finfo(float).eps, maxiter=200)
        )

    obs = solve(f_obs, obs_cache)
    exp = tuple(solve(f_exp, exp_cache, k) for k in range(5))
    return LimitResult(
        obs=obs,
        exp=exp,  # type: ignore[arg-type]
        cl=cl,
        test_stat=test_stat,
        converged=bool(ok),
        n_evaluations=calc.n_evaluations + len(exp_cache),
    )
