"""Scan layer: training sweeps over hyperparameters and seeds on Ray Tune, searched by Optuna.

Each trial trains PPO with one hyperparameter set proposed by Optuna (``OptunaSearch``,
TPE) for every seed, through :func:`histgym.train.train` (called in one place,
:func:`_train_one`), writes its run folder (the run folder of ``histgym train`` per seed:
``config.json``, ``model.zip``, ``metrics.json``, ...; plus ``summary.json``)
and reports the mean PPO return, the greedy reference return and the random return.  The
result is a table of trials sorted by mean return.  Needs ``pip install "histgym[ray,train]"``.

Example:
    >>> from histgym.scan.sweep import sweep, format_table     # doctest: +SKIP
    >>> rows = sweep(num_samples=8, seeds=(0, 1), timesteps=20_000)  # doctest: +SKIP
    >>> print(format_table(rows))  # doctest: +SKIP
"""

from __future__ import annotations

import json
import math
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from ..errors import InvalidParameters

__all__ = ["DEFAULT_SPACE", "sweep", "format_table"]

#: Optuna search space: name -> ("log", lo, hi) | ("choice", [values]) | ("uniform", lo, hi)
DEFAULT_SPACE: dict[str, tuple[Any, ...]] = {
    "learning_rate": ("log", 1e-4, 3e-3),
    "n_steps": ("choice", [64, 128, 256]),
    "batch_size": ("choice", [32, 64]),
    "gamma": ("uniform", 0.9, 0.999),
    "ent_coef": ("log", 1e-5, 1e-2),
}


def _tune_space(space: Mapping[str, tuple[Any, ...]]) -> dict[str, Any]:
    from ray import tune

    out = {}
    for name, spec in space.items():
        kind = spec[0]
        if kind == "log":
            out[name] = tune.loguniform(spec[1], spec[2])
        elif kind == "uniform":
            out[name] = tune.uniform(spec[1], spec[2])
        elif kind == "choice":
            out[name] = tune.choice(list(spec[1]))
        else:
            raise InvalidParameters(f"unknown search-space kind {kind!r} for {name!r}: use log, uniform or choice")
    return out


def _train_one(config: Mapping[str, Any], seed: int, run_dir: Path) -> dict[str, Any]:
    """The one call of the training function: train, save the agent, write the summary."""
    from ..train import train

    ppo = {k: config[k] for k in ("learning_rate", "n_steps", "batch_size", "gamma", "ent_coef") if k in config}
    run_dir.mkdir(parents=True, exist_ok=True)
    result = train(
        config.get("workspace"),
        env_kwargs=config.get("env_kwargs"),
        algo="ppo",
        total_timesteps=int(config["timesteps"]),
        n_envs=int(config.get("n_envs", 4)),
        seed=int(seed),
        hyperparams=ppo,
        out=run_dir,
        progress=False,
        references=("random", "greedy"),
        figures=False,
    )
    rets = result.metrics["returns"]
    summary = {"returns": {"ppo": rets["trained"], "greedy": rets["greedy"], "random": rets["random"]},
               "run_dir": str(run_dir), "hyperparams": ppo, "seed": int(seed)}
    (run_dir / "summary.json").write_text(json.dumps(summary, indent=1))
    return summary


def _trainable(config: dict[str, Any]) -> None:
    from ray import tune

    trial_dir = Path(tune.get_context().get_trial_dir() or os.getcwd())
    returns, greedy, rand = [], [], []
    for seed in config["seeds"]:
        s = _train_one(config, seed, trial_dir / f"seed_{seed}")
        returns.append(s["returns"]["ppo"])
        greedy.append(s["returns"]["greedy"])
        rand.append(s["returns"]["random"])
    n = len(returns)
    mean = sum(returns) / n
    tune.report(
        {
            "ppo_return": mean,
            "ppo_return_std": math.sqrt(sum((r - mean) ** 2 for r in returns) / n),
            "greedy_return": sum(greedy) / n,
            "random_return": sum(rand) / n,
            "run_dir": str(trial_dir),
        }
    )


def sweep(
    *,
    num_samples: int = 8,
    seeds: Sequence[int] = (0, 1),
    timesteps: int = 20_000,
    space: Mapping[str, tuple[Any, ...]] | None = None,
    workspace: Any = None,
    env_kwargs: Mapping[str, Any] | None = None,
    n_envs: int = 4,
    max_concurrent: int = 2,
    storage: str | os.PathLike | None = None,
    name: str = "histgym_sweep",
    address: str | None = None,
    optuna_seed: int = 0,
) -> list[dict[str, Any]]:
    """PPO hyperparameter sweep on Ray Tune with Optuna; returns the table of trials.

    Args:
        num_samples: trials (hyperparameter sets proposed by Optuna).
        seeds: training seeds per trial (the reported return is their mean).
        timesteps: PPO steps per training run.
        space: search space, defaults to :data:`DEFAULT_SPACE`.
        workspace, env_kwargs, n_envs: as :func:`histgym.train.train` (defaults: the
            built-in example's well-posed task).
        max_concurrent: trials running at once.
        storage: folder of the run folders (``<storage>/<name>/<trial>/seed_<k>/``),
            defaults to ``./sweeps``.
        name: experiment name.
        address: Ray address (``None``: the running Ray or a new local one).
        optuna_seed: seed of Optuna's sampler.

    Returns:
        One dict per trial, best first: the hyperparameters, ``ppo_return`` (mean over
        seeds), ``ppo_return_std``, ``greedy_return``, ``random_return``, ``run_dir``.
    """
    if num_samples < 1 or not seeds or timesteps < 1:
        raise InvalidParameters("num_samples, seeds and timesteps must be positive / non-empty")
    from .execute import require_ray

    ray = require_ray()
    from ray import tune
    from ray.tune.search import ConcurrencyLimiter
    from ray.tune.search.optuna import OptunaSearch

    if not ray.is_initialized():
        ray.init(address=address, include_dashboard=False, log_to_driver=False)
    space = dict(space or DEFAULT_SPACE)
    param_space = _tune_space(space)
    param_space.update(
        {"seeds": list(seeds), "timesteps": int(timesteps), "workspace": workspace,
         "env_kwargs": dict(env_kwargs or {}), "n_envs": int(n_envs)}
    )  # fmt: skip
    import optuna

    search = ConcurrencyLimiter(
        OptunaSearch(metric="ppo_return", mode="max", sampler=optuna.samplers.TPESampler(seed=optuna_seed)),
        max_concurrent=max_concurrent,
    )
    root = Path(storage or "sweeps").resolve()
    tuner = tune.Tuner(
        tune.with_resources(_trainable, {"cpu": 1}),
        param_space=param_space,
        tune_config=tune.TuneConfig(search_alg=search, num_samples=num_samples),
        run_config=tune.RunConfig(name=name, storage_path=str(root), verbose=0),
    )
    results = tuner.fit()
    rows = []
    for r in results:
        if r.metrics is None or "ppo_return" not in r.metrics:
            rows.append({**{k: r.config.get(k) for k in space}, "ppo_return": math.nan, "error": str(r.error)})
            continue
        row = {k: r.config[k] for k in space}
        row.update({k: r.metrics[k] for k in ("ppo_return", "ppo_return_std", "greedy_return", "random_return", "run_dir")})
        rows.append(row)
    rows.sort(key=lambda x: -x["ppo_return"] if not math.isnan(x["ppo_return"]) else math.inf)
    return rows


def format_table(rows: Sequence[Mapping[str, Any]]) -> str:
    """A readable table of :func:`sweep`'s trials."""
    if not rows:
        return "(no trials)"
    keys = [k for k in rows[0] if k not in ("run_dir", "error")]
    cells = [[f"{r.get(k):.4g}" if isinstance(r.get(k), float) else str(r.get(k)) for k in keys] for r in rows]
    widths = [max(len(k), *(len(c[i]) for c in cells)) for i, k in enumerate(keys)]
    lines = ["  ".join(k.rjust(w) for k, w in zip(keys, widths)), "  ".join("-" * w for w in widths)]
    lines += ["  ".join(c.rjust(w) for c, w in zip(row, widths)) for row in cells]
    return "\n".join(lines)
