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
from operator import itemgetter
from dataclasses import dataclass, field
from typing import Any, Callable

import numpy as np
import pyhf
import pyhf.exceptions
import pyhf.modifiers
import pyhf.parameters
import pyhf.pdf

from ._kernels.layout import pack
from .compile import Compiled, _interp_codes, code4_coefficients
from .errors import UnknownName, WorkspaceError, did_you_mean
from .layout import _check_lengths

__all__ = [
    "Names",
    "SampleBlock",
    "NotPlain",
    "make_block",
    "blocks_of",
    "Walk",
    "ParsetCache",
    "PackCache",
    "assemble",
    "Assembled",
    "channels_sane",
    "DEFAULT_MODIFIER_SETTINGS",
]

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
        walk: the sample's distinct (modifier name, type) pairs (unordered).
        fac_ids, fac_mode: int64 [k] name id and index mode (0 scalar, 1 one parameter per
            bin, 2 staterror) of each multiplicative entry, in the spec's modifier order.
        fac_ns: bool [k] the entry is a normsys; ``ns_hi``/``ns_lo`` float64 [k] its factors
            (1 elsewhere; the code4 coefficients are computed once per model, when packing).
        add_ids: int64 [h] name ids of the histosys entries; ``hs_up``/``hs_dn`` float64
            [nb, h]: ``hi - nominal`` and ``nominal - lo`` per bin.
        staterror: name -> float64 [nb] absolute uncertainties of each staterror modifier.
        shapesys: name -> pyhf's parameter requirement of each shapesys modifier.
        has_lumi: the sample has a ``lumi`` modifier.
        tkeys: the (type, name) pairs of its modifiers other than staterror (the keys of
            pyhf's walk), in spec order, possibly repeated.
        sane: the sample passes the per-sample checks of
            :func:`histgym.spec_checks.check_model_spec` (finite yields, no modifier twice,
            normsys factors finite numbers > 0, uncertainties >= 0); ``False`` means "run
            those checks" (they name the problem), not necessarily an error.
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
    add_ids: np.ndarray
    hs_up: np.ndarray
    hs_dn: np.ndarray
    staterror: dict[str, np.ndarray]
    shapesys: dict[str, dict[str, Any]]
    sane: bool = False
    tkeys: list[tuple[str, str]] = field(default_factory=list)
    has_lumi: bool = False

    @property
    def nbins(self) -> int:
        """Number of bins of the block's channel."""
        return int(self.nominal.size)


class NotPlain(Exception):
    """A sample failed the fast schema checks: let pyhf's validator decide (internal)."""


_NUM = frozenset({int, float, bool})  # as pyhf's schema check (numbers.Number)
_STR = frozenset({str})
_DICT = frozenset({dict})
_THREE = {3}
_LIST = frozenset({list})
_TYPES = frozenset(_TYPE_ORDER)
_MOD_KEYS = frozenset({"name", "type", "data"})
_SAMPLE_KEYS = frozenset({"name", "data", "modifiers"})
_HISTO_KEYS = frozenset({"lo_data", "hi_data"})
_NS_KEYS = frozenset({"lo", "hi"})
_INT_FLOAT = frozenset({int, float})
_TWO = {2}
_GET_TYPE, _GET_NAME, _GET_DATA = itemgetter("type"), itemgetter("name"), itemgetter("data")
_GET_HI_DATA, _GET_LO_DATA = itemgetter("hi_data"), itemgetter("lo_data")
_GET_HI, _GET_LO = itemgetter("hi"), itemgetter("lo")
#: modifier type -> small code (pyhf's builder order), and the index mode of each code
_CODE = {t: i for i, t in enumerate(_TYPE_ORDER)}
_C_HISTO, _C_NS, _C_LUMI, _C_STAT = _CODE["histosys"], _CODE["normsys"], _CODE["lumi"], _CODE["staterror"]
_C_NF, _C_SF, _C_SHAPESYS = _CODE["normfactor"], _CODE["shapefactor"], _CODE["shapesys"]
_NONE = {type(None)}
_MODE_OF_CODE = np.array(
    [_STAT if t == "staterror" else _PERBIN if t in ("shapefactor", "shapesys") else _SCALAR for t in _TYPE_ORDER],
    dtype=np.int64,
)


def _take(seq: Sequence[Any], idx: list[int]) -> list[Any]:
    """``[seq[i] for i in idx]`` at C speed."""
    if len(idx) > 1:
        return list(itemgetter(*idx)(seq))
    return [seq[idx[0]]] if idx else []


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
    if type(mods) is not list or (mods and (not set(map(type, mods)) <= _DICT or set(map(len, mods)) != _THREE)):
        raise NotPlain
    try:  # columns of the modifier list; three keys present + three keys in all = schema's keys
        mtypes = list(map(_GET_TYPE, mods))
        mnames = list(map(_GET_NAME, mods))
        mdata = list(map(_GET_DATA, mods))
        codes = list(map(_CODE.__getitem__, mtypes))  # KeyError: not a modifier type
    except (KeyError, TypeError):
        raise NotPlain from None
    if mods and not set(map(type, mnames)) <= _STR:
        raise NotPlain
    if _C_LUMI in codes and any(c == _C_LUMI and n != "lumi" for c, n in zip(codes, mnames)):
        raise NotPlain
    ids = names.ids
    if not ids.keys() >= set(mnames):
        for n in mnames:
            if n not in ids:
                names(n)
    carr = np.array(codes, dtype=np.int64)
    is_h = carr == _C_HISTO
    h_k = np.flatnonzero(is_h).tolist()
    f_k = np.flatnonzero(~is_h).tolist()
    hd = _take(mdata, h_k)
    ok_len = len(data) == nbins
    if hd:
        if not set(map(type, hd)) <= _DICT or set(map(len, hd)) != _TWO:
            raise NotPlain
        try:
            his = list(map(_GET_HI_DATA, hd))
            los = list(map(_GET_LO_DATA, hd))
        except KeyError:
            raise NotPlain from None
        if not set(map(type, his)) | set(map(type, los)) <= _LIST:
            raise NotPlain
        hflat = list(chain.from_iterable(his))  # flat copies: one type pass, one float conversion
        lflat = list(chain.from_iterable(los))
        if not set(map(type, hflat)) | set(map(type, lflat)) <= _NUM:
            raise NotPlain
        lens = set(map(len, his)) | set(map(len, los))
        if 0 in lens:
            raise NotPlain
        ok_len = ok_len and lens == {nbins}
    else:
        his, los, hflat, lflat = [], [], [], []
    fc = carr[~is_h]
    fcodes = fc.tolist()
    fdata = _take(mdata, f_k)
    ns_mask = fc == _C_NS
    nsd = _take(fdata, np.flatnonzero(ns_mask).tolist())
    ns_hi_v: list[Any] = []
    ns_lo_v: list[Any] = []
    ns_types: set[type] = set()
    if nsd:
        if not set(map(type, nsd)) <= _DICT or set(map(len, nsd)) != _TWO:
            raise NotPlain
        try:
            ns_hi_v = list(map(_GET_HI, nsd))
            ns_lo_v = list(map(_GET_LO, nsd))
        except KeyError:
            raise NotPlain from None
        ns_types = set(map(type, ns_hi_v)) | set(map(type, ns_lo_v))
        if not ns_types <= _NUM:
            raise NotPlain
    # normfactor, lumi, shapefactor: no data; staterror, shapesys: a non-empty array of numbers
    nodata = _take(fdata, np.flatnonzero((fc == _C_NF) | (fc == _C_LUMI) | (fc == _C_SF)).tolist())
    if nodata and set(map(type, nodata)) != _NONE:
        raise NotPlain
    staterror: dict[str, Any] = {}
    shapesys: dict[str, Any] = {}
    arr_pos = np.flatnonzero((fc == _C_STAT) | (fc == _C_SHAPESYS)).tolist()
    for j in arr_pos:
        md = fdata[j]
        if type(md) is not list or not md or not set(map(type, md)) <= _NUM:
            raise NotPlain
    for j in arr_pos:
        md = fdata[j]
        ok_len = ok_len and len(md) == nbins
        mname = mnames[f_k[j]]
        if fcodes[j] == _C_STAT:
            staterror.setdefault(mname, md)
        else:
            if mname in shapesys:
                msg = (
                    f"shapesys {mname!r} on sample {sample['name']!r} in channel "
                    f"{channel!r} reuses a name: shapesys parameters cannot be shared"
                )
                raise WorkspaceError(msg)
            shapesys[mname] = md
    fac_ids = list(map(ids.__getitem__, _take(mnames, f_k)))
    add_ids = list(map(ids.__getitem__, _take(mnames, h_k)))
    walk = set(zip(mnames, mtypes))
    if not ok_len:
        _check_lengths(ci, si, channel, sample, nbins)  # raises with the JSON path
    # every row has nbins entries here (checked above), so the flat arrays reshape exactly
    hi_m = np.array(hflat, dtype=np.float64).reshape(len(his), nbins).T
    lo_m = np.array(lflat, dtype=np.float64).reshape(len(los), nbins).T
    st = {k: np.array(v, dtype=np.float64) for k, v in staterror.items()}
    if not (np.isfinite(hi_m).all() and np.isfinite(lo_m).all() and all(np.isfinite(v).all() for v in st.values())):
        _check_lengths(ci, si, channel, sample, nbins)  # names the non-finite entry
    for v in shapesys.values():
        if not all(math.isfinite(x) for x in v):
            _check_lengths(ci, si, channel, sample, nbins)
    nominal = np.array(data, dtype=np.float64)
    hi_arr = np.ones(len(f_k))
    lo_arr = np.ones(len(f_k))
    if nsd:
        hi_arr[ns_mask] = ns_hi_v
        lo_arr[ns_mask] = ns_lo_v
        if not (np.isfinite(hi_arr).all() and np.isfinite(lo_arr).all()):
            raise WorkspaceError(f"non-finite normsys factor on sample {sample['name']!r} of channel {channel!r}")
    sane = (
        len(walk) == len(mods)
        and bool(np.isfinite(nominal).all())
        and (not nsd or (ns_types <= _INT_FLOAT and bool((hi_arr > 0).all() and (lo_arr > 0).all())))
        and all(bool((v >= 0).all()) for v in st.values())
        and all(min(v) >= 0 for v in shapesys.values())
    )
    fac_mode = _MODE_OF_CODE[fc] if fc.size else np.zeros(0, dtype=np.int64)
    return SampleBlock(
        channel=channel,
        sample=sample["name"],
        source=sample,
        nominal=nominal,
        walk=list(walk),
        tkeys=_take(list(zip(mtypes, mnames)), np.flatnonzero(carr != _C_STAT).tolist()),
        fac_ids=np.array(fac_ids, dtype=np.int64),
        fac_mode=fac_mode,
        fac_ns=ns_mask,
        ns_hi=hi_arr,
        ns_lo=lo_arr,
        add_ids=np.array(add_ids, dtype=np.int64),
        hs_up=hi_m - nominal[:, None],
        hs_dn=nominal[:, None] - lo_m,
        staterror=st,
        shapesys={k: pyhf.modifiers.shapesys.required_parset(data, v) for k, v in shapesys.items()},
        sane=sane,
        has_lumi=_C_LUMI in codes,
    )


def channels_sane(
    channel_specs: Sequence[Mapping[str, Any]],
    by_channel: Mapping[str, list[SampleBlock]],
    observations: Mapping[str, Sequence[float]] | None = None,
) -> bool:
    """Whether :func:`histgym.spec_checks.check_model_spec` would accept these channels.

    A vectorised equivalent over the channels' compiled blocks (the per-sample checks are
    :attr:`SampleBlock.sane`; the bin totals are summed in the spec's sample order, as there).
    ``True`` means the checks pass; ``False`` means "run them" (they raise naming the
    problem), so a caller never reports an error from here.
    """
    try:
        for ch in channel_specs:
            blocks = {b.sample: b for b in by_channel[ch["name"]]}
            samples = ch["samples"]
            if len(blocks) != len(samples):
                return False
            nb = blocks[samples[0]["name"]].nbins
            total = np.zeros(nb)
            zero_shift = np.ones(nb, dtype=bool)
            for s in samples:
                b = blocks[s["name"]]
                if b.source is not s or not b.sane or b.nbins != nb:
                    return False
                total += b.nominal
            if (total < 0).any():
                return False
            obs = None if observations is None else observations.get(ch["name"])
            if obs is not None and len(obs) == nb and (total == 0.0).any():
                for s in samples:
                    b = blocks[s["name"]]
                    if b.add_ids.size:
                        zero_shift &= (b.hs_up == 0.0).all(axis=1) & (b.hs_dn == 0.0).all(axis=1)
            if obs is not None and len(obs) == nb:
                if (zero_shift & (total == 0.0) & (np.asarray(obs, dtype=np.float64) > 0)).any():
                    return False
    except (KeyError, TypeError, ValueError, IndexError, AttributeError, OverflowError):
        return False
    return True


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
    name: str,
    channels: Sequence[str],
    by_channel: Mapping[str, list[SampleBlock]],
    members: set[str],
    in_channels: set[str],
) -> tuple[list[float], dict[str, int]]:
    """pyhf's staterror widths of ``name`` and the offset of each channel's bins in the set."""
    sigmas: list[float] = []
    offsets: dict[str, int] = {}
    for c in channels:
        blocks = by_channel[c]
        if c not in in_channels:
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


class Walk:
    """What pyhf's builder walk (channels, samples, then (name, type) pairs, all sorted)
    collects from the blocks: for every non-staterror (type, name) its first occurrence,
    the sets of samples and of modifiers, and the samples carrying each staterror name.

    A walk over a background can be :meth:`extended` by the blocks a patch adds, without
    walking the background again.
    """

    def __init__(self) -> None:
        self.first: dict[tuple[str, str], tuple[tuple[int, str], SampleBlock]] = {}
        self.modifiers: set[tuple[str, str]] = set()
        self.samples: set[str] = set()
        self.stat_members: dict[str, set[str]] = {}

    @classmethod
    def of(cls, channels: Sequence[str], by_channel: Mapping[str, list[SampleBlock]]) -> Walk:
        """The walk over all blocks (in pyhf's order: channels, then samples, both sorted)."""
        w = cls()
        blocks = [(ci, b) for ci, c in enumerate(channels) for b in by_channel[c]]
        shapesys = [k for _, b in blocks for k in b.shapesys]
        if len(set(shapesys)) != len(shapesys):  # a shared shapesys: the walk names it
            for ci, b in blocks:
                w._add(ci, b)
            return w  # pragma: no cover - _add raises
        stat_members = w.stat_members
        for _, b in blocks:
            w.samples.add(b.sample)
            w.modifiers.update(b.walk)
            for name in b.staterror:
                stat_members.setdefault(name, set()).add(b.sample)
        # positions increase along ``blocks``: the first occurrence of a key is the earliest
        # block, so update from the last block to the first
        first = w.first
        for ci, b in reversed(blocks):
            first.update(dict.fromkeys(b.tkeys, ((ci, b.sample), b)))
        return w

    def extended(self, blocks: Sequence[tuple[int, SampleBlock]]) -> Walk:
        """A copy with ``blocks`` (channel rank, block) added."""
        w = Walk()
        w.first = dict(self.first)
        w.modifiers = set(self.modifiers)
        w.samples = set(self.samples)
        w.stat_members = {k: set(v) for k, v in self.stat_members.items()}
        for ci, b in blocks:
            w._add(ci, b)
        return w

    def _add(self, ci: int, b: SampleBlock) -> None:
        self.samples.add(b.sample)
        self.modifiers.update(b.walk)
        pos = (ci, b.sample)
        first = self.first
        for key in b.walk:
            mname, mtype = key
            if mtype == "staterror":
                self.stat_members.setdefault(mname, set()).add(b.sample)
                continue
            tk = (mtype, mname)
            old = first.get(tk)
            if old is None:
                first[tk] = (pos, b)
            elif mtype == "shapesys":
                msg = (
                    f"shapesys {mname!r} on sample {b.sample!r} in channel {b.channel!r} "
                    "reuses a name: shapesys parameters cannot be shared"
                )
                raise WorkspaceError(msg)
            elif pos < old[0]:
                first[tk] = (pos, b)


_SHAPEFACTOR_REQ: dict[int, dict[str, Any]] = {}


def _requirement(mtype: str, mname: str, b: SampleBlock) -> dict[str, Any]:
    if mtype == "shapesys":
        return b.shapesys[mname]
    if mtype == "shapefactor":
        req = _SHAPEFACTOR_REQ.get(b.nbins)
        if req is None:
            req = _SHAPEFACTOR_REQ[b.nbins] = pyhf.modifiers.shapefactor.required_parset([0.0] * b.nbins, None)
        return req
    return _SCALAR_REQ[mtype]


class ParsetCache:
    """pyhf's reduced requirements and paramset objects per parameter name, reused while
    the requirements of that name are the same objects (a background and its patches)."""

    def __init__(self, parameters: Sequence[Mapping[str, Any]]) -> None:
        self.user: dict[str, Mapping[str, Any]] = {}
        for p in parameters:
            if p["name"] in self.user:
                raise WorkspaceError(f"invalid model: Multiple parameter configurations for {p['name']} were found.")
            self.user[p["name"]] = p
        self._cache: dict[str, tuple[list[dict[str, Any]], Any]] = {}

    def paramsets(self, required: Mapping[str, list[dict[str, Any]]]) -> dict[str, Any]:
        """pyhf's paramset objects (in ``required``'s order) given the requirement lists."""
        miss = {}
        for name, reqs in required.items():
            hit = self._cache.get(name)
            if hit is None or len(hit[0]) != len(reqs) or not all(a is b for a, b in zip(hit[0], reqs)):
                miss[name] = reqs
        if miss:  # one call of pyhf's reduction and construction for all new requirements
            reduced = pyhf.parameters.reduce_paramsets_requirements(miss, self.user)
            sets, _, _ = pyhf.pdf._create_parameters_from_spec(reduced)
            for name, reqs in miss.items():
                self._cache[name] = (list(reqs), sets[name])
        return {name: self._cache[name][1] for name in required}


def assemble(
    names: Names,
    channels: Sequence[str],
    by_channel: Mapping[str, list[SampleBlock]],
    channel_specs: Sequence[Mapping[str, Any]],
    parameters: Sequence[Mapping[str, Any]],
    poi_name: str | None,
    modifier_settings: Mapping[str, Mapping[str, str]] | None = None,
    *,
    walk: Walk | None = None,
    parsets: ParsetCache | None = None,
    packs: PackCache | None = None,
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
        walk: the builder walk over exactly these blocks, if already known.
        parsets: a cache of paramset objects made with the same ``parameters``.
        packs: a cache of concatenated channels (reused where a channel's blocks are the same).

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
    if walk is None:
        walk = Walk.of(channels, by_channel)
    if parsets is None:
        parsets = ParsetCache(parameters)
    modifiers, samples = walk.modifiers, walk.samples
    by_type: dict[str, list[tuple[tuple[int, str], str, SampleBlock]]] = {t: [] for t in _TYPE_ORDER}
    for (mtype, mname), (pos, b) in walk.first.items():
        by_type[mtype].append((pos, mname, b))
    reqs: dict[str, dict[str, list[dict[str, Any]]]] = {t: {} for t in _TYPE_ORDER}
    for t, entries in by_type.items():
        entries.sort(key=lambda e: (e[0], e[1]))
        reqs[t] = {mname: [_requirement(t, mname, b)] for _, mname, b in entries}
    stat_offsets: dict[str, dict[str, int]] = {}
    stat_channels: dict[str, set[str]] = {}
    for c in channels:
        for b in by_channel[c]:
            for name in b.staterror:
                stat_channels.setdefault(name, set()).add(c)
    for name in sorted(stat_channels):
        sigmas, stat_offsets[name] = _staterror_sigmas(
            name, channels, by_channel, walk.stat_members[name], stat_channels[name]
        )
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
        sets = parsets.paramsets(required)
        auxdata: list[float] = []
        auxdata_order: list[str] = []
        for name, ps in sets.items():
            if ps.constrained:
                auxdata += ps.auxdata
                auxdata_order.append(name)
        config.set_parameters(sets)
        config.set_auxinfo(auxdata, auxdata_order)
        if poi_name is not None:
            config.set_poi(poi_name)
    except (pyhf.exceptions.InvalidModel, pyhf.exceptions.InvalidNameReuse) as err:
        raise WorkspaceError(f"invalid model: {err}") from err

    compiled = _pack(names, config, channels, by_channel, stat_offsets, packs)
    return Assembled(config=config, compiled=compiled, spec={"channels": list(channel_specs), "parameters": list(parameters)})


@dataclass(frozen=True)
class _ChannelPack:
    """One channel's entries over its blocks (cells ordered by bin, then sample).

    ``nominal`` [nb, ns]; the multiplicative entries of one bin, [K] (the same in every
    bin): ``fac_id`` name ids, ``fac_perbin`` 1 where the parameter index moves with the bin,
    ``fac_off`` the staterror offsets, ``fac_ns``/``ns_hi``/``ns_lo`` the normsys factors;
    sample j's entries are ``kc[j]:kc[j+1]``.  The additive entries: ``add_id`` [H] and
    ``hs_up``/``hs_dn`` [nb, H], sample j's in columns ``hc[j]:hc[j+1]``.
    """

    blocks: tuple[SampleBlock, ...]
    stat_off: dict[int, int]
    kc: np.ndarray
    hc: np.ndarray
    nominal: np.ndarray
    fac_id: np.ndarray
    fac_perbin: np.ndarray
    fac_off: np.ndarray
    fac_ns: np.ndarray
    ns_hi: np.ndarray
    ns_lo: np.ndarray
    add_id: np.ndarray
    hs_up: np.ndarray
    hs_dn: np.ndarray

    @property
    def nb(self) -> int:
        return int(self.nominal.shape[0])

    @property
    def ns(self) -> int:
        return len(self.blocks)

    @property
    def h_tot(self) -> int:
        return int(self.hc[-1])

    @property
    def k(self) -> np.ndarray:
        return np.diff(self.kc)

    @property
    def h(self) -> np.ndarray:
        return np.diff(self.hc)


def _channel_pack(blocks: Sequence[SampleBlock], stat_off: Mapping[int, int]) -> _ChannelPack:
    """Concatenate the entries of ``blocks`` (a few numpy calls per channel, not per block)."""
    cat = np.concatenate
    fac_id = cat([b.fac_ids for b in blocks])
    mode = cat([b.fac_mode for b in blocks])
    off = np.zeros(fac_id.size, dtype=np.int64)
    stat = np.flatnonzero(mode == _STAT)
    if stat.size:
        off[stat] = [stat_off.get(int(i), 0) for i in fac_id[stat]]
    return _ChannelPack(
        blocks=tuple(blocks),
        stat_off=dict(stat_off),
        kc=cat([[0], np.cumsum([b.fac_ids.size for b in blocks])]).astype(np.int64),
        hc=cat([[0], np.cumsum([b.add_ids.size for b in blocks])]).astype(np.int64),
        nominal=np.stack([b.nominal for b in blocks], axis=1),
        fac_id=fac_id,
        fac_perbin=(mode != _SCALAR).astype(np.int64),
        fac_off=off,
        fac_ns=cat([b.fac_ns for b in blocks]),
        ns_hi=cat([b.ns_hi for b in blocks]),
        ns_lo=cat([b.ns_lo for b in blocks]),
        add_id=cat([b.add_ids for b in blocks]),
        hs_up=cat([b.hs_up for b in blocks], axis=1),
        hs_dn=cat([b.hs_dn for b in blocks], axis=1),
    )


class PackCache:
    """Channel packs of a background, reused when a patch leaves a channel's blocks unchanged."""

    def __init__(self) -> None:
        self._base: dict[str, _ChannelPack] = {}

    def get(self, c: str, blocks: Sequence[SampleBlock], stat_off: Mapping[int, int]) -> _ChannelPack:
        base = self._base.get(c)
        if (
            base is not None
            and len(base.blocks) == len(blocks)
            and all(a is b for a, b in zip(base.blocks, blocks))
            and base.stat_off == dict(stat_off)
        ):
            return base
        out = _channel_pack(blocks, stat_off)
        if base is None:
            self._base[c] = out
        return out


def stat_offsets_of(channels: Sequence[str], by_channel: Mapping[str, list[SampleBlock]]) -> dict[str, dict[str, int]]:
    """name -> channel -> offset of the channel's bins in the staterror set ``name``."""
    out: dict[str, dict[str, int]] = {}
    n: dict[str, int] = {}
    for c in channels:
        here = {name for b in by_channel[c] for name in b.staterror}
        for name in sorted(here):
            out.setdefault(name, {})[c] = n.get(name, 0)
            n[name] = n.get(name, 0) + by_channel[c][0].nbins
    return out


def prime(packs: PackCache, names: Names, channels: Sequence[str], by_channel: Mapping[str, list[SampleBlock]]) -> None:
    """Fill ``packs`` with the channels of these blocks (a background), the base of splices."""
    offsets = stat_offsets_of(channels, by_channel)
    for c in channels:
        stat_off = {names.ids[n]: offs[c] for n, offs in offsets.items() if c in offs}
        packs.get(c, by_channel[c], stat_off)


def _pack(
    names: Names,
    config: Any,
    channels: Sequence[str],
    by_channel: Mapping[str, list[SampleBlock]],
    stat_offsets: Mapping[str, Mapping[str, int]],
    packs: PackCache | None = None,
) -> Compiled:
    start = np.full(len(names), -1, dtype=np.int64)
    for pname in config.par_order:
        start[names.ids[pname]] = config.par_map[pname]["slice"].start
    if packs is None:
        packs = PackCache()
    cps: list[_ChannelPack] = []
    n_cells = 0
    for c in channels:
        stat_off = {names.ids[n]: offs[c] for n, offs in stat_offsets.items() if c in offs}
        cp = packs.get(c, by_channel[c], stat_off)
        cps.append(cp)
        n_cells += cp.nb * cp.ns

    def make_cell_of() -> dict[tuple[str, str], np.ndarray]:
        out, n0 = {}, 0
        for c, cp in zip(channels, cps):
            ar = np.arange(cp.nb)
            for r, b in enumerate(by_channel[c]):
                out[(c, b.sample)] = n0 + ar * cp.ns + r
            n0 += cp.nb * cp.ns
        return out

    def make_add_base() -> dict[tuple[str, str], tuple[int, int, int, int]]:
        out, n0 = {}, 0
        for c, cp in zip(channels, cps):
            h_off = 0
            for b in by_channel[c]:
                out[(c, b.sample)] = (n0, cp.h_tot, h_off, b.add_ids.size)
                h_off += b.add_ids.size
            n0 += cp.nb * cp.h_tot
        return out
    max_fac = max(int(cp.k.max()) if cp.ns else 0 for cp in cps)
    cat = np.concatenate
    fac_par = cat(
        [
            ((start[cp.fac_id] + cp.fac_off)[None, :] + np.arange(cp.nb)[:, None] * cp.fac_perbin[None, :]).ravel()
            for cp in cps
        ]
    )
    add_par = cat([np.tile(start[cp.add_id], cp.nb) for cp in cps])
    is_ns = cat([np.tile(cp.fac_ns, cp.nb) for cp in cps])
    ns_hi = cat([np.tile(cp.ns_hi, cp.nb) for cp in cps])[is_ns]
    ns_lo = cat([np.tile(cp.ns_lo, cp.nb) for cp in cps])[is_ns]
    fac_ref = np.full(is_ns.size, -1, dtype=np.int64)
    fac_ref[is_ns] = np.arange(int(is_ns.sum()))
    coef = code4_coefficients(ns_hi, ns_lo) if ns_hi.size else np.zeros((0, 6))
    fac_cnt = [np.tile(cp.k, cp.nb) for cp in cps]
    add_cnt = [np.tile(cp.h, cp.nb) for cp in cps]
    cells_per_bin = [np.full(cp.nb, cp.ns, dtype=np.int64) for cp in cps]

    # constraint terms, in pyhf's auxdata order
    gauss_par, gauss_aux, gauss_sigma, pois_par, pois_aux, pois_factor = [], [], [], [], [], []
    gauss_of_par: dict[int, int] = {}
    aux_off = 0
    par_map = config.par_map
    for name in config.auxdata_order:
        entry = par_map[name]
        parset = entry["paramset"]
        s0 = entry["slice"].start
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
            "fac_par": fac_par,
            "fac_ref": fac_ref,
            "add_ptr": np.concatenate([[0], np.cumsum(np.concatenate(add_cnt))]),
            "add_par": add_par,
            "gauss_par": np.array(gauss_par, dtype=np.int64),
            "gauss_aux": np.array(gauss_aux, dtype=np.int64),
            "pois_par": np.array(pois_par, dtype=np.int64),
            "pois_aux": np.array(pois_aux, dtype=np.int64),
        },
        {
            "nominal": cat([cp.nominal.ravel() for cp in cps]),
            "ns_hi": ns_hi,
            "ns_lo": ns_lo,
            "ns_coef": coef.ravel(),
            "hs_up": cat([cp.hs_up.ravel() for cp in cps]),
            "hs_dn": cat([cp.hs_dn.ravel() for cp in cps]),
            "gauss_sigma": np.array(gauss_sigma),
            "pois_factor": np.array(pois_factor),
        },
    )

    def make_add_of() -> dict[tuple[str, str], list[tuple[int, int]]]:
        out = {}
        for key, (n0, h_tot, h_off, h) in make_add_base().items():
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
        cell_of=_Lazy(make_cell_of),  # type: ignore[arg-type]
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
