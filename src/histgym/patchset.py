"""Model layer: a background-only workspace compiled once, signal patches applied incrementally.

A published likelihood is a background-only workspace plus a patchset of signal points.
:class:`Background` compiles the background's samples once (:mod:`histgym.build` blocks);
:meth:`Background.model` applies one patch by compiling only the samples the patch adds or
changes and re-assembling (the parameters those samples add are inserted into pyhf's layout
where pyhf's Model would put them).  The result equals ``histgym.from_pyhf`` of the patched
workspace exactly (same packed arrays, same parameter names and order;
``tests/test_patchset.py``).

Later patches with the same structure as an earlier one (same operations, sample and
modifier names and types, bin counts) only write their numbers into a copy of that patch's
compiled model (:class:`histgym.patchfast.Template`), with the same result.

Patches that touch anything other than whole samples or their content (channel names,
observations, measurements, ``move``/``copy``/``test`` operations) fall back to a full build
of the patched workspace: same result, slower.

Example:
    >>> import histgym
    >>> from histgym.patchset import Background, read_patchset
    >>> bkg = Background("BkgOnly.json")                      # doctest: +SKIP
    >>> for patch in read_patchset("patchset.json"):          # doctest: +SKIP
    ...     model = bkg.model(patch)
"""

from __future__ import annotations

import copy
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import jsonpatch
import numpy as np
import pyhf

from . import schema
from .build import (
    Names,
    NotPlain,
    PackCache,
    ParsetCache,
    SampleBlock,
    Walk,
    assemble,
    blocks_of,
    channels_sane,
    observed_data,
    prime,
    select_measurement,
)
from .errors import UnknownName, WorkspaceError, did_you_mean
from .fastbuild import _blocks, _check_numbers, _plain, build_model, checked_spec, paused_gc
from .model import Model
from .patchfast import Template, structure
from .spec_checks import check_observations
from .workspace import WorkspaceLike, _check_modifier_settings, _validate, read_json

__all__ = ["Patch", "Background", "read_patchset"]


@dataclass(frozen=True)
class Patch:
    """One entry of a pyhf patchset.

    Attributes:
        name: the patch name (``metadata.name``), e.g. ``"C1N2_Wh_hbb_1000_0"``.
        values: its metadata values (e.g. the masses), in the order of ``labels``.
        labels: the patchset's labels for ``values`` (e.g. ``["m1", "m2"]``).
        operations: the JSON Patch (a list of operations on the workspace).
    """

    name: str
    values: tuple[Any, ...]
    labels: tuple[str, ...]
    operations: list[dict[str, Any]] = field(repr=False)


def read_patchset(patchset: Any) -> list[Patch]:
    """The patches of a pyhf patchset (dict, JSON text, path or ``pyhf.PatchSet``).

    Validated against pyhf's ``patchset.json`` schema (fast checks; pyhf's validator reports
    errors) and for unique names and values, as ``pyhf.PatchSet`` does.

    Raises:
        WorkspaceError: malformed JSON, schema violation, duplicate patch names or values.
    """
    if isinstance(patchset, pyhf.PatchSet):
        data = {
            "metadata": patchset.metadata,
            "version": patchset.version,
            "patches": [{"metadata": p.metadata, "patch": p.patch} for p in patchset.patches],
        }
    else:
        data = read_json(patchset, what="patchset")
    if not schema.fast_valid(data, "patchset.json"):
        try:
            pyhf.schema.validate(data, "patchset.json")
        except pyhf.exceptions.InvalidSpecification as err:
            path = getattr(err, "path", "")
            raise WorkspaceError(f"patchset violates the pyhf schema at {path or '<root>'}: {err.parent.message}", path=path) from err
        data = _plain(data)
    labels = tuple(data["metadata"]["labels"])
    out: list[Patch] = []
    seen_names: set[str] = set()
    seen_values: set[tuple[Any, ...]] = set()
    for i, p in enumerate(data["patches"]):
        name, values = p["metadata"]["name"], tuple(p["metadata"]["values"])
        if name in seen_names:
            raise WorkspaceError(f"patchset has two patches named {name!r} (patches[{i}])", path=f"patches[{i}]")
        if values in seen_values:
            raise WorkspaceError(f"patchset has two patches with values {list(values)} (patches[{i}])", path=f"patches[{i}]")
        if len(values) != len(labels):
            msg = f"patch {name!r} has {len(values)} values for the {len(labels)} labels {list(labels)}"
            raise WorkspaceError(msg, path=f"patches[{i}].metadata.values")
        seen_names.add(name)
        seen_values.add(values)
        out.append(Patch(name=name, values=values, labels=labels, operations=p["patch"]))
    return out


_MAX_TEMPLATES = 16  # patch structures remembered per background


class _Fallback(Exception):
    """A patch the incremental path does not handle: build the patched workspace (internal)."""


def _whole_samples(ops: Sequence[Mapping[str, Any]], located: list[tuple[int, list[str]]], touched: dict[int, dict[str, Any]]) -> bool:
    """Apply operations that add, replace or remove whole samples, inserting the patch's own
    sample dicts (not copies: the model's spec shares them with the patch).  ``False`` (and
    nothing changed) if one of them is not that simple; jsonpatch then applies them all."""
    plan = []
    sizes = {ci: len(ch["samples"]) for ci, ch in touched.items()}
    for op, (ci, rest) in zip(ops, located):
        kind, tok = op["op"], rest[0]
        n = sizes[ci]
        if kind == "add" and tok == "-":
            k = n
        elif tok.isdigit() and (tok == "0" or not tok.startswith("0")):
            k = int(tok)
        else:
            return False
        if kind == "add":
            if k > n or "value" not in op:
                return False
            sizes[ci] = n + 1
        elif kind in ("replace", "remove"):
            if k >= n or (kind == "replace" and "value" not in op):
                return False
            sizes[ci] = n - (kind == "remove")
        else:
            return False
        plan.append((kind, ci, k, op.get("value")))
    for kind, ci, k, value in plan:
        samples = touched[ci]["samples"]
        if kind == "add":
            samples.insert(k, value)
        elif kind == "replace":
            samples[k] = value
        else:
            del samples[k]
    return True


def _unescape(token: str) -> str:
    return token.replace("~1", "/").replace("~0", "~")


def _sample_ops(ops: Sequence[Mapping[str, Any]], n_channels: int) -> list[tuple[int, list[str]]] | None:
    """(channel index, remaining path tokens) per op, or None if not a sample-level patch."""
    out = []
    for op in ops:
        if op.get("op") not in ("add", "replace", "remove"):
            return None
        tokens = [_unescape(t) for t in str(op.get("path", "")).split("/")[1:]]
        if len(tokens) < 4 or tokens[0] != "channels" or tokens[2] != "samples":
            return None
        if not tokens[1].isdigit() or int(tokens[1]) >= n_channels:
            return None
        out.append((int(tokens[1]), tokens[3:]))
    return out


class Background:
    """A background-only workspace compiled once, for many signal patches.

    Args:
        workspace: the background-only workspace (dict, JSON text, path, ``pyhf.Workspace``).
        measurement: measurement name; defaults to the first one (pyhf's choice).
        modifier_settings: interpolation codes, as :func:`histgym.from_pyhf`.

    The background itself need not be a valid model on its own (its POI usually lives in
    the signal samples only).

    Raises:
        WorkspaceError: the workspace is malformed or violates the schema.
    """

    def __init__(
        self,
        workspace: WorkspaceLike,
        *,
        measurement: str | None = None,
        modifier_settings: Mapping[str, Mapping[str, str]] | None = None,
    ) -> None:
        with paused_gc():
            self._init(workspace, measurement, modifier_settings)

    def _init(
        self, workspace: WorkspaceLike, measurement: str | None, modifier_settings: Mapping[str, Mapping[str, str]] | None
    ) -> None:
        spec = checked_spec(workspace, samples_too=False)
        if modifier_settings is not None:
            _check_modifier_settings(modifier_settings)
        self._measurement_name = measurement
        self._meas = select_measurement(spec, measurement)
        self._settings = modifier_settings
        self._names = Names()
        channels, by_channel, chan_specs = _blocks(self._names, spec["channels"], lambda: _validate(spec))
        spec = dict(spec, channels=chan_specs)
        observed = {o["name"]: o["data"] for o in spec["observations"]}
        if channels_sane(chan_specs, by_channel, observed):
            check_observations(spec)  # what _check_numbers checks after the channels
        else:
            _check_numbers(spec)  # names the problem
        self._spec = spec
        self._channels = channels
        self._by_channel = by_channel
        self._rank = {c: i for i, c in enumerate(channels)}
        self._by_id: dict[int, SampleBlock] = {id(b.source): b for c in channels for b in by_channel[c]}
        self._walk = Walk.of(channels, by_channel)
        self._parsets = ParsetCache(self._meas["config"]["parameters"])
        self._packs = PackCache()
        prime(self._packs, self._names, channels, by_channel)
        self._templates: dict[Any, Template | None] = {}
        self._last: tuple[list[str], dict[str, list[SampleBlock]]] | None = None

    @property
    def spec(self) -> dict[str, Any]:
        """The background workspace (validated)."""
        return self._spec

    @property
    def measurement_name(self) -> str | None:
        """The measurement asked for (``None``: the first)."""
        return self._measurement_name

    @property
    def modifier_settings(self) -> Mapping[str, Mapping[str, str]] | None:
        """The interpolation settings asked for (``None``: pyhf's Model defaults)."""
        return self._settings

    def workspace(self, patch: Patch | Sequence[Mapping[str, Any]]) -> dict[str, Any]:
        """The patched workspace as a new dict (pyhf's ``PatchSet.apply``), for cross-checks."""
        ops = patch.operations if isinstance(patch, Patch) else list(patch)
        return jsonpatch.JsonPatch(ops).apply(self._spec)

    def model(self, patch: Patch | Sequence[Mapping[str, Any]] | None = None) -> Model:
        """The model of the background with ``patch`` applied (``None``: the background).

        Only the samples the patch adds or changes are compiled; see the module docstring.

        Raises:
            WorkspaceError: the patch does not apply, or the patched workspace is invalid.
        """
        with paused_gc():
            return self._model(patch)

    def _model(self, patch: Patch | Sequence[Mapping[str, Any]] | None) -> Model:
        ops = [] if patch is None else (patch.operations if isinstance(patch, Patch) else list(patch))
        located = _sample_ops(ops, len(self._spec["channels"]))
        if located is None:
            return self._full(ops)
        key = structure(ops) if ops and all(len(rest) == 1 for _, rest in located) else None
        tpl = self._templates.get(key) if key is not None else None
        if tpl is not None:  # an earlier patch of this structure: write the numbers only
            channels = self._whole_sample_channels(ops, located)
            if channels is not None:
                out = tpl.apply(ops, {"channels": channels, "parameters": list(self._meas["config"]["parameters"])})
                if out is not None:
                    return out
        self._last = None
        try:
            model = self._incremental(ops, located)
        except _Fallback:
            return self._full(ops)
        if key is not None and key not in self._templates and self._last is not None and len(self._templates) < _MAX_TEMPLATES:
            self._templates[key] = self._template(ops, model, *self._last)
        return model

    def _template(self, ops: list[Any], model: Model, chans: list[str], by_channel: dict[str, list[SampleBlock]]) -> Template | None:
        """The template of this patch's structure, if it reproduces ``model`` exactly."""
        observed = {o["name"]: o["data"] for o in self._spec["observations"]}
        tpl = Template(ops, chans, by_channel, model, self._parsets.user, observed)
        if not tpl.ok:
            return None
        again = tpl.apply(ops, model.spec)  # type: ignore[arg-type]
        if (
            again is None
            or not np.array_equal(again.fbuf, model.fbuf)
            or not np.array_equal(again.observed_data(), model.observed_data())
            or list(again.config.auxdata) != list(model.config.auxdata)
        ):
            return None
        return tpl

    def _whole_sample_channels(self, ops: list[Any], located: list[tuple[int, list[str]]]) -> list[Any] | None:
        """The channel list with whole samples added/replaced/removed (None: not that simple)."""
        channels, touched = self._touched_channels(located)
        if not _whole_samples(ops, located, touched) or not all(ch["samples"] for ch in touched.values()):
            return None
        return channels

    def _touched_channels(
        self, located: list[tuple[int, list[str]]]
    ) -> tuple[list[Any], dict[int, dict[str, Any]]]:
        """The background's channel list with a shallow copy (own sample list) of each channel
        a patch touches, and those copies by channel index."""
        channels = list(self._spec["channels"])
        touched: dict[int, dict[str, Any]] = {}
        for ci, _ in located:
            if ci not in touched:
                ch = channels[ci]
                touched[ci] = {"name": ch["name"], "samples": list(ch["samples"])}
                channels[ci] = touched[ci]
        return channels, touched

    def _incremental(self, ops: list[Any], located: list[tuple[int, list[str]]]) -> Model:
        channels, touched = self._touched_channels(located)
        doc = {"channels": channels}
        if all(len(rest) == 1 for _, rest in located) and _whole_samples(ops, located, touched):
            pass  # whole samples added, replaced or removed, without copying them
        else:
            self._apply_ops(doc, ops, located, touched)
        for ci, ch in touched.items():
            if not ch["samples"]:
                return self._full(ops)
        return self._assemble_patched(ops, channels, touched)

    def _apply_ops(self, doc: dict[str, Any], ops: list[Any], located: list[tuple[int, list[str]]], touched: dict[int, dict[str, Any]]) -> None:
        """Apply ``ops`` to ``doc`` with jsonpatch, copying a background sample before an
        operation changes something inside it."""
        try:
            for op, (ci, rest) in zip(ops, located):
                if len(rest) > 1:  # inside a sample: copy the sample before changing it
                    samples = touched[ci]["samples"]
                    if not rest[0].isdigit() or int(rest[0]) >= len(samples):
                        raise _Fallback
                    k = int(rest[0])
                    if id(samples[k]) in self._by_id:
                        samples[k] = copy.deepcopy(samples[k])
                jsonpatch.JsonPatch([op]).apply(doc, in_place=True)
        except (jsonpatch.JsonPatchException, jsonpatch.JsonPointerException) as err:
            raise WorkspaceError(f"patch does not apply to the workspace: {err}") from err

    def _assemble_patched(self, ops: list[Any], channels: list[Any], touched: dict[int, dict[str, Any]]) -> Model:
        try:
            chans, by_channel = blocks_of(self._names, channels, reuse=self._by_id)
        except NotPlain:
            return self._full(ops)
        fresh = [b.source for c in chans for b in by_channel[c] if id(b.source) not in self._by_id]
        if fresh:  # the semantic checks on every channel the patch touched (whole channels)
            touched_specs = list(touched.values())
            if not channels_sane(touched_specs, by_channel):
                _check_numbers({"channels": touched_specs})  # names the problem
        kept = sum(len(v) for v in by_channel.values()) - sum(
            1 for c in chans for b in by_channel[c] if id(b.source) not in self._by_id
        )
        if kept == len(self._by_id):  # only additions: extend the background's walk
            new = [(self._rank[c], b) for c in chans for b in by_channel[c] if id(b.source) not in self._by_id]
            walk = self._walk.extended(new)
        else:
            walk = None
        out = assemble(
            self._names,
            chans,
            by_channel,
            channels,
            self._meas["config"]["parameters"],
            self._meas["config"]["poi"],
            self._settings,
            walk=walk,
            parsets=self._parsets,
            packs=self._packs,
        )
        self._last = (chans, by_channel)
        return Model(out.config, out.spec, observed_data(self._spec, out.config), out.compiled)

    def _full(self, ops: list[Any]) -> Model:
        return build_model(self.workspace(ops), measurement=self._measurement_name, modifier_settings=self._settings)

    def models(self, patches: Sequence[Patch]) -> Iterator[tuple[Patch, Model]]:
        """``(patch, model)`` for each patch, in order."""
        for p in patches:
            yield p, self.model(p)


def select_patches(patches: Sequence[Patch], names: Sequence[str] | None) -> list[Patch]:
    """The patches named in ``names`` (all if None), in the patchset's order.

    Raises:
        UnknownName: a name that is not in the patchset.
    """
    if not names:
        return list(patches)
    known = {p.name for p in patches}
    for n in names:
        if n not in known:
            raise UnknownName(f"unknown patch {n!r}." + did_you_mean(n, sorted(known)))
    wanted = set(names)
    return [p for p in patches if p.name in wanted]
