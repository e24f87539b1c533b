"""Inference layer: Asimov data and asymptotic CLs, as ``pyhf.infer.calculators.AsymptoticCalculator``.

Follows pyhf 0.7.6 (``calc_base_dist="normal"``): the test statistic is mapped to
:math:`\\hat\\mu/\\sigma` space with :math:`\\sqrt{q_{\\mu,A}}` from the Asimov data set built at
POI = 0 (POI = 1 for ``q0``), arXiv:1007.1727 Eqs. (57)-(66) and (89).

Unlike pyhf, no result is ever NaN: CLs is computed as a ratio of log tail probabilities, and
a test without sensitivity (``q_{mu,A} = 0``) gives CLs = 1.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
from scipy.special import log_ndtr, ndtr

from .._kernels.inference import (
    M_ASIMOV,
    M_BOTH,
    M_PREPARE,
    O_OK,
    O_Q,
    O_QA,
    S_ASIMOV,
    asymptotic_eval,
)
from ..checks import check_poi_value
from ..fit import FixedLike, check_background_only_model
from ..model import FloatArray, Model
from .results import HypotestResult, SignificanceResult
from .teststats import MAX_ITER, TOL, FitSetup, setup

__all__ = ["asimov_data", "hypotest", "significance", "AsymptoticCalculator", "TEST_STATS"]

TEST_STATS = ("qtilde", "q", "q0")
N_SIGMA = (2.0, 1.0, 0.0, -1.0, -2.0)  # pyhf's order: -2 sigma ... +2 sigma in CLs


def asimov_data(
    model: Model, poi_value: float, data: Any = None, *, init: Any = None,
    bounds: Any = None, fixed: FixedLike = None,
) -> FloatArray:  # fmt: skip
    """Asimov data as pyhf's ``generate_asimov_data``.

    Nuisance parameters are fitted to ``data`` with the POI fixed at ``poi_value``; the
    result is the expected data (main bins and auxdata) at that fit.  As in
    :class:`AsymptoticCalculator`, the fit starts at the lower of pyhf's start (``init``) and
    the free fit (with the POI at ``poi_value``) and is guarded against local minima
    (:func:`histgym._kernels.inference.tmu_like_fits`), so it is never worse than pyhf's.

    Args:
        model: the model.
        poi_value: POI value of the Asimov data set.
        data: float64 [n_data]; defaults to the observed data.
        init, bounds, fixed: fit configuration; default to pyhf's suggested ones.

    Returns:
        float64 [n_data] main bins followed by auxdata expectations.

    Example:
        >>> import histgym
        >>> from histgym import infer
        >>> model = histgym.from_pyhf(histgym.example_workspace())
        >>> infer.asimov_data(model, 0.0).shape
        (9,)
    """
    poi_value = check_poi_value(poi_value)
    calc = AsymptoticCalculator(model, data, init=init, bounds=bounds, fixed=fixed)
    calc._mu_asimov = float(poi_value)
    return calc.asimov.copy()


def _clip(q: float, poi_hat: float, mu: float, test_stat: str) -> float:
    if test_stat == "q0":
        return 0.0 if poi_hat < 0.0 else q
    return 0.0 if poi_hat > mu else q


_LOG_NDTR_NS = [float(v) for v in log_ndtr(-np.array(N_SIGMA))]  # log CLb of the band


def _cls_and_band(
    t: float, sqrtqa: float, q0: bool
) -> tuple[float, float, float, list[float]]:
    """(CLsb, CLb, CLs) for a test statistic ``t`` in mu_hat/sigma space, and the same at
    every ``n`` of ``N_SIGMA`` (the expected band: CLs, or CLsb for ``q0``), with one
    vectorised call of ``ndtr`` and of ``log_ndtr``.  CLs is a ratio of log tail
    probabilities (never NaN).

    Returns:
        (CLsb, CLb, CLs, band [5]).
    """
    z = np.array([-(t + sqrtqa), -t] + [-(n + sqrtqa) for n in N_SIGMA])
    nd = ndtr(z).tolist()
    ld = log_ndtr(z).tolist()
    cls = math.exp(min(0.0, ld[0] - ld[1]))
    if q0:
        band = nd[2:]
    else:
        band = [math.exp(min(0.0, ld[i + 2] - _LOG_NDTR_NS[i])) for i in range(5)]
    return nd[0], nd[1], cls, band


def _band(sqrtqa: float, q0: bool) -> list[float]:
    """The expected band [5] of :func:`_cls_and_band`."""
    z = np.array([-(n + sqrtqa) for n in N_SIGMA])
    if q0:
        return ndtr(z).tolist()  # type: ignore[no-any-return]
    ld = log_ndtr(z).tolist()
    return [math.exp(min(0.0, ld[i] - _LOG_NDTR_NS[i])) for i in range(5)]


def _teststat(sqrtq: float, sqrtqa: float, test_stat: str) -> float:
    if test_stat in ("q", "q0") or sqrtq <= sqrtqa or sqrtqa == 0.0:
        return sqrtq - sqrtqa
    return (sqrtq * sqrtq - sqrtqa * sqrtqa) / (2.0 * sqrtqa)


class AsymptoticCalculator:
    """Asymptotic CLs for one model and data set; caches the POI-independent fits.

    The free fits to the data and to the Asimov data, and the Asimov data itself, do not
    depend on the tested POI: they are computed once, so a scan or a root finding costs two
    POI-fixed fits per tested value.  The fits of one evaluation run in a single compiled
    call (:func:`histgym._kernels.inference.asymptotic_eval`).

    Args:
        model: the model.
        data: float64 [n_data]; defaults to the observed data.
        test_stat: ``"qtilde"`` (default), ``"q"`` or ``"q0"``.
        init, bounds, fixed: fit configuration; default to pyhf's suggested ones.
    """

    def __init__(
        self, model: Model, data: Any = None, *, test_stat: str = "qtilde", init: Any = None,
        bounds: Any = None, fixed: FixedLike = None,
    ) -> None:  # fmt: skip
        if test_stat not in TEST_STATS:
            from ..errors import UnknownName, did_you_mean

            msg = f"unknown test_stat {test_stat!r}; choose one of {list(TEST_STATS)}."
            raise UnknownName(msg + did_you_mean(test_stat, TEST_STATS))
        self.model = model
        self.test_stat = test_stat
        self.setup: FitSetup = setup(model, init, bounds, fixed)
        if test_stat == "q0":
            check_background_only_model(model)
        self.data = model.check_data(data)
        self.n_evaluations = 0
        n = model.n_params
        # fit state of the kernel: rows S_FREE, S_FREE_A, S_ASIMOV, S_FIX (status -1: not
        # prepared)
        self._xs = np.empty((4, n))
        self._fs = np.empty(4)
        self._sts = np.full(4, -1, dtype=np.int64)
        self._its = np.zeros(4, dtype=np.int64)
        self._edms = np.zeros(4)
        self._mu_asimov = 1.0 if test_stat == "q0" else 0.0
        self._asimov = np.empty(model.n_data)
        self._out = np.empty(3)

    def _eval(self, mu: float, mode: int) -> tuple[float, float, bool]:
        """Run the kernel (preparing on first use); (q, q_Asimov, converged)."""
        s = self.setup
        m = self.model
        is_q0 = self.test_stat == "q0"
        out = self._out
        asymptotic_eval(
            mu, self._mu_asimov, is_q0, mode, s.init, s.fixed, s.lower, s.upper, s.poi,
            self.data, m.fbuf, m.ibuf, MAX_ITER, TOL, self._asimov, self._xs, self._fs,
            self._sts, self._its, self._edms, out,
        )  # fmt: skip
        return float(out[O_Q]), float(out[O_QA]), bool(out[O_OK] != 0.0)

    @property
    def asimov(self) -> FloatArray:
        """The Asimov data set (float64 [n_data]) of pyhf's calculator."""
        if self._sts[S_ASIMOV] < 0:
            self._eval(0.0, M_PREPARE)
        return self._asimov

    def test_statistics(self, mu: float) -> tuple[float, float, bool]:
        """(q_obs, q_Asimov, converged) at POI ``mu`` (``mu`` is ignored for q0, as pyhf)."""
        mu = check_poi_value(mu, "mu")
        mu = 0.0 if self.test_stat == "q0" else mu
        r = self._eval(mu, M_BOTH)
        self.n_evaluations += 1
        return r

    def _cls(self, q: float, qa: float) -> tuple[float, float, float, list[float]]:
        """(observed CLs (p0 for q0), CLsb, CLb, expected band [5]) from q and q_Asimov."""
        sqrtq, sqrtqa = math.sqrt(q), math.sqrt(qa)
        t = _teststat(sqrtq, sqrtqa, self.test_stat)
        q0 = self.test_stat == "q0"
        clsb, clb, cls, band = _cls_and_band(t, sqrtqa, q0)
        return clsb if q0 else cls, clsb, clb, band

    def hypotest(self, mu: float) -> HypotestResult:
        """Asymptotic hypothesis test at POI ``mu`` (see :func:`hypotest`)."""
        q, qa, ok = self.test_statistics(mu)
        return self._result(mu, q, qa, ok)

    def _result(self, mu: float, q: float, qa: float, ok: bool) -> HypotestResult:
        """The hypothesis test at POI ``mu`` from its test statistics (observed, Asimov)."""
        cls_obs, clsb, clb, band = self._cls(q, qa)
        return HypotestResult(
            poi_test=0.0 if self.test_stat == "q0" else float(mu),
            test_stat=self.test_stat,
            calctype="asymptotics",
            cls_obs=cls_obs,
            clsb=clsb,
            clb=clb,
            cls_exp=tuple(band),  # type: ignore[arg-type]
            teststat=float(q),
            teststat_asimov=float(qa),
            converged=ok,
        )

    def _expected_band(self, mu: float) -> list[float]:
        """The expected band [5] of :meth:`expected_cls` as a list."""
        _, qa, _ = self._eval(float(mu), M_ASIMOV)
        return _band(math.sqrt(qa), False)

    def expected_cls(self, mu: float) -> FloatArray:
        """Expected CLs band [5] at ``mu`` (one POI-fixed fit on the Asimov data)."""
        return np.array(self._expected_band(check_poi_value(mu, "mu")))


def hypotest(
    mu: float, model: Model, data: Any = None, test_stat: str = "qtilde", *,
    calctype: str = "asymptotics", ntoys: int = 2000, seed: Any = None,
    init: Any = None, bounds: Any = None, fixed: FixedLike = None,
) -> HypotestResult:  # fmt: skip
    """Hypothesis test at POI ``mu``, as ``pyhf.infer.hypotest(..., return_expected_set=True,
    return_tail_probs=True)``.

    Args:
        mu: tested POI value (ignored for ``q0``, as pyhf).
        model: the model.
        data: float64 [n_data]; defaults to the observed data.
        test_stat: ``"qtilde"`` (default), ``"q"`` or ``"q0"``.
        calctype: ``"asymptotics"`` (default) or ``"toybased"`` (pyhf's ToyCalculator; see
            :func:`histgym.infer.toys.toy_hypotest`).
        ntoys: toys per hypothesis for ``"toybased"``, defaults to 2000 (pyhf's default).
        seed: seed or ``numpy.random.Generator`` for the toys, defaults to None (fresh entropy).
        init, bounds, fixed: fit configuration; default to pyhf's suggested ones.

    Returns:
        A :class:`HypotestResult` (``cls_obs``, ``clsb``, ``clb``, ``cls_exp`` [5]).

    Raises:
        InvalidParameters: the model has no POI or the POI is fixed.
        UnknownName: unknown ``test_stat`` or ``calctype``.

    Example:
        >>> import histgym
        >>> from histgym import infer
        >>> model = histgym.from_pyhf(histgym.example_workspace())
        >>> r = infer.hypotest(1.0, model)
        >>> round(r.cls_obs, 6), len(r.cls_exp)
        (0.51915, 5)
    """
    mu = check_poi_value(mu, "mu")
    if calctype == "toybased":
        from .toys import toy_hypotest

        return toy_hypotest(
            mu,
            model,
            data,
            test_stat,
            ntoys=ntoys,
            seed=seed,
            init=init,
            bounds=bounds,
            fixed=fixed,
        )
    if calctype != "asymptotics":
        from ..errors import UnknownName, did_you_mean

        choices = ("asymptotics", "toybased")
        raise UnknownName(
            f"unknown calctype {calctype!r}; choose one of {list(choices)}."
            + did_you_mean(calctype, choices)
        )
    calc = AsymptoticCalculator(
        model, data, test_stat=test_stat, init=init, bounds=bounds, fixed=fixed
    )
    return calc.hypotest(mu)


def significance(
    model: Model, data: Any = None, *, init: Any = None, bounds: Any = None,
    fixed: FixedLike = None,
) -> SignificanceResult:  # fmt: skip
    """Discovery significance (asymptotics): Z0 = sqrt(q0), observed and expected.

    The expected significance uses the Asimov data set at POI = 1 built from a POI-fixed fit
    to ``data`` (pyhf's ``hypotest(..., test_stat="q0")`` median expected p-value).

    Args:
        model: the model.
        data: float64 [n_data]; defaults to the observed data.
        init, bounds, fixed: fit configuration; default to pyhf's suggested ones.

    Returns:
        A :class:`SignificanceResult`.

    Example:
        >>> import histgym
        >>> from histgym import infer
        >>> model = histgym.from_pyhf(histgym.example_workspace())
        >>> r = infer.significance(model)
        >>> round(r.z_obs, 4) == round(r.z_exp, 4)
        True
    """
    calc = AsymptoticCalculator(model, data, test_stat="q0", init=init, bounds=bounds, fixed=fixed)
    r = calc.hypotest(0.0)
    z_obs = math.sqrt(r.teststat)
    z_exp = math.sqrt(r.teststat_asimov)
    return SignificanceResult(
        z_obs=z_obs,
        p_obs=r.cls_obs,
        z_exp=z_exp,
        p_exp=r.cls_exp[2],
        p_exp_band=r.cls_exp,
        q0=r.teststat,
        q0_asimov=r.teststat_asimov,
        converged=r.converged,
    )
