"""histgym.sb3: the SB3 VecEnv adapter equals DummyVecEnv over single environments, bit for bit."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest

pytest.importorskip("stable_baselines3")

import gymnasium as gym  # noqa: E402
from stable_baselines3.common.env_util import make_vec_env as sb3_make_vec_env  # noqa: E402
from stable_baselines3.common.monitor import Monitor  # noqa: E402
from stable_baselines3.common.vec_env import (  # noqa: E402
    DummyVecEnv,
    VecCheckNan,
    VecEnv,
    VecMonitor,
    VecNormalize,
)

import histgym.sb3  # noqa: E402
from histgym.envs import HistFactoryVectorEnv, make_histfactory_env  # noqa: E402
from histgym.sb3 import HistgymVecEnv  # noqa: E402


def assert_same(a: Any, b: Any, where: str = "") -> None:
    """Exact equality of nested dicts / lists / arrays (NaN equals NaN; dtypes must agree)."""
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
        assert a.shape == b.shape and a.dtype == b.dtype, f"{where}: {a.dtype} vs {b.dtype}"
        np.testing.assert_array_equal(a, b, err_msg=where)
    else:
        assert a == b or (a != a and b != b), f"{where}: {a!r} vs {b!r}"


def drop_time(infos: list[dict[str, Any]]) -> list[dict[str, Any]]:
    for info in infos:
        if "episode" in info:
            info["episode"].pop("t")
    return infos


def run(venv: VecEnv, actions: np.ndarray, seed: int) -> list[Any]:
    venv.seed(seed)
    out: list[Any] = [venv.reset(), [dict(d) for d in venv.reset_infos]]
    for a in actions:
        obs, rew, done, infos = venv.step(a)
        out.append((obs, rew, done, drop_time(infos)))
    return out


CASES = [
    dict(reward_metric="nll"),
    dict(reward_metric="q0", return_gradient=True),
    dict(reward_metric="z0", data="asimov", budget="total"),
    dict(reward_metric="qmu", action_mode="add", reward_mode="delta"),
    dict(reward_metric="zmu", init_noise=0.2, return_gradient=True, data="asimov"),
]


@pytest.mark.parametrize("case", CASES, ids=lambda c: "-".join(map(str, c.values())))
def test_adapter_equals_dummy_vec_env(synth_ws, case):
    kw = dict(channel="SR", sample="signal", max_steps=3, mu_test=2.0, action_scale=0.2, **case)
    n = 3
    ours = HistgymVecEnv(HistFactoryVectorEnv(synth_ws, num_envs=n, **kw), monitor=False)
    ref = DummyVecEnv([lambda: make_histfactory_env(synth_ws, **kw) for _ in range(n)])
    acts = np.random.default_rng(0).uniform(-1, 1, (8, n, 3)).astype(np.float32)
    assert_same(run(ours, acts, 4), run(ref, acts, 4))


def test_make_vec_env_equals_sb3_make_vec_env():
    """Same seeds, same actions: histgym.sb3.make_vec_env == SB3's make_vec_env (Monitor on)."""
    kw = dict(max_steps=4, reward_metric="q0", init_noise=0.1)
    ours = histgym.sb3.make_vec_env("histgym/GaussianBump-v0", n_envs=4, seed=3, env_kwargs=kw)
    ref = sb3_make_vec_env("histgym/GaussianBump-v0", n_envs=4, seed=3, env_kwargs=kw)
    assert ours.env_is_wrapped(Monitor) == ref.env_is_wrapped(Monitor) == [True] * 4
    acts = np.random.default_rng(1).uniform(-1, 1, (10, 4, 8)).astype(np.float32)
    a, b = run(ours, acts, 3), run(ref, acts, 3)
    assert_same(a, b)
    assert any("episode" in d for step in a[2:] for d in step[3])


def test_vec_env_contract_and_wrappers(seed_ws, tmp_path):
    venv = histgym.sb3.make_vec_env(seed_ws, n_envs=4, seed=0,
                                    env_kwargs=dict(channel="SR", sample="signal",
                                                    reward_metric="z0", max_steps=5))
    assert isinstance(venv, VecEnv) and venv.num_envs == 4
    assert venv.observation_space.shape == (8,) and venv.action_space.shape == (8,)
    obs = venv.reset()
    assert isinstance(obs, np.ndarray) and obs.shape == (4, 8) and obs.dtype == np.float64
    assert len(venv.reset_infos) == 4 and venv.reset_infos[0]["seed"] == 0
    assert venv.get_attr("reward_metric") == ["z0"] * 4
    assert venv.get_attr("reward_metric", indices=[1, 2]) == ["z0"] * 2
    np.testing.assert_array_equal(np.stack(venv.get_attr("yields")), obs)
    ws = venv.env_method("workspace", indices=2)
    assert len(ws) == 1 and ws[0]["channels"][0]["samples"][0]["data"] == obs[2].tolist()
    venv.set_attr("max_episode_steps", None)
    with pytest.raises(ValueError, match="share"):
        venv.set_attr("max_episode_steps", 3, indices=[0])
    assert venv.env_is_wrapped(gym.Wrapper) == [True] * 4
    assert venv.env_is_wrapped(gym.wrappers.TimeLimit) == [False] * 4
    assert venv.get_images()[0].ndim == 3
    venv.set_options({"yields": np.ones(8)})
    np.testing.assert_array_equal(venv.reset(), np.ones((4, 8)))
    for _ in range(5):
        obs, rew, done, infos = venv.step(np.zeros((4, 8), np.float32))
    assert rew.dtype == np.float32 and done.all()
    assert all(i["TimeLimit.truncated"] and i["episode"]["l"] == 5 for i in infos)
    np.testing.assert_array_equal(infos[0]["terminal_observation"], np.ones(8))
    np.testing.assert_array_equal(obs, np.stack([venv.venv.params.base_yields] * 4))
    # wrappers: VecNormalize, VecCheckNan, VecMonitor (with a monitor file)
    wrapped = VecCheckNan(VecNormalize(venv), raise_exception=True)
    wrapped.reset()
    for _ in range(7):
        o, r, d, _ = wrapped.step(np.random.default_rng(0).uniform(-1, 1, (4, 8)))
        assert np.isfinite(o).all() and np.isfinite(r).all()
    mon = histgym.sb3.make_vec_env("histgym:histgym/GaussianBump-v0", n_envs=2, seed=1,
                                   monitor_dir=str(tmp_path), env_kwargs={"max_steps": 2})
    assert isinstance(mon, VecMonitor)
    mon.reset()
    for _ in range(4):
        mon.step(np.zeros((2, 8), np.float32))
    mon.close()
    assert len((tmp_path / "monitor.csv").read_text().splitlines()) == 2 + 4
    plain = VecMonitor(histgym.sb3.make_vec_env(n_envs=2, vec_env_kwargs={"monitor": False}))
    plain.reset()
    with pytest.raises(histgym.errors.UnknownName, match="Did you mean"):
        histgym.sb3.make_vec_env("histgym/GausianBump-v0")
    with pytest.raises(ValueError, match="wrapper_class"):
        histgym.sb3.make_vec_env(n_envs=2, wrapper_class=gym.wrappers.TimeLimit)
    dummy = histgym.sb3.make_vec_env(n_envs=2, vec_env_cls=DummyVecEnv)
    assert isinstance(dummy, DummyVecEnv)


def test_ppo_learns_on_adapter():
    """Smoke: PPO on 16 rows for 2048 steps learns to push a 1-bin yield towards the data."""
    import torch
    from stable_baselines3 import PPO

    ws = {
        "channels": [{"name": "c", "samples": [
            {"name": "s", "data": [1.0],
             "modifiers": [{"name": "mu", "type": "normfactor", "data": None}]},
            {"name": "b", "data": [10.0], "modifiers": []}]}],
        "observations": [{"name": "c", "data": [20.0]}],
        "measurements": [{"name": "m", "config": {"poi": "mu", "parameters": []}}],
        "version": "1.0.0",
    }
    kw = dict(channel="c", sample="s", action_mode="add", action_scale=0.5, max_steps=8,
              reward_mode="delta")
    venv = histgym.sb3.make_vec_env(ws, n_envs=16, seed=0, env_kwargs=kw)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # a tiny network: threads only contend on a busy machine
    try:
        model = PPO("MlpPolicy", venv, n_steps=32, batch_size=128, n_epochs=5,
                    learning_rate=3e-3, seed=0, device="cpu")
        before = model.predict(np.ones((16, 1)), deterministic=True)[0].mean()
        model.learn(2048)
        after = model.predict(np.ones((16, 1)), deterministic=True)[0].mean()
    finally:
        torch.set_num_threads(threads)
    assert model.num_timesteps >= 2048 and len(model.ep_info_buffer) > 0
    assert after > before + 0.3 and after > 0.3
