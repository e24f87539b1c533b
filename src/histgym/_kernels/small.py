"""Kernels layer: the environment step of small models, on a path without generic dispatch.

The same step as :func:`histgym._kernels.env_step.step_row` (action, yields into the row's
model buffer, metric, reward) for models whose every cell has at most one multiplicative
modifier entry and no additive (histosys) entry, when the environment asks for neither the
reward gradient nor Asimov data and no staterror width depends on the controlled sample (the
8-bin example and most single-channel toy designs).  Every floating-point operation is the
generic kernels' own, in the same order, so results are bit-for-bit those of
:func:`~histgym._kernels.env_step.env_step_batch_serial` (tested); only the bookkeeping
differs:

- the model is read through small tables built once (:func:`tables`), never through
  ``unpack`` (two dozen array views per likelihood evaluation);
- each distinct multiplicative modifier (same parameter, same normsys ``hi``/``lo``) is
  evaluated once per parameter point, not once per cell;
- the data-only parts of the Poisson terms (``lgamma(n + 1)``, Stirling's terms) are cached
  per thread, keyed on the data values, and recomputed only when a row's data differ.

Tables: ``Ti`` int64 = header [N_H] | bin_ptr [n_bins + 1] | cell_slot [n_cells] (-1: no
factor) | slot_par [n_slots] | slot_ref [n_slots] (-1: linear factor, else normsys) |
gauss_par, gauss_aux [n_gauss] | pois_par, pois_aux [n_pois] | cells [n_y] (controlled cells);
``Tf`` float64 = slot_hi, slot_lo [n_slots] | slot_coef [6 n_slots] | gauss_sigma [n_gauss] |
pois_factor [n_pois].  Resets keep the generic kernels (one row in ``max_steps``).
"""

from __future__ import annotations

import math

import numpy as np
from numba import prange

from ._jit import jit, jit_inline, jit_parallel
from .env_step import (
    CF_MUTEST,
    CF_TOL,
    CI_COND_CONST,
    CI_DELTA,
    CI_MAXIT,
    CI_METRIC,
    CI_POI,
    M_NLL,
    M_Q0,
    M_QMU,
    M_Z0,
    N_CFG_F,
    N_CFG_I,
    N_OUT,
    O_METRIC,
    O_MUHAT,
    O_NITER,
    O_OK,
    O_REWARD,
    O_STATUS,
    O_T_COND,
    O_T_FREE,
    O_VALUE,
    PV_INIT,
    PV_LOWER,
    PV_NLL,
    PV_UPPER,
    Q_HEAD,
    _apply_action,
    fixed_masks,
)
from .interp import factor_1
from .likelihood import (
    LGAMMA_SERIES_MAX,
    LOG_2PI,
    STIRLING_MIN,
    _lgamma1p_small,
    _stirling_remainder,
    _x_minus_log1p,
)
from .newton import (
    CONVERGED,
    LINE_SEARCH_FAILED,
    MAX_ITER,
    NOISE_REL,
    NON_FINITE,
    _chol_solve,
    _cholesky_loop_into,
)

# Ti header entries
H_NB, H_NC, H_NS, H_NG, H_NP, H_CODE, H_NOM, H_NY = range(8)
N_H = 8


def tables(params: object) -> tuple[np.ndarray, np.ndarray] | None:
    """``(Ti, Tf)`` of the small-model path for an environment's ``EnvParams``, or None when
    the path does not apply (see the module docstring)."""
    from .layout import field_slice

    p = params
    if p.kernel_args != (None,):  # reward gradient or Asimov data asked for
        return None
    fbuf = np.asarray(p.model.fbuf)
    ibuf = np.asarray(p.model.ibuf)

    def f(name: str) -> np.ndarray:
        return fbuf[field_slice(name, ibuf)]

    def i(name: str) -> np.ndarray:
        return ibuf[field_slice(name, ibuf)]

    Q = p.Q
    ny, nf, nd, npar, nci = (int(v) for v in Q[:Q_HEAD])
    ctl_i = Q[Q_HEAD + N_CFG_I : Q_HEAD + N_CFG_I + nci]
    if ctl_i[1] != 0 or ctl_i[2] != 0 or i("add_par").size != 0:
        return None
    fac_ptr = i("fac_ptr")
    if fac_ptr.size < 2 or np.any(np.diff(fac_ptr) > 1):
        return None
    n_cells = fac_ptr.size - 1
    fac_par = i("fac_par")
    fac_ref = i("fac_ref")
    hi, lo, coef = f("ns_hi"), f("ns_lo"), f("ns_coef").reshape(-1, 6)
    keys: dict[tuple, int] = {}
    cell_slot = np.full(n_cells, -1, dtype=np.int64)
    s_par, s_ref, s_hi, s_lo, s_coef = [], [], [], [], []
    for c in range(n_cells):
        if fac_ptr[c + 1] == fac_ptr[c]:
            continue
        j = fac_ptr[c]
        r = int(fac_ref[j])
        if r < 0:
            key: tuple = (int(fac_par[j]), -1)
        else:
            key = (int(fac_par[j]), float(hi[r]), float(lo[r]), *map(float, coef[r]))
        if key not in keys:
            keys[key] = len(s_par)
            s_par.append(int(fac_par[j]))
            s_ref.append(-1 if r < 0 else 0)
            s_hi.append(0.0 if r < 0 else float(hi[r]))
            s_lo.append(0.0 if r < 0 else float(lo[r]))
            s_coef.append(np.zeros(6) if r < 0 else coef[r])
        cell_slot[c] = keys[key]
    n_bins = int(ibuf[0])
    nom = field_slice("nominal", ibuf)
    head = np.array([n_bins, n_cells, len(s_par), i("gauss_par").size, i("pois_par").size,
                     int(ibuf[3]), ny + nom.start, ny], dtype=np.int64)
    cells = ctl_i[4 : 4 + ny]
    Ti = np.concatenate([head, i("bin_ptr"), cell_slot, np.array(s_par, dtype=np.int64),
                         np.array(s_ref, dtype=np.int64), i("gauss_par"), i("gauss_aux"),
                         i("pois_par"), i("pois_aux"), cells]).astype(np.int64)
    Tf = np.concatenate([np.array(s_hi), np.array(s_lo), np.ravel(s_coef) if s_coef else
                         np.zeros(0), f("gauss_sigma"), f("pois_factor")]).astype(np.float64)
    return np.ascontiguousarray(Ti), np.ascontiguousarray(Tf)


@jit_inline
def _data_consts(data, dc):
    """Cache the data-only parts of each Poisson term in ``dc`` [3, n_data] (row 0: the count
    they belong to; NaN forces a recomputation)."""
    for b in range(data.shape[0]):
        n = data[b]
        if n == dc[0, b]:
            continue
        dc[0, b] = n
        if n < LGAMMA_SERIES_MAX:
            dc[1, b] = _lgamma1p_small(n)
        elif n < STIRLING_MIN:
            dc[1, b] = math.lgamma(n + 1.0)
        else:
            dc[1, b] = 0.5 * (LOG_2PI + math.log(n))
            dc[2, b] = _stirling_remainder(n)


@jit_inline
def _poisson(n, lam, dc, b):
    """:func:`histgym._kernels.likelihood.poisson_twice` with the data-only terms from ``dc``."""
    if n == 0.0:
        return 2.0 * lam
    if lam <= 0.0:
        return np.inf
    if n < STIRLING_MIN:
        return 2.0 * (lam - n * math.log(lam) + dc[1, b])
    d = lam - n
    x = d / n
    if -0.25 < x < 0.5:
        dev = n * _x_minus_log1p(x)
    else:
        dev = d - n * math.log(lam / n)
    return 2.0 * (dev + dc[1, b] + dc[2, b])


@jit_inline
def _slots(pars, Ti, Tf, sv):
    """Value, first and second derivative of every distinct factor into ``sv`` [3, n_slots]."""
    ns = Ti[H_NS]
    o = N_H + Ti[H_NB] + 1 + Ti[H_NC]
    code = Ti[H_CODE]
    for s in range(ns):
        x = pars[Ti[o + s]]
        if Ti[o + ns + s] < 0:
            sv[0, s] = x
            sv[1, s] = 1.0
            sv[2, s] = 0.0
        else:
            v, dv, d2v = factor_1(code, x, Tf[s], Tf[ns + s], Tf[2 * ns + 6 * s : 2 * ns + 6 * s + 6])
            sv[0, s] = v
            sv[1, s] = dv
            sv[2, s] = d2v


@jit_inline
def _constraint(pars, data, Ti, Tf, dc):
    nb = Ti[H_NB]
    ns = Ti[H_NS]
    ng = Ti[H_NG]
    npo = Ti[H_NP]
    o = N_H + nb + 1 + Ti[H_NC] + 2 * ns
    fo = 8 * ns
    total = 0.0
    for k in range(ng):
        s = Tf[fo + k]
        z = (data[nb + Ti[o + ng + k]] - pars[Ti[o + k]]) / s
        total += z * z + 2.0 * math.log(s) + LOG_2PI
    o += 2 * ng
    for k in range(npo):
        a = nb + Ti[o + npo + k]
        total += _poisson(data[a], pars[Ti[o + k]] * Tf[fo + ng + k], dc, a)
    return total


@jit
def small_nll(pars, data, nom, Ti, Tf, dc, sv):
    """twice_nll (bit-for-bit :func:`~histgym._kernels.likelihood.twice_nll`) of the row whose
    nominal yields are ``nom``; ``dc`` from :func:`_data_consts`, ``sv`` [3, n_slots] scratch."""
    _slots(pars, Ti, Tf, sv)
    nb = Ti[H_NB]
    oc = N_H + nb + 1
    total = 0.0
    for b in range(nb):
        lam = 0.0
        for c in range(Ti[N_H + b], Ti[N_H + b + 1]):
            s = Ti[oc + c]
            f = 1.0
            if s >= 0:
                f *= sv[0, s]
            lam += nom[c] * f
        total += _poisson(data[b], lam, dc, b)
    return total + _constraint(pars, data, Ti, Tf, dc)


@jit
def small_hess(pars, data, nom, Ti, Tf, dc, sv, grad, hess, gb, mark, touched):
    """twice_nll, its gradient and Hessian, bit-for-bit
    :func:`~histgym._kernels.likelihood.twice_nll_hess_scratch` (``gb`` zero and ``mark``
    False on entry and on return)."""
    _slots(pars, Ti, Tf, sv)
    nb = Ti[H_NB]
    ns = Ti[H_NS]
    oc = N_H + nb + 1
    op = oc + Ti[H_NC]
    grad[:] = 0.0
    hess[:, :] = 0.0
    total = 0.0
    for b in range(nb):
        n = data[b]
        lam = 0.0
        for c in range(Ti[N_H + b], Ti[N_H + b + 1]):
            s = Ti[oc + c]
            f = 1.0
            if s >= 0:
                f *= sv[0, s]
            lam += nom[c] * f
        total += _poisson(n, lam, dc, b)
        w = 2.0 - 2.0 * n / lam if n != 0.0 else 2.0
        curv = 2.0 * n / (lam * lam) if n != 0.0 else 0.0
        n_t = 0
        for c in range(Ti[N_H + b], Ti[N_H + b + 1]):
            s = Ti[oc + c]
            if s < 0:
                continue
            a = nom[c]
            v = sv[0, s]
            loo = v / v if v != 0.0 else 1.0
            p = Ti[op + s]
            if not mark[p]:
                mark[p] = True
                touched[n_t] = p
                n_t += 1
            gb[p] += a * loo * sv[1, s]
            hess[p, p] += w * a * loo * sv[2, s]
        for t in range(n_t):
            p = touched[t]
            gp = gb[p]
            grad[p] += w * gp
            if curv != 0.0:
                for u in range(n_t):
                    q = touched[u]
                    hess[p, q] += curv * gp * gb[q]
        for t in range(n_t):
            p = touched[t]
            gb[p] = 0.0
            mark[p] = False
    ng = Ti[H_NG]
    npo = Ti[H_NP]
    o = op + 2 * ns
    fo = 8 * ns
    for k in range(ng):
        s = Tf[fo + k]
        p = Ti[o + k]
        grad[p] += -2.0 * (data[nb + Ti[o + ng + k]] - pars[p]) / (s * s)
    for k in range(npo):
        p = Ti[o + 2 * ng + k]
        tau = Tf[fo + ng + k]
        lam = pars[p] * tau
        x = data[nb + Ti[o + 2 * ng + npo + k]]
        grad[p] += 2.0 * tau * (1.0 - x / lam) if x != 0.0 else 2.0 * tau
    for k in range(ng):
        s = Tf[fo + k]
        p = Ti[o + k]
        hess[p, p] += 2.0 / (s * s)
    for k in range(npo):
        p = Ti[o + 2 * ng + k]
        x = data[nb + Ti[o + 2 * ng + npo + k]]
        if x != 0.0:
            hess[p, p] += 2.0 * x / (pars[p] * pars[p])
    return total + _constraint(pars, data, Ti, Tf, dc)


@jit
def _newton(x, data, nom, Ti, Tf, dc, sv, fixed, lower, upper, max_iter, tol, grad, hess, ws):
    """:func:`histgym._kernels.newton.newton_fit_scratch` (``lapack=None``, started at ``x``
    itself) on the small-model likelihood: the same steps, the same numbers."""
    n = x.shape[0]
    fv, fd, fd2, gb, mark, touched, idx, xn, hr, low, gr, scale, d = ws
    for i in range(n):
        v = x[i]
        if not fixed[i]:
            v = min(max(v, lower[i]), upper[i])
        x[i] = v
    f = small_hess(x, data, nom, Ti, Tf, dc, sv, grad, hess, gb, mark, touched)
    if not np.isfinite(f):
        return NON_FINITE, f, 0
    damp = 0.0
    edm = np.inf
    it = 0
    status = MAX_ITER
    polished = False
    noise = NOISE_REL * (1.0 + abs(f))
    while it < max_iter:
        it += 1
        noise = NOISE_REL * (1.0 + abs(f))
        r = 0
        for i in range(n):
            if fixed[i]:
                continue
            if x[i] <= lower[i] and grad[i] > 0.0:
                continue
            if x[i] >= upper[i] and grad[i] < 0.0:
                continue
            idx[r] = i
            r += 1
        if r == 0:
            edm = 0.0
            status = CONVERGED
            break
        for a in range(r):
            gr[a] = grad[idx[a]]
            scale[a] = max(abs(hess[idx[a], idx[a]]), 1e-12)
        accepted = False
        while True:
            for a in range(r):
                for b in range(r):
                    hr[a, b] = hess[idx[a], idx[b]]
                hr[a, a] += damp * scale[a]
            pd = _cholesky_loop_into(hr, r, low)
            if not pd:
                damp = 1e-6 if damp == 0.0 else damp * 10.0
                if damp > 1e12:
                    break
                continue
            _chol_solve(low[:r, :r], gr[:r], d[:r])
            edm = 0.0
            for a in range(r):
                d[a] = -d[a]
                edm -= 0.25 * gr[a] * d[a]
            if edm < tol and damp == 0.0:
                status = CONVERGED
                accepted = True
                break
            if damp == 0.0 and 2.0 * edm < noise:
                if polished:
                    status = CONVERGED
                    accepted = True
                    break
                for i in range(n):
                    xn[i] = x[i]
                for a in range(r):
                    i = idx[a]
                    xn[i] = min(max(x[i] + d[a], lower[i]), upper[i])
                fn = small_nll(xn, data, nom, Ti, Tf, dc, sv)
                if np.isfinite(fn) and fn <= f + noise:
                    polished = True
                    accepted = True
                    break
            t = 1.0
            for _ls in range(40):
                for i in range(n):
                    xn[i] = x[i]
                dec = 0.0
                for a in range(r):
                    i = idx[a]
                    v = min(max(x[i] + t * d[a], lower[i]), upper[i])
                    xn[i] = v
                    dec += grad[i] * (v - x[i])
                fn = small_nll(xn, data, nom, Ti, Tf, dc, sv)
                if np.isfinite(fn) and fn <= f + 1e-4 * dec:
                    accepted = True
                    break
                if dec >= 0.0 and fn <= f:
                    accepted = True
                    break
                if -dec < noise:
                    break
                t *= 0.5
            if accepted:
                break
            damp = 1e-6 if damp == 0.0 else damp * 10.0
            if damp > 1e12:
                break
        if status == CONVERGED:
            break
        if not accepted:
            status = CONVERGED if edm < max(1e-6, noise) else LINE_SEARCH_FAILED
            break
        for i in range(n):
            x[i] = xn[i]
        f_old = f
        f = small_hess(x, data, nom, Ti, Tf, dc, sv, grad, hess, gb, mark, touched)
        damp = 0.0 if damp < 1e-5 else damp * 0.1
        if f_old - f < 1e-15 * (1.0 + abs(f)) and edm < 1e-8:
            status = CONVERGED
            break
    return status, f, it


@jit
def _fit(cond, xw, xo, data, nom, Ti, Tf, dc, sv, fixed, pvec, poi, poi_value, max_iter, tol,
         g, h, ws, f_other):
    """:func:`histgym._kernels.env_step._fit` on the small-model likelihood: the free fit
    (``cond`` False, ``xo`` the conditional optimum) or the conditional fit into ``xw``."""
    n = xw.shape[0]
    lower = pvec[PV_LOWER * n : (PV_LOWER + 1) * n]
    upper = pvec[PV_UPPER * n : (PV_UPPER + 1) * n]
    if poi >= 0 and cond:
        xw[poi] = poi_value
    s, f, it = _newton(xw, data, nom, Ti, Tf, dc, sv, fixed, lower, upper, max_iter, tol, g, h,
                       ws)
    if s != 0 or not np.isfinite(f):
        for k in range(n):
            xw[k] = pvec[PV_INIT * n + k]
        if poi >= 0 and cond:
            xw[poi] = poi_value
        s2, f, it2 = _newton(xw, data, nom, Ti, Tf, dc, sv, fixed, lower, upper, max_iter, tol,
                             g, h, ws)
        it += it2
        s = s2
        if s != 0 or not np.isfinite(f):
            for k in range(n):
                xw[k] = pvec[PV_INIT * n + k]
            if s == 0:
                s = 3
    if not cond and poi >= 0 and s == 0:
        fo = f_other if np.isfinite(f_other) else small_nll(xo, data, nom, Ti, Tf, dc, sv)
        if fo < f - 1e-9 * (1.0 + abs(f)):
            xt = xo.copy()
            s3, f3, it3 = _newton(xt, data, nom, Ti, Tf, dc, sv, fixed, lower, upper, max_iter,
                                  tol, g, h, ws)
            it += it3
            if s3 == 0 and np.isfinite(f3) and f3 < f:
                for k in range(n):
                    xw[k] = xt[k]
                f = f3
    return s, f, it


@jit
def _step_row(action, row, P, Q, Ti, Tf, fixed2, dc, sv, g, h, ws):
    """:func:`histgym._kernels.env_step.step_row` (``full=None``) of state row ``row``."""
    for i in range(action.shape[0]):
        if not np.isfinite(action[i]):
            return 1
    ny = Q[0]
    nf = Q[1]
    nd = Q[2]
    npar = Q[3]
    cfg_i = Q[Q_HEAD : Q_HEAD + N_CFG_I]
    cfg_f = P[0:N_CFG_F]
    pvec = P[N_CFG_F : N_CFG_F + 5 * npar]
    yields = row[0:ny]
    _apply_action(action, yields, cfg_i, cfg_f)
    o_nom = Ti[H_NOM]
    oc = Ti.shape[0] - ny
    for i in range(ny):
        row[o_nom + Ti[oc + i]] = yields[i]
    nom = row[o_nom : o_nom + Ti[H_NC]]
    od = ny + nf
    data = row[od : od + nd]
    _data_consts(data, dc)
    ox = od + nd
    oo = ox + 2 * npar
    out = row[oo : oo + N_OUT]
    og = oo + N_OUT
    for i in range(ny):
        row[og + i] = 0.0
    metric = cfg_i[CI_METRIC]
    status = 0
    n_it = 0
    t_free = np.nan
    t_cond = np.nan
    muhat = np.nan
    if metric == M_NLL:
        t = small_nll(pvec[PV_NLL * npar : (PV_NLL + 1) * npar], data, nom, Ti, Tf, dc, sv)
        raw = 0.5 * t
        value = -raw
        if not np.isfinite(t):
            status = 3
    else:
        x0 = row[ox : ox + npar]
        x1 = row[ox + npar : ox + 2 * npar]
        poi = cfg_i[CI_POI]
        mu0 = 0.0 if (metric == M_Q0 or metric == M_Z0) else cfg_f[CF_MUTEST]
        cond_known = cfg_i[CI_COND_CONST] == 1 and out[O_STATUS] == 0.0
        f_cond = out[O_T_COND] if cond_known else np.nan
        maxit = cfg_i[CI_MAXIT]
        tol = cfg_f[CF_TOL]
        s1, t_free, it1 = _fit(False, x0, x1, data, nom, Ti, Tf, dc, sv, fixed2[0], pvec, poi,
                               mu0, maxit, tol, g, h, ws, f_cond)
        if cond_known:
            s2, t_cond, it2 = 0, out[O_T_COND], 0
        else:
            s2, t_cond, it2 = _fit(True, x1, x0, data, nom, Ti, Tf, dc, sv, fixed2[1], pvec,
                                   poi, mu0, maxit, tol, g, h, ws, np.nan)
        status = max(s1, s2)
        n_it = it1 + it2
        muhat = x0[poi]
        q = t_cond - t_free
        if q < 0.0:
            q = 0.0
        if metric == M_Q0 or metric == M_Z0:
            if muhat < mu0:
                q = 0.0
        else:
            if muhat > mu0:
                q = 0.0
        raw = q
        if metric == M_Q0:
            value = q
        elif metric == M_Z0:
            value = math.sqrt(q)
        elif metric == M_QMU:
            value = -q
        else:
            value = -math.sqrt(q)
    ok = status == 0 and np.isfinite(value)
    prev = out[O_VALUE]
    if ok:
        out[O_VALUE] = value
    if cfg_i[CI_DELTA] == 1:
        out[O_REWARD] = out[O_VALUE] - prev
    else:
        out[O_REWARD] = out[O_VALUE]
    out[O_METRIC] = raw if np.isfinite(raw) else np.nan
    out[O_T_FREE] = t_free
    out[O_T_COND] = t_cond
    out[O_MUHAT] = muhat
    out[O_STATUS] = status
    out[O_NITER] = n_it
    out[O_OK] = 1.0 if ok else 0.0
    return 0


@jit_inline
def _scratch(Q, Ti):
    n = 0 if Q[Q_HEAD + CI_METRIC] == M_NLL else Q[3]
    ws = (np.empty(1), np.empty(1), np.empty(1), np.zeros(n), np.zeros(n, dtype=np.bool_),
          np.empty(n, dtype=np.int64), np.empty(n, dtype=np.int64), np.empty(n),
          np.empty((n, n)), np.empty((n, n)), np.empty(n), np.empty(n), np.empty(n))
    dc = np.full((3, Q[2]), np.nan)
    sv = np.empty((3, max(Ti[H_NS], 1)))
    return ws, dc, sv, np.empty(n), np.empty((n, n))


@jit
def step_batch_serial(mask, actions, S, P, Q, Ti, Tf, bad):
    """:func:`histgym._kernels.env_step.env_step_batch_serial` (``full=None``) on the
    small-model path: same arguments plus the tables ``Ti``, ``Tf`` of :func:`tables`."""
    fixed2 = fixed_masks(Q)
    ws, dc, sv, g, h = _scratch(Q, Ti)
    for k in range(S.shape[0]):
        if mask[k]:
            bad[k] = _step_row(actions[k], S[k], P, Q, Ti, Tf, fixed2, dc, sv, g, h, ws)
        else:
            bad[k] = 0


@jit_parallel
def step_batch(mask, actions, S, P, Q, Ti, Tf, bad, blocks):
    """:func:`step_batch_serial` with the rows split into ``blocks`` contiguous blocks run in
    parallel (one per thread)."""
    fixed2 = fixed_masks(Q)
    rows = S.shape[0]
    blocks = max(1, min(blocks, rows))
    for c in prange(blocks):
        ws, dc, sv, g, h = _scratch(Q, Ti)
        for k in range(c * rows // blocks, (c + 1) * rows // blocks):
            if mask[k]:
                bad[k] = _step_row(actions[k], S[k], P, Q, Ti, Tf, fixed2, dc, sv, g, h, ws)
            else:
                bad[k] = 0
