"""Inference benchmark: histgym vs pyhf (numpy + minuit) vs nextstat, measured in one run.

Tasks per model (median wall time over repeats, after a warm-up call that JIT-compiles):

- ``hypotest``  asymptotic CLs at mu=1 (qtilde) with the expected band:
                ``histgym.infer.hypotest``; ``pyhf.infer.hypotest(..., return_expected_set=True)``;
                ``nextstat.hypotest`` (observed only: it has no band in this call);
- ``limit``     observed + 5 expected CLs upper limits: ``histgym.infer.upper_limit``;
                ``pyhf.infer.intervals.upper_limits.upper_limit``; ``nextstat.upper_limit(method="root")``;
- ``ranking``   impacts of every nuisance parameter: ``histgym.interpret.ranking`` (pre- and
                post-fit, cabinetry's 4 refits per parameter); ``cabinetry.fit.ranking`` on pyhf;
                ``nextstat.ranking`` (2 refits per parameter: prior +-1 sigma);
- ``toys``      toy-based hypotest, 1000 toys per hypothesis (``--ntoys``; the large model
                uses ``--ntoys-large``, 20 with ``--quick``; the first call includes histgym's
                one-off JIT compilation of the batch fitter unless cached on disk): histgym ``calctype="toybased"``;
                ``nextstat.hypotest_toys(n_toys=1000, expected_set=True)`` (keeps auxdata fixed);
                pyhf's ToyCalculator only on the seed model without ``--quick`` (minutes).

Models: the seed notebook workspace, the generated 50-bin model (``benchmarks/generate.py``;
falls back to ../shared/data/workspaces/toy_SH4b_50bin_histosys.json), and a large real
workspace (ATLAS 1Lbb Wh 1000_0, 126 parameters).  pyhf runs that would take minutes are
skipped (``skip``) unless ``--slow``.  Ratios are other/histgym: > 1 means histgym is faster.

Usage::

    python benchmarks/infer.py --quick      # ~2-3 minutes
    python benchmarks/infer.py --slow       # include the slow pyhf runs
"""

from __future__ import annotations

import os

for _var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_var, "1")

import argparse  # noqa: E402
import importlib.util  # noqa: E402
import json  # noqa: E402
import logging  # noqa: E402
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
from histgym import infer  # noqa: E402
from histgym.interpret import ranking  # noqa: E402

HERE = Path(__file__).resolve().parent
DATA = Path(os.environ.get("HISTGYM_SHARED_DATA", HERE.parent.parent / "shared" / "data"))
LARGE = "atlas_susy2019_08_1Lbb__C1N2_Wh_hbb_1000_0"
TASKS = ("hypotest", "limit", "ranking", "toys")


def gen50() -> dict[str, Any]:
    p = HERE / "generate.py"
    if p.is_file():
        spec = importlib.util.spec_from_file_location("histgym_benchmarks_generate", p)
        assert spec is not None and spec.loader is not None
        mod = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(mod)
        return mod.generate_workspace(50)  # type: ignore[no-any-return]
    return json.loads((DATA / "workspaces" / "toy_SH4b_50bin_histosys.json").read_text())


def timed(fn: Callable[[], Any], repeats: int, budget: float) -> tuple[float, Any]:
    """Median seconds of ``fn()``; calls under 1 ms are timed in loops of >= 0.2 s."""
    t0 = time.perf_counter()
    out = fn()
    one = time.perf_counter() - t0
    if one < 1e-3:
        number = max(1, int(0.2 / max(one, 1e-7)))
        loops = [timeit.timeit(fn, number=number) / number for _ in range(max(repeats, 3))]
        return statistics.median(loops), out
    times = []
    start = time.perf_counter()
    for _ in range(repeats):
        t0 = time.perf_counter()
        out = fn()
        times.append(time.perf_counter() - t0)
        if time.perf_counter() - start > budget:
            break
    return statistics.median(times), out


def bench(
    name: str, ws: dict[str, Any], opts: argparse.Namespace
) -> dict[str, dict[str, float | None]]:
    import nextstat
    import pyhf

    pyhf.set_backend("numpy", pyhf.optimize.minuit_optimizer(tolerance=1e-6))
    logging.getLogger("pyhf").setLevel(logging.ERROR)
    model = histgym.from_pyhf(ws)
    w = pyhf.Workspace(ws)
    pm = w.model()
    d = np.asarray(w.data(pm), dtype=float)
    nm = nextstat.from_pyhf(json.dumps(ws))
    # pyhf on anything but the seed model takes minutes: only with --slow (gen50 also without --quick)
    big = name == "large" or (name != "seed" and opts.quick)
    ntoys = opts.ntoys if name != "large" else (20 if opts.quick else opts.ntoys_large)
    rep, budget = (3, 5.0) if opts.quick else (7, 20.0)
    res: dict[str, dict[str, float | None]] = {t: {} for t in TASKS}
    res["toys"]["ntoys"] = ntoys

    def run(
        task: str, lib: str, fn: Callable[[], Any], warm: bool = True, slow: bool = False
    ) -> Any:
        if slow and not opts.slow:
            res[task][lib] = None
            return None
        if warm:
            fn()
        t, out = timed(fn, 1 if slow else rep, budget)
        res[task][lib] = t
        return out

    h = run("hypotest", "histgym", lambda: infer.hypotest(1.0, model))
    p = run(
        "hypotest",
        "pyhf",
        lambda: pyhf.infer.hypotest(1.0, d, pm, return_expected_set=True),
        warm=False,
        slow=big,
    )
    run("hypotest", "nextstat", lambda: nextstat.hypotest(1.0, nm, return_tail_probs=True))
    if p is not None:
        assert abs(h.cls_obs - float(p[0])) < 1e-3 * max(float(p[0]), 1e-3), (h.cls_obs, p[0])
    lim = run("limit", "histgym", lambda: infer.upper_limit(model))
    pl = run(
        "limit",
        "pyhf",
        lambda: pyhf.infer.intervals.upper_limits.upper_limit(d, pm),
        warm=False,
        slow=big,
    )
    run("limit", "nextstat", lambda: nextstat.upper_limit(nm, method="root"))
    if pl is not None:
        assert abs(lim.obs / float(pl[0]) - 1) < 1e-3, (lim.obs, pl[0])

    def cab() -> Any:
        import cabinetry

        return cabinetry.fit.ranking(pm, d)

    run("ranking", "histgym", lambda: ranking(model))
    run("ranking", "pyhf", cab, warm=False, slow=big)
    run("ranking", "nextstat", lambda: nextstat.ranking(nm))
    infer.hypotest(1.0, model, calctype="toybased", ntoys=2, seed=0)  # JIT warm-up
    run(
        "toys",
        "histgym",
        lambda: infer.hypotest(1.0, model, calctype="toybased", ntoys=ntoys, seed=1),
        warm=False,
    )

    def pyhf_toys() -> Any:
        from pyhf.tensor.numpy_backend import numpy_backend

        numpy_backend.percentile = lambda self, t, q, axis=None, interpolation="linear": (
            np.percentile(t, q, axis=axis, method=interpolation)
        )  # type: ignore[method-assign]  # numpy 2
        return pyhf.infer.hypotest(
            1.0,
            d,
            pm,
            calctype="toybased",
            ntoys=ntoys,
            return_expected_set=True,
            track_progress=False,
        )

    run("toys", "pyhf", pyhf_toys, warm=False, slow=big or opts.quick)
    run(
        "toys",
        "nextstat",
        lambda: nextstat.hypotest_toys(1.0, nm, n_toys=ntoys, expected_set=True),
        warm=False,
    )
    return res


def fmt(t: float | None) -> str:
    if t is None:
        return "skip"
    return f"{t * 1e3:.2f} ms" if t < 1 else f"{t:.2f} s"


def ratio(a: float | None, b: float | None) -> str:
    return "-" if a is None or b is None or b <= 0 else f"{a / b:.1f}x"


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--quick", action="store_true", help="fewer repeats, no pyhf toys")
    ap.add_argument("--slow", action="store_true", help="also the multi-minute pyhf runs")
    ap.add_argument("--models", nargs="*", default=["seed", "gen50", "large"])
    ap.add_argument("--ntoys", type=int, default=1000, help="toys per hypothesis (seed, gen50)")
    ap.add_argument(
        "--ntoys-large",
        type=int,
        default=200,
        help="toys on the large model (126 parameters: ~0.1 s per toy in histgym, ~1.4 s in nextstat); 20 with --quick",
    )
    ap.add_argument("--json", default=None, help="write the results to this file")
    opts = ap.parse_args(argv)
    warnings.simplefilter("ignore")
    import nextstat

    nextstat.set_threads(os.cpu_count() or 1)
    models: dict[str, Callable[[], dict[str, Any]]] = {
        "seed": histgym.example_workspace,
        "gen50": gen50,
        "large": lambda: json.loads((DATA / "workspaces" / f"{LARGE}.json").read_text()),
    }
    rows, allres = [], {}
    for name in opts.models:
        res = bench(name, models[name](), opts)
        allres[name] = res
        for task in TASKS:
            r = res[task]
            label = f"toys({res['toys']['ntoys']:g})" if task == "toys" else task
            rows.append([name, label, fmt(r.get("histgym")), fmt(r.get("pyhf")), fmt(r.get("nextstat")),
                         ratio(r.get("pyhf"), r.get("histgym")), ratio(r.get("nextstat"), r.get("histgym"))])  # fmt: skip
        print(f"done {name}", file=sys.stderr, flush=True)
    header = ["model", "task", "histgym", "pyhf", "nextstat", "pyhf/hg", "nextstat/hg"]
    widths = [max(len(str(x)) for x in col) for col in zip(header, *rows, strict=False)]
    for r in [header, ["-" * w for w in widths], *rows]:
        print("  ".join(str(c).rjust(w) for c, w in zip(r, widths, strict=False)))
    if opts.json:
        Path(opts.json).write_text(json.dumps(allres, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
