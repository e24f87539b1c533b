"""histgym.scan.plot: contour and Brazil-band figures draw what the records hold."""

from __future__ import annotations

import math

import matplotlib
import numpy as np
import pytest

matplotlib.use("Agg")

from histgym.errors import InvalidParameters  # noqa: E402
from histgym.scan import plot  # noqa: E402


def records():
    """A 6 x 4 grid whose CLs falls with m1 (exclusion boundary near m1 = 500)."""
    out = []
    for m1 in np.linspace(200, 1000, 6):
        for m2 in np.linspace(0, 0.6 * m1, 4):
            c = math.exp(-(1000 - m1) / 150.0) * (1 + m2 / 1000)
            lim = 0.2 * math.exp(m1 / 300.0)
            out.append({
                "patch": f"p_{int(m1)}_{int(m2)}", "values": [float(m1), float(m2)],
                "cls_obs": min(c, 1.0), "cls_exp": [min(c * f, 1.0) for f in (0.3, 0.6, 1.0, 1.6, 2.5)],
                "limit_obs": lim, "limit_exp": [lim * f for f in (0.5, 0.7, 1.0, 1.4, 2.0)],
            })
    return out


def test_contour_draws_observed_expected_and_band(tmp_path):
    fig = plot.exclusion_contour(records(), labels=("m1 [GeV]", "m2 [GeV]"))
    ax = fig.axes[0]
    assert ax.get_xlabel() == "m1 [GeV]"
    texts = [t.get_text() for t in ax.get_legend().get_texts()]
    assert any("observed" in t for t in texts) and any("expected" in t for t in texts)
    assert any("1\\sigma" in t for t in texts)
    # the observed CLs = 0.05 contour lies where the records cross 0.05 (m1 ~ 550)
    from matplotlib.contour import ContourSet

    lines = [c for c in ax.collections if isinstance(c, ContourSet) and not c.filled]
    assert len(lines) == 4  # observed, expected, expected +-1 sigma
    segs = [p.vertices for c in lines for p in c.get_paths() if len(p.vertices)]
    xs = np.concatenate([s[:, 0] for s in segs])
    assert 300 < xs.min() and xs.max() < 800
    plot.save(fig, str(tmp_path / "contour.png"))
    assert (tmp_path / "contour.png").stat().st_size > 1000


def test_brazil_plot_along_one_axis(tmp_path):
    fig = plot.brazil(records(), x=0, where={1: 0.0}, label="m1 [GeV]")
    ax = fig.axes[0]
    obs = [line for line in ax.get_lines() if line.get_label() == "observed"][0]
    np.testing.assert_allclose(obs.get_xdata(), np.linspace(200, 1000, 6))
    np.testing.assert_allclose(obs.get_ydata(), 0.2 * np.exp(np.linspace(200, 1000, 6) / 300.0))
    assert ax.get_yscale() == "log"
    plot.save(fig, str(tmp_path / "brazil.pdf"))


def test_too_few_points():
    with pytest.raises(InvalidParameters, match="at least 3 points"):
        plot.exclusion_contour(records()[:2])
    with pytest.raises(InvalidParameters, match="at least 2 points"):
        plot.brazil(records(), where={1: 123.0})
