"""Bounded Newton minimisation of -2 ln L on the exact Hessian.

Projected Newton (Bertsekas 1982): parameters held at a bound by their gradient form the
active set and stay there; the others take a Newton step, damped (Levenberg-Marquardt) when
the reduced Hessian is not positive definite, projected onto the box and shortened by an
Armijo backtracking line search.  Convergence is declared when the estimated distance to
the minimum ``edm = g^T H^-1 g / 2`` (in units of -ln L, as Minuit's EDM) falls below ``tol``.

Round-off: on large models (e.g. 10^6 bins, twice_nll ~ 10^7) twice_nll itself is only
resolved to ~10^-14 of its magnitude, so near the minimum a Newton step whose predicted
decrease ``2 edm`` is below that resolution cannot be verified by the line search, and an
absolute ``tol`` may never be met.  Below :data:`NOISE_REL` ``* (1 + |twice_nll|)`` the fitter
takes the full Newton step, accepted when twice_nll does not rise beyond that resolution, and
then stops as converged (scaled tolerance); a line search whose steps fall below the
resolution stops instead of halving and damping further.  On small models (|twice_nll| below
~10^3) this never changes a result: ``tol`` is reached first.

The fitter never raises: it returns a status code.

numba caches this module's kernels keyed on this file only: they inline the likelihood
kernels, so after a change of ``likelihood.py`` edit this file too (or clear the cache).
"""

from __future__ import annotations

import numpy as np
from numba import prange

from ._jit import jit, jit_parallel
from .likelihood import hess_scratch, twice_nll, twice_nll_hess_scratch

CONVERGED = 0
MAX_ITER = 1
LINE_SEARCH_FAILED = 2
NON_FINITE = 3
STATUS_MESSAGES = {
    CONVERGED: "converged",
    MAX_ITER: "maximum number of iterations reached",
    LINE_SEARCH_FAILED: "line search could not decrease -2 ln L",
    NON_FINITE: "-2 ln L is not finite at the starting point",
}


#: Relative resolution of twice_nll assumed by the fitter: decreases below
#: ``NOISE_REL * (1 + |twice_nll|)`` are round-off (measured: ~4e-14 on a 10^6-bin model).
NOISE_REL = 1e-12


#: Up to this size the Cholesky factorisation runs in histgym's own loop (no LAPACK call
#: overhead, no BLAS threads); above it LAPACK does the work.
SMALL = 96


@jit
def _cholesky_into(a, r, low):
    """Lower Cholesky factor of a[:r, :r] into low[:r, :r]; False if not positive definite."""
    if r > SMALL:
        try:
            low[:r, :r] = np.linalg.cholesky(np.ascontiguousarray(a[:r, :r]))
            return True
        except Exception:  # noqa: BLE001 - numba raises LinAlgError for non-PD matrices
            return False
    return _cholesky_loop_into(a, r, low)


@jit
def _cholesky_loop_into(a, r, low):
    """:func:`_cholesky_into` in histgym's own loop at any size (no LAPACK to compile)."""
    for j in range(r):
        s = a[j, j]
        for k in range(j):
            s -= low[j, k] * low[j, k]
        if not s > 0.0:
            return False
        d = np.sqrt(s)
        low[j, j] = d
        for i in range(j + 1, r):
            t = a[i, j]
            for k in range(j):
                t -= low[i, k] * low[j, k]
            low[i, j] = t / d
        for i in range(j):
            low[i, j] = 0.0
    return True


@jit
def _chol_solve(low, rhs, out):
    """Solve (low low^T) out = rhs for lower-triangular ``low`` (size = len(rhs))."""
    n = rhs.shape[0]
    for i in range(n):
        s = rhs[i]
        for k in range(i):
            s -= low[i, k] * out[k]
        out[i] = s / low[i, i]
    for i in range(n - 1, -1, -1):
        s = out[i]
        for k in range(i + 1, n):
            s -= low[k, i] * out[k]
        out[i] = s / low[i, i]


@jit
def free_covariance(hess2, fixed, cov):
    """Covariance of -ln L over the free parameters from the Hessian of -2 ln L.

    Writes ``cov`` [n_pars, n_pars] (rows/columns of fixed parameters 0) and returns True,
    or False when the free Hessian is singular (then a pseudo-inverse is written).
    """
    n = hess2.shape[0]
    idx = np.empty(n, dtype=np.int64)
    r = 0
    for i in range(n):
        if not fixed[i]:
            idx[r] = i
            r += 1
    cov[:, :] = 0.0
    if r == 0:
        return True
    h = np.empty((r, r))
    for a in range(r):
        for b in range(r):
            h[a, b] = 0.5 * hess2[idx[a], idx[b]]
    ok = True
    if r <= SMALL:
        low = np.zeros((r, r))
        ok = _cholesky_into(h, r, low)
        if ok:
            e = np.zeros(r)
            col = np.empty(r)
            for b in range(r):
                e[b] = 1.0
                _chol_solve(low, e, col)
                e[b] = 0.0
                for a in range(r):
                    cov[idx[a], idx[b]] = col[a]
    if r > SMALL or not ok:
        try:
            inv = np.linalg.inv(h)
            ok = np.all(np.isfinite(inv))
        except Exception:  # noqa: BLE001
            ok = False
        if not ok:
            inv = np.linalg.pinv(h)
        for a in range(r):
            for b in range(r):
                cov[idx[a], idx[b]] = 0.5 * (inv[a, b] + inv[b, a])
    return ok


@jit
def covariance_summary(cov, unc, corr):
    """``unc = sqrt(diag(cov))`` (negative variances -> 0) and the correlation matrix
    (1 on the diagonal, 0 where an uncertainty is 0)."""
    n = cov.shape[0]
    for i in range(n):
        unc[i] = np.sqrt(max(cov[i, i], 0.0))
    for i in range(n):
        for j in range(n):
            if i == j:
                corr[i, j] = 1.0
            elif unc[i] > 0.0 and unc[j] > 0.0:
                corr[i, j] = cov[i, j] / (unc[i] * unc[j])
            else:
                corr[i, j] = 0.0


@jit
def fit_with_covariance(pars0, data, fbuf, ibuf, fixed, lower, upper, max_iter, tol, x, cov,
                        unc, corr):
    """:func:`newton_fit`, then the covariance of the free parameters, the uncertainties and
    the correlation matrix at the minimum, in one call.

    Writes ``x`` [n_pars], ``cov`` and ``corr`` [n_pars, n_pars] and ``unc`` [n_pars].  A fit
    whose start is not finite reports the start and a zero covariance.

    Returns:
        (status, twice_nll at x, iterations, edm), as :func:`newton_fit`.
    """
    n = pars0.shape[0]
    g = np.empty(n)
    h = np.empty((n, n))
    status, f, it, edm = newton_fit(pars0, data, fbuf, ibuf, fixed, lower, upper, max_iter, tol,
                                    x, g, h)
    if np.isfinite(f):
        free_covariance(h, fixed, cov)
    else:
        for i in range(n):
            x[i] = pars0[i]
        cov[:, :] = 0.0
    covariance_summary(cov, unc, corr)
    return status, f, it, edm


@jit
def newton_fit(pars0, data, fbuf, ibuf, fixed, lower, upper, max_iter, tol, x, grad, hess):
    """Minimise -2 ln L over the free parameters.

    Args:
        pars0: float64 [n_pars] starting point (fixed parameters keep these values).
        data: float64 [n_bins + n_aux].
        fbuf, ibuf: packed model.
        fixed: bool [n_pars].
        lower, upper: float64 [n_pars] bounds.
        max_iter: maximum number of Newton iterations.
        tol: convergence threshold on the EDM (units of -ln L).
        x, grad, hess: outputs: the minimum [n_pars], the gradient [n_pars] and the
            Hessian [n_pars, n_pars] of -2 ln L there.

    Returns:
        (status, twice_nll at x, iterations, edm).
    """
    return newton_fit_scratch(pars0, data, fbuf, ibuf, fixed, lower, upper, max_iter, tol, x,
                              grad, hess, newton_scratch(pars0.shape[0], ibuf))


@jit
def newton_scratch(n_pars, ibuf):
    """Work arrays of :func:`newton_fit_scratch` for ``n_pars`` parameters (allocate once per
    thread, reuse for every fit of the same model layout)."""
    fv, fd, fd2, gb, mark, touched = hess_scratch(n_pars, ibuf)
    n = n_pars
    return (fv, fd, fd2, gb, mark, touched, np.empty(n, dtype=np.int64), np.empty(n),
            np.empty((n, n)), np.empty((n, n)), np.empty(n), np.empty(n), np.empty(n))


@jit
def newton_fit_scratch(pars0, data, fbuf, ibuf, fixed, lower, upper, max_iter, tol, x, grad,
                       hess, ws, lapack=True):
    """:func:`newton_fit` with its work arrays ``ws`` from :func:`newton_scratch` (no
    allocation: batched callers fit many rows per thread).

    ``lapack=None`` factorises every Hessian in histgym's own loop, also above ``SMALL``
    free parameters: numba then compiles no LAPACK binding (the environments' first step).
    """
    n = pars0.shape[0]
    fv, fd, fd2, gb, mark, touched, idx, xn, hr, low, gr, scale, d = ws
    for i in range(n):
        v = pars0[i]
        if not fixed[i]:
            v = min(max(v, lower[i]), upper[i])
        x[i] = v
    f = twice_nll_hess_scratch(x, data, fbuf, ibuf, grad, hess, fv, fd, fd2, gb, mark, touched)
    if not np.isfinite(f):
        return NON_FINITE, f, 0, np.inf
    damp = 0.0
    edm = np.inf
    it = 0
    status = MAX_ITER
    polished = False  # a round-off-limited Newton step was taken
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
            if lapack is None:
                pd = _cholesky_loop_into(hr, r, low)
            else:
                pd = _cholesky_into(hr, r, low)
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
                # the predicted decrease is below the resolution of twice_nll
                if polished:
                    status = CONVERGED
                    accepted = True
                    break
                for i in range(n):
                    xn[i] = x[i]
                for a in range(r):
                    i = idx[a]
                    xn[i] = min(max(x[i] + d[a], lower[i]), upper[i])
                fn = twice_nll(xn, data, fbuf, ibuf)
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
                fn = twice_nll(xn, data, fbuf, ibuf)
                if np.isfinite(fn) and fn <= f + 1e-4 * dec:
                    accepted = True
                    break
                if dec >= 0.0 and fn <= f:
                    accepted = True
                    break
                if -dec < noise:  # shorter steps are below the resolution of twice_nll
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
            # cannot decrease: at the minimum up to rounding if the EDM is small
            status = CONVERGED if edm < max(1e-6, noise) else LINE_SEARCH_FAILED
            break
        for i in range(n):
            x[i] = xn[i]
        f_old = f
        f = twice_nll_hess_scratch(x, data, fbuf, ibuf, grad, hess, fv, fd, fd2, gb, mark, touched)
        damp = 0.0 if damp < 1e-5 else damp * 0.1
        if f_old - f < 1e-15 * (1.0 + abs(f)) and edm < 1e-8:
            status = CONVERGED
            break
    return status, f, it, edm


@jit_parallel
def newton_fit_batch(
    pars0, data, fbufs, ibuf, fixed, lower, upper, max_iter, tol, x, status, fval, n_iter
):
    """:func:`newton_fit` for every row: pars0/fixed/x [N, n_pars], data [N, n_data],
    fbufs [N, n_f] (one model buffer per row; broadcast a shared one with a stride-0 view).
    Writes status/fval/n_iter [N]; never raises."""
    n = pars0.shape[1]
    for k in prange(pars0.shape[0]):
        g = np.empty(n)
        h = np.empty((n, n))
        s, f, it, _ = newton_fit(
            pars0[k], data[k], fbufs[k], ibuf, fixed[k], lower, upper, max_iter, tol, x[k], g, h
        )
        status[k] = s
        fval[k] = f
        n_iter[k] = it
