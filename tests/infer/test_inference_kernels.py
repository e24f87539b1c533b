"""The single-call inference kernels (histgym._kernels.inference) equal the Python paths."""

from __future__ import annotations

import math

import numpy as np
import pytest
from _shared import shared_data_dir
from scipy.special import log_ndtr, ndtr

import histgym
from histgym import infer
from histgym._kernels.inference import expected_data_into
from histgym._kernels.newton import CONVERGED, newton_fit
from histgym.infer.asymptotics import N_SIGMA, AsymptoticCalculator
from histgym.infer.teststats import (
    MAX_ITER,
    TOL,
    _Min,
    fixed_poi_min,
    free_min,
    minimize,
    setup,
    tmu_like,
)
from histgym.interpret import _ranking_batched, _ranking_serial


def _log_ratio_cls(t: float, sqrtqa: float) -> tuple[float, float, float]:
    """Scalar reference: (CLsb, CLb, CLs) for a test statistic ``t`` in mu_hat/sigma space."""
    clsb = float(ndtr(-(t + sqrtqa)))
    clb = float(ndtr(-t))
    cls = float(math.exp(min(0.0, float(log_ndtr(-(t + sqrtqa)) - log_ndtr(-t)))))
    return clsb, clb, cls

SMALL_WORKSPACES = (
    "histfactory_ShapeSys_example",
    "histfactory_standard_example_GaussExample",
    "pyhf_docs_2bin_1channel",
    "toy_SH4b_50bin_histosys",
)


def _models() -> list:
    out = [pytest.param(histgym.example_workspace(), id="seed")]
    root = shared_data_dir()
    for stem in SMALL_WORKSPACES:
        p = None if root is None else root / "workspaces" / f"{stem}.json"
        out.append(
            pytest.param(
                str(p),
                id=stem,
                marks=pytest.mark.skipif(p is None or not p.is_file(), reason="no shared data"),
            )
        )
    return out


def _python_minimize(s, data, x0, fixed) -> _Min:  # type: ignore[no-untyped-def]
    """The former pure-Python ``minimize`` (reference)."""
    n = s.model.n_params
    x, g, h = np.empty(n), np.empty(n), np.empty((n, n))
    start = np.ascontiguousarray(x0, dtype=np.float64)
    args = (s.model.fbuf, s.model.ibuf, fixed, s.lower, s.upper, MAX_ITER, TOL)
    status, f, it, edm = newton_fit(start, data, *args, x, g, h)
    if status != CONVERGED and np.isfinite(f) and np.all(np.isfinite(x)):
        x2 = np.empty(n)
        status2, f2, it2, edm2 = newton_fit(x.copy(), data, *args, x2, g, h)
        if np.isfinite(f2) and f2 <= f:
            x, status, f, it, edm = x2, status2, f2, it + it2, edm2
    if not np.isfinite(f) or not np.all(np.isfinite(x)):
        x, f, h, edm = start.copy(), float(np.finfo(float).max), np.zeros((n, n)), np.inf
    return _Min(x, float(f), int(status), int(it), float(edm), h, fixed)


@pytest.mark.parametrize("ws", _models())
def test_minimize_kernel_equals_python(ws: object) -> None:
    m = histgym.from_pyhf(ws)
    s = setup(m)
    d = m.observed_data()
    poi_fixed = s.fixed.copy()
    poi_fixed[s.poi] = True
    rng = np.random.default_rng(1)
    for _ in range(5):
        x0 = np.clip(s.init + rng.normal(0, 0.3, m.n_params), s.lower, s.upper)
        for mask in (s.fixed, poi_fixed):
            a = minimize(s, d, x0, mask)
            b = _python_minimize(s, d, x0, mask)
            assert a.twice_nll == b.twice_nll and a.status == b.status
            np.testing.assert_array_equal(a.x, b.x)


@pytest.mark.parametrize("ws", _models())
def test_expected_data_kernel(ws: object) -> None:
    m = histgym.from_pyhf(ws)
    p = m.suggested_init() * 1.1
    out = np.empty(m.n_data)
    expected_data_into(p, m.fbuf, m.ibuf, out)
    np.testing.assert_array_equal(out, m.expected_data(p))


def _python_hypotest(m, mu, data, test_stat):  # type: ignore[no-untyped-def]
    """The former Python AsymptoticCalculator: (q, qa, converged, cls_obs, cls_exp)."""
    s = setup(m)
    free = free_min(s, data)
    # the Asimov data's POI-fixed fit is that of t(mu_asimov), guarded as every other
    _, afit, free = tmu_like(s, 1.0 if test_stat == "q0" else 0.0, data, free)
    asimov = m.expected_data(afit.x)
    # the free Asimov fit starts at the generating point (its exact minimum)
    assert m.twice_nll(afit.x, asimov) <= m.twice_nll(s.init, asimov)
    free_a = minimize(s, asimov, afit.x, s.fixed)
    if test_stat == "q0":
        mu = 0.0
    t, fx, fr = tmu_like(s, mu, data, free)
    ta, fxa, fra = tmu_like(s, mu, asimov, free_a, gen=afit.x)

    def clip(v: float, hat: float) -> float:
        if test_stat == "q0":
            return 0.0 if hat < 0.0 else v
        return 0.0 if hat > mu else v

    q, qa = clip(t, fr.x[s.poi]), clip(ta, fra.x[s.poi])
    ok = fx.converged and fr.converged and fxa.converged and fra.converged and afit.converged
    sq, sqa = math.sqrt(q), math.sqrt(qa)
    tt = sq - sqa if test_stat in ("q", "q0") or sq <= sqa or sqa == 0 else (q - qa) / (2 * sqa)
    clsb, _, cls = _log_ratio_cls(tt, sqa)
    band = [_log_ratio_cls(n, sqa)[0 if test_stat == "q0" else 2] for n in N_SIGMA]
    return q, qa, ok, clsb if test_stat == "q0" else cls, band, asimov


@pytest.mark.parametrize("ws", _models())
@pytest.mark.parametrize("test_stat", ["qtilde", "q", "q0"])
def test_asymptotic_kernel_equals_python(ws: object, test_stat: str) -> None:
    m = histgym.from_pyhf(ws)
    d = m.observed_data()
    d[: m.n_bins] *= 1.2
    for mu in (0.0, 0.7, 1.0, 3.0):
        r = infer.hypotest(mu, m, d, test_stat=test_stat)
        q, qa, ok, cls, band, asimov = _python_hypotest(m, mu, d, test_stat)
        assert (r.teststat, r.teststat_asimov, r.converged) == (q, qa, ok)
        assert r.cls_obs == cls
        assert list(r.cls_exp) == band
        calc = AsymptoticCalculator(m, d, test_stat=test_stat)
        np.testing.assert_array_equal(calc.asimov, asimov)
        if test_stat != "q0":
            np.testing.assert_array_equal(calc.expected_cls(mu), band)


@pytest.mark.parametrize("ws", _models())
def test_ranking_kernel_equals_batched(ws: object) -> None:
    m = histgym.from_pyhf(ws)
    s = setup(m)
    d = m.observed_data()
    for fit_result in (None, histgym.fit(m, warn=False)):
        a = _ranking_serial(m, s, d, fit_result)
        b = _ranking_batched(m, s, d, fit_result)
        assert a.names == b.names
        assert a.converged == b.converged and a.poi_bestfit == b.poi_bestfit
        for field in ("bestfit", "uncertainty", "prefit_up", "prefit_down", "postfit_up",
                      "postfit_down", "pull", "constraint", "total_impact"):  # fmt: skip
            np.testing.assert_array_equal(getattr(a, field), getattr(b, field), err_msg=field)
