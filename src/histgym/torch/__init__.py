"""Torch layer (extra ``torch``): histgym's figures of merit as differentiable PyTorch losses.

:class:`Significance` maps one sample's yields to a profile-likelihood metric (z0, q0, qmu,
zmu, the expected CLs) with the exact gradient computed by histgym's compiled kernels;
:mod:`histgym.torch.soft` turns per-event network outputs into yields differentiably
(sigmoid-relaxed cuts, sigmoid-edge and Gaussian-KDE histograms).

Needs PyTorch: ``pip install "histgym[torch]"``. The rest of histgym never imports torch.
"""

from __future__ import annotations

from ..errors import MissingExtra

try:
    import torch as _torch  # noqa: F401
except ImportError:  # pragma: no cover - exercised in a subprocess test
    raise MissingExtra(
        'histgym.torch needs PyTorch, which is not installed: pip install "histgym[torch]"'
    ) from None

from .significance import METRICS, InvalidTensor, Significance
from .soft import kde_histogram, sigmoid_histogram, soft_cut

__all__ = [
    "METRICS",
    "Significance",
    "InvalidTensor",
    "kde_histogram",
    "sigmoid_histogram",
    "soft_cut",
]
