"""Spec layer: a fast validator for pyhf's JSON schemas (``workspace.json``, ``model.json``,
``patchset.json``, version 1.0.0).

pyhf validates with ``jsonschema``, which costs seconds on a published likelihood (the ATLAS
1Lbb workspace: 10 423 modifiers, ~3 s) because every modifier is tried against the seven
modifier schemas of an ``anyOf``.  The checks below are the same schema written as plain
Python, dispatching on the modifier's ``type``.  They are *one-sided*: ``True`` means the
document is valid under pyhf's schema; anything unusual (tuples, numpy arrays, a violation)
returns ``False`` and the caller asks pyhf's own validator, which then accepts or raises
with pyhf's message.  So acceptance is never wider than pyhf's (``tests/test_schema.py``
checks both directions on mutated documents against ``pyhf.schema.validate``).
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

import pyhf
import pyhf.exceptions

__all__ = ["fast_valid", "validate", "valid_channel", "valid_sample", "valid_modifier", "valid_parameter"]

# pyhf checks "number" as numbers.Number (its allow_tensors type checker): bools pass
_NUMBER_TYPES = frozenset({int, float, bool})
_MOD_KEYS = frozenset({"name", "type", "data"})
_HISTO_KEYS = frozenset({"lo_data", "hi_data"})
_NORMSYS_KEYS = frozenset({"lo", "hi"})
_PARAM_KEYS = frozenset({"name", "inits", "bounds", "auxdata", "factors", "sigmas", "fixed"})
_NAME_RE = re.compile(r"^[a-zA-Z0-9_]+$")


def _numbers(x: Any, min_items: int = 1) -> bool:
    """A JSON array of numbers (pyhf counts bools as numbers) with at least ``min_items`` entries."""
    return type(x) is list and len(x) >= min_items and set(map(type, x)) <= _NUMBER_TYPES


def _number(x: Any) -> bool:
    return type(x) in _NUMBER_TYPES


def _histosys(d: Any) -> bool:
    return type(d) is dict and d.keys() == _HISTO_KEYS and _numbers(d["lo_data"]) and _numbers(d["hi_data"])


def _normsys(d: Any) -> bool:
    return type(d) is dict and d.keys() == _NORMSYS_KEYS and _number(d["lo"]) and _number(d["hi"])


_MODIFIER_DATA = {
    "histosys": _histosys,
    "normsys": _normsys,
    "lumi": lambda d: d is None,
    "normfactor": lambda d: d is None,
    "shapefactor": lambda d: d is None,
    "shapesys": _numbers,
    "staterror": _numbers,
}


def _modifier(m: Any) -> bool:
    if type(m) is not dict or m.keys() != _MOD_KEYS:
        return False
    name, mtype = m["name"], m["type"]
    if type(name) is not str or type(mtype) is not str:
        return False
    check = _MODIFIER_DATA.get(mtype)
    if check is None or (mtype == "lumi" and name != "lumi"):
        return False
    return check(m["data"])


def _sample(s: Any) -> bool:
    if type(s) is not dict or s.keys() != {"name", "data", "modifiers"}:
        return False
    mods = s["modifiers"]
    return (
        type(s["name"]) is str
        and _numbers(s["data"])
        and type(mods) is list
        and all(map(_modifier, mods))
    )


def valid_channel(c: Any, samples_too: bool = True) -> bool:
    """``defs.json#/definitions/channel``: a name and at least one valid sample.

    With ``samples_too=False`` the samples are only checked to be JSON objects (the caller
    checks their content, e.g. :func:`histgym.build.make_block` while compiling them).
    """
    if type(c) is not dict or c.keys() != {"name", "samples"}:
        return False
    samples = c["samples"]
    if type(c["name"]) is not str or type(samples) is not list or len(samples) < 1:
        return False
    if samples_too:
        return all(map(_sample, samples))
    return all(type(s) is dict for s in samples)


def valid_sample(s: Any) -> bool:
    """``defs.json#/definitions/sample``: name, nominal data and valid modifiers."""
    return _sample(s)


def valid_modifier(m: Any) -> bool:
    """``defs.json#/definitions/modifier``: any of the seven modifier types."""
    return _modifier(m)


def valid_parameter(p: Any) -> bool:
    """``defs.json#/definitions/parameter``: a measurement's parameter configuration."""
    if type(p) is not dict or "name" not in p or not p.keys() <= _PARAM_KEYS:
        return False
    if type(p["name"]) is not str:
        return False
    for key in ("inits", "auxdata", "factors", "sigmas"):
        if key in p and not _numbers(p[key]):
            return False
    if "bounds" in p:
        b = p["bounds"]
        if type(b) is not list or len(b) < 1 or not all(_numbers(x, 0) for x in b):
            return False
    return "fixed" not in p or type(p["fixed"]) is bool


def _parameters(ps: Any) -> bool:
    return type(ps) is list and all(map(valid_parameter, ps))


def _measurement(m: Any) -> bool:
    if type(m) is not dict or m.keys() != {"name", "config"}:
        return False
    cfg = m["config"]
    return (
        type(m["name"]) is str
        and type(cfg) is dict
        and cfg.keys() == {"poi", "parameters"}
        and type(cfg["poi"]) is str
        and _parameters(cfg["parameters"])
    )


def _observation(o: Any) -> bool:
    return type(o) is dict and o.keys() == {"name", "data"} and type(o["name"]) is str and _numbers(o["data"])


def _nonempty_list_of(x: Any, check: Any) -> bool:
    return type(x) is list and len(x) >= 1 and all(map(check, x))


def _workspace(w: Any, samples_too: bool = True) -> bool:
    return (
        type(w) is dict
        and w.keys() == {"channels", "measurements", "observations", "version"}
        and type(w["version"]) is str
        and w["version"] == "1.0.0"
        and type(w["channels"]) is list
        and len(w["channels"]) >= 1
        and all(valid_channel(c, samples_too) for c in w["channels"])
        and _nonempty_list_of(w["measurements"], _measurement)
        and _nonempty_list_of(w["observations"], _observation)
    )


def _model(m: Any) -> bool:
    if type(m) is not dict or "channels" not in m or not m.keys() <= {"channels", "parameters"}:
        return False
    return _nonempty_list_of(m["channels"], valid_channel) and ("parameters" not in m or _parameters(m["parameters"]))


_OPS_VALUE = frozenset({"add", "replace", "test"})


def _operation(op: Any) -> bool:
    # the jsonpatch "operation": op/path required, exactly one of the three oneOf branches
    if type(op) is not dict or "op" not in op or "path" not in op or type(op["path"]) is not str:
        return False
    kind = op["op"]
    if type(kind) is not str:
        return False
    branches = (kind in _OPS_VALUE and "value" in op) + (kind == "remove") + (
        kind in ("move", "copy") and "from" in op and type(op["from"]) is str
    )
    return branches == 1


def _patch_entry(p: Any) -> bool:
    if type(p) is not dict or p.keys() != {"metadata", "patch"}:
        return False
    meta, ops = p["metadata"], p["patch"]
    if type(meta) is not dict or "name" not in meta or "values" not in meta:
        return False
    name, values = meta["name"], meta["values"]
    if type(name) is not str or not _NAME_RE.match(name) or type(values) is not list:
        return False
    if not all(type(v) in _NUMBER_TYPES or type(v) is str for v in values):
        return False
    return type(ops) is list and all(map(_operation, ops))


def _patchset(ps: Any) -> bool:
    if type(ps) is not dict or ps.keys() != {"patches", "metadata", "version"}:
        return False
    if type(ps["version"]) is not str or ps["version"] != "1.0.0":
        return False
    meta = ps["metadata"]
    if type(meta) is not dict or not {"references", "digests", "labels", "description"} <= meta.keys():
        return False
    labels, refs, digests = meta["labels"], meta["references"], meta["digests"]
    if type(meta["description"]) is not str:
        return False
    if type(labels) is not list or not labels or not all(type(x) is str and _NAME_RE.match(x) for x in labels):
        return False
    if type(refs) is not dict or not refs or not refs.keys() <= {"hepdata"}:
        return False
    if "hepdata" in refs and not (type(refs["hepdata"]) is str and re.search(r"^ins[0-9]{7}$", refs["hepdata"])):
        return False
    if type(digests) is not dict or not digests or not digests.keys() <= {"md5", "sha256"}:
        return False
    if "md5" in digests and not (type(digests["md5"]) is str and re.search(r"^[a-f0-9]{32}$", digests["md5"])):
        return False
    if "sha256" in digests and not (
        type(digests["sha256"]) is str and re.search(r"^[a-fA-F0-9]{64}$", digests["sha256"])
    ):
        return False
    return _nonempty_list_of(ps["patches"], _patch_entry)


_CHECKS = {"workspace.json": _workspace, "model.json": _model, "patchset.json": _patchset}


def fast_valid(spec: Any, schema_name: str, samples_too: bool = True) -> bool:
    """True if ``spec`` is valid under pyhf's ``schema_name`` (1.0.0); False: ask pyhf.

    ``False`` does not mean invalid: the fast checks accept plain JSON data only (lists,
    dicts, str, int, float, bool, None) and leave everything else to pyhf.  With
    ``samples_too=False`` (``workspace.json`` only) the content of the samples is left to
    the caller (:func:`valid_sample`).
    """
    if schema_name == "workspace.json":
        return _workspace(spec, samples_too)
    return _CHECKS[schema_name](spec)


def validate(spec: Mapping[str, Any], schema_name: str) -> None:
    """Validate ``spec`` as ``pyhf.schema.validate(spec, schema_name)`` does, quickly.

    Raises:
        pyhf.exceptions.InvalidSpecification: as pyhf's validator (same message and path).
    """
    if not fast_valid(spec, schema_name):
        pyhf.schema.validate(spec, schema_name)
