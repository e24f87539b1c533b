"""Inference layer: CLs upper limits on the POI by root finding (asymptotics).

The observed limit solves ``CLs(mu) = 1 - cl`` and the expected limit ``k`` solves
``CLs_exp,k(mu) = 1 - cl`` (pyhf's ``upper_limit`` with ``scan=None`` does the same with
TOMS 748 on each of the six functions separately).  Here the six roots share their CLs
evaluations, and each root is found by a safeguarded interpolation on a nearly linear
function of the POI, so a limit costs about a dozen evaluations instead of ~50:

* The expected CLs is a decreasing function of ``sqrt(q_mu,A)`` only, so expected limit ``k``
  is exactly the root of ``c_k - sqrt(q_mu,A(mu))`` with a constant ``c_k`` in closed form;
  asymptotically ``sqrt(q_mu,A) = mu / sigma`` (linear).
* The observed limit is the root of ``Phi^-1(CLs(mu)) - Phi^-1(1 - cl)``, close to linear in
  ``mu`` as well (computed from ``log CLs``, no underflow).
* The first guesses come from the asymptotic formulas with ``sigma`` of the POI from the
  Hessian of the free fit to the Asimov data (one Hessian) and the observed ``mu_hat``.
* Each step interpolates (inverse quadratic, else secant) through the evaluated points
  nearest the root, kept inside the current bracket (bisection when an interpolation leaves it
  or fails to halve the bracket within three steps).  A root is accepted when the interpolation
  moves less than ``xtol`` from an evaluated point, or its bracket is narrower than ``2 xtol``.

The POI-independent fits are done once (:class:`AsymptoticCalculator`); an evaluation of the
observed CLs (which also gives the expected band) costs two POI-fixed fits, one of the
expected band alone one.  The first evaluation is at POI = 1 (the nominal signal, so a scan
gets its CLs at mu = 1 from the same fits: :func:`hypotest_and_limit`), from pyhf's start;
every later POI-fixed fit starts at the optima already found, extrapolated to its POI value
(warm starts: a few Newton steps instead of ~10), with pyhf's start as a candidate.
"""

from __future__ import annotations

import math
import warnings
from typing import Any, Callable

import numpy as np
from scipy.optimize import brentq
from scipy.special import log_ndtr, ndtri, ndtri_exp

from .._kernels.inference import (
    QTOL,
    S_ASIMOV,
    S_FIX,
    S_FREE,
    S_FREE_A,
)
from .._kernels.likelihood import twice_nll, twice_nll_hess
from .._kernels.newton import CONVERGED
from ..checks import check_float, check_int
from ..errors import FitWarning, InvalidParameters
from ..fit import FixedLike, check_poi_has_effect
from ..model import Model
from .asymptotics import _LOG_NDTR_NS, N_SIGMA, AsymptoticCalculator, _teststat
from .pointfits import FitMemo, prepare, tmu
from .results import HypotestResult, LimitResult

__all__ = ["upper_limit", "hypotest_and_limit"]

#: Interpolation steps per root before the root finding gives up (bisection guarantees
#: convergence long before: the bracket at least halves every three steps).
MAX_STEPS = 200

#: POI value of the first CLs evaluation of the search (the nominal signal)
FIRST_MU = 1.0


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
        largest POI value allowed (the upper bound after ``max_expand`` doublings) with
        ``converged=False`` (and a :class:`FitWarning`).

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
    return _search(model, data, cl, test_stat, init, bounds, fixed, xtol, max_expand)[1]


def hypotest_and_limit(
    model: Model, data: Any = None, cl: float = 0.95, *, test_stat: str = "qtilde",
    init: Any = None, bounds: Any = None, fixed: FixedLike = None, xtol: float = 1e-7,
    max_expand: int = 8, memo: FitMemo | None = None,
) -> tuple[HypotestResult, LimitResult]:  # fmt: skip
    """:func:`upper_limit` and the hypothesis test at POI = 1 (:data:`FIRST_MU`, clipped into
    the POI's bounds) that starts its search, from the same fits.

    The limit is :func:`upper_limit`'s (the same evaluations); the hypothesis test equals
    ``histgym.infer.hypotest(poi_test, model, ...)`` (the same fits from pyhf's start) for its
    ``poi_test`` (check it: 1 unless the POI's bounds exclude 1).  Arguments as
    :func:`upper_limit`; ``memo`` (:class:`histgym.infer.pointfits.FitMemo`) keeps the fits
    for other calculators of the same model (:func:`histgym.infer.pointfits.significance`).

    Example:
        >>> import histgym
        >>> from histgym import infer
        >>> from histgym.infer.limits import hypotest_and_limit
        >>> model = histgym.from_pyhf(histgym.example_workspace())
        >>> h, lim = hypotest_and_limit(model)
        >>> h.cls_obs == infer.hypotest(1.0, model).cls_obs, lim == infer.upper_limit(model)
        (True, True)
    """
    return _search(model, data, cl, test_stat, init, bounds, fixed, xtol, max_expand, memo)


def _search(
    model: Model, data: Any, cl: float, test_stat: str, init: Any, bounds: Any,
    fixed: FixedLike, xtol: float, max_expand: int, memo: FitMemo | None = None,
) -> tuple[HypotestResult, LimitResult]:  # fmt: skip
    cl = check_float("cl", cl, low=0.0, high=1.0, low_open=True, high_open=True)
    xtol = check_float("xtol", xtol, low=0.0, low_open=True)
    max_expand = check_int("max_expand", max_expand, low=0)
    if test_stat not in ("qtilde", "q"):
        raise InvalidParameters(f"upper limits use test_stat 'qtilde' or 'q', got {test_stat!r}")
    calc = AsymptoticCalculator(
        model, data, test_stat=test_stat, init=init, bounds=bounds, fixed=fixed
    )
    check_poi_has_effect(model, calc.setup.init)  # else CLs = 1 everywhere: no limit exists
    lim = _Limits(calc, 1.0 - cl, xtol, max_expand, memo)
    res = lim.run(cl)
    return lim.first_hypotest(), res


def _band_roots(alpha: float) -> list[float]:
    """``c_k`` [5]: expected CLs ``k`` equals ``alpha`` where ``sqrt(q_mu,A) = c_k``
    (the band of :func:`histgym.infer.asymptotics._band` inverted in closed form)."""
    la = math.log(alpha)
    return [float(-ndtri_exp(la + _LOG_NDTR_NS[k]) - n) for k, n in enumerate(N_SIGMA)]


#: warm starts extrapolate linearly from two evaluated POI values up to this many times their
#: distance beyond the nearest one
MAX_EXTRAPOLATION = 2.0


def _warm(fits: dict[float, np.ndarray], mu: float) -> np.ndarray | None:
    """Start [n_params] of a POI-fixed fit at ``mu`` from the optima ``fits`` at other POI
    values: linear extrapolation (the conditional optimum moves smoothly with the POI) from the
    nearest one and the nearest of those at least half as far again from it (so at most
    :data:`MAX_EXTRAPOLATION` times their distance), else the nearest one alone; None when
    ``fits`` is empty."""
    if not fits:
        return None
    mu1 = min(fits, key=lambda u: abs(u - mu))
    x1 = fits[mu1]
    d = abs(mu - mu1)
    far = [u for u in fits if abs(u - mu1) >= d / MAX_EXTRAPOLATION and u != mu1]
    if d == 0.0 or not far:
        return x1.copy()
    mu2 = min(far, key=lambda u: abs(u - mu))
    return x1 + (mu - mu1) / (mu2 - mu1) * (fits[mu2] - x1)


class _Limits:
    """The root finding of :func:`upper_limit` over shared CLs evaluations."""

    def __init__(
        self, calc: AsymptoticCalculator, alpha: float, xtol: float, max_expand: int,
        memo: FitMemo | None = None,
    ) -> None:  # fmt: skip
        self.calc = calc
        self.memo = memo
        self.alpha = alpha
        self.z_alpha = float(ndtri(alpha))
        self.c = _band_roots(alpha)
        self.xtol = xtol
        s = calc.setup
        self.lo = max(float(s.lower[s.poi]), 0.0)
        self.hi = float(s.upper[s.poi])
        mu_max = self.hi
        for _ in range(max_expand):
            mu_max = 2.0 * mu_max if mu_max > 0 else 1.0
        self.mu_max = mu_max
        self.ok = True
        # mu -> (sqrt q (NaN: Asimov only), sqrt q_A)
        self.points: dict[float, tuple[float, float]] = {}
        # mu -> POI-fixed optimum [n_params] on the data / on the Asimov data (warm starts)
        self.fits_data: dict[float, np.ndarray] = {}
        self.fits_asimov: dict[float, np.ndarray] = {}
        self.sigma = 0.0
        # (mu, q, q_Asimov, converged) of the first observed evaluation
        self.first: tuple[float, float, float, bool] | None = None

    # ------------------------------------------------------------------ evaluations
    def evaluate(self, mu: float, observed: bool) -> None:
        """CLs at ``mu`` (with the observed test statistic when ``observed``)."""
        have = self.points.get(mu)
        if have is not None and (not observed or not math.isnan(have[0])):
            return
        s = self.calc.setup
        while mu > self.hi:  # widen the POI range for the fits, as pyhf cannot
            self.hi = 2.0 * self.hi if self.hi > 0 else 1.0
            s.upper[s.poi] = self.hi
        q, qa, conv = self._fits(float(mu), observed)
        if observed:
            self.calc.n_evaluations += 1
            self.first = self.first or (float(mu), q, qa, conv)
        self.ok = self.ok and conv
        self.points[mu] = (math.sqrt(q) if observed else math.nan, math.sqrt(qa))

    def _fits(self, mu: float, observed: bool) -> tuple[float, float, bool]:
        """(q, q_Asimov, converged) at ``mu``: the fits of ``AsymptoticCalculator``'s
        evaluation (``asymptotic_eval``: the guarded ``tmu_like_fits`` on the data, then on
        the Asimov data), each POI-fixed fit warm-started (:meth:`_warm`).

        The first evaluation starts at pyhf's init, as the calculator.  Later ones start at the
        POI-fixed optima of the evaluated POI values extrapolated to ``mu``, with pyhf's init
        (and the free fit, and for the Asimov data its generating point) as candidate starts:
        the fit is never worse than one started there (``minimize_best``).
        """
        calc = self.calc
        s = calc.setup
        m = calc.model
        prepare(calc, self.memo)  # the POI-independent fits
        xs, fs, sts = calc._xs, calc._fs, calc._sts
        ok = bool(sts[S_ASIMOV] == CONVERGED)
        q = 0.0
        if observed:
            warm = _warm(self.fits_data, mu)
            t = tmu(
                calc, mu, s.init if warm is None else warm, calc.data, s.init, warm is not None,
                S_FREE, S_FIX, self.memo if warm is None else None,
            )
            q = 0.0 if xs[S_FREE, s.poi] > mu else float(t)
            ok = ok and bool(sts[S_FIX] == CONVERGED and sts[S_FREE] == CONVERGED)
            self.fits_data[mu] = xs[S_FIX].copy()
        warm = _warm(self.fits_asimov, mu)
        ta = self._asimov_fits(mu, s.init if warm is None else warm)
        if warm is not None:
            # pyhf's start is a candidate as well: when it is below the warm-started optimum,
            # the evaluation is redone from it (as the first one)
            x0 = np.minimum(np.maximum(s.init, s.lower), s.upper)
            x0[s.fixed] = s.init[s.fixed]
            x0[s.poi] = mu
            v = float(twice_nll(x0, calc._asimov, m.fbuf, m.ibuf))
            if v < fs[S_FIX] - QTOL * (1.0 + abs(fs[S_FIX])):
                ta = self._asimov_fits(mu, s.init)
        qa = 0.0 if xs[S_FREE_A, s.poi] > mu else float(ta)
        ok = ok and bool(sts[S_FIX] == CONVERGED and sts[S_FREE_A] == CONVERGED)
        self.fits_asimov[mu] = xs[S_FIX].copy()
        return q, qa, ok

    def _asimov_fits(self, mu: float, start: np.ndarray) -> float:
        calc = self.calc
        return tmu(calc, mu, start, calc._asimov, calc._xs[S_ASIMOV], True, S_FREE_A, S_FIX)

    def f_obs(self, mu: float) -> float:
        """``Phi^-1(CLs(mu)) - Phi^-1(alpha)`` (decreasing; +inf where CLs = 1; NaN where only
        the Asimov statistic is known)."""
        sq, sqa = self.points[mu]
        if math.isnan(sq):
            return math.nan
        t = _teststat(sq, sqa, self.calc.test_stat)
        log_cls = min(0.0, float(log_ndtr(-(t + sqa)) - log_ndtr(-t)))
        if log_cls >= 0.0:
            return math.inf
        return float(ndtri_exp(log_cls)) - self.z_alpha

    def f_exp(self, k: int) -> Callable[[float], float]:
        """``c_k - sqrt(q_mu,A(mu))`` (decreasing)."""
        ck = self.c[k]
        return lambda mu: ck - self.points[mu][1]

    # ------------------------------------------------------------------ first guesses
    def asimov_sigma(self) -> float:
        """Asymptotic standard deviation of the POI from the Hessian of the free fit to the
        Asimov data (0 when it is not positive definite)."""
        calc = self.calc
        prepare(calc, self.memo)
        s = calc.setup
        m = calc.model
        n = m.n_params
        h = np.zeros((n, n))
        twice_nll_hess(calc._xs[S_FREE_A], calc._asimov, m.fbuf, m.ibuf, np.empty(n), h)
        free = np.flatnonzero(~s.fixed)
        try:
            cov = np.linalg.inv(0.5 * h[np.ix_(free, free)])
        except np.linalg.LinAlgError:
            return 0.0
        v = float(cov[int(np.searchsorted(free, s.poi)), int(np.searchsorted(free, s.poi))])
        return math.sqrt(v) if math.isfinite(v) and v > 0.0 else 0.0

    def obs_guess(self) -> float:
        """Observed limit of the asymptotic formulas (``sqrt q_A = mu / sigma``,
        ``sqrt q = (mu - mu_hat) / sigma``)."""
        sig = self.sigma
        mu_hat = float(self.calc._xs[S_FREE, self.calc.setup.poi])
        test_stat = self.calc.test_stat

        def f(mu: float) -> float:
            sqa = mu / sig
            sq = max(mu - mu_hat, 0.0) / sig
            t = _teststat(sq, sqa, test_stat)
            return float(log_ndtr(-(t + sqa)) - log_ndtr(-t)) - math.log(self.alpha)

        a = max(self.lo, 1e-12 * sig)
        b = max(mu_hat, 0.0) + (self.c[0] + 5.0) * sig
        try:
            if f(a) > 0.0 > f(b):
                return float(brentq(f, a, b, xtol=1e-6 * sig))
        except (ValueError, ZeroDivisionError):
            pass
        return self.c[2] * sig

    # ------------------------------------------------------------------ root finding
    def solve(self, f: Callable[[float], float], guess: float, observed: bool) -> float:
        """Root of the decreasing ``f`` (over the evaluated points) above ``self.lo``."""
        xtol = self.xtol
        if self.lo > 0.0:
            if self.lo not in self.points or (observed and math.isnan(self.points[self.lo][0])):
                self.evaluate(self.lo, observed)
            if f(self.lo) <= 0.0:  # already excluded at the lower bound
                return self.lo
        widths: list[float] = []
        for _ in range(MAX_STEPS):
            pts = sorted(
                (mu, v) for mu in self.points if not math.isnan(v := f(mu)) and mu >= self.lo
            )
            # bracket: a = last point with f > 0 before b = first point with f <= 0
            b = next((i for i, (_, v) in enumerate(pts) if v <= 0.0), None)
            if b is None:
                a_mu = pts[-1][0] if pts else self.lo
                b_mu = math.inf
            else:
                a_mu = pts[b - 1][0] if b > 0 else self.lo
                b_mu = pts[b][0]
                if pts[b][1] == 0.0:
                    return b_mu
            if b_mu - a_mu <= 2.0 * xtol:
                return self._interpolate_pair(f, a_mu, b_mu)
            x, near = self._estimate(f, pts, guess, a_mu, b_mu)
            # one point only: the asymptotic guess, when on its side of the root, beats the
            # slope -1/sigma through that point
            one = sum(1 for _, v in pts if math.isfinite(v)) == 1
            from_guess = one and (a_mu < guess < b_mu)
            if from_guess:
                x, near = guess, math.inf
            if b_mu < math.inf:
                widths.append(b_mu - a_mu)
                stalled = len(widths) > 3 and widths[-1] > 0.5 * widths[-4]
                inside = a_mu < x < b_mu
                if inside and near < xtol:
                    return x
                if not inside or stalled:
                    x = 0.5 * (a_mu + b_mu)
            else:
                if a_mu >= self.mu_max:
                    self.ok = False
                    warnings.warn(
                        f"CLs stays above {self.alpha} up to POI = {self.mu_max}; returning "
                        "that value",
                        FitWarning,
                        stacklevel=5,
                    )
                    return self.mu_max
                if near < xtol and a_mu < x <= self.mu_max:
                    return x
                if not x > a_mu:
                    x = 2.0 * a_mu if a_mu > 0.0 else (self.hi if self.hi > 0 else 1.0)
                if not from_guess:
                    x = min(x, 4.0 * a_mu + self.sigma if a_mu > 0.0 else x)
                x = min(x, self.mu_max)
            self.evaluate(x, observed)
        self.ok = False
        return x

    def _estimate(
        self, f: Callable[[float], float], pts: list[tuple[float, float]], guess: float,
        a_mu: float, b_mu: float,
    ) -> tuple[float, float]:  # fmt: skip
        """(next estimate of the root, distance from it to the nearest point used).

        Inverse quadratic interpolation through the three finite points with the smallest
        |f| (at least ``xtol`` apart), else the secant through two, else one point and the asymptotic slope
        ``-1 / sigma``, else ``guess``.
        """
        use: list[tuple[float, float]] = []
        for _, mu, v in sorted((abs(v), mu, v) for mu, v in pts if math.isfinite(v)):
            # points closer than xtol to one already used only add round-off
            if all(abs(mu - u) > self.xtol for u, _ in use):
                use.append((mu, v))
                if len(use) == 3:
                    break
        x = math.nan
        if len(use) == 3:
            (x0, f0), (x1, f1), (x2, f2) = use
            if f0 != f1 and f0 != f2 and f1 != f2:
                x = (
                    x0 * f1 * f2 / ((f0 - f1) * (f0 - f2))
                    + x1 * f0 * f2 / ((f1 - f0) * (f1 - f2))
                    + x2 * f0 * f1 / ((f2 - f0) * (f2 - f1))
                )
                if not (math.isfinite(x) and min(a_mu, x0) <= x <= max(b_mu, x0)):
                    x = math.nan
        if math.isnan(x) and len(use) >= 2:
            (x0, f0), (x1, f1) = use[:2]
            if f0 != f1:
                x = x0 - f0 * (x1 - x0) / (f1 - f0)
        if math.isnan(x) and use and self.sigma > 0.0:
            x0, f0 = use[0]
            x = x0 + f0 * self.sigma
        if not math.isfinite(x):
            return guess, math.inf
        near = min((abs(x - mu) for mu, _ in use), default=math.inf)
        return x, near

    def _interpolate_pair(self, f: Callable[[float], float], a: float, b: float) -> float:
        """The root in a bracket narrower than 2 xtol: linear interpolation, else midpoint."""
        fa = f(a) if a in self.points else math.inf
        fb = f(b)
        if math.isfinite(fa) and math.isfinite(fb) and fa != fb:
            return a + fa * (b - a) / (fa - fb)
        return 0.5 * (a + b)

    def run(self, cl: float) -> LimitResult:
        self.sigma = self.asimov_sigma()
        sig = self.sigma if self.sigma > 0.0 else max(self.hi - self.lo, 1.0) / 10.0
        self.sigma = sig
        # the first evaluation, at the nominal signal (POI = 1, or the nearest allowed value):
        # a first bracket and warm start of the search, and the CLs a scan reports
        self.evaluate(min(max(FIRST_MU, self.lo), self.hi), observed=True)
        obs = self.solve(self.f_obs, self.obs_guess(), observed=True)
        exp = [0.0] * 5
        for k in (2, 1, 3, 0, 4):  # from the median outwards: each guess from its neighbours
            exp[k] = self.solve(self.f_exp(k), self.c[k] * sig, observed=False)
        return LimitResult(
            obs=obs,
            exp=tuple(exp),  # type: ignore[arg-type]
            cl=cl,
            test_stat=self.calc.test_stat,
            converged=bool(self.ok),
            n_evaluations=len(self.points),
        )

    def first_hypotest(self) -> HypotestResult:
        """The hypothesis test of the first evaluation (as ``AsymptoticCalculator.hypotest``)."""
        assert self.first is not None
        return self.calc._result(*self.first)
