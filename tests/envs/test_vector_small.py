"""The small-model step path (``histgym._kernels.small``) is bit-for-bit the generic kernels."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest

from histgym._kernels import env_step as K
from histgym._kernels import small
from histgym.envs import HistFactoryVectorEnv


def small_workspace() -> dict[str, Any]:
    """Two channels, one factor per cell at most: a normfactor on the controlled sample, a
    normsys shared by two samples and channels, a shapesys (Poisson constraints), a lumi
    (Gaussian constraint) and a sample without modifiers; counts 0, below 0.25, below and
    above 15."""
    return {
        "channels": [
            {
                "name": "SR",
                "samples": [
                    {"name": "signal", "data": [0.5, 3.0, 9.0, 5.0],
                     "modifiers": [{"name": "mu", "type": "normfactor", "data": None}]},
                    {"name": "background", "data": [0.1, 20.0, 15.0, 10.0],
                     "modifiers": [{"name": "bkg_norm", "type": "normsys",
                                    "data": {"hi": 1.1, "lo": 0.9}}]},
                    {"name": "fakes", "data": [0.2, 1.0, 2.0, 1.5], "modifiers": []},
                    {"name": "other", "data": [0.3, 2.0, 1.0, 0.5],
                     "modifiers": [{"name": "other_ss", "type": "shapesys",
                                    "data": [0.1, 0.5, 0.3, 0.2]}]},
                ],
            },
            {
                "name": "CR",
                "samples": [
                    {"name": "background", "data": [50.0, 40.0],
                     "modifiers": [{"name": "bkg_norm", "type": "normsys",
                                    "data": {"hi": 1.1, "lo": 0.9}}]},
                    {"name": "lumi_sample", "data": [5.0, 4.0],
                     "modifiers": [{"name": "lumi", "type": "lumi", "data": None}]},
                ],
            },
        ],
        "observations": [
            {"name": "SR", "data": [0.0, 24.0, 0.2, 14.0]},
            {"name": "CR", "data": [52.0, 38.0]},
        ],
        "measurements": [{"name": "meas", "config": {
            "poi": "mu",
            "parameters": [{"name": "lumi", "auxdata": [1.0], "sigmas": [0.05],
                            "bounds": [[0.5, 1.5]], "inits": [1.0]}]}}],
        "version": "1.0.0",
    }


def _generic_vs_small(ws: dict[str, Any], n: int, steps: int, **kw: Any) -> None:
    venv = HistFactoryVectorEnv(ws, num_envs=n, channel="SR", sample="signal", parallel=False,
                                max_steps=steps + 1, **kw)
    assert venv._tables is not None
    p = venv._params
    ti, tf = venv._tables
    venv.reset(seed=1)
    S = venv._st.S.copy()
    mask = np.ones(n, dtype=bool)
    K.env_reset_batch_serial(mask, S, p.P, p.Q, p.ibuf, None)
    np.testing.assert_array_equal(venv._st.S, S)
    rng = np.random.default_rng(0)
    bad = np.zeros(n, dtype=np.int64)
    for t in range(steps):
        a = rng.uniform(-3.0, 3.0, (n, p.n_y))
        a[t % n] *= 20.0  # large moves: refits, clipping
        K.env_step_batch_serial(mask, a, S, p.P, p.Q, p.ibuf, bad, None)
        if t % 2:
            venv._step_rows(mask, a)
        else:
            small.step_batch(mask, a, venv._st.S, p.P, p.Q, ti, tf, bad, 2)
        np.testing.assert_array_equal(venv._st.S, S)
    part = rng.uniform(size=n) < 0.5
    K.env_reset_batch_serial(part, S, p.P, p.Q, p.ibuf, None)
    small.reset_batch(part, venv._st.S, p.P, p.Q, ti, tf, 2)
    np.testing.assert_array_equal(venv._st.S, S)


@pytest.mark.parametrize("metric", ["nll", "q0", "z0", "qmu", "zmu"])
def test_small_path_is_bit_for_bit_generic(metric):
    _generic_vs_small(small_workspace(), 6, 12, reward_metric=metric, mu_test=1.0,
                      action_scale=0.3)


@pytest.mark.parametrize("kw", [dict(reward_mode="delta", budget="total"),
                                dict(action_mode="add", action_scale=2.0, init_noise=0.2),
                                dict(mle_max_iter=1, action_scale=0.5)])  # failed fits, retries
def test_small_path_options(seed_ws, kw):
    _generic_vs_small(seed_ws, 5, 10, reward_metric="qmu", **kw)
    _generic_vs_small(small_workspace(), 5, 6, reward_metric="q0", **kw)


def test_small_path_applies_only_where_exact(seed_ws, synth_ws):
    kw = dict(channel="SR", sample="signal", reward_metric="q0")
    assert HistFactoryVectorEnv(seed_ws, **kw)._tables is not None
    # histosys and staterror on the controlled sample; gradient; Asimov data
    assert HistFactoryVectorEnv(synth_ws, **kw)._tables is None
    assert HistFactoryVectorEnv(seed_ws, return_gradient=True, **kw)._tables is None
    assert HistFactoryVectorEnv(seed_ws, data="asimov", **kw)._tables is None
