"""histgym sweep: PPO trials proposed by Optuna on Ray Tune write run folders and a table."""

from __future__ import annotations

import json
import math
import warnings

import pytest

pytest.importorskip("ray")
pytest.importorskip("optuna")
pytest.importorskip("stable_baselines3")


@pytest.mark.slow
def test_tiny_sweep_writes_run_folders_and_a_table(tmp_path, capsys):
    import ray

    from histgym.cli import main

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
        try:
            code = main(["sweep", "--trials", "2", "--seeds", "0,1", "--timesteps", "128", "--n-envs", "1",
                         "--storage", str(tmp_path / "runs"), "--out", str(tmp_path / "trials.json")])
        finally:
            ray.shutdown()
    assert code == 0
    rows = json.loads((tmp_path / "trials.json").read_text())
    assert len(rows) == 2
    assert rows[0]["ppo_return"] >= rows[1]["ppo_return"]  # best first
    for r in rows:
        assert math.isfinite(r["ppo_return"]) and 1e-4 <= r["learning_rate"] <= 3e-3
        for seed in (0, 1):
            run = tmp_path / "runs" / "histgym_sweep"
            found = list(run.glob(f"*/seed_{seed}/summary.json"))
            assert found and (found[0].parent / "model.zip").exists()
    assert "ppo_return" in capsys.readouterr().out
