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
