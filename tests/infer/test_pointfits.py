"""A scan point's shared fits (``histgym.infer.pointfits``, ``hypotest_and_limit``) give
exactly the numbers of the separate ``infer`` calls, including on models where the fits need
their safeguards (several stationary points), and the sharing really happens."""

from __future__ import annotations

import warnings

import pytest

import histgym
from histgym import infer
from histgym.infer import pointfits
from histgym.infer.limits import hypotest_and_limit

from test_local_minima import COUPLED, DEGENERATE, _random_model

MODELS = [
    pytest.param(histgym.example_workspace(), id="example"),
    pytest.param(COUPLED, id="coupled_histosys"),
    pytest.param(_random_model(160), id="asimov_far"),
    pytest.param(_random_model(15), id="free_fit_local_minimum"),
    pytest.param(DEGENERATE, id="normfactor_shapefactor_degenerate"),
]


@pytest.mark.parametrize("ws", MODELS)
def test_shared_fits_equal_separate_calls(ws: dict) -> None:
    model = histgym.from_pyhf(ws)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # degenerate models warn; the numbers are compared
        memo = pointfits.FitMemo()
        h, lim = hypotest_and_limit(model, memo=memo)
        sig = pointfits.significance(model, memo)
        ref_h = infer.hypotest(h.poi_test, model)
        ref_lim = infer.upper_limit(model)
        ref_sig = infer.significance(model)
        alone = pointfits.significance(model)
    assert h.cls_obs == ref_h.cls_obs and tuple(h.cls_exp) == tuple(ref_h.cls_exp)
    assert h.converged == ref_h.converged
    assert lim == ref_lim
    for s in (sig, alone):
        assert (s.z_obs, s.z_exp, s.q0, s.q0_asimov) == (
            ref_sig.z_obs, ref_sig.z_exp, ref_sig.q0, ref_sig.q0_asimov
        )
        assert s.converged == ref_sig.converged
    assert memo.hits >= 1  # Z0 reused fits of the CLs / limit calculator
