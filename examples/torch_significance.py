# ruff: noqa: E402  (notebook-style script: imports live in their cells)
# %% [markdown]
# # Training a classifier on the expected discovery significance (histgym.torch)
#
# A small network scores events; its score is histogrammed into the analysis bins, and the
# binned likelihood (a HistFactory workspace with a **shape systematic** on the main
# background) gives the expected discovery significance Z0. `histgym.torch.Significance`
# makes that Z0 a differentiable PyTorch loss: exact gradients of the profile-likelihood
# metric with respect to every histogram (envelope theorem at the fitted optima), computed by
# histgym's compiled kernels. We train the same network twice, with binary cross-entropy and
# with -Z0, and compare both with **hard** histograms on independent events and histgym's
# exact expected Z0 (cross-checked with pyhf).
#
# Run as a script: `python examples/torch_significance.py --steps 300`.

# %%
import argparse
import time

import matplotlib

matplotlib.use("Agg")  # files only; no display needed

import matplotlib.pyplot as plt
import numpy as np
import torch

import histgym
from histgym.torch import Significance, kde_histogram

parser = argparse.ArgumentParser(description="classifier trained on histgym's expected Z0")
parser.add_argument("--steps", type=int, default=300, help="training steps of each network")
parser.add_argument("--seed", type=int, default=0)
parser.add_argument("--lr", type=float, default=3e-3, help="Adam learning rate")
parser.add_argument("--figure", default="torch_significance.png", help="output figure file")
args, _ = parser.parse_known_args()  # tolerate a notebook kernel's own arguments
torch.manual_seed(args.seed)
torch.set_num_threads(1)  # a tiny network: threads only cost time
LR = args.lr
EVAL_EVERY = 10

# %% [markdown]
# ## 1. A toy event sample
# Two features per event. Signal (30 expected events) sits at (1, 1); the main background
# `bkg1` (600 events) is a broad blob at the origin and carries a **shape systematic**: its
# features are shifted by +-0.3 (the up/down variations); `bkg2` (200 events) is off to the
# side. Each process is a weighted Monte Carlo sample; the training and the test samples are
# independent. The generator is one function, so a built-in event sample can replace it.

# %%
N_FEATURES = 2


def make_toy_events(seed: int, n_mc: int = 4000) -> dict:
    """Weighted toy events: ``{process: {"x": [n, 2], "w": [n]}}``; ``bkg1`` also has
    ``"x_up"``/``"x_dn"`` (the shape systematic: features shifted by +-0.3)."""
    g = np.random.default_rng(seed)
    sig = g.normal([1.0, 1.0], 0.6, size=(n_mc // 2, 2))
    b1 = g.normal([0.0, 0.0], 1.0, size=(n_mc, 2))
    b2 = g.normal([1.8, -0.6], 0.5, size=(n_mc // 2, 2))
    shift = np.array([0.3, 0.3])
    return {
        "signal": {"x": sig, "w": np.full(len(sig), 30.0 / len(sig))},
        "bkg1": {"x": b1, "w": np.full(len(b1), 600.0 / len(b1)),
                 "x_up": b1 + shift, "x_dn": b1 - shift},
        "bkg2": {"x": b2, "w": np.full(len(b2), 200.0 / len(b2))},
    }


train = make_toy_events(args.seed)
test = make_toy_events(args.seed + 1000)
for name, ev in train.items():
    print(f"{name:7s} {len(ev['w']):5d} MC events, {ev['w'].sum():6.1f} expected")

# %% [markdown]
# ## 2. From network scores to a workspace
# The score (a sigmoid output in (0, 1)) is binned into 5 bins. For training, the histogram
# is a Gaussian kernel density (`histgym.torch.kde_histogram`, bandwidth 0.05; the outer
# edges are pushed out so that no kernel mass leaks out of the range); for evaluation it is
# the ordinary hard histogram. The workspace has the signal (normfactor `mu`), `bkg1` with a
# 5% normalisation uncertainty and the shape systematic (a histosys from the shifted
# events), and `bkg2` with a 10% normalisation uncertainty.

# %%
EDGES = np.linspace(0.0, 1.0, 6)
SOFT_EDGES = torch.tensor([-1.0, *EDGES[1:-1], 2.0], dtype=torch.float64)
BANDWIDTH = 0.05
FLOOR = 1e-3  # events: keeps every background bin populated


def make_net() -> torch.nn.Module:
    torch.manual_seed(args.seed)
    return torch.nn.Sequential(
        torch.nn.Linear(N_FEATURES, 16), torch.nn.ReLU(), torch.nn.Linear(16, 16),
        torch.nn.ReLU(), torch.nn.Linear(16, 1), torch.nn.Sigmoid(),
    ).double()


def score(net: torch.nn.Module, x: np.ndarray) -> torch.Tensor:
    return net(torch.as_tensor(x)).squeeze(-1)


def soft_yields(net: torch.nn.Module, ev: dict, key: str = "x") -> dict:
    return {name: kde_histogram(score(net, e[key if key in e else "x"]), SOFT_EDGES,
                                bandwidth=BANDWIDTH, weights=torch.as_tensor(e["w"])) + FLOOR
            for name, e in ev.items()}


def hard_yields(net: torch.nn.Module, ev: dict, key: str = "x") -> dict:
    with torch.no_grad():
        return {name: np.histogram(score(net, e[key if key in e else "x"]).numpy(),
                                   bins=EDGES, weights=e["w"])[0] + FLOOR
                for name, e in ev.items()}


def build_workspace(y: dict, up: np.ndarray, dn: np.ndarray) -> dict:
    """The binned analysis: nominal yields per process, bkg1's up/down templates."""
    f = [float(v) for v in np.asarray(y["signal"])]
    b1 = [float(v) for v in np.asarray(y["bkg1"])]
    b2 = [float(v) for v in np.asarray(y["bkg2"])]
    return {
        "channels": [{"name": "SR", "samples": [
            {"name": "signal", "data": f,
             "modifiers": [{"name": "mu", "type": "normfactor", "data": None}]},
            {"name": "bkg1", "data": b1, "modifiers": [
                {"name": "bkg1_norm", "type": "normsys", "data": {"hi": 1.05, "lo": 0.95}},
                {"name": "bkg1_shape", "type": "histosys",
                 "data": {"hi_data": [float(v) for v in up], "lo_data": [float(v) for v in dn]}},
            ]},
            {"name": "bkg2", "data": b2, "modifiers": [
                {"name": "bkg2_norm", "type": "normsys", "data": {"hi": 1.1, "lo": 0.9}}]},
        ]}],
        "observations": [{"name": "SR", "data": list(np.add(np.add(f, b1), b2))}],
        "measurements": [{"name": "meas", "config": {"poi": "mu", "parameters": []}}],
        "version": "1.0.0",
    }


def analysis_workspace(net: torch.nn.Module, ev: dict) -> dict:
    """The workspace of the hard-binned analysis of ``net`` on the events ``ev``."""
    y = hard_yields(net, ev)
    up = hard_yields(net, {"bkg1": ev["bkg1"]}, "x_up")["bkg1"]
    dn = hard_yields(net, {"bkg1": ev["bkg1"]}, "x_dn")["bkg1"]
    return build_workspace(y, up, dn)


def expected_z0(net: torch.nn.Module, ev: dict) -> float:
    """histgym's exact expected (Asimov) Z0 of the hard-binned analysis, with systematics."""
    sig = Significance(analysis_workspace(net, ev), channel="SR", sample="signal",
                       metric="z0", data="asimov")
    return sig(sig.nominal).item()


# %% [markdown]
# ## 3. Two trainings of the same network
# **BCE**: class-balanced binary cross-entropy (signal against both backgrounds).
#
# **Z0**: the loss is `-Z0`. `Significance(..., sample=[...])` takes several soft histograms
# and returns the expected Z0 with `mu` and every nuisance parameter profiled; its gradient
# flows to every histogram. So that the gradient also sees how the network changes the
# **systematic**, the shape systematic enters the training workspace through histograms
# too: with `D = (up - down) / 2`, bkg1 is split into `bkg1 - |D|`, `max(D, 0)` carrying a
# histosys `(1 + a)` and `max(-D, 0)` carrying `(1 - a)` (one shared parameter `a`): the total
# is `bkg1 + a D`, a linear (symmetrised) shape systematic whose relative modifiers are
# constant, so the module's "modifiers keep their relative size" rule is exact and one
# module serves the whole training. The evaluation uses the ordinary asymmetric histosys.

# %%
TRAIN_SAMPLES = ["signal", "bkg1", "bkg1_shift_up", "bkg1_shift_dn", "bkg2"]


def training_workspace() -> dict:
    """The training likelihood (yields are placeholders: the module's inputs replace them)."""
    one = [1.0] * (len(EDGES) - 1)
    norm1 = {"name": "bkg1_norm", "type": "normsys", "data": {"hi": 1.05, "lo": 0.95}}

    def shape(hi: float, lo: float) -> dict:
        return {"name": "bkg1_shape", "type": "histosys",
                "data": {"hi_data": [hi] * len(one), "lo_data": [lo] * len(one)}}

    return {
        "channels": [{"name": "SR", "samples": [
            {"name": "signal", "data": one,
             "modifiers": [{"name": "mu", "type": "normfactor", "data": None}]},
            {"name": "bkg1", "data": one, "modifiers": [norm1]},
            {"name": "bkg1_shift_up", "data": one, "modifiers": [norm1, shape(2.0, 0.0)]},
            {"name": "bkg1_shift_dn", "data": one, "modifiers": [norm1, shape(0.0, 2.0)]},
            {"name": "bkg2", "data": one, "modifiers": [
                {"name": "bkg2_norm", "type": "normsys", "data": {"hi": 1.1, "lo": 0.9}}]},
        ]}],
        "observations": [{"name": "SR", "data": [5.0] * len(one)}],
        "measurements": [{"name": "meas", "config": {"poi": "mu", "parameters": []}}],
        "version": "1.0.0",
    }


def training_yields(net: torch.nn.Module) -> list:
    """The five soft histograms of TRAIN_SAMPLES for the training events."""
    y = soft_yields(net, train)
    up = soft_yields(net, {"bkg1": train["bkg1"]}, "x_up")["bkg1"]
    dn = soft_yields(net, {"bkg1": train["bkg1"]}, "x_dn")["bkg1"]
    d = 0.5 * (up - dn)
    pos, neg = torch.relu(d), torch.relu(-d)
    base = torch.clamp(y["bkg1"] - pos - neg, min=FLOOR)
    return [y["signal"], base, pos, neg, y["bkg2"]]


def train_bce(steps: int) -> tuple[torch.nn.Module, list[float]]:
    net = make_net()
    opt = torch.optim.Adam(net.parameters(), lr=LR)
    x = torch.as_tensor(np.concatenate([train[n]["x"] for n in ("signal", "bkg1", "bkg2")]))
    lab = torch.as_tensor(np.concatenate([np.full(len(train[n]["w"]), float(n == "signal"))
                                          for n in ("signal", "bkg1", "bkg2")]))
    w = np.concatenate([train[n]["w"] / train[n]["w"].sum() for n in ("signal", "bkg1", "bkg2")])
    w[len(train["signal"]["w"]):] *= 0.5  # signal and background weigh the same
    w = torch.as_tensor(w / w.sum())
    curve = []
    for step in range(steps):
        loss = torch.nn.functional.binary_cross_entropy(net(x).squeeze(-1), lab, weight=w,
                                                        reduction="sum")
        opt.zero_grad()
        loss.backward()
        opt.step()
        if step % EVAL_EVERY == 0 or step == steps - 1:
            curve.append(expected_z0(net, train))
    return net, curve


def train_z0(steps: int) -> tuple[torch.nn.Module, list[float]]:
    net = make_net()
    opt = torch.optim.Adam(net.parameters(), lr=LR)
    sig = Significance(training_workspace(), channel="SR", sample=TRAIN_SAMPLES,
                       metric="z0", data="asimov")
    curve = []
    for step in range(steps):
        loss = -sig(*training_yields(net))
        opt.zero_grad()
        loss.backward()
        opt.step()
        if step % EVAL_EVERY == 0 or step == steps - 1:
            curve.append(expected_z0(net, train))
    return net, curve


t0 = time.perf_counter()
net_bce, curve_bce = train_bce(args.steps)
t1 = time.perf_counter()
net_z0, curve_z0 = train_z0(args.steps)
t2 = time.perf_counter()
print(f"training: BCE {t1 - t0:.1f} s, Z0 {t2 - t1:.1f} s ({args.steps} steps each)")

# %% [markdown]
# ## 4. Evaluation on independent events: hard histograms, exact expected Z0
# histgym's value is cross-checked with pyhf on the same exported workspace (Asimov data at
# `mu = 1`, nuisances nominal, `pyhf.infer.test_statistics.q0`).

# %%
import warnings

import pyhf


def pyhf_expected_z0(ws: dict) -> float:
    pyhf.set_backend("numpy", pyhf.optimize.scipy_optimizer(tolerance=1e-12))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        model = pyhf.Workspace(ws).model()
        init = model.config.suggested_init()
        p = list(init)
        p[model.config.poi_index] = 1.0
        q0 = pyhf.infer.test_statistics.q0(0.0, model.expected_data(p), model, init,
                                           model.config.suggested_bounds(),
                                           model.config.suggested_fixed())
    return float(np.sqrt(max(float(q0), 0.0)))


results = {}
for label, net in (("BCE", net_bce), ("Z0 ", net_z0)):
    z_hg = expected_z0(net, test)
    z_py = pyhf_expected_z0(analysis_workspace(net, test))
    results[label.strip()] = z_hg
    print(f"{label} classifier - expected Z0 with systematics (test events): "
          f"histgym {z_hg:.4f}, pyhf {z_py:.4f}")
gain = results["Z0"] / results["BCE"]
print(f"Z0-trained / BCE-trained expected Z0: {gain:.3f}")

# %% [markdown]
# ## 5. Plot: training curves and the score histograms of both classifiers

# %%
fig, axes = plt.subplots(1, 3, figsize=(15, 4.2))
steps_axis = [min(EVAL_EVERY * i, args.steps - 1) for i in range(len(curve_bce))]
axes[0].plot(steps_axis, curve_bce, label="BCE loss")
axes[0].plot(steps_axis, curve_z0, label="-Z0 loss (histgym.torch)")
axes[0].set_xlabel("training step")
axes[0].set_ylabel("expected Z0, hard histograms (training events)")
axes[0].legend()
for ax, (label, net) in zip(axes[1:], (("BCE", net_bce), ("Z0", net_z0))):
    y = hard_yields(net, test)
    bottom = np.zeros(len(EDGES) - 1)
    for name in ("bkg2", "bkg1", "signal"):
        ax.bar(EDGES[:-1], y[name], width=np.diff(EDGES), bottom=bottom, align="edge",
               label=name, alpha=0.8)
        bottom += y[name]
    ax.set_yscale("log")
    ax.set_ylim(bottom=0.1)
    ax.set_xlabel("classifier score")
    ax.set_ylabel("expected events")
    ax.set_title(f"{label}-trained: expected Z0 = {results[label]:.3f}")
    ax.legend()
fig.tight_layout()
fig.savefig(args.figure, dpi=90)
print(f"figure written to {args.figure}")
