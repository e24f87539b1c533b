"""histgym train: PPO on the built-in example, through the library and the command line."""

from __future__ import annotations

import json

import pytest

from histgym import cli

pytest.importorskip("stable_baselines3")

from histgym.train import train_ppo  # noqa: E402


def test_train_ppo_reports_every_policy(tmp_path):
    s = train_ppo(total_timesteps=512, n_envs=2, n_random=2, save=str(tmp_path / "agent.zip"),
                  env_kwargs={"max_steps": 16})
    assert set(s.returns) == {"ppo", "greedy", "random", "idle"}
    assert s.env_kwargs["max_steps"] == 16 and s.env_kwargs["data"] == "asimov"
    assert s.returns["greedy"] > s.returns["idle"] == pytest.approx(16 * s.initial_value)
    assert all(len(y) == 8 for y in s.final_yields.values())
    assert (tmp_path / "agent.zip").stat().st_size > 1000
    assert "greedy" in s.table() and "ppo" in s.table()


def test_train_rejects_bad_arguments():
    with pytest.raises(ValueError, match="positive"):
        train_ppo(total_timesteps=0)
    with pytest.raises(ValueError, match="reward_metric"):
        train_ppo(total_timesteps=64, env_kwargs={"reward_metric": "bogus"})


def test_cli_train_json(capsys):
    assert cli.main(["train", "--timesteps", "256", "--n-envs", "2", "--max-steps", "8",
                     "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["total_timesteps"] == 256 and out["env_kwargs"]["reward_metric"] == "z0"
    assert out["returns"]["greedy"] > out["returns"]["idle"]


def test_cli_train_bad_metric_exits_with_usage_error(capsys):
    with pytest.raises(SystemExit) as exc:
        cli.main(["train", "--metric", "bogus"])
    assert exc.value.code == 2
