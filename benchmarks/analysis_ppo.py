"""PPO (Stable-Baselines3, default hyperparameters) on the built-in analysis-design task,
against the analysis baselines (CMA-ES, coordinate ascent, grid scan, random search).

    PYTHONPATH=src python benchmarks/analysis_ppo.py [--timesteps 300000] [--n-envs 4]

Prints the expected Z0 of the starting analysis, of each baseline's best analysis and of the
analysis PPO's deterministic policy ends its episode at, and the ratio PPO / best baseline.
"""

from __future__ import annotations

import argparse
import json
import time

import numpy as np


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--timesteps", type=int, default=300_000)
    ap.add_argument("--n-envs", type=int, default=4)
    ap.add_argument("--n-events", type=int, default=100_000)
    ap.add_argument("--max-steps", type=int, default=40)
    ap.add_argument("--reward-mode", default="delta")
    ap.add_argument("--cut-scale", type=float, default=0.05)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--out", default=None, help="write the numbers as JSON here")
    args = ap.parse_args()

    import torch

    torch.set_num_threads(1)
    from stable_baselines3 import PPO
    from stable_baselines3.common.vec_env import DummyVecEnv

    from histgym import agents
    from histgym.envs.analysis import AnalysisCore, AnalysisEnv
    from histgym.events import toy_analysis

    core = AnalysisCore(toy_analysis(n_events=args.n_events), reward_mode=args.reward_mode,
                        cut_scale=args.cut_scale)
    res: dict[str, float] = {}
    ref = AnalysisEnv(core=core)
    res["start"] = agents.start_analysis(ref)["value"]
    t = time.time()
    res["cmaes"] = agents.cmaes_analysis(ref, max_evals=3000, seed=args.seed)["value"]
    res["coordinate"] = agents.coordinate_ascent_analysis(ref, max_evals=3000)["value"]
    res["grid"] = agents.grid_scan_cuts(ref, 8)["value"]
    res["random"] = agents.random_analysis_search(ref, 1000, seed=args.seed)["value"]
    print(f"baselines ({time.time() - t:.0f} s):", json.dumps(res), flush=True)

    venv = DummyVecEnv([lambda: AnalysisEnv(core=core, max_steps=args.max_steps)
                        for _ in range(args.n_envs)])
    model = PPO("MlpPolicy", venv, seed=args.seed, device="cpu", verbose=0)
    t = time.time()
    chunk = max(args.timesteps // 20, 2048)
    done = 0
    env = AnalysisEnv(core=core, max_steps=args.max_steps)
    best_ppo = -np.inf
    while done < args.timesteps:
        model.learn(total_timesteps=chunk, reset_num_timesteps=False)
        done += chunk
        obs, info = env.reset()
        for _ in range(args.max_steps):
            a, _ = model.predict(obs, deterministic=True)
            obs, _, _, _, info = env.step(a)
        best_ppo = max(best_ppo, info["value"])
        print(f"{done:8d} steps ({time.time() - t:5.0f} s): PPO final Z0 {info['value']:.4f}",
              flush=True)
    res["ppo_final"] = info["value"]
    res["ppo_best_checkpoint"] = best_ppo
    best = max(res[k] for k in ("cmaes", "coordinate", "grid", "random"))
    res["ppo_over_best_baseline"] = res["ppo_final"] / best
    res["timesteps"] = args.timesteps
    res["train_seconds"] = time.time() - t
    print(json.dumps(res, indent=2))
    if args.out:
        with open(args.out, "w") as fh:
            json.dump(res, fh, indent=2)


if __name__ == "__main__":
    main()
