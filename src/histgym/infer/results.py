"""Inference layer: result types of :mod:`histgym.infer` (frozen dataclasses).

Every float is finite: failed fits inside an inference call are flagged (``converged``
fields), never turned into NaN.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np
import numpy.typing as npt

from ..fit import FitResult

__all__ = [
    "TestStatResult",
    "HypotestResult",
    "LimitResult",
    "SignificanceResult",
    "RankingResult",
]

FloatArray = npt.NDArray[np.float64]


@dataclass(frozen=True)
class TestStatResult:
    """A profile-likelihood test statistic and the two fits it ran.

    Attributes:
        value: the test statistic (>= 0).
        poi_test: the tested POI value.
        fixed_fit: fit with the POI fixed at ``poi_test`` (pyhf's ``mubhathat``).
        free_fit: fit with the POI free (pyhf's ``muhatbhat``).
    """

    __test__ = False  # not a pytest class

    value: float
    poi_test: float
    fixed_fit: FitResult = field(repr=False)
    free_fit: FitResult = field(repr=False)


@dataclass(frozen=True)
class HypotestResult:
    """Result of :func:`histgym.infer.hypotest` (pyhf's ``hypotest`` return conventions).

    For ``test_stat="q0"`` pyhf returns the discovery p-value ``p0 = CLsb`` as its first
    value and ``[CLb]`` as tail probabilities; ``cls_obs`` then holds p0 and ``cls_exp`` the
    expected p0 band, exactly as pyhf's first and last return values.

    Attributes:
        poi_test: tested POI value.
        test_stat: ``"qtilde"``, ``"q"`` or ``"q0"``.
        calctype: ``"asymptotics"`` or ``"toybased"``.
        cls_obs: observed CLs (p0 for q0).
        clsb: observed CL_{s+b} (p-value of the s+b hypothesis).
        clb: observed CL_b.
        cls_exp: 5 expected values for (-2, -1, 0, +1, +2) sigma, pyhf's order
            (expected CLs; expected p0 for q0).
        teststat: the observed test statistic (q, not the asymptotic transform).
        teststat_asimov: the test statistic on Asimov data (asymptotics only, else 0).
        converged: every fit that entered the result converged.
        ntoys: number of toys per hypothesis (0 for asymptotics).
    """

    poi_test: float
    test_stat: str
    calctype: str
    cls_obs: float
    clsb: float
    clb: float
    cls_exp: tuple[float, float, float, float, float]
    teststat: float
    teststat_asimov: float
    converged: bool
    ntoys: int = 0

    @property
    def tail_probs(self) -> list[float]:
        """pyhf's tail probabilities: ``[CLsb, CLb]`` (``[CLb]`` for q0)."""
        return [self.clb] if self.test_stat == "q0" else [self.clsb, self.clb]

    def as_dict(self) -> dict[str, Any]:
        """JSON-ready dict of every field."""
        d = asdict(self)
        d["cls_exp"] = list(self.cls_exp)
        return d


@dataclass(frozen=True)
class LimitResult:
    """Upper limit on the POI (CLs, asymptotics) from root finding.

    Attributes:
        obs: observed upper limit.
        exp: 5 expected limits for (-2, -1, 0, +1, +2) sigma (pyhf's band order).
        cl: confidence level (0.95 means CLs = 0.05).
        test_stat: test statistic used.
        converged: all fits converged and every root was bracketed.
        n_evaluations: number of POI values at which CLs was evaluated.
    """

    obs: float
    exp: tuple[float, float, float, float, float]
    cl: float
    test_stat: str
    converged: bool
    n_evaluations: int

    def as_dict(self) -> dict[str, Any]:
        """JSON-ready dict of every field."""
        d = asdict(self)
        d["exp"] = list(self.exp)
        return d


@dataclass(frozen=True)
class SignificanceResult:
    """Discovery significance from q0 (asymptotics, Z0 = sqrt(q0)).

    Attributes:
        z_obs: observed significance sqrt(q0).
        p_obs: observed p-value 1 - Phi(z_obs) (pyhf's hypotest with ``test_stat="q0"``).
        z_exp: expected significance sqrt(q0_A) on Asimov data at mu = 1.
        p_exp: expected (median) p-value.
        p_exp_band: expected p0 band for (-2, -1, 0, +1, +2) sigma.
        q0: observed q0.
        q0_asimov: q0 on the Asimov (mu = 1) data set.
        converged: every fit converged.
    """

    z_obs: float
    p_obs: float
    z_exp: float
    p_exp: float
    p_exp_band: tuple[float, float, float, float, float]
    q0: float
    q0_asimov: float
    converged: bool

    def as_dict(self) -> dict[str, Any]:
        """JSON-ready dict of every field."""
        d = asdict(self)
        d["p_exp_band"] = list(self.p_exp_band)
        return d


@dataclass(frozen=True)
class RankingResult:
    """Nuisance-parameter impacts on the POI, cabinetry's definitions (arrays [n_ranked]).

    Attributes:
        names: ranked parameter names (POI and fixed parameters excluded), in
            decreasing ``total_impact`` order.
        bestfit: best-fit values.
        uncertainty: post-fit uncertainties.
        prefit_up, prefit_down: POI shift with the parameter fixed at best fit +- prior
            width (0 for free-floating parameters, as cabinetry).
        postfit_up, postfit_down: POI shift with the parameter fixed at best fit +- its
            post-fit uncertainty.
        pull: (best fit - prior centre) / prior width (0 for free-floating parameters).
        constraint: post-fit uncertainty / prior width (the post-fit uncertainty itself for
            free-floating parameters).
        total_impact: |postfit_up| + |postfit_down|.
        poi_bestfit: the POI at the nominal best fit.
        converged: every fit converged.
    """

    names: list[str]
    bestfit: FloatArray
    uncertainty: FloatArray
    prefit_up: FloatArray
    prefit_down: FloatArray
    postfit_up: FloatArray
    postfit_down: FloatArray
    pull: FloatArray
    constraint: FloatArray
    total_impact: FloatArray
    poi_bestfit: float
    converged: bool
