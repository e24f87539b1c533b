"""The fast build path (histgym.build, behind from_pyhf) equals the reference path
(pyhf.Workspace + histgym.compile): the same packed arrays, bit for bit."""

from __future__ import annotations

import json

import numpy as np
import pytest

import histgym
from histgym.model import _from_pyhf_reference
from refdata import SHARED_DATA, SKIP_NO_SHARED

NAMES = [
    "atlas_susy2019_08_1Lbb__C1N2_Wh_hbb_1000_0",
    "atlas_susy2018_31_sbottom_RegionA__sbottom_1200_1150_60_noVR",
    "histfactory_ShapeSys_example",
    "histfactory_shared_nuispar_across_types",
    "toy_SH4b_50bin_histosys",
    "tutorial_1Lbb_CRs_poi_is_nuisance",
]


def assert_same_model(a, b):
    assert a.parameter_names == b.parameter_names
    assert a.poi_name == b.poi_name and a.poi_index == b.poi_index
    np.testing.assert_array_equal(a.ibuf, b.ibuf)
    # the code4 coefficients come from a matrix product over differently sized batches:
    # BLAS may round them differently in the last bit (1e-17 absolute)
    np.testing.assert_allclose(a.fbuf, b.fbuf, rtol=1e-13, atol=1e-15)
    np.testing.assert_array_equal(a.observed_data(), b.observed_data())
    np.testing.assert_array_equal(a.suggested_bounds(), b.suggested_bounds())
    np.testing.assert_array_equal(a.suggested_init(), b.suggested_init())
    np.testing.assert_array_equal(a.suggested_fixed(), b.suggested_fixed())


@SKIP_NO_SHARED
@pytest.mark.parametrize("name", NAMES)
def test_fast_build_equals_reference_build(name):
    text = (SHARED_DATA / "workspaces" / f"{name}.json").read_text()
    assert_same_model(histgym.from_pyhf(text), _from_pyhf_reference(json.loads(text)))


@pytest.mark.parametrize("settings", [None, {"normsys": {"interpcode": "code1"}, "histosys": {"interpcode": "code0"}}])
def test_fast_build_with_patches_and_settings(settings):
    ws = histgym.example_workspace()
    patch = [{"op": "replace", "path": "/channels/0/samples/0/data/0", "value": 3.0}]
    assert_same_model(
        histgym.from_pyhf(ws, patches=[patch], modifier_settings=settings),
        _from_pyhf_reference(ws, patches=[patch], modifier_settings=settings),
    )


def test_sample_replacement_and_staterror_bookkeeping_match():
    """with_sample_yields uses the lazily built bookkeeping (cells, histosys entries, staterror)."""
    ws = histgym.example_workspace()
    for s in ws["channels"][0]["samples"]:
        s["modifiers"].append({"name": "stat", "type": "staterror", "data": [0.1 * v + 0.01 for v in s["data"]]})
    ws["channels"][0]["samples"][0]["modifiers"].append(
        {"name": "shape", "type": "histosys", "data": {"hi_data": [v * 1.1 for v in ws["channels"][0]["samples"][0]["data"]],
                                                       "lo_data": [v * 0.8 for v in ws["channels"][0]["samples"][0]["data"]]}}
    )
    fast, ref = histgym.from_pyhf(ws), _from_pyhf_reference(ws)
    y = np.linspace(1.0, 3.0, 8)
    assert_same_model(fast.with_sample_yields("SR", "signal", y), ref.with_sample_yields("SR", "signal", y))


def test_duplicate_names_are_rejected():
    ws = histgym.example_workspace()
    ws["channels"].append(json.loads(json.dumps(ws["channels"][0])))
    with pytest.raises(histgym.WorkspaceError, match="channel 'SR' is defined twice"):
        histgym.from_pyhf(ws)
    ws = histgym.example_workspace()
    ws["channels"][0]["samples"].append(json.loads(json.dumps(ws["channels"][0]["samples"][0])))
    with pytest.raises(histgym.WorkspaceError, match="sample 'signal' appears twice in channel 'SR'"):
        histgym.from_pyhf(ws)
