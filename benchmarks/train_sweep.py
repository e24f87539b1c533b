"""Hyperparameter sweep that chose ``histgym train``'s defaults (issue 9).

Trains each candidate configuration on the default task (the built-in example, ``z0`` reward,
Asimov data, fixed total signal, 64 steps, ``action_scale=0.1``) for a fixed number of
environment steps, with one torch thread, and evaluates the deterministic policy on the
evaluation episode (``reset(seed=123)``) against the greedy exact-gradient reference.

    PYTHONPATH=src python benchmarks/train_sweep.py                    # every config, seed 0
    PYTHONPATH=src python benchmarks/train_sweep.py --configs ppo-vn --seeds 0 1 2
    PYTHONPATH=src python benchmarks/train_sweep.py --timesteps 30000 --md table.md

Each row: configuration, seed, evaluation return, final Z0, wall time of training and
environment steps per second. The table of the run that chose the defaults is in
``benchmarks/README.md``. Configurations go through :func:`histgym.train.train` exactly as
``histgym train --algo ... --hyperparams ...`` would, so the numbers are the product's.
"""

from __future__ import annotations

import argparse
import json
import time
from typing import Any

#: Candidates: (algo, overrides of the algorithm defaults, VecNormalize options or None).
CONFIGS: dict[str, dict[str, Any]] = {
    # the reference notebook's PPO, no normalisation (the old histgym train)
    "ppo-notebook": dict(algo="ppo", normalize=None,
                         hyperparams=dict(learning_rate=3e-4, n_steps=128, batch_size=64,
                                          n_epochs=10, gamma=0.99)),
    # + observation and reward normalisation
    "ppo-notebook-vn": dict(algo="ppo", normalize=dict(norm_obs=True, norm_reward=True),
                            hyperparams=dict(learning_rate=3e-4, n_steps=128, batch_size=64,
                                             n_epochs=10, gamma=0.99)),
    # episode-aligned rollouts, larger batches, narrower initial exploration
    "ppo-vn-64": dict(algo="ppo", normalize=dict(norm_obs=True, norm_reward=True),
                      hyperparams=dict(learning_rate=3e-4, n_steps=64, batch_size=128,
                                       n_epochs=10, gamma=0.99,
                                       policy_kwargs=dict(log_std_init=-1.0))),
    "ppo-vn-64-lr1e-3": dict(algo="ppo", normalize=dict(norm_obs=True, norm_reward=True),
                             hyperparams=dict(learning_rate=1e-3, n_steps=64, batch_size=128,
                                              n_epochs=10, gamma=0.99,
                                              policy_kwargs=dict(log_std_init=-1.0))),
    "ppo-vn-g95": dict(algo="ppo", normalize=dict(norm_obs=True, norm_reward=True),
                       hyperparams=dict(learning_rate=3e-4, n_steps=128, batch_size=64,
                                        n_epochs=10, gamma=0.95)),
    "ppo-vn-small": dict(algo="ppo", normalize=dict(norm_obs=True, norm_reward=True),
                         hyperparams=dict(learning_rate=1e-3, n_steps=64, batch_size=256,
                                          n_epochs=5, gamma=0.99,
                                          policy_kwargs=dict(net_arch=[32, 32],
                                                             log_std_init=-0.5))),
    "a2c-vn": dict(algo="a2c", normalize=dict(norm_obs=True, norm_reward=True),
                   hyperparams=dict(learning_rate=7e-4, n_steps=8, gamma=0.99)),
    "ars-linear": dict(algo="ars", normalize=dict(norm_obs=True, norm_reward=False),
                       hyperparams=dict(policy="LinearPolicy", n_delta=8, n_top=4,
                                        delta_std=0.1, learning_rate=0.02)),
    "td3": dict(algo="td3", normalize=dict(norm_obs=True, norm_reward=False),
                hyperparams=dict(learning_rate=1e-3, train_freq=64, gradient_steps=16,
                                 batch_size=256, learning_starts=1024, gamma=0.99)),
    "ppo-notebook-rn": dict(algo="ppo", normalize=dict(norm_obs=False, norm_reward=True),
                            hyperparams=dict(learning_rate=3e-4, n_steps=128, batch_size=64,
                                             n_epochs=10, gamma=0.99)),
    "ppo-notebook-lr1e-3": dict(algo="ppo", normalize=None,
                                hyperparams=dict(learning_rate=1e-3, n_steps=128, batch_size=64,
                                                 n_epochs=10, gamma=0.99)),
    "ars-fast": dict(algo="ars", normalize=dict(norm_obs=True, norm_reward=False),
                     hyperparams=dict(policy="LinearPolicy", n_delta=8, n_top=4,
                                      delta_std=0.2, learning_rate=0.1)),
    "trpo": dict(algo="trpo", normalize=None,
                 hyperparams=dict(n_steps=128, batch_size=128, gamma=0.99,
                                  target_kl=0.02, learning_rate=1e-3)),
    "sac": dict(algo="sac", normalize=dict(norm_obs=True, norm_reward=False),
                hyperparams=dict(learning_rate=1e-3, train_freq=64, gradient_steps=16,
                                 batch_size=256, learning_starts=1024, gamma=0.99)),
    # --- second sweep (2026-12-02 afternoon): fewer, larger gradient steps on more envs, so
    # that the default run trains in well under a minute (PPO.train's minibatch updates were
    # ~70% of the time: n_epochs * timesteps / batch_size of them).
    "ppo16-b256-e5-lr1e-3": dict(algo="ppo", normalize=None, n_envs=16,
                                 hyperparams=dict(learning_rate=1e-3, n_steps=64, batch_size=256,
                                                  n_epochs=5, gamma=0.99)),
    "ppo16-b256-e10-lr3e-4": dict(algo="ppo", normalize=None, n_envs=16,
                                  hyperparams=dict(learning_rate=3e-4, n_steps=64,
                                                   batch_size=256, n_epochs=10, gamma=0.99)),
    "ppo16-b256-e10-lr1e-3": dict(algo="ppo", normalize=None, n_envs=16,
                                  hyperparams=dict(learning_rate=1e-3, n_steps=64,
                                                   batch_size=256, n_epochs=10, gamma=0.99)),
    "ppo8-b128-e5-lr1e-3": dict(algo="ppo", normalize=None, n_envs=8,
                                hyperparams=dict(learning_rate=1e-3, n_steps=128, batch_size=128,
                                                 n_epochs=5, gamma=0.99)),
    "ppo16-b512-e10-lr1e-3": dict(algo="ppo", normalize=None, n_envs=16,
                                  hyperparams=dict(learning_rate=1e-3, n_steps=128,
                                                   batch_size=512, n_epochs=10, gamma=0.99)),
    "ppo16-b256-e5-lr1e-3-std-1": dict(algo="ppo", normalize=None, n_envs=16,
                                       hyperparams=dict(learning_rate=1e-3, n_steps=64,
                                                        batch_size=256, n_epochs=5, gamma=0.99,
                                                        policy_kwargs=dict(log_std_init=-1.0))),
    "ppo16-b256-e5-lr1e-3-vn": dict(algo="ppo", n_envs=16,
                                    normalize=dict(norm_obs=True, norm_reward=True),
                                    hyperparams=dict(learning_rate=1e-3, n_steps=64,
                                                     batch_size=256, n_epochs=5, gamma=0.99)),
}


def run(name: str, seed: int, timesteps: int, n_envs: int | None) -> dict[str, Any]:
    """Train one configuration for ``timesteps`` steps and evaluate it (no run folder)."""
    from histgym.train import train

    cfg = CONFIGS[name]
    n_envs = int(n_envs if n_envs is not None else cfg.get("n_envs", 4))
    t0 = time.perf_counter()
    result = train(algo=cfg["algo"], hyperparams=cfg["hyperparams"], normalize=cfg["normalize"],
                   total_timesteps=timesteps, n_envs=n_envs, seed=seed, out=None,
                   progress=False, references=("greedy",), figures=False)
    m = result.metrics
    return dict(config=name, seed=seed, timesteps=timesteps, n_envs=n_envs,
                trained=m["returns"]["trained"], greedy=m["returns"]["greedy"],
                final=m["final_value"]["trained"], train_s=m["train_seconds"],
                steps_per_s=m["env_steps_per_second"], total_s=time.perf_counter() - t0)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--configs", nargs="*", default=list(CONFIGS))
    ap.add_argument("--seeds", nargs="*", type=int, default=[0])
    ap.add_argument("--timesteps", type=int, default=50_000)
    ap.add_argument("--n-envs", type=int, default=None,
                    help="environments (default: the configuration's, else 4)")
    ap.add_argument("--md", default=None, help="append the markdown table to this file")
    ap.add_argument("--json", default=None, help="write the rows as JSON here")
    args = ap.parse_args()
    rows = []
    import os

    header = ("| config | envs | seed | steps | return | greedy | final Z0 | train s "
              "| env-steps/s |")
    rule = "|---|---|---|---|---|---|---|---|---|"
    print(f"load average {os.getloadavg()}", flush=True)
    print(header + "\n" + rule, flush=True)
    for name in args.configs:
        for seed in args.seeds:
            r = run(name, seed, args.timesteps, args.n_envs)
            rows.append(r)
            print(f"| {name} | {r['n_envs']} | {seed} | {r['timesteps']} | {r['trained']:.1f} | "
                  f"{r['greedy']:.1f} | {r['final']:.3f} | {r['train_s']:.1f} | "
                  f"{r['steps_per_s']:.0f} |", flush=True)
    if args.json:
        with open(args.json, "w") as f:
            json.dump(rows, f, indent=1)
    if args.md:
        with open(args.md, "a") as f:
            f.write(header + "\n" + rule + "\n")
            for r in rows:
                f.write(f"| {r['config']} | {r['n_envs']} | {r['seed']} | {r['timesteps']} "
                        f"| {r['trained']:.1f} "
                        f"| {r['greedy']:.1f} | {r['final']:.3f} | {r['train_s']:.1f} | "
                        f"{r['steps_per_s']:.0f} |\n")
    print(f"load average {os.getloadavg()}", flush=True)


if __name__ == "__main__":
    main()
