"""Spec layer: pyhf's parameter layout of a workspace, computed without building pyhf's Model.

pyhf's ``Model`` walks every (channel, sample, modifier) combination of the workspace, which
for large combinations is quadratic (75-120 s for the 1319-parameter stress workspace).  The
layout itself only needs the combinations that exist: this module collects pyhf's own
per-modifier parameter requirements (the ``required_parset`` functions of
``pyhf.modifiers``) in the order pyhf's builders would, then hands them to pyhf's own
``_finalize_parameters_specs`` / ``_create_parameters_from_spec`` and ``_ModelConfig``.
The result is pyhf's ``_ModelConfig`` object itself; ``tests/test_layout.py`` checks it
against pyhf's Model on every workspace.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

import pyhf
import pyhf.modifiers
import pyhf.pdf

from .errors import WorkspaceError

__all__ = ["model_config"]

_TYPE_ORDER = list(pyhf.modifiers.histfactory_set)  # pyhf's builder order
_REQUIRED = {
    t: getattr(pyhf.modifiers, t).required_parset for t in _TYPE_ORDER if t != "staterror"
}


def _check_lengths(ci: int, si: int, channel: str, sample: Mapping[str, Any], nbins: int) -> None:
    where = f"channels[{ci}].samples[{si}]"
    if len(sample["data"]) != nbins:
        msg = (
            f"samples of channel {channel!r} disagree on the number of bins: {sample['name']!r} "
            f"has {len(sample['data'])}, the channel's first sample {nbins} ({where}.data)"
        )
        raise WorkspaceError(msg, path=f"{where}.data")
    for mi, mod in enumerate(sample["modifiers"]):
        fields: list[tuple[str, Any]] = []
        if mod["type"] == "histosys":
            fields = [("hi_data", mod["data"]["hi_data"]), ("lo_data", mod["data"]["lo_data"])]
        elif mod["type"] in ("staterror", "shapesys"):
            fields = [("", mod["data"])]
        for key, values in fields:
            path = f"{where}.modifiers[{mi}].data" + (f".{key}" if key else "")
            if len(values) != nbins:
                msg = (
                    f"{mod['type']} modifier {mod['name']!r} on sample {sample['name']!r} of channel "
                    f"{channel!r} has {len(values)} values for {nbins} bins ({path})"
                )
                raise WorkspaceError(msg, path=path)
            if not all(math.isfinite(v) for v in values):
                raise WorkspaceError(f"non-finite value in {path}", path=path)


def model_config(
    modelspec: Mapping[str, Any],
    poi_name: str | None,
    modifier_settings: Mapping[str, Mapping[str, str]] | None = None,
) -> Any:
    """pyhf's ``_ModelConfig`` for ``modelspec`` ({"channels", "parameters"}), built sparsely.

    Raises:
        WorkspaceError: inconsistent bin counts, a non-shareable modifier (shapesys) used
            twice, conflicting definitions of a shared parameter, a bad parameter config.
    """
    kwargs = {}
    if modifier_settings is not None:
        kwargs["modifier_settings"] = {k: dict(v) for k, v in modifier_settings.items()}
    config = pyhf.pdf._ModelConfig(modelspec, **kwargs)
    mod_rank = {m: i for i, m in enumerate(config.modifiers)}
    samples: dict[tuple[str, str], Mapping[str, Any]] = {}
    seen_shapesys: set[str] = set()
    for ci, ch in enumerate(modelspec["channels"]):
        for si, s in enumerate(ch["samples"]):
            _check_lengths(ci, si, ch["name"], s, config.channel_nbins[ch["name"]])
            samples[(ch["name"], s["name"])] = s
            local: set[str] = set()
            for mod in s["modifiers"]:
                if mod["type"] == "shapesys":
                    if mod["name"] in seen_shapesys or mod["name"] in local:
                        msg = (
                            f"shapesys {mod['name']!r} on sample {s['name']!r} in channel "
                            f"{ch['name']!r} reuses a name: shapesys parameters cannot be shared"
                        )
                        raise WorkspaceError(msg)
                    local.add(mod["name"])
            seen_shapesys |= local

    reqs: dict[str, dict[str, list[dict[str, Any]]]] = {t: {} for t in _TYPE_ORDER}
    staterror_names = [m for m, t in config.modifiers if t == "staterror"]
    for c in config.channels:
        for s in config.samples:
            sample = samples.get((c, s))
            if sample is None:
                continue
            mods = sorted(sample["modifiers"], key=lambda m: mod_rank[(m["name"], m["type"])])
            for mod in mods:
                t = mod["type"]
                if t != "staterror":
                    reqs[t].setdefault(mod["name"], [_REQUIRED[t](sample["data"], mod["data"])])
    for name in staterror_names:
        reqs["staterror"][name] = [_staterror_parset(name, config, samples)]

    required: dict[str, list[dict[str, Any]]] = {}
    for t in _TYPE_ORDER:
        for pname, req_list in reqs[t].items():
            required.setdefault(pname, [])
            required[pname] += req_list
    try:
        final = pyhf.pdf._finalize_parameters_specs(modelspec.get("parameters", []), required)
        sets, auxdata, auxdata_order = pyhf.pdf._create_parameters_from_spec(final)
        if not required:
            raise pyhf.exceptions.InvalidModel("No parameters specified for the Model.")
        config.set_parameters(sets)
        config.set_auxinfo(auxdata, auxdata_order)
        if poi_name is not None:
            config.set_poi(poi_name)
    except (pyhf.exceptions.InvalidModel, pyhf.exceptions.InvalidNameReuse) as err:
        raise WorkspaceError(f"invalid model: {err}") from err
    return config


def _staterror_parset(name: str, config: Any, samples: Mapping[tuple[str, str], Any]) -> dict[str, Any]:
    """pyhf's staterror widths: sqrt(sum_s u_s^2) / sum_s nominal_s over the masked bins."""
    members = [
        s
        for s in config.samples
        if any(
            m["type"] == "staterror" and m["name"] == name
            for c in config.channels
            for m in samples.get((c, s), {"modifiers": []})["modifiers"]
        )
    ]
    sigmas: list[float] = []
    for c in config.channels:
        nb = config.channel_nbins[c]
        has = {
            s: next(
                (m for m in samples[(c, s)]["modifiers"] if m["type"] == "staterror" and m["name"] == name),
                None,
            )
            for s in config.samples
            if (c, s) in samples
        }
        if not any(v is not None for v in has.values()):
            continue
        for i in range(nb):
            nomsall = sum(float(samples[(c, s)]["data"][i]) for s in members if (c, s) in samples)
            sq = 0.0
            for s, mod in has.items():
                if mod is not None and nomsall > 0:
                    sq += (float(mod["data"][i]) / nomsall) ** 2
            sigmas.append(math.sqrt(sq))
    fixed = [v == 0 for v in sigmas]
    sigmas = [1.0 if f else v for v, f in zip(sigmas, fixed)]
    return pyhf.modifiers.staterror.required_parset(sigmas, fixed)
