"""Helpers and fixtures for the environment tests (imported by conftest.py and the tests)."""

from __future__ import annotations

import copy
import math
import warnings
from typing import Any

import numpy as np
import pytest

import histgym
import histgym.envs  # noqa: F401  (registers the Gymnasium ids)


def synthetic_workspace() -> dict[str, Any]:
    """Two channels; the controlled sample (``SR``/``signal``) carries a normfactor, a
    histosys, a staterror and a shapesys. ``CR`` sorts first, so ``SR`` bins start at 2."""
    return {
        "channels": [
            {
                "name": "SR",
                "samples": [
                    {
                        "name": "signal",
                        "data": [3.0, 9.0, 5.0],
                        "modifiers": [
                            {"name": "mu", "type": "normfactor", "data": None},
                            {"name": "sig_shape", "type": "histosys",
                             "data": {"hi_data": [3.6, 9.5, 4.6], "lo_data": [2.5, 8.4, 5.5]}},
                            {"name": "staterror_SR", "type": "staterror",
                             "data": [0.6, 1.0, 0.8]},
                            {"name": "sig_ss", "type": "shapesys", "data": [0.9, 1.2, 1.0]},
                        ],
                    },
                    {
                        "name": "background",
                        "data": [20.0, 15.0, 10.0],
                        "modifiers": [
                            {"name": "bkg_norm", "type": "normsys",
                             "data": {"hi": 1.1, "lo": 0.9}},
                            {"name": "staterror_SR", "type": "staterror",
                             "data": [1.5, 1.2, 1.0]},
                        ],
                    },
                ],
            },
            {
                "name": "CR",
                "samples": [
                    {
                        "name": "background",
                        "data": [50.0, 40.0],
                        "modifiers": [
                            {"name": "bkg_norm", "type": "normsys",
                             "data": {"hi": 1.1, "lo": 0.9}},
                        ],
                    }
                ],
            },
        ],
        "observations": [
            {"name": "SR", "data": [24.0, 27.0, 14.0]},
            {"name": "CR", "data": [52.0, 38.0]},
        ],
        "measurements": [{"name": "meas", "config": {"poi": "mu", "parameters": []}}],
        "version": "1.0.0",
    }


@pytest.fixture
def seed_ws() -> dict[str, Any]:
    return histgym.example_workspace()


@pytest.fixture
def synth_ws() -> dict[str, Any]:
    return synthetic_workspace()


def pyhf_reward(ws: dict[str, Any], metric: str, *, mu_test: float = 5.0,
                data: str = "observed", fixed_params: Any = None) -> float:
    """The reward value computed by pyhf (numpy backend, scipy at a tight tolerance)."""
    import pyhf

    pyhf.set_backend("numpy", pyhf.optimize.scipy_optimizer(tolerance=1e-12))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        w = pyhf.Workspace(copy.deepcopy(ws))
        model = w.model()
        init = model.config.suggested_init()
        bounds = model.config.suggested_bounds()
        fixed = model.config.suggested_fixed()
        if data == "asimov":
            p = list(init)
            p[model.config.poi_index] = 1.0
            d = model.expected_data(p)
        else:
            d = w.data(model)
        ts = pyhf.infer.test_statistics
        if metric == "nll":
            pars = init if fixed_params is None else fixed_params
            return float(model.logpdf(pars, d)[0])
        if metric in ("q0", "z0"):
            q = float(ts.q0(0.0, d, model, init, bounds, fixed))
            return q if metric == "q0" else math.sqrt(max(q, 0.0))
        b = [list(x) for x in bounds]
        b[model.config.poi_index][0] = 0.0
        q = float(ts.qmu_tilde(mu_test, d, model, init, b, fixed))
        return -q if metric == "qmu" else -math.sqrt(max(q, 0.0))


@pytest.fixture
def rng() -> np.random.Generator:
    return np.random.default_rng(1234)
