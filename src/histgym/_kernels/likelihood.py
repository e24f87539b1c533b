"""Expected yields and -2 ln L of a packed HistFactory model: value, gradient, Hessian.

All functions take ``pars`` (float64 [n_pars], pyhf's parameter order), ``data`` (float64
[n_bins + n_aux], main bins then auxdata, pyhf's order) and the packed model ``fbuf, ibuf``.
``twice_nll`` is ``-2 * pyhf_model.logpdf(pars, data)`` including every constant:
Poisson terms ``2 * (lam - n ln lam + lgamma(n + 1))`` for main bins and Poisson constraints,
``((x - theta) / sigma)**2 + 2 ln sigma + ln(2 pi)`` for Gaussian constraints.

A bin with ``n > 0`` and expected ``lam <= 0`` makes ``twice_nll`` ``+inf`` (pyhf gives
``-inf``/NaN there): fits treat such points as infeasible.

Per cell the yield is ``(nominal + sum of histosys deltas) * product of factors`` as in pyhf.
Derivatives of the product use leave-one-out products that stay exact when a factor is
zero (e.g. a signal strength at 0).
"""

from __future__ import annotations

import math

import numpy as np

from numba import prange as numba_prange

from ._jit import jit, jit_inline, jit_parallel
from .interp import delta_1, factor_1
from .layout import unpack

LOG_2PI = math.log(2.0 * math.pi)


@jit_inline
def _entry_factor(m, j, pars):
    """(f, df, d2f) of multiplicative entry ``j``."""
    r = m.fac_ref[j]
    x = pars[m.fac_par[j]]
    if r < 0:
        return x, 1.0, 0.0
    return factor_1(m.normsys_code, x, m.ns_hi[r], m.ns_lo[r], m.ns_coef[6 * r : 6 * r + 6])


@jit_inline
def _entry_delta(m, j, pars):
    """(delta, d delta, d2 delta) of additive entry ``j``."""
    return delta_1(m.histosys_code, pars[m.add_par[j]], m.hs_up[j], m.hs_dn[j])


@jit_inline
def _cell_yield(m, c, pars):
    a = m.nominal[c]
    for j in range(m.add_ptr[c], m.add_ptr[c + 1]):
        d, _, _ = _entry_delta(m, j, pars)
        a += d
    f = 1.0
    for j in range(m.fac_ptr[c], m.fac_ptr[c + 1]):
        v, _, _ = _entry_factor(m, j, pars)
        f *= v
    return a * f


@jit_inline
def _bin_yield(m, b, pars):
    lam = 0.0
    for c in range(m.bin_ptr[b], m.bin_ptr[b + 1]):
        lam += _cell_yield(m, c, pars)
    return lam


@jit_inline
def _poisson_twice(n, lam):
    """-2 ln Poisson(n | lam) with continuous lgamma; +inf where lam <= 0 < n."""
    if n == 0.0:
        return 2.0 * lam
    if lam <= 0.0:
        return np.inf
    return 2.0 * (lam - n * math.log(lam) + math.lgamma(n + 1.0))


@jit
def expected_main(pars, fbuf, ibuf, out):
    """Write the expected main-bin yields (float64 [n_bins]) into ``out``."""
    m = unpack(fbuf, ibuf)
    for b in range(m.n_bins):
        out[b] = _bin_yield(m, b, pars)


@jit
def expected_cells(pars, fbuf, ibuf, out):
    """Write the expected yield of every cell (float64 [n_cells]) into ``out``."""
    m = unpack(fbuf, ibuf)
    for c in range(m.nominal.shape[0]):
        out[c] = _cell_yield(m, c, pars)


@jit_inline
def _constraint_twice(m, pars, data):
    total = 0.0
    nb = m.n_bins
    for k in range(m.gauss_par.shape[0]):
        s = m.gauss_sigma[k]
        z = (data[nb + m.gauss_aux[k]] - pars[m.gauss_par[k]]) / s
        total += z * z + 2.0 * math.log(s) + LOG_2PI
    for k in range(m.pois_par.shape[0]):
        total += _poisson_twice(data[nb + m.pois_aux[k]], pars[m.pois_par[k]] * m.pois_factor[k])
    return total


@jit
def twice_nll(pars, data, fbuf, ibuf):
    """-2 ln L(pars | data) (float)."""
    m = unpack(fbuf, ibuf)
    total = 0.0
    for b in range(m.n_bins):
        total += _poisson_twice(data[b], _bin_yield(m, b, pars))
    return total + _constraint_twice(m, pars, data)


@jit_inline
def _constraint_grad(m, pars, data, grad):
    nb = m.n_bins
    for k in range(m.gauss_par.shape[0]):
        s = m.gauss_sigma[k]
        p = m.gauss_par[k]
        grad[p] += -2.0 * (data[nb + m.gauss_aux[k]] - pars[p]) / (s * s)
    for k in range(m.pois_par.shape[0]):
        p = m.pois_par[k]
        tau = m.pois_factor[k]
        lam = pars[p] * tau
        x = data[nb + m.pois_aux[k]]
        grad[p] += 2.0 * tau * (1.0 - x / lam) if x != 0.0 else 2.0 * tau


@jit_inline
def _cell_zero_stats(m, c, pars):
    """Product F of the cell's factors, product of its non-zero factors, count of zeros
    and the entry indices of the first two zeros."""
    f_all = 1.0
    p_nz = 1.0
    nz = 0
    z1 = -1
    z2 = -1
    for j in range(m.fac_ptr[c], m.fac_ptr[c + 1]):
        v, _, _ = _entry_factor(m, j, pars)
        f_all *= v
        if v == 0.0:
            if nz == 0:
                z1 = j
            elif nz == 1:
                z2 = j
            nz += 1
        else:
            p_nz *= v
    return f_all, p_nz, nz, z1, z2


@jit_inline
def _cell_additive(m, c, pars):
    a = m.nominal[c]
    for j in range(m.add_ptr[c], m.add_ptr[c + 1]):
        d, _, _ = _entry_delta(m, j, pars)
        a += d
    return a


@jit_inline
def _loo1(f_all, p_nz, nz, z1, j, fj):
    """Product of all factors of a cell but entry j."""
    if nz == 0:
        return f_all / fj
    if nz == 1 and j == z1:
        return p_nz
    return 0.0


@jit_inline
def _loo2(f_all, p_nz, nz, z1, z2, j, fj, k, fk):
    """Product of all factors of a cell but entries j != k."""
    if nz == 0:
        return f_all / (fj * fk)
    if nz == 1:
        if j == z1:
            return p_nz / fk
        if k == z1:
            return p_nz / fj
        return 0.0
    if nz == 2 and ((j == z1 and k == z2) or (j == z2 and k == z1)):
        return p_nz
    return 0.0


@jit_inline
def _cell_grad_into(m, c, pars, w, out):
    """Add ``w * d(cell yield)/d pars`` into ``out``."""
    a = _cell_additive(m, c, pars)
    f_all, p_nz, nz, z1, z2 = _cell_zero_stats(m, c, pars)
    if f_all != 0.0:
        for j in range(m.add_ptr[c], m.add_ptr[c + 1]):
            _, dd, _ = _entry_delta(m, j, pars)
            out[m.add_par[j]] += w * f_all * dd
    if nz <= 1 and a != 0.0:
        for j in range(m.fac_ptr[c], m.fac_ptr[c + 1]):
            v, dv, _ = _entry_factor(m, j, pars)
            loo = _loo1(f_all, p_nz, nz, z1, j, v)
            if loo != 0.0:
                out[m.fac_par[j]] += w * a * loo * dv


@jit
def twice_nll_grad(pars, data, fbuf, ibuf, grad):
    """-2 ln L; writes its gradient (float64 [n_pars]) into ``grad``."""
    m = unpack(fbuf, ibuf)
    grad[:] = 0.0
    total = 0.0
    for b in range(m.n_bins):
        n = data[b]
        lam = _bin_yield(m, b, pars)
        total += _poisson_twice(n, lam)
        w = 2.0 - 2.0 * n / lam if n != 0.0 else 2.0
        for c in range(m.bin_ptr[b], m.bin_ptr[b + 1]):
            _cell_grad_into(m, c, pars, w, grad)
    _constraint_grad(m, pars, data, grad)
    return total + _constraint_twice(m, pars, data)


@jit
def hess_scratch(n_pars, ibuf):
    """Scratch buffers for :func:`twice_nll_hess_scratch` (allocate once, reuse)."""
    k = max(ibuf[5], 1)
    return (
        np.empty(k),
        np.empty(k),
        np.empty(k),
        np.zeros(n_pars),
        np.zeros(n_pars, dtype=np.bool_),
        np.empty(n_pars, dtype=np.int64),
    )


@jit
def twice_nll_hess(pars, data, fbuf, ibuf, grad, hess):
    """-2 ln L; writes gradient [n_pars] and exact Hessian [n_pars, n_pars] into the outputs."""
    fv, fd, fd2, gb, mark, touched = hess_scratch(pars.shape[0], ibuf)
    return twice_nll_hess_scratch(pars, data, fbuf, ibuf, grad, hess, fv, fd, fd2, gb, mark, touched)


@jit
def twice_nll_hess_scratch(pars, data, fbuf, ibuf, grad, hess, fv, fd, fd2, gb, mark, touched):
    """:func:`twice_nll_hess` with caller-owned scratch from :func:`hess_scratch`.

    ``gb`` must be zero and ``mark`` False on entry; both are left so on return.
    """
    m = unpack(fbuf, ibuf)
    grad[:] = 0.0
    hess[:, :] = 0.0
    # gb: d lam_b / d pars for the current bin, sparse over the `touched` indices
    total = 0.0
    for b in range(m.n_bins):
        n = data[b]
        lam = _bin_yield(m, b, pars)
        total += _poisson_twice(n, lam)
        w = 2.0 - 2.0 * n / lam if n != 0.0 else 2.0
        curv = 2.0 * n / (lam * lam) if n != 0.0 else 0.0
        n_t = 0
        for c in range(m.bin_ptr[b], m.bin_ptr[b + 1]):
            a = _cell_additive(m, c, pars)
            f0 = m.fac_ptr[c]
            k = m.fac_ptr[c + 1] - f0
            f_all = 1.0
            p_nz = 1.0
            nz = 0
            z1 = -1
            z2 = -1
            for i in range(k):
                v, dv, d2v = _entry_factor(m, f0 + i, pars)
                fv[i] = v
                fd[i] = dv
                fd2[i] = d2v
                f_all *= v
                if v == 0.0:
                    if nz == 0:
                        z1 = i
                    elif nz == 1:
                        z2 = i
                    nz += 1
                else:
                    p_nz *= v
            # additive entries: first derivative F * dd, second F * d2d (diagonal only)
            for j in range(m.add_ptr[c], m.add_ptr[c + 1]):
                _, dd, d2d = _entry_delta(m, j, pars)
                q = m.add_par[j]
                if not mark[q]:
                    mark[q] = True
                    touched[n_t] = q
                    n_t += 1
                gb[q] += f_all * dd
                hess[q, q] += w * f_all * d2d
                # cross terms with factors: F_{-i} * df_i * dd
                for i in range(k):
                    loo = _loo1(f_all, p_nz, nz, z1, i, fv[i])
                    if loo != 0.0:
                        h = w * loo * fd[i] * dd
                        p = m.fac_par[f0 + i]
                        hess[p, q] += h
                        hess[q, p] += h
            for i in range(k):
                p = m.fac_par[f0 + i]
                if not mark[p]:
                    mark[p] = True
                    touched[n_t] = p
                    n_t += 1
                loo = _loo1(f_all, p_nz, nz, z1, i, fv[i])
                gb[p] += a * loo * fd[i]
                hess[p, p] += w * a * loo * fd2[i]
                if a != 0.0:
                    for l in range(k):
                        if l != i:
                            loo2 = _loo2(f_all, p_nz, nz, z1, z2, i, fv[i], l, fv[l])
                            if loo2 != 0.0:
                                hess[p, m.fac_par[f0 + l]] += w * a * loo2 * fd[i] * fd[l]
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
    _constraint_grad(m, pars, data, grad)
    nb = m.n_bins
    for k in range(m.gauss_par.shape[0]):
        s = m.gauss_sigma[k]
        p = m.gauss_par[k]
        hess[p, p] += 2.0 / (s * s)
    for k in range(m.pois_par.shape[0]):
        p = m.pois_par[k]
        x = data[nb + m.pois_aux[k]]
        if x != 0.0:
            hess[p, p] += 2.0 * x / (pars[p] * pars[p])
    return total + _constraint_twice(m, pars, data)


@jit_parallel
def twice_nll_batch(pars, data, fbuf, ibuf, out):
    """``out[i] = twice_nll(pars[i], data[i])`` for a batch (pars [N, n_pars], data [N, n_data])."""
    for i in numba_prange(pars.shape[0]):
        out[i] = twice_nll(pars[i], data[i], fbuf, ibuf)


@jit_parallel
def twice_nll_grad_batch(pars, data, fbuf, ibuf, out, grad):
    """Batched :func:`twice_nll_grad`: out [N], grad [N, n_pars]."""
    for i in numba_prange(pars.shape[0]):
        out[i] = twice_nll_grad(pars[i], data[i], fbuf, ibuf, grad[i])


@jit_parallel
def twice_nll_models_batch(pars, data, fbufs, ibuf, out):
    """``out[i] = twice_nll(pars[i], data[i])`` with a model buffer per row (fbufs [N, n_f])."""
    for i in numba_prange(pars.shape[0]):
        out[i] = twice_nll(pars[i], data[i], fbufs[i], ibuf)


@jit_parallel
def twice_nll_grad_models_batch(pars, data, fbufs, ibuf, out, grad):
    """Batched gradient with a model buffer per row (fbufs [N, n_f])."""
    for i in numba_prange(pars.shape[0]):
        out[i] = twice_nll_grad(pars[i], data[i], fbufs[i], ibuf, grad[i])
