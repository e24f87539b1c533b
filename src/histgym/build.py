"""Model layer: the fast build path, from a validated spec to a :class:`histgym.Model`.

A workspace is compiled in two stages:

1. every (channel, sample) becomes a :class:`SampleBlock` (numpy arrays of its nominal
   yields and modifier entries, with parameters referred to by *name id*, not index);
2. :func:`assemble` computes pyhf's parameter layout from the blocks (pyhf's builder walk,
   then pyhf's own ``_finalize_parameters_specs`` / ``_create_parameters_from_spec`` and a
   ``pyhf.pdf._ModelConfig``) and concatenates the blocks into the packed arrays of
   :mod:`histgym._kernels.layout`, mapping name ids to parameter indices in one gather.

Stage 1 is the costly one and depends on one sample only, so a signal patch re-blocks only
the samples it touches (:class:`histgym.patchset.Background`); stage 2 is a few numpy
concatenations.  The packed arrays are the same as :func:`histgym.compile.compile_model`'s
(cells ordered by bin then sample, entries in the spec's modifier order), and the layout is
pyhf's ``model.config`` (``tests/test_build.py`` and ``tests/test_layout.py`` check both).
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Mapping, Sequence
from itertools import chain
from dataclasses import dataclass
from typing import Any, Callable

import numpy as np
import pyhf
import pyhf.exceptions
import pyhf.modifiers
import pyhf.pdf

from ._kernels.layout import pack
from .compile import Compiled, _interp_codes, code4_coefficients
from .errors import UnknownName, WorkspaceError, did_you_mean
from .layout import _check_lengths

__all__ = ["Names", "SampleBlock", "make_block", "assemble", "Assembled", "DEFAULT_MODIFIER_SETTINGS"]

_TYPE_ORDER = list(pyhf.modifiers.histfactory_set)  # pyhf's builder order
_SCALAR_REQ = {
    t: getattr(pyhf.modifiers, t).required_parset([0.0], None)
    for t in ("normfactor", "normsys", "histosys", "lumi")
}
#: pyhf's Model defaults (the modifier classes' own defaults are code1/code0)
DEFAULT_MODIFIER_SETTINGS = {"normsys": {"interpcode": "code4"}, "histosys": {"interpcode": "code4p"}}

_SCALAR, _PERBIN, _STAT = 0, 1, 2


class Names:
    """Interns parameter names as small integers (shared by a background and its patches)."""

    def __init__(self) -> None:
        self.ids: dict[str, int] = {}

    def __call__(self, name: str) -> int:
        i = self.ids.get(name)
        if i is None:
            i = self.ids[name] = len(self.ids)
        return i

    def __len__(self) -> int:
        return len(self.ids)


@dataclass(eq=False)
class SampleBlock:
    """One sample of one channel, compiled independently of the rest of the model.

    Attributes:
        channel, sample: names; ``source`` is the spec's sample dict it was made from.
        nominal: float64 [nb] nominal yields.
        walk: the sample's distinct (modifier name, type) pairs sorted as pyhf walks them.
        fac_ids, fac_mode: int64 [k] name id and index mode (0 scalar, 1 one parameter per
            bin, 2 staterror) of each multiplicative entry, in the spec's modifier order.
        fac_ns: bool [k] the entry is a normsys; ``ns_hi``/``ns_lo`` float64 [k] its factors
            (1 elsewhere) and ``ns_coef`` float64 [k, 6] its code4 coefficients.
        add_ids: int64 [h] name ids of the histosys entries; ``hs_up``/``hs_dn`` float64
            [nb, h]: ``hi - nominal`` and ``nominal - lo`` per bin.
        staterror: name -> float64 [nb] absolute uncertainties of each staterror modifier.
        shapesys: name -> pyhf's parameter requirement of each shapesys modifier.
    """

    channel: str
    sample: str
    source: Any
    nominal: np.ndarray
    walk: list[tuple[str, str]]
    fac_ids: np.ndarray
    fac_mode: np.ndarray
    fac_ns: np.ndarray
    ns_hi: np.ndarray
    ns_lo: np.ndarray
    ns_coef: np.ndarray
    add_ids: np.ndarray
    hs_up: np.ndarray
    hs_dn: np.ndarray
    staterror: dict[str, np.ndarray]
    shapesys: dict[str, dict[str, Any]]

    @property
    def nbins(self) -> int:
        """Number of bins of the block's channel."""
        return int(self.nominal.size)


class NotPlain(Exception):
    """A sample failed the fast schema checks: let pyhf's validator decide (internal)."""


_NUM = frozenset({int, float})
_STR = frozenset({str})
_LIST = frozenset({list})
_TYPES = frozenset(_TYPE_ORDER)
_MOD_KEYS = frozenset({"name", "type", "data"})
_SAMPLE_KEYS = frozenset({"name", "data", "modifiers"})
_HISTO_KEYS = frozenset({"lo_data", "hi_data"})
_NS_KEYS = frozenset({"lo", "hi"})


def make_block(
    names: Names, channel: str, sample: Mapping[str, Any], nbins: int, ci: int = 0, si: int = 0
) -> SampleBlock:
    """Compile one sample of ``channel`` into a :class:`SampleBlock`, checking it on the way.

    The sample is checked against pyhf's sample schema in the same pass (plain JSON data
    only); a violation raises :class:`NotPlain` for the caller to hand the document to
    pyhf's validator.

    Raises:
        NotPlain: the sample is not plainly valid under pyhf's schema.
        WorkspaceError: bin counts disagree with the channel (``nbins``), non-finite values
            in modifier data, or a shapesys name used twice on the sample.
    """
    if type(sample) is not dict or sample.keys() != _SAMPLE_KEYS:
        raise NotPlain
    data, mods = sample["data"], sample["modifiers"]
    if type(sample["name"]) is not str or type(data) is not list or not data or not set(map(type, data)) <= _NUM:
        raise NotPlain
    if type(mods) is not list or not all(type(m) is dict and len(m) == 3 for m in mods):
        raise NotPlain
    try:  # columns of the modifier list; three keys present + three keys in all = schema's keys
        mtypes = [m["type"] for m in mods]
        mnames = [m["name"] for m in mods]
        mdata = [m["data"] for m in mods]
    except KeyError:
        raise NotPlain from None
    if mods and not set(map(type, mnames)) <= _STR:
        raise NotPlain
    tset = set(mtypes)
    if not tset <= _TYPES or ("lumi" in tset and any(t == "lumi" and n != "lumi" for t, n in zip(mtypes, mnames))):
        raise NotPlain
    ids = names.ids
    for n in mnames:
        if n not in ids:
            names(n)
    h_k = [k for k, t in enumerate(mtypes) if t == "histosys"]
    f_k = [k for k, t in enumerate(mtypes) if t != "histosys"]
    hd = [mdata[k] for k in h_k]
    if not all(type(d) is dict and len(d) == 2 for d in hd):
        raise NotPlain
    try:
        his = [d["hi_data"] for d in hd]
        los = [d["lo_data"] for d in hd]
    except KeyError:
        raise NotPlain from None
    ok_len = len(data) == nbins
    if hd:
        if not set(map(type, his)) | set(map(type, los)) <= _LIST:
            raise NotPlain
        if not set(map(type, chain.from_iterable(his))) | set(map(type, chain.from_iterable(los))) <= _NUM:
            raise NotPlain
        lens = set(map(len, his)) | set(map(len, los))
        if 0 in lens:
            raise NotPlain
        ok_len = ok_len and lens == {nbins}
    fac_ns = [mtypes[k] == "normsys" for k in f_k]
    ns_hi: list[float] = []
    ns_lo: list[float] = []
    staterror: dict[str, Any] = {}
    shapesys: dict[str, Any] = {}
    fac_mode: list[int] = []
    for k in f_k:
        t, md = mtypes[k], mdata[k]
        if t == "normsys":
            if type(md) is not dict or len(md) != 2:
                raise NotPlain
            try:
                hi, lo = md["hi"], md["lo"]
            except KeyError:
                raise NotPlain from None
            if type(hi) not in _NUM or type(lo) not in _NUM:
                raise NotPlain
            ns_hi.append(hi)
            ns_lo.append(lo)
            fac_mode.append(_SCALAR)
            continue
        ns_hi.append(1.0)
        ns_lo.append(1.0)
        if t == "normfactor" or t == "lumi" or t == "shapefactor":
            if md is not None:
                raise NotPlain
            fac_mode.append(_PERBIN if t == "shapefactor" else _SCALAR)
            continue
        # staterror, shapesys: a non-empty array of numbers
        if type(md) is not list or not md or not set(map(type, md)) <= _NUM:
            raise NotPlain
        ok_len = ok_len and len(md) == nbins
        mname = mnames[k]
        if t == "staterror":
            fac_mode.append(_STAT)
            staterror.setdefault(mname, md)
        else:
            fac_mode.append(_PERBIN)
            if mname in shapesys:
                msg = (
                    f"shapesys {mname!r} on sample {sample['name']!r} in channel "
                    f"{channel!r} reuses a name: shapesys parameters cannot be shared"
                )
                raise WorkspaceError(msg)
            shapesys[mname] = md
    fac_ids = [ids[mnames[k]] for k in f_k]
    add_ids = [ids[mnames[k]] for k in h_k]
    walk = set(zip(mnames, mtypes))
    if not ok_len:
        _check_lengths(ci, si, channel, sample, nbins)  # raises with the JSON path
    hi_m = np.array(his, dtype=np.float64).reshape(len(his), nbins).T
    lo_m = np.array(los, dtype=np.float64).reshape(len(los), nbins).T
    st = {k: np.array(v, dtype=np.float64) for k, v in staterror.items()}
    if not (np.isfinite(hi_m).all() and np.isfinite(lo_m).all() and all(np.isfinite(v).all() for v in st.values())):
        _check_lengths(ci, si, channel, sample, nbins)  # names the non-finite entry
    for v in shapesys.values():
        if not all(math.isfinite(x) for x in v):
            _check_lengths(ci, si, channel, sample, nbins)
    if not all(math.isfinite(v) for v in ns_hi + ns_lo):
        raise WorkspaceError(f"non-finite normsys factor on sample {sample['name']!r} of channel {channel!r}")
    nominal = np.array(data, dtype=np.float64)
    hi_arr = np.array(ns_hi, dtype=np.float64)
    lo_arr = np.array(ns_lo, dtype=np.float64)
    ns_mask = np.array(fac_ns, dtype=bool)
    coef = np.zeros((len(fac_ids), 6))
    if ns_mask.any():
        coef[ns_mask] = code4_coefficients(hi_arr[ns_mask], lo_arr[ns_mask])
    return SampleBlock(
        channel=channel,
        sample=sample["name"],
        source=sample,
        nominal=nominal,
        walk=sorted(walk),
        fac_ids=np.array(fac_ids, dtype=np.int64),
        fac_mode=np.array(fac_mode, dtype=np.int64),
        fac_ns=ns_mask,
        ns_hi=hi_arr,
        ns_lo=lo_arr,
        ns_coef=coef,
        add_ids=np.array(add_ids, dtype=np.int64),
        hs_up=hi_m - nominal[:, None],
        hs_dn=nominal[:, None] - lo_m,
        staterror=st,
        shapesys={k: pyhf.modifiers.shapesys.required_parset(data, v) for k, v in shapesys.items()},
    )


class _Lazy(Mapping):
    """A read-only mapping computed on first access (bookkeeping few callers need)."""

    def __init__(self, make: Callable[[], dict[Any, Any]]) -> None:
        self._make = make
        self._data: dict[Any, Any] | None = None

    def _get(self) -> dict[Any, Any]:
        if self._data is None:
            self._data = self._make()
        return self._data

    def __getitem__(self, key: Any) -> Any:
        return self._get()[key]

    def __iter__(self) -> Iterator[Any]:
        return iter(self._get())

    def __len__(self) -> int:
        return len(self._get())


@dataclass(frozen=True)
class Assembled:
    """Output of :func:`assemble`: pyhf's layout, the packed model and the model spec."""

    config: Any
    compiled: Compiled
    spec: dict[str, Any]


def _staterror_sigmas(
    name: str, channels: Sequence[str], by_channel: Mapping[str, list[SampleBlock]], members: set[str]
) -> tuple[list[float], dict[str, int]]:
    """pyhf's staterror widths of ``name`` and the offset of each channel's bins in the set."""
    sigmas: list[float] = []
    offsets: dict[str, int] = {}
    for c in channels:
        blocks = by_channel[c]
        if not any(name in b.staterror for b in blocks):
            continue
        offsets[c] = len(sigmas)
        nb = blocks[0].nbins
        nomsall = np.zeros(nb)
        for b in blocks:
            if b.sample in members:
                nomsall = nomsall + b.nominal
        sq = np.zeros(nb)
        safe = np.where(nomsall > 0, nomsall, 1.0)
        for b in blocks:
            u = b.staterror.get(name)
            if u is not None:
                sq = sq + np.where(nomsall > 0, (u / safe) ** 2, 0.0)
        sigmas.extend(np.sqrt(sq).tolist())
    return sigmas, offsets


def assemble(
    names: Names,
    channels: Sequence[str],
    by_channel: Mapping[str, list[SampleBlock]],
    channel_specs: Sequence[Mapping[str, Any]],
    parameters: Sequence[Mapping[str, Any]],
    poi_name: str | None,
    modifier_settings: Mapping[str, Mapping[str, str]] | None = None,
) -> Assembled:
    """pyhf's layout and histgym's packed model from compiled sample blocks.

    Args:
        names: the interner the blocks were made with.
        channels: channel names, sorted (pyhf's order).
        by_channel: channel -> its blocks sorted by sample name.
        channel_specs: the spec's channel list (kept as the model spec, in spec order).
        parameters: the measurement's parameter configurations.
        poi_name: the measurement's POI (``None``: no POI).
        modifier_settings: interpolation codes; defaults to pyhf's Model defaults.

    Raises:
        WorkspaceError: a shapesys shared between samples, conflicting or wrongly sized
            parameter configurations, an unknown POI.
    """
    settings = (
        {k: dict(v) for k, v in modifier_settings.items()}
        if modifier_settings is not None
        else {k: dict(v) for k, v in DEFAULT_MODIFIER_SETTINGS.items()}
    )
    nbins = {c: by_channel[c][0].nbins for c in channels}
    # ---- pyhf's builder walk: channels, samples, modifiers (name, type) all sorted
    reqs: dict[str, dict[str, list[dict[str, Any]]]] = {t: {} for t in _TYPE_ORDER}
    modifiers: set[tuple[str, str]] = set()
    samples: set[str] = set()
    stat_members: dict[str, set[str]] = {}
    shapesys_seen: set[str] = set()
    for c in channels:
        for b in by_channel[c]:
            samples.add(b.sample)
            modifiers.update(b.walk)
            for mname, mtype in b.walk:
                if mtype == "staterror":
                    stat_members.setdefault(mname, set()).add(b.sample)
                    continue
                if mtype == "shapesys":
                    if mname in shapesys_seen:
                        msg = (
                            f"shapesys {mname!r} on sample {b.sample!r} in channel {c!r} "
                            "reuses a name: shapesys parameters cannot be shared"
                        )
                        raise WorkspaceError(msg)
                    shapesys_seen.add(mname)
                    reqs["shapesys"][mname] = [b.shapesys[mname]]
                    continue
                bucket = reqs[mtype]
                if mname not in bucket:
                    if mtype == "shapefactor":
                        bucket[mname] = [pyhf.modifiers.shapefactor.required_parset(b.source["data"], None)]
                    else:
                        bucket[mname] = [_SCALAR_REQ[mtype]]
    stat_offsets: dict[str, dict[str, int]] = {}
    for name in sorted(n for n, t in modifiers if t == "staterror"):
        sigmas, stat_offsets[name] = _staterror_sigmas(name, channels, by_channel, stat_members[name])
        fixed = [v == 0 for v in sigmas]
        sigmas = [1.0 if f else v for v, f in zip(sigmas, fixed)]
        reqs["staterror"][name] = [pyhf.modifiers.staterror.required_parset(sigmas, fixed)]
    required: dict[str, list[dict[str, Any]]] = {}
    for t in _TYPE_ORDER:
        for pname, req_list in reqs[t].items():
            required.setdefault(pname, [])
            required[pname] += req_list

    config = pyhf.pdf._ModelConfig.__new__(pyhf.pdf._ModelConfig)
    config._channels = list(channels)
    config._samples = sorted(samples)
    config._modifiers = sorted(modifiers)
    config._channel_nbins = dict(nbins)
    config._channel_slices = {}
    begin = 0
    for c in channels:
        config._channel_slices[c] = slice(begin, begin + nbins[c])
        begin += nbins[c]
    config.modifier_settings = settings
    config._par_order = []
    config._poi_name = None
    config._poi_index = None
    config._nmaindata = begin
    config._auxdata = []
    config.par_map = {}
    config.auxdata_order = []
    try:
        if not required:
            raise pyhf.exceptions.InvalidModel("No parameters specified for the Model.")
        final = pyhf.pdf._finalize_parameters_specs(list(parameters), required)
        sets, auxdata, auxdata_order = pyhf.pdf._create_parameters_from_spec(final)
        config.set_parameters(sets)
        config.set_auxinfo(auxdata, auxdata_order)
        if poi_name is not None:
            config.set_poi(poi_name)
    except (pyhf.exceptions.InvalidModel, pyhf.exceptions.InvalidNameReuse) as err:
        if poi_name is not None and poi_name not in required:
            msg = f"the POI {poi_name!r} is not a parameter of the model."
            raise UnknownName(msg + did_you_mean(poi_name, list(required))) from err
        raise WorkspaceError(f"invalid model: {err}") from err

    compiled = _pack(names, config, channels, by_channel, stat_offsets)
    return Assembled(config=config, compiled=compiled, spec={"channels": list(channel_specs), "parameters": list(parameters)})


def _pack(
    names: Names,
    config: Any,
    channels: Sequence[str],
    by_channel: Mapping[str, list[SampleBlock]],
    stat_offsets: Mapping[str, Mapping[str, int]],
) -> Compiled:
    start = np.full(len(names), -1, dtype=np.int64)
    for pname in config.par_order:
        start[names.ids[pname]] = config.par_map[pname]["slice"].start
    stat_ids = {names.ids[n]: offs for n, offs in stat_offsets.items()}

    nominal, fac_par, fac_ns, ns_hi, ns_lo, ns_coef = [], [], [], [], [], []
    fac_cnt, add_par, add_cnt, hs_up, hs_dn, cells_per_bin = [], [], [], [], [], []
    cell_of: dict[tuple[str, str], np.ndarray] = {}
    add_base: dict[tuple[str, str], tuple[int, int, int, int]] = {}
    n_cells = 0
    n_add = 0
    max_fac = 0
    for c in channels:
        blocks = by_channel[c]
        nb = blocks[0].nbins
        ns = len(blocks)
        ar = np.arange(nb)
        c_fac, c_add = [], []
        h_tot = sum(b.add_ids.size for b in blocks)
        h_off = 0
        for r, b in enumerate(blocks):
            base = start[b.fac_ids]
            mode = b.fac_mode
            if (mode == _STAT).any():
                base = base.copy()
                for j in np.flatnonzero(mode == _STAT):
                    base[j] += stat_ids[int(b.fac_ids[j])][c]
            c_fac.append(base[None, :] + ar[:, None] * (mode != _SCALAR)[None, :])
            c_add.append(np.broadcast_to(start[b.add_ids], (nb, b.add_ids.size)))
            cell_of[(c, b.sample)] = n_cells + ar * ns + r
            add_base[(c, b.sample)] = (n_add, h_tot, h_off, b.add_ids.size)
            h_off += b.add_ids.size
            max_fac = max(max_fac, b.fac_ids.size)
        k = np.array([b.fac_ids.size for b in blocks], dtype=np.int64)
        h = np.array([b.add_ids.size for b in blocks], dtype=np.int64)
        nominal.append(np.stack([b.nominal for b in blocks], axis=1).ravel())
        fac_par.append(np.concatenate(c_fac, axis=1).ravel())
        fac_ns.append(np.concatenate([np.broadcast_to(b.fac_ns, (nb, b.fac_ns.size)) for b in blocks], axis=1).ravel())
        ns_hi.append(np.concatenate([np.broadcast_to(b.ns_hi, (nb, b.ns_hi.size)) for b in blocks], axis=1).ravel())
        ns_lo.append(np.concatenate([np.broadcast_to(b.ns_lo, (nb, b.ns_lo.size)) for b in blocks], axis=1).ravel())
        ns_coef.append(
            np.concatenate([np.broadcast_to(b.ns_coef, (nb,) + b.ns_coef.shape) for b in blocks], axis=1).reshape(-1, 6)
        )
        add_par.append(np.concatenate(c_add, axis=1).ravel())
        hs_up.append(np.concatenate([b.hs_up for b in blocks], axis=1).ravel())
        hs_dn.append(np.concatenate([b.hs_dn for b in blocks], axis=1).ravel())
        fac_cnt.append(np.tile(k, nb))
        add_cnt.append(np.tile(h, nb))
        cells_per_bin.append(np.full(nb, ns, dtype=np.int64))
        n_cells += nb * ns
        n_add += nb * h_tot

    is_ns = np.concatenate(fac_ns)
    fac_ref = np.full(is_ns.size, -1, dtype=np.int64)
    fac_ref[is_ns] = np.arange(int(is_ns.sum()))
    coef = np.concatenate(ns_coef)[is_ns]

    # constraint terms, in pyhf's auxdata order
    gauss_par, gauss_aux, gauss_sigma, pois_par, pois_aux, pois_factor = [], [], [], [], [], []
    gauss_of_par: dict[int, int] = {}
    aux_off = 0
    for name in config.auxdata_order:
        parset = config.param_set(name)
        s0 = config.par_slice(name).start
        n = parset.n_parameters
        if parset.pdf_type == "normal":
            sigmas = getattr(parset, "sigmas", None)
            for i in range(n):
                gauss_of_par[s0 + i] = len(gauss_par)
                gauss_par.append(s0 + i)
                gauss_aux.append(aux_off + i)
                gauss_sigma.append(float(sigmas[i]) if sigmas is not None else 1.0)
        else:
            pois_par.extend(range(s0, s0 + n))
            pois_aux.extend(range(aux_off, aux_off + n))
            pois_factor.extend(float(f) for f in parset.factors)
        aux_off += n

    ns_code, hs_code = _interp_codes(config.modifier_settings)
    fbuf, ibuf = pack(
        (config.nmaindata, int(config.npars), len(config.auxdata), ns_code, hs_code, max_fac),
        {
            "bin_ptr": np.concatenate([[0], np.cumsum(np.concatenate(cells_per_bin))]),
            "fac_ptr": np.concatenate([[0], np.cumsum(np.concatenate(fac_cnt))]),
            "fac_par": np.concatenate(fac_par),
            "fac_ref": fac_ref,
            "add_ptr": np.concatenate([[0], np.cumsum(np.concatenate(add_cnt))]),
            "add_par": np.concatenate(add_par),
            "gauss_par": np.array(gauss_par, dtype=np.int64),
            "gauss_aux": np.array(gauss_aux, dtype=np.int64),
            "pois_par": np.array(pois_par, dtype=np.int64),
            "pois_aux": np.array(pois_aux, dtype=np.int64),
        },
        {
            "nominal": np.concatenate(nominal),
            "ns_hi": np.concatenate(ns_hi)[is_ns],
            "ns_lo": np.concatenate(ns_lo)[is_ns],
            "ns_coef": coef.ravel(),
            "hs_up": np.concatenate(hs_up),
            "hs_dn": np.concatenate(hs_dn),
            "gauss_sigma": np.array(gauss_sigma),
            "pois_factor": np.array(pois_factor),
        },
    )

    def make_add_of() -> dict[tuple[str, str], list[tuple[int, int]]]:
        out = {}
        for key, (n0, h_tot, h_off, h) in add_base.items():
            nb = config.channel_nbins[key[0]]
            out[key] = [(n0 + i * h_tot + h_off + j, i) for i in range(nb) for j in range(h)]
        return out

    def make_staterror() -> dict[str, Any]:
        info: dict[str, Any] = {}
        for name, offs in stat_offsets.items():
            s0 = config.par_slice(name).start
            bins = [config.channel_slices[c].start + i for c in offs for i in range(config.channel_nbins[c])]
            fixed = config.param_set(name).suggested_fixed
            members = [
                (c, b.sample, b.staterror[name].tolist())
                for c in channels
                for b in by_channel[c]
                if name in b.staterror
            ]
            info[name] = {
                "bins": bins,
                "gauss": [gauss_of_par[s0 + k] for k in range(len(bins))],
                "fixed": list(fixed) if isinstance(fixed, (list, tuple)) else [fixed] * len(bins),
                "members": members,
            }
        return info

    return Compiled(
        fbuf=fbuf,
        ibuf=ibuf,
        n_bins=int(config.nmaindata),
        n_cells=n_cells,
        cell_of=cell_of,
        add_of=_Lazy(make_add_of),  # type: ignore[arg-type]
        staterror=_Lazy(make_staterror),  # type: ignore[arg-type]
    )


def blocks_of(
    names: Names, channel_specs: Sequence[Mapping[str, Any]], reuse: Mapping[int, SampleBlock] | None = None
) -> tuple[list[str], dict[str, list[SampleBlock]]]:
    """Blocks of every sample of ``channel_specs`` (schema-valid), grouped by sorted channel.

    ``reuse`` maps ``id(sample dict)`` to an existing block of that very dict (the
    background's blocks when a patch leaves a sample untouched).

    Raises:
        WorkspaceError: duplicate channel names, duplicate sample names in a channel,
            bin counts that disagree.
    """
    by_channel: dict[str, list[SampleBlock]] = {}
    for ci, ch in enumerate(channel_specs):
        cname = ch["name"]
        if cname in by_channel:
            raise WorkspaceError(f"channel {cname!r} is defined twice (channels[{ci}])", path=f"channels[{ci}]")
        nb = len(ch["samples"][0]["data"])
        blocks = []
        seen: set[str] = set()
        for si, s in enumerate(ch["samples"]):
            if s["name"] in seen:
                msg = f"sample {s['name']!r} appears twice in channel {cname!r} (channels[{ci}].samples[{si}])"
                raise WorkspaceError(msg, path=f"channels[{ci}].samples[{si}]")
            seen.add(s["name"])
            blk = reuse.get(id(s)) if reuse is not None else None
            if blk is None or blk.source is not s or blk.channel != cname:
                blk = make_block(names, cname, s, nb, ci, si)
            blocks.append(blk)
        blocks.sort(key=lambda b: b.sample)
        by_channel[cname] = blocks
    return sorted(by_channel), by_channel


def select_measurement(spec: Mapping[str, Any], measurement: str | None) -> Mapping[str, Any]:
    """The measurement named ``measurement`` (default: the first, as pyhf chooses)."""
    measurements = spec["measurements"]
    names = [m["name"] for m in measurements]
    if measurement is None:
        return measurements[0]
    if measurement not in names:
        msg = f"unknown measurement {measurement!r}; the workspace has {names}."
        raise UnknownName(msg + did_you_mean(measurement, names))
    return measurements[names.index(measurement)]


def observed_data(spec: Mapping[str, Any], config: Any) -> list[float]:
    """Observed main bins in pyhf's channel order, then pyhf's auxdata."""
    obs = {o["name"]: o["data"] for o in spec["observations"]}
    out: list[float] = []
    for c in config.channels:
        if c not in obs:
            raise WorkspaceError(f"workspace has no observations for channel {c!r}")
        out.extend(float(v) for v in obs[c])
    return out + [float(v) for v in config.auxdata]
