"""Reference policies for histgym environments (no training, no torch).

These are baselines a learning agent is compared with: a random policy, the do-nothing policy,
and a greedy policy that follows the exact reward gradient the environment returns in
``info["reward_grad"]`` (``return_gradient=True``).  They work on any environment with the
:class:`histgym.HistFactoryEnv` interface.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt

__all__ = [
    "OpenLoopResult",
    "Policy",
    "greedy_action",
    "greedy_policy",
    "idle_policy",
    "open_loop_policy",
    "optimise_open_loop",
    "random_policy",
    "record_episode",
    "run_episode",
]

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


def record_episode(env: Any, policy: Policy, *, seed: int | None = None) -> dict[str, Any]:
    """Run one episode like :func:`run_episode` and keep its trajectory.

    Returns:
        A JSON-ready dict: ``return`` (undiscounted sum of rewards), ``final_value`` (the metric
        after the last step), ``rewards`` (float [T]), ``values`` (the metric after each step,
        float [T]), ``yields`` (the controlled sample's yields at reset and after each step,
        float [T + 1][n_bins]) and ``actions`` (float [T][n_bins]).
    """
    obs, info = env.reset(seed=seed)
    yields = [np.asarray(obs, dtype=np.float64).tolist()]
    rewards: list[float] = []
    values: list[float] = []
    actions: list[list[float]] = []
    done = False
    while not done:
        action = policy(obs, info)
        obs, reward, terminated, truncated, info = env.step(action)
        rewards.append(float(reward))
        values.append(float(info["value"]))
        yields.append(np.asarray(obs, dtype=np.float64).tolist())
        actions.append(np.asarray(action, dtype=np.float64).tolist())
        done = bool(terminated or truncated)
    return {"return": float(np.sum(rewards)), "final_value": values[-1] if values else float("nan"),
            "rewards": rewards, "values": values, "yields": yields, "actions": actions}


def open_loop_policy(actions: npt.ArrayLike) -> Policy:
    """A policy replaying a fixed action sequence (float [T, n_bins]), ignoring observations.

    Step ``t`` of an episode (counted from the last call with ``info["step"] == 0``, i.e. from
    the reset) plays ``actions[min(t, T - 1)]``.
    """
    seq = np.asarray(actions, dtype=np.float32)
    if seq.ndim != 2:
        raise ValueError(f"actions must be 2-d [T, n_bins], got shape {seq.shape}")

    def policy(obs: Any, info: dict[str, Any]) -> npt.NDArray[np.float32]:
        t = int(info.get("step", 0))
        return seq[min(t, len(seq) - 1)]

    return policy


@dataclass
class OpenLoopResult:
    """A trajectory-optimised action sequence (:func:`optimise_open_loop`).

    Attributes:
        actions: float [max_steps, n_bins] in [-1, 1], the best sequence found.
        episode_return: its return from ``reset(seed)``.
        evaluations: episodes run.
        n_segments: number of piecewise-constant segments of the parametrisation.
        method: a short description of the optimiser.
    """

    actions: npt.NDArray[np.float64]
    episode_return: float
    evaluations: int
    n_segments: int
    method: str


def optimise_open_loop(
    make_env: Callable[[], Any],
    *,
    seed: int | None = 123,
    n_segments: int = 4,
    max_evals: int = 1000,
    sigma0: float = 0.5,
    cma_seed: int = 1,
) -> OpenLoopResult:
    """Trajectory-optimised reference: CMA-ES over open-loop action sequences.

    The episode from ``make_env().reset(seed=seed)`` is deterministic given the actions (for
    ``init_noise=0``, or for that seed), so the best open-loop sequence is a strong reference
    for the return a closed-loop agent can reach on that episode. The sequence is piecewise
    constant over ``n_segments`` equal segments of the episode, ``a = tanh(x)`` per segment
    and bin (``n_segments * n_bins`` parameters). First every "+1 on one bin, -1 elsewhere"
    constant sequence and the zero sequence are tried (``n_bins + 1`` episodes); CMA-ES
    (``cma``, the ``train`` extra) then starts from the best of them with step size
    ``sigma0`` and runs until ``max_evals`` episodes in total or its own stopping rules.

    Args:
        make_env: builds the environment (a :class:`histgym.HistFactoryEnv`-like object).
        seed: the reset seed of the optimised episode.
        n_segments: number of piecewise-constant segments (1 = one constant action).
        max_evals: episode budget.
        sigma0: CMA-ES initial step size in ``x`` (``a = tanh(x)``).
        cma_seed: seed of CMA-ES's sampling.

    Returns:
        An :class:`OpenLoopResult`.

    Raises:
        ImportError: ``cma`` is not installed (``pip install "histgym[train]"``).
    """
    try:
        import cma
    except ImportError as err:  # pragma: no cover - depends on the installation
        raise ImportError('optimise_open_loop needs cma: pip install "histgym[train]"') from err
    env = make_env()
    n = int(np.prod(env.action_space.shape))
    T = int(env.unwrapped.max_steps)
    K = max(1, min(int(n_segments), T))
    seg = (np.arange(T) * K) // T
    evals = 0

    def episode(A: npt.NDArray[np.float64]) -> float:
        nonlocal evals
        evals += 1
        env.reset(seed=seed)
        total = 0.0
        acts = A.astype(np.float32)
        for t in range(T):
            _, r, terminated, truncated, _ = env.step(acts[seg[t]])
            total += float(r)
            if terminated or truncated:
                break
        return total

    # start: the best constant one-hot sequence (or doing nothing)
    x_sat = 6.0  # tanh(6) = 1 - 1.2e-5
    starts = [np.zeros((K, n))]
    for b in range(n):
        x = -np.full((K, n), x_sat)
        x[:, b] = x_sat
        starts.append(x)
    scores = [episode(np.tanh(x)) for x in starts]
    best_i = int(np.argmax(scores))
    best_x, best_f = starts[best_i], scores[best_i]
    # keep the start inside the region where tanh still has slope
    x0 = np.clip(best_x, -1.5, 1.5).ravel()
    budget = max(0, int(max_evals) - evals)
    if budget > 0 and x0.size > 1:
        es = cma.CMAEvolutionStrategy(x0, float(sigma0), {
            "seed": int(cma_seed), "maxfevals": budget, "verbose": -9,
            "bounds": [-6.0, 6.0]})
        while not es.stop() and evals + es.popsize <= int(max_evals):
            X = es.ask()
            f = [-episode(np.tanh(np.asarray(x).reshape(K, n))) for x in X]
            es.tell(X, f)
        if es.result.xbest is not None and -es.result.fbest > best_f:
            best_f = float(-es.result.fbest)
            best_x = np.asarray(es.result.xbest).reshape(K, n)
    actions = np.tanh(best_x)[seg]
    return OpenLoopResult(actions=actions, episode_return=float(best_f), evaluations=evals,
                          n_segments=K, method=f"CMA-ES over {K} piecewise-constant segments")
