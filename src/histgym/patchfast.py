"""Model layer: signal patches that differ from an earlier one only in their numbers.

The patches of a signal grid usually share one *structure*: the same operations on the same
paths, adding samples with the same names, modifiers (names and types) and bin counts; only
the numbers differ (nominal yields, normsys factors, histosys templates, staterror and
shapesys uncertainties).  Once one patch of a structure has been compiled against a
background (:class:`histgym.patchset.Background`), :class:`Template` keeps where each of its
numbers went in the packed model, and builds the model of a later patch of the same
structure by writing that patch's numbers into copies of the packed arrays:

- nominal yields, normsys factors (and their code4 coefficients), histosys shifts;
- the staterror widths of the channels the patch touches (pyhf's sums over the samples of
  the channel, in pyhf's order) and the paramsets carrying them;
- shapesys Poisson factors and auxdata (and the paramsets and ``config.auxdata``).

Everything else (parameter names, order, bounds, inits, fixed flags, the index buffer) is
the template's.  :meth:`Template.apply` returns ``None`` (the caller then takes the full
incremental path, which names any problem) whenever the new numbers could make a
difference the template cannot write: a non-finite or negative number, a number of an odd
type, a staterror width or shapesys bin becoming zero (fixed flags), a channel total that
might become negative or zero with observed events.  A template is only kept if it
reproduces its own model exactly (checked once, when it is made).
"""

from __future__ import annotations

import copy
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import pyhf.modifiers

from ._kernels.layout import field_slice
from .build import SampleBlock, _Lazy, stat_offsets_of
from .compile import Compiled, code4_coefficients
from .model import Model

__all__ = ["structure", "Template"]

_NUM = frozenset({int, float, bool})  # as the schema checks of histgym.build
_INT_FLOAT = frozenset({int, float})
_SAMPLE_KEYS = frozenset({"name", "data", "modifiers"})
_MOD_KEYS = frozenset({"name", "type", "data"})
_HISTO_KEYS = frozenset({"lo_data", "hi_data"})
_NS_KEYS = frozenset({"lo", "hi"})
_NODATA = frozenset({"normfactor", "lumi", "shapefactor"})
_ARRAY = frozenset({"staterror", "shapesys"})
_SIX = np.arange(6)
_USER_KEYS = frozenset({"sigmas", "fixed", "auxdata", "factors"})


def _skeleton(s: Any) -> tuple[Any, ...] | None:
    """The structure of one sample dict (names, types, lengths), or None if not plainly shaped."""
    if type(s) is not dict or s.keys() != _SAMPLE_KEYS:
        return None
    name, data, mods = s["name"], s["data"], s["modifiers"]
    if type(name) is not str or type(data) is not list or type(mods) is not list:
        return None
    out: list[Any] = [name, len(data)]
    for m in mods:
        if type(m) is not dict or m.keys() != _MOD_KEYS:
            return None
        t, n, d = m["type"], m["name"], m["data"]
        if type(t) is not str or type(n) is not str:
            return None
        if t == "histosys":
            if type(d) is not dict or d.keys() != _HISTO_KEYS:
                return None
            hi, lo = d["hi_data"], d["lo_data"]
            if type(hi) is not list or type(lo) is not list:
                return None
            shape: Any = (len(hi), len(lo))
        elif t == "normsys":
            if type(d) is not dict or d.keys() != _NS_KEYS:
                return None
            shape = 2
        elif t in _ARRAY:
            if type(d) is not list:
                return None
            shape = len(d)
        elif t in _NODATA:
            if d is not None:
                return None
            shape = 0
        else:
            return None
        out += (n, t, shape)
    return tuple(out)


def structure(ops: Sequence[Mapping[str, Any]]) -> tuple[Any, ...] | None:
    """A hashable key of everything but the numbers of whole-sample operations
    (``None``: some operation's value is not a plainly shaped sample)."""
    key: list[Any] = []
    for op in ops:
        kind = op.get("op")
        if kind == "remove":
            key.append((kind, op.get("path"), None))
            continue
        sk = _skeleton(op.get("value"))
        if sk is None:
            return None
        key.append((kind, op.get("path"), sk))
    return tuple(key)


def _extract(ops: Sequence[Mapping[str, Any]], slots: Sequence[int]) -> tuple[list[Any], list[Any], list[tuple[str, Any, Any]]]:
    """The numbers of the new samples of ``ops``, flat and in a fixed order: nominal yields,
    histosys hi, histosys lo, staterror and shapesys uncertainties (``nums``); normsys hi
    then lo (``ns``); and the shapesys modifiers as (name, sample data, uncertainties)."""
    noms: list[Any] = []
    hhi: list[Any] = []
    hlo: list[Any] = []
    unc: list[Any] = []
    nshi: list[Any] = []
    nslo: list[Any] = []
    shapes: list[tuple[str, Any, Any]] = []
    for k in slots:
        s = ops[k]["value"]
        noms += s["data"]
        for m in s["modifiers"]:
            t = m["type"]
            if t == "normsys":
                d = m["data"]
                nshi.append(d["hi"])
                nslo.append(d["lo"])
            elif t == "histosys":
                d = m["data"]
                hhi += d["hi_data"]
                hlo += d["lo_data"]
            elif t == "staterror":
                unc += m["data"]
            elif t == "shapesys":
                unc += m["data"]
                shapes.append((m["name"], s["data"], m["data"]))
    return noms + hhi + hlo + unc, nshi + nslo, shapes


class Template:
    """Where the numbers of the new samples of one patch structure live in its model.

    Args:
        ops: the patch (whole-sample operations) the model was built from.
        channels: channel names (pyhf's order); ``by_channel``: their blocks, as assembled.
        model: the model built by the full incremental path.
        user: the measurement's parameter configurations by name.
        observations: channel name -> observed main bins.

    ``ok`` is False if the structure cannot be templated (e.g. a user configuration of a
    staterror or shapesys the patch's numbers feed); the caller then keeps the full path.
    """

    def __init__(
        self,
        ops: Sequence[Mapping[str, Any]],
        channels: Sequence[str],
        by_channel: Mapping[str, list[SampleBlock]],
        model: Model,
        user: Mapping[str, Mapping[str, Any]],
        observations: Mapping[str, Sequence[float]],
    ) -> None:
        self.ok = False
        self.model = model
        config = model.config
        ibuf = model.ibuf
        sl = {k: field_slice(k, ibuf).start for k in ("nominal", "ns_hi", "ns_lo", "ns_coef", "hs_up", "hs_dn", "gauss_sigma", "pois_factor")}
        self.slots = [i for i, op in enumerate(ops) if op.get("op") != "remove"]
        # flat offsets of each new sample's numbers (the order of _extract)
        nom0: dict[int, int] = {}
        hs0: dict[int, int] = {}
        st0: dict[tuple[int, str], int] = {}
        ns0: dict[int, int] = {}
        n_nom = n_hs = n_ns = 0
        for k in self.slots:
            smp = ops[k]["value"]
            mods = smp["modifiers"]
            if len({(m["name"], m["type"]) for m in mods}) != len(mods):
                return  # a modifier twice: the full path names it
            nom0[k] = n_nom
            n_nom += len(smp["data"])
            hs0[k] = n_hs
            n_hs += sum(len(smp["data"]) for m in mods if m["type"] == "histosys")
            ns0[k] = n_ns
            n_ns += sum(1 for m in mods if m["type"] == "normsys")
        n_unc = 0
        for k in self.slots:
            for m in ops[k]["value"]["modifiers"]:
                if m["type"] in _ARRAY:
                    st0[(k, m["name"])] = n_unc
                    n_unc += len(m["data"])
        self._n = (n_nom, n_hs, n_unc, n_ns)
        sources = {id(ops[i]["value"]): i for i in self.slots}
        new_of = {id(b): sources[id(b.source)] for c in channels for b in by_channel[c] if id(b.source) in sources}
        if len(new_of) != len(self.slots):
            return  # one dict added twice: not templated
        # fbuf positions of every new number; each entry's source index in the flat arrays
        nom_pos, nom_src, ns_pos, ns_src, hs_pos, hs_src, hs_nom = [], [], [], [], [], [], []
        touched: set[str] = set()
        n0 = e0 = h0 = 0
        for c in channels:
            blocks = by_channel[c]
            nb, S = blocks[0].nbins, len(blocks)
            nns = [int(b.fac_ns.sum()) for b in blocks]
            hs = [int(b.add_ids.size) for b in blocks]
            N, H = sum(nns), sum(hs)
            ar = np.arange(nb)
            for r, b in enumerate(blocks):
                k = new_of.get(id(b))
                if k is None:
                    continue
                touched.add(c)
                nom_pos.append(n0 + ar * S + r)
                nom_src.append(nom0[k] + ar)
                for j in range(nns[r]):  # the sample's j-th normsys, in every bin
                    ns_pos.append(e0 + ar * N + sum(nns[:r]) + j)
                    ns_src.append(np.full(nb, ns0[k] + j))
                for j in range(hs[r]):  # its j-th histosys, bin by bin
                    hs_pos.append(h0 + ar * H + sum(hs[:r]) + j)
                    hs_src.append(hs0[k] + j * nb + ar)
                    hs_nom.append(nom0[k] + ar)
            n0 += nb * S
            e0 += nb * N
            h0 += nb * H
        cat = lambda xs: np.concatenate(xs).astype(np.int64) if xs else np.zeros(0, dtype=np.int64)  # noqa: E731
        self._nom_pos, self._nom_src = cat(nom_pos) + sl["nominal"], cat(nom_src)
        self._ns_pos, self._ns_src = cat(ns_pos), cat(ns_src)
        self._hs_pos, self._hs_src, self._hs_nom = cat(hs_pos), cat(hs_src), cat(hs_nom)
        self._sl = sl
        # staterror widths of the touched channels, all at once: pyhf's sums over the member
        # samples (as histgym.build._staterror_sigmas), rows in pyhf's order padded with zeros
        offsets = stat_offsets_of(channels, by_channel)
        info = model._compiled.staterror
        segs = []
        for name, offs in offsets.items():
            members = {b.sample for c in channels for b in by_channel[c] if name in b.staterror}
            for c, off in offs.items():
                if c not in touched:
                    continue
                if name in user and _USER_KEYS & user[name].keys():
                    return
                blocks = by_channel[c]
                nb = blocks[0].nbins
                segs.append((name, off, nb, [b for b in blocks if b.sample in members], [b for b in blocks if name in b.staterror]))
        width = sum(sg[2] for sg in segs)
        rows_n = max((len(sg[3]) for sg in segs), default=0)
        rows_u = max((len(sg[4]) for sg in segs), default=0)
        self._N = np.zeros((rows_n, width))
        self._U = np.zeros((rows_u, width))
        fill_n: list[tuple[int, int, int, int]] = []  # (row, column, flat source, count)
        fill_u: list[tuple[int, int, int, int]] = []
        gpos, fixed = [], []
        self._stat_segs: list[tuple[str, int, int, int]] = []  # name, offset in set, column, nb
        col = 0
        for name, off, nb, mem, carriers in segs:
            for r, b in enumerate(mem):
                k = new_of.get(id(b))
                if k is None:
                    self._N[r, col : col + nb] = b.nominal
                else:
                    fill_n.append((r, col, nom0[k], nb))
            for r, b in enumerate(carriers):
                k = new_of.get(id(b))
                if k is None:
                    self._U[r, col : col + nb] = b.staterror[name]
                else:
                    fill_u.append((r, col, st0[(k, name)], nb))
            gpos += info[name]["gauss"][off : off + nb]
            fixed += info[name]["fixed"][off : off + nb]
            self._stat_segs.append((name, off, col, nb))
            col += nb
        self._fill_n = self._fill_idx(fill_n, width)
        self._fill_u = self._fill_idx(fill_u, width)
        self._gpos = np.array(gpos, dtype=np.int64) + sl["gauss_sigma"]
        self._fixed = np.array(fixed, dtype=bool)
        # shapesys of the new samples: Poisson factors and auxdata
        pois0: dict[str, int] = {}
        aux0: dict[str, int] = {}
        npois = naux = 0
        for name in config.auxdata_order:
            ps = config.par_map[name]["paramset"]
            aux0[name] = naux
            naux += ps.n_parameters
            if ps.pdf_type != "normal":
                pois0[name] = npois
                npois += ps.n_parameters
        self._pois0, self._aux0 = pois0, aux0
        self._shapesys_fixed: dict[str, Any] = {}
        for c in channels:
            for b in by_channel[c]:
                if id(b) in new_of:
                    for name, req in b.shapesys.items():
                        if name in user and _USER_KEYS & user[name].keys():
                            return
                        self._shapesys_fixed[name] = tuple(req["fixed"])
        # channel totals: the other samples' yields must be >= 0; bins where they are all zero
        # with observed events need a new sample > 0 there (else the full path decides)
        risky_src: list[np.ndarray] = []
        for c in touched:
            blocks = by_channel[c]
            nb = blocks[0].nbins
            tot = np.zeros(nb)
            for b in blocks:
                if id(b) not in new_of:
                    if (b.nominal < 0).any():
                        return
                    tot = tot + b.nominal
            obs = observations.get(c)
            if obs is not None and len(obs) == nb:
                for i in np.flatnonzero((tot == 0.0) & (np.asarray(obs, dtype=np.float64) > 0)):
                    risky_src.append(np.array([nom0[new_of[id(b)]] + i for b in blocks if id(b) in new_of], dtype=np.int64))
        self._risky = risky_src
        self.ok = True

    @staticmethod
    def _fill_idx(fills: list[tuple[int, int, int, int]], width: int) -> tuple[np.ndarray, np.ndarray]:
        """Flat positions in a [rows, width] matrix and the flat sources that fill them."""
        if not fills:
            return np.zeros(0, dtype=np.int64), np.zeros(0, dtype=np.int64)
        pos = np.concatenate([r * width + c + np.arange(n) for r, c, _, n in fills])
        src = np.concatenate([s + np.arange(n) for _, _, s, n in fills])
        return pos, src

    def apply(self, ops: Sequence[Mapping[str, Any]], spec: dict[str, Any]) -> Model | None:
        """The model of ``ops`` (same structure as the template's) with ``spec`` as its model
        spec; ``None`` if the numbers need the full path."""
        flat, ns, shapes = _extract(ops, self.slots)
        if not set(map(type, flat)) <= _NUM or not set(map(type, ns)) <= _INT_FLOAT:
            return None
        try:
            x = np.array(flat + ns, dtype=np.float64)
        except (OverflowError, ValueError, TypeError):  # e.g. an integer beyond float range
            return None
        n_nom, n_hs, n_unc, n_ns = self._n
        if x.size != n_nom + 2 * n_hs + n_unc + 2 * n_ns or not np.isfinite(x).all():
            return None
        nom = x[:n_nom]
        hi = x[n_nom : n_nom + n_hs]
        lo = x[n_nom + n_hs : n_nom + 2 * n_hs]
        unc = x[n_nom + 2 * n_hs : n_nom + 2 * n_hs + n_unc]
        ns_hi = x[n_nom + 2 * n_hs + n_unc : n_nom + 2 * n_hs + n_unc + n_ns]
        ns_lo = x[n_nom + 2 * n_hs + n_unc + n_ns :]
        if (nom < 0).any() or (unc < 0).any() or (ns_hi <= 0).any() or (ns_lo <= 0).any():
            return None
        for src in self._risky:
            if not (nom[src] > 0).any():
                return None
        tpl = self.model
        sl = self._sl
        fbuf = tpl.fbuf.copy()
        fbuf[self._nom_pos] = nom[self._nom_src]
        if self._ns_pos.size:
            coef = code4_coefficients(ns_hi, ns_lo)  # [n_ns, 6]
            fbuf[sl["ns_hi"] + self._ns_pos] = ns_hi[self._ns_src]
            fbuf[sl["ns_lo"] + self._ns_pos] = ns_lo[self._ns_src]
            fbuf[sl["ns_coef"] + 6 * self._ns_pos[:, None] + _SIX] = coef[self._ns_src]
        if self._hs_pos.size:
            fbuf[sl["hs_up"] + self._hs_pos] = hi[self._hs_src] - nom[self._hs_nom]
            fbuf[sl["hs_dn"] + self._hs_pos] = nom[self._hs_nom] - lo[self._hs_src]
        config = tpl.config
        new_sigmas: dict[str, list[float]] = {}
        if self._stat_segs:
            N = self._N.copy()
            N.ravel()[self._fill_n[0]] = nom[self._fill_n[1]]
            U = self._U.copy()
            U.ravel()[self._fill_u[0]] = unc[self._fill_u[1]]
            nomsall = np.zeros(N.shape[1])
            for row in N:
                nomsall = nomsall + row
            sq = np.zeros(N.shape[1])
            pos = nomsall > 0
            safe = np.where(pos, nomsall, 1.0)
            for row in U:
                sq = sq + np.where(pos, (row / safe) ** 2, 0.0)
            sig = np.sqrt(sq)
            zero = sig == 0
            if not np.array_equal(zero, self._fixed):
                return None
            sig[zero] = 1.0
            fbuf[self._gpos] = sig
            vals = sig.tolist()
            for name, off, col, nb in self._stat_segs:
                if name not in new_sigmas:
                    new_sigmas[name] = list(config.par_map[name]["paramset"].sigmas)
                new_sigmas[name][off : off + nb] = vals[col : col + nb]
        observed = tpl._observed
        new_pois: dict[str, tuple[Any, ...]] = {}
        for name, data, u in shapes:
            req = pyhf.modifiers.shapesys.required_parset(data, u)
            if tuple(req["fixed"]) != self._shapesys_fixed.get(name):
                return None
            new_pois[name] = req["factors"]
        if new_sigmas or new_pois:
            par_map = dict(config.par_map)
            for name, sigmas in new_sigmas.items():
                ps = copy.copy(par_map[name]["paramset"])
                ps.sigmas = sigmas
                par_map[name] = dict(par_map[name], paramset=ps)
            aux = None
            if new_pois:
                aux = list(config.auxdata)
                observed = observed.copy()
                nmain = tpl.n_bins
                for name, factors in new_pois.items():
                    ps = copy.copy(par_map[name]["paramset"])
                    ps.auxdata = list(factors)
                    ps.factors = list(factors)
                    par_map[name] = dict(par_map[name], paramset=ps)
                    p0, a0, n = sl["pois_factor"] + self._pois0[name], self._aux0[name], len(factors)
                    fbuf[p0 : p0 + n] = [float(f) for f in factors]
                    aux[a0 : a0 + n] = list(factors)
                    observed[nmain + a0 : nmain + a0 + n] = [float(f) for f in factors]
                observed.setflags(write=False)
            config = copy.copy(config)
            config.par_map = par_map
            if aux is not None:
                config._auxdata = aux
        base = tpl._compiled
        compiled = Compiled(
            fbuf=fbuf,
            ibuf=base.ibuf,
            n_bins=base.n_bins,
            n_cells=base.n_cells,
            cell_of=base.cell_of,
            add_of=base.add_of,
            staterror=_Lazy(lambda: _staterror_info(base.staterror, spec)),  # type: ignore[arg-type]
        )
        # the index buffer is the template's (checked when it was built), fbuf the same size
        return Model(config, spec, observed, compiled, fbuf)


def _staterror_info(base: Mapping[str, Any], spec: Mapping[str, Any]) -> dict[str, Any]:
    """The template's staterror bookkeeping with the members' uncertainties read from ``spec``."""
    unc = {
        (ch["name"], s["name"], m["name"]): [float(u) for u in m["data"]]
        for ch in spec["channels"]
        for s in ch["samples"]
        for m in s["modifiers"]
        if m["type"] == "staterror"
    }
    out = {}
    for name, info in base.items():
        members = [(c, s, unc.get((c, s, name), u)) for c, s, u in info["members"]]
        out[name] = dict(info, members=members)
    return out
