"""Spec layer: accepted inputs, patches, measurements, and clear errors for bad input."""

from __future__ import annotations

import copy
import json

import numpy as np
import pyhf
import pytest

import histgym
from refdata import SHARED_DATA, SKIP_NO_SHARED, load_model


def test_accepts_dict_text_path_and_pyhf_workspace(tmp_path):
    spec = histgym.example_workspace()
    path = tmp_path / "ws.json"
    path.write_text(json.dumps(spec))
    values = {
        histgym.from_pyhf(x).twice_nll([1.0, 0.0])
        for x in (spec, json.dumps(spec), path, str(path), pyhf.Workspace(spec))
    }
    assert len(values) == 1


def test_malformed_json_names_line_and_column():
    with pytest.raises(histgym.WorkspaceError, match=r"not valid JSON: .* line 1, column \d+"):
        histgym.from_pyhf('{"channels": [}')


def test_missing_file_is_clear(tmp_path):
    with pytest.raises(histgym.WorkspaceError, match="neither JSON text .* nor the path"):
        histgym.from_pyhf(tmp_path / "nope.json")
    with pytest.raises(histgym.WorkspaceError, match="type int"):
        histgym.from_pyhf(3)
    with pytest.raises(histgym.WorkspaceError, match="JSON object"):
        histgym.from_pyhf("[1, 2]")


def test_schema_violation_names_the_json_path():
    spec = histgym.example_workspace()
    spec["channels"][0]["samples"][1]["modifiers"][0]["data"] = {"hi": 1.08}  # lo missing
    with pytest.raises(histgym.WorkspaceError, match="schema") as err:
        histgym.from_pyhf(spec)
    assert err.value.path.startswith("channels[0].samples[1].modifiers[0]")
    assert isinstance(err.value, ValueError)
    bad = histgym.example_workspace()
    bad["channels"][0]["samples"][0]["data"] = "many"
    with pytest.raises(histgym.WorkspaceError, match=r"channels\[0\]\.samples\[0\]\.data"):
        histgym.from_pyhf(bad)


def test_nan_and_negative_numbers_are_rejected():
    spec = histgym.example_workspace()
    spec["observations"][0]["data"][3] = -2.0
    with pytest.raises(histgym.WorkspaceError, match=r"observations\[0\]\.data\[3\]"):
        histgym.from_pyhf(spec)
    spec = histgym.example_workspace()
    spec["channels"][0]["samples"][0]["data"][1] = float("nan")
    with pytest.raises(histgym.WorkspaceError, match=r"non-finite yield in bin 1: nan \(channels\[0\]\.samples\[0\]\.data\[1\]\)"):
        histgym.from_pyhf(spec)
    text = json.dumps(histgym.example_workspace()).replace("22.068918280364816", "NaN", 1)
    with pytest.raises(histgym.WorkspaceError, match=r"non-finite count in bin 0: nan \(observations\[0\]\.data\[0\]\)"):
        histgym.from_pyhf(text)


def test_unknown_measurement_suggests_the_closest():
    with pytest.raises(histgym.UnknownName, match="Did you mean 'meas'"):
        histgym.from_pyhf(histgym.example_workspace(), measurement="mesa")


def test_second_measurement_changes_the_poi():
    spec = histgym.example_workspace()
    spec["measurements"].append({"name": "bkg_poi", "config": {"poi": "bkg_norm", "parameters": []}})
    model = histgym.from_pyhf(spec, measurement="bkg_poi")
    assert model.poi_name == "bkg_norm"
    assert histgym.from_pyhf(spec).poi_name == "mu"


def test_measurement_parameter_config_is_applied():
    spec = histgym.example_workspace()
    spec["measurements"][0]["config"]["parameters"] = [
        {"name": "mu", "bounds": [[-2.0, 5.0]], "inits": [0.5]},
        {"name": "bkg_norm", "fixed": True},
    ]
    model = histgym.from_pyhf(spec)
    np.testing.assert_array_equal(model.suggested_bounds()[0], [-2.0, 5.0])
    assert model.suggested_init()[0] == 0.5
    assert model.suggested_fixed().tolist() == [False, True]


def test_bad_modifier_settings_are_rejected():
    with pytest.raises(histgym.WorkspaceError, match="interpcode 'code3'"):
        histgym.from_pyhf(histgym.example_workspace(), modifier_settings={"normsys": {"interpcode": "code3"}})
    with pytest.raises(histgym.WorkspaceError, match="Did you mean 'normsys'"):
        histgym.from_pyhf(histgym.example_workspace(), modifier_settings={"normsys2": {"interpcode": "code1"}})


def test_json_patch_and_bad_patch():
    spec = histgym.example_workspace()
    patch = [{"op": "replace", "path": "/channels/0/samples/1/modifiers/0/data/hi", "value": 1.2}]
    patched = histgym.from_pyhf(spec, patches=[patch])
    direct = copy.deepcopy(spec)
    direct["channels"][0]["samples"][1]["modifiers"][0]["data"]["hi"] = 1.2
    p = [1.0, 0.7]
    assert patched.twice_nll(p) == histgym.from_pyhf(direct).twice_nll(p)
    with pytest.raises(histgym.WorkspaceError, match="patch does not apply"):
        histgym.from_pyhf(spec, patches=[[{"op": "remove", "path": "/channels/7"}]])
    with pytest.raises(histgym.WorkspaceError, match="JSON Patch"):
        histgym.from_pyhf(spec, patches=[{"op": "remove"}])


@SKIP_NO_SHARED
@pytest.mark.parametrize(
    ("bkg_only", "patchset", "patch_name", "patched"),
    [
        ("histfactory_standard_example_bkgonly", "histfactory_standard_example_patchset",
         "patch_channel1_signal_syst1", "histfactory_standard_example_patched_syst1"),
        ("atlas_susy2019_08_1Lbb_BkgOnly", "atlas_susy2019_08_1Lbb_patchset_subset2",
         "C1N2_Wh_hbb_1000_0", "atlas_susy2019_08_1Lbb__C1N2_Wh_hbb_1000_0"),
    ],
)
def test_patchset_on_background_only_equals_patched_workspace(bkg_only, patchset, patch_name, patched):
    raw = SHARED_DATA / "raw"
    ps = pyhf.PatchSet(json.loads((raw / f"{patchset}.json").read_text()))
    model = histgym.from_pyhf(raw / f"{bkg_only}.json", patches=[ps[patch_name]])
    reference = load_model(patched)
    assert model.parameter_names == reference.parameter_names
    p = reference.suggested_init()
    np.testing.assert_allclose(model.twice_nll(p), reference.twice_nll(p), rtol=1e-12)
    entry = next(x for x in json.loads((raw / f"{patchset}.json").read_text())["patches"]
                 if x["metadata"]["name"] == patch_name)
    again = histgym.from_pyhf(raw / f"{bkg_only}.json", patches=[entry])
    assert again.twice_nll(p) == model.twice_nll(p)


@pytest.mark.parametrize("text", [
    '{"a": 1, "a": 2}',
    '{"x": {"name": "b:c", "name": "d"}}',
    '{"x": [{"k": "1:2:3"}, {"k": 1, "k": 1}]}',
    '{"a": {"b": 1}, "a": {"b": 1}}',
])
def test_duplicate_keys_refused_whichever_parser(text):
    """orjson (fast path, when installed) keeps the last duplicate: the colon count rules it out."""
    with pytest.raises(histgym.WorkspaceError, match="ambiguous"):
        histgym.workspace.read_json(text)


@pytest.mark.parametrize("text", [
    '{"a": "x:y", "b": ["::", {"c": ":"}], "d": 1e3}',
    '{"a": "\\u003a", "b": 2}',
])
def test_fast_and_standard_parsers_agree(text):
    from histgym import workspace

    assert workspace.read_json(text) == json.loads(text)
    fast = workspace._fast_loads(text)
    assert fast is None or fast == json.loads(text)
