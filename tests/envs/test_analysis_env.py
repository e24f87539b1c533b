"""The analysis-design environments on simulated events (histgym.envs.analysis)."""

from __future__ import annotations

import math
import warnings

import gymnasium
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import histgym
from histgym.envs.analysis import AnalysisEnv, AnalysisVectorEnv
from histgym.errors import HistgymError, InvalidParameters
from histgym.events import InvalidAnalysis, toy_analysis, toy_events

N_EV = 3000


def _with_weight_sys(n=N_EV, **kw):
    """The toy with a lumi uncertainty and a weight-type shape systematic too."""
    ev = toy_events(0, n)
    for c in ev.values():
        c["w_up"] = c["weight"] * (1.0 + 0.1 * c["score"])
        c["w_dn"] = c["weight"] * (1.0 - 0.08 * c["score"] ** 2)
    an = toy_analysis(
        n_events=10, lumi=0.02,
        shape_systematics=(
            {"name": "mass_scale", "kind": "observable", "up": {"mass": "mass_up"},
             "down": {"mass": "mass_down"}},
            {"name": "reco_eff", "kind": "weight", "up": "w_up", "down": "w_dn",
             "processes": ["signal", "continuum"]},
        ), **kw,
    )
    return an.with_processes({p: {"source": c, "weight": "weight"} for p, c in ev.items()})


@pytest.fixture(scope="module")
def toy():
    return toy_analysis(n_events=N_EV)


def _pyhf_model(ws):
    pyhf = pytest.importorskip("pyhf")
    pyhf.set_backend("numpy", pyhf.optimize.minuit_optimizer(tolerance=1e-10))
    w = pyhf.Workspace(ws)
    m = w.model()
    return pyhf, m, w.data(m)


def _walk(env, seed, n=12):
    rng = np.random.default_rng(seed)
    env.reset(seed=seed)
    info = None
    for _ in range(n):
        _, _, _, _, info = env.step(rng.uniform(-1, 1, env.action_space.shape))
    return info


@pytest.mark.parametrize("metric", ["z0", "q0"])
def test_reward_equals_pyhf_on_export(metric):
    env = AnalysisEnv(_with_weight_sys(), reward_metric=metric)
    info = _walk(env, 3)
    pyhf, m, d = _pyhf_model(env.workspace())
    try:
        q0 = float(pyhf.infer.test_statistics.q0(
            0.0, d, m, m.config.suggested_init(), m.config.suggested_bounds(),
            m.config.suggested_fixed(),
        ))
    finally:
        pyhf.set_backend("numpy", "scipy")
    want = math.sqrt(q0) if metric == "z0" else q0
    assert info["value"] == pytest.approx(want, rel=1e-6)
    assert info["q0"] == pytest.approx(q0, rel=1e-6)


def test_limit_is_pyhf_cls_root_on_export():
    """pyhf's expected (median) CLs at the environment's limit is 0.05 (a full pyhf limit
    scan is the slow test below)."""
    env = AnalysisEnv(_with_weight_sys(), reward_metric="limit")
    info = _walk(env, 5, n=4)
    pyhf, m, d = _pyhf_model(env.workspace())
    try:
        _, band = pyhf.infer.hypotest(info["limit"], d, m, test_stat="qtilde",
                                      return_expected_set=True)
    finally:
        pyhf.set_backend("numpy", "scipy")
    assert float(band[2]) == pytest.approx(0.05, rel=1e-6)
    assert info["value"] == -info["limit"]


@pytest.mark.slow
def test_limit_equals_pyhf_upper_limit_on_export():
    env = AnalysisEnv(_with_weight_sys(), reward_metric="limit")
    info = _walk(env, 5, n=4)
    pyhf, m, d = _pyhf_model(env.workspace())
    try:
        bounds = m.config.suggested_bounds()[m.config.poi_index]
        _, exp, _ = pyhf.infer.intervals.upper_limits.toms748_scan(
            d, m, bounds[0], bounds[1], rtol=1e-12, atol=1e-12, from_upper_limit_fn=True
        )
    finally:
        pyhf.set_backend("numpy", "scipy")
    assert info["limit"] == pytest.approx(float(exp[2]), rel=1e-6)


def test_env_checker_and_registry(toy):
    from gymnasium.utils.env_checker import check_env

    env = AnalysisEnv(toy)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # gymnasium warns about the unbounded observation box
        check_env(env, skip_render_check=True)
    e = gymnasium.make("histgym/AnalysisDesign-v0", n_events=N_EV, disable_env_checker=True)
    obs, info = e.reset(seed=0)
    assert obs in e.observation_space and info["valid"] and info["z0"] > 0
    v = gymnasium.make_vec("histgym/AnalysisDesign-v0", num_envs=2,
                           vectorization_mode="vector_entry_point", n_events=N_EV)
    obs, _ = v.reset(seed=0)
    assert obs.shape == (2, e.observation_space.shape[0])
    assert isinstance(histgym.AnalysisEnv, type)


def test_vector_matches_single(toy):
    single = AnalysisEnv(toy, max_steps=5)
    vec = AnalysisVectorEnv(core=single.core, num_envs=3, max_steps=5)
    rng = np.random.default_rng(0)
    acts = rng.uniform(-1, 1, (7, 3, single.action_space.shape[0]))
    vobs, _ = vec.reset(seed=0)
    for i in range(3):
        sobs, _ = single.reset(seed=0)
        np.testing.assert_array_equal(sobs, vobs[i])
    rows = []
    for t in range(5):
        vobs, vr, _, vtr, _ = vec.step(acts[t])
        rows.append((vobs.copy(), vr.copy(), vtr.copy()))
    for i in range(3):
        single.reset(seed=0)
        for t in range(5):
            sobs, sr, _, str_, _ = single.step(acts[t, i])
            np.testing.assert_array_equal(sobs, rows[t][0][i])
            assert sr == rows[t][1][i] and str_ == rows[t][2][i]
    # NEXT_STEP autoreset: the step after truncation resets with reward 0
    obs, r, _, tr, _ = vec.step(acts[5])
    assert np.all(r == 0.0) and not tr.any()


@settings(deadline=None, max_examples=20)
@given(actions=st.lists(
    st.lists(st.floats(-1, 1, allow_nan=False), min_size=10, max_size=10),
    min_size=1, max_size=8,
), delta=st.booleans())
def test_random_actions_are_finite(toy, actions, delta):
    env = _ENVS["delta" if delta else "value"]
    obs, info = env.reset()
    assert obs in env.observation_space
    for a in actions:
        a = np.array(a, dtype=np.float32)
        obs, r, term, trunc, info = env.step(a)
        assert math.isfinite(r) and np.all(np.isfinite(obs))
        assert obs in env.observation_space
        assert math.isfinite(info["value"]) and not term
        assert info["valid"] or info["violation"] is not None


_ENVS: dict = {}


@pytest.fixture(scope="module", autouse=True)
def _envs(toy):
    _ENVS["value"] = AnalysisEnv(toy)
    _ENVS["delta"] = AnalysisEnv(toy, reward_mode="delta", cut_scale=0.5)
    yield
    _ENVS.clear()


def test_min_background_and_empty_selection(toy):
    env = AnalysisEnv(toy)
    obs0, info0 = env.reset()
    # everything cut away: invalid, floor value, the environment stays where it was
    r = env.evaluate([1.0, 0.0, 300.0])
    assert not r.valid and r.value == 0.0 and r.violation == "min_background_events"
    np.testing.assert_array_equal(env.core.observation(env._st)[0], obs0)
    # a tight score cut with tiny bins violates the MC-stat requirement in the first bins
    edges = np.linspace(100, 150, 9)
    edges[1:-1] = [100.05, 100.1, 100.15, 100.2, 100.25, 100.3, 100.35]
    r = env.evaluate([0.95, 20.0, 300.0], edges)
    assert not r.valid
    # a step whose proposal is invalid keeps the previous analysis
    env2 = AnalysisEnv(toy, cut_scale=1.0)
    env2.reset()
    a = np.zeros(env2.action_space.shape, dtype=np.float32)
    a[0] = 1.0  # score > 1: empty selection
    obs, rew, _, _, info = env2.step(a)
    assert not info["valid"] and info["violation"] == "min_background_events"
    assert rew == pytest.approx(info0["value"]) and info["cuts"]["score>"] == 0.0
    with pytest.raises(InvalidAnalysis, match="min_background_events"):
        env.reset(options={"cuts": [1.0, 0.0, 300.0]})
    with pytest.raises(InvalidAnalysis, match="starting analysis"):
        AnalysisEnv(toy.with_processes(toy.processes), max_steps=3, cut_scale=0.1).core.__class__(
            toy_analysis(n_events=N_EV, cuts=({"observable": "score", "direction": ">",
                                              "range": (0, 1), "init": 1.0},))
        )


def test_bad_inputs_raise_named_errors(toy):
    env = AnalysisEnv(toy)
    env.reset()
    n = env.action_space.shape[0]
    for bad in (np.zeros(n + 1), np.full(n, np.nan), [[0.0] * n]):
        with pytest.raises(InvalidParameters):
            env.step(bad)
    with pytest.raises(InvalidParameters, match="cuts must be 3"):
        env.evaluate([0.0, 1.0])
    with pytest.raises(InvalidParameters, match="increasing inner edges"):
        env.evaluate([0.0, 20.0, 300.0], [130.0, 120.0, 125.0, 126, 127, 128, 129])
    with pytest.raises(InvalidParameters, match="unknown reset options"):
        env.reset(options={"cut": 1})
    for kw in ({"reward_metric": "zmu"}, {"reward_mode": "sum"}, {"data": "observed"},
               {"edge_scale": 0.7}, {"cut_scale": 0.0}, {"max_steps": 0}):
        with pytest.raises(HistgymError):
            AnalysisEnv(toy, **kw)
    with pytest.raises(InvalidAnalysis, match="Did you mean 'limit'"):
        AnalysisEnv(toy, reward_metric="limits")


def test_evaluate_and_workspace_roundtrip(toy):
    env = AnalysisEnv(toy)
    env.reset()
    edges = [105.0, 115.0, 120.0, 123.0, 127.0, 130.0, 140.0]
    r = env.evaluate([0.5, 30.0, 200.0], edges)
    assert r.valid and r.value > 0
    np.testing.assert_allclose(r.edges[1:-1], edges)
    np.testing.assert_array_equal(env.edges, r.edges)
    ws = env.workspace()
    m = histgym.from_pyhf(ws)
    assert m.n_bins == 8 and set(m.parameter_names) >= {"mu", "mass_scale", "resonant_norm"}
    # the environment restarts from that analysis
    obs, info = env.reset(options={"cuts": [0.5, 30.0, 200.0], "edges": edges})
    assert info["value"] == pytest.approx(r.value, rel=1e-9)
