"""Speed of the analysis-design environment (cuts and binning on events), next to per-step
rebuilds with pyhf and with cabinetry, measured in one run.

    PYTHONPATH=src python benchmarks/analysis_env.py [--sizes 10000 100000 1000000] [--quick]

For each number of events per process (built-in toy: 3 processes, 3 tunable thresholds, an
energy-scale shape systematic as shifted observables, 8 bins), with uniform random actions:

* histgym single env: ``env.step`` per second (the whole step: incremental histograms,
  model update, two Newton fits for the profiled Z0, observation and info), per wall-clock
  second and per CPU second of the process (the two differ on a busy machine), median of
  ``--repeats`` (3) runs of the same trajectory;
* histgym vector env (8 rows, serial): env-steps per second;
* pyhf rebuild: per step, histograms with ``np.histogram`` (nominal, sum w^2, variations),
  the pyhf workspace, ``pyhf.Workspace(...).model()`` and the Z0 from
  ``pyhf.infer.test_statistics.q0`` on Asimov data; the median time of at least
  ``--peer-min`` (10) rebuilds and ``--peer-seconds`` (5 s) of rebuilding, wall-clock and CPU
  time of the process;
* cabinetry rebuild (at 1e5 events only): per step, cabinetry's template building from a ROOT
  file written with uproot, its workspace and ``cabinetry.fit.significance`` (expected Z0).

Every rebuild step is checked against the environment's value (same cuts and edges).
Ratios are histgym steps/s over the peer's, wall-clock and per CPU second (the latter does not
depend on how the machine is shared during the run).
"""

from __future__ import annotations

import argparse
import math
import os
import tempfile
import time
import warnings
from pathlib import Path

import numpy as np


def pyhf_rebuild_z0(events, analysis, cuts, edges):
    """The pyhf peer: everything rebuilt from the events for one analysis."""
    import pyhf

    samples = []
    for p, c in events.items():
        sel = (c["score"] > cuts[0]) & (c["pt"] > cuts[1]) & (c["pt"] < cuts[2])
        w = c["weight"][sel]
        nom, _ = np.histogram(c["mass"][sel], bins=edges, weights=w)
        s2, _ = np.histogram(c["mass"][sel], bins=edges, weights=w * w)
        up, _ = np.histogram(c["mass_up"][sel], bins=edges, weights=w)
        dn, _ = np.histogram(c["mass_down"][sel], bins=edges, weights=w)
        nu, nd = up.sum() / nom.sum(), dn.sum() / nom.sum()
        mods = [{"name": "staterror_SR", "type": "staterror", "data": np.sqrt(s2).tolist()},
                {"name": "mass_scale", "type": "normsys", "data": {"hi": nu, "lo": nd}},
                {"name": "mass_scale", "type": "histosys",
                 "data": {"hi_data": (up / nu).tolist(), "lo_data": (dn / nd).tolist()}}]
        if p == "signal":
            mods.append({"name": "mu", "type": "normfactor", "data": None})
        if p == "resonant":
            mods.append({"name": "resonant_norm", "type": "normsys", "data": {"hi": 1.1, "lo": 0.9}})
        samples.append({"name": p, "data": nom.tolist(), "modifiers": mods})
    obs = np.sum([s["data"] for s in samples], axis=0).tolist()
    ws = pyhf.Workspace({
        "channels": [{"name": "SR", "samples": samples}],
        "observations": [{"name": "SR", "data": obs}],
        "measurements": [{"name": "m", "config": {"poi": "mu", "parameters": []}}],
        "version": "1.0.0",
    })
    m = ws.model()
    d = ws.data(m)
    q0 = pyhf.infer.test_statistics.q0(0.0, d, m, m.config.suggested_init(),
                                       m.config.suggested_bounds(), m.config.suggested_fixed())
    return math.sqrt(max(float(q0), 0.0))


def cabinetry_rebuild_z0(folder, cuts, edges, router):
    """The cabinetry peer: templates from the ROOT file, workspace, expected significance."""
    import cabinetry

    config = {
        "General": {"Measurement": "toy", "POI": "mu", "InputPath": str(folder / "{SamplePath}"),
                    "HistogramFolder": str(folder / "histograms")},
        "Regions": [{"Name": "SR", "Variable": "mass", "Binning": [float(e) for e in edges],
                     "Filter": f"(score > {float(cuts[0])!r}) & (pt > {float(cuts[1])!r}) & "
                               f"(pt < {float(cuts[2])!r})"}],
        "Samples": [{"Name": "Data", "Tree": "signal", "SamplePath": "toy.root", "Data": True}]
        + [{"Name": p, "Tree": p, "SamplePath": "toy.root", "Weight": "weight"}
           for p in ("signal", "continuum", "resonant")],
        "NormFactors": [{"Name": "mu", "Samples": "signal", "Nominal": 1, "Bounds": [0, 10]}],
        "Systematics": [
            {"Name": "resonant_norm", "Type": "Normalization", "Samples": "resonant",
             "Up": {"Normalization": 0.1}, "Down": {"Normalization": -0.1}},
            {"Name": "mass_scale", "Type": "NormPlusShape", "Up": {"Variable": "mass_up"},
             "Down": {"Variable": "mass_down"}},
        ],
    }
    cabinetry.templates.build(config, method="uproot", router=router)
    cabinetry.templates.postprocess(config)
    ws = cabinetry.workspace.build(config)
    model, data = cabinetry.model_utils.model_and_data(ws, asimov=True)
    return float(cabinetry.fit.significance(model, data).observed_significance)


def _router(folder):
    """cabinetry's builder with the Filter applied by numpy (uproot's cut= is ignored here;
    see tests/envs/test_analysis_cabinetry.py)."""
    import boost_histogram as bh
    import cabinetry
    import uproot
    from cabinetry.templates import builder as B

    router = cabinetry.route.Router()

    @router.register_template_builder()
    def build(region, sample, systematic, template):
        var = B._variable(region, sample, systematic, template)
        filt = B._filter(region, sample, systematic, template)
        weight = B._weight(region, sample, systematic, template)
        tree = B._position_in_file(sample, systematic, template)
        arrays = uproot.open(folder / sample["SamplePath"])[tree].arrays(library="np")
        sel = eval(filt, {}, dict(arrays)) if filt else slice(None)  # noqa: S307
        h = bh.Histogram(bh.axis.Variable(B._binning(region)), storage=bh.storage.Weight())
        h.fill(arrays[var][sel], weight=arrays[weight][sel] if weight else None)
        return h

    return router


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--sizes", type=int, nargs="+", default=[10_000, 100_000, 1_000_000])
    ap.add_argument("--quick", action="store_true", help="fewer steps")
    ap.add_argument("--repeats", type=int, default=3,
                    help="runs of the single-env trajectory (median)")
    ap.add_argument("--peer-min", type=int, default=10, help="at least this many pyhf rebuilds")
    ap.add_argument("--peer-seconds", type=float, default=5.0,
                    help="and at least this many seconds of pyhf rebuilds")
    args = ap.parse_args()

    from histgym.envs.analysis import AnalysisCore, AnalysisEnv, AnalysisVectorEnv
    from histgym.events import toy_analysis, toy_events

    rows = []
    for n in args.sizes:
        t0 = time.perf_counter()
        core = AnalysisCore(toy_analysis(n_events=n))
        t_build = time.perf_counter() - t0
        env = AnalysisEnv(core=core, max_steps=10**9)
        rng = np.random.default_rng(0)
        n_steps = (300 if args.quick else 2000) if n <= 100_000 else (100 if args.quick else 500)
        acts = rng.uniform(-1, 1, (n_steps, core.n_action)).astype(np.float32)
        env.reset(seed=0)
        for a in acts[:20]:  # warm up (compilation is cached on disk)
            env.step(a)
        runs, runs_cpu = [], []
        for _ in range(args.repeats):  # the same trajectory; median over the repeats
            env.reset(seed=0)
            t = time.perf_counter()
            c = time.process_time()
            for a in acts:
                _, r, _, _, info = env.step(a)
            runs.append(n_steps / (time.perf_counter() - t))
            runs_cpu.append(n_steps / (time.process_time() - c))
        single = float(np.median(runs))
        single_cpu = float(np.median(runs_cpu))
        assert math.isfinite(r)
        vec = AnalysisVectorEnv(core=core, num_envs=8, max_steps=10**9)
        vec.reset(seed=0)
        va = rng.uniform(-1, 1, (max(n_steps // 8, 10), 8, core.n_action))
        t = time.perf_counter()
        for a in va:
            vec.step(a)
        vector = va.shape[0] * 8 / (time.perf_counter() - t)

        # peers, on the analyses the environment visits (checked against its values): at
        # least --peer-min rebuilds and --peer-seconds of rebuilding, median time per rebuild
        events = toy_events(0, n)
        env.reset(seed=0)
        wall, cpu = [], []
        for a in acts:
            if len(wall) >= args.peer_min and sum(wall) >= args.peer_seconds:
                break
            _, _, _, _, info = env.step(a)
            t = time.perf_counter()
            c = time.process_time()
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                z = pyhf_rebuild_z0(events, core.analysis, env.cuts, env.edges)
            cpu.append(time.process_time() - c)
            wall.append(time.perf_counter() - t)
            assert abs(z - info["value"]) <= 1e-4 * max(1.0, z), (z, info["value"])
        pyhf_rate = 1.0 / float(np.median(wall))
        pyhf_cpu = 1.0 / float(np.median(cpu))
        n_pyhf = len(wall)
        cab_rate = float("nan")
        if n == 100_000:
            import uproot

            with tempfile.TemporaryDirectory() as tmp:
                folder = Path(tmp)
                with uproot.recreate(folder / "toy.root") as f:
                    for p, cols in events.items():
                        f[p] = cols
                router = _router(folder)
                env.reset(seed=0)
                t_cab = 0.0
                k = 3
                for a in acts[:k]:
                    _, _, _, _, info = env.step(a)
                    t = time.perf_counter()
                    with warnings.catch_warnings():
                        warnings.simplefilter("ignore")
                        z = cabinetry_rebuild_z0(folder, env.cuts, env.edges, router)
                    t_cab += time.perf_counter() - t
                    assert abs(z - info["value"]) <= 1e-3 * max(1.0, z), (z, info["value"])
                cab_rate = k / t_cab
        rows.append((n, t_build, single, single_cpu, vector, pyhf_rate, pyhf_cpu, n_pyhf,
                     cab_rate))
        print(f"{n:>9d} events/process: build {t_build:6.1f} s | single {single:8.0f} steps/s "
              f"({single_cpu:.0f} per CPU second) | "
              f"vector(8) {vector:8.0f} steps/s | pyhf rebuild {pyhf_rate:7.2f}/s "
              f"({pyhf_cpu:.2f} per CPU s, median of {n_pyhf}) "
              f"(x{single / pyhf_rate:,.0f}; per CPU s x{single_cpu / pyhf_cpu:,.0f}) | "
              f"cabinetry {cab_rate:7.3f}/s (x{single / cab_rate:,.0f}) | load "
              f"{os.getloadavg()[0]:.1f}", flush=True)
    print()
    print("| events/process | build (s) | single env steps/s (per CPU s) | vector env (8) steps/s | "
          "pyhf rebuild /s (per CPU s; rebuilds) | cabinetry /s | single / pyhf (per CPU s) | "
          "single / cabinetry |")
    print("|---|---|---|---|---|---|---|---|")
    for n, tb, s, sc, v, p, pc, npf, c in rows:
        cr = f"{s / c:,.0f}" if c == c else "-"
        cs = f"{c:.3f}" if c == c else "-"
        print(f"| {n:,} | {tb:.1f} | {s:,.0f} ({sc:,.0f}) | {v:,.0f} | {p:.2f} ({pc:.2f}; {npf}) | "
              f"{cs} | {s / p:,.0f} ({sc / pc:,.0f}) | {cr} |")
    print(f"(load average during the run: {os.getloadavg()[0]:.1f} on {os.cpu_count()} cores; "
          "steps per CPU second is the rate without time-sharing)")


if __name__ == "__main__":
    main()
