"""The well-posed design task, and finiteness of rewards under random and extreme actions."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

from histgym.agents import greedy_policy, random_policy, run_episode
from histgym.envs import make_gaussian_bump_env, make_histfactory_env


@pytest.mark.parametrize("metric", ["z0", "zmu"])
def test_greedy_gradient_policy_beats_random(metric):
    env = make_gaussian_bump_env(reward_metric=metric, mu_test=1.5, max_steps=64,
                                 action_scale=0.1, return_gradient=True)
    greedy, _ = run_episode(env, greedy_policy(env), seed=0)
    randoms = [run_episode(env, random_policy(env), seed=s)[0] for s in range(3)]
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
