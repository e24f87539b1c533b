"""Memory safety (issue 10, defect 1): no input reaches a kernel with sizes it would index out
of bounds.

The kernels do not check sizes (that would cost in the hot loop); the Python boundary does,
once: every public entry point below is called with parameter vectors, data, yields, actions
and environment states of every wrong size, and must raise a ``HistgymError`` before any
kernel runs.  The compiled model itself is checked when it is built
(:func:`histgym.compile.check_packed`: every stored index lies inside the array it indexes).

``test_kernels_under_numba_boundscheck`` (slow) repeats real calls with numba's bounds
checking switched on, in a fresh process and a fresh cache: an out-of-bounds access there
raises ``IndexError`` instead of reading foreign memory.
"""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any

import numpy as np
import pytest

import histgym
from histgym import infer
from histgym.compile import check_packed
from histgym.errors import HistgymError, InvalidData, InvalidParameters

WS = histgym.example_workspace()


@pytest.fixture(scope="module")
def model() -> histgym.Model:
    return histgym.from_pyhf(WS)


def _wrong_lengths(n: int) -> list[int]:
    return sorted({0, 1, n - 1, n + 1, 2 * n} - {n})


def test_every_model_method_refuses_wrong_sizes(model: histgym.Model) -> None:
    init = model.suggested_init()
    data = model.observed_data()
    pars_methods = [model.twice_nll, model.nll, model.grad_nll, model.nll_and_grad,
                    model.hessian_nll, model.expected_data]  # fmt: skip
    for f in pars_methods:
        for k in _wrong_lengths(model.n_params):
            with pytest.raises(InvalidParameters):
                f(np.ones(k))
        with pytest.raises(InvalidParameters):
            f(np.ones((1, model.n_params)))
        if f.__name__ == "expected_data":
            continue
        for k in _wrong_lengths(model.n_data):
            with pytest.raises(InvalidData):
                f(init, np.ones(k))
        with pytest.raises(InvalidData):
            f(init, np.ones((1, model.n_data)))
    batch = np.tile(init, (3, 1))
    for f in (model.twice_nll_batch, model.grad_nll_batch):
        for k in _wrong_lengths(model.n_params):
            with pytest.raises(InvalidParameters):
                f(np.ones((3, k)))
        for shape in [(2, model.n_data), (3, model.n_data - 1), (3, model.n_data + 1), (4, model.n_data)]:
            with pytest.raises(InvalidData):
                f(batch, np.ones(shape))
    for f in (model.twice_nll_yields_batch, model.grad_nll_yields_batch):
        for shape in [(3, 7), (3, 9), (2, 8), (4, 8), (8,)]:
            with pytest.raises(InvalidParameters):
                f("SR", "signal", np.ones(shape), batch)
    for k in _wrong_lengths(8):
        with pytest.raises(InvalidParameters):
            model.with_sample_yields("SR", "signal", np.ones(k))
    with pytest.raises(InvalidParameters):
        model.sample_yields_buffers("SR", "signal", np.ones((2, 9)))
    assert np.isfinite(model.twice_nll(init, data))  # the right sizes still work


def test_fits_and_inference_refuse_wrong_sizes(model: histgym.Model) -> None:
    data = model.observed_data()
    calls: list[Any] = [
        lambda d: histgym.fit(model, d),
        lambda d: histgym.fixed_poi_fit(1.0, model, d),
        lambda d: infer.q0(model, d),
        lambda d: infer.qmu_tilde(1.0, model, d),
        lambda d: infer.tmu(1.0, model, d),
        lambda d: infer.asimov_data(model, 0.0, d),
        lambda d: infer.hypotest(1.0, model, d),
        lambda d: infer.hypotest(1.0, model, d, calctype="toybased", ntoys=5, seed=0),
        lambda d: infer.upper_limit(model, d),
        lambda d: infer.significance(model, d),
        lambda d: infer.q0_yields_batch(model, "SR", "signal", np.ones((2, 8)), d),
        lambda d: infer.AsymptoticCalculator(model, d),
    ]
    for call in calls:
        for k in _wrong_lengths(model.n_data):
            with pytest.raises(InvalidData):
                call(np.ones(k))
    n = model.n_params
    for kwargs in ({"init": np.ones(n + 1)}, {"init": np.ones(n - 1)},
                   {"bounds": np.ones((n + 1, 2))}, {"bounds": np.ones((n, 3))},
                   {"fixed": np.zeros(n + 1, bool)}, {"fixed": np.zeros(n - 1, bool)}):  # fmt: skip
        for call in (histgym.fit, infer.q0, infer.significance):
            with pytest.raises(InvalidParameters):
                call(model, data, **kwargs)


def test_environments_refuse_wrong_sizes() -> None:
    from histgym.envs import HistFactoryVectorEnv, make_histfactory_env

    env = make_histfactory_env(WS, channel="SR", sample="signal", reward_metric="q0",
                               return_gradient=True)  # fmt: skip
    env.reset(seed=0)
    for k in _wrong_lengths(8):
        with pytest.raises(InvalidParameters):
            env.step(np.zeros(k, dtype=np.float32))
        with pytest.raises(InvalidParameters):
            env.reset(options={"yields": np.ones(k)})
    with pytest.raises(InvalidParameters):
        env.step(np.zeros((1, 8)))
    venv = HistFactoryVectorEnv(WS, num_envs=3, channel="SR", sample="signal")
    venv.reset(seed=0)
    for shape in [(3, 7), (3, 9), (2, 8), (4, 8), (8,), (3, 8, 1)]:
        with pytest.raises(InvalidParameters):
            venv.step(np.zeros(shape))
    # states: a pickled state of another environment never reaches the kernels
    other = make_histfactory_env(histgym.example_workspace(), channel="SR", sample="background")
    state = env.__getstate__()
    for S, step in [(np.zeros((1, 5)), np.zeros(1, np.int64)),
                    (env._st.S[:, :-1].copy(), env._st.step),
                    (env._st.S.astype(np.float32), env._st.step),
                    (np.repeat(env._st.S, 2, axis=0), np.zeros(2, np.int64)),
                    (env._st.S, np.zeros(1, np.int32))]:  # fmt: skip
        state["state"] = (S, step, env._st.sizes)
        with pytest.raises(InvalidParameters, match="environment state does not fit"):
            other.__setstate__(dict(state, kwargs=dict(state["kwargs"])))
    obs, *_ = env.step(np.zeros(8))
    assert np.all(np.isfinite(obs))


def _corrupt(model: histgym.Model, field: str, value: int) -> tuple[np.ndarray, np.ndarray]:
    from histgym._kernels.layout import field_slice

    ibuf = model.ibuf.copy()
    sl = field_slice(field, ibuf)
    assert sl.stop > sl.start, field
    ibuf[sl.start] = value
    return model.fbuf.copy(), ibuf


@pytest.mark.parametrize(
    ("field", "value", "pattern"),
    [
        ("fac_par", 99, r"fac_par holds an index outside \[0, 2\)"),
        ("fac_par", -1, r"fac_par holds an index outside"),
        ("fac_ref", 99, r"fac_ref holds an index outside \[-1, 8\)"),
        ("gauss_aux", 5, r"gauss_aux holds an index outside \[0, 1\)"),
        ("gauss_par", 2, r"gauss_par holds an index outside \[0, 2\)"),
        ("bin_ptr", 3, r"bin_ptr does not partition"),
        ("fac_ptr", -4, r"fac_ptr does not partition"),
    ],
)
def test_packed_model_indices_are_checked(model: histgym.Model, field: str, value: int,
                                          pattern: str) -> None:  # fmt: skip
    check_packed(model.fbuf, model.ibuf)  # the real one passes
    fbuf, ibuf = _corrupt(model, field, value)
    with pytest.raises(ValueError, match=pattern):
        check_packed(fbuf, ibuf)


def test_packed_model_header_is_checked(model: histgym.Model) -> None:
    with pytest.raises(ValueError, match="fewer than its header"):
        check_packed(model.fbuf, model.ibuf[:5])
    with pytest.raises(ValueError, match="float field offsets"):
        check_packed(model.fbuf[:-1], model.ibuf)
    with pytest.raises(ValueError, match="float64"):
        check_packed(model.fbuf.astype(np.float32), model.ibuf)
    ibuf = model.ibuf.copy()
    ibuf[0] += 1  # n_bins
    with pytest.raises(ValueError, match="bin_ptr"):
        check_packed(model.fbuf, ibuf)
    from dataclasses import replace

    bad = replace(model._compiled, ibuf=_corrupt(model, "fac_par", 99)[1])
    with pytest.raises(ValueError, match="fac_par"):
        histgym.Model(model.config, model.spec, model.observed_data(), bad)


def test_every_shared_workspace_passes_the_packed_check() -> None:
    from refdata import HAVE_SHARED, SHARED_DATA

    if not HAVE_SHARED:
        pytest.skip(f"shared data not found at {SHARED_DATA}")
    for name in ("toy_SH4b_50bin_histosys", "histfactory_ShapeSys_example",
                 "histfactory_shared_nuispar_across_types", "pyhf_docs_2bin_1channel"):  # fmt: skip
        m = histgym.from_pyhf(SHARED_DATA / "workspaces" / f"{name}.json")  # checks on build
        check_packed(m.fbuf, m.ibuf)


BOUNDSCHECK_SCRIPT = textwrap.dedent(
    """
    import json, sys, warnings
    import numpy as np
    import histgym
    from histgym import infer
    from histgym.envs import HistFactoryEnv, HistFactoryVectorEnv
    warnings.simplefilter("ignore")
    sources = [histgym.example_workspace()] + [json.load(open(p)) for p in sys.argv[1:]]
    for ws in sources:
        m = histgym.from_pyhf(ws)
        x = m.suggested_init()
        m.twice_nll(x); m.grad_nll(x); m.hessian_nll(x); m.twice_nll_batch(np.tile(x, (3, 1)))
        histgym.fit(m); infer.hypotest(1.0, m); infer.q0(m); infer.upper_limit(m)
        ch = m.channels[0]
        poi = ws["measurements"][0]["config"]["poi"]
        sample = next((s["name"] for c in ws["channels"] if c["name"] == ch for s in c["samples"]
                       if any(md["name"] == poi for md in s["modifiers"])), m.samples(ch)[0])
        for metric in ("nll", "q0", "zmu"):
            for data in ("observed", "asimov"):
                env = HistFactoryEnv(ws, channel=ch, sample=sample, reward_metric=metric, data=data,
                                     budget="total", return_gradient=True, max_steps=4)
                env.reset(seed=0)
                for _ in range(4):
                    env.step(env.action_space.sample())
        venv = HistFactoryVectorEnv(ws, num_envs=3, channel=ch, sample=sample, reward_metric="q0",
                                    parallel=True)
        venv.reset(seed=0)
        for _ in range(3):
            venv.step(venv.action_space.sample())
    print("boundscheck ok")
    """
)


@pytest.mark.slow
def test_kernels_under_numba_boundscheck(tmp_path: Path) -> None:
    """Real calls of every kernel family with ``NUMBA_BOUNDSCHECK=1`` (fresh cache): slow."""
    from refdata import HAVE_SHARED, SHARED_DATA

    extra = []
    if HAVE_SHARED:
        extra = [str(SHARED_DATA / "workspaces" / f"{n}.json")
                 for n in ("toy_SH4b_50bin_histosys", "histfactory_ShapeSys_example")]  # fmt: skip
    env = dict(os.environ, NUMBA_BOUNDSCHECK="1", NUMBA_CACHE_DIR=str(tmp_path / "cache"))
    src = str(Path(histgym.__file__).resolve().parents[1])
    env["PYTHONPATH"] = src + os.pathsep + env.get("PYTHONPATH", "")
    (tmp_path / "run.py").write_text(BOUNDSCHECK_SCRIPT)
    proc = subprocess.run([sys.executable, str(tmp_path / "run.py"), *extra], env=env,
                          capture_output=True, text=True, timeout=3600)  # fmt: skip
    assert proc.returncode == 0 and "boundscheck ok" in proc.stdout, proc.stderr[-3000:]


def test_all_errors_above_are_histgym_errors() -> None:
    assert issubclass(InvalidParameters, HistgymError) and issubclass(InvalidData, HistgymError)
