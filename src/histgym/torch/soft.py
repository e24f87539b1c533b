"""Torch layer: differentiable (relaxed) cuts and histograms of per-event values.

Building blocks to go from a network's output on events to the yields that
:class:`~histgym.torch.Significance` scores: every function is plain PyTorch (autograd
through the event values, the weights, the thresholds and the bin edges). The bandwidth sets
the relaxation: as it goes to 0 the functions tend to the hard cut / histogram.

Shapes: ``x`` is float ``[..., n_events]`` (leading batch axes allowed); ``weights`` has the
shape of ``x`` (or broadcasts to it; default 1 per event); ``edges`` is float
``[n_bins + 1]``, strictly increasing (a tensor may require grad, for learnable binning).
Histograms return ``[..., n_bins]`` in the units of the weights (events).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import torch

from ..errors import InvalidParameters
from .significance import InvalidTensor

__all__ = ["soft_cut", "sigmoid_histogram", "kde_histogram"]

_SQRT2 = math.sqrt(2.0)


def _tensor(x: Any, name: str) -> torch.Tensor:
    if not isinstance(x, torch.Tensor):
        raise InvalidTensor(f"{name} must be a torch.Tensor, got {type(x).__name__}")
    if not x.is_floating_point():
        raise InvalidTensor(f"{name} has dtype {x.dtype}; expected a floating dtype")
    return x


def _bandwidth(bandwidth: Any) -> float | torch.Tensor:
    if isinstance(bandwidth, torch.Tensor):
        if bandwidth.numel() != 1 or not bool(torch.isfinite(bandwidth).all()) or not bool(
            (bandwidth > 0).all()
        ):
            raise InvalidParameters(f"bandwidth must be one finite value > 0, got {bandwidth}")
        return bandwidth.reshape(())
    try:
        b = float(bandwidth)
    except (TypeError, ValueError):
        raise InvalidParameters(f"bandwidth must be a number > 0, got {bandwidth!r}") from None
    if not (math.isfinite(b) and b > 0.0):
        raise InvalidParameters(f"bandwidth must be finite and > 0, got {bandwidth!r}")
    return b


def _edges(edges: Sequence[float] | torch.Tensor, like: torch.Tensor) -> torch.Tensor:
    e = edges if isinstance(edges, torch.Tensor) else torch.as_tensor(
        list(edges), dtype=like.dtype, device=like.device
    )
    e = _tensor(e, "edges")
    if e.dim() != 1 or e.shape[0] < 2:
        raise InvalidParameters(
            f"edges must be 1-D with at least 2 entries (n_bins + 1), got shape {tuple(e.shape)}"
        )
    if not bool(torch.isfinite(e).all()) or not bool((e[1:] > e[:-1]).all()):
        raise InvalidParameters("edges must be finite and strictly increasing")
    return e


def _weights(weights: torch.Tensor | None, x: torch.Tensor) -> torch.Tensor | None:
    if weights is None:
        return None
    w = _tensor(weights, "weights")
    try:
        torch.broadcast_shapes(w.shape, x.shape)
    except RuntimeError:
        raise InvalidParameters(
            f"weights of shape {tuple(w.shape)} do not broadcast to x of shape {tuple(x.shape)}"
        ) from None
    return w


def soft_cut(
    x: torch.Tensor, threshold: float | torch.Tensor, *, bandwidth: float | torch.Tensor,
    keep: str = "above",
) -> torch.Tensor:  # fmt: skip
    """Sigmoid-relaxed cut: the weight of each event for ``x > threshold`` (or below).

    ``sigmoid((x - threshold) / bandwidth)`` for ``keep="above"``,
    ``sigmoid((threshold - x) / bandwidth)`` for ``keep="below"``; 1/2 at the threshold, the
    hard step as ``bandwidth -> 0``. Multiply event weights by it.

    Args:
        x: float [..., n_events] the cut variable (e.g. a classifier output).
        threshold: the cut value (a number or a tensor, which may require grad).
        bandwidth: > 0, in the units of ``x``.
        keep: ``"above"`` (default) or ``"below"``.

    Returns:
        float [..., n_events] in (0, 1).
    """
    x = _tensor(x, "x")
    b = _bandwidth(bandwidth)
    if keep not in ("above", "below"):
        raise InvalidParameters(f"keep must be 'above' or 'below', got {keep!r}")
    z = (x - threshold) / b
    return torch.sigmoid(z if keep == "above" else -z)


def sigmoid_histogram(
    x: torch.Tensor, edges: Sequence[float] | torch.Tensor, *, bandwidth: float | torch.Tensor,
    weights: torch.Tensor | None = None,
) -> torch.Tensor:  # fmt: skip
    """Histogram with sigmoid bin edges: each event counts ``s(x - lo) - s(x - hi)`` in a bin.

    ``s(u) = sigmoid(u / bandwidth)``. Bins sum to ``s(x - e_0) - s(x - e_n)`` per event:
    events far outside ``[e_0, e_n]`` count nowhere (no under/overflow), as a hard histogram.

    Args:
        x: float [..., n_events].
        edges: float [n_bins + 1], strictly increasing.
        bandwidth: > 0, in the units of ``x``.
        weights: float, broadcastable to ``x``; defaults to None (1 per event).

    Returns:
        float [..., n_bins] yields.
    """
    x = _tensor(x, "x")
    b = _bandwidth(bandwidth)
    e = _edges(edges, x)
    w = _weights(weights, x)
    s = torch.sigmoid((x.unsqueeze(-1) - e) / b)  # [..., n_events, n_bins + 1]
    member = s[..., :-1] - s[..., 1:]
    if w is not None:
        member = member * torch.broadcast_to(w, x.shape).unsqueeze(-1)
    return member.sum(dim=-2)


def kde_histogram(
    x: torch.Tensor, edges: Sequence[float] | torch.Tensor, *, bandwidth: float | torch.Tensor,
    weights: torch.Tensor | None = None,
) -> torch.Tensor:  # fmt: skip
    """Gaussian kernel-density histogram: each event is a normal of width ``bandwidth``.

    An event at ``x`` contributes ``Phi((hi - x) / bandwidth) - Phi((lo - x) / bandwidth)``
    (the kernel's mass inside the bin); mass outside ``[e_0, e_n]`` is dropped.

    Args:
        x: float [..., n_events].
        edges: float [n_bins + 1], strictly increasing.
        bandwidth: > 0, in the units of ``x``.
        weights: float, broadcastable to ``x``; defaults to None (1 per event).

    Returns:
        float [..., n_bins] yields.
    """
    x = _tensor(x, "x")
    b = _bandwidth(bandwidth)
    e = _edges(edges, x)
    w = _weights(weights, x)
    cdf = 0.5 * (1.0 + torch.erf((e - x.unsqueeze(-1)) / (b * _SQRT2)))  # [..., n_ev, n_e]
    member = cdf[..., 1:] - cdf[..., :-1]
    if w is not None:
        member = member * torch.broadcast_to(w, x.shape).unsqueeze(-1)
    return member.sum(dim=-2)
