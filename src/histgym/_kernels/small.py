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
pois_factor [n_pois] | 2 ln(gauss_sigma) [n_gauss].  Resets keep the generic kernels (one
row in ``max_steps``).
"""

from __future__ import annotations

import math

import numpy as np
from numba import prange

from ._jit import jit, jit_inline, jit_parallel
from .env_step import (
    CF_CMAX,
    CF_CMIN,
    CF_MUTEST,
    CF_SCALE,
    CF_TOL,
    CF_TOTAL,
    CI_BUDGET,
    CI_COND_CONST,
    CI_DELTA,
    CI_MAXIT,
    CI_METRIC,
    CI_MODE,
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
    fixed_masks,
)
from .interp import factor_at
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
                         np.zeros(0), f("gauss_sigma"), f("pois_factor"),
                         np.array([_two_log(v) for v in f("gauss_sigma")])]
                        ).astype(np.float64)
    return np.ascontiguousarray(Ti), np.ascontiguousarray(Tf)


# Per-thread scratch (allocated once per batch call, see :func:`_scratch`; no array view is
# created per row or per likelihood evaluation: each view costs two atomic reference-count
# updates, which on a 2-parameter model cost more than the arithmetic):
#   V float64 [N_V, m] vectors, rows V_* (V_DC*: :func:`_data_consts`, V_SV*: :func:`_slots`);
#   M float64 [3, n_pars, n_pars] Hessian, reduced Hessian, Cholesky factor; I int64
#   [5, n_pars] rows I_*: active indices, touched parameters, marks, fixed masks of the free
#   and conditional fits.  Fewer array arguments also mean fewer reference-count updates
#   per call of a compiled function.
# np.int64: a literal 0 / 1 would make numba compile _fit once per value
FREE = np.int64(0)
COND = np.int64(1)
(V_G, V_XN, V_GR, V_SC, V_D, V_GB, V_X0, V_X1, V_XT, V_DAT, V_NOM, V_Y, V_DC0, V_DC1, V_DC2,
 V_SV0, V_SV1, V_SV2, V_SV3) = range(19)
N_V = 19
# rows of I
I_IDX, I_TOUCHED, I_MARK, I_FIXED = 0, 1, 2, 3


def _two_log(v: float) -> float:
    """``2 ln v`` as the kernels compute it (libm's log; -inf at 0, NaN below)."""
    return 2.0 * math.log(v) if v > 0.0 else (-math.inf if v == 0.0 else math.nan)


@jit_inline
def _data_consts(V, nd):
    """Cache the data-only parts of each Poisson term of the data ``V[V_DAT, :nd]`` in ``V``
    (row V_DC0: the count they belong to; NaN there forces a recomputation)."""
    for b in range(nd):
        n = V[V_DAT, b]
        if n == V[V_DC0, b]:
            continue
        V[V_DC0, b] = n
        if n < LGAMMA_SERIES_MAX:
            V[V_DC1, b] = _lgamma1p_small(n)
        elif n < STIRLING_MIN:
            V[V_DC1, b] = math.lgamma(n + 1.0)
        else:
            V[V_DC1, b] = 0.5 * (LOG_2PI + math.log(n))
            V[V_DC2, b] = _stirling_remainder(n)


@jit_inline
def _poisson(n, lam, V, b):
    """:func:`histgym._kernels.likelihood.poisson_twice` with the data-only terms from ``V``."""
    if n == 0.0:
        return 2.0 * lam
    if lam <= 0.0:
        return np.inf
    if n < STIRLING_MIN:
        return 2.0 * (lam - n * math.log(lam) + V[V_DC1, b])
    d = lam - n
    x = d / n
    if -0.25 < x < 0.5:
        dev = n * _x_minus_log1p(x)
    else:
        dev = d - n * math.log(lam / n)
    return 2.0 * (dev + V[V_DC1, b] + V[V_DC2, b])


@jit_inline
def _slots(V, xr, Ti, Tf):
    """Value, first and second derivative of every distinct factor at the parameters
    ``V[xr]`` into rows V_SV0..2 of ``V``; row V_SV3: the leave-one-out product of a cell
    with that single factor (``f / f``, 1 where f = 0; as ``likelihood._loo1``)."""
    ns = Ti[H_NS]
    o = N_H + Ti[H_NB] + 1 + Ti[H_NC]
    code = Ti[H_CODE]
    for s in range(ns):
        x = V[xr, Ti[o + s]]
        if Ti[o + ns + s] < 0:
            v, dv, d2v = x, 1.0, 0.0
        else:
            v, dv, d2v = factor_at(code, x, Tf[s], Tf[ns + s], Tf, 2 * ns + 6 * s)
        V[V_SV0, s] = v
        V[V_SV1, s] = dv
        V[V_SV2, s] = d2v
        V[V_SV3, s] = v / v if v != 0.0 else 1.0


@jit_inline
def _lam(V, Ti, b, oc):
    lam = 0.0
    for c in range(Ti[N_H + b], Ti[N_H + b + 1]):
        s = Ti[oc + c]
        f = 1.0
        if s >= 0:
            f *= V[V_SV0, s]
        lam += V[V_NOM, c] * f
    return lam


@jit_inline
def _constraint(V, xr, Ti, Tf):
    nb = Ti[H_NB]
    ns = Ti[H_NS]
    ng = Ti[H_NG]
    npo = Ti[H_NP]
    o = N_H + nb + 1 + Ti[H_NC] + 2 * ns
    fo = 8 * ns
    total = 0.0
    for k in range(ng):
        s = Tf[fo + k]
        z = (V[V_DAT, nb + Ti[o + ng + k]] - V[xr, Ti[o + k]]) / s
        total += z * z + Tf[fo + ng + npo + k] + LOG_2PI  # 2 ln(sigma)
    o += 2 * ng
    for k in range(npo):
        a = nb + Ti[o + npo + k]
        total += _poisson(V[V_DAT, a], V[xr, Ti[o + k]] * Tf[fo + ng + k], V, a)
    return total


@jit
def small_nll(V, xr, Ti, Tf):
    """twice_nll at the parameters ``V[xr]`` of the row whose nominal yields and data are in
    ``V[V_NOM]``, ``V[V_DAT]``: bit-for-bit :func:`~histgym._kernels.likelihood.twice_nll`."""
    _slots(V, xr, Ti, Tf)
    nb = Ti[H_NB]
    oc = N_H + nb + 1
    total = 0.0
    for b in range(nb):
        total += _poisson(V[V_DAT, b], _lam(V, Ti, b, oc), V, b)
    return total + _constraint(V, xr, Ti, Tf)


@jit
def small_hess(V, xr, Ti, Tf, M, I, n):
    """twice_nll at ``V[xr]``; its gradient into ``V[V_G, :n]`` and Hessian into ``M[0]``:
    bit-for-bit :func:`~histgym._kernels.likelihood.twice_nll_hess_scratch`."""
    _slots(V, xr, Ti, Tf)
    nb = Ti[H_NB]
    ns = Ti[H_NS]
    oc = N_H + nb + 1
    op = oc + Ti[H_NC]
    for p in range(n):
        V[V_G, p] = 0.0
        for q in range(n):
            M[0, p, q] = 0.0
    total = 0.0
    for b in range(nb):
        nn = V[V_DAT, b]
        lam = _lam(V, Ti, b, oc)
        total += _poisson(nn, lam, V, b)
        w = 2.0 - 2.0 * nn / lam if nn != 0.0 else 2.0
        curv = 2.0 * nn / (lam * lam) if nn != 0.0 else 0.0
        n_t = 0
        for c in range(Ti[N_H + b], Ti[N_H + b + 1]):
            s = Ti[oc + c]
            if s < 0:
                continue
            a = V[V_NOM, c]
            loo = V[V_SV3, s]
            p = Ti[op + s]
            if I[I_MARK, p] == 0:
                I[I_MARK, p] = 1
                I[I_TOUCHED, n_t] = p
                n_t += 1
            V[V_GB, p] += a * loo * V[V_SV1, s]
            M[0, p, p] += w * a * loo * V[V_SV2, s]
        for t in range(n_t):
            p = I[I_TOUCHED, t]
            gp = V[V_GB, p]
            V[V_G, p] += w * gp
            if curv != 0.0:
                for u in range(n_t):
                    q = I[I_TOUCHED, u]
                    M[0, p, q] += curv * gp * V[V_GB, q]
        for t in range(n_t):
            p = I[I_TOUCHED, t]
            V[V_GB, p] = 0.0
            I[I_MARK, p] = 0
    ng = Ti[H_NG]
    npo = Ti[H_NP]
    o = op + 2 * ns
    fo = 8 * ns
    for k in range(ng):
        s = Tf[fo + k]
        p = Ti[o + k]
        V[V_G, p] += -2.0 * (V[V_DAT, nb + Ti[o + ng + k]] - V[xr, p]) / (s * s)
    for k in range(npo):
        p = Ti[o + 2 * ng + k]
        tau = Tf[fo + ng + k]
        lam = V[xr, p] * tau
        x = V[V_DAT, nb + Ti[o + 2 * ng + npo + k]]
        V[V_G, p] += 2.0 * tau * (1.0 - x / lam) if x != 0.0 else 2.0 * tau
    for k in range(ng):
        s = Tf[fo + k]
        p = Ti[o + k]
        M[0, p, p] += 2.0 / (s * s)
    for k in range(npo):
        p = Ti[o + 2 * ng + k]
        x = V[V_DAT, nb + Ti[o + 2 * ng + npo + k]]
        if x != 0.0:
            M[0, p, p] += 2.0 * x / (V[xr, p] * V[xr, p])
    return total + _constraint(V, xr, Ti, Tf)


@jit_inline
def _cholesky(M, r):
    """:func:`histgym._kernels.newton._cholesky_loop_into` of ``M[1, :r, :r]`` into ``M[2]``."""
    for j in range(r):
        s = M[1, j, j]
        for k in range(j):
            s -= M[2, j, k] * M[2, j, k]
        if not s > 0.0:
            return False
        d = np.sqrt(s)
        M[2, j, j] = d
        for i in range(j + 1, r):
            t = M[1, i, j]
            for k in range(j):
                t -= M[2, i, k] * M[2, j, k]
            M[2, i, j] = t / d
        for i in range(j):
            M[2, i, j] = 0.0
    return True


@jit_inline
def _solve(M, V, r):
    """:func:`histgym._kernels.newton._chol_solve`: ``V[V_D, :r]`` from ``V[V_GR, :r]``."""
    for i in range(r):
        s = V[V_GR, i]
        for k in range(i):
            s -= M[2, i, k] * V[V_D, k]
        V[V_D, i] = s / M[2, i, i]
    for i in range(r - 1, -1, -1):
        s = V[V_D, i]
        for k in range(i + 1, r):
            s -= M[2, k, i] * V[V_D, k]
        V[V_D, i] = s / M[2, i, i]


@jit
def _newton(V, xr, Ti, Tf, M, I, fw, P, olo, oup, max_iter, tol, n):
    """:func:`histgym._kernels.newton.newton_fit_scratch` (``lapack=None``, started at ``V[xr]``
    and writing the minimum there; fixed mask ``I[I_FIXED + fw, :n]``, bounds ``P[olo:]``,
    ``P[oup:]``) on the small-model likelihood: the same steps, the same numbers."""
    for i in range(n):
        v = V[xr, i]
        if not I[I_FIXED + fw, i]:
            v = min(max(v, P[olo + i]), P[oup + i])
        V[xr, i] = v
    f = small_hess(V, xr, Ti, Tf, M, I, n)
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
            if I[I_FIXED + fw, i]:
                continue
            if V[xr, i] <= P[olo + i] and V[V_G, i] > 0.0:
                continue
            if V[xr, i] >= P[oup + i] and V[V_G, i] < 0.0:
                continue
            I[I_IDX, r] = i
            r += 1
        if r == 0:
            edm = 0.0
            status = CONVERGED
            break
        for a in range(r):
            V[V_GR, a] = V[V_G, I[I_IDX, a]]
            V[V_SC, a] = max(abs(M[0, I[I_IDX, a], I[I_IDX, a]]), 1e-12)
        accepted = False
        while True:
            for a in range(r):
                for b in range(r):
                    M[1, a, b] = M[0, I[I_IDX, a], I[I_IDX, b]]
                M[1, a, a] += damp * V[V_SC, a]
            if not _cholesky(M, r):
                damp = 1e-6 if damp == 0.0 else damp * 10.0
                if damp > 1e12:
                    break
                continue
            _solve(M, V, r)
            edm = 0.0
            for a in range(r):
                V[V_D, a] = -V[V_D, a]
                edm -= 0.25 * V[V_GR, a] * V[V_D, a]
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
                    V[V_XN, i] = V[xr, i]
                for a in range(r):
                    i = I[I_IDX, a]
                    V[V_XN, i] = min(max(V[xr, i] + V[V_D, a], P[olo + i]), P[oup + i])
                fn = small_nll(V, V_XN, Ti, Tf)
                if np.isfinite(fn) and fn <= f + noise:
                    polished = True
                    accepted = True
                    break
            t = 1.0
            for _ls in range(40):
                for i in range(n):
                    V[V_XN, i] = V[xr, i]
                dec = 0.0
                for a in range(r):
                    i = I[I_IDX, a]
                    v = min(max(V[xr, i] + t * V[V_D, a], P[olo + i]), P[oup + i])
                    V[V_XN, i] = v
                    dec += V[V_G, i] * (v - V[xr, i])
                fn = small_nll(V, V_XN, Ti, Tf)
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
            V[xr, i] = V[V_XN, i]
        f_old = f
        f = small_hess(V, xr, Ti, Tf, M, I, n)
        damp = 0.0 if damp < 1e-5 else damp * 0.1
        if f_old - f < 1e-15 * (1.0 + abs(f)) and edm < 1e-8:
            status = CONVERGED
            break
    return status, f, it


@jit
def _fit(cond, V, Ti, Tf, M, I, P, n, poi, poi_value, max_iter, tol, f_other):
    """:func:`histgym._kernels.env_step._fit` on the small-model likelihood: the free fit
    (``cond`` 0: into ``V[V_X0]``) or the conditional fit (``cond`` 1: into ``V[V_X1]``)."""
    xr = V_X1 if cond == 1 else V_X0
    olo = N_CFG_F + PV_LOWER * n
    oup = N_CFG_F + PV_UPPER * n
    oin = N_CFG_F + PV_INIT * n
    if poi >= 0 and cond == 1:
        V[xr, poi] = poi_value
    s, f, it = _newton(V, xr, Ti, Tf, M, I, cond, P, olo, oup, max_iter,
                       tol, n)
    if s != 0 or not np.isfinite(f):
        for k in range(n):
            V[xr, k] = P[oin + k]
        if poi >= 0 and cond == 1:
            V[xr, poi] = poi_value
        s2, f, it2 = _newton(V, xr, Ti, Tf, M, I, cond, P, olo, oup,
                             max_iter, tol, n)
        it += it2
        s = s2
        if s != 0 or not np.isfinite(f):
            for k in range(n):
                V[xr, k] = P[oin + k]
            if s == 0:
                s = 3
    if cond == 0 and poi >= 0 and s == 0:
        fo = f_other if np.isfinite(f_other) else small_nll(V, V_X1, Ti, Tf)
        if fo < f - 1e-9 * (1.0 + abs(f)):
            for k in range(n):
                V[V_XT, k] = V[V_X1, k]
            s3, f3, it3 = _newton(V, V_XT, Ti, Tf, M, I, cond, P, olo,
                                  oup, max_iter, tol, n)
            it += it3
            if s3 == 0 and np.isfinite(f3) and f3 < f:
                for k in range(n):
                    V[xr, k] = V[V_XT, k]
                f = f3
    return s, f, it


@jit_inline
def _step_row(actions, S, k, P, Q, Ti, Tf, V, M, I, first):
    """:func:`histgym._kernels.env_step.step_row` (``full=None``) of state row ``S[k]``, or
    with ``first`` 1 :func:`~histgym._kernels.env_step.reset_row` (``actions`` unused)."""
    ny = Q[0]
    nf = Q[1]
    nd = Q[2]
    npar = Q[3]
    if first == 1:
        _reset_start(S, k, P, Q, Ti, V)
        return _evaluate(S, k, P, Q, Ti, Tf, V, M, I, first)
    for i in range(ny):
        if not np.isfinite(actions[k, i]):
            return 1
    # the action (histgym._kernels.env_step._apply_action, the same operations)
    mode = Q[Q_HEAD + CI_MODE]
    scale = P[CF_SCALE]
    lo = P[CF_CMIN]
    hi = P[CF_CMAX]
    for i in range(ny):
        y = S[k, i]
        if mode == 0:
            if y == 0.0:
                V[V_Y, i] = y
                continue
            v = y * math.exp(scale * actions[k, i])
        else:
            v = y + scale * actions[k, i]
        if not v >= lo:
            v = lo
        if v > hi:
            v = hi
        V[V_Y, i] = v
    if Q[Q_HEAD + CI_BUDGET] == 1:
        tot = 0.0
        for i in range(ny):
            tot += V[V_Y, i]
        fb = P[CF_TOTAL] / tot
        for i in range(ny):
            if V[V_Y, i] != 0.0:
                V[V_Y, i] = min(max(V[V_Y, i] * fb, lo), hi)
    for i in range(ny):
        S[k, i] = V[V_Y, i]
    return _evaluate(S, k, P, Q, Ti, Tf, V, M, I, first)


@jit_inline
def _reset_start(S, k, P, Q, Ti, V):
    """Start of :func:`~histgym._kernels.env_step.reset_row`: the fits from the initial point,
    the reward value 0 (the yields are at the head of the row already)."""
    ny = Q[0]
    npar = Q[3]
    for i in range(ny):
        V[V_Y, i] = S[k, i]
    ox = ny + Q[1] + Q[2]
    oi = N_CFG_F + PV_INIT * npar
    for i in range(npar):
        S[k, ox + i] = P[oi + i]
        S[k, ox + npar + i] = P[oi + i]
    S[k, ox + 2 * npar + O_VALUE] = 0.0


@jit_inline
def _evaluate(S, k, P, Q, Ti, Tf, V, M, I, first):
    """The yields ``V[V_Y]`` into the row's model buffer, then
    :func:`histgym._kernels.env_step._evaluate_with` (``full=None``) of row ``S[k]``."""
    ny = Q[0]
    nf = Q[1]
    nd = Q[2]
    npar = Q[3]
    o_nom = Ti[H_NOM]
    nc = Ti[H_NC]
    ocl = Ti.shape[0] - ny
    for i in range(ny):
        S[k, o_nom + Ti[ocl + i]] = V[V_Y, i]
    for c in range(nc):
        V[V_NOM, c] = S[k, o_nom + c]
    od = ny + nf
    for b in range(nd):
        V[V_DAT, b] = S[k, od + b]
    _data_consts(V, nd)
    ox = od + nd
    oo = ox + 2 * npar
    og = oo + N_OUT
    for i in range(ny):
        S[k, og + i] = 0.0
    metric = Q[Q_HEAD + CI_METRIC]
    status = 0
    n_it = 0
    t_free = np.nan
    t_cond = np.nan
    muhat = np.nan
    if metric == M_NLL:
        o = N_CFG_F + PV_NLL * npar
        for i in range(npar):
            V[V_XN, i] = P[o + i]
        t = small_nll(V, V_XN, Ti, Tf)
        raw = 0.5 * t
        value = -raw
        if not np.isfinite(t):
            status = 3
    else:
        for i in range(npar):
            V[V_X0, i] = S[k, ox + i]
            V[V_X1, i] = S[k, ox + npar + i]
        poi = Q[Q_HEAD + CI_POI]
        mu0 = 0.0 if (metric == M_Q0 or metric == M_Z0) else P[CF_MUTEST]
        cond_known = (Q[Q_HEAD + CI_COND_CONST] == 1 and first == 0
                      and S[k, oo + O_STATUS] == 0.0)
        f_cond = S[k, oo + O_T_COND] if cond_known else np.nan
        maxit = Q[Q_HEAD + CI_MAXIT]
        tol = P[CF_TOL]
        s1, t_free, it1 = _fit(FREE, V, Ti, Tf, M, I, P, npar, poi, mu0, maxit,
                               tol, f_cond)
        if cond_known:
            s2, t_cond, it2 = 0, S[k, oo + O_T_COND], 0
        else:
            s2, t_cond, it2 = _fit(COND, V, Ti, Tf, M, I, P, npar, poi, mu0,
                                   maxit, tol, np.nan)
        for i in range(npar):
            S[k, ox + i] = V[V_X0, i]
            S[k, ox + npar + i] = V[V_X1, i]
        status = max(s1, s2)
        n_it = it1 + it2
        muhat = V[V_X0, poi]
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
    prev = S[k, oo + O_VALUE]
    if ok:
        S[k, oo + O_VALUE] = value
    elif first == 1:
        S[k, oo + O_VALUE] = value if np.isfinite(value) else 0.0
    if Q[Q_HEAD + CI_DELTA] == 1:
        S[k, oo + O_REWARD] = 0.0 if first == 1 else S[k, oo + O_VALUE] - prev
    else:
        S[k, oo + O_REWARD] = S[k, oo + O_VALUE]
    S[k, oo + O_METRIC] = raw if np.isfinite(raw) else np.nan
    S[k, oo + O_T_FREE] = t_free
    S[k, oo + O_T_COND] = t_cond
    S[k, oo + O_MUHAT] = muhat
    S[k, oo + O_STATUS] = status
    S[k, oo + O_NITER] = n_it
    S[k, oo + O_OK] = 1.0 if ok else 0.0
    return 0



@jit_inline
def _scratch(Q, Ti):
    """Per-thread scratch ``V, M, I`` (see above) for one batch call."""
    n = 0 if Q[Q_HEAD + CI_METRIC] == M_NLL else Q[3]
    m = max(Q[3], Q[2], Ti[H_NC], Ti[H_NS], Q[0], 1)
    V = np.zeros((N_V, m))
    for b in range(m):
        V[V_DC0, b] = np.nan
    I = np.zeros((I_FIXED + 2, max(n, 1)), dtype=np.int64)
    fixed2 = fixed_masks(Q)
    for r in range(2):
        for i in range(n):
            I[I_FIXED + r, i] = 1 if fixed2[r, i] else 0
    return V, np.zeros((3, n, n)), I


@jit
def _step_block(mask, actions, S, P, Q, Ti, Tf, bad, lo, hi, first):
    """Rows ``lo:hi`` (steps, or resets with ``first`` 1) with one scratch; the row step is
    inlined (no call per row)."""
    V, M, I = _scratch(Q, Ti)
    for k in range(lo, hi):
        if mask[k]:
            bad[k] = _step_row(actions, S, k, P, Q, Ti, Tf, V, M, I, first)
        else:
            bad[k] = 0


@jit
def step_batch_serial(mask, actions, S, P, Q, Ti, Tf, bad):
    """:func:`histgym._kernels.env_step.env_step_batch_serial` (``full=None``) on the
    small-model path: the same arguments plus the tables ``Ti``, ``Tf`` of :func:`tables`."""
    _step_block(mask, actions, S, P, Q, Ti, Tf, bad, 0, S.shape[0], np.int64(0))


@jit_parallel
def step_batch(mask, actions, S, P, Q, Ti, Tf, bad, blocks):
    """:func:`step_batch_serial` with the rows split into ``blocks`` contiguous blocks run in
    parallel (one per thread)."""
    rows = S.shape[0]
    blocks = max(1, min(blocks, rows))
    for c in prange(blocks):
        _step_block(mask, actions, S, P, Q, Ti, Tf, bad, c * rows // blocks,
                    (c + 1) * rows // blocks, np.int64(0))


@jit
def reset_batch_serial(mask, S, P, Q, Ti, Tf):
    """:func:`histgym._kernels.env_step.env_reset_batch_serial` (``full=None``) on the
    small-model path."""
    n = S.shape[0]
    _step_block(mask, S, S, P, Q, Ti, Tf, np.zeros(n, dtype=np.int64), 0, n,
                np.int64(1))


@jit_parallel
def reset_batch(mask, S, P, Q, Ti, Tf, blocks):
    """:func:`reset_batch_serial` in ``blocks`` parallel blocks."""
    rows = S.shape[0]
    bad = np.zeros(rows, dtype=np.int64)
    blocks = max(1, min(blocks, rows))
    for c in prange(blocks):
        _step_block(mask, S, S, P, Q, Ti, Tf, bad, c * rows // blocks,
                    (c + 1) * rows // blocks, np.int64(1))
