"""Engine benchmark: histgym vs pyhf (numpy + minuit) vs nextstat, measured in the same run.

For each model it times (median over repeats, after a warm-up call that JIT-compiles):

- ``build``      workspace dict -> model (histgym ``from_pyhf``; pyhf ``Workspace(ws).model()``;
                 ``nextstat.from_pyhf(json)``), one call each, timed separately;
- ``nll``        -ln L at the suggested init from Python: ``model.nll(pars)`` (histgym),
                 ``-model.logpdf(pars, data)`` (pyhf), ``model.nll(pars)`` (nextstat);
- ``nll kernel`` histgym's raw numba kernel
                 ``_kernels.likelihood.twice_nll(pars, data, fbuf, ibuf)`` (no checks);
- ``nll+grad``   histgym ``model.nll_and_grad(pars)``; nextstat ``model.nll(p)`` +
                 ``model.grad_nll(p)`` (it has no combined call); pyhf's numpy backend has
                 no gradient (n/a);
- ``fit+unc``    a full maximum-likelihood fit with uncertainties: ``histgym.fit(model)``;
                 ``pyhf.infer.mle.fit(data, model, return_uncertainties=True)`` with
                 ``minuit_optimizer(tolerance=1e-6)`` (minuit HESSE); ``nextstat.fit(model)``.

Ratios are other/histgym: > 1 means histgym is faster.  Sanity checks (the run exits 1 if one
fails): histgym's NLL equals pyhf's within 1e-9 relative, histgym's kernel equals its ``nll``,
and histgym's fitted ``twice_nll`` is <= pyhf's + 1e-6 where pyhf finished.

pyhf fits that are expected to take more than ~30 s (from ``../shared/data/reference.json`` or the
issue's measurements) are skipped unless ``--slow``; the 1319-parameter combined workspace is
never fitted with pyhf (it does not finish in 25 minutes).

Usage::

    python benchmarks/engine.py --quick            # a few minutes
    python benchmarks/engine.py --json out.json    # more repeats
    python benchmarks/engine.py --slow             # also the multi-minute pyhf fits
    python benchmarks/engine.py --models seed gen50
"""

from __future__ import annotations

import os

# one thread everywhere (pyhf/numpy BLAS); nextstat is pinned with set_threads below
for _var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_var, "1")

import argparse  # noqa: E402
import datetime  # noqa: E402
import importlib.util  # noqa: E402
import json  # noqa: E402
import math  # noqa: E402
import platform  # noqa: E402
import statistics  # noqa: E402
import sys  # noqa: E402
import time  # noqa: E402
import timeit  # noqa: E402
import warnings  # noqa: E402
from collections.abc import Callable  # noqa: E402
from pathlib import Path  # noqa: E402
from typing import Any  # noqa: E402

import numpy as np  # noqa: E402

import histgym  # noqa: E402
from histgym._kernels.likelihood import twice_nll as kernel_twice_nll  # noqa: E402

HERE = Path(__file__).resolve().parent
DEFAULT_DATA = HERE.parent.parent / "shared" / "data"


def _load_generator() -> Any:
    spec = importlib.util.spec_from_file_location(
        "histgym_benchmarks_generate", HERE / "generate.py"
    )
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


# name -> (source, pyhf fit estimate in s if known, or None = did not finish / unknown)
REAL = {
    "1Lbb_Wh_1000_0": "atlas_susy2019_08_1Lbb__C1N2_Wh_hbb_1000_0",
    "EWKinos_SR2l": "atlas_susy2018_16_compressedEWK_EWKinos_SR2l__SModelS_signal",
    "3L_offshell": "atlas_susy2019_09_3L_offshell__synthetic_signal",
    "combined_stress": "combined_stress_10_atlas_models",
}
GENERATED = {"gen50": 50, "gen500": 500}
#: pyhf+minuit fit times measured on this machine (issue 2) for the generated models
GENERATED_PYHF_FIT_S = {"gen50": 5.0, "gen500": 474.0}
ALL_MODELS = ["seed", *GENERATED, *REAL]
NEVER_PYHF_FIT = {"combined_stress"}  # pyhf did not finish a fit in 25 minutes
SLOW_S = 30.0


# ----------------------------------------------------------------------------- timing
def time_fast(
    fn: Callable[..., Any], args: tuple[Any, ...], *, repeats: int, min_time: float
) -> float:
    """Median seconds per call of ``fn(*args)``, timeit-style loops of >= ``min_time`` seconds."""
    names = [f"a{i}" for i in range(len(args))]
    ns = {"f": fn, **dict(zip(names, args, strict=True))}
    timer = timeit.Timer(f"f({', '.join(names)})", globals=ns)
    t0 = time.perf_counter()
    fn(*args)
    one = time.perf_counter() - t0
    number = max(1, int(min_time / max(one, 1e-9)))
    while True:  # calibrate on a clean measurement
        t = timer.timeit(number)
        if t >= 0.5 * min_time or number > 10**8:
            break
        number *= 2
    return statistics.median(timer.repeat(repeats, number)) / number


def time_slow(fn: Callable[[], Any], *, repeats: int, budget: float) -> tuple[float, Any, int]:
    """Median seconds of ``fn()`` over up to ``repeats`` calls (>= 1; stops after ``budget`` s).

    Calls faster than 1 ms are timed in loops instead (as :func:`time_fast`, >= 0.2 s each):
    single calls of a few microseconds measure the timer and the scheduler, not the fit.

    Returns (median, last result, number of calls).
    """
    t0 = time.perf_counter()
    result = fn()
    if time.perf_counter() - t0 < 1e-3:
        return time_fast(fn, (), repeats=repeats, min_time=0.2), result, repeats
    times: list[float] = []
    start = time.perf_counter()
    for _ in range(repeats):
        t0 = time.perf_counter()
        result = fn()
        times.append(time.perf_counter() - t0)
        if time.perf_counter() - start > budget:
            break
    return statistics.median(times), result, len(times)


def once(fn: Callable[[], Any]) -> tuple[float, Any]:
    t0 = time.perf_counter()
    result = fn()
    return time.perf_counter() - t0, result


# ----------------------------------------------------------------------------- engines
def bench_model(
    name: str, ws: dict[str, Any], opts: argparse.Namespace, pyhf_fit_estimate: float | None
) -> dict[str, Any]:
    import nextstat
    import pyhf

    quick = opts.quick
    reps_fast = 3 if quick else 7
    min_time = 0.05 if quick else 0.2
    reps_fit = 3 if quick else 7
    fit_budget = 10.0 if quick else 30.0
    rec: dict[str, Any] = {"model": name, "times": {}, "checks": {}, "notes": []}
    T = rec["times"]

    def note(msg: str) -> None:
        rec["notes"].append(msg)
        print(f"    note: {msg}", flush=True)

    # ---------------- build (each timed separately, once)
    print(f"[{name}] building histgym model ...", flush=True)
    T["build", "histgym"], model = once(lambda: histgym.from_pyhf(ws))
    rec["n_params"] = model.n_params
    rec["n_bins"] = model.n_bins
    pars = model.suggested_init()
    data = model.observed_data()

    build_pyhf_estimate = 160.0 if name == "combined_stress" else 0.0
    if build_pyhf_estimate > SLOW_S and not opts.slow:
        # histgym.from_pyhf has just built the same pyhf model (it reads the format through pyhf)
        pmodel = model.pyhf_model
        pdata = np.asarray(data, dtype=float)
        note("pyhf build not re-timed (~160 s; histgym's build includes it); pyhf model reused")
    else:
        print(f"[{name}] building pyhf model ...", flush=True)

        def build_pyhf() -> tuple[Any, Any]:
            w = pyhf.Workspace(ws)
            m = w.model()
            return m, np.asarray(w.data(m), dtype=float)

        T["build", "pyhf"], (pmodel, pdata) = once(build_pyhf)
    print(f"[{name}] building nextstat model ...", flush=True)
    try:
        text = json.dumps(ws)
        T["build", "nextstat"], nmodel = once(lambda: nextstat.from_pyhf(text))
    except Exception as exc:  # the reference may not read every workspace
        nmodel = None
        note(f"nextstat.from_pyhf failed: {type(exc).__name__}: {exc}")

    # ---------------- warm up (JIT compile) histgym, check values
    t_warm, _ = once(
        lambda: (
            model.nll(pars),
            model.nll_and_grad(pars),
            kernel_twice_nll(pars, data, model.fbuf, model.ibuf),
        )
    )
    rec["histgym_first_call_s"] = t_warm
    hg_nll = model.nll(pars)
    hg_kernel = 0.5 * float(kernel_twice_nll(pars, data, model.fbuf, model.ibuf))
    py_nll = -float(pmodel.logpdf(pars, pdata)[0])
    rec["nll_init"] = {"histgym": hg_nll, "pyhf": py_nll}
    rec["checks"]["nll == pyhf (rel 1e-9)"] = abs(hg_nll - py_nll) <= 1e-9 * max(abs(py_nll), 1.0)
    rec["checks"]["kernel == nll (rel 1e-12)"] = abs(hg_kernel - hg_nll) <= 1e-12 * max(
        abs(hg_nll), 1.0
    )
    ns_pars = pars
    ns_poi: int | None = None
    if nmodel is not None:
        # nextstat orders parameters its own way (POI first, ...): map by name
        ns_names = list(nmodel.parameter_names())
        if sorted(ns_names) != sorted(model.parameter_names):
            note("nextstat's parameter names differ from pyhf's; nextstat skipped")
            nmodel = None
        else:
            index = {n: i for i, n in enumerate(model.parameter_names)}
            perm = np.array([index[n] for n in ns_names])
            ns_pars = np.ascontiguousarray(pars[perm])
            ns_poi = (
                None
                if model.poi_index is None
                else ns_names.index(model.parameter_names[model.poi_index])
            )
    if nmodel is not None:
        try:
            ns_nll = float(nmodel.nll(ns_pars))
            rec["nll_init"]["nextstat"] = ns_nll
            rel = abs(ns_nll - hg_nll) / max(abs(hg_nll), 1.0)
            rec["nextstat_nll_rel_diff"] = rel
            if rel > 1e-9:
                note(f"nextstat NLL differs from histgym/pyhf by {rel:.2e} relative")
        except Exception as exc:
            note(f"nextstat nll failed: {type(exc).__name__}: {exc}")
            nmodel = None

    # ---------------- NLL, kernel, NLL+grad
    print(f"[{name}] timing NLL / gradient ...", flush=True)
    T["nll", "histgym"] = time_fast(model.nll, (pars,), repeats=reps_fast, min_time=min_time)
    T["nll kernel", "histgym"] = time_fast(
        kernel_twice_nll, (pars, data, model.fbuf, model.ibuf), repeats=reps_fast, min_time=min_time
    )
    T["nll+grad", "histgym"] = time_fast(
        model.nll_and_grad, (pars,), repeats=reps_fast, min_time=min_time
    )
    T["nll", "pyhf"] = time_fast(pmodel.logpdf, (pars, pdata), repeats=reps_fast, min_time=min_time)
    if nmodel is not None:
        T["nll", "nextstat"] = time_fast(
            nmodel.nll, (ns_pars,), repeats=reps_fast, min_time=min_time
        )

        def ns_nll_grad(p: Any, m: Any = nmodel) -> tuple[float, Any]:
            return m.nll(p), m.grad_nll(p)

        T["nll+grad", "nextstat"] = time_fast(
            ns_nll_grad, (ns_pars,), repeats=reps_fast, min_time=min_time
        )

    # ---------------- fits with uncertainties
    print(f"[{name}] timing fits ...", flush=True)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        histgym.fit(model)  # warm-up (compiles the Newton kernel on first use)
        T["fit+unc", "histgym"], hres, n = time_slow(
            lambda: histgym.fit(model), repeats=reps_fit, budget=fit_budget
        )
    rec["fit"] = {
        "histgym": {
            "twice_nll": hres.twice_nll,
            "converged": hres.converged,
            "n_iter": hres.n_iter,
            "poi_hat": float(hres.bestfit[model.poi_index])
            if model.poi_index is not None
            else None,
            "poi_unc": float(hres.uncertainty[model.poi_index])
            if model.poi_index is not None
            else None,
            "calls": n,
        }
    }
    rec["checks"]["histgym fit converged"] = bool(hres.converged)

    if nmodel is not None:
        try:
            t_first, nres = once(lambda: nextstat.fit(nmodel))  # warm-up (no JIT: count it if slow)
            if t_first > fit_budget / 3:
                T["fit+unc", "nextstat"], n = t_first, 1
            else:
                T["fit+unc", "nextstat"], nres, n = time_slow(
                    lambda: nextstat.fit(nmodel), repeats=reps_fit, budget=fit_budget
                )
            pi = ns_poi
            rec["fit"]["nextstat"] = {
                "twice_nll": float(nres.twice_nll),
                "converged": bool(nres.converged),
                "n_iter": int(nres.n_iter),
                "poi_hat": float(nres.bestfit[pi]) if pi is not None else None,
                "poi_unc": float(nres.uncertainties[pi]) if pi is not None else None,
                "calls": n,
            }
        except Exception as exc:
            note(f"nextstat.fit failed: {type(exc).__name__}: {exc}")

    run_pyhf_fit = name not in NEVER_PYHF_FIT and (
        opts.slow or (pyhf_fit_estimate is not None and pyhf_fit_estimate <= SLOW_S)
    )
    if name in NEVER_PYHF_FIT:
        note("pyhf fit not attempted: pyhf+minuit did not finish in 25 minutes on this workspace")
    elif not run_pyhf_fit:
        est = (
            "did not finish in the reference run"
            if pyhf_fit_estimate is None
            else f"~{pyhf_fit_estimate:.0f} s"
        )
        note(f"pyhf fit skipped ({est}); run with --slow to include it")
    else:
        print(f"[{name}] pyhf fit (estimate {pyhf_fit_estimate} s) ...", flush=True)
        pyhf.set_backend("numpy", pyhf.optimize.minuit_optimizer(tolerance=opts.pyhf_tolerance))

        def pyhf_fit() -> tuple[Any, float]:
            out, fval = pyhf.infer.mle.fit(
                pdata, pmodel, return_uncertainties=True, return_fitted_val=True
            )
            return out, float(fval)

        try:
            budget = fit_budget if (pyhf_fit_estimate or 1e9) * 2 < fit_budget else 0.0
            T["fit+unc", "pyhf"], (pout, pval), n = time_slow(
                pyhf_fit, repeats=reps_fit, budget=budget
            )
            pi = model.poi_index
            rec["fit"]["pyhf"] = {
                "twice_nll": pval,
                "poi_hat": float(pout[pi, 0]) if pi is not None else None,
                "poi_unc": float(pout[pi, 1]) if pi is not None else None,
                "calls": n,
            }
            rec["checks"]["histgym fit twice_nll <= pyhf + 1e-6"] = hres.twice_nll <= pval + 1e-6
        except Exception as exc:
            note(f"pyhf fit failed: {type(exc).__name__}: {exc}")
    return rec


# ----------------------------------------------------------------------------- report
OPS = ["build", "nll", "nll kernel", "nll+grad", "fit+unc"]


def fmt_time(t: float | None) -> str:
    if t is None or not math.isfinite(t):
        return "n/a"
    if t < 1e-6:
        return f"{t * 1e9:.0f} ns"
    if t < 1e-3:
        return f"{t * 1e6:.2f} us"
    if t < 1.0:
        return f"{t * 1e3:.2f} ms"
    return f"{t:.2f} s"


def fmt_ratio(num: float | None, den: float | None) -> str:
    if num is None or den is None:
        return "-"
    r = num / den
    return f"{r:.0f}x" if r >= 100 else f"{r:.2f}x" if r < 10 else f"{r:.1f}x"


def table(records: list[dict[str, Any]]) -> str:
    head = [
        "model (params)",
        "op",
        "histgym",
        "pyhf",
        "nextstat",
        "pyhf/histgym",
        "nextstat/histgym",
    ]
    rows = [head]
    for rec in records:
        T = rec["times"]
        label = f"{rec['model']} ({rec['n_params']})"
        for op in OPS:
            h, p, n = T.get((op, "histgym")), T.get((op, "pyhf")), T.get((op, "nextstat"))
            if op == "nll kernel":
                rows.append([label, op, fmt_time(h), "", "", "", ""])
            else:
                rows.append(
                    [
                        label,
                        op,
                        fmt_time(h),
                        fmt_time(p),
                        fmt_time(n),
                        fmt_ratio(p, h),
                        fmt_ratio(n, h),
                    ]
                )
            label = ""
    widths = [max(len(r[i]) for r in rows) for i in range(len(head))]
    lines = [
        "| " + " | ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)) + " |" for r in rows
    ]
    lines.insert(1, "|" + "|".join("-" * (w + 2) for w in widths) + "|")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="fewer repeats, shorter timing loops")
    parser.add_argument("--slow", action="store_true", help="include pyhf fits that take > ~30 s")
    parser.add_argument("--json", metavar="OUT", help="write all measurements to this JSON file")
    parser.add_argument("--models", nargs="+", choices=ALL_MODELS, default=ALL_MODELS)
    parser.add_argument(
        "--data-dir", type=Path, default=DEFAULT_DATA, help=f"defaults to {DEFAULT_DATA}"
    )
    parser.add_argument(
        "--pyhf-tolerance", type=float, default=1e-6, help="minuit tolerance (default 1e-6)"
    )
    parser.add_argument(
        "--nextstat-threads",
        type=int,
        default=1,
        help="nextstat's Rayon threads (default 1, like histgym's serial fit; 0 = its own default)",
    )
    opts = parser.parse_args(argv)

    import nextstat
    import pyhf

    if opts.nextstat_threads:
        nextstat.set_threads(opts.nextstat_threads)
    pyhf.set_backend("numpy", pyhf.optimize.minuit_optimizer(tolerance=opts.pyhf_tolerance))
    reference: dict[str, Any] = {}
    ref_path = opts.data_dir / "reference.json"
    if ref_path.exists():
        reference = json.loads(ref_path.read_text())["workspaces"]
    generator = _load_generator()

    meta = {
        "date": datetime.datetime.now().isoformat(timespec="seconds"),
        "machine": f"{platform.machine()} {os.cpu_count()} cores",
        "load_average_at_start": os.getloadavg(),
        "python": platform.python_version(),
        "histgym": histgym.__version__,
        "pyhf": pyhf.__version__,
        "nextstat": nextstat.__version__,
        "numpy": np.__version__,
        "quick": opts.quick,
        "slow": opts.slow,
        "pyhf_tolerance": opts.pyhf_tolerance,
        "nextstat_threads": opts.nextstat_threads,
        "blas_threads": {v: os.environ.get(v) for v in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS")},
    }
    print(json.dumps(meta), flush=True)
    records = []
    for name in opts.models:
        if name == "seed":
            ws, est = histgym.example_workspace(), 1.0
        elif name in GENERATED:
            ws, est = generator.generate_workspace(GENERATED[name]), GENERATED_PYHF_FIT_S[name]
        else:
            stem = REAL[name]
            ws = json.loads((opts.data_dir / "workspaces" / f"{stem}.json").read_text())
            est = reference.get(stem, {}).get("mle_fit_wall_s")
        records.append(bench_model(name, ws, opts, est))

    print()
    print(table(records))
    print()
    failed = [(r["model"], k) for r in records for k, ok in r["checks"].items() if not ok]
    for rec in records:
        fits = rec.get("fit", {})
        parts = []
        for k, v in fits.items():
            part = f"{k}: 2nll={v['twice_nll']:.8f}"
            if v.get("poi_hat") is not None and v.get("poi_unc") is not None:
                part += f" poi={v['poi_hat']:.5f}+-{v['poi_unc']:.5f}"
            parts.append(part)
        print(f"{rec['model']}: " + "; ".join(parts))
    print("sanity checks:", "all passed" if not failed else f"FAILED {failed}")
    if opts.json:
        out = {
            "meta": meta,
            "results": [
                {**r, "times": {f"{op}|{eng}": t for (op, eng), t in r["times"].items()}}
                for r in records
            ],
        }
        Path(opts.json).write_text(json.dumps(out, indent=1, default=float))
        print(f"wrote {opts.json}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
