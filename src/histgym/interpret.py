"""Inference layer: nuisance-parameter ranking (impacts on the POI), cabinetry's definitions.

For every floating parameter other than the POI (cabinetry's ``fit.ranking``):

* post-fit impact: the POI shift when the parameter is fixed at best fit +- its post-fit
  uncertainty and every other parameter is refitted;
* pre-fit impact: the same with the prior width instead (0 for free-floating parameters,
  normfactor/shapefactor, whose prior width is 0 in cabinetry);
* ``pull`` = (best fit - prior centre) / prior width, ``constraint`` = post-fit uncertainty /
  prior width (pull 0 and constraint = post-fit uncertainty for free-floating parameters).

Prior centre is pyhf's suggested init and prior width pyhf's parameter-set ``width()`` (1 for
normsys/histosys/lumi in units of sigma, the relative uncertainty for staterror,
``1/sqrt(tau)`` for shapesys).  All refits run batched in one parallel kernel call.
The key names of :func:`rank_impact` are those of ``nextstat.interpret.rank_impact``.
"""

from __future__ import annotations

import weakref
from typing import Any

import numpy as np

from ._kernels.inference import ranking_fits, refit_start
from ._kernels.newton import CONVERGED, newton_fit_batch
from .checks import check_int
from .errors import InvalidParameters, UnknownName, did_you_mean
from .fit import FitResult, FixedLike, fit
from .infer.results import RankingResult
from .infer.teststats import MAX_ITER, TOL, FitSetup, minimize, setup
from .model import FloatArray, Model

__all__ = ["ranking", "rank_impact", "prior_widths"]

SORT_KEYS = ("total", "up", "down", "pull", "name")


def prior_widths(model: Model) -> FloatArray:
    """Prior width of every parameter (float64 [n_params]; 0 for unconstrained or fixed).

    As cabinetry's ``model_utils.prefit_uncertainties``.
    """
    cached = _PRIOR_WIDTHS.get(model)
    if cached is None:
        cached = _PRIOR_WIDTHS[model] = _prior_widths(model)
    return cached.copy()


#: prior widths per model (a Model is immutable; its pyhf model is slow to query)
_PRIOR_WIDTHS: weakref.WeakKeyDictionary[Model, FloatArray] = weakref.WeakKeyDictionary()


def _prior_widths(model: Model) -> FloatArray:
    pm = model.pyhf_model
    out = np.zeros(model.n_params)
    fixed = model.suggested_fixed()
    for name in pm.config.par_order:
        ps = pm.config.param_set(name)
        sl = model.par_slice(name)
        if getattr(ps, "constrained", False):
            out[sl] = np.asarray(ps.width(), dtype=np.float64)
    out[fixed] = 0.0
    return out


def ranking(
    model: Model, data: Any = None, *, fit_result: FitResult | None = None, init: Any = None,
    bounds: Any = None, fixed: FixedLike = None,
) -> RankingResult:  # fmt: skip
    """Pre- and post-fit impacts of every floating nuisance parameter on the POI.

    Args:
        model: the model.
        data: float64 [n_data]; defaults to the observed data.
        fit_result: the nominal fit; defaults to a new :func:`histgym.fit`.
        init, bounds, fixed: fit configuration; default to pyhf's suggested ones.

    Returns:
        A :class:`RankingResult` sorted by decreasing ``total_impact``.

    Raises:
        InvalidParameters: the model has no POI or the POI is fixed.

    Example:
        >>> import histgym
        >>> from histgym.interpret import ranking
        >>> r = ranking(histgym.from_pyhf(histgym.example_workspace()))
        >>> r.names
        ['bkg_norm']
    """
    s = setup(model, init, bounds, fixed)
    d = model.check_data(data)
    if model.n_params <= SERIAL_MAX_PARAMS:
        return _ranking_serial(model, s, d, fit_result)
    return _ranking_batched(model, s, d, fit_result)


#: Up to this many parameters the nominal fit and every refit run in one serial kernel call
#: (:func:`histgym._kernels.inference.ranking_fits`); larger models refit in parallel.
SERIAL_MAX_PARAMS = 16


def _ranking_serial(
    model: Model, s: FitSetup, d: FloatArray, fit_result: FitResult | None
) -> RankingResult:
    """:func:`ranking` with all fits in one compiled call (small models); the same results
    as :func:`_ranking_batched` (see :func:`histgym._kernels.inference.ranking_fits`)."""
    n = model.n_params
    prior = _PRIOR_WIDTHS.get(model)  # read only; fixed parameters are not ranked
    if prior is None:
        prior = prior_widths(model)
    if fit_result is None:
        best = np.empty(n)
        unc = np.empty(n)
        cov = np.empty((n, n))
    else:
        best = np.array(fit_result.bestfit, dtype=np.float64)
        unc = np.array(fit_result.uncertainty, dtype=np.float64)
        cov = np.array(fit_result.covariance, dtype=np.float64)
    out = np.empty((7, n))  # impacts [4], pull, constraint, total
    order = np.empty(n, dtype=np.int64)
    r, ok = ranking_fits(
        fit_result is None, s.init, s.fixed, s.lower, s.upper, s.poi, d,
        model.fbuf, model.ibuf, MAX_ITER, TOL, prior, model._init, best, unc, cov, order, out,
    )  # fmt: skip
    if fit_result is not None:
        ok = ok and bool(fit_result.converged)
    o = order[:r]
    names = model.parameter_names
    return RankingResult(
        names=[names[i] for i in o.tolist()],
        bestfit=best[o],
        uncertainty=unc[o],
        prefit_up=out[0, :r],
        prefit_down=out[1, :r],
        postfit_up=out[2, :r],
        postfit_down=out[3, :r],
        pull=out[4, :r],
        constraint=out[5, :r],
        total_impact=out[6, :r],
        poi_bestfit=float(best[s.poi]),
        converged=bool(ok),
    )


def _ranking_batched(
    model: Model, s: FitSetup, d: FloatArray, fit_result: FitResult | None
) -> RankingResult:
    """:func:`ranking` with the refits in one parallel batched kernel call (large models)."""
    if fit_result is None:
        fit_result = fit(
            model, d, init=s.init, fixed=s.fixed, bounds=np.stack([s.lower, s.upper], 1), warn=False
        )
    best = fit_result.bestfit
    unc = fit_result.uncertainty
    cov = np.ascontiguousarray(fit_result.covariance, dtype=np.float64)
    prior = prior_widths(model)
    prior[s.fixed] = 0.0
    centre = model.suggested_init()
    idx = [i for i in range(model.n_params) if i != s.poi and not s.fixed[i]]
    n_par = model.n_params
    rows_p, rows_f, where = [], [], []
    for j, i in enumerate(idx):
        for k, val in enumerate(
            (best[i] + prior[i], best[i] - prior[i], best[i] + unc[i], best[i] - unc[i])
        ):
            if val == best[i]:
                continue
            p0 = np.empty(n_par)
            refit_start(best, cov, s.fixed, s.lower, s.upper, i, float(val), p0)
            m = s.fixed.copy()
            m[i] = True
            rows_p.append(p0)
            rows_f.append(m)
            where.append((j, k))
    impacts = np.zeros((len(idx), 4))
    ok = bool(fit_result.converged)
    if rows_p:
        n = len(rows_p)
        pars0 = np.ascontiguousarray(rows_p)
        fx = np.ascontiguousarray(rows_f)
        x = np.empty((n, n_par))
        st = np.empty(n, dtype=np.int64)
        fv = np.empty(n)
        it = np.empty(n, dtype=np.int64)
        data_b = np.broadcast_to(d, (n, d.size))
        fb = np.broadcast_to(model.fbuf, (n, model.fbuf.size))
        newton_fit_batch(
            pars0, data_b, fb, model.ibuf, fx, s.lower, s.upper, 200, 1e-10, x, st, fv, it
        )
        for r in np.flatnonzero(st != CONVERGED):
            m = minimize(s, d, pars0[r], fx[r])
            x[r] = m.x
            ok = ok and m.converged
        for r, (j, k) in enumerate(where):
            impacts[j, k] = x[r, s.poi] - best[s.poi]
    names = [model.parameter_names[i] for i in idx]
    ii = np.array(idx, dtype=np.int64)
    pr = prior[ii]
    with np.errstate(divide="ignore", invalid="ignore"):
        pull = np.where(pr > 0, (best[ii] - centre[ii]) / np.where(pr > 0, pr, 1.0), 0.0)
        constraint = np.where(pr > 0, unc[ii] / np.where(pr > 0, pr, 1.0), unc[ii])
    total = np.abs(impacts[:, 2]) + np.abs(impacts[:, 3])
    order = np.argsort(-total, kind="stable")
    return RankingResult(
        names=[names[o] for o in order],
        bestfit=best[ii][order],
        uncertainty=unc[ii][order],
        prefit_up=impacts[order, 0],
        prefit_down=impacts[order, 1],
        postfit_up=impacts[order, 2],
        postfit_down=impacts[order, 3],
        pull=pull[order],
        constraint=constraint[order],
        total_impact=total[order],
        poi_bestfit=float(best[s.poi]),
        converged=ok,
    )


def rank_impact(
    model: Model, top_n: int | None = None, data: Any = None, *, sort_by: str = "total",
    ascending: bool = False, gpu: bool = False, **kwargs: Any,
) -> list[dict[str, Any]]:  # fmt: skip
    """Impact ranking as a list of dicts (``nextstat.interpret.rank_impact``'s keys).

    Args:
        model: the model.
        top_n: keep only the first ``top_n`` entries, defaults to None (all).
        data: float64 [n_data]; defaults to the observed data.
        sort_by: ``"total"`` (default, |up| + |down| post-fit), ``"up"``, ``"down"``,
            ``"pull"`` or ``"name"``.
        ascending: sort ascending, defaults to False.
        gpu: accepted for compatibility with nextstat; must be False (histgym runs on CPU).
        **kwargs: passed to :func:`ranking` (``init``, ``bounds``, ``fixed``, ``fit_result``).

    Returns:
        Dicts with ``rank`` (1 = highest), ``name``, ``delta_mu_up``, ``delta_mu_down``
        (post-fit), ``total_impact``, ``pull``, ``constraint``, ``prefit_delta_mu_up``,
        ``prefit_delta_mu_down``, ``bestfit``, ``uncertainty``.

    Example:
        >>> import histgym
        >>> from histgym.interpret import rank_impact
        >>> rows = rank_impact(histgym.from_pyhf(histgym.example_workspace()), top_n=1)
        >>> rows[0]["rank"], rows[0]["name"]
        (1, 'bkg_norm')
    """
    if sort_by not in SORT_KEYS:
        raise UnknownName(
            f"unknown sort_by {sort_by!r}; choose one of {list(SORT_KEYS)}."
            + did_you_mean(sort_by, SORT_KEYS)
        )
    if gpu:
        raise InvalidParameters("histgym has no GPU ranking; use gpu=False")
    if top_n is not None:
        top_n = check_int("top_n", top_n, low=0)
    r = ranking(model, data, **kwargs)
    rows = [
        {
            "name": r.names[i],
            "delta_mu_up": float(r.postfit_up[i]),
            "delta_mu_down": float(r.postfit_down[i]),
            "total_impact": float(r.total_impact[i]),
            "pull": float(r.pull[i]),
            "constraint": float(r.constraint[i]),
            "prefit_delta_mu_up": float(r.prefit_up[i]),
            "prefit_delta_mu_down": float(r.prefit_down[i]),
            "bestfit": float(r.bestfit[i]),
            "uncertainty": float(r.uncertainty[i]),
        }
        for i in range(len(r.names))
    ]
    keys: dict[str, Any] = {
        "total": lambda e: e["total_impact"],
        "up": lambda e: abs(e["delta_mu_up"]),
        "down": lambda e: abs(e["delta_mu_down"]),
        "pull": lambda e: abs(e["pull"]),
        "name": lambda e: e["name"],
    }
    rows.sort(key=keys[sort_by], reverse=(not ascending) if sort_by != "name" else ascending)
    if top_n is not None:
        rows = rows[: int(top_n)]
    return [{"rank": i + 1, **row} for i, row in enumerate(rows)]
