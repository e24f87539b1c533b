"""histgym.plot: the figures render to PNG files of the expected size."""

from __future__ import annotations

import numpy as np
import pytest

pytest.importorskip("matplotlib")

from histgym import plot  # noqa: E402


def _save(fig, path):
    import matplotlib.image
    import matplotlib.pyplot as plt

    fig.savefig(path, dpi=100)
    plt.close(fig)
    assert path.stat().st_size > 5_000
    return matplotlib.image.imread(path).shape[:2]


def _episode(rng, T=16, n=4):
    y = np.abs(rng.normal(3, 1, size=(T + 1, n)))
    return {"rewards": rng.uniform(1, 2, T).tolist(), "yields": y.tolist()}


def test_episode_figure(tmp_path):
    rng = np.random.default_rng(0)
    eps = {k: _episode(rng) for k in ("trained", "greedy", "random", "idle", "optimised")}
    eps["channel"] = "SR"  # non-episode entries are ignored
    fig = plot.episode_figure(eps, backgrounds={"bkg": [5, 4, 3, 2]}, metric="z0")
    assert len(fig.axes) == 3
    assert _save(fig, tmp_path / "e.png") == (450, 1500)
    with pytest.raises(KeyError, match="trained"):
        plot.episode_figure({"greedy": eps["greedy"]})


def test_training_figure(tmp_path):
    fig = plot.training_figure(np.arange(10) * 256, np.linspace(100, 200, 10),
                               references={"greedy": 200.2, "random": 125.0, "trained": 190})
    assert _save(fig, tmp_path / "t.png") == (450, 700)


def test_ranking_and_fit_figures(tmp_path, seed_model):
    from histgym import fit
    from histgym.interpret import rank_impact

    rows = rank_impact(seed_model)
    fig = plot.ranking_figure({"initial": rows, "optimised": rows}, poi="mu")
    assert len(fig.axes) == 4
    h, w = _save(fig, tmp_path / "r.png")
    assert w == 1500 and h > 200
    pre = plot.sample_yields(seed_model, seed_model.suggested_init())
    post = plot.sample_yields(seed_model, fit(seed_model).bestfit)
    assert set(pre["SR"]) == {"signal", "background"}
    np.testing.assert_allclose(pre["SR"]["signal"],
                               seed_model.spec["channels"][0]["samples"][0]["data"])
    data = seed_model.observed_data()[seed_model.channel_slice("SR")]
    fig = plot.fit_figure(pre["SR"], post["SR"], data, channel="SR")
    assert _save(fig, tmp_path / "f.png") == (450, 1200)
