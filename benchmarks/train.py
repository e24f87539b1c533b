"""Wall time of the reference notebook's PPO training on histgym and on nextstat.gym (issue 9).

The nextstat.gym notebook trains SB3 PPO for 20 000 steps on 4 environments (``make_vec_env``,
``learning_rate=3e-4, n_steps=128, batch_size=64, n_epochs=10``) on the 8-bin example with
``reward_metric="q0", max_steps=64, action_scale=0.02, action_mode="logmul", init_noise=0.01``.
This script runs exactly that, one run each, in the same process:

- ``histgym``: histgym single environments in SB3's ``DummyVecEnv`` (``make_vec_env``);
- ``histgym-native``: histgym's native vector environment through ``histgym.sb3.make_vec_env``
  (skipped, with a note, where that adapter is not available);
- ``nextstat``: nextstat.gym's ``HistFactoryEnv`` behind a minimal ``gymnasium.Env`` shim (it
  is not a ``gymnasium.Env`` itself, so SB3 refuses it as published; a step whose fit raises
  ends the episode with reward 0 in the shim);

with one torch thread (``--threads``), and prints wall times, the ratios, and the fraction of
the training time spent in the environments (timed around each VecEnv's ``step_wait`` and
``reset``, so DummyVecEnv's bookkeeping counts as environment time, as the native adapter's
does).

    PYTHONPATH=src python benchmarks/train.py                 # 20 000 steps (~2-4 min)
    PYTHONPATH=src python benchmarks/train.py --steps 4096    # quick look
"""

from __future__ import annotations

import argparse
import json
import os
import time
from typing import Any

import gymnasium
import numpy as np

import histgym

NOTEBOOK_PPO = dict(learning_rate=3e-4, n_steps=128, batch_size=64, n_epochs=10)
NOTEBOOK_ENV = dict(reward_metric="q0", max_steps=64, action_scale=0.02, action_mode="logmul",
                    init_noise=0.01)


class Clock:
    """Accumulates the seconds spent inside the environments."""

    def __init__(self) -> None:
        self.seconds = 0.0


class NextstatShim(gymnasium.Env):
    """The least needed to make ``nextstat.gym.HistFactoryEnv`` a ``gymnasium.Env``."""

    def __init__(self, ws_json: str, **kwargs: Any) -> None:
        from nextstat.gym import make_histfactory_env

        self.inner = make_histfactory_env(ws_json, channel="SR", sample="signal", **kwargs)
        n = len(self.inner.reset(seed=0)[0])
        self.observation_space = gymnasium.spaces.Box(0.0, np.inf, shape=(n,), dtype=np.float64)
        self.action_space = gymnasium.spaces.Box(-1.0, 1.0, shape=(n,), dtype=np.float32)
        self.failures = 0

    def reset(self, *, seed: int | None = None, options: Any = None) -> Any:
        super().reset(seed=seed)
        obs, info = self.inner.reset(seed=seed)
        self._last = np.asarray(obs, dtype=np.float64)
        return self._last, dict(info)

    def step(self, action: Any) -> Any:
        try:
            obs, r, term, trunc, info = self.inner.step(np.asarray(action, dtype=np.float64))
        except Exception:  # noqa: BLE001 - the reference raises when a fit fails
            self.failures += 1
            return self._last, 0.0, False, True, {}
        self._last = np.asarray(obs, dtype=np.float64)
        return self._last, float(r), bool(term), bool(trunc), dict(info)


def run(name: str, make_venv: Any, steps: int, seed: int) -> dict[str, Any]:
    from stable_baselines3 import PPO
    from stable_baselines3.common.logger import Logger

    clock = Clock()
    venv = make_venv(clock)
    agent = PPO("MlpPolicy", venv, verbose=0, seed=seed, device="cpu", **NOTEBOOK_PPO)
    agent.set_logger(Logger(folder=None, output_formats=[]))
    t0 = time.perf_counter()
    agent.learn(total_timesteps=steps)
    wall = time.perf_counter() - t0
    venv.close()
    return dict(name=name, wall_s=wall, env_s=clock.seconds, env_fraction=clock.seconds / wall,
                steps_per_s=steps / wall)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--steps", type=int, default=20_000)
    ap.add_argument("--threads", type=int, default=1, help="torch threads (default 1)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--json", default=None, help="write the rows here")
    args = ap.parse_args()
    import torch
    from stable_baselines3.common.env_util import make_vec_env

    torch.set_num_threads(args.threads)  # holds: ``import histgym`` started numba's pool
    ws = histgym.example_workspace()
    ws_json = json.dumps(ws)

    def timed(venv: Any, clock: Clock) -> Any:
        """Time the VecEnv's ``step_wait``/``reset`` (the same boundary for every candidate:
        DummyVecEnv's own bookkeeping and Monitor wrappers count as environment time)."""
        inner_step, inner_reset = venv.step_wait, venv.reset

        def step_wait() -> Any:
            t0 = time.perf_counter()
            out = inner_step()
            clock.seconds += time.perf_counter() - t0
            return out

        def reset() -> Any:
            t0 = time.perf_counter()
            out = inner_reset()
            clock.seconds += time.perf_counter() - t0
            return out

        venv.step_wait, venv.reset = step_wait, reset
        return venv

    def histgym_dummy(clock: Clock) -> Any:
        return timed(make_vec_env(lambda: histgym.make_histfactory_env(
            ws, channel="SR", sample="signal", **NOTEBOOK_ENV), n_envs=4, seed=args.seed), clock)

    candidates: list[tuple[str, Any]] = [("histgym DummyVecEnv", histgym_dummy)]
    # (the native vector env comes second; ratios are over the DummyVecEnv row)
    try:
        from histgym.sb3 import make_vec_env as native_make_vec_env  # issue 8's adapter

        def histgym_native(clock: Clock) -> Any:
            return timed(native_make_vec_env(
                histgym.example_workspace(), n_envs=4, seed=args.seed,
                env_kwargs=dict(channel="SR", sample="signal", **NOTEBOOK_ENV)), clock)

        candidates.append(("histgym native vector", histgym_native))
    except ImportError:
        print("histgym.sb3.make_vec_env not available here: native vector env skipped")
    try:
        import nextstat.gym  # noqa: F401

        def nextstat_shim(clock: Clock) -> Any:
            return timed(make_vec_env(lambda: NextstatShim(ws_json, **NOTEBOOK_ENV), n_envs=4,
                                      seed=args.seed), clock)

        candidates.append(("nextstat shim", nextstat_shim))
    except ImportError:
        print("nextstat not installed (bench extra): nextstat skipped")

    # warm-up (numba cache load, nextstat model build) outside the timings
    for _, make in candidates:
        v = make(Clock())
        v.reset()
        v.step(np.zeros((4, 8), dtype=np.float32))
        v.close()

    print(f"reference notebook PPO: {args.steps} steps, 4 envs, {NOTEBOOK_PPO}, "
          f"torch threads {args.threads}; task {NOTEBOOK_ENV}")
    print(f"load average before: {os.getloadavg()}", flush=True)
    rows = [run(name, make, args.steps, args.seed) for name, make in candidates]
    print(f"load average after: {os.getloadavg()}; torch threads {torch.get_num_threads()}")
    base = rows[0]["wall_s"]
    print(f"{'environment':24s} {'wall s':>8s} {'steps/s':>8s} {'in env':>7s} {'env s':>7s} "
          f"{'wall / histgym':>15s}")
    for r in rows:
        print(f"{r['name']:24s} {r['wall_s']:8.1f} {r['steps_per_s']:8.0f} "
              f"{100 * r['env_fraction']:6.1f}% {r['env_s']:7.2f} {r['wall_s'] / base:15.2f}")
    env_ratio = [r["env_s"] / rows[0]["env_s"] for r in rows]
    print("environment time / histgym DummyVecEnv's: "
          + ", ".join(f"{r['name']} {x:.2f}" for r, x in zip(rows, env_ratio, strict=True)))
    if args.json:
        with open(args.json, "w") as f:
            json.dump(rows, f, indent=1)


if __name__ == "__main__":
    main()
