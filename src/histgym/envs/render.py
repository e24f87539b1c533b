"""Environments layer: rendering of an environment's state (text, or an RGB image).

Pure functions of arrays; matplotlib is imported only by :func:`rgb_array`.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import numpy.typing as npt

from ..errors import MissingExtra

__all__ = ["stacked_samples", "ansi", "rgb_array"]


def stacked_samples(model: Any, channel: str) -> dict[str, npt.NDArray[np.float64]]:
    """Nominal yields (float64 [n_bins]) of every sample of ``channel``, in pyhf's order."""
    return {s: model.sample_yields(channel, s) for s in model.samples(channel)}


def ansi(stack: dict[str, Any], controlled: str, data: Any, step: int) -> str:
    """A text table: one row per bin, one column per sample (controlled one marked ``*``), data."""
    names = list(stack)
    head = ["bin"] + [f"{n}*" if n == controlled else n for n in names] + ["data"]
    width = max(10, *(len(h) + 1 for h in head))
    lines = [f"step {step}", "".join(h.rjust(width) for h in head)]
    for b in range(len(data)):
        row = [str(b)] + [f"{stack[n][b]:.4g}" for n in names] + [f"{data[b]:.4g}"]
        lines.append("".join(c.rjust(width) for c in row))
    return "\n".join(lines) + "\n"


def rgb_array(
    stack: dict[str, Any], controlled: str, data: Any, step: int
) -> npt.NDArray[np.uint8]:
    """Stacked histogram of the samples (controlled one highlighted) and the data points.

    Returns:
        uint8 [H, W, 3] image. Requires matplotlib (``pip install histgym[plot]``).
    """
    try:
        from matplotlib.backends.backend_agg import FigureCanvasAgg
        from matplotlib.figure import Figure
    except ImportError as err:  # pragma: no cover - depends on the installation
        msg = "render_mode='rgb_array' needs matplotlib: pip install \"histgym[plot]\""
        raise MissingExtra(msg) from err
    fig = Figure(figsize=(4, 3), dpi=80)
    canvas = FigureCanvasAgg(fig)
    ax = fig.add_subplot()
    n = len(data)
    edges = np.arange(n + 1)
    bottom = np.zeros(n)
    for name, y in stack.items():
        hi = name == controlled
        ax.bar(edges[:-1], y, width=1.0, bottom=bottom, align="edge", label=name,
               color="#D4AF37" if hi else None, alpha=1.0 if hi else 0.6,
               edgecolor="k" if hi else "none", linewidth=1.0)
        bottom = bottom + np.asarray(y)
    ax.plot(edges[:-1] + 0.5, data, "ko", ms=3, label="data")
    ax.set_xlabel("bin")
    ax.set_ylabel("events")
    ax.set_title(f"step {step}")
    ax.legend(fontsize=6)
    fig.tight_layout()
    canvas.draw()
    return np.asarray(canvas.buffer_rgba())[:, :, :3].copy()
