"""Per-step time of the HistFactory design environment: histgym vs nextstat.gym vs pyhf.

One run on the seed notebook's 8-bin workspace (``histgym.example_workspace()``), random
actions (the yields drift, so the fits do real work), for every reward metric. Prints the
microseconds per ``env.step`` and the ratios. Usage::

    python benchmarks/env_step.py [--steps 3000] [--pyhf-steps 60]
"""

from __future__ import annotations

import argparse
import json
import math
import time
import warnings
from typing import Any

import numpy as np

import histgym
from histgym.envs import make_histfactory_env

METRICS = ("nll", "q0", "z0", "qmu", "zmu")


class PyhfEnv:
    """The same environment written directly on pyhf (numpy backend, scipy optimiser)."""

    def __init__(self, ws: dict[str, Any], channel: str, sample: str, metric: str,
                 mu_test: float = 5.0, scale: float = 0.05) -> None:
        import pyhf

        self.pyhf = pyhf
        self.ws = ws
        self.channel, self.sample, self.metric = channel, sample, metric
        self.mu_test, self.scale = mu_test, scale
        self.y0 = np.array(self._sample()["data"], dtype=float)
        self.y = self.y0.copy()
        self._rebuild()

    def _sample(self) -> dict[str, Any]:
        ch = next(c for c in self.ws["channels"] if c["name"] == self.channel)
        return next(s for s in ch["samples"] if s["name"] == self.sample)

    def _rebuild(self) -> None:
        self._sample()["data"] = self.y.tolist()
        w = self.pyhf.Workspace(self.ws)
        self.model = w.model()
        self.data = w.data(self.model)

    def reset(self, seed: int | None = None) -> None:
        self.y = np.array(self.y0)
        self._rebuild()

    def step(self, action: np.ndarray) -> float:
        self.y = np.clip(self.y * np.exp(self.scale * action), 1e-12, 1e12)
        self._rebuild()
        m, d = self.model, self.data
        init, bounds, fixed = (m.config.suggested_init(), m.config.suggested_bounds(),
                               m.config.suggested_fixed())
        ts = self.pyhf.infer.test_statistics
        if self.metric == "nll":
            return float(m.logpdf(init, d)[0])
        if self.metric in ("q0", "z0"):
            q = float(ts.q0(0.0, d, m, init, bounds, fixed))
            return q if self.metric == "q0" else math.sqrt(max(q, 0.0))
        q = float(ts.qmu_tilde(self.mu_test, d, m, init, bounds, fixed))
        return -q if self.metric == "qmu" else -math.sqrt(max(q, 0.0))


def time_env(env: Any, actions: np.ndarray, max_steps: int = 128) -> tuple[float, int]:
    """(microseconds per ``env.step``, number of steps that raised) over ``actions``.

    Episodes of ``max_steps`` steps: the environment is reset (untimed) at each boundary and
    after a step that raised (nextstat raises when a fit fails).
    """
    failures = 0
    total = 0.0
    env.reset(seed=0)
    for start in range(0, len(actions), max_steps):
        block = actions[start : start + max_steps]
        t0 = time.perf_counter()
        for a in block:
            try:
                env.step(a)
            except Exception:  # noqa: BLE001 - the reference kills the episode
                failures += 1
                total += time.perf_counter() - t0
                env.reset()
                t0 = time.perf_counter()
        total += time.perf_counter() - t0
        env.reset()
    return total / len(actions) * 1e6, failures


def time_vector(metric: str, ws: dict[str, Any], n_envs: int, steps: int) -> float:
    """Microseconds per environment step of the native vector env (``n_envs`` rows, serial,
    autoresets included)."""
    from histgym.envs.vector import HistFactoryVectorEnv

    v = HistFactoryVectorEnv(ws, num_envs=n_envs, channel="SR", sample="signal",
                             reward_metric=metric, max_steps=128)
    v.reset(seed=0)
    acts = np.random.default_rng(1).uniform(-1, 1, (steps, n_envs, 8)).astype(np.float32)
    v.step(acts[0])
    t0 = time.perf_counter()
    for a in acts:
        v.step(a)
    return (time.perf_counter() - t0) / (steps * n_envs) * 1e6


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=2048)
    parser.add_argument("--pyhf-steps", type=int, default=40)
    parser.add_argument("--repeats", type=int, default=3,
                        help="interleaved timing rounds; the best round is reported")
    args = parser.parse_args()
    ws = histgym.example_workspace()
    rng = np.random.default_rng(0)
    actions = rng.uniform(-1, 1, (args.steps, 8)).astype(np.float32)
    try:
        from nextstat.gym import make_histfactory_env as ns_make
    except ImportError:  # pragma: no cover
        ns_make = None
    print(f"seed workspace, random actions (action_scale=0.05, logmul), episodes of 128 steps;"
          f" best of {args.repeats} interleaved rounds of {args.steps} steps")
    print(f"{'metric':6s} {'histgym':>9s} {'nextstat':>9s} {'pyhf':>9s} {'ns/hg':>7s} "
          f"{'pyhf/hg':>8s} {'vec32/env':>9s} {'ns fails':>9s}   (us per step)")
    for metric in METRICS:
        env = make_histfactory_env(ws, channel="SR", sample="signal", reward_metric=metric,
                                   max_steps=10**9)
        env.reset(seed=0)
        env.step(actions[0])  # kernels are compiled (cached) already; warm the caches
        ns = None
        if ns_make is not None:
            ns = ns_make(json.dumps(ws), channel="SR", sample="signal", reward_metric=metric,
                         max_steps=10**9)
        a64 = actions.astype(np.float64)
        t_hg, t_ns, fails = [], [], 0
        for _ in range(args.repeats):
            t_hg.append(time_env(env, actions)[0])
            if ns is not None:
                t, f = time_env(ns, a64)
                t_ns.append(t)
                fails += f
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            pe = PyhfEnv(json.loads(json.dumps(ws)), "SR", "signal", metric)
            t0 = time.perf_counter()
            for a in a64[: args.pyhf_steps]:
                pe.step(a)
            t_py = (time.perf_counter() - t0) / args.pyhf_steps * 1e6
        t_vec = time_vector(metric, ws, 32, max(args.steps // 32, 64))
        hg = min(t_hg)
        nsb = min(t_ns) if t_ns else float("nan")
        print(f"{metric:6s} {hg:9.2f} {nsb:9.2f} {t_py:9.0f} {nsb / hg:7.2f} {t_py / hg:8.0f} "
              f"{t_vec:9.2f} {fails:9d}")


if __name__ == "__main__":
    main()
