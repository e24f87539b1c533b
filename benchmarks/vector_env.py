"""Environment steps per second of histgym's vector environment against its peers, one run.

For every reward metric and N in {1, 16, 256, 4096} (``--ns``), on the seed notebook's 8-bin
workspace (``histgym.example_workspace()``, channel ``SR``, sample ``signal``), uniform random
actions in [-1, 1], episodes of ``max_steps=128`` with autoreset:

| column | what steps |
|---|---|
| ``serial`` / ``parallel`` / ``auto`` | ``HistFactoryVectorEnv(parallel=False / True / None)`` |
| ``sb3`` | ``histgym.sb3.make_vec_env`` (the SB3 ``VecEnv`` adapter, Monitor bookkeeping on) |
| ``sync`` | ``gymnasium.vector.SyncVectorEnv`` over N histgym single environments |
| ``nextstat`` | SB3 ``DummyVecEnv`` over N ``nextstat.gym`` environments behind a Gymnasium shim |

``sync`` and ``nextstat`` build one environment per row, so they run only up to
``--max-peer-n`` rows (default 256; their rate per row does not depend on N). Ratios are
printed against ``nextstat`` and ``sync`` at the same N when measured, else at the largest N
where they were. ``--cold`` also times, in a fresh process with an empty numba cache
directory, ``import histgym`` plus the first reset and step of every metric (what a fresh
install pays once). Usage::

    python benchmarks/vector_env.py [--seconds 1.0] [--ns 1,16,256,4096] [--metrics nll,q0]
    python benchmarks/vector_env.py --cold-only
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import subprocess
import sys
import tempfile
import time
import warnings
from typing import Any

import numpy as np

METRICS = ("nll", "q0", "z0", "qmu", "zmu")
KW = dict(channel="SR", sample="signal", max_steps=128)


def _rate(step: Any, n: int, actions: np.ndarray, seconds: float) -> float:
    """Environment steps per second of ``step(actions[k])`` over at least ``seconds``."""
    step(actions[0])  # warm (compiles on first use)
    k = 0
    done = 0
    t0 = time.perf_counter()
    while True:
        step(actions[k % len(actions)])
        k += 1
        done += n
        dt = time.perf_counter() - t0
        if dt >= seconds:
            return done / dt


def _actions(n: int, n_y: int, reps: int = 16) -> np.ndarray:
    rng = np.random.default_rng(0)
    return rng.uniform(-1.0, 1.0, (reps, n, n_y)).astype(np.float32)


class NextstatShim:
    """``nextstat.gym``'s environment as a ``gymnasium.Env`` (it is not one; SB3 refuses it).

    A step whose fit fails raises in nextstat; the shim then ends the episode (truncated)
    with the previous observation and reward 0, so that the vector environment goes on.
    """

    def __new__(cls, ws_json: str, metric: str) -> Any:
        import gymnasium
        import nextstat.gym as ng

        class _Shim(gymnasium.Env):  # type: ignore[misc]
            def __init__(self) -> None:
                self.env = ng.make_histfactory_env(ws_json, reward_metric=metric, **KW)
                self.observation_space = gymnasium.spaces.Box(0.0, np.inf, (8,), np.float64)
                self.action_space = gymnasium.spaces.Box(-1.0, 1.0, (8,), np.float32)
                self.failures = 0
                self._obs = np.zeros(8)

            def reset(self, *, seed: int | None = None, options: Any = None) -> Any:
                obs, info = self.env.reset(seed=seed)
                self._obs = np.asarray(obs, dtype=np.float64)
                return self._obs, dict(info)

            def step(self, action: Any) -> Any:
                try:
                    obs, r, term, trunc, info = self.env.step(np.asarray(action, np.float64))
                except Exception:  # noqa: BLE001 - nextstat raises on failed fits
                    self.failures += 1
                    return self._obs, 0.0, False, True, {}
                self._obs = np.asarray(obs, dtype=np.float64)
                return self._obs, float(r), bool(term), bool(trunc), dict(info)

        return _Shim()


def measure(metrics: list[str], ns: list[int], seconds: float, max_peer_n: int,
            peers: bool) -> list[dict[str, Any]]:
    import gymnasium
    from stable_baselines3.common.vec_env import DummyVecEnv

    import histgym
    import histgym.sb3
    from histgym.envs import HistFactoryVectorEnv, make_histfactory_env

    ws = histgym.example_workspace()
    ws_json = json.dumps(ws)
    rows = []
    for metric in metrics:
        kw = dict(KW, reward_metric=metric)
        for n in ns:
            acts = _actions(n, 8)
            row: dict[str, Any] = {"metric": metric, "n": n}
            for name, par in (("serial", False), ("parallel", True), ("auto", None)):
                venv = HistFactoryVectorEnv(ws, num_envs=n, parallel=par, **kw)
                venv.reset(seed=0)
                row[name] = _rate(venv.step, n, acts, seconds)
            sb3 = histgym.sb3.make_vec_env(ws, n_envs=n, seed=0, env_kwargs=kw)
            sb3.reset()
            row["sb3"] = _rate(lambda a: (sb3.step_async(a), sb3.step_wait()), n, acts, seconds)
            if peers and n <= max_peer_n:
                sync = gymnasium.vector.SyncVectorEnv(
                    [lambda: make_histfactory_env(ws, **kw) for _ in range(n)])
                sync.reset(seed=0)
                row["sync"] = _rate(sync.step, n, acts, seconds)
                try:
                    dummy = DummyVecEnv([lambda: NextstatShim(ws_json, metric)
                                         for _ in range(n)])
                    dummy.reset()
                    row["nextstat"] = _rate(
                        lambda a: (dummy.step_async(a), dummy.step_wait()), n, acts, seconds)
                    row["nextstat_failures"] = sum(e.failures for e in dummy.envs)
                except ImportError:
                    row["nextstat"] = None
            rows.append(row)
            print(_fmt_row(row), flush=True)
            # free this row's environments: thousands of live peer objects would make the
            # garbage collector's full passes (triggered by the adapter's per-row info dicts)
            # slow down every later measurement
            venv = sb3 = sync = dummy = None
            gc.collect()
    return rows


COLS = ("serial", "parallel", "auto", "sb3", "sync", "nextstat")


def _fmt(v: Any) -> str:
    return f"{v:>12,.0f}" if isinstance(v, float) else f"{'-':>12}"


def _fmt_row(row: dict[str, Any]) -> str:
    return f"{row['metric']:>5} {row['n']:>5} " + "".join(_fmt(row.get(c)) for c in COLS)


def ratios(rows: list[dict[str, Any]]) -> None:
    """Print best-histgym / peer ratios (peer taken at the same N, else its largest N)."""
    print("\nratios (histgym best of serial/parallel/auto, and the SB3 adapter, over the peers)")
    print(f"{'metric':>6} {'N':>5} {'best/nextstat':>14} {'sb3/nextstat':>13} "
          f"{'best/sync':>10} {'sb3/sync':>9}")
    for r in rows:
        peer = {}
        for c in ("nextstat", "sync"):
            cands = [x for x in rows if x["metric"] == r["metric"] and x.get(c)]
            same = [x for x in cands if x["n"] == r["n"]]
            pick = same or sorted(cands, key=lambda x: x["n"])[-1:]
            peer[c] = pick[0][c] if pick else None
        best = max(r["serial"], r["parallel"], r["auto"])

        def q(a: float, b: Any) -> str:
            return f"{a / b:>8.1f}x" if b else f"{'-':>9}"

        print(f"{r['metric']:>6} {r['n']:>5} {q(best, peer['nextstat']):>14} "
              f"{q(r['sb3'], peer['nextstat']):>13} {q(best, peer['sync']):>10} "
              f"{q(r['sb3'], peer['sync']):>9}")


COLD = r"""
import time
t0 = time.perf_counter()
import numpy as np
import histgym
from histgym.envs import make_histfactory_env, HistFactoryVectorEnv
print("import", round(time.perf_counter() - t0, 2), flush=True)
ws = histgym.example_workspace()
for metric in ("nll", "q0", "z0", "qmu", "zmu"):
    t = time.perf_counter()
    env = make_histfactory_env(ws, channel="SR", sample="signal", reward_metric=metric)
    env.reset(seed=0)
    env.step(np.zeros(8, np.float32))
    venv = HistFactoryVectorEnv(ws, num_envs=4, channel="SR", sample="signal",
                                reward_metric=metric)
    venv.reset(seed=0)
    venv.step(np.zeros((4, 8)))
    print(metric, round(time.perf_counter() - t, 2), flush=True)
print("total", round(time.perf_counter() - t0, 2), "cpu", round(time.process_time(), 2))
"""


def cold() -> None:
    """Time import + first steps in a fresh process with an empty numba cache directory."""
    with tempfile.TemporaryDirectory() as cache:
        env = dict(os.environ, NUMBA_CACHE_DIR=cache)
        t = time.perf_counter()
        out = subprocess.run([sys.executable, "-c", COLD], env=env, capture_output=True,
                             text=True, check=True).stdout
        wall = time.perf_counter() - t
        print("\ncold start (empty numba cache): " + ", ".join(out.split("\n")).strip(", "))
        print(f"cold start wall time of the process: {wall:.1f} s")
        t = time.perf_counter()
        subprocess.run([sys.executable, "-c", COLD], env=env, capture_output=True, check=True)
        print(f"same, second process (numba cache filled): {time.perf_counter() - t:.1f} s")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--seconds", type=float, default=1.0)
    ap.add_argument("--ns", default="1,16,256,4096")
    ap.add_argument("--metrics", default=",".join(METRICS))
    ap.add_argument("--max-peer-n", type=int, default=256)
    ap.add_argument("--no-peers", action="store_true")
    ap.add_argument("--cold", action="store_true", help="also time a cold start")
    ap.add_argument("--cold-only", action="store_true")
    ap.add_argument("--json", help="write the rows to this file")
    args = ap.parse_args()
    warnings.simplefilter("ignore")
    print(f"load average {os.getloadavg()}, {os.cpu_count()} cpus")
    if not args.cold_only:
        print(f"{'metric':>5} {'N':>5} " + "".join(f"{c:>12}" for c in COLS)
              + "   (env-steps/s)")
        rows = measure(args.metrics.split(","), [int(x) for x in args.ns.split(",")],
                       args.seconds, args.max_peer_n, not args.no_peers)
        ratios(rows)
        if args.json:
            with open(args.json, "w", encoding="utf-8") as fh:
                json.dump(rows, fh, indent=1)
    if args.cold or args.cold_only:
        cold()
    print(f"load average {os.getloadavg()}")


if __name__ == "__main__":
    main()
