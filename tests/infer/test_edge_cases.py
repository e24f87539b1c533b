"""Edge cases of the inference layer, each compared with pyhf where pyhf defines the value."""

from __future__ import annotations

import numpy as np
import pytest

import histgym
from histgym import infer
from histgym.errors import InvalidParameters, UnknownName

pyhf = pytest.importorskip("pyhf")


def spec(
    sig: list[float],
    bkg: list[float],
    unc: list[float],
    obs: list[float],
    second_channel: bool = False,
) -> dict:
    channels = [{"name": "SR", "samples": [
        {"name": "signal", "data": sig, "modifiers": [{"name": "mu", "type": "normfactor", "data": None}]},
        {"name": "bkg", "data": bkg, "modifiers": [{"name": "unc", "type": "shapesys", "data": unc}]},
    ]}]  # fmt: skip
    observations = [{"name": "SR", "data": obs}]
    if second_channel:  # a control region where the POI has no effect
        channels.append({"name": "CR", "samples": [
            {"name": "bkg", "data": [100.0, 90.0], "modifiers": [{"name": "bnorm", "type": "normsys", "data": {"hi": 1.1, "lo": 0.9}}]}]})  # fmt: skip
        observations.append({"name": "CR", "data": [105.0, 88.0]})
    return {"channels": channels, "observations": observations, "version": "1.0.0",
            "measurements": [{"name": "m", "config": {"poi": "mu", "parameters": []}}]}  # fmt: skip


def pyhf_model(ws: dict):  # type: ignore[no-untyped-def]
    w = pyhf.Workspace(ws)
    m = w.model()
    return m, np.asarray(w.data(m), dtype=float)


@pytest.fixture(autouse=True)
def _minuit():  # type: ignore[no-untyped-def]
    pyhf.set_backend("numpy", pyhf.optimize.minuit_optimizer(tolerance=1e-8))
    yield


def test_poi_at_lower_bound_gives_q0_zero_and_finite_cls() -> None:
    ws = spec([5.0, 8.0], [50.0, 52.0], [3.0, 4.0], [45.0, 47.0])  # deficit: mu_hat at 0
    m = histgym.from_pyhf(ws)
    r = infer.q0(m, return_fits=True)
    assert r.free_fit.bestfit[m.poi_index] == 0.0
    assert r.value == 0.0
    h = infer.hypotest(1.0, m)
    pm, d = pyhf_model(ws)
    cls, tails, band = pyhf.infer.hypotest(
        1.0, d, pm, return_expected_set=True, return_tail_probs=True
    )
    assert h.cls_obs == pytest.approx(float(cls), rel=1e-5)
    assert list(h.cls_exp) == pytest.approx([float(b) for b in band], rel=1e-5)
    lim = infer.upper_limit(m)
    assert np.all(np.isfinite([lim.obs, *lim.exp]))


def test_q0_zero_when_mu_hat_negative() -> None:
    ws = spec([5.0, 8.0], [50.0, 52.0], [3.0, 4.0], [40.0, 42.0])
    m = histgym.from_pyhf(ws)
    bounds = m.suggested_bounds()
    bounds[m.poi_index] = (-5.0, 10.0)
    r = infer.q0(m, bounds=bounds, return_fits=True)
    assert r.free_fit.bestfit[m.poi_index] < 0.0
    assert r.value == 0.0  # pyhf: q0 = 0 for mu_hat < 0 (Eq. 12)
    pm, d = pyhf_model(ws)
    ref = pyhf.infer.test_statistics.q0(
        0.0, d, pm, pm.config.suggested_init(), bounds.tolist(), pm.config.suggested_fixed()
    )
    assert float(ref) == 0.0
    # tmu with the negative-allowed bound matches pyhf's tmu
    t = infer.tmu(1.0, m, bounds=bounds)
    tref = pyhf.infer.test_statistics.tmu(
        1.0, d, pm, pm.config.suggested_init(), bounds.tolist(), pm.config.suggested_fixed()
    )
    assert t == pytest.approx(float(tref), abs=1e-5)


def test_poi_without_effect_in_a_channel() -> None:
    ws = spec([5.0, 8.0], [50.0, 52.0], [3.0, 4.0], [58.0, 63.0], second_channel=True)
    m = histgym.from_pyhf(ws)
    pm, d = pyhf_model(ws)
    args = (
        d,
        pm,
        pm.config.suggested_init(),
        pm.config.suggested_bounds(),
        pm.config.suggested_fixed(),
    )
    assert infer.q0(m) == pytest.approx(float(pyhf.infer.test_statistics.q0(0.0, *args)), abs=1e-5)
    assert infer.qmu_tilde(1.0, m) == pytest.approx(
        float(pyhf.infer.test_statistics.qmu_tilde(1.0, *args)), abs=1e-5
    )
    assert infer.tmu_tilde(2.0, m) == pytest.approx(
        float(pyhf.infer.test_statistics.tmu_tilde(2.0, *args)), abs=1e-5
    )
    h = infer.hypotest(1.0, m)
    cls, band = pyhf.infer.hypotest(1.0, d, pm, return_expected_set=True)
    assert h.cls_obs == pytest.approx(float(cls), rel=1e-4)
    assert list(h.cls_exp) == pytest.approx([float(b) for b in band], rel=1e-4)


def test_fixed_poi_is_refused() -> None:
    m = histgym.from_pyhf(histgym.example_workspace())
    mask = m.suggested_fixed()
    mask[m.poi_index] = True
    with pytest.raises(InvalidParameters, match="POI"):
        infer.hypotest(1.0, m, fixed=mask)
    with pytest.raises(InvalidParameters, match="fixed"):
        infer.q0(m, fixed={"mu": 1.0})


def test_no_sensitivity_gives_cls_one_not_nan() -> None:
    ws = spec([0.0, 0.0], [50.0, 52.0], [3.0, 4.0], [50.0, 52.0])
    m = histgym.from_pyhf(ws)
    h = infer.hypotest(1.0, m)
    assert h.cls_obs == 1.0 and all(v == 1.0 for v in h.cls_exp)
    s = infer.significance(m)
    assert np.all(np.isfinite([s.z_obs, s.z_exp, s.p_obs, s.p_exp]))


def test_unknown_names() -> None:
    m = histgym.from_pyhf(histgym.example_workspace())
    with pytest.raises(UnknownName, match="qtilde"):
        infer.hypotest(1.0, m, test_stat="qtild")
    with pytest.raises(UnknownName):
        infer.hypotest(1.0, m, calctype="toys")


def test_asimov_data_and_teststats_match_pyhf() -> None:
    ws = histgym.example_workspace()
    m = histgym.from_pyhf(ws)
    pm, d = pyhf_model(ws)
    init, bounds, fixed = (
        pm.config.suggested_init(),
        pm.config.suggested_bounds(),
        pm.config.suggested_fixed(),
    )
    a = pyhf.infer.calculators.generate_asimov_data(0.0, d, pm, init, bounds, fixed)
    np.testing.assert_allclose(infer.asimov_data(m, 0.0), a, rtol=1e-6)
    for mu in (0.5, 1.0, 2.0):
        assert infer.qmu_tilde(mu, m) == pytest.approx(
            float(pyhf.infer.test_statistics.qmu_tilde(mu, d, pm, init, bounds, fixed)), abs=1e-5
        )
        assert infer.tmu_tilde(mu, m) == pytest.approx(
            float(pyhf.infer.test_statistics.tmu_tilde(mu, d, pm, init, bounds, fixed)), abs=1e-5
        )
    z = infer.significance(m)
    p0, band = pyhf.infer.hypotest(0.0, d, pm, test_stat="q0", return_expected_set=True)
    assert z.p_obs == pytest.approx(float(p0), rel=1e-5)
    assert list(z.p_exp_band) == pytest.approx([float(b) for b in band], rel=1e-5)
    assert z.z_obs == pytest.approx(np.sqrt(infer.q0(m)))


def test_upper_limit_matches_pyhf() -> None:
    for ws in (
        histgym.example_workspace(),
        spec([5.0, 8.0], [50.0, 52.0], [3.0, 4.0], [53.0, 55.0]),
    ):
        m = histgym.from_pyhf(ws)
        pm, d = pyhf_model(ws)
        obs, exp = pyhf.infer.intervals.upper_limits.upper_limit(d, pm)
        r = infer.upper_limit(m)
        assert r.converged
        assert r.obs == pytest.approx(float(obs), rel=1e-3)
        assert list(r.exp) == pytest.approx([float(e) for e in exp], rel=1e-3)


def test_yields_batch_matches_single() -> None:
    m = histgym.from_pyhf(histgym.example_workspace())
    y = m.sample_yields("SR", "signal")
    ys = np.stack([y, 0.5 * y, y * np.linspace(0.5, 1.5, y.size)])
    q0s, ok = infer.q0_yields_batch(m, "SR", "signal", ys)
    qts, ok2 = infer.qmu_tilde_yields_batch(2.0, m, "SR", "signal", ys)
    assert ok.all() and ok2.all()
    for i, row in enumerate(ys):
        mi = m.with_sample_yields("SR", "signal", row)
        assert q0s[i] == pytest.approx(infer.q0(mi), abs=1e-8)
        assert qts[i] == pytest.approx(infer.qmu_tilde(2.0, mi), abs=1e-8)
