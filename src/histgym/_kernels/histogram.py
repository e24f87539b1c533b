"""Kernels layer: histograms of selected events, updated incrementally as cuts and edges move.

Events are prepared once (``histgym.events.prepare``) into *event sets*: a set is one
population of events with one selection (a process, or a process under a variation that
shifts a cut observable).  Set ``k`` holds ``ev_off[k+1] - ev_off[k]`` events and one or more
*views* ``v`` in ``view_off[k]:view_off[k+1]`` (the nominal fit observable, and variations
that shift only the fit observable), each with

* ``fine`` int32 (from ``fine_off[v]``): the fine-grid cell of the view's fit observable per
  event (``-1`` outside the fit range; ``G`` equal cells with edges ``grid[0..G]``, cells
  ``[grid[g], grid[g+1])``, the last one closed, as ``np.histogram``);
* a block of ``G + 1`` cell *records* in ``H`` from ``h_off[v]`` (cell ``G`` collects the
  events outside the fit range and is never read), each :func:`rec_width` ``(vc[v])`` float64
  wide: the number of selected events, their sum of weights, sum of squared weights and sums of
  the alternative weights (weight-type variations), side by side so that adding or removing an
  event touches one record (mostly one cache line) per view. A cell whose count drops to 0 is
  reset to exactly 0 (incremental sums cannot drift there).

``W`` float64 holds the set's event-major weight columns (``wc[k]`` per event, from
``w_off[k]``; column 0 the event weight). Each tunable threshold ``j`` has a kind
(``thr_kind``: 0 selects ``x > t``, 1 selects ``x < t``) and per set a sorted copy of its
observable (``srt_*``) and a *stream* (``thr_str[k, j]``): event index, the offsets in ``H`` of
its cell record in every view (``str_cell``) and its weights in that sorted order (``str_*``),
so that moving a threshold reads memory sequentially. Per environment, ``pos[k, j]`` is the
number of sorted events at or below the threshold (``x <= t`` for kind 0, ``x < t`` for kind 1)
and ``fail`` int8 [E] counts the thresholds an event fails (selected: ``fail == 0``).

Moving a threshold visits only the events between its old and new position; moving the inner
bin edges (``ek``, int64 [B+1] on the fine grid, ``ek[0] = 0``, ``ek[B] = G``) costs ``O(G)``
per column. A move costs a pass over the events it visits (their fail counters, collecting
those whose selection changes without a branch) and a pass over the collected ones (one record
per view each). The binned templates, the validity of the analysis (minimum background) and the
model update (nominal yields, histosys templates, normsys factors with their code4
coefficients, staterror widths) follow; the metric is computed by the scoring core of
:mod:`histgym._kernels.env_step` (``_evaluate_nograd``: ``_evaluate`` without the reward
gradient), as for the histogram environments.

Template buffer ``T`` (float64) of one analysis, for ``n_proc`` processes and ``n_sh`` shape
entries (process, systematic): ``Y [n_proc, B]`` yields, ``S2 [n_proc, B]`` sums of squared
weights, ``HU``/``HD [n_sh, B]`` normalised up/down templates, ``NU``/``ND [n_sh]`` their
normalisation factors (see :func:`templates`).
"""

from __future__ import annotations

import math

import numpy as np
from numba import prange

from ._jit import jit, jit_inline, jit_parallel
from .interp import CODE4_AINV  # noqa: F401  (re-exported: envs.analysis passes HK.CODE4_AINV)
from .env_step import CI_DELTA, O_REWARD, O_VALUE, PV_ASIMOV, PV_INIT, _evaluate_nograd
from .layout import unpack
from .likelihood import expected_main

# thr kinds
GT, LT = 0, 1
# acfg_f entries
AF_CUT_SCALE, AF_EDGE_SCALE, AF_MIN_EVENTS, AF_MAX_REL = range(4)
# status codes written to st_i[0]
V_OK, V_MIN_EVENTS, V_REL_STAT, V_NEGATIVE, V_NORM = 0, 1, 2, 3, 4
N_ST_I = 4  # [validity code, offending bin, toggled events, processed]



def t_size(n_proc: int, n_sh: int, n_bins: int) -> int:
    """Length of a template buffer ``T``."""
    return 2 * n_proc * n_bins + n_sh * (2 * n_bins + 2)


@jit
def search(vals, t, kind):
    """Number of ``vals`` (sorted) ``<= t`` (kind 0) or ``< t`` (kind 1)."""
    lo = 0
    hi = vals.shape[0]
    if kind == GT:
        while lo < hi:
            mid = (lo + hi) >> 1
            if vals[mid] <= t:
                lo = mid + 1
            else:
                hi = mid
    else:
        while lo < hi:
            mid = (lo + hi) >> 1
            if vals[mid] < t:
                lo = mid + 1
            else:
                hi = mid
    return lo


@jit_inline
def rec_width(c):
    """Float64 entries of a cell record of a view with ``c`` weight columns: count, sum w,
    sum w^2 and ``c - 1`` alternative weights (not padded: a smaller footprint in the cache
    was faster than 32-byte aligned records)."""
    return c + 2


@jit_inline
def _toggle(cell, co, nv, ncol, W, wo, s, H):
    """Add (``s`` = 1.0) or remove (-1.0) one event in each of its ``nv`` views.

    ``cell[co:co + nv]`` are the offsets of the event's records in ``H``, ``ncol[i]`` the
    weight columns of view ``i``, ``W[wo + j]`` the event's weight (``j = 0``) and alternative
    weights.  A record whose count drops to 0 is reset to exactly 0.
    """
    w = W[wo]
    sw = s * w
    sw2 = sw * w
    for i in range(nv):
        o = cell[co + i]
        n = H[o] + s
        H[o] = n
        if n != 0.0:
            H[o + 1] += sw
            H[o + 2] += sw2
            for j in range(1, ncol[i]):
                H[o + 2 + j] += s * W[wo + j]
        else:
            for j in range(ncol[i] + 1):
                H[o + 1 + j] = 0.0


@jit_inline
def _toggle_plain(cell, co, nv, w, s, H):
    """:func:`_toggle` for views without alternative weights (``ncol`` all 1)."""
    sw = s * w
    sw2 = sw * w
    for i in range(nv):
        o = cell[co + i]
        n = H[o] + s
        H[o] = n
        if n != 0.0:
            H[o + 1] += sw
            H[o + 2] += sw2
        else:
            H[o + 1] = 0.0
            H[o + 2] = 0.0


@jit
def rebuild(thr, ev_off, view_off, fine_off, fine, w_off, wc, W, vc, h_off, srt_off, srt_idx,
            srt_val, thr_srt, thr_kind, G, pos, fail, H):
    """Histograms from scratch for thresholds ``thr`` (float64 [n_thr]): sets pos, fail, H."""
    K = ev_off.shape[0] - 1
    n_thr = thr.shape[0]
    for i in range(fail.shape[0]):
        fail[i] = 0
    for i in range(H.shape[0]):
        H[i] = 0.0
    for k in range(K):
        n = ev_off[k + 1] - ev_off[k]
        base = ev_off[k]
        for j in range(n_thr):
            s = thr_srt[k, j]
            vals = srt_val[srt_off[s] : srt_off[s + 1]]
            idx = srt_idx[srt_off[s] : srt_off[s + 1]]
            p = search(vals, thr[j], thr_kind[j])
            pos[k, j] = p
            if thr_kind[j] == GT:
                for r in range(p):
                    fail[base + idx[r]] += 1
            else:
                for r in range(p, n):
                    fail[base + idx[r]] += 1
        nv = view_off[k + 1] - view_off[k]
        cell = np.empty(nv, dtype=np.int64)
        ncol = vc[view_off[k] : view_off[k + 1]]
        c = wc[k]
        for e in range(n):
            if fail[base + e] == 0:
                for i in range(nv):
                    v = view_off[k] + i
                    g = fine[fine_off[v] + e]
                    cell[i] = h_off[v] + (g if g >= 0 else G) * rec_width(vc[v])
                _toggle(cell, 0, nv, ncol, W, w_off[k] + e * c, 1.0, H)


@jit
def move_thresholds(thr_new, ev_off, view_off, wc, vc, h_off, srt_off, srt_val, thr_srt,
                    thr_kind, str_off, str_e, str_cell, str_woff, str_w, thr_str, G, thr, pos,
                    fail, H):
    """Move every threshold to ``thr_new`` incrementally; returns the events visited.

    The events between the old and new position are read from the stream ``thr_str[k, j]``
    (event index, record offsets of the set's views and weights in sorted order).
    """
    K = ev_off.shape[0] - 1
    n_thr = thr.shape[0]
    visited = 0
    for j in range(n_thr):
        if thr_new[j] == thr[j]:
            continue
        kind = thr_kind[j]
        for k in range(K):
            s = thr_srt[k, j]
            vals = srt_val[srt_off[s] : srt_off[s + 1]]
            p0 = pos[k, j]
            p1 = search(vals, thr_new[j], kind)
            if p1 == p0:
                continue
            base = ev_off[k]
            q = thr_str[k, j]
            so = str_off[q]
            nv = view_off[k + 1] - view_off[k]
            ncol = vc[view_off[k] : view_off[k + 1]]
            fo = nv * so
            c = wc[k]
            plain = c == 1  # no alternative weights in any view: the fast path
            for i in range(nv):
                if ncol[i] != 1:
                    plain = False
            wo = str_woff[q]
            a = min(p0, p1)
            b = max(p0, p1)
            # GT: positions below p fail; LT: positions at/above p fail
            more_fail = (p1 > p0) == (kind == GT)
            visited += b - a
            # an event enters (leaves) the selection when its fail count drops to (leaves) 0.
            # Two passes: the fail counters, collecting the events whose selection changes
            # (branch-free), then their records (no mispredicted branch between the loads)
            step = 1 if more_fail else -1
            edge = 0 if more_fail else 1
            sign = -1.0 if more_fail else 1.0
            buf = np.empty(b - a, dtype=np.int32)
            m = 0
            for r in range(a, b):
                e = base + str_e[so + r]
                f = fail[e]
                fail[e] = f + step
                buf[m] = r
                m += 1 if f == edge else 0
            if plain:
                for i in range(m):
                    r = buf[i]
                    _toggle_plain(str_cell, fo + r * nv, nv, str_w[wo + r * c], sign, H)
            else:
                for i in range(m):
                    r = buf[i]
                    _toggle(str_cell, fo + r * nv, nv, ncol, str_w, wo + r * c, sign, H)
            pos[k, j] = p1
        thr[j] = thr_new[j]
    return visited


@jit
def coarse(H, h_off, vc, v1, col1, v2, col2, ek, out, oo1, oo2):
    """Sum column ``col1`` of view ``v1``'s cell records into the bins ``ek`` ->
    ``out[oo1 : oo1 + B]``, and column ``col2`` of view ``v2`` -> ``out[oo2 : oo2 + B]``.

    Columns: 0 sum w, 1 sum w^2, 1 + j alternative weight j.  The two sums run in one loop
    (two independent chains of additions, each in cell order).
    """
    R1 = rec_width(vc[v1])
    R2 = rec_width(vc[v2])
    o1 = h_off[v1] + 1 + col1
    o2 = h_off[v2] + 1 + col2
    B = ek.shape[0] - 1
    for b in range(B):
        s1 = 0.0
        s2 = 0.0
        for g in range(ek[b], ek[b + 1]):
            s1 += H[o1 + g * R1]
            s2 += H[o2 + g * R2]
        out[oo1 + b] = s1
        out[oo2 + b] = s2


@jit
def templates(H, h_off, vc, ek, proc_view, sh_src, is_bkg, acfg_f, T):
    """Binned templates of the analysis into ``T``; returns (validity code, offending bin).

    ``proc_view`` int64 [n_proc]: each process's nominal view; ``sh_src`` int64 [n_sh, 5]:
    (process, up view, up column, down view, down column).
    Normalised templates as cabinetry's ``NormPlusShape``: ``NU = sum(up) / sum(nominal)``,
    ``HU = up / NU`` (likewise down); a process without selected events gets ``NU = ND = 1``
    and ``HU = HD = Y``.  ``T`` is indexed flat (offsets as :func:`t_size`).
    """
    P = proc_view.shape[0]
    B = ek.shape[0] - 1
    nsh = sh_src.shape[0]
    oS = P * B  # S2
    oU = 2 * P * B  # HU
    oD = oU + nsh * B  # HD
    oN = oD + nsh * B  # NU, then ND at oN + nsh
    for p in range(P):
        coarse(H, h_off, vc, proc_view[p], 0, proc_view[p], 1, ek, T, p * B, oS + p * B)
    code = V_OK
    where = -1
    for i in range(nsh):
        p = sh_src[i, 0]
        coarse(H, h_off, vc, sh_src[i, 1], sh_src[i, 2], sh_src[i, 3], sh_src[i, 4], ek, T,
               oU + i * B, oD + i * B)
        sy = 0.0
        su = 0.0
        sd = 0.0
        for b in range(B):
            sy += T[p * B + b]
            su += T[oU + i * B + b]
            sd += T[oD + i * B + b]
        if sy == 0.0:
            T[oN + i] = 1.0
            T[oN + nsh + i] = 1.0
            for b in range(B):
                T[oU + i * B + b] = T[p * B + b]
                T[oD + i * B + b] = T[p * B + b]
            continue
        nu = su / sy
        nd = sd / sy
        if not (nu > 0.0 and nd > 0.0):
            if code == V_OK:
                code = V_NORM
            nu = 1.0 if not nu > 0.0 else nu
            nd = 1.0 if not nd > 0.0 else nd
        T[oN + i] = nu
        T[oN + nsh + i] = nd
        for b in range(B):
            T[oU + i * B + b] = T[oU + i * B + b] / nu
            T[oD + i * B + b] = T[oD + i * B + b] / nd
    min_ev = acfg_f[AF_MIN_EVENTS]
    max_rel = acfg_f[AF_MAX_REL]
    for b in range(B):
        bk = 0.0
        b2 = 0.0
        for p in range(P):
            y = T[p * B + b]
            if y < 0.0 and code == V_OK:
                code = V_NEGATIVE
                where = b
            if is_bkg[p] == 1:
                bk += y
                b2 += T[oS + p * B + b]
        if code == V_OK:
            if not (bk >= min_ev and bk > 0.0 and b2 > 0.0):
                code = V_MIN_EVENTS
                where = b
            elif max_rel > 0.0 and math.sqrt(b2) > max_rel * bk:
                code = V_REL_STAT
                where = b
    return code, where


@jit
def code4_coef(hi, lo, ainv, out):
    """The six code4 coefficients of a normsys with factors ``hi``/``lo`` into ``out``."""
    lh = math.log(hi)
    ll = math.log(lo)
    v0 = hi - 1.0
    v1 = lo - 1.0
    v2 = lh * hi
    v3 = -ll * lo
    v4 = lh * lh * hi
    v5 = ll * ll * lo
    for r in range(6):
        out[r] = (ainv[r, 0] * v0 + ainv[r, 1] * v1 + ainv[r, 2] * v2 + ainv[r, 3] * v3
                  + ainv[r, 4] * v4 + ainv[r, 5] * v5)


@jit
def write_model(T, B, sh_src, cell, sh_hs, sh_ns, st_gauss, ainv, fbuf, ibuf):
    """Write templates ``T`` into the packed model ``fbuf`` (nominals, histosys, normsys, staterror).

    ``cell`` int64 [n_proc, B] cell of each (process, bin); ``sh_hs``/``sh_ns`` int64
    [n_sh, B] histosys entry / normsys index per bin (-1: none); ``st_gauss`` int64 [B]
    Gaussian constraint of each bin's staterror parameter (-1: none).
    """
    m = unpack(fbuf, ibuf)
    P = cell.shape[0]
    nsh = sh_src.shape[0]
    oS = P * B
    oU = 2 * P * B
    oD = oU + nsh * B
    oN = oD + nsh * B
    for p in range(P):
        for b in range(B):
            m.nominal[cell[p, b]] = T[p * B + b]
    for i in range(nsh):
        p = sh_src[i, 0]
        nu = T[oN + i]
        nd = T[oN + nsh + i]
        for b in range(B):
            y = T[p * B + b]
            e = sh_hs[i, b]
            if e >= 0:
                m.hs_up[e] = T[oU + i * B + b] - y
                m.hs_dn[e] = y - T[oD + i * B + b]
            r = sh_ns[i, b]
            if r >= 0:
                m.ns_hi[r] = nu
                m.ns_lo[r] = nd
                code4_coef(nu, nd, ainv, m.ns_coef[6 * r : 6 * r + 6])
    for b in range(B):
        g = st_gauss[b]
        if g < 0:
            continue
        s2 = 0.0
        s = 0.0
        for p in range(P):
            # pyhf: sqrt(sum_s u_s^2) / sum_s nominal_s with u_s = sqrt(sum w^2)
            u = math.sqrt(T[oS + p * B + b])
            s2 += u * u
            s += T[p * B + b]
        sig = math.sqrt(s2) / s if s > 0.0 else 0.0
        m.gauss_sigma[g] = sig if sig > 0.0 else 1.0


@jit
def quantize_edges(edge_f, G, ek):
    """Inner edges (float64 [B-1], grid units) -> ordered grid indices ``ek`` (int64 [B+1])."""
    B = ek.shape[0] - 1
    ek[0] = 0
    ek[B] = G
    for j in range(1, B):
        v = int(math.floor(edge_f[j - 1] + 0.5))
        ek[j] = min(max(v, 1), G - 1)
    for j in range(1, B):
        if ek[j] <= ek[j - 1]:
            ek[j] = ek[j - 1] + 1
    for j in range(B - 1, 0, -1):
        if ek[j] >= ek[j + 1]:
            ek[j] = ek[j + 1] - 1


@jit
def apply_action(action, thr, thr_lo, thr_hi, edge_f, G, acfg_f, thr_t, edge_t):
    """Targets of an action (float [n_thr + B - 1] in [-1, 1], clipped) -> thr_t, edge_t.

    Threshold j moves by ``cut_scale * a * (hi_j - lo_j)`` and is clipped to its range; inner
    edge j moves by ``edge_scale * a`` times the gap to its neighbour on the side it moves to
    (``edge_scale <= 0.5`` keeps the edges ordered).
    """
    n_thr = thr.shape[0]
    nE = edge_f.shape[0]
    cs = acfg_f[AF_CUT_SCALE]
    es = acfg_f[AF_EDGE_SCALE]
    for j in range(n_thr):
        a = min(max(action[j], -1.0), 1.0)
        v = thr[j] + cs * a * (thr_hi[j] - thr_lo[j])
        thr_t[j] = min(max(v, thr_lo[j]), thr_hi[j])
    for j in range(nE):
        a = min(max(action[n_thr + j], -1.0), 1.0) * es
        left = edge_f[j - 1] if j > 0 else 0.0
        right = edge_f[j + 1] if j < nE - 1 else float(G)
        if a > 0.0:
            edge_t[j] = edge_f[j] + a * (right - edge_f[j])
        else:
            edge_t[j] = edge_f[j] + a * (edge_f[j] - left)


@jit
def observation(thr, thr_lo, thr_hi, ek, G, T, n_proc, sig, norm_sig, norm_bkg, out):
    """The observation of one analysis into ``out`` (float64 [n_thr + B - 1 + 2 B]).

    Thresholds scaled to their ranges, inner edges ``ek[1:-1] / G``, signal yields per bin
    over ``norm_sig`` and total background per bin over ``norm_bkg`` (both floored at 0).
    """
    n = thr.shape[0]
    B = ek.shape[0] - 1
    for j in range(n):
        out[j] = (thr[j] - thr_lo[j]) / (thr_hi[j] - thr_lo[j])
    for j in range(B - 1):
        out[n + j] = ek[j + 1] / G
    o = n + B - 1
    for b in range(B):
        tot = 0.0
        for p in range(n_proc):
            tot += T[p * B + b]
        s = T[sig * B + b]
        out[o + b] = max(s / norm_sig, 0.0)
        out[o + B + b] = max((tot - s) / norm_bkg, 0.0)


@jit
def analysis_step(
    mode, action, thr_req, edge_req,
    ev_off, view_off, fine_off, fine, w_off, wc, W, vc, h_off, srt_off, srt_idx, srt_val,
    thr_srt, thr_kind, thr_lo, thr_hi, str_off, str_e, str_cell, str_woff, str_w, thr_str, G,
    proc_view, sh_src, is_bkg, cell, sh_hs, sh_ns, st_gauss, ainv, acfg_f,
    cfg_i, cfg_f, pvec, fixed2, ibuf, score,
    thr, edge_f, ek, pos, fail, H, T, Tn, fbuf, data, x, out, st_i,
):
    """One analysis update: ``mode`` 0 applies ``action``, 1 moves to ``thr_req``/``edge_req``,
    2 rebuilds at ``thr_req``/``edge_req`` (start of an episode).

    Proposals violating the minimum-background requirement are rejected (the previous analysis
    is restored: the histograms move back); modes 0/1 then keep ``out``'s value (reward = value,
    or 0 with ``reward_mode="delta"``).  Mode 2 always adopts the analysis.  ``st_i`` int64
    [N_ST_I] receives (validity code, offending bin, events visited, 1 if the model was
    updated).  With ``score`` 1 the metric is computed by ``_evaluate_nograd``; with 0 the caller
    scores (the ``limit`` metric).
    """
    n_thr = thr.shape[0]
    B = ek.shape[0] - 1
    nE = B - 1
    thr_t = np.empty(n_thr)
    edge_t = np.empty(nE)
    if mode == 0:
        apply_action(action, thr, thr_lo, thr_hi, edge_f, G, acfg_f, thr_t, edge_t)
    else:
        for j in range(n_thr):
            thr_t[j] = min(max(thr_req[j], thr_lo[j]), thr_hi[j])
        for j in range(nE):
            edge_t[j] = min(max(edge_req[j], 0.0), float(G))
    thr_old = thr.copy()
    ek_old = ek.copy()
    ef_old = edge_f.copy()
    if mode == 2:
        for j in range(n_thr):
            thr[j] = thr_t[j]
        rebuild(thr, ev_off, view_off, fine_off, fine, w_off, wc, W, vc, h_off, srt_off, srt_idx,
                srt_val, thr_srt, thr_kind, G, pos, fail, H)
        visited = fail.shape[0]
    else:
        visited = move_thresholds(thr_t, ev_off, view_off, wc, vc, h_off, srt_off, srt_val,
                                  thr_srt, thr_kind, str_off, str_e, str_cell, str_woff, str_w,
                                  thr_str, G, thr, pos, fail, H)
    for j in range(nE):
        edge_f[j] = edge_t[j]
    quantize_edges(edge_f, G, ek)
    code, where = templates(H, h_off, vc, ek, proc_view, sh_src, is_bkg, acfg_f, Tn)
    st_i[0] = code
    st_i[1] = where
    st_i[2] = visited
    if code != V_OK and mode != 2:
        move_thresholds(thr_old, ev_off, view_off, wc, vc, h_off, srt_off, srt_val, thr_srt,
                        thr_kind, str_off, str_e, str_cell, str_woff, str_w, thr_str, G, thr, pos,
                        fail, H)
        for j in range(nE):
            edge_f[j] = ef_old[j]
        for j in range(B + 1):
            ek[j] = ek_old[j]
        st_i[3] = 0
        if cfg_i[CI_DELTA] == 1:
            out[O_REWARD] = 0.0
        else:
            out[O_REWARD] = out[O_VALUE]
        return code
    for i in range(T.shape[0]):
        T[i] = Tn[i]
    write_model(T, B, sh_src, cell, sh_hs, sh_ns, st_gauss, ainv, fbuf, ibuf)
    nb = ibuf[0]
    expected_main(pvec[PV_ASIMOV], fbuf, ibuf, data[:nb])
    st_i[3] = 1
    if score == 1:
        if mode == 2:
            for k in range(x.shape[1]):
                x[0, k] = pvec[PV_INIT, k]
                x[1, k] = pvec[PV_INIT, k]
            out[O_VALUE] = 0.0
        empty = np.empty(0)
        _evaluate_nograd(empty, fbuf, ibuf, cfg_i, empty, data, cfg_i, cfg_f, pvec, fixed2, x,
                         out, mode == 2)
    return code


@jit_parallel
def analysis_step_batch(
    mask, mode, actions, thr_req, edge_req,
    ev_off, view_off, fine_off, fine, w_off, wc, W, vc, h_off, srt_off, srt_idx, srt_val,
    thr_srt, thr_kind, thr_lo, thr_hi, str_off, str_e, str_cell, str_woff, str_w, thr_str, G,
    proc_view, sh_src, is_bkg, cell, sh_hs, sh_ns, st_gauss, ainv, acfg_f,
    cfg_i, cfg_f, pvec, fixed2, ibuf, score,
    thr, edge_f, ek, pos, fail, H, T, Tn, fbuf, data, x, out, st_i,
):
    """:func:`analysis_step` for the rows (leading axis of every state array) where ``mask``."""
    for r in prange(mask.shape[0]):
        if mask[r]:
            analysis_step(
                mode, actions[r], thr_req[r], edge_req[r],
                ev_off, view_off, fine_off, fine, w_off, wc, W, vc, h_off, srt_off, srt_idx,
                srt_val, thr_srt, thr_kind, thr_lo, thr_hi, str_off, str_e, str_cell, str_woff,
                str_w, thr_str, G, proc_view, sh_src, is_bkg, cell, sh_hs, sh_ns, st_gauss, ainv,
                acfg_f, cfg_i, cfg_f, pvec, fixed2, ibuf, score,
                thr[r], edge_f[r], ek[r], pos[r], fail[r], H[r], T[r], Tn[r], fbuf[r],
                data[r], x[r], out[r], st_i[r],
            )


@jit
def analysis_step_batch_serial(
    mask, mode, actions, thr_req, edge_req,
    ev_off, view_off, fine_off, fine, w_off, wc, W, vc, h_off, srt_off, srt_idx, srt_val,
    thr_srt, thr_kind, thr_lo, thr_hi, str_off, str_e, str_cell, str_woff, str_w, thr_str, G,
    proc_view, sh_src, is_bkg, cell, sh_hs, sh_ns, st_gauss, ainv, acfg_f,
    cfg_i, cfg_f, pvec, fixed2, ibuf, score,
    thr, edge_f, ek, pos, fail, H, T, Tn, fbuf, data, x, out, st_i,
):
    """:func:`analysis_step_batch` in one thread (no thread start-up, no parallel compile)."""
    for r in range(mask.shape[0]):
        if mask[r]:
            analysis_step(
                mode, actions[r], thr_req[r], edge_req[r],
                ev_off, view_off, fine_off, fine, w_off, wc, W, vc, h_off, srt_off, srt_idx,
                srt_val, thr_srt, thr_kind, thr_lo, thr_hi, str_off, str_e, str_cell, str_woff,
                str_w, thr_str, G, proc_view, sh_src, is_bkg, cell, sh_hs, sh_ns, st_gauss, ainv,
                acfg_f, cfg_i, cfg_f, pvec, fixed2, ibuf, score,
                thr[r], edge_f[r], ek[r], pos[r], fail[r], H[r], T[r], Tn[r], fbuf[r],
                data[r], x[r], out[r], st_i[r],
            )
