"""Kernels layer: the step of a HistFactory design environment, on flat arrays only.

One step: apply an action to the controlled sample's yields (``logmul`` or ``add``, clip,
optional rescale to a fixed total), write them into the environment's own model buffer
(:func:`~histgym._kernels.control.set_sample_yields`), refresh Asimov data if requested,
evaluate the metric (``-2 ln L`` at fixed parameters, or the profile-likelihood ratio ``q0`` /
``qmu_tilde`` from two bounded Newton fits warm-started at the previous step's optima), and
optionally the exact gradient of the metric with respect to the controlled yields (envelope
theorem: at an optimum, ``d T*/dy = dT/dy`` at fixed parameters).

Nothing raises; a failed fit is reported in ``out`` and the reward keeps the last good value.

Entry points: :func:`env_reset`, :func:`env_step` (one environment) and their batched
variants (``*_batch``: ``prange`` over rows; ``*_batch_serial``: one thread) take the packed
arrays ``S`` (state), ``P`` (float parameters), ``Q`` (int parameters) and the model's
``ibuf`` only, so that a call from Python dispatches on five arrays (see "packed entry
points" below for the layouts, built by ``histgym.envs.core``).  ``*_unpacked`` take the
same quantities as separate arrays:

``ctl_i`` int64: ``[n_y, n_add, n_st, chan_off, cells[n_y], add_entries[n_add],
add_pos[n_add], st_gauss[n_st], st_pos[n_st]]``.
``ctl_f`` float64: ``[up_abs, up_rel, dn_abs, dn_rel (n_add each), st_other_nom,
st_other_u2, st_rel (n_st each)]``.
``cfg_i`` int64 ``[N_CFG_I]`` and ``cfg_f`` float64 ``[N_CFG_F]``: see the ``CI_*``/``CF_*``
indices.  ``pvec`` float64 [5, n_pars]: rows ``PV_*``.  ``fixed2`` bool [2, n_pars]: the
fixed mask of the free fit and of the conditional (POI fixed) fit.  Per environment state:
``yields`` [n_y] (events), ``fbuf`` [n_f], ``data`` [n_bins + n_aux], ``x`` [2, n_pars]
(optima of the free and conditional fits), ``out`` [N_OUT] (``O_*``) and ``grad`` [n_y]
(gradient of the reward value with respect to the yields, per event).

Metrics (pyhf 0.7.6 conventions): ``q0 = T(mu=0) - T(free)`` if ``mu_hat >= 0`` else 0;
``qmu = T(mu_test) - T(free)`` if ``mu_hat <= mu_test`` else 0 with the POI bounded below at
0 (pyhf's ``qmu_tilde``); ``T`` is ``twice_nll`` at the respective optimum, clipped at 0.
"""

from __future__ import annotations

import math

import numpy as np
from numba import prange

from ._jit import jit, jit_inline, jit_inline_ir, jit_parallel
from .control import set_sample_yields
from .interp import delta_1
from .layout import unpack
from .likelihood import _bin_yield, _entry_factor, expected_main, twice_nll
from .newton import newton_fit_scratch, newton_scratch

# metric codes
M_NLL, M_Q0, M_Z0, M_QMU, M_ZMU = 0, 1, 2, 3, 4
# cfg_i indices
(CI_METRIC, CI_MODE, CI_BUDGET, CI_ASIMOV, CI_DELTA, CI_POI, CI_MAXIT, CI_GRAD,
 CI_COND_CONST) = range(9)
N_CFG_I = 9
# cfg_f indices
CF_SCALE, CF_CMIN, CF_CMAX, CF_MUTEST, CF_TOL, CF_TOTAL = range(6)
N_CFG_F = 6
# pvec rows
PV_NLL, PV_LOWER, PV_UPPER, PV_INIT, PV_ASIMOV = range(5)
# out entries
(
    O_METRIC,  # raw metric of this step: 0.5 * twice_nll (nll) or q0 / qmu_tilde
    O_VALUE,  # signed value used as reward (last good one if this step failed)
    O_REWARD,  # the reward (value, or change of value)
    O_T_FREE,  # twice_nll at the free fit
    O_T_COND,  # twice_nll at the conditional fit
    O_MUHAT,  # fitted POI of the free fit
    O_STATUS,  # 0 ok; else max(status) of the fits (1 max iter, 2 line search, 3 non-finite)
    O_NITER,  # Newton iterations of this step
    O_OK,  # 1.0 if this step's metric was used, 0.0 if the last good value was kept
) = range(9)
N_OUT = 9


@jit_inline
def _digamma(x):
    """Digamma function for x > 0 (recurrence to x >= 6, then the asymptotic series)."""
    r = 0.0
    while x < 6.0:
        r -= 1.0 / x
        x += 1.0
    f = 1.0 / (x * x)
    t = f * (
        -1.0 / 12.0
        + f * (1.0 / 120.0 + f * (-1.0 / 252.0 + f * (1.0 / 240.0 + f * (-1.0 / 132.0))))
    )
    return r + math.log(x) - 0.5 / x + t


@jit_inline
def _apply_action(action, yields, cfg_i, cfg_f):
    n = yields.shape[0]
    scale = cfg_f[CF_SCALE]
    lo = cfg_f[CF_CMIN]
    hi = cfg_f[CF_CMAX]
    for i in range(n):
        if cfg_i[CI_MODE] == 0:
            if yields[i] == 0.0:  # a multiplicative update keeps an empty bin empty
                continue
            v = yields[i] * math.exp(scale * action[i])
        else:
            v = yields[i] + scale * action[i]
        if not v >= lo:  # also catches NaN
            v = lo
        if v > hi:
            v = hi
        yields[i] = v
    if cfg_i[CI_BUDGET] == 1:
        tot = 0.0
        for i in range(n):
            tot += yields[i]
        f = cfg_f[CF_TOTAL] / tot
        for i in range(n):
            if yields[i] != 0.0:
                yields[i] = min(max(yields[i] * f, lo), hi)


@jit_inline
def _refresh(yields, fbuf, ibuf, ctl_i, ctl_f, data, cfg_i, pvec):
    """Write the yields into the model buffer and refresh Asimov data."""
    _set_yields(yields, fbuf, ibuf, ctl_i, ctl_f)
    if cfg_i[CI_ASIMOV] == 1:
        nb = ibuf[0]
        expected_main(pvec[PV_ASIMOV], fbuf, ibuf, data[:nb])


@jit_inline
def _set_yields(yields, fbuf, ibuf, ctl_i, ctl_f):
    """Write the yields into the model buffer (histosys shifts, staterror widths)."""
    ny = ctl_i[0]
    na = ctl_i[1]
    ns = ctl_i[2]
    o = 4
    cells = ctl_i[o : o + ny]
    o += ny
    add_e = ctl_i[o : o + na]
    o += na
    add_p = ctl_i[o : o + na]
    o += na
    st_g = ctl_i[o : o + ns]
    o += ns
    st_p = ctl_i[o : o + ns]
    set_sample_yields(
        fbuf,
        ibuf,
        yields,
        cells,
        add_e,
        add_p,
        ctl_f[0:na],
        ctl_f[na : 2 * na],
        ctl_f[2 * na : 3 * na],
        ctl_f[3 * na : 4 * na],
        st_g,
        st_p,
        ctl_f[4 * na : 4 * na + ns],
        ctl_f[4 * na + ns : 4 * na + 2 * ns],
        ctl_f[4 * na + 2 * ns : 4 * na + 3 * ns],
    )


@jit_inline
def _lam_and_dlam(m, pars, ctl_i, i, d_a):
    """(expected yield of the bin of controlled cell i, its derivative wrt y_i, the bin)."""
    c = ctl_i[4 + i]
    b = ctl_i[3] + i
    f = 1.0
    for j in range(m.fac_ptr[c], m.fac_ptr[c + 1]):
        v, _, _ = _entry_factor(m, j, pars)
        f *= v
    return _bin_yield(m, b, pars), d_a[i] * f, b


@jit_inline
def _d_a(m, pars, ctl_i, ctl_f, d_a):
    """d(additive part of each controlled cell)/d y (histosys shifts scale with y)."""
    ny = ctl_i[0]
    na = ctl_i[1]
    for i in range(ny):
        d_a[i] = 1.0
    o = 4 + ny
    for k in range(na):
        e = ctl_i[o + k]
        p = ctl_i[o + na + k]
        d, _, _ = delta_1(m.histosys_code, pars[m.add_par[e]], ctl_f[na + k], ctl_f[3 * na + k])
        d_a[p] += d


@jit
def twice_nll_grad_yields(pars, data, fbuf, ibuf, ctl_i, ctl_f, asimov, pars_asimov, w, grad):
    """Add ``w * d twice_nll(pars, data) / d y`` (float64 [n_y]) into ``grad``.

    ``y`` are the controlled sample's yields; ``data`` depends on them when ``asimov`` is 1
    (Asimov main bins = expected yields at ``pars_asimov``).  Staterror widths depend on y.
    """
    m = unpack(fbuf, ibuf)
    ny = ctl_i[0]
    na = ctl_i[1]
    ns = ctl_i[2]
    nb = m.n_bins
    d_a = np.empty(ny)
    _d_a(m, pars, ctl_i, ctl_f, d_a)
    for i in range(ny):
        lam, dl, b = _lam_and_dlam(m, pars, ctl_i, i, d_a)
        n = data[b]
        wb = 2.0 - 2.0 * n / lam if n != 0.0 else 2.0
        grad[i] += w * wb * dl
    if asimov == 1:
        _d_a(m, pars_asimov, ctl_i, ctl_f, d_a)
        for i in range(ny):
            lam_as, dn, b = _lam_and_dlam(m, pars_asimov, ctl_i, i, d_a)
            lam, _, _ = _lam_and_dlam(m, pars, ctl_i, i, d_a)
            if lam > 0.0 and lam_as >= 0.0:
                grad[i] += w * 2.0 * (_digamma(data[b] + 1.0) - math.log(lam)) * dn
    o = 4 + ny + 2 * na
    for k in range(ns):
        g = ctl_i[o + k]
        i = ctl_i[o + ns + k]
        onom = ctl_f[4 * na + k]
        ou2 = ctl_f[4 * na + ns + k]
        rel = ctl_f[4 * na + 2 * ns + k]
        y = m.nominal[ctl_i[4 + i]]
        u = rel * y
        r = math.sqrt(ou2 + u * u)
        tot = onom + y
        if tot <= 0.0 or r <= 0.0:
            continue
        s = m.gauss_sigma[g]
        z = data[nb + m.gauss_aux[g]] - pars[m.gauss_par[g]]
        dt_ds = -2.0 * z * z / (s * s * s) + 2.0 / s
        ds_dy = (rel * u / r) / tot - r / (tot * tot)
        grad[i] += w * dt_ds * ds_dy


@jit
def cond_fit_is_constant(fbuf, ibuf, ctl_i, poi, asimov):
    """True when -2 ln L at POI = 0 cannot depend on the controlled yields.

    That holds when the data are fixed (``asimov == 0``), every controlled cell is scaled by
    the POI as a normfactor (so it vanishes at POI = 0, histosys shifts included) and no
    staterror width depends on the sample (``n_st == 0``).  The q0 conditional fit is then
    computed once per episode.
    """
    if asimov != 0 or poi < 0 or ctl_i[2] != 0:
        return False
    m = unpack(fbuf, ibuf)
    for i in range(ctl_i[0]):
        c = ctl_i[4 + i]
        found = False
        for j in range(m.fac_ptr[c], m.fac_ptr[c + 1]):
            if m.fac_par[j] == poi and m.fac_ref[j] < 0:
                found = True
        if not found:
            return False
    return True


@jit
def _fit(which, x, data, fbuf, ibuf, fixed2, pvec, poi, poi_value, max_iter, tol, g, h, ws,
         f_other):
    """Warm-started fit into x[which]; retried from the initial point if it fails.

    ``g``, ``h``, ``ws``: the fits' gradient, Hessian and work arrays (``newton_scratch``).
    ``f_other``: twice_nll at ``x[1]`` when the caller knows it (else NaN: computed here).
    """
    n = x.shape[1]
    xw = x[which]
    if poi >= 0 and which == 1:
        xw[poi] = poi_value
    s, f, it, _ = newton_fit_scratch(
        xw, data, fbuf, ibuf, fixed2[which], pvec[PV_LOWER], pvec[PV_UPPER], max_iter, tol, xw, g,
        h, ws, None,
    )
    if s != 0 or not np.isfinite(f):
        for k in range(n):
            xw[k] = pvec[PV_INIT, k]
        if poi >= 0 and which == 1:
            xw[poi] = poi_value
        s2, f, it2, _ = newton_fit_scratch(
            xw, data, fbuf, ibuf, fixed2[which], pvec[PV_LOWER], pvec[PV_UPPER], max_iter, tol,
            xw, g, h, ws, None,
        )
        it += it2
        s = s2
        if s != 0 or not np.isfinite(f):
            for k in range(n):
                xw[k] = pvec[PV_INIT, k]
            if s == 0:
                s = 3
    if which == 0 and poi >= 0 and s == 0:
        # never above the other fit of the test statistic (its last optimum, feasible for the
        # free fit): a lower point there means a local minimum; refit from it (issue 11)
        xo = x[1]
        fo = f_other if np.isfinite(f_other) else twice_nll(xo, data, fbuf, ibuf)
        if fo < f - 1e-9 * (1.0 + abs(f)):
            xt = xo.copy()
            s3, f3, it3, _ = newton_fit_scratch(
                xt, data, fbuf, ibuf, fixed2[0], pvec[PV_LOWER], pvec[PV_UPPER], max_iter, tol,
                xt, g, h, ws, None,
            )  # fmt: skip
            it += it3
            if s3 == 0 and np.isfinite(f3) and f3 < f:
                for k in range(n):
                    xw[k] = xt[k]
                f = f3
    return s, f, it


@jit_inline
def _evaluate(yields, fbuf, ibuf, ctl_i, ctl_f, data, cfg_i, cfg_f, pvec, fixed2, x, out, grad,
              first):
    n = x.shape[1] if cfg_i[CI_METRIC] != M_NLL else 0
    _evaluate_with(yields, fbuf, ibuf, ctl_i, ctl_f, data, cfg_i, cfg_f, pvec, fixed2, x, out,
                   grad, np.bool_(first), np.empty(n), np.empty((n, n)),
                   newton_scratch(n, ibuf), np.bool_(True))


@jit_inline
def _evaluate_nograd(yields, fbuf, ibuf, ctl_i, ctl_f, data, cfg_i, cfg_f, pvec, fixed2, x, out,
                     first):
    """:func:`_evaluate` for callers that never ask for the reward gradient (the analysis
    environments): the gradient code is not compiled (about a quarter of a cold first run)."""
    n = x.shape[1] if cfg_i[CI_METRIC] != M_NLL else 0
    empty = np.empty(0)
    _evaluate_with(yields, fbuf, ibuf, ctl_i, ctl_f, data, cfg_i, cfg_f, pvec, fixed2, x, out,
                   empty, np.bool_(first), np.empty(n), np.empty((n, n)),
                   newton_scratch(n, ibuf), None)


@jit
def _evaluate_with(yields, fbuf, ibuf, ctl_i, ctl_f, data, cfg_i, cfg_f, pvec, fixed2, x, out,
                   grad, first, g, h, ws, full):
    """:func:`_evaluate` with the fits' gradient [n_pars], Hessian [n_pars, n_pars] and work
    arrays (``newton_scratch``) given (empty for the nll metric).

    ``full`` None compiles a variant without the reward gradient (numba prunes the branch:
    less to compile on first use); a bool computes it when ``cfg_i[CI_GRAD]`` asks.
    """
    # np.int64(...): a literal 0 / 1 would make numba compile _fit once per value
    FREE = np.int64(0)
    COND = np.int64(1)
    metric = cfg_i[CI_METRIC]
    want = cfg_i[CI_GRAD]
    ny = yields.shape[0]
    for i in range(ny):
        grad[i] = 0.0
    status = 0
    n_it = 0
    t_free = np.nan
    t_cond = np.nan
    muhat = np.nan
    if metric == M_NLL:
        t = twice_nll(pvec[PV_NLL], data, fbuf, ibuf)
        raw = 0.5 * t
        value = -raw
        if not np.isfinite(t):
            status = 3
        elif want == 1:
            if full is not None:
                twice_nll_grad_yields(pvec[PV_NLL], data, fbuf, ibuf, ctl_i, ctl_f,
                                      cfg_i[CI_ASIMOV], pvec[PV_ASIMOV], -0.5, grad)
    else:
        poi = cfg_i[CI_POI]
        mu0 = 0.0 if (metric == M_Q0 or metric == M_Z0) else cfg_f[CF_MUTEST]
        cond_known = cfg_i[CI_COND_CONST] == 1 and not first and out[O_STATUS] == 0.0
        # the conditional optimum x[1] and its twice_nll are those of the last step then
        f_cond = out[O_T_COND] if cond_known else np.nan
        s1, t_free, it1 = _fit(FREE, x, data, fbuf, ibuf, fixed2, pvec, poi, mu0,
                               cfg_i[CI_MAXIT], cfg_f[CF_TOL], g, h, ws, f_cond)
        if cond_known:
            # the conditional fit does not depend on the yields (see cond_fit_is_constant)
            s2, t_cond, it2 = 0, out[O_T_COND], 0
        else:
            s2, t_cond, it2 = _fit(COND, x, data, fbuf, ibuf, fixed2, pvec, poi, mu0,
                                   cfg_i[CI_MAXIT], cfg_f[CF_TOL], g, h, ws, np.nan)
        status = max(s1, s2)
        n_it = it1 + it2
        muhat = x[0, poi]
        q = t_cond - t_free
        if q < 0.0:
            q = 0.0
        active = True
        if metric == M_Q0 or metric == M_Z0:
            if muhat < mu0:
                q = 0.0
                active = False
        else:
            if muhat > mu0:
                q = 0.0
                active = False
        if q == 0.0:
            active = False
        raw = q
        if metric == M_Q0:
            value = q
            dv = 1.0
        elif metric == M_Z0:
            value = math.sqrt(q)
            dv = 0.5 / value if value > 0.0 else 0.0
        elif metric == M_QMU:
            value = -q
            dv = -1.0
        else:
            value = -math.sqrt(q)
            dv = -0.5 / math.sqrt(q) if q > 0.0 else 0.0
        if status == 0 and want == 1 and active and np.isfinite(q):
            if full is not None:
                twice_nll_grad_yields(x[1], data, fbuf, ibuf, ctl_i, ctl_f, cfg_i[CI_ASIMOV],
                                      pvec[PV_ASIMOV], dv, grad)
                twice_nll_grad_yields(x[0], data, fbuf, ibuf, ctl_i, ctl_f, cfg_i[CI_ASIMOV],
                                      pvec[PV_ASIMOV], -dv, grad)
    ok = status == 0 and np.isfinite(value)
    prev = out[O_VALUE]
    if ok:
        out[O_VALUE] = value
    elif first:
        out[O_VALUE] = value if np.isfinite(value) else 0.0
    if not ok:
        for i in range(ny):
            grad[i] = 0.0
    if cfg_i[CI_DELTA] == 1:
        out[O_REWARD] = 0.0 if first else out[O_VALUE] - prev
    else:
        out[O_REWARD] = out[O_VALUE]
    out[O_METRIC] = raw if np.isfinite(raw) else np.nan
    out[O_T_FREE] = t_free
    out[O_T_COND] = t_cond
    out[O_MUHAT] = muhat
    out[O_STATUS] = status
    out[O_NITER] = n_it
    out[O_OK] = 1.0 if ok else 0.0


@jit
def env_reset_unpacked(yields, fbuf, ibuf, ctl_i, ctl_f, data, cfg_i, cfg_f, pvec, fixed2, x, out,
                       grad):
    """Start an episode at ``yields`` (already set by the caller): fits from the initial point."""
    _refresh(yields, fbuf, ibuf, ctl_i, ctl_f, data, cfg_i, pvec)
    for k in range(x.shape[1]):
        x[0, k] = pvec[PV_INIT, k]
        x[1, k] = pvec[PV_INIT, k]
    out[O_VALUE] = 0.0
    _evaluate(yields, fbuf, ibuf, ctl_i, ctl_f, data, cfg_i, cfg_f, pvec, fixed2, x, out, grad,
              True)


@jit
def env_step_unpacked(action, yields, fbuf, ibuf, ctl_i, ctl_f, data, cfg_i, cfg_f, pvec, fixed2,
                      x, out, grad):
    """One step: action [n_y] -> yields, model, data, metric, reward (in ``out``), gradient.

    Returns 0, or 1 without touching the state when ``action`` has non-finite entries.
    """
    for i in range(action.shape[0]):
        if not np.isfinite(action[i]):
            return 1
    _apply_action(action, yields, cfg_i, cfg_f)
    _refresh(yields, fbuf, ibuf, ctl_i, ctl_f, data, cfg_i, pvec)
    _evaluate(yields, fbuf, ibuf, ctl_i, ctl_f, data, cfg_i, cfg_f, pvec, fixed2, x, out, grad,
              False)
    return 0


# ---------------------------------------------------------------------------- packed entry points
# A Python call dispatches on five arrays only (numba's per-argument dispatch cost dominates a
# 2-parameter step otherwise).  Layouts (built by ``histgym.envs.core``):
#   S float64 [n_state] = yields[n_y] | fbuf[n_f] | data[n_data] | x[2 n_pars] | out[N_OUT]
#                         | grad[n_y]
#   P float64 = cfg_f[N_CFG_F] | pvec[5 n_pars] | ctl_f
#   Q int64 = [n_y, n_f, n_data, n_pars, n_ctl_i] | cfg_i[N_CFG_I] | ctl_i[n_ctl_i]
#             | fixed2[2 n_pars]
Q_HEAD = 5


@jit
def fixed_masks(Q):
    """bool [2, n_pars]: fixed masks of the free and conditional fits (empty for ``nll``)."""
    npar = Q[3]
    cfg_i = Q[Q_HEAD : Q_HEAD + N_CFG_I]
    o = Q_HEAD + N_CFG_I + Q[4]
    nfx = 0 if cfg_i[CI_METRIC] == M_NLL else npar
    fixed2 = np.empty((2, nfx), dtype=np.bool_)
    for r in range(2):
        for k in range(nfx):
            fixed2[r, k] = Q[o + r * npar + k] != 0
    return fixed2


@jit_inline_ir
def _views(S, P, Q):
    ny = Q[0]
    nf = Q[1]
    nd = Q[2]
    npar = Q[3]
    nci = Q[4]
    cfg_i = Q[Q_HEAD : Q_HEAD + N_CFG_I]
    o = Q_HEAD + N_CFG_I
    ctl_i = Q[o : o + nci]
    cfg_f = P[0:N_CFG_F]
    pvec = P[N_CFG_F : N_CFG_F + 5 * npar].reshape((5, npar))
    ctl_f = P[N_CFG_F + 5 * npar :]
    yields = S[0:ny]
    o = ny
    fbuf = S[o : o + nf]
    o += nf
    data = S[o : o + nd]
    o += nd
    x = S[o : o + 2 * npar].reshape((2, npar))
    o += 2 * npar
    out = S[o : o + N_OUT]
    o += N_OUT
    grad = S[o : o + ny]
    return yields, fbuf, ctl_i, ctl_f, data, cfg_i, cfg_f, pvec, x, out, grad


@jit
def _scratch_size(Q):
    """Size of the fits' scratch (n_pars for profiled metrics, 0 for ``nll``)."""
    return 0 if Q[Q_HEAD + CI_METRIC] == M_NLL else Q[3]


@jit
def reset_row(S, P, Q, ibuf, fixed2, g, h, ws, full):
    """Start an episode in state row ``S`` from the yields at its head (scratch given)."""
    yields, fbuf, ctl_i, ctl_f, data, cfg_i, cfg_f, pvec, x, out, grad = _views(S, P, Q)
    if full is None:  # observed data: no Asimov code compiled
        _set_yields(yields, fbuf, ibuf, ctl_i, ctl_f)
    else:
        _refresh(yields, fbuf, ibuf, ctl_i, ctl_f, data, cfg_i, pvec)
    for k in range(x.shape[1]):
        x[0, k] = pvec[PV_INIT, k]
        x[1, k] = pvec[PV_INIT, k]
    out[O_VALUE] = 0.0
    _evaluate_with(yields, fbuf, ibuf, ctl_i, ctl_f, data, cfg_i, cfg_f, pvec, fixed2, x, out,
                   grad, np.bool_(True), g, h, ws, full)


@jit
def step_row(action, S, P, Q, ibuf, fixed2, g, h, ws, full):
    """One step of state row ``S`` (scratch given); 1 without a change for a non-finite action."""
    for i in range(action.shape[0]):
        if not np.isfinite(action[i]):
            return 1
    yields, fbuf, ctl_i, ctl_f, data, cfg_i, cfg_f, pvec, x, out, grad = _views(S, P, Q)
    _apply_action(action, yields, cfg_i, cfg_f)
    if full is None:  # observed data: no Asimov code compiled
        _set_yields(yields, fbuf, ibuf, ctl_i, ctl_f)
    else:
        _refresh(yields, fbuf, ibuf, ctl_i, ctl_f, data, cfg_i, pvec)
    _evaluate_with(yields, fbuf, ibuf, ctl_i, ctl_f, data, cfg_i, cfg_f, pvec, fixed2, x, out,
                   grad, np.bool_(False), g, h, ws, full)
    return 0


@jit
def env_reset(S, P, Q, ibuf, full=True):
    """Start an episode from the yields stored at the head of ``S`` (see the layouts above)."""
    n = _scratch_size(Q)
    reset_row(S, P, Q, ibuf, fixed_masks(Q), np.empty(n), np.empty((n, n)),
              newton_scratch(n, ibuf), full)


@jit
def env_step(action, S, P, Q, ibuf, full=True):
    """One step of the environment whose state is ``S``; returns 1 for a non-finite action."""
    n = _scratch_size(Q)
    return step_row(action, S, P, Q, ibuf, fixed_masks(Q), np.empty(n), np.empty((n, n)),
                    newton_scratch(n, ibuf), full)


# Batched drivers: the fixed masks are built once per call and shared; each thread (or the one
# thread) allocates its fit scratch once and reuses it for its rows (no allocation per row).
# Every entry point takes a last argument ``full``: omit it, or pass None when the parameters
# ask for neither the reward gradient nor Asimov data: numba then compiles neither (a faster
# first call). Pass nothing else: an explicit bool would compile a third variant.
@jit_parallel
def env_step_batch(mask, actions, S, P, Q, ibuf, bad, blocks, full=True):
    """:func:`env_step` for the rows where ``mask`` (bool [N]) is set: actions [N, n_y]
    float64, S [N, n_state]; ``bad`` [N] int64 receives each row's return code (rows with a
    non-finite action are left untouched).  Rows are split into ``blocks`` contiguous blocks
    run in parallel (one per thread: ``numba.get_num_threads()``)."""
    fixed2 = fixed_masks(Q)
    n = _scratch_size(Q)
    rows = S.shape[0]
    blocks = max(1, min(blocks, rows))
    for c in prange(blocks):
        g = np.empty(n)
        h = np.empty((n, n))
        ws = newton_scratch(n, ibuf)
        for k in range(c * rows // blocks, (c + 1) * rows // blocks):
            if mask[k]:
                bad[k] = step_row(actions[k], S[k], P, Q, ibuf, fixed2, g, h, ws, full)
            else:
                bad[k] = 0


@jit_parallel
def env_reset_batch(mask, S, P, Q, ibuf, blocks, full=True):
    """:func:`env_reset` for the rows where ``mask`` (bool [N]) is set, in ``blocks`` blocks."""
    fixed2 = fixed_masks(Q)
    n = _scratch_size(Q)
    rows = S.shape[0]
    blocks = max(1, min(blocks, rows))
    for c in prange(blocks):
        g = np.empty(n)
        h = np.empty((n, n))
        ws = newton_scratch(n, ibuf)
        for k in range(c * rows // blocks, (c + 1) * rows // blocks):
            if mask[k]:
                reset_row(S[k], P, Q, ibuf, fixed2, g, h, ws, full)


@jit
def env_step_batch_serial(mask, actions, S, P, Q, ibuf, bad, full=True):
    """:func:`env_step_batch` in one thread (small batches: no thread start-up cost)."""
    fixed2 = fixed_masks(Q)
    n = _scratch_size(Q)
    g = np.empty(n)
    h = np.empty((n, n))
    ws = newton_scratch(n, ibuf)
    for k in range(S.shape[0]):
        if mask[k]:
            bad[k] = step_row(actions[k], S[k], P, Q, ibuf, fixed2, g, h, ws, full)
        else:
            bad[k] = 0


@jit
def env_reset_batch_serial(mask, S, P, Q, ibuf, full=True):
    """:func:`env_reset_batch` in one thread."""
    fixed2 = fixed_masks(Q)
    n = _scratch_size(Q)
    g = np.empty(n)
    h = np.empty((n, n))
    ws = newton_scratch(n, ibuf)
    for k in range(S.shape[0]):
        if mask[k]:
            reset_row(S[k], P, Q, ibuf, fixed2, g, h, ws, full)
