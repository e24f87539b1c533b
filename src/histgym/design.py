"""Analysis design on events, end to end (top layer): optimise cuts and binning, write the result.

:func:`design` builds an :class:`~histgym.envs.analysis.AnalysisEnv` from an analysis
description (YAML/JSON, see :func:`histgym.events.load_analysis`), runs a baseline optimiser
(CMA-ES by default) with a progress bar, and writes the best analysis: its cuts, bin edges and
metric value (``best_analysis.json``) and its pyhf workspace (``workspace.json``).  This is
``histgym design CONFIG.yaml``.
"""

from __future__ import annotations

import json
import os
from typing import Any

__all__ = ["design", "METHODS"]

METHODS = ("cmaes", "coordinate", "grid", "random")


def design(config: Any = None, *, method: str = "cmaes", metric: str = "z0",
           max_evals: int = 1500, seed: int = 0, output: str | None = "histgym-design",
           progress: bool = True) -> dict[str, Any]:
    """Optimise the analysis of ``config`` and write the best one to ``output``.

    Args:
        config: an analysis description (path, dict or :class:`~histgym.events.Analysis`);
            defaults to the built-in toy search.
        method: ``"cmaes"`` (default), ``"coordinate"`` (greedy coordinate ascent),
            ``"grid"`` (grid over the cuts, equal-width bins) or ``"random"``.
        metric: ``"z0"`` (default), ``"q0"`` or ``"limit"``.
        max_evals: evaluation budget (grid: points per cut are chosen to stay below it).
        seed: seed of the stochastic methods.
        output: directory for ``best_analysis.json`` and ``workspace.json`` (None: no files).
        progress: show a tqdm progress bar on stderr (if tqdm is installed).

    Returns:
        The summary written to ``best_analysis.json`` (plus ``"workspace"``).
    """
    from . import agents
    from .envs.analysis import AnalysisEnv

    if method not in METHODS:
        from .errors import did_you_mean
        from .events.inputs import InvalidAnalysis

        raise InvalidAnalysis(f"unknown method {method!r}; expected one of {list(METHODS)}."
                              + did_you_mean(method, METHODS))
    env = AnalysisEnv(config, reward_metric=metric)
    start = agents.start_analysis(env)
    bar = None
    if progress:
        try:
            from tqdm.auto import tqdm

            bar = tqdm(total=int(max_evals), desc=f"histgym design ({method})", unit="eval",
                       leave=False)
        except ImportError:  # pragma: no cover - tqdm is in the design extra
            bar = None
    evaluate = env.evaluate

    def counted(cuts: Any, edges: Any = None) -> Any:
        r = evaluate(cuts, edges)
        if bar is not None:
            bar.update(1)
        return r

    env.evaluate = counted  # type: ignore[method-assign]
    try:
        if method == "cmaes":
            res = agents.cmaes_analysis(env, max_evals=max_evals, seed=seed)
        elif method == "coordinate":
            res = agents.coordinate_ascent_analysis(env, max_evals=max_evals)
        elif method == "random":
            res = agents.random_analysis_search(env, max(1, int(max_evals) - 1), seed=seed)
        else:
            n_thr = env.core.prep.n_thr
            k = max(2, int(max(1, int(max_evals) - 1) ** (1.0 / max(n_thr, 1))))
            res = agents.grid_scan_cuts(env, k)
    finally:
        env.evaluate = evaluate  # type: ignore[method-assign]
        if bar is not None:
            bar.close()
    ws = env.workspace()
    summary = {
        "method": method,
        "metric": metric,
        "value": res["value"],
        "start_value": start["value"],
        "cuts": dict(zip(env.core.prep.thr_names, [float(c) for c in res["cuts"]])),
        "edges": [float(e) for e in res["edges"]],
        "observable": env.analysis.observable,
        "n_evaluations": res["n_evaluations"],
    }
    if output is not None:
        os.makedirs(output, exist_ok=True)
        with open(os.path.join(output, "best_analysis.json"), "w", encoding="utf-8") as fh:
            json.dump(summary, fh, indent=2)
        with open(os.path.join(output, "workspace.json"), "w", encoding="utf-8") as fh:
            json.dump(ws, fh, indent=2)
    summary["workspace"] = ws
    return summary
