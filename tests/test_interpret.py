"""Ranking (cabinetry's definitions) against a reference computed with pyhf fits."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest

import histgym
from histgym.interpret import prior_widths, rank_impact, ranking

pyhf = pytest.importorskip("pyhf")

SHARED = Path(
    os.environ.get(
        "HISTGYM_SHARED_DATA", Path(__file__).resolve().parents[1] / ".." / "shared" / "data"
    )
)


def _workspaces() -> list:
    out = [pytest.param(histgym.example_workspace(), id="seed")]
    for ident, stem in (("GaussExample", "histfactory_standard_example_GaussExample"),
                        ("ShapeSys", "histfactory_ShapeSys_example")):  # fmt: skip
        p = SHARED / "workspaces" / f"{stem}.json"
        skip = pytest.mark.skipif(not p.is_file(), reason="no shared data")
        out.append(pytest.param(str(p), id=ident, marks=skip))
    return out


def pyhf_impacts(model: histgym.Model, name: str, values: list[float]) -> list[float]:
    """cabinetry's recipe with pyhf fits: fix the parameter at each value, refit, POI shift."""
    pm = model.pyhf_model
    d = model.observed_data()
    init = pm.config.suggested_init()
    fixed = pm.config.suggested_fixed()
    nominal = pyhf.infer.mle.fit(d, pm)[pm.config.poi_index]
    i = model.index(name)
    out = []
    for v in values:
        ip = list(init)
        ip[i] = v
        fx = list(fixed)
        fx[i] = True
        out.append(
            float(
                pyhf.infer.mle.fit(d, pm, init_pars=ip, fixed_params=fx)[pm.config.poi_index]
                - nominal
            )
        )
    return out


@pytest.mark.parametrize("ws", _workspaces())
def test_ranking_matches_pyhf_fits(ws: object) -> None:
    pyhf.set_backend("numpy", pyhf.optimize.minuit_optimizer(tolerance=1e-8))
    model = histgym.from_pyhf(ws)
    r = ranking(model)
    fr = histgym.fit(model)
    prior = prior_widths(model)
    assert r.converged
    assert model.poi_name not in r.names
    for j, name in enumerate(r.names):
        i = model.index(name)
        b, u, p = fr.bestfit[i], fr.uncertainty[i], prior[i]
        ref = pyhf_impacts(model, name, [b + u, b - u] + ([b + p, b - p] if p > 0 else []))
        assert r.postfit_up[j] == pytest.approx(ref[0], abs=1e-3)
        assert r.postfit_down[j] == pytest.approx(ref[1], abs=1e-3)
        if p > 0:
            assert r.prefit_up[j] == pytest.approx(ref[2], abs=1e-3)
            assert r.prefit_down[j] == pytest.approx(ref[3], abs=1e-3)
            assert r.pull[j] == pytest.approx((b - model.suggested_init()[i]) / p)
            assert r.constraint[j] == pytest.approx(u / p)
        else:  # free-floating: no pre-fit impact (cabinetry)
            assert r.prefit_up[j] == 0.0 and r.prefit_down[j] == 0.0
    assert np.all(np.diff(r.total_impact) <= 0)


def test_rank_impact_keys_and_top_n() -> None:
    model = histgym.from_pyhf(histgym.example_workspace())
    rows = rank_impact(model, top_n=1)
    assert len(rows) == 1
    keys = {"rank", "name", "delta_mu_up", "delta_mu_down", "total_impact", "pull", "constraint",
            "prefit_delta_mu_up", "prefit_delta_mu_down"}  # fmt: skip
    assert keys <= set(rows[0])
    assert rows[0]["total_impact"] == pytest.approx(
        abs(rows[0]["delta_mu_up"]) + abs(rows[0]["delta_mu_down"])
    )
    for v in rows[0].values():
        assert not (isinstance(v, float) and not np.isfinite(v))


def test_free_floating_parameters() -> None:
    ws = {"channels": [{"name": "SR", "samples": [
        {"name": "signal", "data": [5.0, 3.0], "modifiers": [{"name": "mu", "type": "normfactor", "data": None}]},
        {"name": "bkg", "data": [50.0, 60.0], "modifiers": [{"name": "k", "type": "normfactor", "data": None},
                                                           {"name": "s", "type": "normsys", "data": {"hi": 1.1, "lo": 0.9}}]}]},
        {"name": "CR", "samples": [{"name": "bkg", "data": [200.0], "modifiers": [{"name": "k", "type": "normfactor", "data": None}]}]}],
        "observations": [{"name": "SR", "data": [56.0, 62.0]}, {"name": "CR", "data": [210.0]}], "version": "1.0.0",
        "measurements": [{"name": "m", "config": {"poi": "mu", "parameters": []}}]}  # fmt: skip
    model = histgym.from_pyhf(ws)
    r = ranking(model)
    j = r.names.index("k")
    assert (
        r.prefit_up[j] == 0.0
        and r.pull[j] == 0.0
        and r.constraint[j] == pytest.approx(r.uncertainty[j])
    )
    assert r.postfit_up[j] != 0.0
