"""Upper limit on a large, 2-parameter model (issue 10, defect 13): time per stage.

A single channel of N bins, a signal with the POI ``mu`` (normfactor) over a background with a
normsys; observed data = rounded background.  Prints the wall time of the build (mostly pyhf's
schema validation, see issue 12), one fit, one hypotest and the CLs upper limit (observed and
the 5-point expected band), and how many CLs evaluations the root finding needed.  With
``--pyhf-bins M`` pyhf's ``upper_limit`` on the same model at M bins is timed for a ratio.

    python benchmarks/limit_scale.py --bins 1000000
    python benchmarks/limit_scale.py --bins 20000 --pyhf-bins 20000
"""

from __future__ import annotations

import argparse
import time
from typing import Any

import numpy as np


def workspace(n: int, seed: int = 0) -> dict[str, Any]:
    rng = np.random.default_rng(seed)
    b = rng.uniform(50, 100, n)
    s = rng.uniform(0, 1, n)
    return {
        "channels": [{"name": "SR", "samples": [
            {"name": "signal", "data": s.tolist(),
             "modifiers": [{"name": "mu", "type": "normfactor", "data": None}]},
            {"name": "bkg", "data": b.tolist(),
             "modifiers": [{"name": "bn", "type": "normsys", "data": {"hi": 1.05, "lo": 0.95}}]},
        ]}],
        "observations": [{"name": "SR", "data": np.round(b).tolist()}],
        "measurements": [{"name": "m", "config": {"poi": "mu", "parameters": []}}],
        "version": "1.0.0",
    }  # fmt: skip


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--bins", type=int, default=1_000_000)
    ap.add_argument("--pyhf-bins", type=int, default=0, help="also time pyhf at this size")
    args = ap.parse_args()

    import histgym
    from histgym import infer

    ws = workspace(args.bins)
    t0 = time.perf_counter()
    model = histgym.from_pyhf(ws)
    t1 = time.perf_counter()
    histgym.fit(model)
    t2 = time.perf_counter()
    infer.hypotest(1.0, model)
    t3 = time.perf_counter()
    lim = infer.upper_limit(model)
    t4 = time.perf_counter()
    print(f"histgym, {args.bins} bins, 2 parameters")
    print(f"  build {t1 - t0:.2f} s, fit {t2 - t1:.2f} s, hypotest {t3 - t2:.2f} s, "
          f"upper_limit {t4 - t3:.2f} s ({lim.n_evaluations} CLs evaluations, "
          f"converged={lim.converged})")  # fmt: skip
    print(f"  observed {lim.obs:.5g}, expected {[round(v, 5) for v in lim.exp]}")
    if args.pyhf_bins:
        import pyhf

        pyhf.set_backend("numpy", "scipy")
        small = workspace(args.pyhf_bins)
        w = pyhf.Workspace(small)
        pm = w.model()
        data = w.data(pm)
        t0 = time.perf_counter()
        obs, exp = pyhf.infer.intervals.upper_limits.upper_limit(data, pm, scan=None)
        t1 = time.perf_counter()
        hm = histgym.from_pyhf(small)
        t2 = time.perf_counter()
        lim = infer.upper_limit(hm)
        t3 = time.perf_counter()
        print(f"at {args.pyhf_bins} bins: pyhf upper_limit {t1 - t0:.2f} s, histgym "
              f"{t3 - t2:.2f} s: {(t1 - t0) / (t3 - t2):.1f}x; observed {float(obs):.5g} vs "
              f"{lim.obs:.5g}")  # fmt: skip


if __name__ == "__main__":
    main()
