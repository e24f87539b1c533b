"""Fits: histgym's bounded Newton against pyhf + Minuit (reference.json, pyhf 0.7.6, tol 1e-6).

Bars (issue 2): fitted twice_nll never above pyhf's by more than 1e-6; POI within 1e-4
absolute, or else histgym's minimum is the lower one; uncertainties vs HESSE (see
``test_uncertainties_*`` for why two references are used).  Workspaces pyhf could not fit
(3L off-shell, the 1319-parameter combination) are checked by stationarity.
"""

from __future__ import annotations

import warnings

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import histgym
from refdata import HUGE, SKIP_NO_SHARED, load_model, reference, workspace_params


def _mle_reference(name):
    ref = reference().get(name, {})
    for suffix in ("", "_minuit_default_tol"):
        if ref.get("twice_nll_mle" + suffix) is not None:
            return ref["twice_nll_mle" + suffix], ref["mle_poi_hat" + suffix], ref["mle_bestfit" + suffix]
    return None


def _assert_stationary(model, result):
    """Newton decrement (EDM) of the free, not-at-bound parameters < 1e-8, and no
    parameter can gain more than 1e-4 in -ln L per sigma of movement (|g_i| sigma_i)."""
    g = _projected_gradient(model, result)
    act = np.flatnonzero(g != 0.0)
    if act.size == 0:
        return
    h = model.hessian_nll(result.bestfit)[np.ix_(act, act)]
    edm = 0.5 * g[act] @ np.linalg.solve(h, g[act])
    assert edm < 1e-8, edm
    assert np.max(np.abs(g[act]) * result.uncertainty[act]) < 1e-4


def _projected_gradient(model, result):
    """Gradient of -ln L on free parameters, zeroed where a bound holds the parameter."""
    g = model.grad_nll(result.bestfit)
    lo, hi = model.suggested_bounds().T
    x = result.bestfit
    g[result.fixed] = 0.0
    g[(x <= lo) & (g > 0)] = 0.0
    g[(x >= hi) & (g < 0)] = 0.0
    return g


@pytest.mark.parametrize("name", workspace_params())
def test_fit_reaches_pyhf_minimum_or_lower(name):
    model = load_model(name)
    result = histgym.fit(model)
    assert result.converged, result.message
    assert np.all(np.isfinite(result.bestfit)) and np.isfinite(result.twice_nll)
    lo, hi = model.suggested_bounds().T
    assert np.all(result.bestfit >= lo) and np.all(result.bestfit <= hi)
    np.testing.assert_array_equal(result.bestfit[result.fixed], model.suggested_init()[result.fixed])
    np.testing.assert_allclose(model.twice_nll(result.bestfit), result.twice_nll, rtol=0, atol=0)
    _assert_stationary(model, result)
    ref = _mle_reference(name)
    if ref is None:
        return  # pyhf did not finish a fit (3L off-shell, the combination): stationarity only
    ref_nll, ref_poi, _ = ref
    assert result.twice_nll <= ref_nll + 1e-6
    poi = result.bestfit[model.poi_index]
    if abs(poi - ref_poi) > 1e-4:
        # Minuit stopped early: then histgym's minimum must be clearly the lower one
        assert result.twice_nll < ref_nll - 1e-7, (poi, ref_poi, result.twice_nll, ref_nll)


@pytest.mark.parametrize("name", workspace_params(include_huge=False))
def test_fixed_poi_fit_matches_reference(name):
    ref = reference().get(name, {})
    if ref.get("twice_nll_fixed_poi_1") is None:
        pytest.skip("no pyhf fixed-POI fit in reference.json for this workspace")
    model = load_model(name)
    result = histgym.fixed_poi_fit(1.0, model)
    assert result.converged
    assert result.bestfit[model.poi_index] == 1.0 and result.fixed[model.poi_index]
    assert result.twice_nll <= ref["twice_nll_fixed_poi_1"] + 1e-6
    assert result.twice_nll >= ref["twice_nll_fixed_poi_1"] - 1e-3  # same minimum, not another


@pytest.mark.parametrize("name", workspace_params(include_huge=False))
def test_uncertainties_are_the_exact_inverse_hessian(name):
    """sqrt(diag(H^-1)) of -ln L with H from finite differences of the exact gradient."""
    model = load_model(name)
    if model.n_params > 140:
        pytest.skip("finite-difference Hessian of >140 parameters is slow; covered by smaller ones")
    result = histgym.fit(model)
    free = ~result.fixed
    p = result.bestfit
    eps = 1e-5
    idx = np.flatnonzero(free)
    h = np.empty((idx.size, idx.size))
    for a, i in enumerate(idx):
        e = np.zeros(model.n_params)
        e[i] = eps
        h[a] = ((model.grad_nll(p + e) - model.grad_nll(p - e)) / (2 * eps))[idx]
    unc = np.sqrt(np.diag(np.linalg.inv(0.5 * (h + h.T))))
    np.testing.assert_allclose(result.uncertainty[idx], unc, rtol=1e-5)
    assert np.all(result.uncertainty[result.fixed] == 0.0)
    np.testing.assert_allclose(np.diag(result.correlation), 1.0)


@pytest.mark.parametrize("name", workspace_params(include_huge=False))
def test_uncertainties_against_minuit_hesse(name):
    """Against the reference's Minuit HESSE errors (pyhf default strategy, numerical).

    Minuit's errors deviate from the exact inverse Hessian in two known ways: (1) for
    parameters near a bound (or when another parameter sits at one) Minuit works in its
    sin-transformed internal coordinates; (2) its numerical second derivatives at
    strategy 1 scatter by a few percent (on sbottom RegionC, Minuit strategy 2 on histgym's
    own likelihood agrees with histgym to 0.95% where strategy 1 is 15% off).  So the bar is:
    parameters more than 3 sigma from both bounds, in fits where no free parameter is at a
    bound: median deviation < 1%, every one < 5%.
    """
    ref = reference().get(name, {})
    if not ref.get("mle_uncertainties_hesse"):
        pytest.skip("no HESSE errors in reference.json for this workspace")
    model = load_model(name)
    result = histgym.fit(model)
    lo, hi = model.suggested_bounds().T
    x, u = result.bestfit, result.uncertainty
    free = ~result.fixed
    if np.any(free & ((x - lo < 1e-6) | (hi - x < 1e-6))):
        pytest.skip("a parameter sits at its bound: Minuit's bounded HESSE is not comparable")
    far = free & (x - lo > 3 * u) & (hi - x > 3 * u)
    rel = np.abs(u[far] / np.asarray(ref["mle_uncertainties_hesse"])[far] - 1.0)
    assert far.sum() >= 1
    assert np.median(rel) < 0.01
    assert np.max(rel) < 0.05


@pytest.mark.parametrize(
    "name",
    [p for p in workspace_params() if p.values[0] is None or p.values[0].startswith("histfactory_")
     or p.values[0].startswith("toy_") or p.values[0].startswith("pyhf_")],
)
def test_uncertainties_match_profile_likelihood_curvature(name):
    """sigma_i against the profile likelihood: refit with theta_i fixed at best fit +- 0.05
    sigma_i; Delta(-2 ln L) = 0.0025 for a quadratic minimum.  Within 1%.

    (A live Minuit HESSE is not used as the oracle: its finite steps feel the change of
    interpolation branch at |alpha| = 1 and its default step misjudges parameters near 0,
    e.g. 4% low on toy_SH4b's GP and mu, 92% low on patched_syst1's syst1, where this
    profile test agrees with histgym to 1e-3.)
    """
    model = load_model(name)
    result = histgym.fit(model)
    lo, hi = model.suggested_bounds().T
    at_bound = ~result.fixed & ((result.bestfit - lo < 1e-6) | (hi - result.bestfit < 1e-6))
    if np.any(at_bound):
        # the profile is then not quadratic: on one side the bound stops the refit
        pytest.skip("a parameter sits at its bound: the profile likelihood is not quadratic")
    for i in np.flatnonzero(~result.fixed):
        x, u = result.bestfit[i], result.uncertainty[i]
        for sign in (-1.0, 1.0):
            v = x + sign * 0.05 * u
            if not lo[i] < v < hi[i]:
                continue
            prof = histgym.fit(model, fixed={model.parameter_names[i]: v}, init=result.bestfit)
            implied = 0.05 * u / np.sqrt(prof.twice_nll - result.twice_nll)
            assert implied == pytest.approx(u, rel=0.01), model.parameter_names[i]


@SKIP_NO_SHARED
def test_huge_workspace_fit_is_stationary():
    """The 1319-parameter combination (pyhf: no fit within 25 minutes)."""
    for name in sorted(HUGE):
        model = load_model(name)
        result = histgym.fit(model)
        assert result.converged
        _assert_stationary(model, result)
        assert result.twice_nll < reference()[name]["twice_nll_init"]


def test_nonconvergence_is_reported_not_nan(seed_model):
    with pytest.warns(histgym.FitWarning, match="did not converge"):
        result = histgym.fit(seed_model, init=[5.0, 3.0], max_iter=1)
    assert not result.converged and result.status == 1
    assert np.all(np.isfinite(result.bestfit)) and np.isfinite(result.twice_nll)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        quiet = histgym.fit(seed_model, init=[5.0, 3.0], max_iter=1, warn=False)
    assert not quiet.converged


def test_fixed_parameters_by_name_and_mask(seed_model):
    r = histgym.fit(seed_model, fixed={"bkg_norm": 0.5})
    assert r.bestfit[1] == 0.5 and r.uncertainty[1] == 0.0 and r.fixed.tolist() == [False, True]
    r2 = histgym.fit(seed_model, init=[1.0, 0.5], fixed=[False, True])
    np.testing.assert_allclose(r.bestfit, r2.bestfit)
    with pytest.raises(histgym.UnknownName, match="Did you mean 'bkg_norm'"):
        histgym.fit(seed_model, fixed={"bkg_nrm": 0.0})
    with pytest.raises(histgym.InvalidParameters, match="fixed has shape"):
        histgym.fit(seed_model, fixed=[True])
    with pytest.raises(histgym.InvalidParameters, match="init has shape"):
        histgym.fit(seed_model, init=[1.0])


def test_seed_fit_matches_live_pyhf(seed_model):
    import pyhf

    pyhf.set_backend("numpy", pyhf.optimize.minuit_optimizer(tolerance=1e-6))
    pm = seed_model.pyhf_model
    data = seed_model.observed_data()
    bestfit, twice = pyhf.infer.mle.fit(data, pm, return_fitted_val=True)
    r = histgym.fit(seed_model)
    assert r.twice_nll <= float(twice) + 1e-6
    np.testing.assert_allclose(r.bestfit, bestfit, atol=1e-4)
    fixed_bf, fixed_twice = pyhf.infer.mle.fixed_poi_fit(0.0, data, pm, return_fitted_val=True)
    r0 = histgym.fixed_poi_fit(0.0, seed_model)
    assert r0.twice_nll <= float(fixed_twice) + 1e-6
    np.testing.assert_allclose(r0.bestfit, fixed_bf, atol=1e-4)


@settings(max_examples=25, deadline=None, derandomize=True)
@given(
    mu0=st.floats(0.0, 10.0),
    alpha0=st.floats(-5.0, 5.0),
    lo=st.floats(0.0, 2.0),
    width=st.floats(0.01, 3.0),
    fix_alpha=st.booleans(),
)
def test_fits_respect_bounds_and_fixed(seed_model, mu0, alpha0, lo, width, fix_alpha):
    bounds = seed_model.suggested_bounds()
    bounds[0] = [lo, lo + width]
    init = [min(max(mu0, lo), lo + width), alpha0]
    r = histgym.fit(seed_model, init=init, bounds=bounds, fixed=[False, fix_alpha], warn=False)
    assert r.converged
    assert lo <= r.bestfit[0] <= lo + width
    if fix_alpha:
        assert r.bestfit[1] == alpha0
    grad = seed_model.grad_nll(r.bestfit)
    # stationary where not held by a bound: at most 1e-4 in -ln L per sigma of movement
    if lo < r.bestfit[0] < lo + width:
        assert abs(grad[0]) * r.uncertainty[0] < 1e-4
    if not fix_alpha:
        assert abs(grad[1]) * r.uncertainty[1] < 1e-4


def _big_workspace(n, seed=0):
    """benchmarks/limit_scale.py's model: one channel of ``n`` bins, signal (POI ``mu``)
    over a background with a normsys; data = rounded background."""
    import importlib.util
    from pathlib import Path

    path = Path(__file__).resolve().parents[1] / "benchmarks" / "limit_scale.py"
    spec = importlib.util.spec_from_file_location("limit_scale", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.workspace(n, seed)


@pytest.mark.slow
def test_million_bin_fits_converge_at_round_off():
    """Issue 10 defect 13: on 10^6 bins (twice_nll ~ 6e6, resolved to ~1e-7) the POI-fixed fit
    at mu = 1 has a true Newton decrement (~2e-8) below what twice_nll can resolve but above
    the absolute tol: it used to spin 200 iterations x 40 line-search evaluations (a limit did
    not finish in 12 minutes).  Now it converges in a few iterations at the true minimum, and
    the whole upper limit is computed."""
    from histgym import infer

    m = histgym.from_pyhf(_big_workspace(1_000_000))
    for mu in (0.5, 1.0, 2.0):
        r = histgym.fit(m, fixed={"mu": mu})
        assert r.converged and r.n_iter <= 10, (mu, r.n_iter, r.status)
        g = m.grad_nll(r.bestfit)
        # stationary as _assert_stationary asks (the stuck fit had |g| sigma = 1.9e-4)
        assert abs(g[1]) * r.uncertainty[1] < 1e-4
    lim = infer.upper_limit(m)
    assert lim.converged
    assert lim.exp[0] < lim.exp[2] < lim.exp[4]
    assert lim.n_evaluations < 30
