"""Spec layer: histgym's sparse computation of pyhf's parameter layout equals pyhf's Model."""

from __future__ import annotations

import numpy as np
import pyhf
import pytest
from hypothesis import given, settings

import histgym
from refdata import HUGE, SHARED_DATA, workspace_params
from test_kernels import _drop_unused_lumi, small_workspaces


def assert_same_layout(model, pyhf_model, data):
    ours, theirs = model.config, pyhf_model.config
    assert ours.par_order == theirs.par_order
    assert ours.par_names == theirs.par_names
    assert ours.auxdata_order == theirs.auxdata_order
    assert ours.channels == theirs.channels and ours.samples == theirs.samples
    assert ours.poi_name == theirs.poi_name and ours.poi_index == theirs.poi_index
    assert ours.suggested_init() == theirs.suggested_init()
    assert ours.suggested_bounds() == theirs.suggested_bounds()
    assert ours.suggested_fixed() == theirs.suggested_fixed()
    np.testing.assert_allclose(ours.auxdata, theirs.auxdata, rtol=1e-14)
    for name in theirs.par_order:
        a, b = ours.param_set(name), theirs.param_set(name)
        assert type(a) is type(b) and a.n_parameters == b.n_parameters
        for attr in ("sigmas", "factors"):
            if hasattr(b, attr):
                np.testing.assert_allclose(getattr(a, attr), getattr(b, attr), rtol=1e-14)
    np.testing.assert_allclose(model.observed_data(), data, rtol=0)


@pytest.mark.parametrize("name", [p for p in workspace_params() if p.values[0] not in HUGE])
def test_layout_equals_pyhf_model(name):
    ws = pyhf.Workspace(__import__("json").loads((SHARED_DATA / "workspaces" / f"{name}.json").read_text()))
    pm = ws.model()
    model = histgym.from_pyhf(ws)
    assert_same_layout(model, pm, ws.data(pm))


@settings(max_examples=40, deadline=None, derandomize=True)
@given(case=small_workspaces())
def test_layout_equals_pyhf_model_on_random_workspaces(case):
    spec, _ = case
    spec = _drop_unused_lumi(spec)
    ws = pyhf.Workspace(spec)
    pm = ws.model()
    assert_same_layout(histgym.from_pyhf(ws), pm, ws.data(pm))


def test_inconsistent_models_are_rejected():
    spec = histgym.example_workspace()
    spec["channels"][0]["samples"][0]["data"] = spec["channels"][0]["samples"][0]["data"][:5]
    with pytest.raises(histgym.WorkspaceError, match=r"disagree on the number of bins: 'background' has 8, the channel's first sample 5 \(channels\[0\]\.samples\[1\]\.data\)"):
        histgym.from_pyhf(spec)
    spec = histgym.example_workspace()
    spec["channels"][0]["samples"][0]["modifiers"].append(
        {"name": "stat", "type": "staterror", "data": [1.0, 2.0]}
    )
    with pytest.raises(histgym.WorkspaceError, match="staterror modifier 'stat' .* 2 values for 8 bins"):
        histgym.from_pyhf(spec)
    spec = histgym.example_workspace()
    for s in spec["channels"][0]["samples"]:
        s["modifiers"].append({"name": "shared_sys", "type": "shapesys", "data": [1.0] * 8})
    with pytest.raises(histgym.WorkspaceError, match="cannot be shared"):
        histgym.from_pyhf(spec)
    spec = histgym.example_workspace()
    spec["channels"][0]["samples"][1]["modifiers"].append({"name": "mu", "type": "normsys", "data": {"hi": 1.1, "lo": 0.9}})
    with pytest.raises(histgym.WorkspaceError, match="Multiple values"):
        histgym.from_pyhf(spec)
