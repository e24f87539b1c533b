"""Scan layer: the plots of a signal grid (needs matplotlib: ``pip install "histgym[plot]"``).

- :func:`exclusion_contour`: the CLs = 0.05 contour in the plane of two patch-metadata
  values (e.g. the two masses): observed (solid), expected (dashed) and its +-1 sigma band.
- :func:`brazil`: upper limits along one metadata value: observed, expected, +-1 and
  +-2 sigma bands (green, yellow), and the mu = 1 line.

Both take the records of :func:`histgym.scan.scan` (or :func:`read_results`) and return a
``matplotlib.figure.Figure``; :func:`save` writes one to a file.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np

from ..errors import InvalidParameters, MissingExtra

__all__ = ["exclusion_contour", "brazil", "save"]


def _plt() -> Any:
    try:
        import matplotlib.pyplot as plt
    except ImportError:
        raise MissingExtra('plots need matplotlib: pip install "histgym[plot]"') from None
    return plt


def _grid(records: Sequence[dict[str, Any]], x: int, y: int) -> tuple[np.ndarray, np.ndarray]:
    pts = []
    for r in records:
        vals = r["values"]
        if len(vals) <= max(x, y):
            raise InvalidParameters(f"patch {r['patch']!r} has {len(vals)} metadata values; index {max(x, y)} asked")
        pts.append((float(vals[x]), float(vals[y])))
    return np.array(pts)[:, 0], np.array(pts)[:, 1]


def exclusion_contour(
    records: Sequence[dict[str, Any]],
    *,
    x: int = 0,
    y: int = 1,
    labels: tuple[str, str] | None = None,
    level: float = 0.05,
    show_points: bool = True,
    title: str | None = None,
) -> Any:
    """Observed and expected exclusion contours (CLs = ``level``) in the (x, y) plane.

    Args:
        records: scan records with ``cls_obs`` and ``cls_exp``.
        x, y: indices of the metadata values on the axes, defaults to 0 and 1.
        labels: axis labels, defaults to ``values[x]``/``values[y]``.
        level: the CLs level, defaults to 0.05 (95% CL).
        show_points: mark the scanned points (excluded points filled).
        title: figure title.

    Returns:
        A matplotlib Figure.  Contours are drawn on the Delaunay triangulation of the points
        with CLs interpolated linearly in log10(CLs).
    """
    plt = _plt()
    import matplotlib.tri as mtri

    recs = [r for r in records if not (isinstance(r["cls_obs"], float) and math.isnan(r["cls_obs"]))]
    if len(recs) < 3:
        raise InvalidParameters(f"a contour needs at least 3 points with CLs, got {len(recs)}")
    xs, ys = _grid(recs, x, y)
    tri = mtri.Triangulation(xs, ys)

    def logcls(v: Any) -> np.ndarray:
        return np.log10(np.clip(np.asarray(v, dtype=float), 1e-300, 1.0))

    lv = math.log10(level)
    obs = logcls([r["cls_obs"] for r in recs])
    exp = np.array([logcls(r["cls_exp"]) for r in recs])  # [n, 5]: -2..+2 sigma
    fig, ax = plt.subplots(figsize=(6.4, 4.8))
    # +-1 sigma band: between the -1 and +1 sigma expected contours
    try:
        ax.tricontourf(tri, exp[:, 1] - lv, levels=[-1e9, 0.0], colors=["#ffd54f"], alpha=0.35)
        ax.tricontourf(tri, exp[:, 3] - lv, levels=[-1e9, 0.0], colors=["#ffd54f"], alpha=0.35)
    except ValueError:  # pragma: no cover - degenerate triangulation
        pass
    handles = []
    from matplotlib.lines import Line2D
    from matplotlib.patches import Patch

    for values, style, color, name in (
        (exp[:, 2], "--", "k", "expected"),
        (exp[:, 1], ":", "#b8860b", None),
        (exp[:, 3], ":", "#b8860b", None),
        (obs, "-", "#c62828", "observed"),
    ):
        if np.nanmin(values) < lv < np.nanmax(values):
            ax.tricontour(tri, values, levels=[lv], colors=[color], linestyles=[style], linewidths=2 if name else 1)
        if name:
            handles.append(Line2D([], [], color=color, linestyle=style, lw=2, label=f"{name} (CLs = {level:g})"))
    handles.insert(1, Patch(color="#ffd54f", alpha=0.6, label=r"expected $\pm 1\sigma$"))
    if show_points:
        excl = obs < lv
        ax.scatter(xs[~excl], ys[~excl], s=12, facecolors="none", edgecolors="0.5", label="allowed")
        ax.scatter(xs[excl], ys[excl], s=12, color="0.3", label="excluded")
    ax.set_xlabel(labels[0] if labels else f"values[{x}]")
    ax.set_ylabel(labels[1] if labels else f"values[{y}]")
    ax.legend(handles=handles, loc="best", frameon=False, fontsize=9)
    if title:
        ax.set_title(title)
    fig.tight_layout()
    return fig


def brazil(
    records: Sequence[dict[str, Any]],
    *,
    x: int = 0,
    where: dict[int, Any] | None = None,
    label: str | None = None,
    title: str | None = None,
    logy: bool = True,
) -> Any:
    """Upper limits on mu along metadata value ``x``: observed, expected, +-1/2 sigma bands.

    Args:
        records: scan records with ``limit_obs`` and ``limit_exp``.
        x: index of the metadata value on the horizontal axis, defaults to 0.
        where: keep only records whose metadata value at each index equals the given one
            (e.g. ``{1: 0}``: the slice m2 = 0), defaults to all records.
        label: x-axis label, defaults to ``values[x]``.
        title: figure title.
        logy: logarithmic limit axis, defaults to True.

    Returns:
        A matplotlib Figure.
    """
    plt = _plt()
    recs = [
        r
        for r in records
        if not math.isnan(float(r["limit_obs"])) and all(r["values"][k] == v for k, v in (where or {}).items())
    ]
    if len(recs) < 2:
        raise InvalidParameters(f"a limit plot needs at least 2 points with limits, got {len(recs)}")
    recs.sort(key=lambda r: float(r["values"][x]))
    xs = np.array([float(r["values"][x]) for r in recs])
    obs = np.array([r["limit_obs"] for r in recs], dtype=float)
    exp = np.array([r["limit_exp"] for r in recs], dtype=float)
    fig, ax = plt.subplots(figsize=(6.4, 4.8))
    ax.fill_between(xs, exp[:, 0], exp[:, 4], color="#fdd835", label=r"expected $\pm 2\sigma$", lw=0)
    ax.fill_between(xs, exp[:, 1], exp[:, 3], color="#43a047", label=r"expected $\pm 1\sigma$", lw=0)
    ax.plot(xs, exp[:, 2], "k--", label="expected")
    ax.plot(xs, obs, "k-", marker="o", ms=3, label="observed")
    ax.axhline(1.0, color="#c62828", lw=1, label=r"$\mu = 1$")
    if logy:
        ax.set_yscale("log")
    ax.set_xlabel(label or f"values[{x}]")
    ax.set_ylabel(r"95% CL upper limit on $\mu$")
    ax.legend(frameon=False, fontsize=9)
    if title:
        ax.set_title(title)
    fig.tight_layout()
    return fig


def save(fig: Any, path: str) -> None:
    """Write ``fig`` to ``path`` (format from the suffix) and close it."""
    fig.savefig(path, dpi=120)
    _plt().close(fig)
