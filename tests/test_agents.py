"""Reference policies of histgym.agents."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

import histgym
from histgym.agents import greedy_action, greedy_policy, idle_policy, random_policy, run_episode

finite = st.floats(-1e3, 1e3, allow_nan=False, allow_infinity=False)


@settings(max_examples=60, deadline=None)
@given(
    y=arrays(np.float64, 6, elements=st.floats(1e-3, 1e3)),
    g=arrays(np.float64, 6, elements=finite),
    mode=st.sampled_from(["logmul", "add"]),
    budget=st.sampled_from([None, "total"]),
)
def test_greedy_action_is_a_bounded_ascent_direction(y, g, mode, budget):
    a = greedy_action(y, g, action_mode=mode, budget=budget).astype(np.float64)
    assert a.dtype == np.float64 and np.all(np.abs(a) <= 1.0 + 1e-6)
    # first-order change of the reward for the yield change the action makes
    dy = y * a if mode == "logmul" else a
    if budget == "total":  # the rescaling to the initial total removes this component
        dy = dy - y * dy.sum() / y.sum() if mode == "logmul" else dy - dy.mean()
        assert abs(dy.sum()) <= 1e-6 * (np.abs(dy).sum() + 1e-300) or mode == "add"
    assert np.dot(g, dy) >= -1e-9 * (np.abs(g).sum() * np.abs(dy).sum() + 1e-300)


def test_greedy_action_rejects_bad_input():
    with pytest.raises(ValueError, match="one shape"):
        greedy_action(np.ones(3), np.ones(4))
    with pytest.raises(ValueError, match="action_mode"):
        greedy_action(np.ones(3), np.ones(3), action_mode="mul")
    assert not np.any(greedy_action(np.ones(3), np.zeros(3)))


def test_policies_on_the_well_posed_task():
    env = histgym.make_gaussian_bump_env(max_steps=32, action_scale=0.1, return_gradient=True)
    greedy, info = run_episode(env, greedy_policy(env), seed=0)
    idle, idle_info = run_episode(env, idle_policy(env), seed=0)
    rand = [run_episode(env, random_policy(env), seed=s)[0] for s in range(3)]
    assert info["step"] == 32
    assert greedy > max(rand) > 0 and greedy > idle
    assert idle == pytest.approx(32 * idle_info["value"])
    # seeded episodes repeat exactly
    assert run_episode(env, random_policy(env), seed=1)[0] == rand[1]


def test_greedy_policy_needs_the_gradient():
    env = histgym.make_gaussian_bump_env()
    with pytest.raises(ValueError, match="return_gradient"):
        greedy_policy(env)
