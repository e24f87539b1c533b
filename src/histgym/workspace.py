"""Spec layer: read a pyhf JSON workspace, validate it through pyhf, select measurement/patches.

pyhf is the reference library of the format: schema validation, patches and patchsets,
measurement selection and the parameter layout all go through it.  Every failure is
re-raised as :class:`histgym.WorkspaceError` naming the JSON path or the unknown name.
"""

from __future__ import annotations

import json
import math
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, Union

import jsonpatch
import pyhf
import pyhf.exceptions

from .errors import UnknownName, WorkspaceError, did_you_mean

__all__ = ["WorkspaceLike", "read_spec", "build_pyhf_model"]

#: What histgym accepts as a workspace: a dict, JSON text, a path, or a ``pyhf.Workspace``.
WorkspaceLike = Union[Mapping[str, Any], str, os.PathLike, "pyhf.Workspace"]


def _load_json_text(text: str, origin: str) -> Any:
    try:
        return json.loads(text)
    except json.JSONDecodeError as err:
        msg = f"{origin} is not valid JSON: {err.msg} at line {err.lineno}, column {err.colno}"
        raise WorkspaceError(msg) from err


def read_json(source: Any, what: str = "workspace") -> Any:
    """Parse ``source`` (a mapping/list, JSON text or a path to a JSON file) into Python data."""
    if isinstance(source, (Mapping, list)):
        return source
    if isinstance(source, (str, os.PathLike)):
        text = str(source) if isinstance(source, str) else None
        if text is not None and text.lstrip()[:1] in ("{", "["):
            return _load_json_text(text, f"the {what} text")
        path = Path(source)
        if not path.is_file():
            msg = (
                f"the {what} {str(source)[:80]!r} is neither JSON text (it does not start "
                "with '{' or '[') nor the path of an existing file"
            )
            raise WorkspaceError(msg)
        return _load_json_text(path.read_text(), f"{what} file {str(path)!r}")
    msg = f"cannot read a {what} from an object of type {type(source).__name__}"
    raise WorkspaceError(msg)


def read_spec(workspace: WorkspaceLike) -> dict[str, Any]:
    """Return the workspace specification as a plain dict (not yet validated)."""
    if isinstance(workspace, pyhf.Workspace):
        return dict(workspace)
    spec = read_json(workspace)
    if not isinstance(spec, Mapping):
        msg = f"a workspace must be a JSON object, got a JSON {type(spec).__name__}"
        raise WorkspaceError(msg)
    return dict(spec)


def _to_patch(patch: Any) -> Any:
    if isinstance(patch, (pyhf.patchset.Patch, jsonpatch.JsonPatch)):
        return patch
    data = read_json(patch, what="patch")
    if isinstance(data, Mapping) and "patches" in data:  # a whole patchset
        names = [p.get("metadata", {}).get("name") for p in data["patches"]]
        if len(names) != 1:
            msg = (
                f"a patchset with {len(names)} patches was given where one patch is expected; "
                f"choose one, e.g. pyhf.PatchSet(patchset)[name] with name in {names}"
            )
            raise WorkspaceError(msg)
        data = data["patches"][0]
    if isinstance(data, Mapping) and "patch" in data:  # a patchset entry {"metadata", "patch"}
        data = data["patch"]
    if not isinstance(data, list):
        msg = "a patch must be a JSON Patch (a list of operations) or a patchset entry"
        raise WorkspaceError(msg)
    return jsonpatch.JsonPatch(data)


def _validate(spec: Mapping[str, Any]) -> pyhf.Workspace:
    try:
        return pyhf.Workspace(spec)
    except pyhf.exceptions.InvalidSpecification as err:
        path = getattr(err, "path", "")
        reason = getattr(getattr(err, "parent", None), "message", str(err))
        msg = f"workspace violates the pyhf schema at {path or '<root>'}: {reason}"
        raise WorkspaceError(msg, path=path) from err
    except (pyhf.exceptions.InvalidWorkspaceOperation, pyhf.exceptions.InvalidModel) as err:
        raise WorkspaceError(f"invalid workspace: {err}") from err


def _check_numbers(spec: Mapping[str, Any]) -> None:
    """Reject NaN/inf anywhere in sample data and NaN/inf/negative observations."""
    for ic, channel in enumerate(spec.get("channels", [])):
        for isamp, sample in enumerate(channel.get("samples", [])):
            where = f"channels[{ic}].samples[{isamp}]"
            for ib, v in enumerate(sample.get("data", [])):
                if not math.isfinite(v):
                    msg = (
                        f"sample {sample.get('name')!r} of channel {channel.get('name')!r} has a "
                        f"non-finite yield {v} in bin {ib} ({where}.data[{ib}])"
                    )
                    raise WorkspaceError(msg, path=f"{where}.data[{ib}]")
    for io, obs in enumerate(spec.get("observations", [])):
        for ib, v in enumerate(obs.get("data", [])):
            if not math.isfinite(v) or v < 0:
                msg = (
                    f"observation of channel {obs.get('name')!r} has an invalid count {v} in bin "
                    f"{ib} (observations[{io}].data[{ib}]): counts must be finite and >= 0"
                )
                raise WorkspaceError(msg, path=f"observations[{io}].data[{ib}]")


def build_pyhf_model(
    workspace: WorkspaceLike,
    *,
    measurement: str | None = None,
    patches: Sequence[Any] | None = None,
    modifier_settings: Mapping[str, Mapping[str, str]] | None = None,
) -> tuple[pyhf.Workspace, dict[str, Any], Any, list[float]]:
    """Validate ``workspace`` and compute pyhf's layout of its model.

    Follows ``pyhf.Workspace.model``: the model spec is the workspace's channels plus the
    measurement's parameter configuration, with ``patches`` applied to it; the parameter
    layout is pyhf's ``_ModelConfig`` (built sparsely by :func:`histgym.layout.model_config`).

    Returns:
        ``(pyhf.Workspace, model spec, pyhf _ModelConfig, observed data)``; the data are main
        bins then auxdata in pyhf's order.

    Raises:
        WorkspaceError: malformed JSON, schema violation, non-finite numbers, bad patch,
            unknown measurement, unsupported modifier settings, inconsistent model.
    """
    from .layout import model_config

    ws = _validate(read_spec(workspace))
    _check_numbers(ws)
    names = [m["name"] for m in ws.get("measurements", [])]
    if measurement is not None and measurement not in names:
        msg = f"unknown measurement {measurement!r}; the workspace has {names}."
        raise UnknownName(msg + did_you_mean(measurement, names))
    if modifier_settings is not None:
        _check_modifier_settings(modifier_settings)
    try:
        meas = ws.get_measurement(measurement_name=measurement)
    except pyhf.exceptions.InvalidMeasurement as err:
        raise WorkspaceError(f"invalid measurement: {err}") from err
    modelspec: dict[str, Any] = {
        "channels": ws["channels"],
        "parameters": meas["config"]["parameters"],
    }
    patch_objs = [_to_patch(p) for p in (patches or [])]
    if patch_objs:
        try:
            for patch in patch_objs:
                modelspec = jsonpatch.JsonPatch(patch).apply(modelspec)
            pyhf.schema.validate(modelspec, "model.json")
        except pyhf.exceptions.InvalidSpecification as err:
            path = getattr(err, "path", "")
            msg = f"patched model violates the pyhf schema at {path or '<root>'}: {err.parent.message}"
            raise WorkspaceError(msg, path=path) from err
        except (jsonpatch.JsonPatchException, jsonpatch.JsonPointerException) as err:
            raise WorkspaceError(f"patch does not apply to the workspace: {err}") from err
        _check_numbers(modelspec)
    config = model_config(modelspec, meas["config"]["poi"], modifier_settings)
    try:
        observed = sum((ws.observations[c] for c in config.channels), [])
    except KeyError as err:
        raise WorkspaceError(f"workspace has no observations for channel {err}") from err
    return ws, modelspec, config, [float(v) for v in observed] + list(config.auxdata)


_ALLOWED_CODES = {"normsys": ("code1", "code4"), "histosys": ("code0", "code2", "code4p")}


def _check_modifier_settings(settings: Mapping[str, Mapping[str, str]]) -> None:
    for mtype, opts in settings.items():
        if mtype not in _ALLOWED_CODES:
            msg = f"modifier_settings: unknown modifier type {mtype!r}."
            raise WorkspaceError(msg + did_you_mean(mtype, _ALLOWED_CODES))
        code = opts.get("interpcode")
        if code not in _ALLOWED_CODES[mtype]:
            msg = (
                f"modifier_settings: {mtype} interpcode {code!r} is not supported; "
                f"pyhf allows {list(_ALLOWED_CODES[mtype])}"
            )
            raise WorkspaceError(msg)
