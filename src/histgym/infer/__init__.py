"""Inference layer: test statistics, asymptotic and toy-based CLs, limits, significance.

Definitions and conventions follow ``pyhf.infer`` (pyhf 0.7.6); see each function.
"""

from __future__ import annotations

from .asymptotics import AsymptoticCalculator, asimov_data, hypotest, significance
from .batch import q0_yields_batch, qmu_tilde_yields_batch
from .limits import upper_limit
from .results import (
    HypotestResult,
    LimitResult,
    RankingResult,
    SignificanceResult,
    TestStatResult,
)
from .teststats import q0, qmu, qmu_tilde, tmu, tmu_tilde

__all__ = [
    "AsymptoticCalculator",
    "HypotestResult",
    "LimitResult",
    "RankingResult",
    "SignificanceResult",
    "TestStatResult",
    "asimov_data",
    "hypotest",
    "q0",
    "q0_yields_batch",
    "qmu",
    "qmu_tilde",
    "qmu_tilde_yields_batch",
    "significance",
    "tmu",
    "tmu_tilde",
    "upper_limit",
]


def __dir__() -> list[str]:
    return __all__
