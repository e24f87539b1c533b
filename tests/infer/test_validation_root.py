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
    return infer.hypotest(
        setup["mu"], model0, np.asarray(setup["data"], dtype=float), test_stat=setup["test_stat"]
    )


@pytest.mark.parametrize("sid", _setups())
def test_root_validation(sid: str | None) -> None:
    if sid is None:
        pytest.skip("no shared data")
    setup = next(s for s in root_validation()["setups"] if s["id"] == sid)
    r = _run(setup)
    tol = setup["tolerance"]
    exp = setup["expected"]
    if sid == "2bin_2channel_coupledhistosys_mu1":
        # Two minima (data README): ROOT and pyhf+scipy sit in a local minimum (twice_nll 31.375
        # at mu=1, CLs 0.0797); histgym, like pyhf+minuit, finds the lower one (30.872, CLs 0.256).
        # The ROOT value is therefore NOT reproduced; state the disagreement explicitly.
        minuit = setup["pyhf_0.7.6"]["minuit_tol1e-6"]
        assert abs(r.cls_obs - exp["obs"]) / exp["obs"] > 1.0
        assert r.cls_obs == pytest.approx(minuit["cls_obs"], rel=1e-3)
        assert list(r.cls_exp) == pytest.approx(minuit["cls_exp"], rel=1e-3)
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
