"""Training a Stable-Baselines3 PPO agent on a histgym environment (the ``train`` extra).

This is the main job of the package (``histgym train``): PPO on the built-in example
workspace, evaluated against the reference policies of :mod:`histgym.agents` on the same
episode. The default task is the well-posed one of DESIGN.md (``reward_metric="z0",
data="asimov", budget="total"``): reshape the signal at fixed total yield to maximise the
expected discovery significance, where following the exact reward gradient gives a reference
return a learning agent should approach.
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np

from .agents import greedy_policy, idle_policy, random_policy, run_episode

__all__ = ["TrainSummary", "train_ppo", "DEFAULT_TASK"]

#: The built-in example's default task (``histgym.make_gaussian_bump_env``'s defaults, with the
#: reference notebook's episode length and a larger step).
DEFAULT_TASK: dict[str, Any] = dict(
    reward_metric="z0", data="asimov", budget="total", max_steps=64, action_scale=0.1
)


@dataclass
class TrainSummary:
    """What :func:`train_ppo` measured.

    Returns are undiscounted sums of rewards over one episode of ``max_steps`` steps from
    ``reset(seed=eval_seed)``; ``random`` is the mean over ``n_random`` seeded episodes.
    ``final_value`` is the metric (``reward_metric``, e.g. Z0) after the last step.
    """

    env_kwargs: dict[str, Any]
    total_timesteps: int
    train_seconds: float
    returns: dict[str, float] = field(default_factory=dict)
    final_value: dict[str, float] = field(default_factory=dict)
    initial_value: float = float("nan")
    final_yields: dict[str, list[float]] = field(default_factory=dict)

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)

    def table(self) -> str:
        """A readable summary table."""
        metric = self.env_kwargs.get("reward_metric", "nll")
        lines = [
            f"{'policy':<8} {'return':>12} {'final ' + metric:>12}",
            f"{'-' * 8} {'-' * 12} {'-' * 12}",
        ]
        for name in ("ppo", "greedy", "random", "idle"):
            if name in self.returns:
                fv = self.final_value.get(name, float("nan"))
                lines.append(f"{name:<8} {self.returns[name]:>12.4f} {fv:>12.4f}")
        lines.append("")
        lines.append(
            f"initial {metric} = {self.initial_value:.4f}; PPO trained for "
            f"{self.total_timesteps} steps in {self.train_seconds:.1f} s"
        )
        return "\n".join(lines)


def train_ppo(
    workspace: Any = None,
    *,
    channel: str = "SR",
    sample: str = "signal",
    env_kwargs: Mapping[str, Any] | None = None,
    total_timesteps: int = 50_000,
    n_envs: int = 4,
    seed: int = 0,
    eval_seed: int = 123,
    n_random: int = 5,
    save: str | None = None,
    ppo_kwargs: Mapping[str, Any] | None = None,
) -> TrainSummary:
    """Train PPO (``MlpPolicy``) with ``make_vec_env(make_env, n_envs)`` and evaluate it.

    Args:
        workspace: a pyhf workspace (dict, JSON text, path, ``pyhf.Workspace``); defaults to
            the built-in example (``histgym.example_workspace()``).
        channel, sample: the controlled sample (defaults fit the built-in example).
        env_kwargs: keyword arguments of :class:`histgym.HistFactoryEnv`; defaults to
            :data:`DEFAULT_TASK` (given keys override it).
        total_timesteps: PPO environment steps (summed over the ``n_envs`` copies).
        n_envs: number of environment copies in the ``DummyVecEnv``.
        seed: seed of PPO and of the training environments.
        eval_seed: seed of the evaluation episode (PPO deterministic, greedy, idle).
        n_random: number of random-policy episodes averaged.
        save: write the trained agent to this path (SB3 ``.zip``), if given.
        ppo_kwargs: overrides of the PPO hyperparameters (defaults: the reference notebook's
            ``learning_rate=3e-4, n_steps=128, batch_size=64, n_epochs=10``).

    Returns:
        A :class:`TrainSummary`.

    Raises:
        ImportError: stable-baselines3 is not installed (``pip install "histgym[train]"``).
        ValueError: ``total_timesteps`` or ``n_envs`` is not positive, or an environment
            argument is invalid (raised by the environment at construction).
    """
    try:
        from stable_baselines3 import PPO
        from stable_baselines3.common.env_util import make_vec_env
        from stable_baselines3.common.logger import Logger
    except ImportError as err:  # pragma: no cover - depends on the installation
        raise ImportError(
            "histgym train needs stable-baselines3: pip install torch==2.13.0 'histgym[train]'"
        ) from err
    from .envs.single import HistFactoryEnv

    if int(total_timesteps) <= 0 or int(n_envs) <= 0:
        raise ValueError(
            f"total_timesteps and n_envs must be positive, got {total_timesteps}, {n_envs}"
        )
    if workspace is None:
        from . import example_workspace

        workspace = example_workspace()
    kwargs = dict(DEFAULT_TASK)
    kwargs.update(env_kwargs or {})

    def make_env() -> HistFactoryEnv:
        return HistFactoryEnv(workspace, channel=channel, sample=sample, **kwargs)

    probe = make_env()  # invalid arguments raise here, before any training
    vec_env = make_vec_env(make_env, n_envs=int(n_envs), seed=seed)
    options = dict(learning_rate=3e-4, n_steps=128, batch_size=64, n_epochs=10)
    options.update(ppo_kwargs or {})
    agent = PPO("MlpPolicy", vec_env, verbose=0, seed=seed, device="cpu", **options)
    agent.set_logger(Logger(folder=None, output_formats=[]))  # SB3 would mkdir an empty SB3-<time> temp folder
    t0 = time.perf_counter()
    agent.learn(total_timesteps=int(total_timesteps))
    seconds = time.perf_counter() - t0
    vec_env.close()
    if save:
        agent.save(save)

    summary = TrainSummary(
        env_kwargs=dict(kwargs), total_timesteps=int(total_timesteps), train_seconds=seconds
    )
    _, info0 = probe.reset(seed=eval_seed)
    summary.initial_value = float(info0["value"])

    def ppo(obs: Any, info: Any) -> Any:
        return agent.predict(obs, deterministic=True)[0]

    grad_env = HistFactoryEnv(
        workspace, channel=channel, sample=sample, **{**kwargs, "return_gradient": True}
    )
    policies = {"ppo": (probe, ppo), "greedy": (grad_env, greedy_policy(grad_env)),
                "idle": (probe, idle_policy(probe))}  # fmt: skip
    for name, (env, policy) in policies.items():
        ret, info = run_episode(env, policy, seed=eval_seed)
        summary.returns[name] = ret
        summary.final_value[name] = float(info["value"])
        summary.final_yields[name] = [float(v) for v in env.unwrapped.yields]
    rand = [run_episode(probe, random_policy(probe), seed=eval_seed + k) for k in range(n_random)]
    summary.returns["random"] = float(np.mean([r for r, _ in rand]))
    summary.final_value["random"] = float(np.mean([i["value"] for _, i in rand]))
    return summary
