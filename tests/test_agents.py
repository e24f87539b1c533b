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


def _short_task(**kw):
    return histgym.make_gaussian_bump_env(max_steps=8, action_scale=0.1, **kw)


def test_record_episode_matches_run_episode():
    from histgym.agents import record_episode

    env = _short_task(return_gradient=True)
    ret, info = run_episode(env, greedy_policy(env), seed=3)
    ep = record_episode(env, greedy_policy(env), seed=3)
    assert ep["return"] == pytest.approx(ret, rel=1e-12) and ep["final_value"] == info["value"]
    assert len(ep["rewards"]) == len(ep["actions"]) == 8 and len(ep["yields"]) == 9
    assert np.sum(ep["yields"][-1]) == pytest.approx(np.sum(ep["yields"][0]))  # budget="total"


def test_open_loop_policy_replays_a_sequence():
    from histgym.agents import open_loop_policy, record_episode

    env = _short_task()
    seq = np.random.default_rng(0).uniform(-1, 1, (8, 8))
    ep = record_episode(env, open_loop_policy(seq), seed=0)
    np.testing.assert_allclose(ep["actions"], seq.astype(np.float32))
    with pytest.raises(ValueError, match="2-d"):
        open_loop_policy(np.zeros(8))


def test_optimise_open_loop_beats_greedy_and_every_constant_action():
    pytest.importorskip("cma")
    from histgym.agents import open_loop_policy, optimise_open_loop

    r = optimise_open_loop(_short_task, seed=123, n_segments=2, max_evals=150)
    assert r.actions.shape == (8, 8) and np.all(np.abs(r.actions) <= 1)
    assert r.evaluations <= 150 and r.n_segments == 2
    env = _short_task(return_gradient=True)
    replay, _ = run_episode(env, open_loop_policy(r.actions), seed=123)
    assert replay == pytest.approx(r.episode_return, rel=1e-9)
    greedy, _ = run_episode(env, greedy_policy(env), seed=123)
    assert r.episode_return >= greedy
    for b in range(8):
        a = -np.ones(8, dtype=np.float32)
        a[b] = 1
        const, _ = run_episode(env, lambda obs, info, a=a: a, seed=123)
        assert r.episode_return >= const - 1e-3  # starts from the best of them
