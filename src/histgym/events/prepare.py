"""Events layer: events prepared once for the compiled histogramming, and the pyhf export.

:func:`prepare` reads every process's columns, validates them against the
:class:`~histgym.events.Analysis`, and lays them out as flat arrays for
:mod:`histgym._kernels.histogram` (event sets, fine-grid cells of the fit observable, weight
columns, sorted copies of the cut observables).  :func:`workspace_spec` turns the binned
templates of an analysis into a pyhf JSON workspace (the one the environments compile once and
export).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt

from .._kernels import histogram as HK
from ..errors import UnknownName, did_you_mean
from .analysis import Analysis
from .inputs import InvalidAnalysis, read_columns

__all__ = ["PreparedEvents", "prepare", "workspace_spec", "fine_index", "split_templates"]

FloatArray = npt.NDArray[np.float64]
IntArray = npt.NDArray[np.int64]


def fine_index(x: FloatArray, grid: FloatArray) -> npt.NDArray[np.int32]:
    """Fine-grid cell of each value (``np.histogram`` conventions), -1 outside the range."""
    G = grid.size - 1
    idx = np.searchsorted(grid, x, side="right") - 1
    idx[x == grid[-1]] = G - 1
    idx[(idx < 0) | (idx >= G) | (x < grid[0]) | (x > grid[-1])] = -1
    return idx.astype(np.int32)


@dataclass
class PreparedEvents:
    """Flat arrays of the events of an analysis (see :mod:`histgym._kernels.histogram`).

    Attributes:
        analysis: the description.
        processes: process names in the analysis's order (signal included).
        grid: float64 [G + 1] the fine grid of the fit observable.
        thr_names: one label per threshold (e.g. ``"score>"``); ``thr_kind`` int64 [n_thr]
            (0: ``>``, 1: ``<``), ``thr_lo``/``thr_hi``/``thr_init`` float64 [n_thr].
        sets: (process, systematic or None, "up"/"down"/None) per event set (selection);
            ``views`` the same per view (fit-observable variant) of the sets.
        shape_entries: (process, systematic) per shape entry (rows of ``sh_src``).
        n_events: events per process.
        arrays: the kernel's static arrays by name.
    """

    analysis: Analysis
    processes: list[str]
    grid: FloatArray
    thr_names: list[str]
    thr_kind: IntArray
    thr_lo: FloatArray
    thr_hi: FloatArray
    thr_init: FloatArray
    sets: list[tuple[str, str | None, str | None]]
    views: list[tuple[str, str | None, str | None]]
    shape_entries: list[tuple[str, str]]
    n_events: dict[str, int]
    arrays: dict[str, Any]

    @property
    def G(self) -> int:
        """Number of fine-grid cells."""
        return int(self.grid.size - 1)

    @property
    def n_bins(self) -> int:
        """Number of bins of the fit observable."""
        return int(self.analysis.bins)

    @property
    def n_thr(self) -> int:
        """Number of tunable thresholds (a window counts two)."""
        return int(self.thr_kind.size)

    def state_sizes(self) -> dict[str, int]:
        """Sizes of the per-environment state arrays."""
        a = self.arrays
        return {
            "E": int(a["ev_off"][-1]),
            "H": int(a["h_off"][-1]),
            "T": HK.t_size(len(self.processes), len(self.shape_entries), self.n_bins),
            "K": int(a["ev_off"].size - 1),
        }

    def equal_width_edges(self) -> FloatArray:
        """Inner edges of equal-width bins, in grid units (float64 [B - 1])."""
        B = self.n_bins
        return np.array([round(j * self.G / B) for j in range(1, B)], dtype=np.float64)

    def edges_value(self, ek: Any) -> FloatArray:
        """Bin edges (fit-observable units) of grid indices ``ek`` (int [B + 1])."""
        return self.grid[np.asarray(ek, dtype=np.int64)]

    def edges_to_grid(self, edges: Any) -> FloatArray:
        """Inner edges in observable units (float [B - 1]) -> grid units (nearest cells)."""
        lo, hi = self.analysis.range
        e = np.asarray(edges, dtype=np.float64)
        return (e - lo) / (hi - lo) * self.G


def prepare(analysis: Analysis) -> PreparedEvents:
    """Read, validate and lay out the events of ``analysis`` for the compiled histogramming.

    Raises:
        UnknownName: unknown observable / column (names the process and column).
        InvalidEvents: malformed events (names the process and column).
        InvalidAnalysis: inconsistent description (e.g. a shifted observable that is not used).
    """
    an = analysis
    procs = list(an.processes)
    used_obs = [an.observable] + an.cut_observables()
    for s in an.shape_systematics:
        if s.kind == "observable":
            for d in (s.up, s.down):
                for o in d:
                    if o not in used_obs:
                        msg = (
                            f"shape systematic {s.name!r} shifts {o!r}, which is neither the fit "
                            f"observable nor cut; observables are {used_obs}."
                        )
                        raise UnknownName(msg + did_you_mean(o, used_obs))
    lo, hi = an.range
    G = int(an.fine_bins)
    grid = np.linspace(lo, hi, G + 1)
    thr_names: list[str] = []
    thr_kind: list[int] = []
    thr_lo: list[float] = []
    thr_hi: list[float] = []
    thr_init: list[float] = []
    thr_obs: list[str] = []
    for c in an.cuts:
        for kind, v in c.thresholds():
            thr_names.append(f"{c.observable}{kind}")
            thr_kind.append(HK.GT if kind == ">" else HK.LT)
            thr_lo.append(c.range[0])
            thr_hi.append(c.range[1])
            thr_init.append(v)
            thr_obs.append(c.observable)

    sets: list[tuple[str, str | None, str | None]] = []
    views: list[tuple[str, str | None, str | None]] = []
    set_views: list[list[np.ndarray]] = []  # fine cells of each view of each set
    vc: list[int] = []  # weight columns used by each view
    w_parts: list[np.ndarray] = []
    wc: list[int] = []
    proc_view: list[int] = []
    srt_key: dict[tuple[str, str], int] = {}
    srt_idx_parts: list[np.ndarray] = []
    srt_val_parts: list[np.ndarray] = []
    thr_srt_rows: list[list[int]] = []
    sh_src: list[list[int]] = []
    shape_entries: list[tuple[str, str]] = []
    n_events: dict[str, int] = {}
    cut_obs = set(thr_obs)

    def sorted_id(p: str, col: str, cols: dict[str, FloatArray]) -> int:
        key = (p, col)
        if key not in srt_key:
            order = np.argsort(cols[col], kind="stable")
            srt_key[key] = len(srt_idx_parts)
            srt_idx_parts.append(order.astype(np.int32))
            srt_val_parts.append(np.ascontiguousarray(cols[col][order]))
        return srt_key[key]

    for pi, p in enumerate(procs):
        pr = an.processes[p]
        wsys = [s for s in an.shape_systematics if s.kind == "weight" and p in an.shape_processes(s)]
        osys = [s for s in an.shape_systematics if s.kind == "observable" and p in an.shape_processes(s)]
        need = list(used_obs)
        if pr.weight is not None:
            need.append(pr.weight)
        for s in wsys:
            need += [s.up, s.down]
        for s in osys:
            need += list(s.up.values()) + list(s.down.values())
        cols = read_columns(p, pr.source, need, tree=pr.tree)
        n = cols[used_obs[0]].size
        n_events[p] = n
        w = cols[pr.weight] if pr.weight is not None else np.ones(n)

        def add_set(shift: dict[str, str], wcols: list[FloatArray], label: tuple[Any, Any]) -> int:
            """A new event set (own selection); returns the index of its first view."""
            sets.append((p, label[0], label[1]))
            w_parts.append(np.ascontiguousarray(np.stack(wcols, axis=1)).ravel())
            wc.append(len(wcols))
            thr_srt_rows.append([sorted_id(p, shift.get(o, o), cols) for o in thr_obs])
            set_views.append([])
            return add_view(shift, len(wcols), label)

        def add_view(shift: dict[str, str], ncols: int, label: tuple[Any, Any]) -> int:
            """A new view (fit-observable variant) of the last set; returns its index."""
            views.append((p, label[0], label[1]))
            set_views[-1].append(fine_index(cols[shift.get(an.observable, an.observable)], grid))
            vc.append(ncols)
            return len(views) - 1

        wcols = [w]
        for s in wsys:
            wcols += [cols[s.up], cols[s.down]]
        v_nom = add_set({}, wcols, (None, None))
        proc_view.append(v_nom)
        # variations shifting only the fit observable are views of the nominal set (they share
        # its selection); those shifting a cut observable need sets of their own
        pending = []
        for s in an.shape_systematics:
            if p not in an.shape_processes(s):
                continue
            if s.kind == "weight":
                j = wsys.index(s)
                shape_entries.append((p, s.name))
                sh_src.append([pi, v_nom, 2 + 2 * j, v_nom, 3 + 2 * j])
            elif not (set(s.up) | set(s.down)) & cut_obs:
                v_up = add_view(s.up, 1, (s.name, "up"))
                v_dn = add_view(s.down, 1, (s.name, "down"))
                shape_entries.append((p, s.name))
                sh_src.append([pi, v_up, 0, v_dn, 0])
            else:
                pending.append(s)
        for s in pending:
            v_up = add_set(s.up, [w], (s.name, "up"))
            v_dn = add_set(s.down, [w], (s.name, "down"))
            shape_entries.append((p, s.name))
            sh_src.append([pi, v_up, 0, v_dn, 0])
    # shape entries in (process, systematic) order of the analysis
    order_sh = sorted(
        range(len(shape_entries)),
        key=lambda i: (procs.index(shape_entries[i][0]),
                       [s.name for s in an.shape_systematics].index(shape_entries[i][1])),
    )
    shape_entries = [shape_entries[i] for i in order_sh]
    sh_src = [sh_src[i] for i in order_sh]

    K = len(sets)
    n_thr = len(thr_kind)
    ev_sizes = [set_views[k][0].size for k in range(K)]
    view_off = np.zeros(K + 1, dtype=np.int64)
    view_off[1:] = np.cumsum([len(v) for v in set_views])
    fine_flat = [f for vs in set_views for f in vs]
    fine_off = np.zeros(len(fine_flat) + 1, dtype=np.int64)
    fine_off[1:] = np.cumsum([f.size for f in fine_flat])
    # cell records of every view: G + 1 cells (the last one: outside the fit range)
    rw = [HK.rec_width.py_func(c) for c in vc]
    h_off = np.zeros(len(views) + 1, dtype=np.int64)
    h_off[1:] = np.cumsum([r * (G + 1) for r in rw])
    if h_off[-1] >= 2**31:
        raise InvalidAnalysis(f"too many fine_bins ({G}) for the number of variations")
    # streams: per (set, sorted observable) the event index, the offsets of its cell records
    # in every view and the weights in sorted order, so that moving a threshold reads memory
    # sequentially
    str_key: dict[tuple[int, int], int] = {}
    str_e: list[np.ndarray] = []
    str_cell: list[np.ndarray] = []
    str_w: list[np.ndarray] = []
    thr_str_rows: list[list[int]] = []
    for k in range(K):
        v0 = int(view_off[k])
        rec = [h_off[v0 + i] + np.where(f < 0, G, f).astype(np.int64) * rw[v0 + i]
               for i, f in enumerate(set_views[k])]
        row = []
        for j in range(n_thr):
            s_id = thr_srt_rows[k][j]
            key = (k, s_id)
            if key not in str_key:
                order = srt_idx_parts[s_id]
                str_key[key] = len(str_e)
                str_e.append(order)
                str_cell.append(np.stack([r[order] for r in rec], axis=1).ravel())
                str_w.append(w_parts[k].reshape(-1, wc[k])[order].ravel())
            row.append(str_key[key])
        thr_str_rows.append(row)
    str_off = np.zeros(len(str_e) + 1, dtype=np.int64)
    str_off[1:] = np.cumsum([x.size for x in str_e])
    str_woff = np.zeros(len(str_e) + 1, dtype=np.int64)
    str_woff[1:] = np.cumsum([x.size for x in str_w])
    ev_off = np.zeros(K + 1, dtype=np.int64)
    ev_off[1:] = np.cumsum(ev_sizes)
    srt_off = np.zeros(len(srt_idx_parts) + 1, dtype=np.int64)
    srt_off[1:] = np.cumsum([x.size for x in srt_idx_parts])
    w_off = np.zeros(K + 1, dtype=np.int64)
    w_off[1:] = np.cumsum([x.size for x in w_parts])
    arrays = {
        "ev_off": ev_off,
        "view_off": view_off,
        "fine_off": fine_off,
        "fine": np.ascontiguousarray(np.concatenate(fine_flat), dtype=np.int32),
        "w_off": w_off,
        "wc": np.array(wc, dtype=np.int64),
        "W": np.ascontiguousarray(np.concatenate(w_parts), dtype=np.float64),
        "vc": np.array(vc, dtype=np.int64),
        "h_off": h_off,
        "srt_off": srt_off,
        "srt_idx": (
            np.ascontiguousarray(np.concatenate(srt_idx_parts), dtype=np.int32)
            if srt_idx_parts else np.zeros(0, dtype=np.int32)
        ),
        "srt_val": (
            np.ascontiguousarray(np.concatenate(srt_val_parts), dtype=np.float64)
            if srt_val_parts else np.zeros(0)
        ),
        "thr_srt": np.ascontiguousarray(np.array(thr_srt_rows, dtype=np.int64).reshape(K, n_thr)),
        "thr_kind": np.array(thr_kind, dtype=np.int64),
        "thr_lo": np.array(thr_lo, dtype=np.float64),
        "thr_hi": np.array(thr_hi, dtype=np.float64),
        "str_off": str_off,
        "str_e": (np.ascontiguousarray(np.concatenate(str_e), dtype=np.int32)
                  if str_e else np.zeros(0, dtype=np.int32)),
        "str_cell": (np.ascontiguousarray(np.concatenate(str_cell), dtype=np.int32)
                     if str_cell else np.zeros(0, dtype=np.int32)),
        "str_woff": str_woff,
        "str_w": (np.ascontiguousarray(np.concatenate(str_w), dtype=np.float64)
                  if str_w else np.zeros(0)),
        "thr_str": np.ascontiguousarray(np.array(thr_str_rows, dtype=np.int64).reshape(K, n_thr)),
        "proc_view": np.array(proc_view, dtype=np.int64),
        "sh_src": np.array(sh_src, dtype=np.int64).reshape(len(sh_src), 5),
        "is_bkg": np.array([0 if p == an.signal else 1 for p in procs], dtype=np.int64),
    }
    return PreparedEvents(
        analysis=an, processes=procs, grid=grid, thr_names=thr_names,
        thr_kind=arrays["thr_kind"], thr_lo=arrays["thr_lo"], thr_hi=arrays["thr_hi"],
        thr_init=np.array(thr_init, dtype=np.float64), sets=sets, views=views,
        shape_entries=shape_entries,
        n_events=n_events, arrays=arrays,
    )


def split_templates(prep: PreparedEvents, T: FloatArray) -> dict[str, Any]:
    """Views of a template buffer: ``Y``/``S2`` [n_proc, B], ``HU``/``HD`` [n_sh, B], ``NU``/``ND``."""
    P = len(prep.processes)
    B = prep.n_bins
    nsh = len(prep.shape_entries)
    o = 2 * P * B
    return {
        "Y": T[: P * B].reshape(P, B),
        "S2": T[P * B : o].reshape(P, B),
        "HU": T[o : o + nsh * B].reshape(nsh, B),
        "HD": T[o + nsh * B : o + 2 * nsh * B].reshape(nsh, B),
        "NU": T[o + 2 * nsh * B : o + 2 * nsh * B + nsh],
        "ND": T[o + 2 * nsh * B + nsh : o + 2 * nsh * B + 2 * nsh],
    }


def workspace_spec(prep: PreparedEvents, T: FloatArray, observed: Any) -> dict[str, Any]:
    """The pyhf workspace (JSON dict) of the analysis with templates ``T``.

    Args:
        prep: the prepared events.
        T: float64 template buffer (see :mod:`histgym._kernels.histogram`).
        observed: float [B] the observation of the channel (e.g. Asimov data).

    Each process carries: the POI normfactor (signal), ``staterror_<channel>`` with
    ``sqrt(sum w^2)`` (if enabled), its normsys, ``lumi`` (if set), and per shape systematic a
    normsys (``hi = NU``, ``lo = ND``) plus a histosys with the normalised templates (more than
    one bin only), as cabinetry's ``NormPlusShape``.
    """
    an = prep.analysis
    t = split_templates(prep, np.asarray(T, dtype=np.float64))
    B = prep.n_bins
    samples = []
    for pi, p in enumerate(prep.processes):
        mods: list[dict[str, Any]] = []
        if p == an.signal:
            mods.append({"name": an.poi, "type": "normfactor", "data": None})
        if an.staterror:
            mods.append({
                "name": f"staterror_{an.channel}", "type": "staterror",
                "data": [math.sqrt(v) for v in t["S2"][pi]],
            })
        for ns in an.normsys:
            if p in ns.processes:
                mods.append({"name": ns.name, "type": "normsys",
                             "data": {"hi": float(ns.hi), "lo": float(ns.lo)}})
        if an.lumi is not None:
            mods.append({"name": "lumi", "type": "lumi", "data": None})
        for i, (q, sname) in enumerate(prep.shape_entries):
            if q != p:
                continue
            mods.append({"name": sname, "type": "normsys",
                         "data": {"hi": float(t["NU"][i]), "lo": float(t["ND"][i])}})
            if B > 1:
                mods.append({"name": sname, "type": "histosys", "data": {
                    "hi_data": [float(v) for v in t["HU"][i]],
                    "lo_data": [float(v) for v in t["HD"][i]],
                }})
        samples.append({"name": p, "data": [float(v) for v in t["Y"][pi]], "modifiers": mods})
    params: list[dict[str, Any]] = []
    if an.lumi is not None:
        lu = float(an.lumi)
        params.append({"name": "lumi", "auxdata": [1.0], "sigmas": [lu],
                       "bounds": [[max(1e-3, 1.0 - 5.0 * lu), 1.0 + 5.0 * lu]], "inits": [1.0]})
    obs = [float(v) for v in np.asarray(observed, dtype=np.float64)]
    if len(obs) != B:
        raise InvalidAnalysis(f"observed data must have {B} bins, got {len(obs)}")
    return {
        "channels": [{"name": an.channel, "samples": samples}],
        "observations": [{"name": an.channel, "data": obs}],
        "measurements": [{"name": an.measurement, "config": {"poi": an.poi, "parameters": params}}],
        "version": "1.0.0",
    }
