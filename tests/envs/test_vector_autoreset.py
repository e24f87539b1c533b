"""HistFactoryVectorEnv against SyncVectorEnv over single environments, for every autoreset mode.

Same seeds and actions must give the same observations, rewards, terminations, truncations,
final observations and infos (every key, dtype and ``_key`` mask), bit for bit.
"""

from __future__ import annotations

import pickle
from typing import Any

import gymnasium as gym
import numpy as np
import pytest
from gymnasium.vector import AutoresetMode, SyncVectorEnv
from hypothesis import given, settings
from hypothesis import strategies as st

from histgym.envs import HistFactoryVectorEnv, make_histfactory_env
from histgym.envs.vector import ResetNeeded
from histgym.errors import HistgymError

MODES = [AutoresetMode.NEXT_STEP, AutoresetMode.SAME_STEP, AutoresetMode.DISABLED]


def assert_same(a: Any, b: Any, where: str = "") -> None:
    """Exact equality of nested dicts / tuples / arrays (NaN equals NaN; dtypes must agree)."""
    assert type(a) is type(b), f"{where}: {type(a)} vs {type(b)}"
    if isinstance(a, dict):
        assert set(a) == set(b), f"{where}: keys {sorted(set(a) ^ set(b))} differ"
        for k in a:
            assert_same(a[k], b[k], f"{where}.{k}")
    elif isinstance(a, (tuple, list)):
        assert len(a) == len(b), where
        for i, (x, y) in enumerate(zip(a, b)):
            assert_same(x, y, f"{where}[{i}]")
    elif isinstance(a, np.ndarray):
        assert a.shape == b.shape and a.dtype == b.dtype, (
            f"{where}: {a.shape} {a.dtype} vs {b.shape} {b.dtype}")
        if a.dtype == object:
            for i, (x, y) in enumerate(zip(a, b)):
                assert_same(x, y, f"{where}[{i}]")
        else:
            np.testing.assert_array_equal(a, b, err_msg=where)
    else:
        assert a == b or (a != a and b != b), f"{where}: {a!r} vs {b!r}"


def rollout(env: Any, actions: np.ndarray, mode: AutoresetMode, seed: int) -> list[Any]:
    """Every return value of reset and steps; in DISABLED mode ended rows are reset by mask."""
    out: list[Any] = [env.reset(seed=seed)]
    for a in actions:
        res = env.step(a)
        out.append(res)
        if mode is AutoresetMode.DISABLED:
            ended = res[2] | res[3]
            if ended.any():
                out.append(env.reset(options={"reset_mask": ended}))
    return out


KW = dict(channel="SR", sample="signal", max_steps=3, init_noise=0.1, data="asimov",
          return_gradient=True, mu_test=2.0, action_scale=0.2)


@pytest.mark.parametrize("mode", MODES, ids=lambda m: m.value)
@pytest.mark.parametrize("metric", ["nll", "q0", "z0", "qmu", "zmu"])
def test_vector_equals_sync_vector_env(synth_ws, metric, mode):
    kw = dict(KW, reward_metric=metric)
    n = 3
    venv = HistFactoryVectorEnv(synth_ws, num_envs=n, autoreset_mode=mode, **kw)
    assert venv.metadata["autoreset_mode"] is mode and venv.autoreset_mode is mode
    ref = SyncVectorEnv([lambda: make_histfactory_env(synth_ws, **kw) for _ in range(n)],
                        autoreset_mode=mode)
    acts = np.random.default_rng(0).uniform(-1, 1, (8, n, 3)).astype(np.float32)
    assert_same(rollout(venv, acts, mode, 10), rollout(ref, acts, mode, 10), metric)


@pytest.mark.parametrize("mode", MODES, ids=lambda m: m.value)
def test_options_and_time_limit_equal_sync_vector_env(synth_ws, mode):
    """``max_episode_steps`` (make_vec) acts as TimeLimit; extensions: add, delta, budget."""
    kw = dict(KW, reward_metric="q0", max_steps=5, action_mode="add", reward_mode="delta",
              budget="total", data="observed", string_info=False)
    n = 2
    venv = gym.make_vec("histgym/HistFactory-v0", num_envs=n,
                        vectorization_mode="vector_entry_point", workspace=synth_ws,
                        max_episode_steps=2, autoreset_mode=mode, **kw)
    ref = gym.make_vec("histgym/HistFactory-v0", num_envs=n, vectorization_mode="sync",
                       vector_kwargs={"autoreset_mode": mode}, max_episode_steps=2,
                       workspace=synth_ws, **kw)
    assert venv.spec.max_episode_steps == 2
    acts = np.random.default_rng(1).uniform(-1, 1, (6, n, 3))
    assert_same(rollout(venv, acts, mode, 3), rollout(ref, acts, mode, 3))


def _tiny_ws(signal: float = 1.0) -> dict[str, Any]:
    return {
        "channels": [{"name": "c", "samples": [
            {"name": "s", "data": [signal],
             "modifiers": [{"name": "mu", "type": "normfactor", "data": None}]},
            {"name": "b", "data": [10.0], "modifiers": []}]}],
        "observations": [{"name": "c", "data": [10.0]}],
        "measurements": [{"name": "m", "config": {"poi": "mu", "parameters": []}}],
        "version": "1.0.0",
    }


def test_autoreset_table_tiny_model():
    """Gymnasium's test_autoreset_mode table on a 1-bin model with known dynamics.

    ``action_mode="add"``, scale 1: the yield moves by the action; episodes last 2 steps.
    Two rows, started at 1.0; row 1 is reset with ``options["yields"]`` to 5.0.
    """
    a = np.array([[1.0], [2.0]])
    expected = {
        # per step: (obs, rewards are -NLL so only the obs and flags are tabulated)
        AutoresetMode.NEXT_STEP: [
            ([[2.0], [7.0]], [False, False]),
            ([[3.0], [9.0]], [True, True]),
            ([[1.0], [1.0]], [False, False]),  # the reset step: action ignored
            ([[2.0], [3.0]], [False, False]),
        ],
        AutoresetMode.SAME_STEP: [
            ([[2.0], [7.0]], [False, False]),
            ([[1.0], [1.0]], [True, True]),  # reset in the same step; final obs 3, 9
            ([[2.0], [3.0]], [False, False]),
            ([[1.0], [1.0]], [True, True]),
        ],
    }
    for mode, table in expected.items():
        venv = HistFactoryVectorEnv(_tiny_ws(), num_envs=2, channel="c", sample="s",
                                    action_mode="add", action_scale=1.0, max_steps=2,
                                    autoreset_mode=mode)
        venv.reset(seed=0)
        obs, info = venv.reset(options={"reset_mask": np.array([False, True]),
                                        "yields": np.array([5.0])})
        np.testing.assert_array_equal(obs, [[1.0], [5.0]])
        assert list(info["_step"]) == [False, True]
        for t, (want_obs, want_trunc) in enumerate(table):
            obs, rew, term, trunc, info = venv.step(a)
            np.testing.assert_array_equal(obs, want_obs, err_msg=f"{mode} step {t}")
            assert list(trunc) == want_trunc and not term.any()
            if mode is AutoresetMode.SAME_STEP and t == 1:
                assert [float(x[0]) for x in info["final_obs"]] == [3.0, 9.0]
                assert list(info["_final_obs"]) == [True, True]
                assert list(info["final_info"]["step"]) == [2, 2]
                assert list(info["step"]) == [0, 0]
            if mode is AutoresetMode.NEXT_STEP and t == 2:
                assert list(rew) == [0.0, 0.0] and list(info["_seed"]) == [True, True]
    venv = HistFactoryVectorEnv(_tiny_ws(), num_envs=2, channel="c", sample="s",
                                action_mode="add", action_scale=1.0, max_steps=2,
                                autoreset_mode="Disabled")
    venv.reset(seed=0)
    venv.step(a)
    obs, _, _, trunc, _ = venv.step(a)
    np.testing.assert_array_equal(obs, [[3.0], [5.0]])
    with pytest.raises(ResetNeeded, match="reset_mask"):
        venv.step(a)
    obs, info = venv.reset(options={"reset_mask": np.array([True, False])})
    np.testing.assert_array_equal(obs, [[1.0], [5.0]])
    with pytest.raises(ResetNeeded, match=r"\[1\]"):
        venv.step(a)


def test_partial_reset_keeps_other_rows(synth_ws):
    kw = dict(KW, reward_metric="q0", max_steps=50)
    venv = HistFactoryVectorEnv(synth_ws, num_envs=4, **kw)
    singles = [make_histfactory_env(synth_ws, **kw) for _ in range(4)]
    venv.reset(seed=5)
    for i, e in enumerate(singles):
        e.reset(seed=5 + i)
    rng = np.random.default_rng(2)
    for t in range(6):
        a = rng.uniform(-1, 1, (4, 3))
        obs, rew, *_ = venv.step(a)
        for i, e in enumerate(singles):
            o, r, *_ = e.step(a[i])
            np.testing.assert_array_equal(obs[i], o)
            assert rew[i] == r
        if t == 2:
            mask = np.array([True, False, True, False])
            y = np.array([[1.0, 2.0, 3.0], [0, 0, 0], [4.0, 5.0, 6.0], [0, 0, 0]])
            obs, info = venv.reset(seed=[7, None, 8, None], options={"reset_mask": mask,
                                                                     "yields": y})
            for i in (0, 2):
                o, inf = singles[i].reset(seed=[7, None, 8][i], options={"yields": y[i]})
                np.testing.assert_array_equal(obs[i], o)
                assert info["q0"][i] == inf["q0"] and info["seed"][i] == inf["seed"]
            assert list(info["_q0"]) == list(mask) and info["q0"][1] == 0.0
            assert info["seed"][1] == 0 and venv.get_attr("np_random_seed")[0] == 7


def test_bad_reset_options_and_actions(synth_ws):
    venv = HistFactoryVectorEnv(synth_ws, num_envs=2, channel="SR", sample="signal")
    venv.reset(seed=0)
    for opts in ({"reset_mask": [True, False]}, {"reset_mask": np.zeros(2, bool)},
                 {"reset_mask": np.ones(3, bool)}, {"yields": np.ones(4)},
                 {"yields": [np.nan, 1, 1]}, {"foo": 1}):
        with pytest.raises(HistgymError):
            venv.reset(options=opts)
    with pytest.raises(ValueError, match="non-finite entries in rows \\[1\\]"):
        venv.step(np.array([[0, 0, 0], [0, np.inf, 0]]))
    with pytest.raises(ValueError, match="autoreset_mode"):
        HistFactoryVectorEnv(synth_ws, num_envs=2, channel="SR", sample="signal",
                             autoreset_mode="sometimes")
    # any float dtype / layout / byte order of actions gives the same step
    a = np.random.default_rng(0).uniform(-1, 1, (3, 2))
    ref = pickle.loads(pickle.dumps(venv))
    r0 = ref.step(np.ascontiguousarray(a.T))[0]
    ro = np.array(a.T)
    ro.setflags(write=False)
    for variant in (a.T, a.T.astype(">f8"), ro, a.T.tolist()):
        clone = pickle.loads(pickle.dumps(venv))
        np.testing.assert_array_equal(clone.step(variant)[0], r0)
    a32 = a.T.astype(np.float32)
    r32 = pickle.loads(pickle.dumps(venv)).step(a32.astype(np.float64))[0]
    np.testing.assert_array_equal(pickle.loads(pickle.dumps(venv)).step(a32)[0], r32)


def test_attributes_seeding_and_pickling(seed_ws):
    venv = gym.make_vec("histgym/GaussianBump-v0", num_envs=3,
                        vectorization_mode="vector_entry_point", render_mode="ansi",
                        autoreset_mode=AutoresetMode.SAME_STEP, max_steps=4)
    assert venv.spec.max_episode_steps == 4
    venv.reset(seed=42)
    assert venv.np_random_seed == 42
    assert venv.get_attr("np_random_seed") == (42, 43, 44)
    assert venv.get_attr("reward_metric") == ("z0",) * 3
    ys = venv.call("yields")
    np.testing.assert_array_equal(np.stack(ys), venv.yields)
    ws = venv.call("workspace")
    assert ws[0]["channels"][0]["samples"][0]["data"] == venv.yields[0].tolist()
    venv.set_attr("max_episode_steps", 9)
    assert venv.max_episode_steps == 9
    with pytest.raises(ValueError, match="share"):
        venv.set_attr("reward_metric", ["a", "b", "c"])
    assert "step 0" in venv.render()
    a = venv.action_space.sample()
    clone = pickle.loads(pickle.dumps(venv))
    np.testing.assert_array_equal(clone.action_space.sample(), venv.action_space.sample())
    assert clone.autoreset_mode is AutoresetMode.SAME_STEP and clone.np_random_seed == 42
    assert_same(clone.step(a), venv.step(a))
    single = gym.make("histgym/GaussianBump-v0", max_steps=7)
    assert single.spec.max_episode_steps == 7
    wrapped = gym.wrappers.TimeAwareObservation(single)
    obs, _ = wrapped.reset(seed=0)
    assert obs.shape == (9,)


@settings(max_examples=12, deadline=None, derandomize=True)
@given(ops=st.lists(
    st.one_of(
        st.tuples(st.just("step"), st.integers(0, 2**16)),
        st.tuples(st.just("reset"), st.lists(st.booleans(), min_size=3, max_size=3)),
    ),
    min_size=1, max_size=10,
))
def test_random_steps_and_partial_resets_equal_sync_vector_env(ops):
    """Any interleaving of steps and partial resets (NEXT_STEP) matches SyncVectorEnv exactly."""
    ws = _tiny_ws(2.0)
    kw = dict(channel="c", sample="s", reward_metric="nll", max_steps=2, init_noise=0.3)
    venv = HistFactoryVectorEnv(ws, num_envs=3, **kw)
    ref = SyncVectorEnv([lambda: make_histfactory_env(ws, **kw) for _ in range(3)])
    assert_same(venv.reset(seed=1), ref.reset(seed=1))
    for op, arg in ops:
        if op == "step":
            a = np.random.default_rng(arg).uniform(-1, 1, (3, 1))
            assert_same(venv.step(a), ref.step(a), f"step {arg}")
        elif any(arg):
            mask = np.array(arg)
            assert_same(venv.reset(options={"reset_mask": mask.copy()}),
                        ref.reset(options={"reset_mask": mask.copy()}), f"reset {arg}")
