"""ROOT HistFactory-derived CLs values (pyhf's tests/test_validation.py) with pyhf's tolerances.

Settings as pyhf's test: normsys code1, histosys pyhf default, test_stat as given, POI bounds
from the spec's suggested bounds.  Toy-based entries are pyhf-seeded toy results, not ROOT
values: they are covered statistically in test_toys.py.
"""

from __future__ import annotations

import numpy as np
import pytest
from _shared import root_validation

import histgym
from histgym import infer

#: setups where histgym (a tighter minimum) misses ROOT by more than pyhf's scipy-tuned tolerance;
#: value = the tolerance histgym meets against ROOT (about 1.5x the measured deviation).
TIGHTER_MINIMUM = {
    "1bin_shapesys_mu1": 5e-5,
    "1bin_shapesys_q0_mu1": 5e-4,
    "1bin_lumi_mu1": 8e-5,
    "1bin_normsys_mu1": 5e-5,
    "2bin_2channel_mu1": 4e-5,
    "2bin_2channel_couplednorm_mu1": 2e-4,
}


def _setups() -> list:
    try:
        from _shared import shared_data_dir

        if shared_data_dir() is None:
            return [pytest.param(None, id="no-shared-data")]
        import json

        data = json.loads((shared_data_dir() / "root_validation.json").read_text())  # type: ignore[operator]
    except FileNotFoundError:
        return [pytest.param(None, id="no-shared-data")]
    return [
        pytest.param(s["id"], id=s["id"]) for s in data["setups"] if s["calctype"] == "asymptotics"
    ]


def _run(setup: dict) -> infer.HypotestResult:
    ws = {
        "channels": setup["spec"]["channels"],
        "observations": [],
        "measurements": [
            {
                "name": "m",
                "config": {"poi": "mu", "parameters": setup["spec"].get("parameters", [])},
            }
        ],
        "version": "1.0.0",
    }
    # observations are given as the full data vector in pyhf's channel order
    model0 = histgym.from_pyhf(
        {
            **ws,
            "observations": [
                {"name": c["name"], "data": [0.0] * len(c["samples"][0]["data"])}
                for c in ws["channels"]
            ],
        },
        modifier_settings={"normsys": {"interpcode": "code1"}},  # exactly pyhf test_validation.py
    )
    assert model0.parameter_names[0].split("[")[0] in setup["par_order"]
    _run.model = model0  # type: ignore[attr-defined]
    return infer.hypotest(
        setup["mu"], model0, np.asarray(setup["data"], dtype=float), test_stat=setup["test_stat"]
    )


def _assert_global_minima(setup: dict) -> None:
    """The four fits of the hypotest equal the minima of a brute-force grid scan (polished)."""
    from histgym._kernels.likelihood import twice_nll_batch

    model = _run.model  # type: ignore[attr-defined]
    data = np.asarray(setup["data"], dtype=float)
    calc = infer.AsymptoticCalculator(model, data, test_stat=setup["test_stat"])
    q, qa, ok = calc.test_statistics(setup["mu"])
    assert ok
    s = calc.setup
    grid = np.stack(np.meshgrid(np.linspace(-5, 5, 401), np.linspace(0, 10, 401)), -1)
    assert model.parameter_names == ["coupled_histosys", "mu"]
    pars = np.ascontiguousarray(grid.reshape(-1, 2))
    for d, f_free, name in ((data, calc._fs[0], "data"), (calc.asimov, calc._fs[1], "Asimov")):
        out = np.empty(len(pars))
        twice_nll_batch(pars, np.repeat(d[None], len(pars), 0), model.fbuf, model.ibuf, out)
        best = histgym.fit(model, d, init=pars[np.argmin(out)]).twice_nll
        assert f_free == pytest.approx(best, abs=1e-7), name
        on_mu = pars[:, s.poi] == setup["mu"]
        x0 = pars[on_mu][np.argmin(out[on_mu])]
        best_fix = histgym.fixed_poi_fit(setup["mu"], model, d, init=x0).twice_nll
        t = q if name == "data" else qa
        assert f_free + t == pytest.approx(best_fix, abs=1e-7), name


@pytest.mark.parametrize("sid", _setups())
def test_root_validation(sid: str | None) -> None:
    if sid is None:
        pytest.skip("no shared data")
    setup = next(s for s in root_validation()["setups"] if s["id"] == sid)
    r = _run(setup)
    tol = setup["tolerance"]
    exp = setup["expected"]
    if sid == "2bin_2channel_coupledhistosys_mu1":
        # Several minima (data README).  ROOT and pyhf+scipy sit in a local minimum of the
        # POI-fixed fit (twice_nll 31.375 at mu=1, CLs 0.0797); pyhf+minuit finds the lower one
        # (30.872) but stops in local minima of the free fit to the data (30.285 at mu_hat 0.61)
        # and of the free Asimov fit (29.111), CLs 0.256.  histgym finds the global minimum of
        # all four fits (brute-force scan below: 29.287 at mu_hat 0.50, 30.872, 28.864, 32.631),
        # so it reproduces neither: CLs 0.1383.  State the disagreement explicitly.
        minuit = setup["pyhf_0.7.6"]["minuit_tol1e-6"]
        assert abs(r.cls_obs - exp["obs"]) / exp["obs"] > 0.5
        assert abs(r.cls_obs - minuit["cls_obs"]) / minuit["cls_obs"] > 0.3
        assert r.cls_obs == pytest.approx(0.13830515, rel=1e-6)
        _assert_global_minima(setup)
        return
    if sid in TIGHTER_MINIMUM:
        # pyhf's tolerances for these were tuned on pyhf+scipy (SLSQP), whose fits stop slightly
        # above the minimum: histgym's -2 ln L is lower in every fit (1bin_shapesys: 11.8612106871
        # vs scipy 11.8612108605 at mu=1; Asimov fit 12.5798432 vs 12.5798657).  histgym then
        # agrees with pyhf+minuit at tolerance 1e-6 (<= 1e-6 relative, measured) and with ROOT
        # only to TIGHTER_MINIMUM[sid] (measured: 5.3e-6 ... 1.2e-4), not to pyhf's tolerance.
        minuit = setup["pyhf_0.7.6"]["minuit_tol1e-6"]
        assert r.cls_obs == pytest.approx(minuit["cls_obs"], rel=1e-5)
        assert list(r.cls_exp) == pytest.approx(minuit["cls_exp"], rel=1e-5)
        tol = TIGHTER_MINIMUM[sid]
    assert abs(r.cls_obs - exp["obs"]) / exp["obs"] < tol
    assert list(r.cls_exp) == pytest.approx(exp["exp"], rel=tol)
