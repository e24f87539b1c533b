"""Command line of the scan layer: ``histgym scan BKG.json PATCHSET.json [options]``.

Kept apart from :mod:`histgym.cli`, which only registers the subcommand.
"""

from __future__ import annotations

import argparse
import math
from typing import Any

__all__ = ["add_parser", "run"]


def add_parser(sub: Any) -> None:
    """Add the ``scan`` subcommand to the ``histgym`` parser's subparsers ``sub``."""
    sp = sub.add_parser(
        "scan",
        help="CLs, limits and Z0 for every signal point of a patchset",
        description=(
            "Scan every patch (signal point) of PATCHSET on the background-only workspace BKG: "
            "CLs at mu=1 with the expected band, 95%% CL upper limits (observed and expected "
            "band), Z0. Finished points are journaled next to --out and reused on restart."
        ),
    )
    sp.add_argument("background", help="background-only pyhf JSON workspace")
    sp.add_argument("patchset", help="pyhf patchset JSON file")
    sp.add_argument("--patch", action="append", default=[], help="scan only this patch (repeatable)")
    sp.add_argument("--what", default="cls,limit,z0", help="comma-separated subset of cls,limit,z0")
    sp.add_argument("--calctype", default="asymptotics", choices=["asymptotics", "toybased"])
    sp.add_argument("--ntoys", type=int, default=1000, help="toys per hypothesis (toybased)")
    sp.add_argument("--seed", type=int, default=0, help="base seed of the toy streams")
    sp.add_argument("--jobs", type=int, default=None, help="local worker processes (default: all cores)")
    sp.add_argument(
        "--ray",
        nargs="?",
        const=True,
        default=None,
        metavar="ADDRESS",
        help="run on Ray: 'auto', an address (ray://head:10001, head:6379), or none (local Ray)",
    )
    sp.add_argument("--out", default=None, help="results file (.json or .csv)")
    sp.add_argument("--measurement", default=None, help="measurement name (default: the first)")
    sp.add_argument("--no-progress", action="store_true", help="no progress bar")
    sp.add_argument("--json", action="store_true", help="print the records as JSON")


def _f(x: Any, fmt: str = ".4g") -> str:
    return "-" if x is None or (isinstance(x, float) and math.isnan(x)) else format(x, fmt)


def run(args: argparse.Namespace) -> tuple[Any, str]:
    """Run ``histgym scan``; returns (records, table text)."""
    from . import scan

    rows = scan(
        args.background,
        args.patchset,
        patches=args.patch or None,
        what=args.what,
        calctype=args.calctype,
        ntoys=args.ntoys,
        seed=args.seed,
        jobs=args.jobs,
        ray=args.ray,
        out=args.out,
        progress=not args.no_progress,
        measurement=args.measurement,
    )
    header = ["patch", "values", "CLs obs", "CLs exp", "limit obs", "limit exp", "Z0", "fit"]
    table = [
        [
            r["patch"],
            ",".join(str(v) for v in r["values"]),
            _f(r["cls_obs"]),
            _f(r["cls_exp"][2]),
            _f(r["limit_obs"]),
            _f(r["limit_exp"][2]),
            _f(r["z0"], ".3f"),
            "ok" if r["fit_ok"] else ("error" if r["error"] else "FAILED"),
        ]
        for r in rows
    ]
    from ..cli import _table

    text = _table(table, header)
    if args.out:
        text += f"\n\n{len(rows)} points written to {args.out}"
    return rows, text


def add_sweep_parser(sub: Any) -> None:
    """Add the ``sweep`` subcommand (PPO hyperparameter sweep on Ray Tune + Optuna)."""
    sp = sub.add_parser(
        "sweep",
        help="PPO training sweep over hyperparameters and seeds (Ray Tune + Optuna)",
        description="Train PPO on the built-in example (or --workspace) for hyperparameter sets "
        "proposed by Optuna, each for every seed, on Ray Tune; print the table of trials.",
    )
    sp.add_argument("--trials", type=int, default=8, help="hyperparameter sets (default 8)")
    sp.add_argument("--seeds", default="0,1", help="comma-separated training seeds (default 0,1)")
    sp.add_argument("--timesteps", type=int, default=20_000, help="PPO steps per run (default 20000)")
    sp.add_argument("--n-envs", type=int, default=4, help="environment copies per run (default 4)")
    sp.add_argument("--workspace", default=None, help="pyhf JSON workspace (default: built-in)")
    sp.add_argument("--concurrent", type=int, default=2, help="trials at once (default 2)")
    sp.add_argument("--storage", default="sweeps", help="folder of the run folders (default ./sweeps)")
    sp.add_argument("--ray", default=None, metavar="ADDRESS", help="Ray address (default: a local Ray)")
    sp.add_argument("--out", default=None, help="write the table of trials here (JSON)")
    sp.add_argument("--json", action="store_true", help="print the trials as JSON")


def run_sweep(args: argparse.Namespace) -> tuple[Any, str]:
    """Run ``histgym sweep``; returns (trials, table text)."""
    import json

    from .sweep import format_table, sweep

    seeds = [int(s) for s in str(args.seeds).split(",") if s.strip()]
    rows = sweep(
        num_samples=args.trials,
        seeds=seeds,
        timesteps=args.timesteps,
        n_envs=args.n_envs,
        workspace=args.workspace,
        max_concurrent=args.concurrent,
        storage=args.storage,
        address=args.ray,
    )
    if args.out:
        with open(args.out, "w") as fh:
            json.dump(rows, fh, indent=1)
    return rows, format_table(rows)
