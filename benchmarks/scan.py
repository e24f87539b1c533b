"""Scan benchmark (issue 12): a whole signal grid on a real background, and the builds.

Measured in one run, on the ATLAS 1Lbb background (``../shared/data/raw/
atlas_susy2019_08_1Lbb_BkgOnly.json``) with a synthetic signal grid of ``--points`` points
(default 104; ``histgym.scan.synthetic.signal_grid``: a signal sample in every channel with
the measurement's POI, lumi, the channel's staterror, a normsys and a histosys):

- builds: ``histgym.from_pyhf`` of the published 1Lbb signal workspace (JSON text) vs
  ``nextstat.from_pyhf`` (JSON text) vs ``pyhf.Workspace(ws).model()``; and one signal patch
  applied to the compiled background (``histgym.patchset.Background.model``) vs building the
  patched workspace from scratch (median over the grid's patches);
- the grid: CLs at mu=1 with its expected band, observed + expected upper limits, Z0 for
  every point, wall time of ``histgym.scan.scan`` with 1 and 2 local processes and on a local
  Ray with 1 and 2 CPUs (``ray.init(num_cpus=n)``; Ray's start-up is timed separately);
- the per-point breakdown (``--breakdown N`` points, in one process with one numba thread):
  patch applied, CLs + band alone, upper limits alone, both from the same fits as a scan
  point computes them (``histgym.infer.limits.hypotest_and_limit``), Z0 alone and reusing
  their fits (``histgym.infer.pointfits.significance``), and the CLs evaluations of
  ``upper_limit``;
- pyhf, sequential: ``pyhf.infer.hypotest(1, ..., return_expected_set=True)``,
  ``pyhf.infer.intervals.upper_limits.upper_limit`` and the q0 hypotest on ``--pyhf-points``
  points (default 2), the model built per point; the time for the whole grid is
  *extrapolated* from those points (printed as such).

Usage::

    python benchmarks/scan.py                 # the full run (~10-20 min on a busy 2-core machine)
    python benchmarks/scan.py --points 24 --pyhf-points 1 --skip-ray   # quicker
    python benchmarks/scan.py --skip-ray --skip-pyhf --jobs 2            # builds, breakdown, grid x2
"""

from __future__ import annotations

import os

for _var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_var, "1")

import argparse  # noqa: E402
import gc  # noqa: E402
import json  # noqa: E402
import statistics  # noqa: E402
import sys  # noqa: E402
import time  # noqa: E402
import warnings  # noqa: E402
from pathlib import Path  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "src"))

import histgym  # noqa: E402
from histgym.patchset import Background, read_patchset  # noqa: E402
from histgym.scan import scan  # noqa: E402
from histgym.scan.synthetic import mass_grid, signal_grid  # noqa: E402

DATA = Path(os.environ.get("HISTGYM_SHARED_DATA", REPO.parent / "shared" / "data"))
if not DATA.is_dir():
    DATA = Path("/work/shared/data")


def timed(f, *a, **k):
    gc.collect()  # the garbage of the previous call is not charged to this one
    t = time.perf_counter()
    out = f(*a, **k)
    return time.perf_counter() - t, out


def table(rows, header):
    widths = [max(len(str(r[i])) for r in rows + [header]) for i in range(len(header))]
    line = lambda r: "  ".join(str(c).ljust(w) if i == 0 else str(c).rjust(w) for i, (c, w) in enumerate(zip(r, widths)))  # noqa: E731
    print(line(header))
    print("  ".join("-" * w for w in widths))
    for r in rows:
        print(line(r))


def bench_builds(grid, bkg_path, repeats):
    import nextstat
    import pyhf

    text = (DATA / "workspaces" / "atlas_susy2019_08_1Lbb__C1N2_Wh_hbb_1000_0.json").read_text()
    histgym.from_pyhf(text)
    nextstat.from_pyhf(text)
    hg, ns = [], []
    for _ in range(repeats):  # interleaved: the machine's load hits both alike
        hg.append(timed(histgym.from_pyhf, text)[0])
        ns.append(timed(nextstat.from_pyhf, text)[0])
    ws = json.loads(text)
    t_pyhf = timed(lambda: pyhf.Workspace(ws).model())[0]
    bkg = Background(bkg_path)
    patches = read_patchset(grid)
    t_apply, t_full = [], []
    for p in patches[: min(len(patches), 30)]:
        t_apply.append(timed(bkg.model, p)[0])
        patched = bkg.workspace(p)
        t_full.append(timed(histgym.from_pyhf, patched)[0])
    res = {
        "build_histgym_s": statistics.median(hg),
        "build_nextstat_s": statistics.median(ns),
        "build_pyhf_s": t_pyhf,
        "patch_apply_ms": 1e3 * statistics.median(t_apply),
        "patch_apply_min_ms": 1e3 * min(t_apply),
        "patched_full_build_ms": 1e3 * statistics.median(t_full),
    }
    print("\n== builds (1Lbb, median of %d interleaved runs; pyhf once)" % repeats)
    table(
        [
            ["histgym.from_pyhf (JSON text)", f"{res['build_histgym_s'] * 1e3:.1f} ms", "1.00"],
            ["nextstat.from_pyhf (JSON text)", f"{res['build_nextstat_s'] * 1e3:.1f} ms", f"{res['build_nextstat_s'] / res['build_histgym_s']:.2f}"],
            ["pyhf.Workspace(ws).model()", f"{res['build_pyhf_s'] * 1e3:.0f} ms", f"{res['build_pyhf_s'] / res['build_histgym_s']:.1f}"],
        ],
        ["build", "time", "other/histgym"],
    )
    print(
        f"signal patch on the compiled background: median {res['patch_apply_ms']:.2f} ms (min {res['patch_apply_min_ms']:.2f} ms)"
        f" vs {res['patched_full_build_ms']:.1f} ms for a full build of the patched workspace"
        f" ({res['patched_full_build_ms'] / res['patch_apply_ms']:.1f}x)"
    )
    return res


def bench_breakdown(grid, bkg_path, n):
    """Median time per point of each step, in this process with one numba thread (as a scan
    worker): the patch applied to the compiled background, CLs + band, limits, Z0."""
    import numba

    from histgym import infer
    from histgym.infer.limits import hypotest_and_limit
    from histgym.infer.pointfits import FitMemo, significance

    numba.set_num_threads(1)
    bkg = Background(bkg_path)
    patches = read_patchset(grid)
    step = max(1, len(patches) // n)
    chosen = patches[::step][:n]
    steps = {"patch": [], "cls": [], "limit": [], "z0": [], "cls+limit": [], "z0 shared": []}
    evals = []
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for p in chosen:
            t, model = timed(bkg.model, p)
            steps["patch"].append(t)
            steps["cls"].append(timed(infer.hypotest, 1.0, model)[0])
            t, lim = timed(infer.upper_limit, model)
            steps["limit"].append(t)
            evals.append(lim.n_evaluations)
            steps["z0"].append(timed(infer.significance, model)[0])
            memo = FitMemo()
            steps["cls+limit"].append(timed(hypotest_and_limit, model, memo=memo)[0])
            steps["z0 shared"].append(timed(significance, model, memo)[0])
    med = {k: statistics.median(v) for k, v in steps.items()}
    # a scan point: the patch, CLs and limits from the same fits, Z0 reusing three of them
    # (each of cls, limit, z0 alone is shown for reference)
    total = med["patch"] + med["cls+limit"] + med["z0 shared"]
    alone = ("cls", "limit", "z0")
    print(f"\n== per point, median of {len(chosen)} points (one process, one numba thread)")
    table(
        [[f"({k} alone)" if k in alone else k, f"{1e3 * v:.1f} ms", "" if k in alone else f"{100 * v / total:.1f}%"] for k, v in med.items()]
        + [["scan point (patch + cls+limit + z0 shared)", f"{1e3 * total:.1f} ms", "100%"]],
        ["step", "time", "share"],
    )
    print(f"upper_limit: {statistics.median(evals):.0f} CLs evaluations per point (median)")
    return {"per_point_ms": {k: 1e3 * v for k, v in med.items()}, "limit_evaluations": statistics.median(evals)}


def bench_pyhf(grid, bkg_path, n):
    import pyhf

    ws = pyhf.Workspace(json.loads(Path(bkg_path).read_text()))
    pset = pyhf.PatchSet(grid)
    times = []
    for p in read_patchset(grid)[:n]:
        t0 = time.perf_counter()
        w = pset.apply(ws, p.name)
        m = w.model()
        d = w.data(m)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            pyhf.infer.hypotest(1.0, d, m, test_stat="qtilde", return_expected_set=True)
            pyhf.infer.intervals.upper_limits.upper_limit(d, m, rtol=1e-4)
            pyhf.infer.hypotest(0.0, d, m, test_stat="q0")
        times.append(time.perf_counter() - t0)
    return statistics.mean(times)


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--points", type=int, default=104, help="grid points (>= 100 for the issue's target)")
    ap.add_argument("--pyhf-points", type=int, default=2, help="points pyhf runs (the rest extrapolated)")
    ap.add_argument("--build-repeats", type=int, default=7)
    ap.add_argument("--skip-ray", action="store_true")
    ap.add_argument("--skip-pyhf", action="store_true")
    ap.add_argument("--jobs", default="1,2", help="local process counts to time (comma-separated)")
    ap.add_argument("--breakdown", type=int, default=6, help="points of the per-step breakdown (0: none)")
    ap.add_argument("--json", default=None, help="write the numbers here")
    args = ap.parse_args(argv)

    bkg_path = DATA / "raw" / "atlas_susy2019_08_1Lbb_BkgOnly.json"
    n1 = max(2, round(args.points ** 0.5 * 1.25))
    pts = mass_grid(n1, max(1, -(-args.points // n1)))[: args.points]
    grid = signal_grid(bkg_path, pts)
    print(f"1Lbb background, synthetic grid of {len(pts)} points; {os.cpu_count()} cores; load {os.getloadavg()}")
    out = {"points": len(pts)}
    out.update(bench_builds(grid, bkg_path, args.build_repeats))
    if args.breakdown:
        out.update(bench_breakdown(grid, bkg_path, args.breakdown))

    # warm up the kernels (numba cache) outside the timings
    scan(bkg_path, grid, patches=[read_patchset(grid)[0].name], jobs=1)
    walls = {}
    results = {}
    job_counts = [int(j) for j in args.jobs.split(",") if j]
    for jobs in job_counts:
        t, rows = timed(scan, bkg_path, grid, jobs=jobs)
        walls[f"histgym local, {jobs} process{'es' if jobs > 1 else ''}"] = t
        results[f"local{jobs}"] = rows
    if not args.skip_ray:
        import ray

        for cpus in (1, 2):
            t_init, _ = timed(ray.init, num_cpus=cpus, include_dashboard=False, log_to_driver=False)
            t, rows = timed(scan, bkg_path, grid, ray=True)
            walls[f"histgym Ray, {cpus} CPU{'s' if cpus > 1 else ''} (+{t_init:.1f} s ray.init)"] = t
            results[f"ray{cpus}"] = rows
            ray.shutdown()
    ref = results[f"local{job_counts[0]}"]
    strip = lambda rows: [{k: v for k, v in r.items() if k != "seconds"} for r in rows]  # noqa: E731
    same = {k: json.dumps(strip(v), sort_keys=True) == json.dumps(strip(ref), sort_keys=True) for k, v in results.items()}
    ok = sum(r["fit_ok"] for r in ref)
    excluded = sum(r["cls_obs"] < 0.05 for r in ref)
    if not args.skip_pyhf:
        t_point = bench_pyhf(grid, bkg_path, args.pyhf_points)
        walls[f"pyhf sequential (EXTRAPOLATED from {args.pyhf_points} points)"] = t_point * len(pts)
    base = next(iter(walls.values()))
    print(f"\n== whole grid: {len(pts)} points x (CLs + band, obs + exp limits, Z0); {ok} fits ok; {excluded} excluded")
    table(
        [[k, f"{v:.1f} s", f"{1e3 * v / len(pts):.0f} ms", f"{v / base:.2f}"] for k, v in walls.items()],
        ["run", "wall", "per point", "ratio to first"],
    )
    print(f"tables identical to local x{job_counts[0]}:", same)
    out["walls_s"] = walls
    out["identical_tables"] = same
    if args.json:
        Path(args.json).write_text(json.dumps(out, indent=1))


if __name__ == "__main__":
    main()
