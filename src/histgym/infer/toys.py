"""Inference layer: toy-based hypothesis tests, as ``pyhf.infer.calculators.ToyCalculator``.

Pseudo-data are drawn from the full pdf, main bins *and* auxiliary data: main bins
``~ Poisson(expected yields)``, Gaussian auxdata ``~ Normal(parameter, sigma)`` and
Poisson auxdata ``~ Poisson(gamma * tau)``, at the POI-fixed fit to the data for each
hypothesis (LHC/ATLAS-CMS 2011 recipe, as pyhf).  Every toy's two fits run batched in the
compiled kernels (``newton_fit_batch``, parallel over toys).
"""

from __future__ import annotations

from typing import Any

import numpy as np
import numpy.typing as npt

from .._kernels.layout import field_slice
from ..checks import check_int, check_poi_value, check_seed
from ..errors import UnknownName, did_you_mean
from ..fit import FixedLike
from ..model import FloatArray, Model
from .asymptotics import TEST_STATS
from .results import HypotestResult
from .teststats import FitSetup, batch_tmu_like, setup, tmu_like

__all__ = ["sample_data", "toy_teststats", "toy_hypotest", "NORMAL_PERCENTILES"]

#: pyhf's percentiles of the expected band, Phi(-2..2) * 100.
NORMAL_PERCENTILES = np.array([2.27501319, 15.86552539, 50.0, 84.13447461, 97.72498681])


def sample_data(model: Model, pars: Any, n: int, rng: np.random.Generator) -> FloatArray:
    """Draw ``n`` data sets from the pdf at ``pars`` (pyhf's ``model.make_pdf(pars).sample``).

    Args:
        model: the model.
        pars: float64 [n_params].
        n: number of data sets.
        rng: random generator.

    Returns:
        float64 [n, n_data]: main bins then auxdata.
    """
    p = model.check_pars(pars)
    main = model.expected_data(p, include_auxdata=False)
    out = np.empty((n, model.n_data))
    nb = model.n_bins
    out[:, :nb] = rng.poisson(np.clip(main, 0.0, None), size=(n, nb))
    ib, fb = model.ibuf, model.fbuf
    gp, ga = ib[field_slice("gauss_par", ib)], ib[field_slice("gauss_aux", ib)]
    sig = fb[field_slice("gauss_sigma", ib)]
    pp, pa = ib[field_slice("pois_par", ib)], ib[field_slice("pois_aux", ib)]
    tau = fb[field_slice("pois_factor", ib)]
    if gp.size:
        out[:, nb + ga] = rng.normal(p[gp], sig, size=(n, gp.size))
    if pp.size:
        out[:, nb + pa] = rng.poisson(np.clip(p[pp] * tau, 0.0, None), size=(n, pp.size))
    return out


def _clip_q(t: FloatArray, poi_hat: FloatArray, mu: float, test_stat: str) -> FloatArray:
    if test_stat == "q0":
        return np.where(poi_hat < 0.0, 0.0, t)
    return np.where(poi_hat > mu, 0.0, t)


def toy_teststats(
    s: FitSetup, mu: float, toys: FloatArray, test_stat: str, init: FloatArray | None = None
) -> tuple[FloatArray, npt.NDArray[np.bool_]]:
    """Test statistic [N] (and converged [N]) for each toy row of ``toys`` [N, n_data].

    ``init`` [N, n_params] are the fits' starting points (default ``s.init``).
    """
    n = toys.shape[0]
    t, poi_hat, _, ok = batch_tmu_like(
        s, np.full(n, float(mu)), np.ascontiguousarray(toys), init=init
    )
    return _clip_q(t, poi_hat, mu, test_stat), ok


def _tail(samples_sorted: FloatArray, values: FloatArray) -> FloatArray:
    """Fraction of samples >= each value (pyhf's EmpiricalDistribution.pvalue)."""
    n = samples_sorted.size
    return (n - np.searchsorted(samples_sorted, values, side="left")) / n


def _cls(clsb: FloatArray, clb: FloatArray) -> FloatArray:
    with np.errstate(divide="ignore", invalid="ignore"):
        r = clsb / clb
    return np.where(clb > 0.0, r, np.where(clsb > 0.0, 1.0, 0.0))


def toy_hypotest(
    mu: float, model: Model, data: Any = None, test_stat: str = "qtilde", *, ntoys: int = 2000,
    seed: Any = None, init: Any = None, bounds: Any = None, fixed: FixedLike = None,
) -> HypotestResult:  # fmt: skip
    """Toy-based hypothesis test, pyhf's ``hypotest(..., calctype="toybased")``.

    Args:
        mu: tested POI value (0 for q0, as pyhf).
        model: the model.
        data: float64 [n_data]; defaults to the observed data.
        test_stat: ``"qtilde"`` (default), ``"q"`` or ``"q0"``.
        ntoys: toys per hypothesis, defaults to 2000.
        seed: int or ``numpy.random.Generator``, defaults to None.
        init, bounds, fixed: fit configuration; default to pyhf's suggested ones.

    Returns:
        A :class:`HypotestResult` with ``calctype="toybased"``.  Where pyhf would divide by
        CL_b = 0 (observed beyond every background toy) CLs is 0 if CL_{s+b} = 0, else 1.

    Example:
        >>> import histgym
        >>> from histgym import infer
        >>> model = histgym.from_pyhf(histgym.example_workspace())
        >>> r = infer.hypotest(1.0, model, calctype="toybased", ntoys=200, seed=0)
        >>> 0.0 <= r.cls_obs <= 1.5
        True
    """
    if test_stat not in TEST_STATS:
        msg = f"unknown test_stat {test_stat!r}; choose one of {list(TEST_STATS)}."
        raise UnknownName(msg + did_you_mean(test_stat, TEST_STATS))
    mu = check_poi_value(mu, "mu")
    ntoys = check_int("ntoys", ntoys, low=1)
    seed = check_seed("seed", seed, generator=True)
    rng = seed if isinstance(seed, np.random.Generator) else np.random.default_rng(seed)
    s = setup(model, init, bounds, fixed)
    d = model.check_data(data)
    if test_stat == "q0":
        mu = 0.0
    mu = float(mu)
    # observed test statistic
    t_obs, fx, fr = tmu_like(s, mu, d)
    q_obs = float(_clip_q(np.array([t_obs]), np.array([fr.x[s.poi]]), mu, test_stat)[0])
    ok = fx.converged and fr.converged
    # hypotheses
    # the toys' generating fits, guarded against local minima as the test statistic's
    sig_fit = fx
    _, bkg_fit, _ = tmu_like(s, 1.0 if test_stat == "q0" else 0.0, d, fr)
    n = int(ntoys)
    toys = np.concatenate(
        [sample_data(model, sig_fit.x, n, rng), sample_data(model, bkg_fit.x, n, rng)]
    )
    # each toy's fits start at the parameters that generated it (pyhf starts at init_pars; the
    # minimum is the same, the generating point is just closer to it)
    start = np.concatenate(
        [np.repeat(sig_fit.x[None, :], n, 0), np.repeat(bkg_fit.x[None, :], n, 0)]
    )
    q_toys, ok_toys = toy_teststats(s, mu, toys, test_stat, init=start)
    sig = np.sort(q_toys[:n])
    bkg = np.sort(q_toys[n:])
    clsb = float(_tail(sig, np.array([q_obs]))[0])
    clb = float(_tail(bkg, np.array([q_obs]))[0])
    cls = float(_cls(np.array([clsb]), np.array([clb]))[0])
    # expected band: p-values of every background toy, then pyhf's percentiles
    e_clsb = _tail(sig, bkg)
    e_clb = _tail(bkg, bkg)
    e_cls = _cls(e_clsb, e_clb)
    vals = e_clsb if test_stat == "q0" else e_cls
    band = np.percentile(vals, NORMAL_PERCENTILES, method="linear")
    return HypotestResult(
        poi_test=mu,
        test_stat=test_stat,
        calctype="toybased",
        cls_obs=clsb if test_stat == "q0" else cls,
        clsb=clsb,
        clb=clb,
        cls_exp=tuple(float(b) for b in band),  # type: ignore[arg-type]
        teststat=q_obs,
        teststat_asimov=0.0,
        converged=bool(ok and sig_fit.converged and bkg_fit.converged and np.all(ok_toys)),
        ntoys=n,
    )
