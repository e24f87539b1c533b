"""Kernels layer: the fits of one inference call (hypotest, ranking) in a single compiled call.

On small models one bounded Newton fit costs about a microsecond, less than the Python
around it; these drivers chain the fits of a hypothesis test (free fit, POI-fixed fit,
Asimov construction, Asimov fits) or of an impact ranking (nominal fit and every refit)
inside compiled code.  They reproduce the Python inference layer step by step
(``histgym.infer.teststats.minimize`` and ``tmu_like``, ``histgym.fit.fit``), so results
are the same to the last bit.

Nothing raises: failed fits are reported through status codes and flags.
"""

from __future__ import annotations

import numpy as np

from ._jit import jit
from .layout import unpack
from .likelihood import expected_main
from .newton import CONVERGED, fit_with_covariance, newton_fit

#: ``twice_nll`` reported for a fit that is not finite anywhere (as the Python layer).
FMAX = float(np.finfo(np.float64).max)

#: Rows of the Asymptotic-calculator state arrays ``xs`` [3, n_pars], ``fs`` [3], ``sts`` [3].
S_FREE = 0  # free fit to the data
S_FREE_A = 1  # free fit to the Asimov data
S_ASIMOV = 2  # POI-fixed fit that builds the Asimov data

#: ``out`` of :func:`asymptotic_eval`: q (observed), q (Asimov), all fits converged (1/0).
O_Q = 0
O_QA = 1
O_OK = 2

#: Rows of ``out`` of :func:`ranking_fits` after the four impacts (rows 0-3).
R_PULL = 4
R_CONSTRAINT = 5
R_TOTAL = 6

#: ``mode`` of :func:`asymptotic_eval`.
M_PREPARE = 0
M_ASIMOV = 1
M_BOTH = 2


@jit
def minimize_into(start, data, fbuf, ibuf, fixed, lower, upper, max_iter, tol, x, g, h, x2):
    """One bounded Newton fit, retried once from its end point if it did not converge.

    As ``histgym.infer.teststats.minimize``: a retry is kept when it is not worse; a fit that
    ends non-finite reports ``x = start``, ``twice_nll = FMAX``, ``h = 0`` and ``edm = FMAX``.

    Args:
        start: float64 [n_pars] starting point (not modified).
        data, fbuf, ibuf, fixed, lower, upper, max_iter, tol: as :func:`newton_fit`.
        x, g, h: outputs (minimum, gradient, Hessian of -2 ln L); x2: scratch [n_pars].

    Returns:
        (status, twice_nll, iterations, edm).
    """
    n = start.shape[0]
    status, f, it, edm = newton_fit(
        start, data, fbuf, ibuf, fixed, lower, upper, max_iter, tol, x, g, h
    )
    if status != CONVERGED and np.isfinite(f) and np.all(np.isfinite(x)):
        status2, f2, it2, edm2 = newton_fit(
            x, data, fbuf, ibuf, fixed, lower, upper, max_iter, tol, x2, g, h
        )
        if np.isfinite(f2) and f2 <= f:
            for i in range(n):
                x[i] = x2[i]
            status, f, it, edm = status2, f2, it + it2, edm2
    if not np.isfinite(f) or not np.all(np.isfinite(x)):
        for i in range(n):
            x[i] = start[i]
        f = FMAX
        h[:, :] = 0.0
        edm = FMAX
    return status, f, it, edm


@jit
def expected_data_into(pars, fbuf, ibuf, out):
    """Expected main bins followed by auxdata expectations at ``pars`` into ``out`` [n_data]
    (as ``Model.expected_data``)."""
    m = unpack(fbuf, ibuf)
    nb = m.n_bins
    main = np.empty(nb)
    expected_main(pars, fbuf, ibuf, main)
    for b in range(nb):
        out[b] = main[b]
    for k in range(m.gauss_par.shape[0]):
        out[nb + m.gauss_aux[k]] = pars[m.gauss_par[k]]
    for k in range(m.pois_par.shape[0]):
        out[nb + m.pois_aux[k]] = pars[m.pois_par[k]] * m.pois_factor[k]


@jit
def _tmu_like(
    mu, init, fixed, fixed_poi, lower, upper, poi, data, fbuf, ibuf, max_iter, tol,
    xs, fs, sts, row, xfix, xa, g, h, x2,
):  # fmt: skip
    """t_mu against the free fit stored in row ``row`` of (xs, fs, sts), as ``tmu_like``.

    The POI-fixed fit starts at ``init`` with the POI at ``mu``; when the stored free fit is
    above it, the free fit is redone from the POI-fixed optimum and replaces the stored one
    if lower.  Returns (t_mu, status of the POI-fixed fit).
    """
    n = init.shape[0]
    start = init.copy()
    start[poi] = mu
    st_fix, f_fix, _, _ = minimize_into(
        start, data, fbuf, ibuf, fixed_poi, lower, upper, max_iter, tol, xfix, g, h, x2
    )
    if fs[row] > f_fix:
        st_a, f_a, _, _ = minimize_into(
            xfix, data, fbuf, ibuf, fixed, lower, upper, max_iter, tol, xa, g, h, x2
        )
        if f_a < fs[row]:
            for i in range(n):
                xs[row, i] = xa[i]
            fs[row] = f_a
            sts[row] = st_a
    d = f_fix - fs[row]
    t = 0.0 if 0.0 > d else d
    return t, st_fix


@jit
def _clip(t, poi_hat, mu, is_q0):
    """0 for q0 when mu_hat < 0, for q_mu when mu_hat > mu (pyhf's one-sided statistics)."""
    if is_q0:
        return 0.0 if poi_hat < 0.0 else t
    return 0.0 if poi_hat > mu else t


@jit
def asymptotic_eval(
    mu, mu_asimov, is_q0, mode, init, fixed, lower, upper, poi, data, fbuf, ibuf,
    max_iter, tol, asimov, xs, fs, sts, out,
):  # fmt: skip
    """The fits of ``AsymptoticCalculator.test_statistics`` (and of its preparation).

    State (updated in place): ``sts[S_ASIMOV] < 0`` means "not prepared yet": then the free
    fit to ``data``, the POI-fixed fit at ``mu_asimov`` that builds the Asimov data (written
    to ``asimov``) and the free fit to the Asimov data are run first and stored in rows
    ``S_FREE``, ``S_ASIMOV``, ``S_FREE_A`` of ``xs`` [3, n_pars], ``fs`` [3], ``sts`` [3].
    Then, by ``mode``: ``M_PREPARE`` nothing more; ``M_ASIMOV`` the test statistic at ``mu`` on
    the Asimov data; ``M_BOTH`` on the Asimov data and on ``data``.  Free fits improved by a
    restart (see :func:`_tmu_like`) replace the stored ones.

    Writes ``out[O_Q]`` (observed q, 0 unless ``M_BOTH``), ``out[O_QA]`` (Asimov q, 0 for
    ``M_PREPARE``) and ``out[O_OK]`` (1.0 when every fit of the evaluation and the Asimov fit
    converged).
    """
    n = init.shape[0]
    g = np.empty(n)
    h = np.empty((n, n))
    x2 = np.empty(n)
    if sts[S_ASIMOV] < 0:
        st, f, _, _ = minimize_into(
            init, data, fbuf, ibuf, fixed, lower, upper, max_iter, tol, xs[S_FREE], g, h, x2
        )
        fs[S_FREE] = f
        sts[S_FREE] = st
        fixed_poi = fixed.copy()
        fixed_poi[poi] = True
        start = init.copy()
        start[poi] = mu_asimov
        st, f, _, _ = minimize_into(
            start, data, fbuf, ibuf, fixed_poi, lower, upper, max_iter, tol, xs[S_ASIMOV],
            g, h, x2,
        )  # fmt: skip
        fs[S_ASIMOV] = f
        sts[S_ASIMOV] = st
        expected_data_into(xs[S_ASIMOV], fbuf, ibuf, asimov)
        st, f, _, _ = minimize_into(
            init, asimov, fbuf, ibuf, fixed, lower, upper, max_iter, tol, xs[S_FREE_A],
            g, h, x2,
        )  # fmt: skip
        fs[S_FREE_A] = f
        sts[S_FREE_A] = st
    if mode == M_PREPARE:
        out[O_Q] = 0.0
        out[O_QA] = 0.0
        out[O_OK] = 1.0 if sts[S_ASIMOV] == CONVERGED else 0.0
        return
    fixed_poi = fixed.copy()
    fixed_poi[poi] = True
    xfix = np.empty(n)
    xa = np.empty(n)
    ok = sts[S_ASIMOV] == CONVERGED
    q = 0.0
    if mode == M_BOTH:
        t, st_fix = _tmu_like(
            mu, init, fixed, fixed_poi, lower, upper, poi, data, fbuf, ibuf, max_iter, tol,
            xs, fs, sts, S_FREE, xfix, xa, g, h, x2,
        )  # fmt: skip
        q = _clip(t, xs[S_FREE, poi], mu, is_q0)
        ok = ok and st_fix == CONVERGED and sts[S_FREE] == CONVERGED
    ta, st_fix_a = _tmu_like(
        mu, init, fixed, fixed_poi, lower, upper, poi, asimov, fbuf, ibuf, max_iter, tol,
        xs, fs, sts, S_FREE_A, xfix, xa, g, h, x2,
    )  # fmt: skip
    qa = _clip(ta, xs[S_FREE_A, poi], mu, is_q0)
    ok = ok and st_fix_a == CONVERGED and sts[S_FREE_A] == CONVERGED
    out[O_Q] = q
    out[O_QA] = qa
    out[O_OK] = 1.0 if ok else 0.0


@jit
def refit_start(best, cov, fixed, lower, upper, i, value, out):
    """Starting point [n_pars] of an impact refit with parameter ``i`` fixed at ``value``.

    The best fit moved along the covariance column of ``i`` (the conditional mean of the
    Gaussian approximation, ``best + cov[:, i] / cov[i, i] * (value - best[i])``) for free
    parameters strictly inside their bounds, clipped to the bounds; parameters at a bound or
    fixed stay at the best fit.  Newton then starts about one iteration from the optimum.
    """
    n = best.shape[0]
    cii = cov[i, i]
    delta = value - best[i]
    for a in range(n):
        v = best[a]
        if a != i and not fixed[a] and cii > 0.0 and lower[a] < v < upper[a]:
            s = cov[a, i] / cii
            if np.isfinite(s):
                v = min(max(v + s * delta, lower[a]), upper[a])
        out[a] = v
    out[i] = value


@jit
def ranking_fits(
    do_fit, init, fixed, lower, upper, poi, data, fbuf, ibuf, max_iter, tol, prior,
    centre, best, unc, cov, order, out,
):  # fmt: skip
    """Nominal fit and every impact refit of a ranking, sorted by decreasing total impact.

    When ``do_fit`` the nominal fit (as ``histgym.fit.fit``: best fit, covariance of the free
    parameters and uncertainties) is written to ``best``/``unc`` [n_pars] and ``cov``
    [n_pars, n_pars]; otherwise they are inputs.  Ranked are the floating parameters other
    than the POI.  For each, the refits fix it at best +- ``prior`` and best +- ``unc``
    (skipped, impact 0, when the value equals the best fit), as ``minimize``.

    Each refit starts at :func:`refit_start` (as the batched Python path: the same results to
    the bit).

    Outputs (first ``r`` entries, in ranking order): ``order`` int64 [n_pars] (parameter
    indices) and ``out`` [7, n_pars], rows ``R_*``: POI shifts (prefit up, prefit down, postfit
    up, postfit down), pull, constraint, total = |postfit up| + |postfit down|.

    Returns:
        (r, all fits converged).
    """
    n = init.shape[0]
    g = np.empty(n)
    h = np.empty((n, n))
    x = np.empty(n)
    x2 = np.empty(n)
    ok = True
    if do_fit:
        corr = np.empty((n, n))
        status, _, _, _ = fit_with_covariance(
            init, data, fbuf, ibuf, fixed, lower, upper, max_iter, tol, best, cov, unc, corr
        )
        ok = status == CONVERGED
    idx = np.empty(n, dtype=np.int64)
    r = 0
    for i in range(n):
        if i != poi and not fixed[i]:
            idx[r] = i
            r += 1
    imp = np.zeros((r, 4))
    vals = np.empty(4)
    p0 = np.empty(n)
    mask = fixed.copy()
    for j in range(r):
        i = idx[j]
        vals[0] = best[i] + prior[i]
        vals[1] = best[i] - prior[i]
        vals[2] = best[i] + unc[i]
        vals[3] = best[i] - unc[i]
        mask[i] = True
        for k in range(4):
            if vals[k] == best[i]:
                continue
            refit_start(best, cov, fixed, lower, upper, i, vals[k], p0)
            st, _, _, _ = minimize_into(
                p0, data, fbuf, ibuf, mask, lower, upper, max_iter, tol, x, g, h, x2
            )
            ok = ok and st == CONVERGED
            imp[j, k] = x[poi] - best[poi]
        mask[i] = fixed[i]
    tot = np.empty(r)
    neg = np.empty(r)
    for j in range(r):
        tot[j] = abs(imp[j, 2]) + abs(imp[j, 3])
        neg[j] = -tot[j]
    srt = np.argsort(neg, kind="mergesort")
    for a in range(r):
        j = srt[a]
        i = idx[j]
        order[a] = i
        for k in range(4):
            out[k, a] = imp[j, k]
        pr = prior[i]
        if pr > 0.0:
            out[R_PULL, a] = (best[i] - centre[i]) / pr
            out[R_CONSTRAINT, a] = unc[i] / pr
        else:
            out[R_PULL, a] = 0.0
            out[R_CONSTRAINT, a] = unc[i]
        out[R_TOTAL, a] = tot[j]
    return r, ok
