"""Command line (top layer): ``histgym fit|significance|cls|limit|rank WORKSPACE`` and
``histgym train|evaluate|plot|demo``.

Each inference subcommand takes ``--measurement``, ``--patch FILE`` (repeatable) and ``--json``
(machine-readable output on stdout); a readable table is printed by default. ``histgym train``
trains an agent on the built-in example (or a workspace) and writes a run folder;
``evaluate RUN`` / ``plot RUN`` re-evaluate and redraw it; ``demo`` runs the reference notebook's
workflow (the ``train`` and ``plot`` extras).
"""

from __future__ import annotations

import argparse
import json
import sys
import warnings
from collections.abc import Sequence
from typing import Any, NoReturn

import numpy as np

__all__ = ["main", "build_parser"]


def _model(args: argparse.Namespace) -> Any:
    from .model import from_pyhf
    from .workspace import read_json

    patches = [read_json(p, what="patch") for p in (args.patch or [])]
    return from_pyhf(args.workspace, measurement=args.measurement, patches=patches or None)


def _finite_float(text: str) -> float:
    """argparse type: a finite float (``nan``/``inf`` are usage errors, exit code 2)."""
    try:
        x = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"invalid number: {text!r}") from None
    if not np.isfinite(x):
        raise argparse.ArgumentTypeError(f"must be a finite number, got {text!r}")
    return x


def _json_safe(obj: Any, path: str = "", bad: list[str] | None = None) -> Any:
    """``obj`` with every non-finite float replaced by ``None`` (JSON ``null``); the paths of
    the replaced values are appended to ``bad``.  JSON has no NaN or Infinity."""
    if bad is None:
        bad = []
    if isinstance(obj, dict):
        return {k: _json_safe(v, f"{path}.{k}" if path else str(k), bad) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_json_safe(v, f"{path}[{i}]", bad) for i, v in enumerate(obj)]
    if isinstance(obj, np.ndarray):
        return _json_safe(obj.tolist(), path, bad)
    if isinstance(obj, (float, np.floating)):
        if not np.isfinite(obj):
            bad.append(path or "<value>")
            return None
        return float(obj)
    if isinstance(obj, np.integer):
        return int(obj)
    if isinstance(obj, np.bool_):
        return bool(obj)
    return obj


def dumps_json(out: Any) -> tuple[str, list[str]]:
    """Strictly valid JSON text of ``out`` (non-finite floats as ``null``) and the JSON paths
    of the values written as ``null``."""
    bad: list[str] = []
    safe = _json_safe(out, "", bad)
    if bad and isinstance(safe, dict):
        safe["non_finite_as_null"] = bad
    return json.dumps(safe, indent=2, allow_nan=False), bad


def _table(rows: list[list[str]], header: list[str]) -> str:
    cols = list(zip(*([header] + rows), strict=False)) if rows else [[h] for h in header]
    widths = [max(len(str(c)) for c in col) for col in cols]
    fmt = lambda r: "  ".join(
        str(c).ljust(w) if i == 0 else str(c).rjust(w) for i, (c, w) in enumerate(zip(r, widths, strict=False))
    )  # noqa: E731
    lines = [fmt(header), "  ".join("-" * w for w in widths)] + [fmt(r) for r in rows]
    return "\n".join(lines)


def _cmd_fit(args: argparse.Namespace) -> tuple[dict[str, Any], str]:
    from .fit import fit

    model = _model(args)
    r = fit(model, warn=False)
    out = {
        "parameters": model.parameter_names,
        "bestfit": r.bestfit.tolist(),
        "uncertainty": r.uncertainty.tolist(),
        "twice_nll": r.twice_nll,
        "converged": r.converged,
        "n_iter": r.n_iter,
        "edm": r.edm,
    }
    rows = [
        [n, f"{b:.6g}", f"{u:.4g}", "fixed" if fx else ""]
        for n, b, u, fx in zip(model.parameter_names, r.bestfit, r.uncertainty, r.fixed, strict=False)
    ]
    text = _table(rows, ["parameter", "bestfit", "uncertainty", ""])
    text += f"\n\n-2 ln L = {r.twice_nll:.6f}   converged = {r.converged}   ({r.n_iter} iterations, edm {r.edm:.2g})"
    return out, text


def _cmd_significance(args: argparse.Namespace) -> tuple[dict[str, Any], str]:
    from .infer import significance

    r = significance(_model(args))
    rows = [
        ["observed", f"{r.z_obs:.4f}", f"{r.p_obs:.4g}"],
        ["expected (Asimov, mu=1)", f"{r.z_exp:.4f}", f"{r.p_exp:.4g}"],
    ]
    return r.as_dict(), _table(rows, ["", "Z0", "p0"]) + f"\n\nconverged = {r.converged}"


def _cmd_cls(args: argparse.Namespace) -> tuple[dict[str, Any], str]:
    from .infer import hypotest

    r = hypotest(args.mu, _model(args), test_stat=args.test_stat)
    rows = [["observed", f"{r.cls_obs:.6g}"]] + [
        [f"expected {lab}", f"{v:.6g}"]
        for lab, v in zip(("-2 sigma", "-1 sigma", "median", "+1 sigma", "+2 sigma"), r.cls_exp, strict=False)
    ]
    text = _table(rows, [f"mu = {r.poi_test:g} ({r.test_stat})", "CLs"])
    text += f"\n\nCLs+b = {r.clsb:.6g}   CLb = {r.clb:.6g}   converged = {r.converged}"
    return r.as_dict(), text


def _cmd_limit(args: argparse.Namespace) -> tuple[dict[str, Any], str]:
    from .infer import upper_limit

    r = upper_limit(_model(args), cl=args.cl)
    rows = [["observed", f"{r.obs:.6g}"]] + [
        [f"expected {lab}", f"{v:.6g}"]
        for lab, v in zip(("-2 sigma", "-1 sigma", "median", "+1 sigma", "+2 sigma"), r.exp, strict=False)
    ]
    return r.as_dict(), _table(
        rows, [f"{100 * r.cl:g}% CLs upper limit", "POI"]
    ) + f"\n\nconverged = {r.converged}"


def _cmd_rank(args: argparse.Namespace) -> tuple[Any, str]:
    from .interpret import rank_impact

    model = _model(args)
    rows = rank_impact(model, top_n=args.top)
    if args.plot:
        _plot_ranking(rows, args.plot, model.poi_name or "POI")
    table = [
        [
            r["rank"],
            r["name"],
            f"{r['delta_mu_up']:+.4g}",
            f"{r['delta_mu_down']:+.4g}",
            f"{r['prefit_delta_mu_up']:+.4g}",
            f"{r['prefit_delta_mu_down']:+.4g}",
            f"{r['pull']:+.3f}",
            f"{r['constraint']:.3f}",
        ]
        for r in rows
    ]
    text = _table(
        [[str(c) for c in t] for t in table],
        ["rank", "parameter", "post up", "post down", "pre up", "pre down", "pull", "constraint"],
    )
    return rows, text


def _plot_ranking(rows: list[dict[str, Any]], path: str, poi: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    n = len(rows)
    fig, ax = plt.subplots(figsize=(7, 1.0 + 0.35 * max(n, 1)))
    y = np.arange(n)[::-1]
    ax.barh(
        y,
        [r["prefit_delta_mu_up"] for r in rows],
        color="none",
        edgecolor="C0",
        label="pre-fit +1σ",
    )
    ax.barh(
        y,
        [r["prefit_delta_mu_down"] for r in rows],
        color="none",
        edgecolor="C1",
        label="pre-fit -1σ",
    )
    ax.barh(y, [r["delta_mu_up"] for r in rows], color="C0", alpha=0.7, label="post-fit +1σ")
    ax.barh(y, [r["delta_mu_down"] for r in rows], color="C1", alpha=0.7, label="post-fit -1σ")
    ax.set_yticks(y, [r["name"] for r in rows])
    ax.set_xlabel(f"Δ{poi}")
    ax.axvline(0, color="k", lw=0.8)
    ax.legend(fontsize="small", loc="lower right")
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)


# ---------------------------------------------------------------- train / evaluate / plot / demo
def _train_env_kwargs(args: argparse.Namespace) -> dict[str, Any]:
    kw: dict[str, Any] = {"reward_metric": args.metric, "data": args.data,
                          "budget": None if args.budget == "none" else args.budget}
    if args.max_steps is not None:
        kw["max_steps"] = args.max_steps
    if args.action_scale is not None:
        kw["action_scale"] = args.action_scale
    return kw


def _cmd_train(args: argparse.Namespace) -> tuple[dict[str, Any], str]:
    from .train import DEFAULT_N_ENVS, DEFAULT_TIMESTEPS, train

    workspace = args.workspace or args.workspace_opt
    if workspace is not None:
        from .workspace import load_workspace

        load_workspace(workspace)  # input errors before any output (one line, exit 2)
    hyper = json.loads(args.hyperparams) if args.hyperparams else None
    steps = args.timesteps if args.timesteps is not None else DEFAULT_TIMESTEPS
    what = (f"continuing {args.resume}" if args.resume else
            f"{args.algo.upper()} on {workspace or 'the built-in example (8-bin Gaussian bump)'}")
    envs = args.n_envs if args.n_envs is not None else (
        "the run's" if args.resume else DEFAULT_N_ENVS)
    print(f"histgym train: {what}, {steps} steps, {envs} envs, seed {args.seed}",
          file=sys.stderr)
    result = train(workspace, channel=args.channel, sample=args.sample,
                   env_kwargs=_train_env_kwargs(args), algo=args.algo, total_timesteps=steps,
                   n_envs=args.n_envs, seed=args.seed, hyperparams=hyper,
                   out=args.out if args.out else True, resume=args.resume,
                   progress=not args.no_progress, figures=not args.no_figures,
                   torch_threads=args.threads or None)
    out = dict(result.metrics, run_dir=str(result.run_dir))
    return out, result.table()


def _cmd_evaluate(args: argparse.Namespace) -> tuple[dict[str, Any], str]:
    from .train import evaluate_run, metrics_table

    metrics = evaluate_run(args.run, episodes=args.episodes, figures=not args.no_figures)
    return dict(metrics, run_dir=args.run), metrics_table(metrics, args.run)


def _cmd_plot(args: argparse.Namespace) -> tuple[dict[str, Any], str]:
    from .plot import plot_run

    paths = [str(p) for p in plot_run(args.run)]
    return {"figures": paths}, "\n".join(paths)


def _cmd_demo(args: argparse.Namespace) -> tuple[dict[str, Any], str]:
    from .interpret import rank_impact
    from .model import from_pyhf
    from .train import NOTEBOOK_PPO, train

    print(f"histgym demo: the nextstat.gym PPO notebook's workflow on the built-in example "
          f"(random baseline, PPO {args.timesteps} steps through make_vec_env, evaluation, "
          f"figures, ranking)", file=sys.stderr)
    out_dir = args.out or _demo_dir()
    result = train(algo="ppo", total_timesteps=args.timesteps, n_envs=4, seed=args.seed,
                   out=out_dir, hyperparams=NOTEBOOK_PPO,
                   references=("random", "idle", "greedy"), progress=not args.no_progress)
    lines = [result.table(), ""]
    ranks = {}
    for label, ep in (("original", 0), ("PPO-optimised", -1)):
        from .envs.single import HistFactoryEnv

        cfg = result.config
        env = HistFactoryEnv(cfg["workspace"], channel=cfg["channel"], sample=cfg["sample"],
                             **cfg["env_kwargs"])
        env.reset(options={"yields": np.asarray(result.episodes["trained"]["yields"][ep])})
        rows = rank_impact(from_pyhf(env.workspace()), top_n=5, data=env.current_data())
        ranks[label] = rows
        lines.append(f"Ranking ({label} model):")
        lines += [f"  {r['rank']}. {r['name']:20s} impact={r['total_impact']:.4f}" for r in rows]
    return dict(result.metrics, run_dir=str(result.run_dir), ranking=ranks), "\n".join(lines)


def _demo_dir() -> str:
    import datetime

    return f"runs/demo-{datetime.datetime.now().strftime('%Y%m%d-%H%M%S')}"


def _add_train_parsers(sub: Any) -> None:
    from .train import ALGOS, DEFAULT_ALGO, DEFAULT_N_ENVS, DEFAULT_TIMESTEPS

    sp = sub.add_parser("train", help="train an RL agent and write a run folder (train extra)",
                        description="Train an agent (PPO by default) on a histgym task; write "
                        "a run folder (config.json, model.zip, progress.csv, metrics.json, "
                        "figures/*.png) and print the trained agent against the references.")
    sp.add_argument("workspace", nargs="?", default=None,
                    help="pyhf JSON workspace (default: the built-in example)")
    sp.add_argument("--workspace", dest="workspace_opt", default=None, help=argparse.SUPPRESS)
    sp.add_argument("--channel", default="SR", help="channel of the controlled sample")
    sp.add_argument("--sample", default="signal", help="controlled sample")
    sp.add_argument("--metric", default="z0", choices=["nll", "q0", "z0", "qmu", "zmu"])
    sp.add_argument("--data", default="asimov", choices=["observed", "asimov"])
    sp.add_argument("--budget", default="total", choices=["total", "none"])
    sp.add_argument("--max-steps", type=int, default=None, help="episode length (default 64)")
    sp.add_argument("--action-scale", type=_finite_float, default=None, help="default 0.1")
    sp.add_argument("--algo", default=DEFAULT_ALGO, choices=list(ALGOS),
                    help=f"SB3 algorithm (default {DEFAULT_ALGO}; tqc, trpo, ars need sb3-contrib)")
    sp.add_argument("--timesteps", type=int, default=None,
                    help=f"environment steps (default {DEFAULT_TIMESTEPS}; with --resume: "
                    "additional steps)")
    sp.add_argument("--n-envs", type=int, default=None,
                    help=f"environments stepped together (default {DEFAULT_N_ENVS})")
    sp.add_argument("--seed", type=int, default=0)
    sp.add_argument("--hyperparams", default=None,
                    help="JSON object overriding the algorithm's defaults")
    sp.add_argument("--threads", type=int, default=1,
                    help="torch threads (default 1, fastest for small MLPs; 0: torch's own)")
    sp.add_argument("--out", default=None, help="run folder (default runs/<metric>-<timestamp>)")
    sp.add_argument("--resume", default=None, metavar="RUN", help="continue this run folder")
    sp.add_argument("--no-progress", action="store_true", help="no progress bar")
    sp.add_argument("--no-figures", action="store_true", help="do not draw figures")
    sp.add_argument("--json", action="store_true", help="machine-readable JSON output")

    sp = sub.add_parser("evaluate", help="re-evaluate a training run; update its metrics.json")
    sp.add_argument("run", help="run folder of histgym train")
    sp.add_argument("--episodes", type=int, default=None, help="random-policy episodes")
    sp.add_argument("--no-figures", action="store_true", help="do not redraw figures")
    sp.add_argument("--json", action="store_true", help="machine-readable JSON output")

    sp = sub.add_parser("plot", help="redraw the figures of a training run")
    sp.add_argument("run", help="run folder of histgym train")
    sp.add_argument("--json", action="store_true", help="machine-readable JSON output")

    sp = sub.add_parser("demo", help="the reference notebook's PPO workflow, in one command")
    sp.add_argument("--timesteps", type=int, default=20_000, help="PPO steps (default 20000)")
    sp.add_argument("--seed", type=int, default=0)
    sp.add_argument("--out", default=None, help="run folder (default runs/demo-<timestamp>)")
    sp.add_argument("--no-progress", action="store_true", help="no progress bar")
    sp.add_argument("--json", action="store_true", help="machine-readable JSON output")


class _Parser(argparse.ArgumentParser):
    """argparse with a one-line usage error (``prog: error: message``) and exit code 2."""

    def error(self, message: str) -> NoReturn:
        self.exit(2, f"{self.prog}: error: {' '.join(message.split())} (see {self.prog} --help)\n")


def _cmd_design(args: argparse.Namespace) -> tuple[dict[str, Any], str]:
    """``histgym design [CONFIG]``: optimise cuts and binning (see histgym.design)."""
    from .design import design

    out = design(args.config, method=args.method, metric=args.metric, max_evals=args.max_evals,
                 seed=args.seed, output=args.output, progress=not args.json)
    out.pop("workspace")
    rows = [[k, f"{v:.6g}"] for k, v in out["cuts"].items()]
    text = _table(rows, ["cut", "threshold"])
    text += "\nedges: " + ", ".join(f"{e:.6g}" for e in out["edges"])
    text += (f"\n{out['metric']}: {out['value']:.6g} (start {out['start_value']:.6g}, "
             f"{out['method']}, {out['n_evaluations']} evaluations)")
    if args.output:
        text += f"\nwritten: {args.output}/best_analysis.json, {args.output}/workspace.json"
    return out, text


def build_parser() -> argparse.ArgumentParser:
    """The argparse parser of the ``histgym`` command."""
    p = _Parser(
        prog="histgym", description="Fits and statistical inference on pyhf JSON workspaces."
    )
    sub = p.add_subparsers(dest="command", required=True)

    def common(sp: argparse.ArgumentParser) -> None:
        sp.add_argument("workspace", help="pyhf JSON workspace file")
        sp.add_argument("--measurement", default=None, help="measurement name (default: the first)")
        sp.add_argument("--patch", action="append", default=[], help="JSON patch file (repeatable)")
        sp.add_argument("--json", action="store_true", help="machine-readable JSON output")

    common(sub.add_parser("fit", help="maximum-likelihood fit"))
    common(sub.add_parser("significance", help="discovery significance Z0 (asymptotics)"))
    sp = sub.add_parser("cls", help="CLs at a POI value (asymptotics)")
    common(sp)
    sp.add_argument("--mu", type=_finite_float, default=1.0, help="tested POI value (default 1)")
    sp.add_argument("--test-stat", default="qtilde", choices=["qtilde", "q"], help="test statistic")
    sp = sub.add_parser("limit", help="CLs upper limit on the POI")
    common(sp)
    sp.add_argument("--cl", type=_finite_float, default=0.95, help="confidence level (default 0.95)")
    sp = sub.add_parser("rank", help="nuisance-parameter impact ranking")
    common(sp)
    sp.add_argument("--top", type=int, default=None, help="show only the top N parameters")
    sp.add_argument("--plot", default=None, help="write a ranking plot to this file")
    _add_train_parsers(sub)
    from .scan.cli import add_parser as _add_scan_parser  # histgym scan / sweep (issue 12)
    from .scan.cli import add_sweep_parser as _add_sweep_parser

    _add_scan_parser(sub)
    _add_sweep_parser(sub)
    sp = sub.add_parser("design", help="optimise cuts and binning of an analysis on events")
    sp.add_argument("config", nargs="?", default=None,
                    help="analysis description (YAML/JSON; default: the built-in toy search)")
    sp.add_argument("--method", default="cmaes", choices=["cmaes", "coordinate", "grid", "random"])
    sp.add_argument("--metric", default="z0", choices=["z0", "q0", "limit"])
    sp.add_argument("--max-evals", type=int, default=1500, help="evaluations (default 1500)")
    sp.add_argument("--seed", type=int, default=0)
    sp.add_argument("--output", default="histgym-design",
                    help="output directory (default histgym-design)")
    sp.add_argument("--json", action="store_true", help="machine-readable JSON output")
    return p


_COMMANDS = {
    "fit": _cmd_fit,
    "significance": _cmd_significance,
    "cls": _cmd_cls,
    "limit": _cmd_limit,
    "rank": _cmd_rank,
    "train": _cmd_train,
    "evaluate": _cmd_evaluate,
    "plot": _cmd_plot,
    "demo": _cmd_demo,
    "scan": lambda args: __import__("histgym.scan.cli", fromlist=["run"]).run(args),
    "sweep": lambda args: __import__("histgym.scan.cli", fromlist=["run_sweep"]).run_sweep(args),
    "design": _cmd_design,
}


#: Exit codes: 0 success, 1 a missing optional dependency, 2 a usage or input error
#: (argparse's convention: bad arguments, unreadable or invalid workspace, bad values).
EXIT_OK, EXIT_MISSING_EXTRA, EXIT_INPUT = 0, 1, 2


def _one_line(err: BaseException) -> str:
    return " ".join(str(err).split()) or type(err).__name__


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``histgym`` console script; returns the exit code.

    Exit code 2 for usage and input errors (a one-line message on stderr, no traceback;
    argparse's usage errors raise ``SystemExit(2)``),
    1 when an optional dependency is missing, 0 on success.  ``--json`` output is always
    strictly valid JSON: a non-finite number is written as ``null`` and its path listed
    under ``"non_finite_as_null"`` (and on stderr).
    """
    args = build_parser().parse_args(argv)  # usage errors: one line, SystemExit(2)
    from .errors import HistgymError

    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            out, text = _COMMANDS[args.command](args)
    except (HistgymError, OSError, ValueError, TypeError, KeyError) as err:
        if not isinstance(err, (HistgymError, OSError, ValueError)):
            raise  # a TypeError/KeyError that is not histgym's: a bug, keep the traceback
        print(f"histgym {args.command}: error: {_one_line(err)}", file=sys.stderr)
        return EXIT_INPUT
    except ImportError as err:
        print(f"histgym {args.command}: error: {_one_line(err)}", file=sys.stderr)
        return EXIT_MISSING_EXTRA
    if args.json:
        dumped, bad = dumps_json(out)
        if bad:
            print(f"histgym {args.command}: warning: non-finite values written as null: "
                  f"{', '.join(bad[:10])}", file=sys.stderr)  # fmt: skip
        print(dumped)
    else:
        print(text)
    return EXIT_OK


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
