"""Reference policies for histgym environments (no training, no torch).

These are baselines a learning agent is compared with: a random policy, the do-nothing policy,
and a greedy policy that follows the exact reward gradient the environment returns in
``info["reward_grad"]`` (``return_gradient=True``).  They work on any environment with the
:class:`histgym.HistFactoryEnv` interface.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
import numpy.typing as npt

__all__ = ["Policy", "greedy_action", "greedy_policy", "idle_policy", "random_policy", "run_episode"]

#: A policy maps (observation, info of the previous step) to an action.
Policy = Callable[[npt.NDArray[np.float64], dict[str, Any]], npt.NDArray[np.float32]]


def greedy_action(
    obs: npt.ArrayLike,
    grad: npt.ArrayLike,
    *,
    action_mode: str = "logmul",
    budget: str | None = None,
) -> npt.NDArray[np.float32]:
    """The steepest-ascent action for the reward gradient ``grad`` at yields ``obs``.

    Args:
        obs: current yields of the controlled sample (events, float [n_bins]).
        grad: d(reward value)/d(yields) at ``obs`` (float [n_bins]), e.g.
            ``info["reward_grad"]``.
        action_mode: the environment's ``action_mode``; for ``"logmul"`` the gradient is taken
            in log-yields (``obs * grad``), for ``"add"`` in the yields themselves.
        budget: the environment's ``budget``; with ``"total"`` the direction is projected on
            the fixed-total constraint (the component that the rescaling would undo removed).

    Returns:
        float32 [n_bins] in [-1, 1]: the direction scaled so that its largest entry is 1
        (all zeros where the gradient vanishes).
    """
    y = np.asarray(obs, dtype=np.float64)
    g = np.asarray(grad, dtype=np.float64)
    if y.shape != g.shape or y.ndim != 1:
        raise ValueError(f"obs and grad must be 1-d of one shape, got {y.shape} and {g.shape}")
    if action_mode == "logmul":
        # d reward / d log y = y * g; with a fixed total, y' = y (1 + a) / sum(y (1 + a)) * T
        d = y * (g - (np.dot(y, g) / y.sum() if budget == "total" else 0.0))
    elif action_mode == "add":
        d = g - (g.mean() if budget == "total" else 0.0)
    else:
        raise ValueError(f"action_mode must be 'logmul' or 'add', got {action_mode!r}")
    m = float(np.max(np.abs(d))) if d.size else 0.0
    if not np.isfinite(m) or m == 0.0:
        return np.zeros_like(y, dtype=np.float32)
    return (d / m).astype(np.float32)


def greedy_policy(env: Any) -> Policy:
    """A policy following ``info["reward_grad"]`` of ``env`` (built with ``return_gradient=True``)."""
    base = env.unwrapped
    if not base.return_gradient:
        raise ValueError("greedy_policy needs an environment built with return_gradient=True")
    mode, budget = base.action_mode, base.budget
    return lambda obs, info: greedy_action(obs, info["reward_grad"], action_mode=mode, budget=budget)


def random_policy(env: Any) -> Policy:
    """Uniform random actions from ``env.action_space`` (seeded by ``env.reset(seed=...)``)."""
    return lambda obs, info: env.action_space.sample()


def idle_policy(env: Any) -> Policy:
    """The do-nothing policy: zero actions (the yields never change in either action mode)."""
    shape = env.action_space.shape
    return lambda obs, info: np.zeros(shape, dtype=np.float32)


def run_episode(env: Any, policy: Policy, *, seed: int | None = None) -> tuple[float, dict[str, Any]]:
    """Run one episode of ``policy`` on ``env`` from ``env.reset(seed=seed)``.

    Returns:
        The undiscounted return (sum of rewards) and the ``info`` of the last step.
    """
    obs, info = env.reset(seed=seed)  # histgym's reset(seed) seeds the action space too
    total = 0.0
    done = False
    while not done:
        obs, reward, terminated, truncated, info = env.step(policy(obs, info))
        total += float(reward)
        done = bool(terminated or truncated)
    return total, info
