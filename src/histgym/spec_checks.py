"""Spec layer: semantic checks of a schema-valid workspace, each error naming its JSON path.

The pyhf schema checks the structure of a workspace; it admits numbers and names that make
the model meaningless or the compiled kernels unsafe.  This module rejects them once, at
load time, with a :class:`~histgym.errors.WorkspaceError` whose ``path`` attribute is the
JSON path of the offending field (e.g. ``observations[0].data``):

* observations: one per channel, of the channel's number of bins (pyhf raises
  ``InvalidPdfData`` later; histgym's kernels index the data by bin), finite counts >= 0,
  no observation for an unknown channel, no duplicate;
* names: duplicate channels, samples in a channel, modifiers (same name and type) on a
  sample, measurements and parameter configurations;
* numbers: every number finite and representable as float64 (no ``NaN``, ``Infinity`` or
  integer literals such as ``1e400`` written out), normsys ``hi``/``lo`` > 0, staterror and
  shapesys uncertainties >= 0, no bin whose total nominal yield is negative, no bin with
  observed events where every sample predicts exactly zero (also under every histosys);
* measurement parameter configuration: finite ``inits``
  inside ``bounds``, ``lower <= upper``, ``sigmas`` > 0, a configuration (``auxdata`` and
  ``sigmas``) for every ``lumi`` modifier, lengths matching the parameter set.

Every function here is plain Python over the JSON structure (numbers checked as NumPy arrays),
called by :func:`histgym.workspace.build_pyhf_model`.

Two things pyhf accepts and published likelihoods contain are not errors but are logged as
warnings on the ``"histgym"`` logger, naming the JSON path: an observation for a channel the
workspace does not have (pruned channels), and a parameter configuration for a parameter
that is not a modifier of the model (e.g. a background-only workspace configuring a
signal patch's normalisation).  Neither is used.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from .errors import WorkspaceError, did_you_mean

log = logging.getLogger("histgym")

__all__ = [
    "check_observations",
    "check_model_spec",
    "check_parameter_numbers",
    "check_measurement_config",
    "check_lumi",
]


def _fail(msg: str, path: str) -> WorkspaceError:
    return WorkspaceError(f"{msg} ({path})", path=path)


def _float(v: Any, path: str, owner: str = "", noun: str = "number") -> float:
    """``v`` as a finite float, or raise naming ``path`` (and ``owner``, e.g. the sample)."""
    who = f"{owner} has " if owner else ""
    if isinstance(v, bool) or not isinstance(v, (int, float)):
        raise _fail(f"{who}a {noun} that is not a number: {type(v).__name__} {v!r:.40}", path)
    try:
        x = float(v)
    except OverflowError:
        msg = f"{who}a {noun} too large for a float64: {str(v)[:20]}... ({len(str(v))} digits)"
        raise _fail(msg, path) from None
    if not math.isfinite(x):
        raise _fail(f"{who}a non-finite {noun} {x}", path)
    return x


def _array(values: Any, path: str, owner: str = "", noun: str = "value", pos: str = "entry") -> np.ndarray:
    """A list of numbers as float64 [n], finite, or raise naming the first bad entry."""
    try:
        arr = np.asarray(values, dtype=np.float64)
        ok = arr.ndim == 1 and bool(np.all(np.isfinite(arr)))
    except (OverflowError, TypeError, ValueError):
        ok = False
    if not ok:
        if not isinstance(values, Sequence) or isinstance(values, str):
            raise _fail(f"expected a list of numbers, got {type(values).__name__}", path)
        for i, v in enumerate(values):
            _float(v, f"{path}[{i}]", owner, f"{noun} in {pos} {i}:")
        raise _fail("expected a flat list of numbers", path)  # pragma: no cover - defensive
    return arr


def _duplicates(names: Sequence[Any]) -> list[tuple[int, Any]]:
    seen: set[Any] = set()
    out = []
    for i, n in enumerate(names):
        if n in seen:
            out.append((i, n))
        seen.add(n)
    return out


def check_observations(spec: Mapping[str, Any]) -> None:
    """Check the workspace's observations against its channels (count, names, numbers).

    Raises:
        WorkspaceError: duplicate or unknown observation names, a wrong number of bins,
            non-finite or negative counts; the message names the channel and JSON path.
    """
    nbins = {ch["name"]: len(ch["samples"][0]["data"]) for ch in spec.get("channels", [])}
    names = [o["name"] for o in spec.get("observations", [])]
    for i, name in _duplicates(names):
        raise _fail(f"two observations for channel {name!r}", f"observations[{i}].name")
    for io, obs in enumerate(spec.get("observations", [])):
        name = obs["name"]
        path = f"observations[{io}].data"
        if name not in nbins:  # pyhf ignores it (published workspaces with pruned channels)
            log.warning(
                "observation %r names no channel of the workspace %s; it is not used (%s).%s",
                name, sorted(nbins), f"observations[{io}]", did_you_mean(name, nbins),
            )  # fmt: skip
            continue
        data = _array(obs["data"], path, f"observation of channel {name!r}", "count", "bin")
        if data.size != nbins[name]:
            msg = (
                f"observation of channel {name!r} has {data.size} bins but the channel has "
                f"{nbins[name]} (pyhf raises InvalidPdfData on this workspace)"
            )
            raise _fail(msg, path)
        bad = np.flatnonzero(data < 0)
        if bad.size:
            msg = (
                f"observation of channel {name!r} has a negative count {data[bad[0]]} in bin "
                f"{bad[0]}: counts must be finite and >= 0"
            )
            raise _fail(msg, f"{path}[{bad[0]}]")


def check_model_spec(
    modelspec: Mapping[str, Any], observations: Mapping[str, Sequence[float]] | None = None
) -> None:
    """Check channels, samples and modifiers of a model spec ({"channels", ...}).

    Args:
        modelspec: the channels (patches applied) and the measurement's parameters.
        observations: observed counts per channel name, to refuse bins where every sample
            predicts zero events but events were observed; defaults to no such check.

    Raises:
        WorkspaceError: duplicate names, non-finite numbers, normsys factors <= 0, negative
            uncertainties, negative bin totals, observed events where nothing is expected.
    """
    channels = modelspec.get("channels", [])
    for i, name in _duplicates([ch["name"] for ch in channels]):
        raise _fail(f"channel {name!r} is defined twice", f"channels[{i}].name")
    for ic, ch in enumerate(channels):
        cname = ch["name"]
        samples = ch["samples"]
        for i, name in _duplicates([s["name"] for s in samples]):
            msg = f"sample {name!r} appears twice in channel {cname!r}"
            raise _fail(msg, f"channels[{ic}].samples[{i}].name")
        nb = len(samples[0]["data"]) if samples else 0
        total = np.zeros(nb)
        shifted: list[np.ndarray] = []
        for isamp, s in enumerate(samples):
            where = f"channels[{ic}].samples[{isamp}]"
            data = _array(s["data"], f"{where}.data", f"sample {s['name']!r} of channel {cname!r}", "yield", "bin")
            if data.size != nb:
                msg = (
                    f"samples of channel {cname!r} disagree on the number of bins: "
                    f"{s['name']!r} has {data.size}, the channel's first sample {nb}"
                )
                raise _fail(msg, f"{where}.data")
            total += data
            mods = s.get("modifiers", [])
            for i, key in _duplicates([(m["name"], m["type"]) for m in mods]):
                msg = f"modifier {key[0]!r} of type {key[1]!r} appears twice on sample {s['name']!r}"
                raise _fail(msg, f"{where}.modifiers[{i}]")
            for im, mod in enumerate(mods):
                mpath = f"{where}.modifiers[{im}].data"
                _check_modifier(mod, mpath, s["name"], cname, data, shifted)
        bad = np.flatnonzero(total < 0)
        if bad.size:
            msg = (
                f"bin {bad[0]} of channel {cname!r} has a negative total nominal yield "
                f"{total[bad[0]]:.6g}: a Poisson mean must be >= 0"
            )
            raise _fail(msg, f"channels[{ic}].samples")
        obs = None if observations is None else observations.get(cname)
        if obs is not None and len(obs) == nb:
            zero = total == 0.0
            for sh in shifted:
                zero &= sh == 0.0
            bad = np.flatnonzero(zero & (np.asarray(obs, dtype=np.float64) > 0))
            if bad.size:
                msg = (
                    f"bin {bad[0]} of channel {cname!r} has {obs[bad[0]]} observed events but "
                    "every sample predicts exactly 0 there (the likelihood is 0 for any "
                    "parameters)"
                )
                raise _fail(msg, f"channels[{ic}].samples")


def _check_modifier(
    mod: Mapping[str, Any], path: str, sample: str, channel: str, nominal: np.ndarray,
    shifted: list[np.ndarray],
) -> None:  # fmt: skip
    t = mod["type"]
    d = mod.get("data")
    what = f"{t} modifier {mod['name']!r} on sample {sample!r} of channel {channel!r}"
    if t == "normsys":
        for key in ("hi", "lo"):
            v = _float(d[key], f"{path}.{key}", what, key)
            if v <= 0.0:
                msg = f"{what} has {key} = {v}: normsys factors must be > 0"
                raise _fail(msg, f"{path}.{key}")
    elif t == "histosys":
        for key in ("hi_data", "lo_data"):
            arr = _array(d[key], f"{path}.{key}", what, key, "bin")
            if arr.size != nominal.size:
                msg = f"{what} has {arr.size} values for {nominal.size} bins"
                raise _fail(msg, f"{path}.{key}")
            shifted.append(arr - nominal)
    elif t in ("staterror", "shapesys"):
        arr = _array(d, path, what, "uncertainty", "bin")
        if arr.size != nominal.size:
            raise _fail(f"{what} has {arr.size} values for {nominal.size} bins", path)
        bad = np.flatnonzero(arr < 0)
        if bad.size:
            msg = f"{what} has a negative uncertainty {arr[bad[0]]} in bin {bad[0]}"
            raise _fail(msg, f"{path}[{bad[0]}]")


def check_parameter_numbers(parameters: Sequence[Mapping[str, Any]], path: str) -> None:
    """Check the numbers of a measurement's parameter configuration (before pyhf sees them).

    Args:
        parameters: ``measurement["config"]["parameters"]`` (patches applied).
        path: JSON path of ``parameters`` (e.g. ``measurements[0].config.parameters``).

    Raises:
        WorkspaceError: duplicate entries, non-finite numbers, ``lower > upper``,
            ``sigmas`` <= 0.
    """
    names = [p["name"] for p in parameters]
    for i, name in _duplicates(names):
        raise _fail(f"parameter {name!r} is configured twice", f"{path}[{i}].name")
    for ip, par in enumerate(parameters):
        name = par["name"]
        where = f"{path}[{ip}]"
        for key in ("inits", "auxdata", "sigmas", "factors"):
            if key in par:
                arr = _array(par[key], f"{where}.{key}", f"parameter {name!r}", key)
                if key in ("sigmas", "factors"):
                    for k in np.flatnonzero(arr <= 0.0)[:1]:
                        msg = f"parameter {name!r} has {key} {arr[k]}: must be > 0"
                        raise _fail(msg, f"{where}.{key}[{k}]")
        for k, b in enumerate(par.get("bounds") or []):
            lo = _float(b[0], f"{where}.bounds[{k}][0]", f"parameter {name!r}", "lower bound")
            hi = _float(b[1], f"{where}.bounds[{k}][1]", f"parameter {name!r}", "upper bound")
            if lo > hi:
                msg = f"parameter {name!r} has inverted bounds [{lo}, {hi}]"
                raise _fail(msg, f"{where}.bounds[{k}]")


def check_measurement_config(
    parameters: Sequence[Mapping[str, Any]], config: Any, path: str
) -> None:
    """Check a measurement's parameter configuration against pyhf's layout ``config``.

    Args:
        parameters: ``measurement["config"]["parameters"]`` (patches applied).
        config: pyhf's ``_ModelConfig`` of the model.
        path: JSON path of ``parameters`` (e.g. ``measurements[0].config.parameters``).

    Raises:
        WorkspaceError: lengths not matching the parameter set, an init outside its bounds.
    """
    known = list(config.par_order)
    names = [p["name"] for p in parameters]
    for ip, par in enumerate(parameters):
        name = par["name"]
        where = f"{path}[{ip}]"
        if name not in config.par_map:  # pyhf ignores it (e.g. a config for a patch's modifier)
            log.warning(
                "the measurement configures parameter %r, which is not a modifier of the model; "
                "the configuration is not used (%s).%s", name, f"{where}.name",
                did_you_mean(name, known),
            )  # fmt: skip
            continue
        n = int(config.param_set(name).n_parameters)
        for key in ("inits", "auxdata", "sigmas", "factors", "bounds"):
            if key in par and len(par[key]) != n:
                msg = f"parameter {name!r} has {n} component(s) but {key} has {len(par[key])}"
                raise _fail(msg, f"{where}.{key}")
    # inits must lie inside the bounds pyhf will use (configured or the modifier's default)
    init = config.suggested_init()
    bnds = config.suggested_bounds()
    for i, (x, (lo, hi)) in enumerate(zip(init, bnds, strict=True)):
        if not (math.isfinite(x) and lo <= x <= hi):
            pname = config.par_names[i]
            base = pname.split("[")[0]
            idx = names.index(base) if base in names else None
            where = f"{path}[{idx}].inits" if idx is not None else path
            msg = f"the initial value {x} of parameter {pname!r} is outside its bounds [{float(lo)}, {float(hi)}]"
            raise _fail(msg, where)


def check_lumi(modelspec: Mapping[str, Any], path: str) -> None:
    """Every ``lumi`` modifier needs ``auxdata`` and ``sigmas`` in the measurement config.

    Raises:
        WorkspaceError: naming the modifier and ``path`` (the measurement's parameters).
    """
    configured = {p["name"]: p for p in modelspec.get("parameters", [])}
    for ic, ch in enumerate(modelspec.get("channels", [])):
        for isamp, s in enumerate(ch["samples"]):
            for im, mod in enumerate(s.get("modifiers", [])):
                if mod["type"] != "lumi":
                    continue
                par = configured.get(mod["name"], {})
                missing = [k for k in ("auxdata", "sigmas", "bounds", "inits") if k not in par]
                if missing:
                    msg = (
                        f"lumi modifier {mod['name']!r} (channels[{ic}].samples[{isamp}]."
                        f"modifiers[{im}]) needs a parameter configuration in the measurement "
                        f"with 'auxdata', 'sigmas', 'bounds' and 'inits'; missing {missing}"
                    )
                    raise _fail(msg, path)


