"""HistFactoryVectorEnv: exact equivalence with the single environment, autoreset, checks."""

from __future__ import annotations

import pickle

import gymnasium as gym
import numpy as np
import pytest

from histgym.envs import HistFactoryVectorEnv, make_histfactory_env


@pytest.mark.parametrize("metric", ["nll", "q0", "zmu"])
@pytest.mark.parametrize("parallel", [False, True])
def test_vector_rows_equal_single_envs(synth_ws, metric, parallel):
    kw = dict(channel="SR", sample="signal", reward_metric=metric, max_steps=3, init_noise=0.1,
              data="asimov", return_gradient=True, mu_test=2.0, action_scale=0.2)
    n = 3
    venv = HistFactoryVectorEnv(synth_ws, num_envs=n, parallel=parallel, **kw)
    singles = [make_histfactory_env(synth_ws, **kw) for _ in range(n)]
    obs, _ = venv.reset(seed=10)
    for i, e in enumerate(singles):
        o, _ = e.reset(seed=10 + i)
        np.testing.assert_array_equal(obs[i], o)
    acts = np.random.default_rng(0).uniform(-1, 1, (7, n, venv.single_action_space.shape[0]))
    for t, a in enumerate(acts):
        obs, rew, term, trunc, info = venv.step(a)
        for i, e in enumerate(singles):
            if t == 3:  # NEXT_STEP autoreset of every row (truncated at t == 2)
                o, _ = e.reset()
                r, tr = 0.0, False
                g = None
            else:
                o, r, _, tr, inf = e.step(a[i])
                g = inf["reward_grad"]
            np.testing.assert_array_equal(obs[i], o)
            assert rew[i] == r and trunc[i] == tr and not term[i]
            if g is not None:
                np.testing.assert_array_equal(info["reward_grad"][i], g)


def test_make_vec_and_errors(seed_ws):
    venv = gym.make_vec("histgym/HistFactory-v0", num_envs=2,
                        vectorization_mode="vector_entry_point", workspace=seed_ws,
                        channel="SR", sample="signal", reward_metric="q0")
    assert isinstance(venv, HistFactoryVectorEnv)
    assert venv.observation_space.shape == (2, 8)
    venv.reset(seed=0)
    with pytest.raises(ValueError, match="shape"):
        venv.step(np.zeros((2, 7)))
    with pytest.raises(ValueError, match="non-finite"):
        venv.step(np.full((2, 8), np.nan))
    clone = pickle.loads(pickle.dumps(venv))
    a = np.full((2, 8), 0.3)
    np.testing.assert_array_equal(venv.step(a)[1], clone.step(a)[1])
    bump = gym.make_vec("histgym/GaussianBump-v0", num_envs=2,
                        vectorization_mode="vector_entry_point")
    obs, _ = bump.reset(seed=1)
    assert obs.shape == (2, 8)
