"""Kernels: interpolation properties and likelihood invariances, property-based (hypothesis)."""

from __future__ import annotations

import copy

import numpy as np
import pyhf
from hypothesis import given, settings
from hypothesis import strategies as st

import histgym
from histgym._kernels.interp import CODE0, CODE1, CODE2, CODE4, CODE4P, delta_1, factor_1
from histgym.compile import code4_coefficients

factors = st.floats(0.05, 3.0)
alphas = st.floats(-4.0, 4.0)


@settings(max_examples=200, deadline=None, derandomize=True)
@given(hi=factors, lo=factors)
def test_normsys_codes_at_nodes(hi, lo):
    coef = code4_coefficients(np.array([hi]), np.array([lo]))[0]
    for code in (CODE1, CODE4):
        assert factor_1(code, 0.0, hi, lo, coef)[0] == 1.0
        np.testing.assert_allclose(factor_1(code, 1.0, hi, lo, coef)[0], hi, rtol=1e-12)
        np.testing.assert_allclose(factor_1(code, -1.0, hi, lo, coef)[0], lo, rtol=1e-12)


@settings(max_examples=200, deadline=None, derandomize=True)
@given(hi=factors, lo=factors, side=st.sampled_from([-1.0, 1.0]))
def test_code4_is_c2_at_the_junction(hi, lo, side):
    coef = code4_coefficients(np.array([hi]), np.array([lo]))[0]
    a = side * 1.0
    inside = factor_1(CODE4, a * (1 - 1e-12), hi, lo, coef)
    outside = factor_1(CODE4, a * (1 + 1e-12), hi, lo, coef)
    for k in range(3):  # value, first and second derivative are continuous
        np.testing.assert_allclose(inside[k], outside[k], rtol=1e-8, atol=1e-8)


@settings(max_examples=200, deadline=None, derandomize=True)
@given(up=st.floats(-5, 5), dn=st.floats(-5, 5), alpha=alphas)
def test_histosys_codes_nodes_and_derivatives(up, dn, alpha):
    for code in (CODE0, CODE2, CODE4P):
        assert delta_1(code, 0.0, up, dn)[0] == 0.0
        np.testing.assert_allclose(delta_1(code, 1.0, up, dn)[0], up, rtol=1e-12, atol=1e-12)
        np.testing.assert_allclose(delta_1(code, -1.0, up, dn)[0], -dn, rtol=1e-12, atol=1e-12)
        if abs(abs(alpha) - 1.0) > 1e-3 and abs(alpha) > 1e-3:
            eps = 1e-6
            fd = (delta_1(code, alpha + eps, up, dn)[0] - delta_1(code, alpha - eps, up, dn)[0]) / (2 * eps)
            np.testing.assert_allclose(delta_1(code, alpha, up, dn)[1], fd, rtol=1e-5, atol=1e-7)
            fd2 = (delta_1(code, alpha + eps, up, dn)[1] - delta_1(code, alpha - eps, up, dn)[1]) / (2 * eps)
            np.testing.assert_allclose(delta_1(code, alpha, up, dn)[2], fd2, rtol=1e-5, atol=1e-6)


@st.composite
def small_workspaces(draw):
    """1-3 channels x 1-4 bins x 1-3 samples with random modifiers, and a parameter point."""
    n_ch = draw(st.integers(1, 3))
    pos = st.floats(0.5, 50.0)
    channels, observations = [], []
    shared = ["s_a", "s_b"]
    for c in range(n_ch):
        nb = draw(st.integers(1, 4))
        samples = []
        for s in range(draw(st.integers(1, 3))):
            data = [draw(pos) for _ in range(nb)]
            mods = []
            if c == 0 and s == 0:
                mods.append({"name": "mu", "type": "normfactor", "data": None})
            if draw(st.booleans()):
                mods.append({"name": draw(st.sampled_from(shared)), "type": "normsys",
                             "data": {"hi": draw(st.floats(1.01, 1.5)), "lo": draw(st.floats(0.6, 0.99))}})
            if draw(st.booleans()):
                mods.append({"name": f"h{c}{s}", "type": "histosys",
                             "data": {"hi_data": [d * draw(st.floats(1.0, 1.3)) for d in data],
                                      "lo_data": [d * draw(st.floats(0.7, 1.0)) for d in data]}})
            if draw(st.booleans()):
                mods.append({"name": f"staterror_{c}", "type": "staterror",
                             "data": [d * draw(st.floats(0.01, 0.3)) for d in data]})
            if draw(st.booleans()):
                mods.append({"name": f"shapesys_{c}{s}", "type": "shapesys",
                             "data": [d * draw(st.floats(0.05, 0.5)) for d in data]})
            if draw(st.booleans()):
                mods.append({"name": "lumi", "type": "lumi", "data": None})
            if draw(st.booleans()):
                mods.append({"name": f"sf{c}", "type": "shapefactor", "data": None})
            samples.append({"name": f"sample{s}", "data": data, "modifiers": mods})
        channels.append({"name": f"ch{c}", "samples": samples})
        observations.append({"name": f"ch{c}", "data": [float(draw(st.integers(0, 60))) for _ in range(nb)]})
    if not any(m["name"] == "mu" for ch in channels for s in ch["samples"] for m in s["modifiers"]):
        channels[0]["samples"][0]["modifiers"].append({"name": "mu", "type": "normfactor", "data": None})
    spec = {
        "channels": channels,
        "observations": observations,
        "measurements": [{"name": "m", "config": {"poi": "mu", "parameters": [
            {"name": "lumi", "auxdata": [1.0], "sigmas": [0.05], "bounds": [[0.5, 1.5]], "inits": [1.0]}]}}],
        "version": "1.0.0",
    }
    u = draw(st.lists(st.floats(-0.9, 0.9), min_size=64, max_size=64))
    return spec, np.array(u)


def _point(model, u):
    lo, hi = model.suggested_bounds().T
    init = model.suggested_init()
    width = np.minimum(hi - lo, 2.0)
    return np.clip(init + 0.4 * u[: model.n_params] * width, lo + 1e-3, hi - 1e-3)


def _spec_has_lumi(spec):
    return any(m["type"] == "lumi" for ch in spec["channels"] for s in ch["samples"] for m in s["modifiers"])


def _drop_unused_lumi(spec):
    if not _spec_has_lumi(spec):
        spec["measurements"][0]["config"]["parameters"] = []
    return spec


@settings(max_examples=40, deadline=None, derandomize=True)
@given(case=small_workspaces())
def test_random_workspaces_match_pyhf(case):
    spec, u = case
    spec = _drop_unused_lumi(spec)
    model = histgym.from_pyhf(spec)
    p = _point(model, u)
    data = model.observed_data()
    expected = -2.0 * float(model.pyhf_model.logpdf(p, data)[0])
    if np.isfinite(expected):
        np.testing.assert_allclose(model.twice_nll(p), expected, rtol=1e-10)
    g = model.grad_nll(p)
    h = model.hessian_nll(p)
    np.testing.assert_allclose(h, h.T, rtol=0, atol=1e-10 * max(1.0, np.abs(h).max()))
    if np.isfinite(expected):
        eps = 1e-5
        fd = np.array([(model.nll(p + eps * e) - model.nll(p - eps * e)) / (2 * eps) for e in np.eye(model.n_params)])
        np.testing.assert_allclose(g, fd, rtol=1e-5, atol=1e-6 * max(1.0, abs(model.nll(p))))


@settings(max_examples=30, deadline=None, derandomize=True)
@given(case=small_workspaces(), seed=st.integers(0, 2**16))
def test_permuting_the_json_leaves_twice_nll_unchanged(case, seed):
    spec, u = case
    spec = _drop_unused_lumi(spec)
    rng = np.random.default_rng(seed)
    shuffled = copy.deepcopy(spec)
    order = rng.permutation(len(shuffled["channels"]))
    shuffled["channels"] = [shuffled["channels"][i] for i in order]
    shuffled["observations"] = [shuffled["observations"][i] for i in order]
    for ch in shuffled["channels"]:
        ch["samples"] = [ch["samples"][i] for i in rng.permutation(len(ch["samples"]))]
        for s in ch["samples"]:
            s["modifiers"] = [s["modifiers"][i] for i in rng.permutation(len(s["modifiers"]))]
    a = histgym.from_pyhf(spec)
    b = histgym.from_pyhf(shuffled)
    # pyhf's parameter order depends on the JSON order: compare by name
    p = _point(a, u)
    pb = np.array([p[a.index(n)] for n in b.parameter_names])
    np.testing.assert_allclose(b.twice_nll(pb), a.twice_nll(p), rtol=1e-12)


def test_batched_fits_equal_single_fits(seed_model):
    from histgym._kernels.newton import newton_fit_batch

    m = seed_model
    n = 6
    rng = np.random.default_rng(0)
    data = np.tile(m.observed_data(), (n, 1))
    data[:, : m.n_bins] = rng.poisson(data[:, : m.n_bins])
    x0 = np.tile(m.suggested_init(), (n, 1))
    fixed = np.zeros((n, m.n_params), dtype=bool)
    lo, hi = m.suggested_bounds().T.copy()
    x = np.empty_like(x0)
    status = np.empty(n, dtype=np.int64)
    fval = np.empty(n)
    n_iter = np.empty(n, dtype=np.int64)
    fbufs = np.broadcast_to(m.fbuf, (n, m.fbuf.size))
    newton_fit_batch(x0, data, fbufs, m.ibuf, fixed, lo, hi, 200, 1e-10, x, status, fval, n_iter)
    for i in range(n):
        r = histgym.fit(m, data[i])
        assert status[i] == r.status
        np.testing.assert_array_equal(x[i], r.bestfit)
        assert fval[i] == r.twice_nll
