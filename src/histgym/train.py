"""Training layer: Stable-Baselines3 agents on histgym environments, as run folders (``train`` extra).

``histgym train`` is the package's main job. :func:`train` builds the training environments
(:func:`_make_train_env`, one place), trains an SB3 (or sb3-contrib) agent with a live progress
bar, evaluates it against the reference policies of :mod:`histgym.agents` on the evaluation
episode, and writes a *run folder*::

    runs/<metric>-<timestamp>/
        config.json        every argument, seeds, library versions
        model.zip          the agent (``PPO.load("model.zip")`` needs SB3 only)
        vecnormalize.pkl   observation/reward normalisation statistics (when used)
        progress.csv       SB3's logger (rollout/ep_rew_mean, losses, ...); TensorBoard events
                           too when tensorboard is installed
        metrics.json       returns and final metric of trained, random (mean, std), idle, greedy
                           and trajectory-optimised policies; wall time, env-steps/s
        episodes.json      the evaluation episodes (rewards and yields per step) for the figures
        figures/*.png      :mod:`histgym.plot` figures

The default task is the well-posed one of DESIGN.md (``reward_metric="z0", data="asimov",
budget="total"``) and the default hyperparameters were chosen by the sweep in
``benchmarks/train_sweep.py`` (its table is in ``benchmarks/README.md``).
"""

from __future__ import annotations

import csv
import datetime
import json
import os
import platform
import sys
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from .agents import (
    greedy_policy,
    idle_policy,
    open_loop_policy,
    optimise_open_loop,
    random_policy,
    record_episode,
)
from .errors import MissingExtra

__all__ = [
    "ALGOS",
    "DEFAULT_ALGO",
    "DEFAULT_HYPERPARAMS",
    "DEFAULT_NORMALIZE",
    "DEFAULT_N_ENVS",
    "DEFAULT_TASK",
    "DEFAULT_TIMESTEPS",
    "NOTEBOOK_PPO",
    "TrainResult",
    "evaluate_run",
    "load_run",
    "train",
]

#: The built-in example's default task (``histgym.make_gaussian_bump_env``'s defaults, with the
#: reference notebook's episode length and a larger step).
DEFAULT_TASK: dict[str, Any] = dict(
    reward_metric="z0", data="asimov", budget="total", max_steps=64, action_scale=0.1
)

#: Default environment steps of ``histgym train`` (summed over the environments). With
#: :data:`DEFAULT_HYPERPARAMS` ``["ppo"]`` on :data:`DEFAULT_N_ENVS` environments the agent
#: passes the greedy reference on every seed of the sweep in benchmarks/README.md, and
#: 150 000 steps train in well under a minute with one torch thread on a 2-core machine.
DEFAULT_TIMESTEPS = 150_000

#: Default number of environments stepped together (rows of the native vector environment).
DEFAULT_N_ENVS = 16

#: Algorithm name -> (module, class). sb3-contrib's appear when it is installed.
ALGOS: dict[str, tuple[str, str]] = {
    "ppo": ("stable_baselines3", "PPO"),
    "a2c": ("stable_baselines3", "A2C"),
    "sac": ("stable_baselines3", "SAC"),
    "td3": ("stable_baselines3", "TD3"),
    "tqc": ("sb3_contrib", "TQC"),
    "trpo": ("sb3_contrib", "TRPO"),
    "ars": ("sb3_contrib", "ARS"),
}

#: The algorithm of ``histgym train`` (chosen by ``benchmarks/train_sweep.py``).
DEFAULT_ALGO = "ppo"

#: Default hyperparameters per algorithm (overridden by ``hyperparams``), for 64-step episodes.
#: Chosen by ``benchmarks/train_sweep.py`` (table in benchmarks/README.md). PPO's: one episode
#: per environment per rollout (16 x 64 = 1024 steps), 5 epochs of minibatches of 256 at
#: learning rate 1e-3 -- 5x fewer, larger gradient steps than the reference notebook's
#: (n_steps 128, batch 64, 10 epochs, 3e-4 on 4 environments), ~5x the env-steps/s, and a
#: higher return than the notebook's settings; normalisation did not help PPO here. SAC's,
#: TRPO's and ARS's are the best of their family in the first sweep (4 environments).
DEFAULT_HYPERPARAMS: dict[str, dict[str, Any]] = {
    "ppo": dict(learning_rate=1e-3, n_steps=64, batch_size=256, n_epochs=5, gamma=0.99),
    "a2c": dict(learning_rate=7e-4, n_steps=8, gamma=0.99),
    "sac": dict(learning_rate=1e-3, train_freq=64, gradient_steps=16, batch_size=256,
                learning_starts=1024, gamma=0.99),
    "td3": dict(learning_rate=1e-3, train_freq=64, gradient_steps=16, batch_size=256,
                learning_starts=1024, gamma=0.99),
    "tqc": dict(learning_rate=1e-3, train_freq=64, gradient_steps=16, batch_size=256,
                learning_starts=1024, gamma=0.99),
    "trpo": dict(n_steps=128, batch_size=128, gamma=0.99, target_kl=0.02, learning_rate=1e-3),
    "ars": dict(policy="LinearPolicy", n_delta=8, n_top=4, delta_std=0.2, learning_rate=0.1),
}

#: The nextstat.gym reference notebook's PPO settings (on 4 environments; ``histgym demo``).
NOTEBOOK_PPO: dict[str, Any] = dict(learning_rate=3e-4, n_steps=128, batch_size=64, n_epochs=10,
                                    gamma=0.99)

#: Default ``VecNormalize`` options per algorithm (``None``: no normalisation). Off-policy
#: algorithms normalise observations only (their replay buffers hold raw rewards).
DEFAULT_NORMALIZE: dict[str, dict[str, Any] | None] = {
    "ppo": None,
    "a2c": dict(norm_obs=True, norm_reward=True),
    "sac": dict(norm_obs=True, norm_reward=False),
    "td3": dict(norm_obs=True, norm_reward=False),
    "tqc": dict(norm_obs=True, norm_reward=False),
    "trpo": None,
    "ars": dict(norm_obs=True, norm_reward=False),
}

def _require(module: str) -> Any:
    import importlib

    try:
        return importlib.import_module(module)
    except ImportError as err:
        extra = "train" if module == "stable_baselines3" else "contrib"
        raise MissingExtra(
            f"histgym train needs {module}: pip install torch==2.13.0 \"histgym[{extra}]\""
        ) from err


def algorithm_class(algo: str) -> Any:
    """The SB3 class of ``algo`` (``"ppo"``, ``"sac"``, ...; case-insensitive).

    Raises:
        ValueError: unknown algorithm name (the message lists the known ones).
        ImportError: its package (stable-baselines3 or sb3-contrib) is not installed.
    """
    key = str(algo).lower()
    if key not in ALGOS:
        raise ValueError(f"unknown algorithm {algo!r}; choose one of {sorted(ALGOS)}")
    module, name = ALGOS[key]
    return getattr(_require(module), name)


def available_algos() -> list[str]:
    """Algorithm names whose package is importable here."""
    import importlib.util

    return [k for k, (m, _) in ALGOS.items() if importlib.util.find_spec(m) is not None]


def _env_factory(workspace: Any, channel: str, sample: str, env_kwargs: Mapping[str, Any]) -> Any:
    from .envs.single import HistFactoryEnv

    def make_env() -> HistFactoryEnv:
        return HistFactoryEnv(workspace, channel=channel, sample=sample, **env_kwargs)

    return make_env


def _make_train_env(workspace: Any, channel: str, sample: str, env_kwargs: Mapping[str, Any],
                    n_envs: int, seed: int) -> Any:
    """The SB3 ``VecEnv`` that agents train on: ``n_envs`` copies of the task.

    The one place the training environment is built: :func:`histgym.sb3.make_vec_env`, an SB3
    ``VecEnv`` over one native :class:`~histgym.envs.HistFactoryVectorEnv` (every row stepped
    in one compiled call, Monitor-style ``"episode"`` infos for the logger and the progress
    bar). It returns exactly what SB3's ``make_vec_env`` over single environments returns
    (tests/envs/test_sb3.py), which stays the fallback for an environment option the vector
    environment refuses.
    """
    from stable_baselines3.common.env_util import make_vec_env

    from .errors import HistgymError
    from .sb3 import make_vec_env as native_vec_env

    try:
        return native_vec_env(workspace, n_envs=int(n_envs), seed=int(seed),
                              env_kwargs=dict(env_kwargs, channel=channel, sample=sample))
    except (HistgymError, TypeError):  # pragma: no cover - every current option is covered
        return make_vec_env(_env_factory(workspace, channel, sample, env_kwargs),
                            n_envs=int(n_envs), seed=int(seed))


@dataclass
class TrainResult:
    """What :func:`train` produced.

    Attributes:
        agent: the trained SB3 model.
        metrics: the content of ``metrics.json`` (see :func:`evaluate_run`).
        config: the content of ``config.json``.
        run_dir: the run folder (``None`` when ``out=None``).
        normalizer: the ``VecNormalize`` wrapper (``None`` without normalisation).
        episodes: the evaluation episodes (policy -> rewards, yields per step).
    """

    agent: Any
    metrics: dict[str, Any]
    config: dict[str, Any]
    run_dir: Path | None = None
    normalizer: Any = None
    episodes: dict[str, Any] = field(default_factory=dict)

    def table(self) -> str:
        """A readable summary of the evaluation (what ``histgym train`` prints)."""
        return metrics_table(self.metrics, self.run_dir)


def metrics_table(metrics: Mapping[str, Any], run_dir: Path | str | None = None) -> str:
    """The readable table of a run's ``metrics.json``."""
    metric = metrics.get("reward_metric", "value")
    lines = [f"{'policy':<10} {'return':>10} {'final ' + metric:>12}",
             f"{'-' * 10} {'-' * 10} {'-' * 12}"]
    rets, fin = metrics["returns"], metrics["final_value"]
    for name in ("trained", "optimised", "greedy", "random", "idle"):
        if name in rets:
            extra = f"  +- {metrics['returns_std']['random']:.1f}" if name == "random" else ""
            lines.append(f"{name:<10} {rets[name]:>10.2f} {fin[name]:>12.4f}{extra}")
    lines.append("")
    lines.append(f"initial {metric} = {metrics['initial_value']:.4f}; {metrics['algo']} trained "
                 f"for {metrics['total_timesteps']} steps in {metrics['train_seconds']:.1f} s "
                 f"({metrics['env_steps_per_second']:.0f} env-steps/s)")
    if "greedy" in rets:
        verdict = "above" if rets["trained"] > rets["greedy"] else "below"
        lines.append(f"trained agent {verdict} the greedy reference by "
                     f"{rets['trained'] - rets['greedy']:+.2f}")
    if run_dir is not None:
        lines.append(f"run folder: {run_dir} (figures in {Path(run_dir) / 'figures'})")
    return "\n".join(lines)


def _versions() -> dict[str, str]:
    import importlib.metadata as md

    out = {"python": platform.python_version()}
    for name in ("histgym", "stable-baselines3", "sb3-contrib", "torch", "numpy", "gymnasium",
                 "numba", "pyhf"):
        try:
            out[name] = md.version(name)
        except md.PackageNotFoundError:
            pass
    return out


def _default_run_dir(metric: str, root: str | os.PathLike[str] = "runs") -> Path:
    stamp = datetime.datetime.now().strftime("%Y%m%d-%H%M%S")
    base = Path(root) / f"{metric}-{stamp}"
    path, k = base, 1
    while path.exists():
        path, k = Path(f"{base}-{k}"), k + 1
    return path


class _Progress:
    """An SB3 callback drawing a live progress bar: steps, steps/s, mean episode return."""

    def __new__(cls, total: int, stream: Any = None) -> Any:
        from stable_baselines3.common.callbacks import BaseCallback
        from tqdm.auto import tqdm

        class ProgressCallback(BaseCallback):
            def _on_training_start(self) -> None:
                self._start = self.num_timesteps
                self.bar = tqdm(total=total, unit="step", file=stream or sys.stderr,
                                dynamic_ncols=True, mininterval=0.5,
                                bar_format="{l_bar}{bar}| {n_fmt}/{total_fmt} "
                                           "[{elapsed}<{remaining}, {rate_fmt}{postfix}]")
                self._last = 0

            def _on_step(self) -> bool:
                # the last rollout may run past ``total`` (whole rollouts): keep the bar's total
                done = min(self.num_timesteps - self._start, total)
                self.bar.update(done - self._last)
                self._last = done
                buf = self.model.ep_info_buffer
                if buf and self.n_calls % 16 == 0:
                    self.bar.set_postfix_str(
                        f"ep_return={np.mean([e['r'] for e in buf]):.1f}", refresh=False)
                return True

            def _on_training_end(self) -> None:
                buf = self.model.ep_info_buffer
                if buf:
                    self.bar.set_postfix_str(f"ep_return={np.mean([e['r'] for e in buf]):.1f}")
                self.bar.close()

        return ProgressCallback()


def _make_logger(run_dir: Path | None) -> Any:
    """SB3 logger writing progress.csv (and TensorBoard events when available) to ``run_dir``.

    Without a folder it writes nothing (and, unlike SB3's default, creates no temp folder).
    """
    from stable_baselines3.common.logger import Logger, configure

    if run_dir is None:
        return Logger(folder=None, output_formats=[])
    formats = ["csv"]
    try:
        import tensorboard  # noqa: F401

        formats.append("tensorboard")
    except ImportError:
        pass
    return configure(str(run_dir), formats)


def _with_threads(n: int | None) -> int | None:
    """Set torch's intra-op threads to ``n`` (``None``: unchanged); return the previous value."""
    if n is None:
        return None
    import torch

    # ``import histgym`` started numba's thread pool already (_kernels._jit.start_thread_pool),
    # so this count holds through the vector environment's first reset
    prev = torch.get_num_threads()
    torch.set_num_threads(int(n))
    return prev


def train(
    workspace: Any = None,
    *,
    channel: str = "SR",
    sample: str = "signal",
    env_kwargs: Mapping[str, Any] | None = None,
    algo: str = DEFAULT_ALGO,
    total_timesteps: int = DEFAULT_TIMESTEPS,
    n_envs: int | None = None,
    seed: int = 0,
    eval_seed: int = 123,
    n_random: int = 10,
    hyperparams: Mapping[str, Any] | None = None,
    normalize: Mapping[str, Any] | None | str = "default",
    out: str | os.PathLike[str] | None | bool = True,
    resume: str | os.PathLike[str] | None = None,
    progress: bool = True,
    references: Sequence[str] = ("random", "idle", "greedy", "optimised"),
    figures: bool = True,
    torch_threads: int | None = 1,
    optimise_evals: int = 300,
    stream: Any = None,
) -> TrainResult:
    """Train an agent on a histgym task, evaluate it against the references, write a run folder.

    Args:
        workspace: a pyhf workspace (dict, JSON text, path, ``pyhf.Workspace``); defaults to
            the built-in example (``histgym.example_workspace()``).
        channel, sample: the controlled sample (defaults fit the built-in example).
        env_kwargs: keyword arguments of :class:`histgym.HistFactoryEnv`; defaults to
            :data:`DEFAULT_TASK` (given keys override it).
        algo: ``"ppo"``, ``"a2c"``, ``"sac"``, ``"td3"``, or sb3-contrib's ``"tqc"``,
            ``"trpo"``, ``"ars"`` when installed; defaults to :data:`DEFAULT_ALGO`.
        total_timesteps: environment steps (summed over the ``n_envs`` copies); with
            ``resume``, the additional steps.
        n_envs: environment copies stepped together; defaults to :data:`DEFAULT_N_ENVS` (with
            ``resume``: the run's).
        seed: seed of the agent and of the training environments.
        eval_seed: seed of the evaluation episode (trained agent deterministic, greedy, idle,
            optimised); random episodes use ``eval_seed + k``.
        n_random: number of random-policy episodes (mean and std reported).
        hyperparams: overrides of :data:`DEFAULT_HYPERPARAMS` ``[algo]``.
        normalize: ``VecNormalize`` options; ``"default"`` = :data:`DEFAULT_NORMALIZE`
            ``[algo]``, ``None`` = no normalisation.
        out: the run folder; ``True`` = ``runs/<metric>-<timestamp>``, ``None``/``False`` =
            write nothing.
        resume: a run folder to continue: its config (task, algorithm, hyperparameters),
            model and normalisation statistics are loaded and trained ``total_timesteps``
            more steps; results go to ``out`` (``True``: the same folder).
        progress: draw the live progress bar (on ``stream``, default stderr).
        references: reference policies to evaluate: any of ``"random"``, ``"idle"``,
            ``"greedy"``, ``"optimised"`` (CMA-ES over open-loop action sequences).
        figures: draw ``figures/*.png`` (needs matplotlib; skipped without a run folder).
        torch_threads: torch intra-op threads during training (default 1: fastest for small
            MLPs on a busy machine); ``None`` leaves torch's setting alone.
        optimise_evals: episode budget of the trajectory optimisation (CMA-ES; on the default
            task it reaches its best, 215.19, within 200 episodes).
        stream: where the progress bar goes (default ``sys.stderr``).

    Returns:
        A :class:`TrainResult`.

    Raises:
        ValueError: ``total_timesteps`` or ``n_envs`` is not positive, an unknown algorithm or
            reference name, or an invalid environment argument (raised before any training).
        ImportError: stable-baselines3 (or sb3-contrib for its algorithms) is not installed.
        FileNotFoundError: ``resume`` is not a run folder.
    """
    _require("stable_baselines3")
    if resume is None and n_envs is None:
        n_envs = DEFAULT_N_ENVS
    if int(total_timesteps) <= 0 or (n_envs is not None and int(n_envs) <= 0):
        raise ValueError(
            f"total_timesteps and n_envs must be positive, got {total_timesteps}, {n_envs}"
        )
    bad = sorted(set(references) - {"random", "idle", "greedy", "optimised"})
    if bad:
        raise ValueError(f"unknown references {bad}; choose from random, idle, greedy, optimised")
    prev_config: dict[str, Any] | None = None
    if resume is not None:
        prev_config = load_run(resume)["config"]
        workspace = prev_config["workspace"]
        channel, sample = prev_config["channel"], prev_config["sample"]
        algo = prev_config["algo"]
        env_kwargs = prev_config["env_kwargs"]
        hp_saved = prev_config["hyperparams"]
        normalize = prev_config["normalize"]
        n_envs = prev_config["n_envs"] if n_envs is None else n_envs
    cls = algorithm_class(algo)
    algo = str(algo).lower()
    if workspace is None:
        from . import example_workspace

        workspace = example_workspace()
    from .envs.core import load_workspace

    ws_dict = load_workspace(workspace)
    kwargs = dict(DEFAULT_TASK)
    kwargs.update(env_kwargs or {})
    make_env = _env_factory(ws_dict, channel, sample, kwargs)
    probe = make_env()  # invalid arguments raise here, before any training
    if prev_config is not None:
        options = dict(hp_saved)
    else:
        options = dict(DEFAULT_HYPERPARAMS.get(algo, {}))
        options.update(hyperparams or {})
    if isinstance(normalize, str) and normalize == "default":
        normalize = DEFAULT_NORMALIZE.get(algo)
    if normalize:
        normalize = dict(normalize)
        normalize.setdefault("gamma", options.get("gamma", 0.99))

    if out is True:
        run_dir: Path | None = Path(resume) if resume is not None else _default_run_dir(
            kwargs["reward_metric"])
    elif out is None or out is False:
        run_dir = None
    else:
        run_dir = Path(out)
    if run_dir is not None:
        run_dir.mkdir(parents=True, exist_ok=True)

    config = dict(
        workspace=ws_dict, workspace_source=str(workspace)[:200] if isinstance(
            workspace, (str, os.PathLike)) else ("built-in example" if prev_config is None
                                                  and workspace is None else "dict"),
        channel=channel, sample=sample, env_kwargs=kwargs, algo=algo,
        total_timesteps=int(total_timesteps), n_envs=int(n_envs), seed=int(seed),
        eval_seed=int(eval_seed), n_random=int(n_random), hyperparams=options,
        normalize=normalize or None, torch_threads=torch_threads,
        references=list(references), optimise_evals=int(optimise_evals),
        resumed_from=str(resume) if resume is not None else None,
        created=datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        command=" ".join(sys.argv) if sys.argv and sys.argv[0].endswith("histgym") else None,
        versions=_versions(),
    )
    if prev_config is not None:
        config["total_timesteps"] = int(prev_config["total_timesteps"]) + int(total_timesteps)
        config["history"] = prev_config.get("history", []) + [
            {k: prev_config[k] for k in ("total_timesteps", "seed", "created")}]
    if run_dir is not None:
        _write_json(run_dir / "config.json", config)

    prev_threads = _with_threads(torch_threads)
    try:
        from stable_baselines3.common.vec_env import VecNormalize

        venv = _make_train_env(ws_dict, channel, sample, kwargs, n_envs, seed)
        if prev_config is not None and (Path(resume) / "vecnormalize.pkl").exists():
            venv = VecNormalize.load(str(Path(resume) / "vecnormalize.pkl"), venv)
            venv.training = True
        elif normalize:
            venv = VecNormalize(venv, **normalize)
        if prev_config is not None:
            old_csv = _read_csv(Path(resume) / "progress.csv")
            agent = cls.load(str(Path(resume) / "model.zip"), env=venv, device="cpu")
            agent.set_random_seed(int(seed))
        else:
            old_csv = []
            kw = dict(options)
            policy = kw.pop("policy", "MlpPolicy")
            agent = cls(policy, venv, verbose=0, seed=int(seed), device="cpu", **kw)
        agent.set_logger(_make_logger(run_dir))
        callback = _Progress(int(total_timesteps), stream) if progress else None
        t0 = time.perf_counter()
        agent.learn(total_timesteps=int(total_timesteps), callback=callback,
                    reset_num_timesteps=prev_config is None)
        seconds = time.perf_counter() - t0
        agent.logger.close()
        if old_csv and run_dir is not None:
            _merge_csv(run_dir / "progress.csv", old_csv)
        venv.close()
    finally:
        if prev_threads is not None:
            _with_threads(prev_threads)
    normalizer = venv if isinstance(venv, VecNormalize) else None
    if normalizer is not None:
        normalizer.training = False
        normalizer.norm_reward = False
    if run_dir is not None:
        agent.save(str(run_dir / "model.zip"))
        if normalizer is not None:
            normalizer.save(str(run_dir / "vecnormalize.pkl"))

    metrics, episodes = evaluate(agent, normalizer, ws_dict, channel, sample, kwargs,
                                 eval_seed=eval_seed, n_random=n_random,
                                 references=references, optimise_evals=optimise_evals,
                                 seed=seed)
    prev_seconds = 0.0
    if prev_config is not None:
        try:
            prev_seconds = float(load_run(resume)["metrics"].get("train_seconds_total", 0.0))
        except FileNotFoundError:
            prev_seconds = 0.0
    metrics.update(algo=algo, total_timesteps=config["total_timesteps"],
                   timesteps_this_run=int(total_timesteps), train_seconds=seconds,
                   train_seconds_total=prev_seconds + seconds,
                   env_steps_per_second=int(total_timesteps) / seconds if seconds > 0 else 0.0,
                   n_envs=int(n_envs), seed=int(seed))
    result = TrainResult(agent=agent, metrics=metrics, config=config, run_dir=run_dir,
                         normalizer=normalizer, episodes=episodes)
    if run_dir is not None:
        _write_json(run_dir / "metrics.json", metrics)
        _write_json(run_dir / "episodes.json", episodes)
        if figures:
            from .plot import plot_run

            plot_run(run_dir)
    return result


def _write_json(path: Path, obj: Any) -> None:
    with open(path, "w") as f:
        json.dump(obj, f, indent=1, default=_json_default)
        f.write("\n")


def _json_default(o: Any) -> Any:
    if isinstance(o, np.ndarray):
        return o.tolist()
    if isinstance(o, (np.floating, np.integer, np.bool_)):
        return o.item()
    if isinstance(o, os.PathLike):
        return str(o)
    return repr(o)


def _read_csv(path: Path) -> list[dict[str, str]]:
    if not path.exists():
        return []
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


def _merge_csv(path: Path, before: list[dict[str, str]]) -> None:
    """Prepend the rows ``before`` (an earlier part of the run) to the CSV at ``path``."""
    after = _read_csv(path)
    keys: list[str] = []
    for row in before + after:
        keys += [k for k in row if k not in keys]
    with open(path, "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=keys)
        w.writeheader()
        for row in before + after:
            w.writerow(row)


def _agent_policy(agent: Any, normalizer: Any) -> Any:
    def policy(obs: Any, info: Any) -> Any:
        o = np.asarray(obs, dtype=np.float64)[None]
        if normalizer is not None:
            o = normalizer.normalize_obs(o)
        return np.asarray(agent.predict(o, deterministic=True)[0][0], dtype=np.float32)

    return policy


def evaluate(agent: Any, normalizer: Any, workspace: Any, channel: str, sample: str,
             env_kwargs: Mapping[str, Any], *, eval_seed: int = 123, n_random: int = 10,
             references: Sequence[str] = ("random", "idle", "greedy", "optimised"),
             optimise_evals: int = 300, seed: int = 0) -> tuple[dict[str, Any], dict[str, Any]]:
    """Evaluate ``agent`` and the reference policies on the task's evaluation episode.

    Returns:
        ``(metrics, episodes)``. ``metrics``: ``reward_metric``, ``initial_value`` (the metric
        at ``reset(seed=eval_seed)``), ``returns`` / ``final_value`` per policy (``trained``,
        and those of ``references``; random: means over ``n_random`` episodes, with
        ``returns_std`` / ``final_value_std``), ``max_steps``, ``eval_seed``, and for the
        optimised reference its ``optimise`` record (evaluations, seconds). ``episodes``:
        per policy the rewards (float [max_steps]) and yields (float [max_steps + 1, n_bins])
        of the evaluation episode (random: its first episode), ``final_yields``.
    """
    make_env = _env_factory(workspace, channel, sample, env_kwargs)
    env = make_env()
    _, info0 = env.reset(seed=eval_seed)
    metric = env_kwargs.get("reward_metric", "nll")
    metrics: dict[str, Any] = dict(reward_metric=metric, initial_value=float(info0["value"]),
                                   max_steps=int(env.unwrapped.max_steps),
                                   eval_seed=int(eval_seed), returns={}, final_value={},
                                   returns_std={}, final_value_std={})
    episodes: dict[str, Any] = {"channel": channel, "sample": sample, "reward_metric": metric}

    def record(name: str, e: Any, policy: Any, s: int) -> dict[str, Any]:
        ep = record_episode(e, policy, seed=s)
        return ep

    runs: dict[str, Any] = {}
    if agent is not None:
        runs["trained"] = record("trained", env, _agent_policy(agent, normalizer), eval_seed)
    if "optimised" in references:
        t0 = time.perf_counter()
        opt = optimise_open_loop(make_env, seed=eval_seed, max_evals=optimise_evals,
                                 cma_seed=seed + 1)
        runs["optimised"] = record("optimised", env, open_loop_policy(opt.actions), eval_seed)
        metrics["optimise"] = dict(method=opt.method, evaluations=opt.evaluations,
                                   seconds=time.perf_counter() - t0,
                                   n_segments=opt.n_segments)
    if "greedy" in references:
        genv = _env_factory(workspace, channel, sample, {**env_kwargs,
                                                         "return_gradient": True})()
        runs["greedy"] = record("greedy", genv, greedy_policy(genv), eval_seed)
    if "idle" in references:
        runs["idle"] = record("idle", env, idle_policy(env), eval_seed)
    for name, ep in runs.items():
        metrics["returns"][name] = ep["return"]
        metrics["final_value"][name] = ep["final_value"]
        episodes[name] = ep
    if "random" in references and n_random > 0:
        eps = [record_episode(env, random_policy(env), seed=eval_seed + k)
               for k in range(int(n_random))]
        rets = [e["return"] for e in eps]
        fins = [e["final_value"] for e in eps]
        metrics["returns"]["random"] = float(np.mean(rets))
        metrics["returns_std"]["random"] = float(np.std(rets))
        metrics["final_value"]["random"] = float(np.mean(fins))
        metrics["final_value_std"]["random"] = float(np.std(fins))
        episodes["random"] = eps[0]
    return metrics, episodes


def load_run(run: str | os.PathLike[str]) -> dict[str, Any]:
    """Read a run folder's ``config.json`` and (when present) ``metrics.json``.

    Raises:
        FileNotFoundError: ``run`` has no ``config.json`` (not a ``histgym train`` run folder).
    """
    path = Path(run)
    if not (path / "config.json").is_file():
        raise FileNotFoundError(f"{run} is not a histgym run folder (no config.json)")
    with open(path / "config.json") as f:
        config = json.load(f)
    metrics: dict[str, Any] = {}
    if (path / "metrics.json").is_file():
        with open(path / "metrics.json") as f:
            metrics = json.load(f)
    return {"config": config, "metrics": metrics, "path": path}


def load_agent(run: str | os.PathLike[str]) -> tuple[Any, Any]:
    """The trained agent of a run folder and its ``VecNormalize`` statistics (or ``None``)."""
    info = load_run(run)
    path = info["path"]
    cls = algorithm_class(info["config"]["algo"])
    if not (path / "model.zip").is_file():
        raise FileNotFoundError(f"{run} has no model.zip (did training finish?)")
    agent = cls.load(str(path / "model.zip"), device="cpu")
    normalizer = None
    if (path / "vecnormalize.pkl").is_file():
        import pickle

        with open(path / "vecnormalize.pkl", "rb") as f:
            normalizer = pickle.load(f)
        normalizer.training = False
        normalizer.norm_reward = False
    return agent, normalizer


def evaluate_run(run: str | os.PathLike[str], *, episodes: int | None = None,
                 references: Sequence[str] | None = None, figures: bool = True) -> dict[str, Any]:
    """Re-evaluate a saved run (``histgym evaluate RUN``) and update its metrics.json.

    Args:
        run: the run folder.
        episodes: number of random-policy episodes (default: the run's ``n_random``).
        references: reference policies (default: the run's).
        figures: redraw the figures afterwards.

    Returns:
        The updated metrics (the training entries of the old metrics.json are kept).
    """
    info = load_run(run)
    cfg, old = info["config"], info["metrics"]
    agent, normalizer = load_agent(run)
    metrics, eps = evaluate(agent, normalizer, cfg["workspace"], cfg["channel"], cfg["sample"],
                            cfg["env_kwargs"], eval_seed=cfg["eval_seed"],
                            n_random=cfg["n_random"] if episodes is None else int(episodes),
                            references=cfg["references"] if references is None else references,
                            optimise_evals=cfg.get("optimise_evals", 1000), seed=cfg["seed"])
    merged = dict(old)
    merged.update(metrics)
    merged["evaluated"] = datetime.datetime.now(datetime.timezone.utc).isoformat(
        timespec="seconds")
    path = info["path"]
    _write_json(path / "metrics.json", merged)
    _write_json(path / "episodes.json", eps)
    if figures:
        from .plot import plot_run

        plot_run(path)
    return merged
