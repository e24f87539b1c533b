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
from .likelihood import LOG_2PI, expected_main, poisson_twice, twice_nll
from .newton import CONVERGED, fit_with_covariance, newton_fit

#: ``twice_nll`` reported for a fit that is not finite anywhere (as the Python layer).
FMAX = float(np.finfo(np.float64).max)

#: Rows of the Asymptotic-calculator fit state ``xs`` [4, n_pars], ``fs``, ``sts``, ``its``,
#: ``edms`` [4] (see :func:`tmu_like_fits`).
S_FREE = 0  # free fit to the data
S_FREE_A = 1  # free fit to the Asimov data
S_ASIMOV = 2  # POI-fixed fit that builds the Asimov data
S_FIX = 3  # the POI-fixed fit of the last evaluation

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


#: ``twice_nll`` differences below ``QTOL * (1 + |twice_nll|)`` are round-off (a test statistic
#: q < 0 beyond it means the free fit is not at the global minimum).
QTOL = 1e-9

#: Steps of the POI continuation of the global safeguard (see :func:`safeguard_fixed`).
N_CONTINUATION = 4


@jit
def _start_point(src, poi, mu, fixed, lower, upper, out):
    """``out`` = ``src`` with the POI at ``mu`` (``poi < 0``: unchanged) and the free
    parameters clipped into their bounds (:func:`_start_value` without the twice_nll)."""
    for i in range(src.shape[0]):
        v = src[i]
        if not fixed[i]:
            v = min(max(v, lower[i]), upper[i])
        out[i] = v
    if poi >= 0:
        out[poi] = mu


@jit
def _start_value(src, poi, mu, fixed, lower, upper, out, data, fbuf, ibuf):
    """``out`` = ``src`` with the POI at ``mu`` (``poi < 0``: unchanged) and the free
    parameters clipped into their bounds, as :func:`newton_fit` starts; returns its twice_nll
    (+inf where not finite)."""
    _start_point(src, poi, mu, fixed, lower, upper, out)
    if not np.all(np.isfinite(out)):
        return np.inf
    f = twice_nll(out, data, fbuf, ibuf)
    return f if np.isfinite(f) else np.inf


@jit
def _better(f_new, st_new, f_old, st_old):
    """Whether a fit result (f_new, st_new) replaces (f_old, st_old): lower beyond round-off,
    or equal within round-off and converged where the old one was not."""
    if not np.isfinite(f_new) or f_new >= FMAX:
        return False
    if not np.isfinite(f_old) or f_old >= FMAX:
        return True
    eps = QTOL * (1.0 + abs(f_old))
    if f_new < f_old - eps:
        return True
    return abs(f_new - f_old) <= eps and st_new == CONVERGED and st_old != CONVERGED


@jit
def _seen(starts, j, poi):
    """Whether candidate ``j`` equals an earlier one (ignoring the POI when ``poi >= 0``: it
    is set to the same value in both), so its start was already evaluated or fitted."""
    n = starts.shape[1]
    for i in range(j):
        same = True
        for p in range(n):
            if p != poi and starts[i, p] != starts[j, p]:
                same = False
                break
        if same:
            return True
    return False


@jit
def minimize_best(
    starts, k, poi, mu, data, fbuf, ibuf, fixed, lower, upper, max_iter, tol, x, g, h, x2, x0
):  # fmt: skip
    """One fit (:func:`minimize_into`) from ``starts[0]``, never worse than ``starts[1:k]``.

    Candidate ``j`` is ``starts[j]`` with the POI set to ``mu`` (when ``poi >= 0``) and free
    parameters clipped into the bounds.  The fit starts at candidate 0 (the primary start:
    pyhf's, or the generating point of Asimov data); each other candidate whose twice_nll is
    below the result (the fit stopped above a point it could have started from: a local
    minimum) is fitted too, and the lowest result is kept (:func:`_better`).  Newton only
    descends, so the result is never worse than any candidate; when no other candidate is
    lower, the cost is one twice_nll per candidate (none for a candidate equal to an earlier
    one).  ``x0`` [n_pars] is scratch.

    Returns:
        (status, twice_nll, iterations, edm, number of fits run).
    """
    n = x.shape[0]
    _start_point(starts[0], poi, mu, fixed, lower, upper, x0)
    status, f, it, edm = minimize_into(
        x0, data, fbuf, ibuf, fixed, lower, upper, max_iter, tol, x, g, h, x2
    )
    n_fits = 1
    xt = np.empty(0)
    for j in range(1, k):
        if _seen(starts, j, poi):
            continue
        v = _start_value(starts[j], poi, mu, fixed, lower, upper, x0, data, fbuf, ibuf)
        if v < f - QTOL * (1.0 + abs(f)):
            if xt.shape[0] == 0:
                xt = np.empty(n)
            s2, f2, it2, edm2 = minimize_into(
                x0, data, fbuf, ibuf, fixed, lower, upper, max_iter, tol, xt, g, h, x2
            )
            n_fits += 1
            if _better(f2, s2, f, status):
                for i in range(n):
                    x[i] = xt[i]
                status, f, it, edm = s2, f2, it2, edm2
    return status, f, it, edm, n_fits


@jit
def safeguard_fixed(
    starts, k, poi, mu, mu_from, data, fbuf, ibuf, fixed, lower, upper, max_iter, tol,
    x, f, st, it, edm, g, h, x2, x0, xt,
):  # fmt: skip
    """Global safeguard of a POI-fixed fit: refit from every candidate start and along a POI
    continuation; keep the best.

    ``x`` [n_pars], with value ``f``, status ``st``, ``it`` iterations and ``edm``, is the fit so
    far (updated in place).
    Each of the ``k`` candidate starts (POI set to ``mu``) is fitted; then, from ``starts[0]``
    with the POI at ``mu_from`` (the free fit's POI), the POI is moved to ``mu`` in
    :data:`N_CONTINUATION` steps, each fit started at the previous optimum.  A result replaces
    the current one when :func:`_better`.  Deterministic; costs ``k + N_CONTINUATION`` fits.

    Returns:
        (twice_nll, status, iterations, edm) of the kept fit.
    """
    n = x.shape[0]
    for j in range(k):
        _start_value(starts[j], poi, mu, fixed, lower, upper, x0, data, fbuf, ibuf)
        s2, f2, it2, edm2 = minimize_into(
            x0, data, fbuf, ibuf, fixed, lower, upper, max_iter, tol, xt, g, h, x2
        )
        if _better(f2, s2, f, st):
            for i in range(n):
                x[i] = xt[i]
            f, st, it, edm = f2, s2, it2, edm2
    if np.isfinite(mu_from) and mu_from != mu:
        s2, f2, it2, edm2 = st, f, it, edm
        for i in range(n):
            x0[i] = starts[0, i]
        for step in range(1, N_CONTINUATION + 1):
            m = mu_from + (mu - mu_from) * step / N_CONTINUATION
            _start_value(x0, poi, m, fixed, lower, upper, x0, data, fbuf, ibuf)
            s2, f2, it2, edm2 = minimize_into(
                x0, data, fbuf, ibuf, fixed, lower, upper, max_iter, tol, xt, g, h, x2
            )
            for i in range(n):
                x0[i] = xt[i]
        if _better(f2, s2, f, st):
            for i in range(n):
                x[i] = xt[i]
            f, st, it, edm = f2, s2, it2, edm2
    return f, st, it, edm


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
def saturated_twice_nll(data, fbuf, ibuf):
    """Lower bound of ``twice_nll(pars, data)`` over all ``pars``: every Poisson term at its
    minimum (expectation = count) and every Gaussian constraint at its centre.

    A fit whose twice_nll reaches it (within round-off) is at a global minimum: no other
    start can do better.  Costs about one ``twice_nll`` without the yields.
    """
    m = unpack(fbuf, ibuf)
    nb = m.n_bins
    total = 0.0
    for b in range(nb):
        total += poisson_twice(data[b], data[b])
    for k in range(m.gauss_par.shape[0]):
        total += 2.0 * np.log(m.gauss_sigma[k]) + LOG_2PI
    for k in range(m.pois_par.shape[0]):
        a = data[nb + m.pois_aux[k]]
        total += poisson_twice(a, a)
    return total


@jit
def _is_global(f, st, data, fbuf, ibuf):
    """Whether a converged fit with twice_nll ``f`` is provably at the global minimum: ``f``
    within round-off (:data:`QTOL`, as :func:`_better`) of :func:`saturated_twice_nll`, so no
    start could find a point that :func:`_better` would keep (e.g. data equal to the
    expectation at the fitted point: Asimov data)."""
    if st != CONVERGED or not np.isfinite(f) or f >= FMAX:
        return False
    return f - saturated_twice_nll(data, fbuf, ibuf) <= QTOL * (1.0 + abs(f))


@jit
def _inside(x, fixed, lower, upper):
    """Whether every free parameter of ``x`` is within its bounds."""
    for i in range(x.shape[0]):
        if not fixed[i] and not lower[i] <= x[i] <= upper[i]:
            return False
    return True


@jit
def _candidates(starts, a, b, c, has_c):
    """Rows 0, 1 (and 2 when ``has_c``) of ``starts`` = a, b (, c); returns their number."""
    n = a.shape[0]
    for i in range(n):
        starts[0, i] = a[i]
        starts[1, i] = b[i]
    if not has_c:
        return 2
    for i in range(n):
        starts[2, i] = c[i]
    return 3


@jit
def _store(xs, fs, sts, its, edms, row, x, f, st, it, edm):
    for i in range(x.shape[0]):
        xs[row, i] = x[i]
    fs[row] = f
    sts[row] = st
    its[row] = it
    edms[row] = edm


@jit
def safeguard_free(
    starts, k, data, fbuf, ibuf, fixed, lower, upper, max_iter, tol, xs, fs, sts, its, edms,
    row, g, h, x2, xt,
):  # fmt: skip
    """Global safeguard of a free fit: refit from each of the ``k`` candidate starts and keep
    the best in row ``row`` of the fit state (see :func:`_better`)."""
    for j in range(k):
        s2, f2, it2, edm2 = minimize_into(
            starts[j], data, fbuf, ibuf, fixed, lower, upper, max_iter, tol, xt, g, h, x2
        )
        if _better(f2, s2, fs[row], sts[row]):
            _store(xs, fs, sts, its, edms, row, xt, f2, s2, it2, edm2)


@jit
def tmu_like_fits(
    mu, init, fixed, lower, upper, poi, data, gen, has_gen, fbuf, ibuf, max_iter, tol,
    xs, fs, sts, its, edms, row, frow,
):  # fmt: skip
    """t_mu = twice_nll(POI-fixed fit at ``mu``) - twice_nll(free fit), both guarded against
    local minima.

    Fit state: rows of ``xs`` [rows, n_pars] (optimum), ``fs`` (twice_nll), ``sts`` (status),
    ``its`` (iterations), ``edms``.  Row ``row`` holds the free fit to ``data`` (input, improved
    in place); the POI-fixed fit is written to row ``frow``.

    1. The POI-fixed fit starts at ``init`` (pyhf's start) with the POI at ``mu``; it is never
       worse than the free fit nor, when ``has_gen``, ``gen`` (the parameters that generated
       Asimov ``data``), each with the POI at ``mu`` (:func:`minimize_best`).
    2. When the free fit is above the POI-fixed one (t < 0) it is refitted from the POI-fixed
       optimum and replaced if lower.
    3. Global safeguard, only when t < 0 beyond round-off (:data:`QTOL`) or a fit did not
       converge: the POI-fixed fit is redone from every candidate and along a POI continuation
       from the free fit (:func:`safeguard_fixed`), the free fit from ``init``, the POI-fixed
       optimum (and ``gen``) (:func:`safeguard_free`); the best of each is kept.

    Returns:
        t_mu clipped below at 0.
    """
    return _tmu_like_fits(
        mu, init, lower, upper, poi, data, gen, has_gen, fbuf, ibuf, max_iter, tol,
        xs, fs, sts, its, edms, row, frow, _tmu_work(fixed, poi),
    )  # fmt: skip


@jit
def _tmu_work(fixed, poi):
    """Work arrays of :func:`_tmu_like_fits` (one allocation per calculator call, reused by
    its fits): fixed, fixed with the POI, g, h, x2, x0, xt [n_pars] ([n, n] for h), starts
    [3, n_pars]."""
    n = fixed.shape[0]
    fixed_poi = fixed.copy()
    fixed_poi[poi] = True
    return (fixed, fixed_poi, np.empty(n), np.empty((n, n)), np.empty(n), np.empty(n),
            np.empty(n), np.empty((3, n)))  # fmt: skip


@jit
def _tmu_like_fits(
    mu, init, lower, upper, poi, data, gen, has_gen, fbuf, ibuf, max_iter, tol,
    xs, fs, sts, its, edms, row, frow, ws,
):  # fmt: skip
    """:func:`tmu_like_fits` with its work arrays ``ws`` from :func:`_tmu_work`."""
    fixed, fixed_poi, g, h, x2, x0, xt, starts = ws
    # pyhf's start first (measured on random multi-minimum models, the generating point is a
    # worse primary start for POI-fixed Asimov fits than pyhf's; it is a candidate)
    k = _candidates(starts, init, xs[row], gen, has_gen)
    st, f, it, edm, _ = minimize_best(
        starts, k, poi, mu, data, fbuf, ibuf, fixed_poi, lower, upper, max_iter, tol, xt, g, h,
        x2, x0,
    )  # fmt: skip
    _store(xs, fs, sts, its, edms, frow, xt, f, st, it, edm)
    trigger = st != CONVERGED or sts[row] != CONVERGED
    if fs[row] > f:
        if fs[row] - f > QTOL * (1.0 + abs(f)):
            trigger = True
        st_a, f_a, it_a, edm_a = minimize_into(
            xs[frow], data, fbuf, ibuf, fixed, lower, upper, max_iter, tol, xt, g, h, x2
        )
        if f_a < fs[row]:
            _store(xs, fs, sts, its, edms, row, xt, f_a, st_a, it_a, edm_a)
    if trigger:
        k = _candidates(starts, xs[row], init, gen, has_gen)  # the free fit first: continuation
        f, st, it, edm = safeguard_fixed(
            starts, k, poi, mu, xs[row, poi], data, fbuf, ibuf, fixed_poi, lower, upper,
            max_iter, tol, xs[frow], fs[frow], sts[frow], its[frow], edms[frow], g, h, x2, x0, xt,
        )  # fmt: skip
        fs[frow] = f
        sts[frow] = st
        its[frow] = it
        edms[frow] = edm
        k = _candidates(starts, init, xs[frow], gen, has_gen)
        safeguard_free(
            starts, k, data, fbuf, ibuf, fixed, lower, upper, max_iter, tol, xs, fs, sts, its,
            edms, row, g, h, x2, xt,
        )  # fmt: skip
    d = fs[frow] - fs[row]
    return 0.0 if 0.0 > d else d


@jit
def tmu_like_pair(
    mu, init, fixed, lower, upper, poi, data, fbuf, ibuf, max_iter, tol, do_free, xs, res
):  # fmt: skip
    """t_mu of :func:`tmu_like_fits` in one call, free fit included.

    Row 0 of ``xs`` [2, n_pars] is the free fit: fitted from ``init`` when ``do_free``, else
    an input with its (twice_nll, status, iterations, edm) in ``res[0]``; the guarded
    POI-fixed fit goes to row 1.  ``res`` [2, 4]: twice_nll, status, iterations, edm of each
    row on return (row 0 improved in place when a restart found a lower free fit).

    Returns:
        t_mu clipped below at 0.
    """
    n = init.shape[0]
    fs = np.empty(2)
    sts = np.empty(2, dtype=np.int64)
    its = np.empty(2, dtype=np.int64)
    edms = np.empty(2)
    if do_free:
        st, f, it, edm = minimize_into(
            init, data, fbuf, ibuf, fixed, lower, upper, max_iter, tol, xs[0], np.empty(n),
            np.empty((n, n)), np.empty(n),
        )  # fmt: skip
        fs[0], sts[0], its[0], edms[0] = f, st, it, edm
    else:
        fs[0], sts[0], its[0], edms[0] = res[0, 0], int(res[0, 1]), int(res[0, 2]), res[0, 3]
    t = tmu_like_fits(
        mu, init, fixed, lower, upper, poi, data, init, False, fbuf, ibuf, max_iter, tol,
        xs, fs, sts, its, edms, 0, 1,
    )  # fmt: skip
    for r in range(2):
        res[r, 0] = fs[r]
        res[r, 1] = sts[r]
        res[r, 2] = its[r]
        res[r, 3] = edms[r]
    return t


@jit
def _clip(t, poi_hat, mu, is_q0):
    """0 for q0 when mu_hat < 0, for q_mu when mu_hat > mu (pyhf's one-sided statistics)."""
    if is_q0:
        return 0.0 if poi_hat < 0.0 else t
    return 0.0 if poi_hat > mu else t


@jit
def prepare_asimov(
    init, fixed, lower, upper, data, fbuf, ibuf, max_iter, tol, asimov, xs, fs, sts, its, edms,
    g, h, x2, x0,
):  # fmt: skip
    """The preparation of :func:`asymptotic_eval` after its free fit (row ``S_FREE``) and the
    POI-fixed fit that generates the Asimov data (row ``S_ASIMOV``): the second start of the
    free fit, the Asimov data (written to ``asimov``) and the free fit to them (row
    ``S_FREE_A``).  ``g``, ``h``, ``x2``, ``x0`` are work arrays ([n], [n, n], [n], [n])."""
    n = init.shape[0]
    # a deterministic second start of the free fit to the data, once per calculator: the
    # POI-fixed optimum at mu_asimov with the POI released (on the other side of the
    # POI range from pyhf's init, it reaches minima that a start at init misses); not
    # when the free fit is provably global (data at their expectation: nothing to gain)
    if not _is_global(fs[S_FREE], sts[S_FREE], data, fbuf, ibuf):
        starts = np.empty((1, n))
        for i in range(n):
            starts[0, i] = xs[S_ASIMOV, i]
        safeguard_free(
            starts, 1, data, fbuf, ibuf, fixed, lower, upper, max_iter, tol, xs, fs, sts,
            its, edms, S_FREE, g, h, x2, x0,
        )  # fmt: skip
    expected_data_into(xs[S_ASIMOV], fbuf, ibuf, asimov)
    # the generating point is the global minimum of the Asimov data (every term at its
    # minimum): no fit needed when it is inside the bounds and reaches the bound
    f = FMAX
    if _inside(xs[S_ASIMOV], fixed, lower, upper):
        f = twice_nll(xs[S_ASIMOV], asimov, fbuf, ibuf)
    if _is_global(f, CONVERGED, asimov, fbuf, ibuf):
        for i in range(n):
            xs[S_FREE_A, i] = xs[S_ASIMOV, i]
        st, it, edm = CONVERGED, 0, 0.0
    else:
        starts = np.empty((2, n))
        _candidates(starts, xs[S_ASIMOV], init, init, False)
        st, f, it, edm, _ = minimize_best(
            starts, 2, -1, 0.0, asimov, fbuf, ibuf, fixed, lower, upper, max_iter, tol,
            xs[S_FREE_A], g, h, x2, x0,
        )  # fmt: skip
    fs[S_FREE_A] = f
    sts[S_FREE_A] = st
    its[S_FREE_A] = it
    edms[S_FREE_A] = edm


@jit
def asymptotic_eval(
    mu, mu_asimov, is_q0, mode, init, fixed, lower, upper, poi, data, fbuf, ibuf,
    max_iter, tol, asimov, xs, fs, sts, its, edms, out,
):  # fmt: skip
    """The fits of ``AsymptoticCalculator.test_statistics`` (and of its preparation).

    State (updated in place; rows ``S_*`` of ``xs`` [4, n_pars], ``fs``, ``sts``, ``its``,
    ``edms`` [4], see :func:`tmu_like_fits`): ``sts[S_ASIMOV] < 0`` means "not prepared yet":
    then the free fit to ``data`` (from ``init``, as pyhf), the POI-fixed fit at ``mu_asimov``
    that builds the Asimov data (written to ``asimov``; guarded as the POI-fixed fit of
    ``t(mu_asimov)``, so it can also improve the free fit) and the free fit to the Asimov data
    are run first.  The free Asimov fit is the generating point, its exact minimum (every
    Poisson and constraint term is minimal there; checked against
    :func:`saturated_twice_nll`, else fitted from there, or from ``init`` if lower).  The
    second start of the free fit (from the Asimov-generating optimum) is skipped when the
    first is provably global (:func:`_is_global`).
    Then, by ``mode``: ``M_PREPARE`` nothing more; ``M_ASIMOV`` the test statistic at ``mu`` on
    the Asimov data; ``M_BOTH`` on the Asimov data and on ``data``; the POI-fixed fits go to
    row ``S_FIX``.  Free fits improved by a restart replace the stored ones.

    Writes ``out[O_Q]`` (observed q, 0 unless ``M_BOTH``), ``out[O_QA]`` (Asimov q, 0 for
    ``M_PREPARE``) and ``out[O_OK]`` (1.0 when every fit of the evaluation and the Asimov fit
    converged).
    """
    n = init.shape[0]
    ws = _tmu_work(fixed, poi)
    if sts[S_ASIMOV] < 0:
        g, h, x2, x0 = ws[2], ws[3], ws[4], ws[5]
        st, f, it, edm = minimize_into(
            init, data, fbuf, ibuf, fixed, lower, upper, max_iter, tol, xs[S_FREE], g, h, x2
        )
        fs[S_FREE] = f
        sts[S_FREE] = st
        its[S_FREE] = it
        edms[S_FREE] = edm
        _tmu_like_fits(
            mu_asimov, init, lower, upper, poi, data, init, False, fbuf, ibuf, max_iter,
            tol, xs, fs, sts, its, edms, S_FREE, S_ASIMOV, ws,
        )  # fmt: skip
        prepare_asimov(
            init, fixed, lower, upper, data, fbuf, ibuf, max_iter, tol, asimov, xs, fs, sts,
            its, edms, g, h, x2, x0,
        )  # fmt: skip
    if mode == M_PREPARE:
        out[O_Q] = 0.0
        out[O_QA] = 0.0
        out[O_OK] = 1.0 if sts[S_ASIMOV] == CONVERGED else 0.0
        return
    ok = sts[S_ASIMOV] == CONVERGED
    q = 0.0
    if mode == M_BOTH:
        t = _tmu_like_fits(
            mu, init, lower, upper, poi, data, init, False, fbuf, ibuf, max_iter, tol,
            xs, fs, sts, its, edms, S_FREE, S_FIX, ws,
        )  # fmt: skip
        q = _clip(t, xs[S_FREE, poi], mu, is_q0)
        ok = ok and sts[S_FIX] == CONVERGED and sts[S_FREE] == CONVERGED
    ta = _tmu_like_fits(
        mu, init, lower, upper, poi, asimov, xs[S_ASIMOV], True, fbuf, ibuf, max_iter,
        tol, xs, fs, sts, its, edms, S_FREE_A, S_FIX, ws,
    )  # fmt: skip
    qa = _clip(ta, xs[S_FREE_A, poi], mu, is_q0)
    ok = ok and sts[S_FIX] == CONVERGED and sts[S_FREE_A] == CONVERGED
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
