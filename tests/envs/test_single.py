"""HistFactoryEnv: rewards against the engine and pyhf, gradients, errors, Gymnasium/SB3 API."""

from __future__ import annotations

import math
import pickle
import warnings

import gymnasium as gym
import numpy as np
import pytest
from envtools import pyhf_reward

import histgym
from histgym.envs import HistFactoryEnv, make_histfactory_env
from histgym.errors import InvalidParameters, UnknownName

METRICS = ["nll", "q0", "z0", "qmu", "zmu"]


def _walk(env: HistFactoryEnv, n: int, seed: int = 0) -> tuple[float, dict]:
    env.reset(seed=seed)
    r, info = 0.0, {}
    for _ in range(n):
        _, r, _, _, info = env.step(env.action_space.sample())
    return float(r), info


def engine_value(env: HistFactoryEnv, metric: str, mu_test: float = 5.0) -> float:
    """The reward value through histgym.fit / fixed_poi_fit on the env's current model."""
    model = env.current_model()
    data = env.current_data()
    if metric == "nll":
        return -model.nll(model.suggested_init(), data)
    bounds = model.suggested_bounds()
    poi = model.poi_index
    if metric in ("q0", "z0"):
        free = histgym.fit(model, data)
        cond = histgym.fixed_poi_fit(0.0, model, data)
        q = max(cond.twice_nll - free.twice_nll, 0.0) if free.bestfit[poi] >= 0 else 0.0
        return q if metric == "q0" else math.sqrt(q)
    bounds[poi, 0] = 0.0
    free = histgym.fit(model, data, bounds=bounds)
    cond = histgym.fixed_poi_fit(mu_test, model, data, bounds=bounds)
    q = max(cond.twice_nll - free.twice_nll, 0.0) if free.bestfit[poi] <= mu_test else 0.0
    return -q if metric == "qmu" else -math.sqrt(q)


# ---------------------------------------------------------------------------- reward values
@pytest.mark.parametrize("data", ["observed", "asimov"])
@pytest.mark.parametrize("metric", METRICS)
@pytest.mark.parametrize("which", ["seed", "synth"])
def test_reward_matches_engine_and_pyhf(which, metric, data, seed_ws, synth_ws):
    ws = seed_ws if which == "seed" else synth_ws
    env = make_histfactory_env(ws, channel="SR", sample="signal", reward_metric=metric,
                               data=data, action_scale=0.3, mu_test=2.0)
    reward, info = _walk(env, 5, seed=7)
    assert info["fit_ok"] and info["fit_status"] == 0
    assert reward == info["value"]
    assert reward == pytest.approx(engine_value(env, metric, mu_test=2.0), abs=1e-6)
    # pyhf on the exported workspace (modified-sample semantics, DESIGN.md)
    assert reward == pytest.approx(pyhf_reward(env.workspace(), metric, mu_test=2.0, data=data),
                                   abs=1e-5)


def test_first_step_equals_reference_metric_definitions(seed_ws):
    env = make_histfactory_env(seed_ws, channel="SR", sample="signal", reward_metric="z0")
    _, info = env.reset(seed=0)
    assert info["z0"] == pytest.approx(math.sqrt(info["q0"]))
    assert info["q0"] == pytest.approx(info["twice_nll_cond"] - info["twice_nll_free"])


def test_delta_reward_sums_to_value_change(seed_ws):
    kw = dict(channel="SR", sample="signal", reward_metric="q0", action_scale=0.2)
    e_val = make_histfactory_env(seed_ws, **kw)
    e_del = make_histfactory_env(seed_ws, reward_mode="delta", **kw)
    _, i0 = e_val.reset(seed=1)
    e_del.reset(seed=1)
    total = 0.0
    for _ in range(10):
        a = e_val.action_space.sample()
        _, rv, _, _, _ = e_val.step(a)
        _, rd, _, _, _ = e_del.step(a)
        total += rd
    assert total == pytest.approx(rv - i0["value"], abs=1e-10)


def test_budget_keeps_total(seed_ws):
    env = make_histfactory_env(seed_ws, channel="SR", sample="signal", budget="total",
                               action_scale=0.5)
    obs0, _ = env.reset(seed=0)
    for _ in range(20):
        obs, *_ = env.step(env.action_space.sample())
    assert obs.sum() == pytest.approx(obs0.sum(), rel=1e-12)


def test_asimov_data_is_expected_data_of_current_yields(synth_ws):
    env = make_histfactory_env(synth_ws, channel="SR", sample="signal", data="asimov",
                               action_scale=0.3)
    _walk(env, 3)
    model = env.current_model()
    pars = model.suggested_init()
    pars[model.poi_index] = 1.0
    np.testing.assert_allclose(env.current_data(), model.expected_data(pars), rtol=1e-13)


def test_add_mode_and_clipping(seed_ws):
    env = make_histfactory_env(seed_ws, channel="SR", sample="signal", action_mode="add",
                               action_scale=2.0, clip_min=1e-3, clip_max=50.0)
    obs0, _ = env.reset(seed=0)
    a = np.full(8, -1.0, dtype=np.float32)
    obs, *_ = env.step(a)
    np.testing.assert_allclose(obs, np.clip(obs0 - 2.0, 1e-3, 50.0))
    assert env.observation_space.contains(obs)


# ---------------------------------------------------------------------------- gradients
@pytest.mark.parametrize("data", ["observed", "asimov"])
@pytest.mark.parametrize("metric", METRICS)
@pytest.mark.parametrize("which", ["seed", "synth"])
def test_gradient_matches_finite_differences(which, metric, data, seed_ws, synth_ws):
    ws = seed_ws if which == "seed" else synth_ws
    env = make_histfactory_env(ws, channel="SR", sample="signal", reward_metric=metric,
                               data=data, return_gradient=True, mle_tol=1e-14, mu_test=3.0,
                               action_scale=0.3)
    _, info = _walk(env, 3, seed=2)
    y = env.yields
    grad = info["reward_grad"]
    fd = np.empty_like(y)
    for i in range(y.size):
        h = 1e-5 * max(y[i], 1e-2)
        vals = []
        for s in (+1, -1):
            yy = y.copy()
            yy[i] += s * h
            _, inf = env.reset(options={"yields": yy})
            vals.append(inf["value"])
        fd[i] = (vals[0] - vals[1]) / (2 * h)
    np.testing.assert_allclose(grad, fd, rtol=1e-4, atol=1e-6 * (1 + np.abs(fd).max()))


# ---------------------------------------------------------------------------- bad inputs
@pytest.mark.parametrize(
    ("kwargs", "exc", "match"),
    [
        (dict(channel="SRR"), UnknownName, "Did you mean 'SR'"),
        (dict(sample="signl"), UnknownName, "Did you mean 'signal'"),
        (dict(reward_metric="z00"), ValueError, "reward_metric"),
        (dict(action_scale=0.0), ValueError, "action_scale"),
        (dict(action_scale=-1.0), ValueError, "action_scale"),
        (dict(action_mode="mul"), ValueError, "action_mode"),
        (dict(data="expected"), ValueError, "data"),
        (dict(reward_mode="sum"), ValueError, "reward_mode"),
        (dict(budget="bins"), ValueError, "budget"),
        (dict(max_steps=0), ValueError, "max_steps"),
        (dict(clip_min=0.0), ValueError, "clip_min"),
        (dict(reward_metric="qmu", mu_test=-1.0), ValueError, "mu_test"),
        (dict(fixed_params=[1.0]), InvalidParameters, "fixed_params"),
        (dict(render_mode="human"), ValueError, "render_mode"),
    ],
)
def test_bad_construction_arguments(seed_ws, kwargs, exc, match):
    base = dict(channel="SR", sample="signal")
    base.update(kwargs)
    with pytest.raises(exc, match=match):
        make_histfactory_env(seed_ws, **base)


@pytest.mark.parametrize(
    ("action", "match"),
    [
        (np.zeros(7), r"shape \(7,\); expected \(8,\)"),
        (np.zeros((1, 8)), "shape"),
        (np.r_[np.zeros(7), np.nan], "non-finite"),
        (np.r_[np.inf, np.zeros(7)], "non-finite"),
    ],
)
def test_bad_actions(seed_ws, action, match):
    env = make_histfactory_env(seed_ws, channel="SR", sample="signal", reward_metric="q0")
    obs, _ = env.reset(seed=0)
    with pytest.raises(ValueError, match=match):
        env.step(action)
    np.testing.assert_array_equal(env.yields, obs)  # the state is untouched


def test_bad_reset_options(seed_ws):
    env = make_histfactory_env(seed_ws, channel="SR", sample="signal")
    with pytest.raises(ValueError, match="unknown reset options"):
        env.reset(options={"foo": 1})
    with pytest.raises(ValueError, match="yields"):
        env.reset(options={"yields": np.full(8, -1.0)})


# ---------------------------------------------------------------------------- failed fits
def test_failed_fit_is_reported_and_episode_continues(seed_ws):
    env = make_histfactory_env(seed_ws, channel="SR", sample="signal", reward_metric="q0",
                               mle_max_iter=1, action_scale=0.5, max_steps=20)
    _, info0 = env.reset(seed=0)
    seen_failure = False
    last_good = info0["value"]
    for _ in range(20):
        _, r, term, trunc, info = env.step(env.action_space.sample())
        assert np.isfinite(r) and not term
        if not info["fit_ok"]:
            seen_failure = True
            assert info["fit_status"] != 0
            assert r == last_good  # the last good value is kept
        else:
            last_good = r
    assert seen_failure
    assert trunc


# ---------------------------------------------------------------------------- API conventions
def test_gymnasium_and_sb3_check_env_without_warnings(seed_ws, synth_ws):
    from gymnasium.utils.env_checker import check_env
    from stable_baselines3.common.env_checker import check_env as sb3_check_env

    for env_id, kw in [
        ("histgym/HistFactory-v0", dict(workspace=synth_ws, channel="SR", sample="signal",
                                        reward_metric="zmu", render_mode="ansi")),
        ("histgym/GaussianBump-v0", dict(render_mode="rgb_array")),
    ]:
        env = gym.make(env_id, **kw)
        with warnings.catch_warnings():
            warnings.simplefilter("error")
            # third-party deprecations (jsonschema via pyhf) are not the user's to act on
            warnings.simplefilter("ignore", DeprecationWarning)
            check_env(env.unwrapped)
            sb3_check_env(env.unwrapped, warn=True)


def test_registered_ids_and_make_vec(seed_ws):
    env = gym.make("histgym/HistFactory-v0", workspace=seed_ws, channel="SR", sample="signal")
    assert isinstance(env.unwrapped, HistFactoryEnv)
    bump = gym.make("histgym/GaussianBump-v0", reward_metric="q0")
    assert bump.unwrapped.reward_metric == "q0"


def test_seeded_determinism(seed_ws):
    def rollout():
        env = make_histfactory_env(seed_ws, channel="SR", sample="signal", reward_metric="z0",
                                   init_noise=0.05)
        obs, _ = env.reset(seed=42)
        out = [obs]
        for _ in range(30):
            obs, r, *_ = env.step(env.action_space.sample())
            out += [obs, np.array([r])]
        return np.concatenate(out)

    np.testing.assert_array_equal(rollout(), rollout())


def test_pickle_roundtrip_continues_identically(synth_ws):
    env = make_histfactory_env(synth_ws, channel="SR", sample="signal", reward_metric="q0",
                               init_noise=0.1, return_gradient=True)
    env.reset(seed=5)
    for _ in range(3):
        env.step(env.action_space.sample())
    clone = pickle.loads(pickle.dumps(env))
    for _ in range(5):
        a, b = env.action_space.sample(), clone.action_space.sample()
        np.testing.assert_array_equal(a, b)
        o1, r1, *_, i1 = env.step(a)
        o2, r2, *_, i2 = clone.step(b)
        np.testing.assert_array_equal(o1, o2)
        assert r1 == r2
        np.testing.assert_array_equal(i1["reward_grad"], i2["reward_grad"])
    o1, _ = env.reset(seed=9)
    o2, _ = clone.reset(seed=9)
    np.testing.assert_array_equal(o1, o2)


def test_async_vector_env(seed_ws):
    fns = [lambda: make_histfactory_env(seed_ws, channel="SR", sample="signal",
                                        reward_metric="q0", max_steps=4) for _ in range(2)]
    venv = gym.vector.AsyncVectorEnv(fns)
    try:
        venv.reset(seed=0)
        for _ in range(6):
            _, r, *_ = venv.step(venv.action_space.sample())
            assert np.all(np.isfinite(r))
    finally:
        venv.close()


def test_sb3_subproc_vec_env_equals_dummy(seed_ws):
    """SB3's SubprocVecEnv (environments pickled into worker processes) gives the same
    observations and rewards as the in-process DummyVecEnv."""
    from stable_baselines3.common.env_util import make_vec_env
    from stable_baselines3.common.vec_env import DummyVecEnv, SubprocVecEnv

    def make_env():
        return make_histfactory_env(seed_ws, channel="SR", sample="signal", reward_metric="z0",
                                    max_steps=3, init_noise=0.05)

    actions = np.random.default_rng(0).uniform(-1, 1, (5, 2, 8)).astype(np.float32)
    results = []
    for cls in (DummyVecEnv, SubprocVecEnv):
        venv = make_vec_env(make_env, n_envs=2, seed=3, vec_env_cls=cls)
        try:
            obs = [venv.reset()]
            rewards = []
            for a in actions:
                o, r, _, _ = venv.step(a)
                obs.append(o)
                rewards.append(r)
        finally:
            venv.close()
        results.append((np.array(obs), np.array(rewards)))
    np.testing.assert_array_equal(results[0][0], results[1][0])
    # DummyVecEnv keeps rewards in a float32 buffer, SubprocVecEnv returns the float64 values
    np.testing.assert_allclose(results[0][1], results[1][1], rtol=1e-6)
    assert np.all(np.isfinite(results[1][1]))


def test_render_modes(seed_ws):
    env = make_histfactory_env(seed_ws, channel="SR", sample="signal", render_mode="ansi")
    env.reset(seed=0)
    text = env.render()
    assert "signal*" in text and "background" in text
    env = make_histfactory_env(seed_ws, channel="SR", sample="signal", render_mode="rgb_array")
    env.reset(seed=0)
    img = env.render()
    assert img.dtype == np.uint8 and img.ndim == 3 and img.shape[2] == 3


def test_reference_style_keywords(seed_ws):
    import json

    env = HistFactoryEnv(workspace_json=json.dumps(seed_ws), channel="SR", sample="signal",
                         reward_metric="q0", max_steps=64, action_scale=0.02,
                         action_mode="logmul", init_noise=0.0, mle_m=10)
    obs, info = env.reset(seed=123)
    assert obs.shape == (8,) and info["seed"] == 123
    assert env.action_space.shape == (8,) and env.action_space.dtype == np.float32


def test_workspace_input_types(seed_ws, tmp_path):
    import json

    import pyhf

    path = tmp_path / "ws.json"
    path.write_text(json.dumps(seed_ws))
    values = []
    for ws in (seed_ws, json.dumps(seed_ws), path, str(path), pyhf.Workspace(seed_ws)):
        env = make_histfactory_env(ws, channel="SR", sample="signal", reward_metric="q0")
        values.append(env.reset(seed=0)[1]["q0"])
    assert len(set(values)) == 1
    with pytest.raises(TypeError, match="workspace must be"):
        make_histfactory_env(42, channel="SR", sample="signal")


def test_nextstat_import_paths():
    """Code written for nextstat.gym runs after replacing ``nextstat`` by ``histgym``."""
    from histgym.gym import HistFactoryEnv as FromGym
    from histgym.gym import make_histfactory_env as from_gym

    assert FromGym is HistFactoryEnv and from_gym is make_histfactory_env
    assert histgym.make_histfactory_env is make_histfactory_env
