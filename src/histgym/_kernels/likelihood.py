"""Expected yields and -2 ln L of a packed HistFactory model: value, gradient, Hessian.

All functions take ``pars`` (float64 [n_pars], pyhf's parameter order), ``data`` (float64
[n_bins + n_aux], main bins then auxdata, pyhf's order) and the packed model ``fbuf, ibuf``.
``twice_nll`` is ``-2 * pyhf_model.logpdf(pars, data)`` including every constant:
Poisson terms ``2 * (lam - n ln lam + lgamma(n + 1))`` for main bins and Poisson constraints,
``((x - theta) / sigma)**2 + 2 ln sigma + ln(2 pi)`` for Gaussian constraints.

Precision: each Poisson term is computed without cancellation (:func:`poisson_twice`), to
~1e-15 of its own magnitude for counts and expectations from 0 to 1e15 (tested against
mpmath at 50 digits), where the textbook form (pyhf's, via ``gammaln``) loses up to
``ulp(lgamma(n + 1))`` absolute: ~1e-3 for a shapesys auxdata tau of 2e11.  Derivatives are
those of the same function (``1 - n / lam`` per unit of lam), exact in any form.

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


#: From this count on, ``lgamma(n + 1)`` is written as Stirling's series (see
#: :func:`poisson_twice`); below it ``math.lgamma`` is used directly.
STIRLING_MIN = 15.0


#: ``lgamma(1 + n) = sum_k LGAMMA1P_COEF[k] n**(k + 1)`` for |n| < 1: ``-euler_gamma``, then
#: ``(-1)**k zeta(k) / k`` for k = 2..31 (mpmath, 40 digits, rounded to float64).
LGAMMA1P_COEF = np.array([
    -0.5772156649015329,
    0.8224670334241132,
    -0.40068563438653143,
    0.27058080842778454,
    -0.20738555102867398,
    0.1695571769974082,
    -0.1440498967688461,
    0.12550966952474304,
    -0.11133426586956469,
    0.1000994575127818,
    -0.09095401714582904,
    0.083353840546109,
    -0.0769325164113522,
    0.07143294629536133,
    -0.06666870588242046,
    0.06250095514121304,
    -0.058823978658684585,
    0.055555767627403614,
    -0.05263167937961666,
    0.05000004769810169,
    -0.047619070330142226,
    0.04545455629320467,
    -0.04347826605304026,
    0.04166666915034121,
    -0.04000000119214014,
    0.03846153903467518,
    -0.037037037312989324,
    0.035714285847333355,
    -0.034482758684919304,
    0.03333333336437758,
    -0.03225806453115042,
])

#: Below this count ``lgamma(1 + n)`` is summed from :data:`LGAMMA1P_COEF` (``1 + n`` would
#: round n away).
LGAMMA_SERIES_MAX = 0.25


@jit_inline
def _lgamma1p_small(n):
    """``lgamma(1 + n)`` for 0 <= n < LGAMMA_SERIES_MAX, to ~1e-16 relative."""
    c = LGAMMA1P_COEF
    acc = c[c.shape[0] - 1]
    for k in range(c.shape[0] - 2, -1, -1):
        acc = acc * n + c[k]
    return acc * n


@jit_inline
def _x_minus_log1p(x):
    """``x - log1p(x)`` for -0.25 < x < 0.5 without cancellation (relative error ~1e-16):
    with ``u = x / (2 + x)`` (``log1p(x) = 2 atanh(u)``),
    ``2 u**2 / (1 - u) - 2 (u**3/3 + u**5/5 + ...)``; the series is evaluated by Horner's
    rule with a fixed number of terms (6 for u**2 < 1e-3, else 12: u**2 <= 1/25 there, so the
    first omitted term is below 1e-17 of the sum) - no data-dependent loop, no division.
    """
    u = x / (2.0 + x)
    u2 = u * u
    lead = 2.0 * u2 / (1.0 - u)
    if u2 < 1e-3:
        p = 1.0 / 3.0 + u2 * (1.0 / 5.0 + u2 * (1.0 / 7.0 + u2 * (1.0 / 9.0 + u2 * (
            1.0 / 11.0 + u2 * (1.0 / 13.0)))))
    else:
        p = 1.0 / 3.0 + u2 * (1.0 / 5.0 + u2 * (1.0 / 7.0 + u2 * (1.0 / 9.0 + u2 * (
            1.0 / 11.0 + u2 * (1.0 / 13.0 + u2 * (1.0 / 15.0 + u2 * (1.0 / 17.0 + u2 * (
                1.0 / 19.0 + u2 * (1.0 / 21.0 + u2 * (1.0 / 23.0 + u2 * (1.0 / 25.0)))))))))))
    return lead - 2.0 * (u * u2) * p


@jit_inline
def _stirling_remainder(n):
    """``lgamma(n + 1) - (n ln n - n + ln(2 pi n) / 2)`` for n >= STIRLING_MIN (error < 1e-17)."""
    r = 1.0 / (n * n)
    return (
        1.0 / 12.0
        + r * (-1.0 / 360.0
        + r * (1.0 / 1260.0
        + r * (-1.0 / 1680.0
        + r * (1.0 / 1188.0
        + r * (-691.0 / 360360.0
        + r * (1.0 / 156.0))))))
    ) / n  # fmt: skip


@jit_inline
def poisson_twice(n, lam):
    """-2 ln Poisson(n | lam) = ``2 (lam - n ln lam + lgamma(n + 1))``, continuous in n;
    +inf where lam <= 0 < n.

    Evaluated without cancellation: for ``n >= STIRLING_MIN`` as
    ``2 (n (x - log1p(x)) + ln(2 pi n) / 2 + S(n))`` with ``x = (lam - n) / n`` and ``S``
    Stirling's remainder of ``lgamma(n + 1)``; each term is then accurate to ~1e-15 of its
    magnitude for every n and lam up to 1e15 and beyond (the textbook form loses
    ``ulp(lgamma(n + 1))``, e.g. 1e-3 absolute at n = 2e11).  Below ``STIRLING_MIN`` the
    textbook form is used (its cancellation there costs at most a factor ~20 in ulps), with
    ``lgamma(1 + n)`` from its Taylor series below ``LGAMMA_SERIES_MAX``.
    """
    if n == 0.0:
        return 2.0 * lam
    if lam <= 0.0:
        return np.inf
    if n < LGAMMA_SERIES_MAX:
        return 2.0 * (lam - n * math.log(lam) + _lgamma1p_small(n))
    if n < STIRLING_MIN:
        return 2.0 * (lam - n * math.log(lam) + math.lgamma(n + 1.0))
    d = lam - n
    x = d / n
    if -0.25 < x < 0.5:
        dev = n * _x_minus_log1p(x)
    else:  # n (r - 1 - ln r) with r = lam / n away from 1: no cancellation beyond ~10 ulp
        dev = d - n * math.log(lam / n)
    return 2.0 * (dev + 0.5 * (LOG_2PI + math.log(n)) + _stirling_remainder(n))


_poisson_twice = poisson_twice


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
