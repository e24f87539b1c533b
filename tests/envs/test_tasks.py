"""The well-posed design task, and finiteness of rewards under random and extreme actions."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

from histgym.envs import make_gaussian_bump_env, make_histfactory_env


def greedy_action(obs: np.ndarray, grad: np.ndarray) -> np.ndarray:
    """Steepest ascent of the reward in log-yields, projected on the fixed-total constraint."""
    g = obs * (grad - np.dot(obs, grad) / obs.sum())
    m = np.abs(g).max()
    return (g / m if m > 0 else g).astype(np.float32)


def episode_return(env, policy, seed: int) -> float:
    obs, info = env.reset(seed=seed)
    total, done = 0.0, False
    while not done:
        obs, r, term, trunc, info = env.step(policy(obs, info))
        total += r
        done = term or trunc
    return total


@pytest.mark.parametrize("metric", ["z0", "zmu"])
def test_greedy_gradient_policy_beats_random(metric):
    env = make_gaussian_bump_env(reward_metric=metric, mu_test=1.5, max_steps=64,
                                 action_scale=0.1, return_gradient=True)
    greedy = episode_return(env, lambda o, i: greedy_action(o, i["reward_grad"]), seed=0)
    randoms = [episode_return(env, lambda o, i: env.action_space.sample(), seed=s)
               for s in range(3)]
    _, info = env.reset(seed=0)
    idle = 64 * info["value"]
    assert greedy > max(randoms) + 0.1 * abs(idle)
    assert greedy > idle


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    metric=st.sampled_from(["nll", "q0", "z0", "qmu", "zmu"]),
    mode=st.sampled_from(["logmul", "add"]),
    data=st.sampled_from(["observed", "asimov"]),
    budget=st.sampled_from([None, "total"]),
    scale=st.sampled_from([0.05, 1.0, 30.0]),
    actions=arrays(np.float64, (6, 8),
                   elements=st.floats(-1e6, 1e6, allow_nan=False, allow_infinity=False)),
)
def test_rewards_stay_finite(metric, mode, data, budget, scale, actions):
    env = _env_cache(metric, mode, data, budget, scale)
    env.reset(seed=0)
    for a in actions:
        obs, r, _, _, info = env.step(a)
        assert np.isfinite(r)
        assert np.all(np.isfinite(info["reward_grad"]))
        assert env.observation_space.contains(obs)


_CACHE: dict = {}


def _env_cache(*key):
    if key not in _CACHE:
        metric, mode, data, budget, scale = key
        import histgym

        _CACHE[key] = make_histfactory_env(
            histgym.example_workspace(), channel="SR", sample="signal", reward_metric=metric,
            action_mode=mode, data=data, budget=budget, action_scale=scale,
            return_gradient=True, max_steps=10**6,
        )
    return _CACHE[key]
