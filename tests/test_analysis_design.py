"""Analysis-design baselines (histgym.agents), ``histgym design`` and an SB3 PPO smoke test."""

from __future__ import annotations

import json

import numpy as np
import pytest

import histgym
from histgym import agents
from histgym.cli import main
from histgym.envs.analysis import AnalysisEnv
from histgym.events import toy_analysis

N_EV = 3000


@pytest.fixture(scope="module")
def env():
    return AnalysisEnv(toy_analysis(n_events=N_EV))


def _check(env, res):
    assert res["value"] >= max(res["history"]) - 1e-12
    # the environment is left at the best analysis, and re-evaluating gives the same value
    r = env.evaluate(res["cuts"], res["edges"])
    assert r.valid and r.value == pytest.approx(res["value"], rel=1e-9)
    np.testing.assert_allclose(env.edges, res["edges"])


def test_cmaes_improves_over_equal_width_start(env):
    pytest.importorskip("cma")
    start = agents.start_analysis(env)
    res = agents.cmaes_analysis(env, max_evals=400, seed=1)
    _check(env, res)
    assert res["value"] > 1.5 * start["value"]  # a clear margin (2.0 -> ~6 on this toy)


@pytest.mark.parametrize("fn", [
    lambda e: agents.random_analysis_search(e, 60, seed=2),
    lambda e: agents.grid_scan_cuts(e, 3),
    lambda e: agents.coordinate_ascent_analysis(e, max_evals=150),
])
def test_baselines_find_valid_better_analyses(env, fn):
    start = agents.start_analysis(env)
    res = fn(env)
    _check(env, res)
    assert res["value"] >= start["value"]


def test_baselines_refuse_other_envs():
    with pytest.raises(TypeError, match="AnalysisEnv"):
        agents.grid_scan_cuts(histgym.make_gaussian_bump_env())


def test_cli_design_writes_best_analysis(tmp_path, capsys):
    pytest.importorskip("yaml")
    import yaml

    ev = toy_analysis(n_events=N_EV)
    import pandas as pd

    procs = {}
    for p, proc in ev.processes.items():
        pd.DataFrame(proc.source).to_parquet(tmp_path / f"{p}.parquet")
        procs[p] = {"source": f"{p}.parquet", "weight": "weight"}
    cfg = {
        "processes": procs, "signal": "signal", "observable": "mass", "range": [100, 150],
        "bins": 4,
        "cuts": [{"observable": "score", "direction": ">", "range": [0, 1]}],
        "normsys": [{"name": "resonant_norm", "processes": ["resonant"], "hi": 1.1, "lo": 0.9}],
        "shape_systematics": [{"name": "mass_scale", "kind": "observable",
                               "up": {"mass": "mass_up"}, "down": {"mass": "mass_down"}}],
    }
    (tmp_path / "design.yaml").write_text(yaml.safe_dump(cfg))
    out = tmp_path / "out"
    rc = main(["design", str(tmp_path / "design.yaml"), "--method", "coordinate",
               "--max-evals", "60", "--output", str(out), "--json"])
    assert rc == 0
    printed = json.loads(capsys.readouterr().out)
    best = json.loads((out / "best_analysis.json").read_text())
    assert printed == best and best["value"] >= best["start_value"] > 0
    ws = json.loads((out / "workspace.json").read_text())
    # the written workspace reproduces the metric
    from histgym import infer

    m = histgym.from_pyhf(ws)
    assert np.sqrt(infer.q0(m)) == pytest.approx(best["value"], rel=1e-6)
    assert main(["design", str(tmp_path / "missing.yaml")]) == 2  # a named input error, exit 2


def test_ppo_smoke():
    sb3 = pytest.importorskip("stable_baselines3")
    from stable_baselines3.common.env_checker import check_env

    env = AnalysisEnv(toy_analysis(n_events=N_EV), max_steps=16)
    check_env(env)
    model = sb3.PPO("MlpPolicy", env, n_steps=64, batch_size=32, n_epochs=1, seed=0, device="cpu")
    model.learn(total_timesteps=128)
    obs, _ = env.reset(seed=0)
    for _ in range(16):
        a, _ = model.predict(obs, deterministic=True)
        obs, r, term, trunc, info = env.step(a)
        assert np.isfinite(r)
    assert trunc and info["valid"] in (True, False)
