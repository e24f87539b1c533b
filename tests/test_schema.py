"""histgym.schema: the fast pyhf-schema checks agree with pyhf's jsonschema validation."""

from __future__ import annotations

import copy
import json

import pyhf
import pyhf.exceptions
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import histgym
from histgym import schema
from refdata import SHARED_DATA, SKIP_NO_SHARED, workspace_names


def pyhf_valid(doc, name):
    try:
        pyhf.schema.validate(doc, name)
    except pyhf.exceptions.InvalidSpecification:
        return False
    return True


@SKIP_NO_SHARED
@pytest.mark.parametrize("name", ["atlas_susy2019_08_1Lbb__C1N2_Wh_hbb_1000_0", "histfactory_ShapeSys_example",
                                  "histfactory_shared_nuispar_across_types", "toy_SH4b_50bin_histosys"])
def test_published_workspaces_are_valid(name):
    spec = json.loads((SHARED_DATA / "workspaces" / f"{name}.json").read_text())
    assert schema.fast_valid(spec, "workspace.json")


@SKIP_NO_SHARED
def test_patchsets_are_valid():
    for p in SHARED_DATA.glob("raw/*patchset*.json"):
        assert schema.fast_valid(json.loads(p.read_text()), "patchset.json"), p.name


def _paths(doc, prefix=()):
    """Every (container, key) path of a JSON document."""
    out = []
    if isinstance(doc, dict):
        for k, v in doc.items():
            out.append(prefix + (k,))
            out += _paths(v, prefix + (k,))
    elif isinstance(doc, list):
        for i, v in enumerate(doc):
            out.append(prefix + (i,))
            out += _paths(v, prefix + (i,))
    return out


REPLACEMENTS = [None, True, 1, 2.5, "x", "lumi", [], [1.0], [True], {}, {"hi": 1.1, "lo": 0.9}, float("nan")]


def _docs():
    ws = histgym.example_workspace()
    ws["channels"][0]["samples"][0]["modifiers"] += [
        {"name": "stat", "type": "staterror", "data": [1.0] * 8},
        {"name": "shape", "type": "histosys", "data": {"hi_data": [1.0] * 8, "lo_data": [0.5] * 8}},
        {"name": "lumi", "type": "lumi", "data": None},
        {"name": "sf", "type": "shapefactor", "data": None},
        {"name": "ss", "type": "shapesys", "data": [0.1] * 8},
    ]
    ws["measurements"][0]["config"]["parameters"].append(
        {"name": "lumi", "auxdata": [1.0], "sigmas": [0.02], "bounds": [[0.5, 1.5]], "inits": [1.0], "fixed": False}
    )
    model = {"channels": ws["channels"], "parameters": ws["measurements"][0]["config"]["parameters"]}
    ps = {
        "metadata": {"description": "d", "digests": {"sha256": "a" * 64}, "labels": ["m1"], "references": {"hepdata": "ins1234567"}},
        "patches": [{"metadata": {"name": "p1", "values": [1]}, "patch": [{"op": "add", "path": "/channels/0/samples/-", "value": {}}]}],
        "version": "1.0.0",
    }
    return {"workspace.json": ws, "model.json": model, "patchset.json": ps}


DOCS = _docs()


def _set(doc, path, value):
    d = doc
    for k in path[:-1]:
        d = d[k]
    d[path[-1]] = value


def _delete(doc, path):
    d = doc
    for k in path[:-1]:
        d = d[k]
    del d[path[-1]]


@settings(max_examples=300, deadline=None, derandomize=True)
@given(data=st.data())
def test_mutations_agree_with_pyhf(data):
    name = data.draw(st.sampled_from(sorted(DOCS)))
    doc = copy.deepcopy(DOCS[name])
    paths = _paths(doc)
    for _ in range(data.draw(st.integers(1, 2))):
        path = data.draw(st.sampled_from(paths))
        kind = data.draw(st.sampled_from(["set", "delete", "extra"]))
        try:
            if kind == "set":
                _set(doc, path, copy.deepcopy(data.draw(st.sampled_from(REPLACEMENTS))))
            elif kind == "delete":
                _delete(doc, path)
            else:
                d = doc
                for k in path[:-1]:
                    d = d[k]
                if isinstance(d, dict):
                    d["unexpected"] = 1
        except (KeyError, IndexError, TypeError):
            pass
        paths = _paths(doc)
    fast = schema.fast_valid(doc, name)
    assert fast == pyhf_valid(doc, name)  # plain JSON documents: exactly pyhf's verdict


def test_non_plain_documents_go_to_pyhf():
    ws = histgym.example_workspace()
    import numpy as np

    ws["channels"][0]["samples"][0]["data"] = np.array(ws["channels"][0]["samples"][0]["data"])
    assert not schema.fast_valid(ws, "workspace.json")  # numpy arrays: left to pyhf ...
    model = histgym.from_pyhf(ws)  # ... which accepts them; the model is the same
    assert model.twice_nll(model.suggested_init()) == histgym.from_pyhf(histgym.example_workspace()).twice_nll(
        model.suggested_init()
    )


def test_schema_errors_keep_pyhfs_message_and_path():
    ws = histgym.example_workspace()
    ws["channels"][0]["samples"][1]["modifiers"][0]["data"] = {"hi": "x", "lo": 0.9}
    with pytest.raises(histgym.WorkspaceError, match="violates the pyhf schema at channels"):
        histgym.from_pyhf(ws)
