"""q0, qmu_tilde(mu=1) and asymptotic CLs (observed + band at mu=1) against pyhf 0.7.6 numbers.

Reference: ../shared/data/reference.json (pyhf + minuit at tolerance 1e-6, see its meta).
Tolerance: 1e-4 relative, or 1e-6 absolute for tiny values (issue 3).  Entries whose
hypotest was only computed at minuit's default tolerance 0.1 (keys ``*_minuit_default_tol``)
are compared at 5e-3 relative: there minuit stops early (measured: CLs+b off by 2.8e-3 relative on
sbottom RegionC 600_280_150), and the test checks that histgym's
fits reach a *lower* -2 ln L than the 1e-6 reference fits (a better minimum, not an error).
"""

from __future__ import annotations

import os
import warnings

import numpy as np
import pytest
from _shared import reference, workspace_path, workspace_stems

import histgym
from histgym import infer

#: pyhf could not finish these within its time budget: no q0 / CLs reference; run (slow) for
#: finiteness and convergence only.  The 1319-parameter combination takes ~3 min to build and
#: ~85 s for q0 + qmu_tilde + hypotest.  (The two compressedEWK models have only q0 from pyhf.)
SLOW = {"combined_stress_10_atlas_models", "atlas_susy2019_09_3L_offshell__synthetic_signal"}

_MODELS: dict[str, histgym.Model] = {}


def model_of(stem: str) -> histgym.Model:
    if stem not in _MODELS:
        _MODELS[stem] = histgym.from_pyhf(str(workspace_path(stem)))
    return _MODELS[stem]


def _params() -> list:
    out = []
    for s in workspace_stems():
        marks = (
            [
                pytest.mark.slow,
                pytest.mark.skipif(
                    not os.environ.get("HISTGYM_RUN_SLOW"), reason="slow: set HISTGYM_RUN_SLOW=1"
                ),
            ]
            if s in SLOW
            else []
        )
        out.append(pytest.param(s, id=s, marks=marks))
    return out or [pytest.param(None, id="no-shared-data")]


def close(a: float, b: float, rel: float = 1e-4, abs_: float = 1e-6) -> bool:
    return abs(a - b) <= max(rel * abs(b), abs_)


def _get(w: dict, key: str) -> tuple[object, bool]:
    if key in w:
        return w[key], False
    if key + "_minuit_default_tol" in w:
        return w[key + "_minuit_default_tol"], True
    return None, False


@pytest.mark.parametrize("stem", _params())
def test_q0_and_cls_mu1(stem: str | None) -> None:
    if stem is None:
        pytest.skip("no shared data")
    if stem not in reference():
        pytest.skip(f"{stem}: no entry in reference.json")
    w = reference()[stem]
    model = model_of(stem)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        q0 = infer.q0(model, return_fits=True)
        qt = infer.qmu_tilde(1.0, model, return_fits=True)
        r = infer.hypotest(1.0, model)
    values = [q0.value, qt.value, r.cls_obs, r.clsb, r.clb, *r.cls_exp]
    assert np.all(np.isfinite(values))
    assert r.converged and q0.free_fit.converged and qt.fixed_fit.converged
    ref_q0, loose_q0 = _get(w, "q0_obs")
    ref_cls, loose = _get(w, "cls_obs_mu1_qtilde")
    if ref_q0 is None and ref_cls is None:
        pytest.skip(f"{stem}: pyhf produced no q0/CLs reference ({w['status']})")
    # a better minimum than minuit's is allowed: the fits must be at least as low
    if "twice_nll_mle" in w:
        assert q0.free_fit.twice_nll <= w["twice_nll_mle"] + 1e-6
    if "twice_nll_fixed_poi_1" in w:
        assert qt.fixed_fit.twice_nll <= w["twice_nll_fixed_poi_1"] + 1e-6
    rel = 5e-3 if (loose or loose_q0) else 1e-4
    if ref_q0 is not None:
        assert close(q0.value, float(ref_q0), rel), (q0.value, ref_q0)
    if "twice_nll_fixed_poi_1" in w and "twice_nll_mle" in w and not loose:
        # qmu_tilde(1) = fixed - free unless mu_hat > 1, from the reference's own fits
        ref_qt = (
            0.0
            if w["mle_poi_hat"] > 1.0
            else max(w["twice_nll_fixed_poi_1"] - w["twice_nll_mle"], 0.0)
        )
        assert close(qt.value, ref_qt, 1e-4, 1e-5), (qt.value, ref_qt)
    if ref_cls is not None:
        clsb_clb, _ = _get(w, "clsb_clb_obs_mu1_qtilde")
        band, _ = _get(w, "cls_exp_band_mu1_qtilde")
        assert close(r.cls_obs, float(ref_cls), rel), (r.cls_obs, ref_cls)
        assert close(r.clsb, clsb_clb[0], rel) and close(r.clb, clsb_clb[1], rel)  # type: ignore[index]
        for got, want in zip(r.cls_exp, band, strict=False):  # type: ignore[arg-type]
            assert close(got, want, rel), (r.cls_exp, band)


LIVE = ["histfactory_ShapeSys_example", "histfactory_shared_nuispar_across_types", "pyhf_docs_2bin_1channel",
        "histfactory_standard_example_patched_syst1"]  # fmt: skip


def _live(stem: str):  # type: ignore[no-untyped-def]
    pyhf = pytest.importorskip("pyhf")
    path = workspace_path(stem)
    if not path.is_file():
        pytest.skip("workspace not available")
    import json

    pyhf.set_backend("numpy", pyhf.optimize.minuit_optimizer(tolerance=1e-8))
    w = pyhf.Workspace(json.loads(path.read_text()))
    pm = w.model()
    d = np.asarray(w.data(pm), dtype=float)
    return pyhf, pm, d, model_of(stem)


@pytest.mark.parametrize("stem", LIVE)
def test_live_pyhf_hypotest(stem: str) -> None:
    """Small real workspaces: hypotest against live pyhf+minuit (1e-4 relative)."""
    pyhf, pm, d, model = _live(stem)
    cls, tails, band = pyhf.infer.hypotest(
        1.0, d, pm, return_expected_set=True, return_tail_probs=True
    )
    r = infer.hypotest(1.0, model)
    assert (
        close(r.cls_obs, float(cls))
        and close(r.clsb, float(tails[0]))
        and close(r.clb, float(tails[1]))
    )
    for got, want in zip(r.cls_exp, band, strict=False):
        assert close(got, float(want))


@pytest.mark.parametrize(
    "stem",
    [
        pytest.param(
            s,
            marks=[]
            if s in ("pyhf_docs_2bin_1channel", "histfactory_shared_nuispar_across_types")
            else [pytest.mark.slow],
        )
        for s in LIVE
    ],
)
def test_live_pyhf_limits(stem: str) -> None:
    """Upper limits against live pyhf (1e-3 relative); pyhf's limit takes 10-30 s on the others."""
    pyhf, pm, d, model = _live(stem)
    lim = infer.upper_limit(model)
    assert lim.converged
    poi_hi = model.suggested_bounds()[model.poi_index, 1]
    if max(lim.obs, *lim.exp) > poi_hi:
        # pyhf's upper_limit cannot search beyond the POI's upper bound (it raises ValueError
        # "fit initialization parameter ... lies outside of its bounds"); histgym widens it.
        with pytest.raises(ValueError, match="outside of its bounds"):
            pyhf.infer.intervals.upper_limits.upper_limit(d, pm)
        return
    obs, exp = pyhf.infer.intervals.upper_limits.upper_limit(d, pm)
    assert lim.obs == pytest.approx(float(obs), rel=1e-3)
    assert list(lim.exp) == pytest.approx([float(e) for e in exp], rel=1e-3)
