"""Model layer: :func:`build_model`, the fast path behind :func:`histgym.from_pyhf`.

No ``pyhf.Model``, no ``pyhf.Workspace`` on the way: the spec is checked by the compiled-in
schema checks of :mod:`histgym.schema` (pyhf's ``jsonschema`` validation runs only to
report an error), then compiled by :mod:`histgym.build`.  The layout is pyhf's own
``_ModelConfig``; ``histgym.workspace.build_pyhf_model`` + ``histgym.compile`` remain the
reference path the tests compare with.
"""

from __future__ import annotations

import contextlib
import gc
import json
from collections.abc import Iterator, Mapping, Sequence
from typing import Any

import jsonpatch
import pyhf

from . import schema, spec_checks
from .build import Names, NotPlain, assemble, blocks_of, channels_sane, observed_data, select_measurement
from .errors import WorkspaceError
from .model import Model
from .workspace import (
    WorkspaceLike,
    _check_measurement,
    _check_modifier_settings,
    _check_numbers,
    _to_patch,
    _validate,
    read_spec,
)

__all__ = ["build_model", "checked_spec"]


def _read(workspace: WorkspaceLike) -> dict[str, Any]:
    """Parse a workspace with :func:`histgym.workspace.read_spec` (which refuses duplicate keys)."""
    return read_spec(workspace)


def _plain(doc: Any) -> Any:
    """``doc`` as plain JSON data (tuples and numpy arrays/scalars become lists/floats)."""

    def default(x: Any) -> Any:
        if hasattr(x, "tolist"):
            return x.tolist()
        raise TypeError(f"{type(x).__name__} is not JSON data")

    return json.loads(json.dumps(doc, default=default))


def checked_spec(workspace: WorkspaceLike, samples_too: bool = True) -> dict[str, Any]:
    """The workspace as a dict, valid under pyhf's ``workspace.json`` and with finite numbers.

    The dict is not copied (the model refers to the caller's lists) unless it holds
    non-JSON types (tuples, numpy arrays) that pyhf's validator accepts: then it is
    converted to plain JSON data.  ``samples_too=False`` leaves the samples' content to the
    caller (:func:`histgym.build.make_block` checks it while compiling).

    Raises:
        WorkspaceError: malformed JSON, schema violation (pyhf's message and JSON path),
            non-finite yields or invalid observations.
    """
    spec = _read(workspace)
    if not schema.fast_valid(spec, "workspace.json", samples_too):
        _validate(spec)  # pyhf's validator: raises with its message, or accepts
        spec = _plain(spec)
    if samples_too:
        _check_numbers(spec)
    return spec


def _blocks(names: Names, channel_specs: Any, on_fail: Any) -> tuple[list[str], dict[str, list[Any]], Any]:
    try:
        chans, by = blocks_of(names, channel_specs)
        return chans, by, channel_specs
    except NotPlain:
        on_fail()  # pyhf's validator raises here on an invalid sample
    plain = _plain(channel_specs)
    try:
        chans, by = blocks_of(names, plain)
    except NotPlain:  # pragma: no cover - pyhf accepted what plain JSON checks refuse
        raise WorkspaceError("workspace accepted by pyhf's schema but not understood by histgym") from None
    return chans, by, plain


def _fast_blocks(names: Names, channel_specs: Any, observations: Any) -> tuple[list[str], dict[str, list[Any]], Any] | None:
    """The blocks of a plainly valid spec that passes every semantic check, in one pass;
    ``None`` on any doubt (the caller then runs the full checks, which name the problem)."""
    try:
        chans, by = blocks_of(names, channel_specs)
        obs = {o["name"]: o["data"] for o in observations}
    except (NotPlain, WorkspaceError, KeyError, TypeError, ValueError, IndexError, AttributeError, OverflowError):
        return None
    if not channels_sane(channel_specs, by, obs):
        return None
    return chans, by, channel_specs


def _checked_blocks(
    names: Names, spec: Mapping[str, Any], modelspec: Mapping[str, Any], patched: bool
) -> tuple[list[str], dict[str, list[Any]], Any]:
    """histgym's semantic checks (bin counts against the observations, finite numbers, JSON
    paths in the messages), then the blocks: the kernels rely on the checks for their bounds."""
    try:
        _check_numbers({"channels": modelspec["channels"], "observations": spec["observations"]})
    except (WorkspaceError, KeyError, TypeError, ValueError, IndexError, AttributeError) as err:
        if not patched:
            _validate(spec)  # a schema violation is reported as pyhf reports it, first
        if isinstance(err, WorkspaceError):
            raise
        msg = f"invalid workspace ({type(err).__name__}: {err})"
        raise WorkspaceError(msg) from err
    if patched:
        return _blocks(names, modelspec["channels"], lambda: None)
    return _blocks(names, modelspec["channels"], lambda: _validate(spec))


@contextlib.contextmanager
def paused_gc() -> Iterator[None]:
    """Pause Python's cyclic garbage collector (a large JSON document allocates ~10^5 containers,
    which triggers full collections that cost more than the build; nothing here makes cycles)."""
    enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if enabled:
            gc.enable()


def build_model(
    workspace: WorkspaceLike,
    *,
    measurement: str | None = None,
    patches: Sequence[Any] | None = None,
    modifier_settings: Mapping[str, Mapping[str, str]] | None = None,
) -> Model:
    """Compile a workspace into a :class:`histgym.Model` (see :func:`histgym.from_pyhf`).

    Raises:
        WorkspaceError: as :func:`histgym.from_pyhf`.
    """
    with paused_gc():
        return _build_model(workspace, measurement, patches, modifier_settings)


def _build_model(
    workspace: WorkspaceLike,
    measurement: str | None,
    patches: Sequence[Any] | None,
    modifier_settings: Mapping[str, Mapping[str, str]] | None,
) -> Model:
    spec = checked_spec(workspace, samples_too=False)
    if modifier_settings is not None:
        _check_modifier_settings(modifier_settings)
    meas = select_measurement(spec, measurement)
    modelspec: dict[str, Any] = {"channels": spec["channels"], "parameters": meas["config"]["parameters"]}
    patch_objs = [_to_patch(p) for p in (patches or [])]
    if patch_objs:
        try:
            for patch in patch_objs:
                modelspec = jsonpatch.JsonPatch(patch).apply(modelspec)
            if not schema.fast_valid(modelspec, "model.json"):
                pyhf.schema.validate(modelspec, "model.json")
        except pyhf.exceptions.InvalidSpecification as err:
            path = getattr(err, "path", "")
            msg = f"patched model violates the pyhf schema at {path or '<root>'}: {err.parent.message}"
            raise WorkspaceError(msg, path=path) from err
        except (jsonpatch.JsonPatchException, jsonpatch.JsonPointerException) as err:
            raise WorkspaceError(f"patch does not apply to the workspace: {err}") from err
    names = Names()
    fast = _fast_blocks(names, modelspec["channels"], spec["observations"])
    if fast is not None:
        channels, by_channel, chan_specs = fast
        spec_checks.check_observations(spec)  # what _check_numbers checks after the channels
    else:  # something is off: the full checks, in their order, name it
        names = Names()
        channels, by_channel, chan_specs = _checked_blocks(names, spec, modelspec, bool(patch_objs))
    has_lumi = any(b.has_lumi for c in channels for b in by_channel[c])
    ppath = _check_measurement(modelspec, [m["name"] for m in spec["measurements"]], meas, has_lumi)
    out = assemble(
        names,
        channels,
        by_channel,
        chan_specs,
        modelspec.get("parameters", []),
        meas["config"]["poi"],
        modifier_settings,
    )
    spec_checks.check_measurement_config(modelspec.get("parameters", []), out.config, ppath)
    return Model(out.config, out.spec, observed_data(spec, out.config), out.compiled)
