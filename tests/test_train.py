"""histgym train / evaluate / plot / demo: run folders, progress, metrics, figures, resume."""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path

import numpy as np
import pytest

from histgym import cli

pytest.importorskip("stable_baselines3")
pytest.importorskip("matplotlib")

from histgym.train import (  # noqa: E402
    ALGOS,
    DEFAULT_ALGO,
    DEFAULT_HYPERPARAMS,
    DEFAULT_N_ENVS,
    algorithm_class,
    load_agent,
    train,
)

SHORT = ["--timesteps", "256", "--n-envs", "4", "--max-steps", "8"]  # PPO: one rollout of 4 x 64
FIGURES = {"episode.png": (450, 1500), "training.png": (450, 700), "fit_SR.png": (450, 1200)}


def _sb3_temp_dirs(folder: Path) -> set[str]:
    return {p for p in os.listdir(folder) if p.startswith("SB3-")}


def _png_shape(path: Path) -> tuple[int, int]:
    import matplotlib.image

    return matplotlib.image.imread(path).shape[:2]


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    """One shortened `histgym train --out RUN` (shared by the tests of this module)."""
    import contextlib
    import io

    path = tmp_path_factory.mktemp("train") / "run"
    private_tmp = tmp_path_factory.mktemp("tmpdir")  # SB3's default logger would write here
    err, out = io.StringIO(), io.StringIO()
    saved, tempfile.tempdir = tempfile.tempdir, str(private_tmp)
    try:
        with contextlib.redirect_stderr(err), contextlib.redirect_stdout(out):
            code = cli.main(["train", *SHORT, "--out", str(path)])
    finally:
        tempfile.tempdir = saved
    return {"path": path, "code": code, "stderr": err.getvalue(), "stdout": out.getvalue(),
            "new_sb3_dirs": _sb3_temp_dirs(private_tmp)}


def test_train_writes_a_complete_run_folder(run):
    path = run["path"]
    assert run["code"] == 0, run["stderr"]
    assert not run["new_sb3_dirs"], "SB3 left a temp folder"
    config = json.loads((path / "config.json").read_text())
    assert config["algo"] == DEFAULT_ALGO and config["seed"] == 0 and config["n_envs"] == 4
    assert config["env_kwargs"]["max_steps"] == 8 and config["env_kwargs"]["reward_metric"] == "z0"
    assert config["hyperparams"] == DEFAULT_HYPERPARAMS[DEFAULT_ALGO]
    assert {"histgym", "stable-baselines3", "torch", "numpy"} <= set(config["versions"])
    metrics = json.loads((path / "metrics.json").read_text())
    assert set(metrics["returns"]) == {"trained", "random", "idle", "greedy", "optimised"}
    assert set(metrics["final_value"]) == set(metrics["returns"])
    assert metrics["returns_std"]["random"] >= 0
    assert metrics["total_timesteps"] == 256 and metrics["train_seconds"] > 0
    assert metrics["env_steps_per_second"] > 0 and metrics["optimise"]["evaluations"] > 0
    r = metrics["returns"]
    assert r["idle"] == pytest.approx(8 * metrics["initial_value"])
    assert r["optimised"] >= r["greedy"] > r["idle"]  # the trajectory optimiser starts from more
    header = (path / "progress.csv").read_text().splitlines()[0].split(",")
    assert "rollout/ep_rew_mean" in header and "time/total_timesteps" in header
    for name, shape in FIGURES.items():
        f = path / "figures" / name
        assert f.stat().st_size > 10_000 and _png_shape(f) == shape
    assert (path / "figures" / "ranking.png").stat().st_size > 10_000


def test_train_prints_progress_and_a_table(run):
    err = run["stderr"]
    assert "256/256" in err and "step/s" in err and "ep_return=" in err
    out = run["stdout"]
    assert "trained" in out and "greedy" in out and str(run["path"]) in out


def test_model_zip_loads_with_sb3_alone(run):
    agent = algorithm_class(DEFAULT_ALGO).load(run["path"] / "model.zip", device="cpu")
    action, _ = agent.predict(np.ones(8), deterministic=True)
    assert action.shape == (8,)
    loaded, normalizer = load_agent(run["path"])
    if (run["path"] / "vecnormalize.pkl").exists():
        assert normalizer.obs_rms.mean.shape == (8,)
    else:
        assert normalizer is None


def test_evaluate_and_plot_a_run(run, capsys):
    path = run["path"]
    (path / "figures" / "episode.png").unlink()
    assert cli.main(["evaluate", str(path), "--episodes", "3", "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    saved = json.loads((path / "metrics.json").read_text())
    assert out["returns"] == saved["returns"] and "evaluated" in saved
    assert saved["total_timesteps"] == 256  # training entries kept
    assert (path / "figures" / "episode.png").is_file()
    assert cli.main(["plot", str(path), "--json"]) == 0
    figs = json.loads(capsys.readouterr().out)["figures"]
    assert {Path(f).name for f in figs} >= set(FIGURES) | {"ranking.png"}


def test_resume_continues_a_run(run, tmp_path):
    import shutil

    path = tmp_path / "resumed"
    shutil.copytree(run["path"], path)
    rows_before = len((path / "progress.csv").read_text().splitlines())
    assert cli.main(["train", "--resume", str(path), "--timesteps", "128", "--no-progress",
                     "--no-figures", "--json"]) == 0
    config = json.loads((path / "config.json").read_text())
    assert config["total_timesteps"] == 384 and config["resumed_from"] == str(path)
    assert config["env_kwargs"]["max_steps"] == 8
    metrics = json.loads((path / "metrics.json").read_text())
    assert metrics["total_timesteps"] == 384 and metrics["timesteps_this_run"] == 128
    assert len((path / "progress.csv").read_text().splitlines()) > rows_before


def test_demo_writes_a_run_folder(tmp_path, capsys):
    path = tmp_path / "demo"
    assert cli.main(["demo", "--timesteps", "256", "--out", str(path), "--no-progress"]) == 0
    text = capsys.readouterr().out
    assert "Ranking (original model):" in text and "Ranking (PPO-optimised model):" in text
    assert "bkg_norm" in text
    metrics = json.loads((path / "metrics.json").read_text())
    assert {"trained", "random", "greedy", "idle"} == set(metrics["returns"])
    from stable_baselines3 import PPO

    assert PPO.load(path / "model.zip", device="cpu").n_steps == 128  # the notebook's PPO
    assert _png_shape(path / "figures" / "episode.png") == FIGURES["episode.png"]


@pytest.mark.parametrize("algo", ["a2c", "ppo" if DEFAULT_ALGO != "ppo" else "sac"])
def test_other_algorithms_train_without_a_folder(algo):
    extra = {"learning_starts": 32} if algo == "sac" else {}
    r = train(algo=algo, total_timesteps=128, n_envs=2, out=None, progress=False,
              references=("idle",), env_kwargs={"max_steps": 8}, hyperparams=extra)
    assert r.run_dir is None and np.isfinite(r.metrics["returns"]["trained"])
    assert type(r.agent).__name__ == ALGOS[algo][1]


@pytest.mark.slow
@pytest.mark.parametrize("algo", ["td3", "tqc", "trpo", "ars"])
def test_every_algorithm_trains(algo):
    pytest.importorskip(ALGOS[algo][0])
    extra = {"learning_starts": 32} if algo in ("td3", "tqc") else {}
    r = train(algo=algo, total_timesteps=256, n_envs=2, out=None, progress=False,
              references=("idle",), env_kwargs={"max_steps": 8}, hyperparams=extra)
    assert np.isfinite(r.metrics["returns"]["trained"])


def test_train_rejects_bad_arguments(tmp_path):
    with pytest.raises(ValueError, match="positive"):
        train(total_timesteps=0, out=None)
    with pytest.raises(ValueError, match="reward_metric"):
        train(total_timesteps=64, env_kwargs={"reward_metric": "bogus"}, out=None)
    with pytest.raises(ValueError, match="unknown algorithm 'dqn'"):
        train(total_timesteps=64, algo="dqn", out=None)
    with pytest.raises(ValueError, match="unknown references"):
        train(total_timesteps=64, references=("oracle",), out=None)
    with pytest.raises(FileNotFoundError, match="not a histgym run folder"):
        train(total_timesteps=64, resume=tmp_path)


def test_cli_train_errors(capsys, tmp_path):
    with pytest.raises(SystemExit) as exc:
        cli.main(["train", "--metric", "bogus"])
    assert exc.value.code == 2
    assert cli.main(["evaluate", str(tmp_path)]) == 2  # an input error (issue 10: exit code 2)
    assert "not a histgym run folder" in capsys.readouterr().err


@pytest.mark.parametrize("algo", sorted(ALGOS))
def test_rl_zoo_hyperparameters_follow_the_defaults(algo):
    import importlib

    from histgym.train import DEFAULT_NORMALIZE, DEFAULT_TASK

    hp = importlib.import_module(f"histgym.zoo.{algo}").hyperparams
    entry = hp["histgym/GaussianBump-v0"]
    assert entry["env_kwargs"] == DEFAULT_TASK and entry["n_envs"] == DEFAULT_N_ENVS
    assert entry["normalize"] == (DEFAULT_NORMALIZE[algo] or False)
    for key, value in DEFAULT_HYPERPARAMS[algo].items():
        assert entry[key] == value
    assert "histgym/HistFactory-v0" in hp


def test_one_torch_thread_survives_the_vector_envs_first_reset():
    """numba's OpenMP pool, started at the first reset, must not reset torch's thread count."""
    import subprocess
    import sys

    code = ("import torch, histgym.train as T\n"
            "T._with_threads(1)\n"
            "from histgym.sb3 import make_vec_env\n"
            "make_vec_env(n_envs=4, seed=0).reset()\n"
            "print(torch.get_num_threads())\n")
    src = str(Path(__file__).resolve().parents[1] / "src")
    env = dict(os.environ, PYTHONPATH=src + os.pathsep + os.environ.get("PYTHONPATH", ""))
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env,
                         timeout=600, check=True).stdout
    assert out.split()[-1] == "1"
