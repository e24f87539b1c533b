"""Plots (top layer, the ``plot`` extra): figures of training runs, episodes, rankings and fits.

Pure functions take arrays, dicts or models and return a ``matplotlib.figure.Figure``; they
never write files. :func:`plot_run` is the thin layer that draws a run folder's figures into
``<run>/figures/*.png`` (what ``histgym train`` and ``histgym plot RUN`` call). mplhep's ROOT
style is used when mplhep is installed (:func:`style`), matplotlib's default otherwise.

Figures:

- :func:`episode_figure`: the reference notebook's three panels: cumulative reward of the
  trained agent against the reference policies, the controlled sample's yields per bin over
  the episode, and the initial and optimised histograms stacked over the backgrounds.
- :func:`training_figure`: mean episode return against environment steps (SB3's
  ``rollout/ep_rew_mean``), with the references' returns as horizontal lines.
- :func:`ranking_figure`: impacts (pre-fit and post-fit, up and down) and pulls with their
  constraints, side by side for several models (e.g. initial and optimised workspace).
- :func:`fit_figure`: pre-fit and post-fit expected yields per sample, stacked, with the data,
  for one channel.
"""

from __future__ import annotations

import contextlib
import csv
import json
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from .errors import MissingExtra

__all__ = [
    "episode_figure",
    "fit_figure",
    "plot_run",
    "ranking_figure",
    "sample_yields",
    "style",
    "training_figure",
]

#: Colours of the policies in every figure.
POLICY_COLOURS = {"trained": "#D4AF37", "optimised": "#1f77b4", "greedy": "#2ca02c",
                  "random": "grey", "idle": "black"}
_ORDER = ("trained", "optimised", "greedy", "random", "idle")


def _plt() -> Any:
    try:
        import matplotlib

        matplotlib.use("Agg", force=False)
        import matplotlib.pyplot as plt
    except ImportError as err:  # pragma: no cover - depends on the installation
        raise MissingExtra('histgym.plot needs matplotlib: pip install "histgym[plot]"') from err
    return plt


@contextlib.contextmanager
def style() -> Iterator[None]:
    """A context with mplhep's ROOT style when mplhep is installed (matplotlib's otherwise)."""
    plt = _plt()
    try:
        import mplhep

        sty: Any = dict(mplhep.style.ROOT)
    except ImportError:
        sty = {}
    # mplhep's styles are sized for 10 x 10 inch figures; these are slide-sized panels
    sty.update({"font.size": 11, "axes.titlesize": 12, "axes.labelsize": 11,
                "legend.fontsize": 9, "xtick.labelsize": 10, "ytick.labelsize": 10,
                "axes.labelpad": 2, "figure.dpi": 100})
    with plt.style.context(sty):
        yield


def _edges(n: int, edges: Sequence[float] | None) -> np.ndarray:
    if edges is not None and len(edges) == n + 1:
        return np.asarray(edges, dtype=np.float64)
    return np.arange(n + 1, dtype=np.float64)


def episode_figure(
    episodes: Mapping[str, Any],
    *,
    backgrounds: Mapping[str, Sequence[float]] | None = None,
    edges: Sequence[float] | None = None,
    metric: str = "",
    agent: str = "trained",
) -> Any:
    """The reference notebook's three panels for one evaluation episode.

    Args:
        episodes: policy name -> episode dict of :func:`histgym.agents.record_episode`
            (``rewards`` float [T], ``yields`` float [T + 1][n_bins]); non-dict entries are
            ignored. ``agent`` must be present.
        backgrounds: sample name -> nominal yields (float [n_bins]) of the other samples in
            the controlled channel, stacked under the signal in the third panel.
        edges: bin edges (float [n_bins + 1]); defaults to bin indices.
        metric: the reward metric's name (axis labels).
        agent: the policy whose yields are shown (defaults to ``"trained"``).

    Returns:
        A 15 x 4.5 inch Figure with three axes.
    """
    plt = _plt()
    if agent not in episodes:
        raise KeyError(f"episode of {agent!r} missing; have {sorted(episodes)}")
    with style():
        fig, axes = plt.subplots(1, 3, figsize=(15, 4.5))
        ax = axes[0]
        for name in _ORDER:
            ep = episodes.get(name)
            if not isinstance(ep, Mapping):
                continue
            cum = np.cumsum(ep["rewards"])
            ax.plot(np.arange(1, len(cum) + 1), cum, color=POLICY_COLOURS[name],
                    lw=2.2 if name == agent else 1.3, label=f"{name} ({cum[-1]:.1f})")
        ax.set_xlabel("step")
        ax.set_ylabel(f"cumulative reward ({metric})" if metric else "cumulative reward")
        ax.set_title("Cumulative reward")
        ax.legend(fontsize="small")
        ax.grid(alpha=0.2)

        Y = np.asarray(episodes[agent]["yields"], dtype=np.float64)
        n = Y.shape[1]
        ax = axes[1]
        cmap = plt.get_cmap("viridis")
        for i in range(n):
            ax.plot(Y[:, i], color=cmap(i / max(n - 1, 1)), lw=1.2, label=f"bin {i}")
        ax.set_xlabel("step")
        ax.set_ylabel("yield")
        ax.set_title(f"Yields per bin ({agent})")
        if n <= 10:
            ax.legend(fontsize="x-small", ncol=2)
        ax.grid(alpha=0.2)

        ax = axes[2]
        e = _edges(n, edges)
        bottom = np.zeros(n)
        for k, (name, y) in enumerate((backgrounds or {}).items()):
            y = np.asarray(y, dtype=np.float64)
            ax.stairs(bottom + y, e, baseline=bottom, fill=True, alpha=0.5,
                      color=plt.get_cmap("tab10")(k + 3), label=name)
            bottom = bottom + y
        ax.stairs(bottom + Y[0], e, baseline=bottom, color="grey", lw=2, ls="--",
                  label="signal, initial")
        ax.stairs(bottom + Y[-1], e, baseline=bottom, color=POLICY_COLOURS.get(agent, "C1"),
                  lw=2.2, label=f"signal, {agent}")
        ax.set_xlabel("bin" if edges is None else "observable")
        ax.set_ylabel("events")
        ax.set_title("Initial vs optimised signal")
        ax.legend(fontsize="small")
        fig.tight_layout()
    return fig


def training_figure(
    steps: Sequence[float],
    returns: Sequence[float],
    *,
    references: Mapping[str, float] | None = None,
    metric: str = "",
) -> Any:
    """Mean episode return against environment steps, with reference returns as lines.

    Args:
        steps: environment steps (``time/total_timesteps``), float [N].
        returns: mean episode return at those steps (``rollout/ep_rew_mean``), float [N].
        references: policy name -> its return (horizontal lines).
        metric: the reward metric's name (title).

    Returns:
        A 7 x 4.5 inch Figure.
    """
    plt = _plt()
    with style():
        fig, ax = plt.subplots(figsize=(7, 4.5))
        ax.plot(np.asarray(steps, float), np.asarray(returns, float),
                color=POLICY_COLOURS["trained"], lw=2, label="training (mean episode return)")
        for name, value in (references or {}).items():
            if name == "trained":
                continue
            ax.axhline(value, color=POLICY_COLOURS.get(name, "C7"), ls="--", lw=1.2,
                       label=f"{name} ({value:.1f})")
        if "trained" in (references or {}):
            ax.axhline(references["trained"], color=POLICY_COLOURS["trained"], ls=":", lw=1.5,
                       label=f"trained, deterministic ({references['trained']:.1f})")
        ax.set_xlabel("environment steps")
        ax.set_ylabel("episode return")
        ax.set_title(f"Training curve{f' ({metric} reward)' if metric else ''}")
        ax.legend(fontsize="small")
        ax.grid(alpha=0.2)
        fig.tight_layout()
    return fig


def ranking_figure(rankings: Mapping[str, Sequence[Mapping[str, Any]]], *, poi: str = "mu",
                   top_n: int = 10) -> Any:
    """Impact ranking plots side by side: impact bars and pulls per model.

    Args:
        rankings: title -> rows of :func:`histgym.interpret.rank_impact` (keys
            ``name``, ``delta_mu_up/down``, ``prefit_delta_mu_up/down``, ``pull``,
            ``constraint``).
        poi: name of the parameter of interest (axis label).
        top_n: at most this many parameters per panel (the ranking's first).

    Returns:
        A Figure with two axes per ranking (impacts, pulls).
    """
    plt = _plt()
    k = max(len(rankings), 1)
    n_max = max([min(len(r), top_n) for r in rankings.values()] + [1])
    with style():
        fig, axes = plt.subplots(1, 2 * k, figsize=(7.5 * k, 2.6 + 0.4 * n_max),
                                 squeeze=False, gridspec_kw={"width_ratios": [3, 2] * k})
        for j, (title, rows) in enumerate(rankings.items()):
            rows = list(rows)[:top_n]
            n = len(rows)
            y = np.arange(n)[::-1]
            names = [r["name"] for r in rows]
            ax = axes[0, 2 * j]
            ax.barh(y, [r["prefit_delta_mu_up"] for r in rows], color="none", edgecolor="C0",
                    label="pre-fit +1σ")
            ax.barh(y, [r["prefit_delta_mu_down"] for r in rows], color="none", edgecolor="C1",
                    label="pre-fit -1σ")
            ax.barh(y, [r["delta_mu_up"] for r in rows], color="C0", alpha=0.7,
                    label="post-fit +1σ")
            ax.barh(y, [r["delta_mu_down"] for r in rows], color="C1", alpha=0.7,
                    label="post-fit -1σ")
            ax.set_yticks(y, names)
            ax.axvline(0, color="k", lw=0.8)
            ax.set_xlabel(f"Δ{poi}")
            ax.set_title(title)
            ax.legend(fontsize="x-small", loc="lower right")
            ax = axes[0, 2 * j + 1]
            ax.errorbar([r["pull"] for r in rows], y, xerr=[r["constraint"] for r in rows],
                        fmt="ko", ms=4)
            ax.axvspan(-1, 1, color="yellow", alpha=0.3)
            ax.axvline(0, color="k", lw=0.8)
            ax.set_yticks(y, [""] * n)
            ax.set_xlim(-2.2, 2.2)
            ax.set_ylim(-0.6, max(n, 1) - 0.4)
            axes[0, 2 * j].set_ylim(-0.6, max(n, 1) - 0.4)
            ax.set_xlabel("pull")
        fig.tight_layout()
    return fig


def sample_yields(model: Any, pars: Any) -> dict[str, dict[str, np.ndarray]]:
    """Expected main-bin yields per channel and sample at ``pars`` (float [n_bins] each).

    Uses pyhf's model of the same spec (``model.pyhf_model``, built on first use), so it
    describes the spec's nominal yields.
    """
    pm = model.pyhf_model
    by_sample = np.asarray(pm.main_model.expected_data(np.asarray(pars, float),
                                                      return_by_sample=True))
    out: dict[str, dict[str, np.ndarray]] = {}
    for ch in pm.config.channels:
        sl = pm.config.channel_slices[ch]
        out[ch] = {s: by_sample[i, sl] for i, s in enumerate(pm.config.samples)
                   if np.any(by_sample[i, sl] != 0)}
    return out


def fit_figure(
    prefit: Mapping[str, Sequence[float]],
    postfit: Mapping[str, Sequence[float]],
    data: Sequence[float],
    *,
    channel: str = "",
    edges: Sequence[float] | None = None,
) -> Any:
    """Pre-fit and post-fit stacked histograms of one channel with the data.

    Args:
        prefit, postfit: sample name -> expected yields (float [n_bins]) at the initial
            parameters and at the best fit.
        data: the channel's data (float [n_bins]), drawn with Poisson errors.
        channel: the channel's name (title).
        edges: bin edges (float [n_bins + 1]); defaults to bin indices.

    Returns:
        A 12 x 4.5 inch Figure with two axes (pre-fit, post-fit).
    """
    plt = _plt()
    d = np.asarray(data, dtype=np.float64)
    e = _edges(len(d), edges)
    centres = 0.5 * (e[1:] + e[:-1])
    with style():
        fig, axes = plt.subplots(1, 2, figsize=(12, 4.5), sharey=True)
        for ax, (label, stack) in zip(axes, (("pre-fit", prefit), ("post-fit", postfit)),
                                      strict=True):
            bottom = np.zeros_like(d)
            for k, (name, y) in enumerate(stack.items()):
                y = np.asarray(y, dtype=np.float64)
                ax.stairs(bottom + y, e, baseline=bottom, fill=True, alpha=0.7,
                          color=plt.get_cmap("tab10")(k), label=name)
                bottom = bottom + y
            ax.errorbar(centres, d, yerr=np.sqrt(np.maximum(d, 0)), fmt="ko", ms=4,
                        label="data")
            ax.set_title(f"{channel}: {label}" if channel else label)
            ax.set_xlabel("bin" if edges is None else "observable")
            ax.legend(fontsize="small")
        axes[0].set_ylabel("events")
        fig.tight_layout()
    return fig


# ----------------------------------------------------------------------------- run folders
def _read_progress(path: Path) -> tuple[np.ndarray, np.ndarray]:
    steps, rets = [], []
    if path.is_file():
        with open(path, newline="") as f:
            for row in csv.DictReader(f):
                s, r = row.get("time/total_timesteps", ""), row.get("rollout/ep_rew_mean", "")
                if s and r:
                    steps.append(float(s))
                    rets.append(float(r))
    return np.asarray(steps), np.asarray(rets)


def _state_env(config: Mapping[str, Any], yields: Any) -> Any:
    """A single env of the run's task, reset to ``yields`` (for workspaces and data)."""
    from .envs.single import HistFactoryEnv

    env = HistFactoryEnv(config["workspace"], channel=config["channel"],
                         sample=config["sample"], **config["env_kwargs"])
    env.reset(seed=config.get("eval_seed"), options={"yields": np.asarray(yields, float)})
    return env


def run_figures(run: str | Path, *, ranking_top: int = 10,
                max_ranking_params: int = 200) -> dict[str, Any]:
    """All figures of a run folder, by file stem (no files written).

    ``episode`` and ``training`` always; ``ranking`` (initial vs optimised workspace, skipped
    for models with more than ``max_ranking_params`` parameters) and ``fit_<channel>``
    (pre-/post-fit on the optimised workspace with the task's data) when the run has a trained
    episode.
    """
    from .model import from_pyhf

    path = Path(run)
    with open(path / "config.json") as f:
        config = json.load(f)
    with open(path / "metrics.json") as f:
        metrics = json.load(f)
    with open(path / "episodes.json") as f:
        episodes = json.load(f)
    metric = metrics.get("reward_metric", "")
    channel, sample = config["channel"], config["sample"]
    figs: dict[str, Any] = {}

    initial = np.asarray(episodes["trained"]["yields"][0])
    final = np.asarray(episodes["trained"]["yields"][-1])
    env0 = _state_env(config, initial)
    env1 = _state_env(config, final)
    model0 = from_pyhf(env0.workspace())
    model1 = from_pyhf(env1.workspace())
    nominal = sample_yields(model0, model0.suggested_init())
    backgrounds = {s: y for s, y in nominal.get(channel, {}).items() if s != sample}
    figs["episode"] = episode_figure(episodes, backgrounds=backgrounds, metric=metric)

    steps, rets = _read_progress(path / "progress.csv")
    refs = {k: v for k, v in metrics["returns"].items()}
    figs["training"] = training_figure(steps, rets, references=refs, metric=metric)

    if len(model0.parameter_names) <= max_ranking_params:
        from .interpret import rank_impact

        d0, d1 = env0.current_data(), env1.current_data()
        figs["ranking"] = ranking_figure(
            {"initial workspace": rank_impact(model0, top_n=ranking_top, data=d0),
             "optimised workspace": rank_impact(model1, top_n=ranking_top, data=d1)},
            poi=model0.poi_name or "POI", top_n=ranking_top)

    from .fit import fit

    data1 = env1.current_data()
    best = fit(model1, data1, warn=False).bestfit
    pre = sample_yields(model1, model1.suggested_init())
    post = sample_yields(model1, best)
    for ch in pre:
        sl = model1.channel_slice(ch)
        figs[f"fit_{ch}"] = fit_figure(pre[ch], post[ch], data1[sl],
                                       channel=f"{ch}, optimised workspace")
    return figs


def plot_run(run: str | Path, *, dpi: int = 100, **kwargs: Any) -> list[Path]:
    """Draw a run folder's figures into ``<run>/figures/<name>.png``; return the paths.

    Args:
        run: a ``histgym train`` run folder (config.json, metrics.json, episodes.json,
            progress.csv).
        dpi: resolution of the PNG files.
        **kwargs: passed to :func:`run_figures`.
    """
    plt = _plt()
    out = Path(run) / "figures"
    out.mkdir(parents=True, exist_ok=True)
    paths = []
    for name, fig in run_figures(run, **kwargs).items():
        p = out / f"{name}.png"
        fig.savefig(p, dpi=dpi)
        plt.close(fig)
        paths.append(p)
    return paths
