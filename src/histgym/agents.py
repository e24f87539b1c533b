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

from ._extras import require

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
    # analysis design on events (histgym.envs.analysis)
    "cmaes_analysis",
    "coordinate_ascent_analysis",
    "grid_scan_cuts",
    "random_analysis_search",
    "start_analysis",
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
        MissingExtra: ``cma`` is not installed (``pip install "histgym[train]"``).
    """
    cma = require("cma", "train", "optimise_open_loop")
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


# ---------------------------------------------------------------------- analysis design (events)
# Baselines for histgym.envs.analysis.AnalysisEnv: each searches analyses (cut thresholds and
# bin edges) through ``env.evaluate`` and leaves the environment at the best one found, so that
# ``env.workspace()`` exports it.  The metric is piecewise constant in the cuts (events cross
# thresholds one at a time), so no gradient exists; the greedy reference is a coordinate ascent.


def _analysis_env(env: Any) -> Any:
    base = getattr(env, "unwrapped", env)
    if not hasattr(base, "evaluate") or not hasattr(base, "core"):
        raise TypeError("analysis baselines need a histgym AnalysisEnv")
    return base


def _unit_to_analysis(base: Any, z: npt.ArrayLike) -> tuple[np.ndarray, np.ndarray]:
    """Map z in [0, 1]^(n_thr + B - 1) to (thresholds, inner edges); edges are sorted and
    kept at least one fine-grid cell apart."""
    prep = base.core.prep
    z = np.clip(np.asarray(z, dtype=np.float64), 0.0, 1.0)
    n = prep.n_thr
    cuts = prep.thr_lo + z[:n] * (prep.thr_hi - prep.thr_lo)
    G = prep.G
    k = np.sort(np.rint(z[n:] * G).astype(np.int64))
    k = np.clip(k, 1, G - 1)
    for j in range(1, k.size):  # strictly increasing, inside (0, G)
        k[j] = max(k[j], k[j - 1] + 1)
    for j in range(k.size - 1, -1, -1):
        k[j] = min(k[j], (G - (k.size - j)) if j == k.size - 1 else k[j + 1] - 1)
    return cuts, prep.grid[k]


def _analysis_to_unit(base: Any, cuts: npt.ArrayLike, edges: npt.ArrayLike) -> np.ndarray:
    prep = base.core.prep
    lo, hi = prep.analysis.range
    c = (np.asarray(cuts, dtype=np.float64) - prep.thr_lo) / (prep.thr_hi - prep.thr_lo)
    e = (np.asarray(edges, dtype=np.float64)[1:-1] - lo) / (hi - lo)
    return np.concatenate([c, e])


class _Tracker:
    """Evaluates analyses on an environment and keeps the best valid one."""

    def __init__(self, base: Any) -> None:
        self.base = base
        self.n = 0
        self.best: Any = None
        self.history: list[float] = []

    def __call__(self, cuts: np.ndarray, edges: np.ndarray) -> float:
        r = self.base.evaluate(cuts, edges)
        self.n += 1
        if r.valid and (self.best is None or r.value > self.best.value):
            self.best = r
        self.history.append(self.best.value if self.best is not None else r.value)
        return float(r.value)

    def finish(self) -> dict[str, Any]:
        b = self.best
        if b is None:
            raise ValueError("no valid analysis was found")
        self.base.evaluate(b.cuts, b.edges)  # leave the environment at the best analysis
        return {"value": b.value, "cuts": b.cuts, "edges": b.edges, "n_evaluations": self.n,
                "history": self.history}


def start_analysis(env: Any) -> dict[str, Any]:
    """The starting analysis (initial cuts, equal-width bins) and its value."""
    base = _analysis_env(env)
    _, info = base.reset()
    return {"value": info["value"], "cuts": base.cuts, "edges": base.edges, "n_evaluations": 1,
            "history": [info["value"]]}


def random_analysis_search(env: Any, n_trials: int = 200, *, seed: int = 0) -> dict[str, Any]:
    """Best of ``n_trials`` analyses with uniform random thresholds and inner edges.

    Returns:
        ``{"value", "cuts", "edges", "n_evaluations", "history"}`` (history: best so far).
    """
    base = _analysis_env(env)
    rng = np.random.default_rng(seed)
    track = _Tracker(base)
    start = start_analysis(base)
    track(start["cuts"], start["edges"])
    for _ in range(int(n_trials)):
        c, e = _unit_to_analysis(base, rng.uniform(size=base.core.n_action))
        track(c, e)
    return track.finish()


def grid_scan_cuts(env: Any, points_per_cut: int = 6) -> dict[str, Any]:
    """Grid scan over the thresholds (``points_per_cut`` values each, inside their ranges),
    with equal-width bins."""
    import itertools

    base = _analysis_env(env)
    prep = base.core.prep
    track = _Tracker(base)
    start = start_analysis(base)
    track(start["cuts"], start["edges"])
    axes = [np.linspace(lo, hi, int(points_per_cut)) for lo, hi in zip(prep.thr_lo, prep.thr_hi)]
    edges = prep.edges_value(np.r_[0, np.rint(prep.equal_width_edges()), prep.G].astype(int))
    for c in itertools.product(*axes):
        track(np.array(c), edges)
    return track.finish()


def cmaes_analysis(env: Any, *, max_evals: int = 1500, sigma0: float = 0.15, seed: int = 0,
                   popsize: int | None = None) -> dict[str, Any]:
    """CMA-ES (package ``cma``, extra ``design``) over the final thresholds and inner edges.

    The search space is [0, 1]^(n_thr + B - 1) (thresholds scaled to their ranges, inner edges
    to the fit range, sorted); it starts at the starting analysis (equal-width bins).  Invalid
    analyses score the floor value.
    """
    cma = require("cma", "design", "cmaes_analysis")
    base = _analysis_env(env)
    track = _Tracker(base)
    start = start_analysis(base)
    track(start["cuts"], start["edges"])
    x0 = _analysis_to_unit(base, start["cuts"], start["edges"])
    opts: dict[str, Any] = {"bounds": [0.0, 1.0], "seed": int(seed) + 1, "verbose": -9,
                            "maxfevals": int(max_evals)}
    if popsize is not None:
        opts["popsize"] = int(popsize)
    es = cma.CMAEvolutionStrategy(x0, float(sigma0), opts)
    while not es.stop():
        xs = es.ask()
        es.tell(xs, [-track(*_unit_to_analysis(base, x)) for x in xs])
    return track.finish()


def coordinate_ascent_analysis(env: Any, *, step: float = 0.1, min_step: float = 2e-3,
                               max_evals: int = 1500) -> dict[str, Any]:
    """The greedy reference: coordinate ascent over the thresholds and inner edges (scaled to
    [0, 1]); each coordinate tries +-step, the step halves when nothing improves."""
    base = _analysis_env(env)
    track = _Tracker(base)
    start = start_analysis(base)
    z = _analysis_to_unit(base, start["cuts"], start["edges"])
    best = track(*_unit_to_analysis(base, z))
    s = float(step)
    while s >= min_step and track.n < max_evals:
        improved = False
        for i in range(z.size):
            for sign in (1.0, -1.0):
                trial = z.copy()
                trial[i] = np.clip(trial[i] + sign * s, 0.0, 1.0)
                v = track(*_unit_to_analysis(base, trial))
                if v > best + 1e-12:
                    best, z, improved = v, trial, True
                    break
        if not improved:
            s /= 2.0
    return track.finish()
