"""histgym.torch.soft: relaxed cuts and histograms tend to the hard ones, are differentiable
(gradcheck through events, weights, thresholds and edges), and reject bad input."""

from __future__ import annotations

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from histgym.errors import InvalidParameters  # noqa: E402
from histgym.torch import InvalidTensor, kde_histogram, sigmoid_histogram, soft_cut  # noqa: E402

EDGES = [0.0, 0.25, 0.5, 0.75, 1.0]


def _events(n: int = 400, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    g = np.random.default_rng(seed)
    x = torch.tensor(g.uniform(-0.2, 1.2, n))
    w = torch.tensor(g.uniform(0.5, 1.5, n))
    return x, w


@pytest.mark.parametrize("hist", [sigmoid_histogram, kde_histogram])
def test_small_bandwidth_gives_the_hard_histogram(hist):
    x, w = _events()
    hard, _ = np.histogram(x.numpy(), bins=EDGES, weights=w.numpy())
    soft = hist(x, EDGES, bandwidth=1e-6, weights=w)
    # events closer than ~10 bandwidths to an edge are split; none is with this seed
    np.testing.assert_allclose(soft.numpy(), hard, rtol=1e-9)
    assert soft.shape == (4,)


@pytest.mark.parametrize("hist", [sigmoid_histogram, kde_histogram])
def test_batched_events_and_mass_conservation(hist):
    x, w = _events()
    xb = torch.stack([x, x.flip(0) * 0.5 + 0.25])
    out = hist(xb, EDGES, bandwidth=0.05, weights=w)
    assert out.shape == (2, 4)
    torch.testing.assert_close(out[0], hist(x, EDGES, bandwidth=0.05, weights=w))
    # events well inside the range keep (almost) all their weight
    inner = hist(x * 0.2 + 0.4, EDGES, bandwidth=0.01)
    assert float(inner.sum()) == pytest.approx(x.numel(), rel=1e-9)
    assert (out >= 0).all()


def test_soft_cut_limits_and_direction():
    x = torch.tensor([-1.0, 0.3, 0.5, 0.7, 2.0], dtype=torch.float64)
    above = soft_cut(x, 0.5, bandwidth=1e-4)
    torch.testing.assert_close(above, torch.tensor([0.0, 0.0, 0.5, 1.0, 1.0],
                                                   dtype=torch.float64))
    below = soft_cut(x, 0.5, bandwidth=0.1, keep="below")
    torch.testing.assert_close(above.new_ones(5) - soft_cut(x, 0.5, bandwidth=0.1), below)


def test_gradcheck_through_events_weights_edges_threshold():
    x, w = _events(30)
    x.requires_grad_(True)
    w.requires_grad_(True)
    edges = torch.tensor(EDGES, dtype=torch.float64, requires_grad=True)
    t = torch.tensor(0.4, dtype=torch.float64, requires_grad=True)
    for hist in (sigmoid_histogram, kde_histogram):
        assert torch.autograd.gradcheck(
            lambda x, w, e, t, h=hist: h(x, e, bandwidth=0.07, weights=w * soft_cut(
                x, t, bandwidth=0.1)), (x, w, edges, t))


def test_a_network_output_becomes_yields_differentiably():
    torch.manual_seed(0)
    net = torch.nn.Sequential(torch.nn.Linear(2, 1), torch.nn.Sigmoid())
    feats = torch.randn(50, 2)
    y = kde_histogram(net(feats).squeeze(-1), EDGES, bandwidth=0.05)
    y.sum().backward()
    assert y.dtype == torch.float32
    assert all(p.grad is not None and torch.isfinite(p.grad).all() for p in net.parameters())


def test_bad_inputs():
    x = torch.linspace(0, 1, 10, dtype=torch.float64)
    with pytest.raises(InvalidTensor, match="x must be a torch.Tensor"):
        sigmoid_histogram(np.ones(3), EDGES, bandwidth=0.1)
    with pytest.raises(InvalidTensor, match="dtype"):
        kde_histogram(torch.arange(3), EDGES, bandwidth=0.1)
    for bw in (0.0, -1.0, float("nan"), "wide"):
        with pytest.raises(InvalidParameters, match="bandwidth"):
            kde_histogram(x, EDGES, bandwidth=bw)
    with pytest.raises(InvalidParameters, match="strictly increasing"):
        sigmoid_histogram(x, [0.0, 0.5, 0.5, 1.0], bandwidth=0.1)
    with pytest.raises(InvalidParameters, match="at least 2"):
        sigmoid_histogram(x, [0.0], bandwidth=0.1)
    with pytest.raises(InvalidParameters, match="broadcast"):
        sigmoid_histogram(x, EDGES, bandwidth=0.1, weights=torch.ones(3, dtype=torch.float64))
    with pytest.raises(InvalidParameters, match="keep"):
        soft_cut(x, 0.5, bandwidth=0.1, keep="left")
