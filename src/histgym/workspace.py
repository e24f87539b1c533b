"""Spec layer: read a pyhf JSON workspace, validate it through pyhf, select measurement/patches.

pyhf is the reference library of the format: schema validation, patches and patchsets,
measurement selection and the parameter layout all go through it.  Every failure is
re-raised as :class:`histgym.WorkspaceError` naming the JSON path or the unknown name.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, Union

import jsonpatch
import pyhf
import pyhf.exceptions

from . import spec_checks

try:  # optional: a faster parser of large workspaces (same results; see _fast_loads)
    import orjson as _orjson
except ImportError:  # pragma: no cover - depends on the environment
    _orjson = None
from .errors import UnknownName, WorkspaceError, WorkspaceTypeError, did_you_mean

__all__ = ["WorkspaceLike", "read_json", "read_spec", "load_workspace", "build_pyhf_model"]

#: What histgym accepts as a workspace: a dict, JSON text, a path, or a ``pyhf.Workspace``.
WorkspaceLike = Union[Mapping[str, Any], str, os.PathLike, "pyhf.Workspace"]


class _DuplicateKey(ValueError):
    pass


def _unique_keys(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    """``object_pairs_hook`` of :func:`json.loads`: refuse duplicate keys (JSON allows them,
    Python would keep the last one silently)."""
    d = dict(pairs)
    if len(d) != len(pairs):
        seen: set[str] = set()
        dup = next(k for k, _ in pairs if k in seen or seen.add(k))  # type: ignore[func-returns-value]
        keys = [k for k, _ in pairs]
        raise _DuplicateKey(f"duplicate key {dup!r} in a JSON object with keys {keys[:8]}")
    return d


def _fast_loads(text: str) -> Any:
    """``text`` parsed by ``orjson`` when that is installed and the result is certainly what
    :func:`json.loads` with :func:`_unique_keys` returns; else ``None`` (use that).

    orjson keeps the last of duplicate keys silently, so duplicates are ruled out by
    counting: every ``:`` of a JSON text outside its strings separates a key, and re-encoding
    the parsed value keeps the strings' colons but drops those of dropped duplicates (texts
    with ``\\u`` escapes, which could spell a colon, are left to the standard parser).
    Anything orjson refuses (``NaN`` literals, integers beyond 64 bits, ``1e400``) is also
    left to the standard parser, which accepts or reports it as before.
    """
    if _orjson is None or "\\u" in text:
        return None
    try:
        doc = _orjson.loads(text)
    except _orjson.JSONDecodeError:
        return None
    try:
        if _orjson.dumps(doc).count(b":") != text.count(":"):
            return None
    except (TypeError, _orjson.JSONEncodeError):  # pragma: no cover - orjson's own output
        return None
    return doc


def _load_json_text(text: str, origin: str) -> Any:
    if not text.strip():
        raise WorkspaceError(f"{origin} is empty")
    doc = _fast_loads(text)
    if doc is not None:
        return doc
    try:
        return json.loads(text, object_pairs_hook=_unique_keys)
    except json.JSONDecodeError as err:
        msg = f"{origin} is not valid JSON: {err.msg} at line {err.lineno}, column {err.colno}"
        raise WorkspaceError(msg) from err
    except _DuplicateKey as err:
        raise WorkspaceError(f"{origin} is ambiguous: {err}") from None
    except RecursionError as err:
        raise WorkspaceError(f"{origin} is nested too deeply to be a workspace") from err
    except ValueError as err:  # e.g. an integer literal beyond Python's digit limit
        raise WorkspaceError(f"{origin} is not usable JSON: {err}") from err


def _read_file(path: Path, what: str) -> str:
    name = repr(str(path))
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        raise WorkspaceError(f"{what} file {name} does not exist") from None
    except IsADirectoryError:
        raise WorkspaceError(f"{what} path {name} is a directory, not a JSON file") from None
    except OSError as err:
        raise WorkspaceError(f"cannot read {what} file {name}: {err.strerror or err}") from err
    try:
        return raw.decode("utf-8-sig")
    except UnicodeDecodeError as err:
        msg = (
            f"{what} file {name} is not UTF-8 text (byte 0x{raw[err.start]:02x} at offset "
            f"{err.start}); JSON workspaces must be UTF-8"
        )
        raise WorkspaceError(msg) from None


def read_json(source: Any, what: str = "workspace") -> Any:
    """Parse ``source`` into Python data: the one reader of JSON input in histgym.

    Args:
        source: a mapping or list (returned as is), JSON text (``str`` starting with ``{`` or
            ``[``, or ``bytes``), or the path (``str`` / ``os.PathLike``) of a UTF-8 JSON file.
        what: what is being read, for messages (``"workspace"``, ``"patch"``).

    Raises:
        WorkspaceError: missing file, a directory, unreadable or non-UTF-8 file, empty or
            invalid JSON, duplicate keys in an object, absurd nesting, an unsupported type.
            The message names the file.
    """
    if isinstance(source, (Mapping, list)):
        return source
    if isinstance(source, (bytes, bytearray)):
        try:
            source = bytes(source).decode("utf-8-sig")
        except UnicodeDecodeError as err:
            raise WorkspaceError(f"the {what} bytes are not UTF-8 JSON text: {err}") from None
        return _load_json_text(source, f"the {what} text")
    if isinstance(source, (str, os.PathLike)):
        text = source if isinstance(source, str) else None
        if text is not None and not text.strip():
            raise WorkspaceError(f"the {what} is an empty string (neither JSON text nor a path)")
        if text is not None and text.lstrip()[:1] in ("{", "["):
            return _load_json_text(text, f"the {what} text")
        try:
            path = Path(source)
            exists = path.exists()
        except (OSError, ValueError):  # name too long, embedded NUL byte
            exists = False
        if not exists:
            msg = (
                f"the {what} {str(source)[:500]!r} is neither JSON text (it does not start "
                "with '{' or '[') nor the path of an existing file"
            )
            raise WorkspaceError(msg)
        return _load_json_text(_read_file(path, what), f"{what} file {str(path)!r}")
    msg = (
        f"the {what} must be a dict, JSON text (str or bytes), a path or a pyhf.Workspace; "
        f"got an object of type {type(source).__name__}"
    )
    raise WorkspaceTypeError(msg)


def read_spec(workspace: WorkspaceLike) -> dict[str, Any]:
    """Return the workspace specification as a plain dict (not yet validated).

    Raises:
        WorkspaceError: as :func:`read_json`, or the JSON is not an object.
    """
    if isinstance(workspace, pyhf.Workspace):
        return dict(workspace)
    spec = read_json(workspace)
    if not isinstance(spec, Mapping):
        msg = f"a workspace must be a JSON object, got a JSON {type(spec).__name__}"
        raise WorkspaceError(msg)
    return dict(spec)


def load_workspace(workspace: WorkspaceLike) -> dict[str, Any]:
    """The workspace as an independent JSON dict (a deep copy; the environments keep it).

    Raises:
        WorkspaceError: as :func:`read_spec`, or the dict holds values JSON cannot represent.
    """
    spec = read_spec(workspace)
    try:
        return dict(json.loads(json.dumps(spec)))
    except RecursionError as err:
        raise WorkspaceError("the workspace is nested too deeply to be a workspace") from err
    except (TypeError, ValueError) as err:
        raise WorkspaceError(f"the workspace holds a value JSON cannot represent: {err}") from err


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
    version = spec.get("version")
    if version is not None and not isinstance(version, str):
        msg = f"workspace 'version' must be a string such as '1.0.0', got {version!r:.40} (version)"
        raise WorkspaceError(msg, path="version")
    try:
        return pyhf.Workspace(spec)
    except pyhf.exceptions.InvalidSpecification as err:
        path = getattr(err, "path", "")
        reason = getattr(getattr(err, "parent", None), "message", str(err))
        msg = f"workspace violates the pyhf schema at {path or '<root>'}: {reason}"
        raise WorkspaceError(msg, path=path) from err
    except (pyhf.exceptions.InvalidWorkspaceOperation, pyhf.exceptions.InvalidModel) as err:
        raise WorkspaceError(f"invalid workspace: {err}") from err
    except RecursionError as err:
        raise WorkspaceError("the workspace is nested too deeply to be a workspace") from err
    except (TypeError, KeyError, AttributeError, ValueError) as err:  # pyhf on odd structures
        if isinstance(err, WorkspaceError):
            raise
        raise WorkspaceError(f"invalid workspace (pyhf: {type(err).__name__}: {err})") from err


def _check_numbers(spec: Mapping[str, Any]) -> None:
    """Semantic checks of :mod:`histgym.spec_checks` on a workspace or model spec.

    ``spec`` holds ``"channels"`` and optionally ``"observations"`` (checked against the
    channels: bin counts, names, numbers); used by the fast build path and by patch sets.
    """
    observations = spec.get("observations")
    observed_by = {o["name"]: o["data"] for o in observations} if observations else None
    spec_checks.check_model_spec(spec, observed_by)  # the channels' own consistency first
    if observations:
        spec_checks.check_observations(spec)


def _check_measurement(modelspec: Mapping[str, Any], names: Sequence[str], meas: Any, has_lumi: bool | None = None) -> str:
    """Checks of the measurement's parameter configuration; returns its JSON path.

    ``has_lumi=False`` (the caller knows the model has no ``lumi`` modifier) skips the walk
    over every modifier that looks for one; so does a complete ``lumi`` configuration."""
    for i, name in enumerate(names):
        if name in names[:i]:
            path = f"measurements[{i}].name"
            raise WorkspaceError(f"measurement {name!r} is defined twice ({path})", path=path)
    ppath = f"measurements[{names.index(meas['name'])}].config.parameters"
    spec_checks.check_parameter_numbers(modelspec.get("parameters", []), ppath)
    if has_lumi is None or (has_lumi and not _lumi_configured(modelspec.get("parameters", []))):
        spec_checks.check_lumi(modelspec, ppath)
    return ppath


def _lumi_configured(parameters: Sequence[Mapping[str, Any]]) -> bool:
    """The configuration of parameter ``lumi`` has what :func:`spec_checks.check_lumi` asks."""
    for p in parameters:
        if p.get("name") == "lumi":
            return all(k in p for k in ("auxdata", "sigmas", "bounds", "inits"))
    return False


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
    spec_checks.check_observations(ws)
    observed_by = {o["name"]: o["data"] for o in ws.get("observations", [])}
    spec_checks.check_model_spec(ws, observed_by)
    names = [m["name"] for m in ws.get("measurements", [])]
    for i, name in enumerate(names):
        if name in names[:i]:
            path = f"measurements[{i}].name"
            raise WorkspaceError(f"measurement {name!r} is defined twice ({path})", path=path)
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
        spec_checks.check_model_spec(modelspec, observed_by)
    ppath = f"measurements[{names.index(meas['name'])}].config.parameters"
    spec_checks.check_parameter_numbers(modelspec.get("parameters", []), ppath)
    spec_checks.check_lumi(modelspec, ppath)
    try:
        config = model_config(modelspec, meas["config"]["poi"], modifier_settings)
    except (TypeError, KeyError, ValueError) as err:
        if isinstance(err, WorkspaceError):
            raise
        raise WorkspaceError(f"invalid model (pyhf: {type(err).__name__}: {err})") from err
    spec_checks.check_measurement_config(modelspec.get("parameters", []), config, ppath)
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
