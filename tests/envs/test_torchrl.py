"""torchrl on histgym: GymWrapper over the vector environment, GymEnv over the registered ids."""

from __future__ import annotations

import pytest

torchrl = pytest.importorskip("torchrl")
torch = pytest.importorskip("torch")

from gymnasium.vector import AutoresetMode  # noqa: E402
from torchrl.envs import GymEnv, GymWrapper  # noqa: E402
from torchrl.envs.utils import check_env_specs  # noqa: E402

import histgym  # noqa: E402
from histgym.envs import HistFactoryVectorEnv  # noqa: E402


@pytest.mark.parametrize("mode", [AutoresetMode.SAME_STEP, AutoresetMode.DISABLED],
                         ids=lambda m: m.value)
def test_gym_wrapper_on_vector_env(mode):
    venv = HistFactoryVectorEnv(histgym.example_workspace(), num_envs=3, channel="SR",
                                sample="signal", reward_metric="q0", max_steps=4,
                                autoreset_mode=mode, string_info=False)
    env = GymWrapper(venv)
    assert env.batch_size == torch.Size([3])
    check_env_specs(env)
    env.set_seed(0)
    td = env.rollout(10, break_when_any_done=False)
    assert td["next", "reward"].shape == (3, 10, 1)
    assert int(td["next", "truncated"].sum()) == 3 * 2  # steps 4 and 8 of each row
    assert (td["next", "observation"] > 0).all()
    if mode is AutoresetMode.SAME_STEP:  # torchrl reads infos (and final observations) here
        assert torch.isfinite(td["next", "q0"]).all()


def test_gym_env_by_id():
    env = GymEnv("histgym/GaussianBump-v0", max_steps=3, string_info=False)
    check_env_specs(env)
    td = env.rollout(5, break_when_any_done=False)
    assert td["next", "reward"].shape == (5, 1)


@pytest.mark.slow
def test_gym_env_num_envs():
    """``GymEnv(id, num_envs=4)``: an AsyncVectorEnv of single environments in subprocesses,
    which import histgym through the ``"histgym:"`` module prefix of the id."""
    env = GymEnv("histgym:histgym/GaussianBump-v0", num_envs=4, max_steps=3, string_info=False)
    try:
        check_env_specs(env)
        td = env.rollout(5, break_when_any_done=False)
        assert td["next", "reward"].shape == (4, 5, 1)
    finally:
        env.close()
