"""The whole analysis chain against cabinetry: toy events written to ROOT with uproot, the same
cuts and binning as a cabinetry configuration, cabinetry's workspace gives the same expected Z0."""

from __future__ import annotations

import math

import numpy as np
import pytest

from histgym.envs.analysis import AnalysisEnv
from histgym.events import toy_analysis, toy_events

N_EV = 5000


def _router(cabinetry, folder):
    """cabinetry's uproot template builder, with the ``Filter`` applied by numpy.

    In this environment ``uproot.iterate(..., cut=...)`` (uproot 5.7.7, awkward 2.14) returns
    every event regardless of the cut, so cabinetry's default builder would not select; this
    builder resolves variable, filter, weight and tree exactly as cabinetry does
    (``cabinetry.templates.builder``) and fills the same boost-histogram.
    """
    import boost_histogram as bh
    import uproot
    from cabinetry.templates import builder as B

    router = cabinetry.route.Router()

    @router.register_template_builder()
    def build(region, sample, systematic, template):
        var = B._variable(region, sample, systematic, template)
        filt = B._filter(region, sample, systematic, template)
        weight = B._weight(region, sample, systematic, template)
        tree = B._position_in_file(sample, systematic, template)
        arrays = uproot.open(folder / sample["SamplePath"])[tree].arrays(library="np")
        sel = eval(filt, {}, dict(arrays)) if filt else slice(None)  # noqa: S307
        h = bh.Histogram(bh.axis.Variable(B._binning(region)), storage=bh.storage.Weight())
        h.fill(arrays[var][sel], weight=arrays[weight][sel] if weight else None)
        return h

    return router


def test_cabinetry_workspace_gives_the_same_expected_z0(tmp_path):
    cabinetry = pytest.importorskip("cabinetry")
    uproot = pytest.importorskip("uproot")
    pyhf = pytest.importorskip("pyhf")
    env = AnalysisEnv(toy_analysis(n_events=N_EV))
    cuts = [0.55, 25.0, 180.0]
    edges = [104.0, 112.0, 119.0, 122.5, 126.0, 131.0, 140.0]
    r = env.evaluate(cuts, edges)
    assert r.valid
    ev = toy_events(0, N_EV)
    with uproot.recreate(tmp_path / "toy.root") as f:
        for p, cols in ev.items():
            f[p] = cols
    c = [float(v) for v in r.cuts]
    config = {
        "General": {
            "Measurement": "toy",
            "POI": "mu",
            "InputPath": str(tmp_path / "{SamplePath}"),
            "HistogramFolder": str(tmp_path / "histograms"),
        },
        "Regions": [{
            "Name": "SR",
            "Variable": "mass",
            "Filter": f"(score > {c[0]!r}) & (pt > {c[1]!r}) & (pt < {c[2]!r})",
            "Binning": [float(e) for e in r.edges],
        }],
        "Samples": [
            {"Name": "Data", "Tree": "signal", "SamplePath": "toy.root", "Data": True},
            *({"Name": p, "Tree": p, "SamplePath": "toy.root", "Weight": "weight"} for p in ev),
        ],
        "NormFactors": [{"Name": "mu", "Samples": "signal", "Nominal": 1, "Bounds": [0, 10]}],
        "Systematics": [
            {"Name": "resonant_norm", "Type": "Normalization", "Samples": "resonant",
             "Up": {"Normalization": 0.1}, "Down": {"Normalization": -0.1}},
            {"Name": "mass_scale", "Type": "NormPlusShape",
             "Up": {"Variable": "mass_up"}, "Down": {"Variable": "mass_down"}},
        ],
    }
    cabinetry.configuration.validate(config)
    cabinetry.templates.build(config, method="uproot", router=_router(cabinetry, tmp_path))
    cabinetry.templates.postprocess(config)
    ws = cabinetry.workspace.build(config)
    pyhf.set_backend("numpy", pyhf.optimize.minuit_optimizer(tolerance=1e-10))
    try:
        model = pyhf.Workspace(ws).model()
        init = model.config.suggested_init()
        init[model.config.poi_index] = 1.0
        asimov = model.expected_data(init)
        # the same expected (Asimov) data as the environment's
        np.testing.assert_allclose(asimov[: model.config.nmaindata],
                                   env._st.data[0][:8], rtol=1e-12)
        q0 = float(pyhf.infer.test_statistics.q0(
            0.0, asimov, model, model.config.suggested_init(), model.config.suggested_bounds(),
            model.config.suggested_fixed(),
        ))
    finally:
        pyhf.set_backend("numpy", "scipy")
    assert math.sqrt(q0) == pytest.approx(r.value, rel=1e-6)
