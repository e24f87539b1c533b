"""Model layer: turn a model spec and pyhf's layout of it into histgym's packed dense arrays.

The only place that turns channel, sample and modifier names into indices.  pyhf supplies
the parameter layout (order, slices, inits, bounds, fixed flags, auxdata, constraint widths
and Poisson factors); the per-cell modifier entries are read from the (patched) spec.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from ._kernels.interp import CODE4_AINV as _CODE4_AINV
from ._kernels.interp import HISTOSYS_CODES, NORMSYS_CODES
from ._kernels.layout import pack


def code4_coefficients(hi: np.ndarray, lo: np.ndarray) -> np.ndarray:
    """The six code4 coefficients per (hi, lo) pair: float64 [len(hi), 6].

    Each row depends on its own pair only, bit for bit (a patch can recompute a few rows).
    """
    hi = np.asarray(hi, dtype=np.float64)
    lo = np.asarray(lo, dtype=np.float64)
    with np.errstate(divide="ignore", invalid="ignore"):
        b = np.stack(
            [
                hi - 1.0,
                lo - 1.0,
                np.log(hi) * hi,
                -np.log(lo) * lo,
                np.log(hi) ** 2 * hi,
                np.log(lo) ** 2 * lo,
            ]
        )
    # A @ b summed term by term in a fixed order (not BLAS, whose order depends on the
    # number of entries): an entry's coefficients do not depend on the other entries
    out = np.empty((hi.size, 6))
    for r in range(6):
        acc = _CODE4_AINV[r, 0] * b[0]
        for j in range(1, 6):
            acc = acc + _CODE4_AINV[r, j] * b[j]
        out[:, r] = acc
    return out


@dataclass(frozen=True)
class SampleCells:
    """Where one sample of one channel lives in the packed model.

    Attributes:
        cells: int64 [n_channel_bins] cell index of each bin of the channel.
        nominal: float64 [n_channel_bins] the sample's nominal yields in the spec.
        add_entries: int64 [n_h] histosys entries on those cells.
        add_pos: int64 [n_h] channel bin of each of those entries.
        up_abs, up_rel, dn_abs, dn_rel: float64 [n_h]: the entry's ``hi - nominal`` is
            ``up_abs + up_rel * y`` for a new nominal ``y`` (relative where the spec's
            nominal is non-zero, absolute where it is zero); likewise ``nominal - lo``.
        staterror_gauss: int64 [n_s] Gaussian-constraint entries whose width depends on
            this sample (staterror), and ``staterror_pos`` [n_s] their channel bin;
            ``staterror_other_nom`` / ``staterror_other_u2`` [n_s]: the sum of the other
            samples' nominal yields / squared absolute uncertainties in that bin;
            ``staterror_rel`` [n_s]: this sample's relative uncertainty (uncertainty/nominal).
    """

    cells: np.ndarray
    nominal: np.ndarray
    add_entries: np.ndarray
    add_pos: np.ndarray
    up_abs: np.ndarray
    up_rel: np.ndarray
    dn_abs: np.ndarray
    dn_rel: np.ndarray
    staterror_gauss: np.ndarray
    staterror_pos: np.ndarray
    staterror_other_nom: np.ndarray
    staterror_other_u2: np.ndarray
    staterror_rel: np.ndarray


@dataclass(frozen=True)
class Compiled:
    """The packed model plus the name->index maps needed around it."""

    fbuf: np.ndarray
    ibuf: np.ndarray
    n_bins: int
    n_cells: int
    cell_of: dict[tuple[str, str], np.ndarray]  # (channel, sample) -> cells per bin
    add_of: dict[tuple[str, str], list[tuple[int, int]]]  # -> (histosys entry, channel bin)
    staterror: dict[str, Any]  # name -> per-bin info for width recomputation


def _interp_codes(settings: dict[str, dict[str, str]]) -> tuple[int, int]:
    # pyhf falls back to the modifier classes' own defaults when a type is absent.
    ns = settings.get("normsys", {}).get("interpcode", "code1")
    hs = settings.get("histosys", {}).get("interpcode", "code0")
    return NORMSYS_CODES[ns], HISTOSYS_CODES[hs]


def compile_model(config: Any, spec: Any) -> Compiled:
    """Compile a model spec with pyhf's layout ``config`` into histgym's packed arrays."""
    samples_by = {
        (ch["name"], s["name"]): s for ch in spec["channels"] for s in ch["samples"]
    }
    channels = list(config.channels)
    offsets = {c: config.channel_slices[c].start for c in channels}
    n_bins = int(config.nmaindata)

    # staterror: global bins covered by each staterror name, in global order
    st_bins: dict[str, list[int]] = {}
    for ch in channels:
        for sname in config.samples:
            s = samples_by.get((ch, sname))
            if s is None:
                continue
            for mod in s["modifiers"]:
                if mod["type"] == "staterror":
                    bins = st_bins.setdefault(mod["name"], [])
                    for i in range(config.channel_nbins[ch]):
                        if offsets[ch] + i not in bins:
                            bins.append(offsets[ch] + i)
    for name in st_bins:
        st_bins[name].sort()

    nominal: list[float] = []
    bin_ptr = [0]
    fac_ptr = [0]
    fac_par: list[int] = []
    fac_ref: list[int] = []
    ns_hi: list[float] = []
    ns_lo: list[float] = []
    add_ptr = [0]
    add_par: list[int] = []
    hs_up: list[float] = []
    hs_dn: list[float] = []
    cell_of: dict[tuple[str, str], list[int]] = {}
    add_of: dict[tuple[str, str], list[tuple[int, int]]] = {}

    for ch in channels:
        nb = config.channel_nbins[ch]
        present = [s for s in config.samples if (ch, s) in samples_by]
        for i in range(nb):
            gbin = offsets[ch] + i
            for sname in present:
                s = samples_by[(ch, sname)]
                cell = len(nominal)
                cell_of.setdefault((ch, sname), []).append(cell)
                nom = float(s["data"][i])
                nominal.append(nom)
                for mod in s["modifiers"]:
                    mtype, mname = mod["type"], mod["name"]
                    start = config.par_slice(mname).start
                    if mtype in ("normfactor", "lumi"):
                        fac_par.append(start)
                        fac_ref.append(-1)
                    elif mtype in ("shapefactor", "shapesys"):
                        fac_par.append(start + i)
                        fac_ref.append(-1)
                    elif mtype == "staterror":
                        fac_par.append(start + st_bins[mname].index(gbin))
                        fac_ref.append(-1)
                    elif mtype == "normsys":
                        fac_par.append(start)
                        fac_ref.append(len(ns_hi))
                        ns_hi.append(float(mod["data"]["hi"]))
                        ns_lo.append(float(mod["data"]["lo"]))
                    elif mtype == "histosys":
                        add_of.setdefault((ch, sname), []).append((len(add_par), i))
                        add_par.append(start)
                        hs_up.append(float(mod["data"]["hi_data"][i]) - nom)
                        hs_dn.append(nom - float(mod["data"]["lo_data"][i]))
                    else:  # pragma: no cover - the schema admits no other type
                        raise ValueError(f"unknown modifier type {mtype!r}")
                fac_ptr.append(len(fac_par))
                add_ptr.append(len(add_par))
            bin_ptr.append(len(nominal))

    gauss_par: list[int] = []
    gauss_aux: list[int] = []
    gauss_sigma: list[float] = []
    pois_par: list[int] = []
    pois_aux: list[int] = []
    pois_factor: list[float] = []
    gauss_of_par: dict[int, int] = {}
    aux_off = 0
    for name in config.auxdata_order:
        parset = config.param_set(name)
        start = config.par_slice(name).start
        for i in range(parset.n_parameters):
            if parset.pdf_type == "normal":
                sigmas = getattr(parset, "sigmas", None)
                gauss_of_par[start + i] = len(gauss_par)
                gauss_par.append(start + i)
                gauss_aux.append(aux_off + i)
                gauss_sigma.append(float(sigmas[i]) if sigmas is not None else 1.0)
            else:
                pois_par.append(start + i)
                pois_aux.append(aux_off + i)
                pois_factor.append(float(parset.factors[i]))
        aux_off += parset.n_parameters

    ns_code, hs_code = _interp_codes(config.modifier_settings)
    coef = code4_coefficients(np.array(ns_hi), np.array(ns_lo)) if ns_hi else np.zeros((0, 6))
    fbuf, ibuf = pack(
        (
            n_bins,
            int(config.npars),
            int(len(config.auxdata)),
            ns_code,
            hs_code,
            int(np.max(np.diff(fac_ptr))) if len(fac_ptr) > 1 else 0,
        ),
        {
            "bin_ptr": np.array(bin_ptr),
            "fac_ptr": np.array(fac_ptr),
            "fac_par": np.array(fac_par, dtype=np.int64),
            "fac_ref": np.array(fac_ref, dtype=np.int64),
            "add_ptr": np.array(add_ptr),
            "add_par": np.array(add_par, dtype=np.int64),
            "gauss_par": np.array(gauss_par, dtype=np.int64),
            "gauss_aux": np.array(gauss_aux, dtype=np.int64),
            "pois_par": np.array(pois_par, dtype=np.int64),
            "pois_aux": np.array(pois_aux, dtype=np.int64),
        },
        {
            "nominal": np.array(nominal),
            "ns_hi": np.array(ns_hi),
            "ns_lo": np.array(ns_lo),
            "ns_coef": coef.ravel(),
            "hs_up": np.array(hs_up),
            "hs_dn": np.array(hs_dn),
            "gauss_sigma": np.array(gauss_sigma),
            "pois_factor": np.array(pois_factor),
        },
    )
    # staterror bookkeeping: which samples contribute to each staterror name's widths
    st_info: dict[str, Any] = {}
    for name, bins in st_bins.items():
        start = config.par_slice(name).start
        members = []
        for ch in channels:
            for sname in config.samples:
                s = samples_by.get((ch, sname))
                if s is None:
                    continue
                for mod in s["modifiers"]:
                    if mod["type"] == "staterror" and mod["name"] == name:
                        members.append((ch, sname, [float(u) for u in mod["data"]]))
        fixed = config.param_set(name).suggested_fixed
        st_info[name] = {
            "bins": bins,
            "gauss": [gauss_of_par[start + k] for k in range(len(bins))],
            "fixed": list(fixed) if isinstance(fixed, (list, tuple)) else [fixed] * len(bins),
            "members": members,
        }
    return Compiled(
        fbuf=fbuf,
        ibuf=ibuf,
        n_bins=n_bins,
        n_cells=len(nominal),
        cell_of={k: np.array(v, dtype=np.int64) for k, v in cell_of.items()},
        add_of=add_of,
        staterror=st_info,
    )


def sample_cells(compiled: Compiled, config: Any, spec: Any, channel: str, sample: str) -> SampleCells:
    """Bookkeeping to replace the nominal yields of ``sample`` in ``channel`` (see DESIGN.md)."""
    cells = compiled.cell_of[(channel, sample)]
    spec_sample = next(
        s
        for ch in spec["channels"]
        if ch["name"] == channel
        for s in ch["samples"]
        if s["name"] == sample
    )
    nominal = np.array(spec_sample["data"], dtype=np.float64)
    entries = compiled.add_of.get((channel, sample), [])
    off = config.channel_slices[channel].start
    sg, sp, so, su, sr = [], [], [], [], []
    for name, info in compiled.staterror.items():
        mine = [m for m in info["members"] if m[0] == channel and m[1] == sample]
        if not mine:
            continue
        _, _, unc = mine[0]
        for k, gbin in enumerate(info["bins"]):
            if not off <= gbin < off + len(nominal) or info["fixed"][k]:
                continue
            i = gbin - off
            other_nom = 0.0
            other_u2 = 0.0
            for ch, sname, u in info["members"]:
                if ch != channel:
                    continue
                if sname == sample:
                    continue
                s_other = next(
                    s
                    for c in spec["channels"]
                    if c["name"] == ch
                    for s in c["samples"]
                    if s["name"] == sname
                )
                other_nom += float(s_other["data"][i])
                other_u2 += u[i] ** 2
            sg.append(info["gauss"][k])
            sp.append(i)
            so.append(other_nom)
            su.append(other_u2)
            sr.append(unc[i] / nominal[i] if nominal[i] != 0 else 0.0)
    from ._kernels.layout import field_slice

    ent = np.array([e for e, _ in entries], dtype=np.int64)
    pos = np.array([p for _, p in entries], dtype=np.int64)
    up0 = compiled.fbuf[field_slice("hs_up", compiled.ibuf)][ent]
    dn0 = compiled.fbuf[field_slice("hs_dn", compiled.ibuf)][ent]
    nom0 = nominal[pos]
    rel = nom0 != 0.0
    safe = np.where(rel, nom0, 1.0)
    return SampleCells(
        cells=cells,
        up_abs=np.where(rel, 0.0, up0),
        up_rel=np.where(rel, up0 / safe, 0.0),
        dn_abs=np.where(rel, 0.0, dn0),
        dn_rel=np.where(rel, dn0 / safe, 0.0),
        nominal=nominal,
        add_entries=ent,
        add_pos=pos,
        staterror_gauss=np.array(sg, dtype=np.int64),
        staterror_pos=np.array(sp, dtype=np.int64),
        staterror_other_nom=np.array(so, dtype=np.float64),
        staterror_other_u2=np.array(su, dtype=np.float64),
        staterror_rel=np.array(sr, dtype=np.float64),
    )


def check_packed(fbuf: np.ndarray, ibuf: np.ndarray) -> None:
    """Check that every index stored in a packed model lies inside the arrays it indexes.

    With this invariant, and ``pars`` of length ``n_pars`` and ``data`` of length
    ``n_bins + n_aux`` (checked by :class:`histgym.Model`), no likelihood kernel can read or
    write out of bounds.  Costs O(size of the buffers), once per compiled model.

    Raises:
        ValueError: the buffers are inconsistent (a bug, or hand-made buffers).
    """
    from ._kernels.layout import FLOAT_FIELDS, INT_FIELDS, N_SCALARS

    def bad(msg: str) -> ValueError:
        return ValueError(f"inconsistent packed model: {msg}")

    if fbuf.dtype != np.float64 or ibuf.dtype != np.int64 or fbuf.ndim != 1 or ibuf.ndim != 1:
        raise bad("fbuf must be float64 [n] and ibuf int64 [n]")
    n_head = N_SCALARS + len(INT_FIELDS) + 1 + len(FLOAT_FIELDS) + 1
    if ibuf.size < n_head:
        raise bad(f"ibuf has {ibuf.size} entries, fewer than its header ({n_head})")
    ioff = ibuf[N_SCALARS : N_SCALARS + len(INT_FIELDS) + 1]
    foff = ibuf[N_SCALARS + len(INT_FIELDS) + 1 : n_head]
    if ioff[0] != n_head or ioff[-1] != ibuf.size or np.any(np.diff(ioff) < 0):
        raise bad("integer field offsets")
    if foff[0] != 0 or foff[-1] != fbuf.size or np.any(np.diff(foff) < 0):
        raise bad("float field offsets")
    f = {k: ibuf[ioff[i] : ioff[i + 1]] for i, k in enumerate(INT_FIELDS)}
    f.update({k: fbuf[foff[i] : foff[i + 1]] for i, k in enumerate(FLOAT_FIELDS)})
    n_bins, n_pars, n_aux, ns_code, hs_code, max_fac = (int(v) for v in ibuf[:N_SCALARS])
    if min(n_bins, n_pars, n_aux, max_fac) < 0:
        raise bad("negative size in the header")

    if ns_code not in NORMSYS_CODES.values() or hs_code not in HISTOSYS_CODES.values():
        raise bad("unknown interpolation code")
    n_cells = f["nominal"].size

    def ptr(name: str, n_rows: int, n_entries: int) -> None:
        p = f[name]
        if p.size != n_rows + 1 or p[0] != 0 or p[-1] != n_entries or np.any(np.diff(p) < 0):
            raise bad(f"{name} does not partition {n_entries} entries into {n_rows} rows")

    def idx(name: str, n: int, low: int = 0) -> None:
        v = f[name]
        if v.size and (v.min() < low or v.max() >= n):
            raise bad(f"{name} holds an index outside [{low}, {n})")

    def same(names: tuple[str, ...], n: int) -> None:
        for k in names:
            if f[k].size != n:
                raise bad(f"{k} has {f[k].size} entries, expected {n}")

    ptr("bin_ptr", n_bins, n_cells)
    ptr("fac_ptr", n_cells, f["fac_par"].size)
    ptr("add_ptr", n_cells, f["add_par"].size)
    if n_cells and int(np.max(np.diff(f["fac_ptr"]))) > max_fac:
        raise bad("a cell has more multiplicative entries than max_fac")
    n_ns = f["ns_hi"].size
    same(("fac_ref",), f["fac_par"].size)
    same(("ns_lo",), n_ns)
    same(("ns_coef",), 6 * n_ns)
    same(("hs_up", "hs_dn"), f["add_par"].size)
    same(("gauss_aux", "gauss_sigma"), f["gauss_par"].size)
    same(("pois_aux", "pois_factor"), f["pois_par"].size)
    for name in ("fac_par", "add_par", "gauss_par", "pois_par"):
        idx(name, n_pars)
    idx("fac_ref", n_ns, low=-1)
    idx("gauss_aux", n_aux)
    idx("pois_aux", n_aux)
