"""Hypothesis fuzzing of the error contract (issue 10).

* random valid workspaces: they load, fit and test without a NaN/inf anywhere;
* random corruptions of valid workspaces: each either loads (and then gives finite numbers)
  or raises a :class:`histgym.HistgymError` (never another exception, never a crash);
* random action sequences (actions far outside [-1, 1] included) over the shipped example
  and the small shared workspaces, with every reward option: rewards, observations, values
  and gradients stay finite, observations stay in the observation space, and every failed
  fit is reported in ``info``.

More examples: ``HISTGYM_FUZZ_EXAMPLES=500 python -m pytest tests/test_fuzz_inputs.py``.
"""

from __future__ import annotations

import copy
import functools
import json
import math
import os
import warnings
from typing import Any

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from refdata import HAVE_SHARED, SHARED_DATA

import histgym
from histgym import cli, infer
from histgym.errors import HistgymError

N = int(os.environ.get("HISTGYM_FUZZ_EXAMPLES", "20"))
FUZZ = settings(
    max_examples=N, deadline=None, derandomize=N <= 20,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)  # fmt: skip


@st.composite
def workspaces(draw: Any) -> dict[str, Any]:
    """Small valid workspaces: 1-2 channels, 1-4 bins, 1-3 samples, random modifiers."""
    yields = st.floats(0.5, 50.0)
    channels, observations = [], []
    for c in range(draw(st.integers(1, 2))):
        nb = draw(st.integers(1, 4))
        samples = []
        for s in range(draw(st.integers(1, 3))):
            data = [draw(yields) for _ in range(nb)]
            mods: list[dict[str, Any]] = []
            if s == 0:
                mods.append({"name": "mu", "type": "normfactor", "data": None})
            if draw(st.booleans()):
                hi, lo = draw(st.floats(1.01, 1.5)), draw(st.floats(0.5, 0.99))
                mods.append({"name": f"ns{s}", "type": "normsys", "data": {"hi": hi, "lo": lo}})
            if draw(st.booleans()):
                up, dn = draw(st.floats(1.0, 1.3)), draw(st.floats(0.7, 1.0))
                mods.append({"name": f"hs{s}", "type": "histosys", "data": {
                    "hi_data": [d * up for d in data], "lo_data": [d * dn for d in data]}})
            if draw(st.booleans()):
                mods.append({"name": f"staterror_ch{c}", "type": "staterror",
                             "data": [0.1 * d for d in data]})
            if draw(st.booleans()):
                mods.append({"name": f"ss{c}_{s}", "type": "shapesys", "data": [0.2 * d for d in data]})
            samples.append({"name": f"s{s}", "data": data, "modifiers": mods})
        channels.append({"name": f"ch{c}", "samples": samples})
        observations.append(
            {"name": f"ch{c}", "data": [float(draw(st.integers(0, 60))) for _ in range(nb)]}
        )
    return {
        "channels": channels,
        "observations": observations,
        "measurements": [{"name": "m", "config": {"poi": "mu", "parameters": []}}],
        "version": "1.0.0",
    }


def _finite(*values: Any) -> bool:
    return all(np.all(np.isfinite(np.asarray(v, dtype=float))) for v in values)


def _check_numbers(model: histgym.Model) -> None:
    """Fit, q0 and CLs of a loaded model: finite numbers, failures flagged, no exception."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", histgym.FitWarning)
        r = histgym.fit(model)
        assert _finite(r.bestfit, r.uncertainty, r.covariance, r.twice_nll, r.edm)
        if model.poi_index is not None and not model.suggested_fixed()[model.poi_index]:
            try:
                q = infer.q0(model)
                assert math.isfinite(q) and q >= 0.0
            except histgym.InvalidParameters as err:  # a bin with signal only: q0 infinite
                assert "is scaled by the POI" in str(err)
            h = infer.hypotest(1.0, model)
            assert _finite(h.cls_obs, h.cls_exp, h.teststat) and 0.0 <= h.cls_obs <= 1.0


@FUZZ
@given(workspaces())
def test_random_valid_workspaces(ws: dict[str, Any]) -> None:
    model = histgym.from_pyhf(ws)
    assert math.isfinite(model.twice_nll(model.suggested_init()))
    _check_numbers(model)


# ----------------------------------------------------------------------------- corruptions
BAD_VALUES = [math.nan, math.inf, -math.inf, -1.0, 0.0, -1e-300, 1e308, 10**400, "x", None,
              True, [], {}, [1.0], {"a": 1}]  # fmt: skip


def _nodes(obj: Any, path: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    """Every path into the JSON tree (keys and list indices)."""
    out = [path]
    if isinstance(obj, dict):
        for k, v in obj.items():
            out += _nodes(v, path + (k,))
    elif isinstance(obj, list):
        for i, v in enumerate(obj):
            out += _nodes(v, path + (i,))
    return out


@st.composite
def corrupted(draw: Any) -> dict[str, Any]:
    ws = copy.deepcopy(draw(workspaces()))
    for _ in range(draw(st.integers(1, 2))):
        paths = [p for p in _nodes(ws) if p]
        path = draw(st.sampled_from(paths))
        parent = ws
        for k in path[:-1]:
            parent = parent[k]
        key = path[-1]
        action = draw(st.sampled_from(["replace", "delete", "duplicate", "truncate"]))
        if action == "replace":
            parent[key] = copy.deepcopy(draw(st.sampled_from(BAD_VALUES)))
        elif action == "delete":
            del parent[key]
        elif action == "duplicate" and isinstance(parent, list):
            parent.append(copy.deepcopy(parent[key]))
        elif action == "truncate" and isinstance(parent[key], list):
            parent[key] = parent[key][: max(0, len(parent[key]) - 1)]
    return ws


@FUZZ
@given(corrupted())
def test_random_corruptions(ws: dict[str, Any]) -> None:
    """A corrupted workspace loads and gives finite numbers, or raises a HistgymError."""
    try:
        model = histgym.from_pyhf(ws)
    except HistgymError:
        return
    _check_numbers(model)


@settings(max_examples=max(5, N // 4), deadline=None, derandomize=N <= 20,
          suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture])
@given(ws=corrupted())
def test_random_corruptions_cli(ws: dict[str, Any], tmp_path_factory: Any) -> None:
    """The CLI on a corrupted workspace: exit 0 with valid JSON and finite numbers, or 2."""
    path = tmp_path_factory.mktemp("ws") / "ws.json"
    path.write_text(json.dumps(ws))
    import contextlib
    import io

    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        code = cli.main(["significance", str(path), "--json"])
    assert code in (0, 2), err.getvalue()
    if code == 2:
        assert len(err.getvalue().strip().splitlines()) == 1 and "Traceback" not in err.getvalue()
    else:
        got = json.loads(out.getvalue(), parse_constant=lambda c: pytest.fail(f"JSON has {c}"))
        assert "non_finite_as_null" not in got, got


# ----------------------------------------------------------------------------- action sequences
SMALL_SHARED = [
    "toy_SH4b_50bin_histosys",
    "pyhf_docs_2bin_1channel",
    "histfactory_ShapeSys_example",
    "histfactory_shared_nuispar_across_types",
    "histfactory_standard_example_GaussExample",
]
SOURCES = ["example"] + (SMALL_SHARED if HAVE_SHARED else [])


def _controlled(ws: dict[str, Any]) -> tuple[str, str]:
    """The (channel, sample) carrying the POI normfactor (else the first sample)."""
    poi = ws["measurements"][0]["config"]["poi"]
    for ch in ws["channels"]:
        for s in ch["samples"]:
            if any(m["type"] == "normfactor" and m["name"] == poi for m in s["modifiers"]):
                return ch["name"], s["name"]
    return ws["channels"][0]["name"], ws["channels"][0]["samples"][0]["name"]


@functools.lru_cache(maxsize=None)
def _workspace(source: str) -> str:
    if source == "example":
        return json.dumps(histgym.example_workspace())
    return (SHARED_DATA / "workspaces" / f"{source}.json").read_text()


@functools.lru_cache(maxsize=64)
def _env(source: str, options: tuple[tuple[str, Any], ...]) -> Any:
    from histgym.envs import HistFactoryEnv

    ws = json.loads(_workspace(source))
    channel, sample = _controlled(ws)
    return HistFactoryEnv(ws, channel=channel, sample=sample, return_gradient=True, **dict(options))


@FUZZ
@given(
    source=st.sampled_from(SOURCES),
    metric=st.sampled_from(["nll", "q0", "z0", "qmu", "zmu"]),
    mode=st.sampled_from(["logmul", "add"]),
    data=st.sampled_from(["observed", "asimov"]),
    budget=st.sampled_from([None, "total"]),
    reward_mode=st.sampled_from(["value", "delta"]),
    scale=st.sampled_from([0.05, 0.5, 3.0]),
    seed=st.integers(0, 2**16),
    steps=st.integers(1, 6),
    big=st.floats(1.0, 60.0),
)
def test_random_action_sequences(source: str, metric: str, mode: str, data: str, budget: Any,
                                 reward_mode: str, scale: float, seed: int, steps: int,
                                 big: float) -> None:  # fmt: skip
    env = _env(source, (("reward_metric", metric), ("action_mode", mode), ("data", data),
                        ("budget", budget), ("reward_mode", reward_mode), ("action_scale", scale),
                        ("max_steps", 8), ("init_noise", 0.3)))  # fmt: skip
    rng = np.random.default_rng(seed)
    obs, info = env.reset(seed=seed)
    assert env.observation_space.contains(obs) and _finite(info["value"])
    n = obs.shape[0]
    for _ in range(steps):
        kind = rng.integers(4)
        if kind == 0:
            action = rng.uniform(-1, 1, n)
        elif kind == 1:
            action = rng.uniform(-big, big, n)  # far outside the action space: applied as given
        elif kind == 2:
            action = np.zeros(n)
        else:
            action = np.where(rng.random(n) < 0.5, -big, big)
        obs, reward, terminated, truncated, info = env.step(action.astype(rng.choice(["f4", "f8"])))
        assert env.observation_space.contains(obs), obs
        assert _finite(obs, reward, info["value"], info["reward_grad"]), info
        assert isinstance(info["fit_ok"], bool) and isinstance(info["fit_status"], int)
        if not info["fit_ok"]:
            assert info["fit_status"] != 0 or not math.isfinite(info.get(metric, 0.0)), info
        if truncated:
            break


@pytest.mark.skipif(not HAVE_SHARED, reason=f"shared data not found at {SHARED_DATA}")
def test_sh4b_asimov_q0_episode_is_exact() -> None:
    """Defect 4: the shipped toy_SH4b workspace has a bin with signal = background = data = 0.

    With ``data="asimov"`` every step used to fail (the nominal 0 was clipped to 1e-12, a
    signal in a bin without background).  Now every step's fit succeeds and q0 equals pyhf's
    on the exported workspace (Asimov data of the current yields at mu = 1).
    """
    import pyhf

    from histgym.envs import HistFactoryEnv

    ws = json.loads(_workspace("toy_SH4b_50bin_histosys"))
    channel, sample = _controlled(ws)
    env = HistFactoryEnv(ws, channel=channel, sample=sample, reward_metric="q0", data="asimov",
                         max_steps=6)  # fmt: skip
    obs, info = env.reset(seed=1)
    zero = np.flatnonzero(obs == 0.0)
    assert zero.size >= 1 and info["fit_ok"]
    rng = np.random.default_rng(1)
    values = [info["q0"]]
    exported = [env.workspace()]
    for _ in range(5):
        obs, reward, _, _, info = env.step(rng.uniform(-1, 1, obs.size))
        assert info["fit_ok"] and info["fit_status"] == 0, info
        assert np.all(obs[zero] == 0.0)
        values.append(info["q0"])
        exported.append(env.workspace())
    pyhf.set_backend("numpy", "scipy")
    for q_env, spec in zip(values[::5], exported[::5]):  # first and last state
        model = pyhf.Workspace(spec).model()
        pars = model.config.suggested_init()
        pars[model.config.poi_index] = 1.0
        asimov = model.expected_data(pars)
        q_pyhf = float(pyhf.infer.test_statistics.q0(
            0.0, asimov, model, model.config.suggested_init(), model.config.suggested_bounds(),
            model.config.suggested_fixed()))  # fmt: skip
        assert q_env == pytest.approx(q_pyhf, rel=1e-5, abs=1e-5)
