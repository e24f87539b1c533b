"""Soak test: 10^7 environment steps of the vector environment with a flat resident set size.

Steps ``HistFactoryVectorEnv`` (and, with ``--sb3``, the SB3 adapter) on the built-in 8-bin
example with random actions, autoresetting episodes, and prints the RSS (from
``/proc/self/statm``) every ``--report`` steps. Exits 1 if the RSS grew by more than
``--max-growth-mb`` between the first report (after warm-up) and the last. Not a unit test:
it takes minutes. Usage::

    python benchmarks/soak_vector_env.py [--steps 10000000] [--num-envs 4096] [--metric nll]
"""

from __future__ import annotations

import argparse
import os
import sys
import time

import numpy as np


def rss_mb() -> float:
    """Resident set size of this process in MiB (Linux ``/proc/self/statm``)."""
    with open("/proc/self/statm", encoding="ascii") as fh:
        pages = int(fh.read().split()[1])
    return pages * os.sysconf("SC_PAGE_SIZE") / 2**20


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--steps", type=float, default=1e7, help="environment steps in total")
    ap.add_argument("--num-envs", type=int, default=4096)
    ap.add_argument("--metric", default="nll")
    ap.add_argument("--autoreset", default="NextStep")
    ap.add_argument("--sb3", action="store_true", help="step the SB3 adapter instead")
    ap.add_argument("--report", type=float, default=1e6)
    ap.add_argument("--max-growth-mb", type=float, default=5.0)
    args = ap.parse_args()

    import histgym
    from histgym.envs import HistFactoryVectorEnv

    n = args.num_envs
    kw = dict(channel="SR", sample="signal", reward_metric=args.metric, max_steps=128,
              init_noise=0.05)
    if args.sb3:
        import histgym.sb3

        env = histgym.sb3.make_vec_env(histgym.example_workspace(), n_envs=n, seed=0,
                                       env_kwargs=kw)
        env.reset()

        def step(a: np.ndarray) -> None:
            env.step_async(a)
            env.step_wait()
    else:
        env = HistFactoryVectorEnv(histgym.example_workspace(), num_envs=n,
                                   autoreset_mode=args.autoreset, **kw)
        env.reset(seed=0)
        step = env.step  # type: ignore[assignment]
    rng = np.random.default_rng(0)
    acts = rng.uniform(-1, 1, (8, n, 8)).astype(np.float32)
    step(acts[0])
    done = 0
    next_report = 0.0
    first = None
    t0 = time.perf_counter()
    k = 0
    while done < args.steps:
        step(acts[k % 8])
        k += 1
        done += n
        if done >= next_report:
            r = rss_mb()
            first = r if first is None else first
            rate = done / (time.perf_counter() - t0)
            print(f"{done:>12,d} steps  RSS {r:8.1f} MiB  {rate:12,.0f} steps/s", flush=True)
            next_report += args.report
    last = rss_mb()
    growth = last - (first or last)
    print(f"RSS growth after warm-up: {growth:+.1f} MiB over {done:,d} steps "
          f"(limit {args.max_growth_mb} MiB)")
    return 0 if growth <= args.max_growth_mb else 1


if __name__ == "__main__":
    sys.exit(main())
