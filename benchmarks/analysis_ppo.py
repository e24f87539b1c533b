"""PPO (Stable-Baselines3) on the built-in analysis-design task, against the analysis baselines
(CMA-ES, coordinate ascent, grid scan, random search).

    PYTHONPATH=src python benchmarks/analysis_ppo.py [--timesteps 300000] [--n-envs 4]
    # runs recorded in benchmarks/README.md:
    PYTHONPATH=src python benchmarks/analysis_ppo.py --timesteps 200000 --max-steps 40
    PYTHONPATH=src python benchmarks/analysis_ppo.py --timesteps 300000 --lr-schedule linear
    # the configuration whose final policy reaches 95 % of the best baseline (seed 0):
    PYTHONPATH=src python benchmarks/analysis_ppo.py --timesteps 300000 --n-envs 8 \
        --n-steps 1024 --log-std-init -1 --time-feature

Prints the expected Z0 of the starting analysis, of each baseline's best analysis and of the
analysis the deterministic policy ends its episode at (from the starting analysis): after the
first rollout past every ``timesteps / 20`` steps (before that rollout's update), and for the
FINAL policy (``ppo_final``, the number compared with the baselines; ``ppo_best_checkpoint``
is only informative).  Without options PPO runs with SB3's
default hyperparameters.  ``--vecnormalize`` wraps the environments in SB3's ``VecNormalize``
(observations and rewards); evaluation then uses its frozen observation statistics.
``--time-feature`` appends ``step / max_steps`` to the observation (:class:`TimeFeature`).
"""

from __future__ import annotations

import argparse
import json
import time

import gymnasium
import numpy as np


class TimeFeature(gymnasium.ObservationWrapper):
    """Appends the elapsed fraction of the episode (``step / max_steps``, 0..1) to the
    observation, so the policy (and the value function) know the time left before truncation."""

    def __init__(self, env: gymnasium.Env) -> None:
        super().__init__(env)
        box = env.observation_space
        self.observation_space = gymnasium.spaces.Box(
            np.append(box.low, 0.0), np.append(box.high, 1.0), dtype=box.dtype)

    def observation(self, observation: np.ndarray) -> np.ndarray:
        env = self.env.unwrapped
        return np.append(observation, env._st.step[0] / env.max_steps)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--timesteps", type=int, default=300_000)
    ap.add_argument("--n-envs", type=int, default=4)
    ap.add_argument("--n-events", type=int, default=100_000)
    ap.add_argument("--max-steps", type=int, default=40)
    ap.add_argument("--reward-mode", default="delta")
    ap.add_argument("--cut-scale", type=float, default=0.05)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--n-steps", type=int, default=2048, help="PPO rollout length per env")
    ap.add_argument("--batch-size", type=int, default=64)
    ap.add_argument("--learning-rate", type=float, default=3e-4)
    ap.add_argument("--lr-schedule", choices=("constant", "linear"), default="constant",
                    help="linear: decays to 0 at the end of training")
    ap.add_argument("--n-epochs", type=int, default=10)
    ap.add_argument("--gamma", type=float, default=0.99)
    ap.add_argument("--gae-lambda", type=float, default=0.95)
    ap.add_argument("--clip-range", type=float, default=0.2)
    ap.add_argument("--ent-coef", type=float, default=0.0)
    ap.add_argument("--target-kl", type=float, default=None)
    ap.add_argument("--log-std-init", type=float, default=0.0,
                    help="initial log standard deviation of the Gaussian policy (SB3: 0)")
    ap.add_argument("--net-arch", type=int, nargs="+", default=None,
                    help="hidden layer sizes of the actor and of the critic (SB3: 64 64)")
    ap.add_argument("--time-feature", action="store_true",
                    help="append the elapsed fraction of the episode (step / max_steps) to the "
                         "observation")
    ap.add_argument("--vecnormalize", action="store_true")
    ap.add_argument("--skip-baselines", action="store_true")
    ap.add_argument("--out", default=None, help="write the numbers as JSON here")
    ap.add_argument("--save", default=None, help="save the final model here (SB3 zip)")
    args = ap.parse_args()

    import torch

    torch.set_num_threads(1)
    from stable_baselines3 import PPO
    from stable_baselines3.common.vec_env import DummyVecEnv, VecNormalize

    from histgym import agents
    from histgym.envs.analysis import AnalysisCore, AnalysisEnv
    from histgym.events import toy_analysis

    core = AnalysisCore(toy_analysis(n_events=args.n_events), reward_mode=args.reward_mode,
                        cut_scale=args.cut_scale)
    res: dict[str, float] = {}
    ref = AnalysisEnv(core=core)
    res["start"] = agents.start_analysis(ref)["value"]
    if not args.skip_baselines:
        t = time.time()
        res["cmaes"] = agents.cmaes_analysis(ref, max_evals=3000, seed=args.seed)["value"]
        res["coordinate"] = agents.coordinate_ascent_analysis(ref, max_evals=3000)["value"]
        res["grid"] = agents.grid_scan_cuts(ref, 8)["value"]
        res["random"] = agents.random_analysis_search(ref, 1000, seed=args.seed)["value"]
        print(f"baselines ({time.time() - t:.0f} s):", json.dumps(res), flush=True)

    def make_env() -> gymnasium.Env:
        e: gymnasium.Env = AnalysisEnv(core=core, max_steps=args.max_steps)
        return TimeFeature(e) if args.time_feature else e

    venv = DummyVecEnv([make_env for _ in range(args.n_envs)])
    if args.vecnormalize:
        venv = VecNormalize(venv, norm_obs=True, norm_reward=True, gamma=0.99)
    lr = args.learning_rate
    learning_rate = (lambda f: f * lr) if args.lr_schedule == "linear" else lr
    policy_kwargs: dict = {"log_std_init": args.log_std_init}
    if args.net_arch:
        policy_kwargs["net_arch"] = list(args.net_arch)
    model = PPO("MlpPolicy", venv, seed=args.seed, device="cpu", verbose=0,
                n_steps=args.n_steps, batch_size=args.batch_size, learning_rate=learning_rate,
                n_epochs=args.n_epochs, gamma=args.gamma, gae_lambda=args.gae_lambda,
                clip_range=args.clip_range, ent_coef=args.ent_coef, target_kl=args.target_kl,
                policy_kwargs=policy_kwargs)
    env = make_env()

    def final_z0() -> float:
        """Z0 where one deterministic episode of the current policy ends."""
        obs, info = env.reset()
        for _ in range(args.max_steps):
            o = venv.normalize_obs(obs) if args.vecnormalize else obs
            a, _ = model.predict(o, deterministic=True)
            obs, _, _, _, info = env.step(a)
        return float(info["value"])

    from stable_baselines3.common.callbacks import BaseCallback

    every = max(args.timesteps // 20, 1)
    curve: list[tuple[int, float]] = []

    class Curve(BaseCallback):
        """Evaluates the deterministic policy about every ``timesteps / 20`` steps."""

        def _on_step(self) -> bool:
            return True

        def _on_rollout_end(self) -> None:
            if self.num_timesteps >= (len(curve) + 1) * every:
                z = final_z0()
                curve.append((self.num_timesteps, z))
                std = float(model.policy.log_std.detach().exp().mean())
                print(f"{self.num_timesteps:8d} steps ({time.time() - t:5.0f} s): "
                      f"PPO final Z0 {z:.4f} (policy std {std:.3f})", flush=True)

    t = time.time()
    model.learn(total_timesteps=args.timesteps, callback=Curve())
    z = final_z0()  # the final policy
    if args.save:
        model.save(args.save)
    print(f"{model.num_timesteps:8d} steps ({time.time() - t:5.0f} s): final policy, "
          f"final Z0 {z:.4f}", flush=True)
    best_ppo = max([z] + [c[1] for c in curve])
    res["ppo_final"] = z
    res["ppo_best_checkpoint"] = best_ppo
    if not args.skip_baselines:
        best = max(res[k] for k in ("cmaes", "coordinate", "grid", "random"))
        res["ppo_over_best_baseline"] = res["ppo_final"] / best
    res["timesteps"] = args.timesteps
    res["train_seconds"] = time.time() - t
    res["args"] = vars(args)  # type: ignore[assignment]
    print(json.dumps(res, indent=2))
    if args.out:
        with open(args.out, "w") as fh:
            json.dump(res, fh, indent=2)


if __name__ == "__main__":
    main()
