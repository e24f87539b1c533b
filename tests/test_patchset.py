"""histgym.patchset: a patch applied incrementally to a compiled background gives exactly the
model built from the patched workspace (same arrays; twice_nll to 1e-12; same names/order)."""

from __future__ import annotations

import json

import numpy as np
import pyhf
import pytest

import histgym
from histgym.patchset import Background, Patch, read_patchset, select_patches
from histgym.scan.synthetic import mass_grid, signal_grid
from refdata import SHARED_DATA, SKIP_NO_SHARED

RAW = SHARED_DATA / "raw"


def assert_equal_models(inc, ref):
    assert inc.parameter_names == ref.parameter_names
    assert inc.poi_name == ref.poi_name
    np.testing.assert_array_equal(inc.ibuf, ref.ibuf)
    np.testing.assert_array_equal(inc.fbuf, ref.fbuf)
    np.testing.assert_array_equal(inc.observed_data(), ref.observed_data())
    rng = np.random.default_rng(1)
    lo, hi = ref.suggested_bounds().T
    for _ in range(3):
        x = np.clip(ref.suggested_init() + 0.1 * rng.normal(size=ref.n_params), lo, hi)
        np.testing.assert_allclose(inc.twice_nll(x), ref.twice_nll(x), rtol=1e-12)


def check_patchset(bkg_path, patchset):
    bkg = Background(bkg_path)
    ws = pyhf.Workspace(json.loads(bkg_path.read_text()))
    pset = pyhf.PatchSet(patchset)
    for p in read_patchset(patchset):
        inc = bkg.model(p)
        ref = histgym.from_pyhf(pset.apply(ws, p.name))  # pyhf applies the patch
        assert_equal_models(inc, ref)
        assert inc.parameter_names == ref.pyhf_model.config.par_names  # pyhf's layout


@SKIP_NO_SHARED
def test_1lbb_patches():
    check_patchset(RAW / "atlas_susy2019_08_1Lbb_BkgOnly.json", json.loads((RAW / "atlas_susy2019_08_1Lbb_patchset_subset2.json").read_text()))


@SKIP_NO_SHARED
def test_standard_example_patches():
    check_patchset(RAW / "histfactory_standard_example_bkgonly.json", json.loads((RAW / "histfactory_standard_example_patchset.json").read_text()))


@SKIP_NO_SHARED
def test_generated_patchset_on_real_background():
    bkg = RAW / "atlas_susy2018_31_sbottom_RegionA_BkgOnly.json"
    check_patchset(bkg, signal_grid(bkg, mass_grid(2, 2)))


def test_patches_inside_samples_and_fallbacks():
    ws = histgym.example_workspace()
    bkg = Background(ws)
    cases = [
        [{"op": "replace", "path": "/channels/0/samples/0/data/2", "value": 9.0}],  # inside a sample
        [{"op": "remove", "path": "/channels/0/samples/1/modifiers/0"},
         {"op": "add", "path": "/channels/0/samples/1/modifiers/-", "value": {"name": "bkg_mu", "type": "normfactor", "data": None}}],
        [{"op": "replace", "path": "/channels/0/name", "value": "SR2"},  # not a sample: full build
         {"op": "replace", "path": "/observations/0/name", "value": "SR2"}],
    ]
    for ops in cases:
        ref_ws = pyhf.Workspace(json.loads(json.dumps(ws)))
        patched = pyhf.patchset.Patch({"metadata": {"name": "p", "values": []}, "patch": ops}).apply(ref_ws)
        inc = bkg.model(ops)
        assert_equal_models(inc, histgym.from_pyhf(patched))
        assert inc.parameter_names == pyhf.Workspace(patched).model().config.par_names
    assert json.dumps(bkg.spec) == json.dumps(ws)  # the background is never modified


def test_bad_patches_raise():
    bkg = Background(histgym.example_workspace())
    with pytest.raises(histgym.WorkspaceError, match="does not apply"):
        bkg.model([{"op": "remove", "path": "/channels/0/samples/7"}])
    with pytest.raises(histgym.WorkspaceError, match="schema"):
        bkg.model([{"op": "add", "path": "/channels/0/samples/-", "value": {"name": "x", "data": "bad", "modifiers": []}}])
    with pytest.raises(histgym.UnknownName, match="unknown patch 'nope'"):
        select_patches([Patch("a", (1,), ("m",), [])], ["nope"])


def test_read_patchset_rejects_duplicates():
    ps = signal_grid(histgym.example_workspace(), [(100.0, 0.0), (200.0, 0.0)], labels=("m", "n"))
    ps["patches"][1]["metadata"]["name"] = ps["patches"][0]["metadata"]["name"]
    with pytest.raises(histgym.WorkspaceError, match="two patches named"):
        read_patchset(ps)


# --- patches of one structure: the numbers-only path (histgym.patchfast) ---------------------


def _fast_bkg():
    """Two channels; background samples with staterror, shapesys, normsys, histosys."""
    def bkg(name, data, extra=()):
        return {"name": name, "data": data, "modifiers": [
            {"name": "lumi", "type": "lumi", "data": None},
            {"name": f"stat_{len(data)}", "type": "staterror", "data": [0.1 * abs(x) + 0.05 for x in data]},
            {"name": f"{name}_norm", "type": "normsys", "data": {"hi": 1.1, "lo": 0.85}},
            *extra]}
    sr = [bkg("ttbar", [10.0, 6.0, 3.0], [{"name": "tt_shape", "type": "histosys", "data": {"hi_data": [11.0, 6.5, 3.1], "lo_data": [9.0, 5.0, 2.8]}}]),
          bkg("wjets", [5.0, 2.0, 1.0], [{"name": "w_sys", "type": "shapesys", "data": [0.5, 0.3, 0.2]}])]
    cr = [bkg("ttbar", [50.0, 40.0]), bkg("zjets", [20.0, 0.0])]
    return {
        "channels": [{"name": "SR", "samples": sr}, {"name": "CR", "samples": cr}],
        "observations": [{"name": "SR", "data": [17.0, 9.0, 5.0]}, {"name": "CR", "data": [72.0, 3.0]}],
        "measurements": [{"name": "m", "config": {"poi": "mu_sig", "parameters": [
            {"name": "lumi", "auxdata": [1.0], "sigmas": [0.02], "bounds": [[0.9, 1.1]], "inits": [1.0]}]}}],
        "version": "1.0.0",
    }


def _signal_ops(scale, extra_modifier=False, shapesys=True):
    def sig(data):
        n = len(data)
        mods = [
            {"name": "mu_sig", "type": "normfactor", "data": None},
            {"name": "lumi", "type": "lumi", "data": None},
            {"name": f"stat_{n}", "type": "staterror", "data": [0.2 * x for x in data]},
            {"name": "sig_xsec", "type": "normsys", "data": {"hi": 1.0 + 0.1 * scale, "lo": 1.0 - 0.05 * scale}},
            {"name": "sig_shape", "type": "histosys", "data": {"hi_data": [x * 1.1 for x in data], "lo_data": [x * (0.9 - 0.01 * scale) for x in data]}},
        ]
        if shapesys:
            mods.append({"name": f"sig_mc_{n}", "type": "shapesys", "data": [0.1 * x + 0.01 for x in data]})
        if extra_modifier:
            mods.append({"name": "sig_extra", "type": "normsys", "data": {"hi": 1.2, "lo": 0.8}})
        return {"name": "signal", "data": data, "modifiers": mods}

    return [
        {"op": "add", "path": "/channels/0/samples/-", "value": sig([2.0 * scale, 1.0 + scale, 0.5 * scale])},
        {"op": "add", "path": "/channels/1/samples/-", "value": sig([0.1 * scale, 0.3])},
    ]


def assert_same_layout(inc, ref):
    """Beyond assert_equal_models: bounds, inits, fixed flags, auxdata, constraint widths,
    and the sample bookkeeping derived from the numbers."""
    np.testing.assert_array_equal(inc.suggested_bounds(), ref.suggested_bounds())
    np.testing.assert_array_equal(inc.suggested_init(), ref.suggested_init())
    np.testing.assert_array_equal(inc.suggested_fixed(), ref.suggested_fixed())
    assert list(inc.config.auxdata) == list(ref.config.auxdata)
    assert inc.config.auxdata_order == ref.config.auxdata_order
    for name in ref.config.par_order:
        a, b = inc.config.param_set(name), ref.config.param_set(name)
        assert getattr(a, "sigmas", None) == getattr(b, "sigmas", None), name
        assert getattr(a, "factors", None) == getattr(b, "factors", None), name
        assert list(a.suggested_fixed) == list(b.suggested_fixed), name
    assert dict(inc._compiled.staterror) == dict(ref._compiled.staterror)
    assert json.dumps(inc.spec) == json.dumps(ref.spec)
    for ch, s in (("SR", "signal"), ("CR", "ttbar"), ("CR", "signal")):  # staterror widths follow the yields
        y = np.asarray(ref.spec["channels"][0 if ch == "SR" else 1]["samples"][0]["data"]) * 1.3
        np.testing.assert_array_equal(inc.with_sample_yields(ch, s, y).fbuf, ref.with_sample_yields(ch, s, y).fbuf)


def _check_fast(bkg, ops, fast):
    """``bkg.model(ops)`` equals the model of the patched workspace; ``fast``: it was made by
    writing the numbers into a template (the incremental path was not taken)."""
    slow = []
    orig = Background._incremental

    def spy(self, *a, **k):
        slow.append(1)
        return orig(self, *a, **k)

    Background._incremental = spy
    try:
        inc = bkg.model(ops)
    finally:
        Background._incremental = orig
    assert (not slow) == fast
    ref = histgym.from_pyhf(jsonpatch_apply(bkg.spec, ops))
    assert_equal_models(inc, ref)
    assert_same_layout(inc, ref)
    return inc


def jsonpatch_apply(spec, ops):
    return pyhf.patchset.Patch({"metadata": {"name": "p", "values": []}, "patch": ops}).apply(pyhf.Workspace(json.loads(json.dumps(spec))))


def test_same_structure_patches_write_numbers_only():
    bkg = Background(_fast_bkg())
    _check_fast(bkg, _signal_ops(1.0), fast=False)  # the first of its structure: full incremental path
    for scale in (0.5, 2.0, 3.7, 1.0):  # different numbers: staterror widths, shapesys factors, normsys...
        _check_fast(bkg, _signal_ops(scale), fast=True)
    # a different structure (one more modifier): the full path, then its own template
    _check_fast(bkg, _signal_ops(1.5, extra_modifier=True), fast=False)
    _check_fast(bkg, _signal_ops(2.5, extra_modifier=True), fast=True)
    _check_fast(bkg, _signal_ops(1.5, shapesys=False), fast=False)
    _check_fast(bkg, _signal_ops(0.7), fast=True)  # the first structure is still known
    assert json.dumps(bkg.spec) == json.dumps(_fast_bkg())  # the background is never modified


def test_same_structure_numbers_that_need_the_full_path():
    bkg = Background(_fast_bkg())
    bkg.model(_signal_ops(1.0))
    ops = _signal_ops(1.0)
    ops[1]["value"]["data"][0] = 0.0  # a shapesys bin becomes fixed (zero yield): fallback, still exact
    _check_fast(bkg, ops, fast=False)
    ops = _signal_ops(1.0)
    ops[0]["value"]["modifiers"][3]["data"]["hi"] = 3  # an int factor is fine
    _check_fast(bkg, ops, fast=True)
    ops = _signal_ops(1.0)
    ops[0]["value"]["data"][1] = -1.0  # negative yield: the full path decides (here: accepts, as from_pyhf)
    _check_fast(bkg, ops, fast=False)
    bad = _signal_ops(1.0)
    bad[0]["value"]["data"][1] = float("nan")
    with pytest.raises(histgym.WorkspaceError):
        bkg.model(bad)
    bad = _signal_ops(1.0)
    bad[0]["value"]["modifiers"][3]["data"]["lo"] = -0.5
    with pytest.raises(histgym.WorkspaceError):
        bkg.model(bad)
    bad = _signal_ops(1.0)
    bad[0]["value"]["data"][0] = "1.0"
    with pytest.raises(histgym.WorkspaceError, match="schema"):
        bkg.model(bad)
