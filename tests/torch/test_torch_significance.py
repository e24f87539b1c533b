"""histgym.torch.Significance: values against the environment and pyhf, exact gradients
(gradcheck), batching, dtypes, the clipped/bounded points and bad input."""

from __future__ import annotations

import copy
import math
import subprocess
import sys
import warnings
from typing import Any

import numpy as np
import pytest

torch = pytest.importorskip("torch")

import histgym  # noqa: E402
from histgym.envs import make_histfactory_env  # noqa: E402
from histgym.errors import HistgymError, InvalidParameters, UnknownName  # noqa: E402
from histgym.torch import METRICS, InvalidTensor, Significance  # noqa: E402

ENV_METRICS = ("z0", "q0", "qmu", "zmu")


def synth_ws() -> dict[str, Any]:
    """Two channels; the controlled sample carries a normfactor, a histosys (shape
    systematic), a staterror and a shapesys; the background has a normsys and a histosys."""
    return {
        "channels": [
            {"name": "SR", "samples": [
                {"name": "signal", "data": [3.0, 9.0, 5.0], "modifiers": [
                    {"name": "mu", "type": "normfactor", "data": None},
                    {"name": "sig_shape", "type": "histosys",
                     "data": {"hi_data": [3.6, 9.5, 4.6], "lo_data": [2.5, 8.4, 5.5]}},
                    {"name": "staterror_SR", "type": "staterror", "data": [0.6, 1.0, 0.8]},
                    {"name": "sig_ss", "type": "shapesys", "data": [0.9, 1.2, 1.0]},
                ]},
                {"name": "background", "data": [20.0, 15.0, 10.0], "modifiers": [
                    {"name": "bkg_norm", "type": "normsys", "data": {"hi": 1.1, "lo": 0.9}},
                    {"name": "bkg_shape", "type": "histosys",
                     "data": {"hi_data": [21.0, 15.5, 9.0], "lo_data": [19.0, 14.6, 11.0]}},
                    {"name": "staterror_SR", "type": "staterror", "data": [1.5, 1.2, 1.0]},
                ]},
            ]},
            {"name": "CR", "samples": [
                {"name": "background", "data": [50.0, 40.0], "modifiers": [
                    {"name": "bkg_norm", "type": "normsys", "data": {"hi": 1.1, "lo": 0.9}},
                ]},
            ]},
        ],
        "observations": [
            {"name": "SR", "data": [25.0, 28.0, 16.0]},
            {"name": "CR", "data": [52.0, 38.0]},
        ],
        "measurements": [{"name": "meas", "config": {"poi": "mu", "parameters": []}}],
        "version": "1.0.0",
    }


# mu_test per (metric, data): inside the active region (mu_hat < mu_test; for cls the
# background-only Asimov data put mu_hat at the POI bound 0)
MU_TEST = {"asimov": 3.0, "observed": 3.0}
CASES = [(m, d) for m in METRICS for d in ("asimov", "observed")]


def _sig(ws: dict[str, Any], metric: str, data: str, **kw: Any) -> Significance:
    kw.setdefault("mu_test", MU_TEST[data])
    kw.setdefault("sample", "signal")
    return Significance(ws, channel="SR", metric=metric, data=data, **kw)


def _yields(rng: np.random.Generator, base: np.ndarray, n: int) -> np.ndarray:
    return base * np.exp(rng.normal(0.0, 0.3, size=(n, base.size)))


def _pyhf_value(ws: dict[str, Any], metric: str, data: str, mu_test: float) -> float:
    """The metric computed by pyhf 0.7.6 (numpy backend, scipy at a tight tolerance)."""
    import pyhf

    pyhf.set_backend("numpy", pyhf.optimize.scipy_optimizer(tolerance=1e-12))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        w = pyhf.Workspace(copy.deepcopy(ws))
        model = w.model()
        init = model.config.suggested_init()
        bounds = [list(b) for b in model.config.suggested_bounds()]
        fixed = model.config.suggested_fixed()
        poi = model.config.poi_index
        d = w.data(model)
        if data == "asimov":
            p = list(init)
            p[poi] = 0.0 if metric == "cls" else 1.0
            d = model.expected_data(p)
        ts = pyhf.infer.test_statistics
        if metric == "cls":
            _, exp = pyhf.infer.hypotest(mu_test, d, model, init, bounds, fixed,
                                         test_stat="qtilde", return_expected=True)
            return float(exp)
        if metric in ("q0", "z0"):
            q = float(ts.q0(0.0, d, model, init, bounds, fixed))
            return q if metric == "q0" else math.sqrt(max(q, 0.0))
        bounds[poi][0] = 0.0
        q = float(ts.qmu_tilde(mu_test, d, model, init, bounds, fixed))
        return -q if metric == "qmu" else -math.sqrt(max(q, 0.0))


# ---------------------------------------------------------------------------- values
@pytest.mark.parametrize("data", ["asimov", "observed"])
@pytest.mark.parametrize("metric", ENV_METRICS)
def test_values_and_gradients_equal_the_environment(metric, data):
    ws = synth_ws()
    sig = _sig(ws, metric, data)
    rows = _yields(np.random.default_rng(3), sig.nominal.numpy(), 4)
    y = torch.tensor(rows, requires_grad=True)
    v = sig(y)
    v.sum().backward()
    env = make_histfactory_env(ws, channel="SR", sample="signal", reward_metric=metric,
                               data=data, mu_test=MU_TEST[data], return_gradient=True,
                               mle_tol=1e-10)
    for i, row in enumerate(rows):
        _, info = env.reset(options={"yields": row})
        assert info["fit_ok"]
        assert v[i].item() == info["value"]  # the same kernel from the same start: exact
        np.testing.assert_array_equal(y.grad[i].numpy(), info["reward_grad"])
    assert sig.last_fit_ok.all()


@pytest.mark.parametrize("metric, data", CASES)
def test_values_equal_pyhf_on_the_exported_workspace(metric, data):
    ws = synth_ws() if not (metric == "cls" and data == "observed") else \
        histgym.example_workspace()
    sig = _sig(ws, metric, data)
    y = sig.nominal * torch.linspace(0.6, 1.6, sig.n_bins, dtype=torch.float64)
    value = sig(y).item()
    ref = _pyhf_value(sig.workspace(y), metric, data, sig.mu_test)
    if metric == "cls":
        assert value == pytest.approx(ref, rel=1e-6, abs=1e-6)
    else:
        assert value == pytest.approx(ref, abs=1e-5)
    assert value != 0.0  # an active (non-clipped) point


def test_cls_equals_histgym_hypotest_expected_median():
    """The observed-data expected CLs is pyhf's (and histgym.infer's) median expected CLs."""
    from histgym import infer

    ws = histgym.example_workspace()
    sig = Significance(ws, channel="SR", sample="signal", metric="cls", data="observed",
                       mu_test=1.0)
    y = sig.nominal * 0.7
    model = histgym.from_pyhf(sig.workspace(y))
    res = infer.hypotest(1.0, model)
    assert sig(y).item() == pytest.approx(res.cls_exp[2], rel=1e-7)


# ---------------------------------------------------------------------------- gradients
@pytest.mark.parametrize("metric, data", CASES)
def test_gradcheck_float64(metric, data):
    ws = synth_ws() if not (metric == "cls" and data == "observed") else \
        histgym.example_workspace()
    sig = _sig(ws, metric, data, mle_tol=1e-12)
    base = sig.nominal * torch.linspace(0.8, 1.3, sig.n_bins, dtype=torch.float64)
    y = torch.stack([base, base.flip(0)]).requires_grad_(True)
    assert (sig(y) != 0).all()  # active points: q > 0
    assert torch.autograd.gradcheck(sig, (y,), eps=1e-6, atol=1e-6, rtol=1e-4)
    y1 = base.clone().requires_grad_(True)
    assert torch.autograd.gradcheck(sig, (y1,), eps=1e-6, atol=1e-6, rtol=1e-4)


def test_gradient_at_the_poi_bound_is_exact_and_finite():
    """Background-only Asimov data: the free fit sits at the POI bound mu_hat = 0."""
    sig = _sig(synth_ws(), "cls", "asimov", mle_tol=1e-12)
    y = sig.nominal.clone().requires_grad_(True)
    v = sig(y)
    assert sig.last_mu_hat[0] == 0.0
    v.backward()
    assert torch.isfinite(y.grad).all() and (y.grad != 0).any()
    assert torch.autograd.gradcheck(sig, (y.detach().requires_grad_(True),), eps=1e-6,
                                    atol=1e-6, rtol=1e-4)


@pytest.mark.parametrize("lower", [0.0, -5.0])
@pytest.mark.parametrize("metric", ["z0", "q0"])
def test_zero_gradient_where_q0_is_clipped(metric, lower):
    """Observed data below the background: mu_hat < 0 (POI bounds [-5, 10]) or mu_hat at
    the POI bound 0 (pyhf's default [0, 10]); q0 = 0, the value is 0 and the gradient the
    documented subgradient 0 (never NaN)."""
    ws = histgym.example_workspace()
    bkg = np.array(ws["channels"][0]["samples"][1]["data"])
    ws["observations"][0]["data"] = (bkg * 0.8).tolist()
    ws["measurements"][0]["config"]["parameters"] = [{"name": "mu", "bounds": [[lower, 10.0]]}]
    sig = Significance(ws, channel="SR", sample="signal", metric=metric, data="observed")
    y = sig.nominal.clone().requires_grad_(True)
    v = sig(y)
    assert sig.last_mu_hat[0] < 0.0 if lower < 0 else sig.last_mu_hat[0] == 0.0
    assert v.item() == 0.0
    v.backward()
    assert torch.equal(y.grad, torch.zeros_like(y))


@pytest.mark.parametrize("metric", ["qmu", "zmu", "cls"])
def test_zero_gradient_above_mu_test(metric):
    sig = _sig(synth_ws(), metric, "observed" if metric != "cls" else "asimov", mu_test=0.0)
    y = sig.nominal.clone().requires_grad_(True)
    v = sig(y)
    v.backward()
    assert v.item() == (1.0 if metric == "cls" else 0.0)
    assert torch.equal(y.grad, torch.zeros_like(y))


# ---------------------------------------------------------------------------- batching, dtypes
def test_batched_equals_looped_and_parallel_equals_serial():
    ws = synth_ws()
    rows = torch.tensor(_yields(np.random.default_rng(5), np.array([3.0, 9.0, 5.0]), 6))
    serial = _sig(ws, "z0", "asimov", parallel=False)
    par = _sig(ws, "z0", "asimov", parallel=True)
    for sig in (serial, par):
        y = rows.clone().requires_grad_(True)
        v = sig(y)
        v.sum().backward()
        for i in range(rows.shape[0]):
            yi = rows[i].clone().requires_grad_(True)
            vi = serial(yi)
            vi.backward()
            assert vi.item() == v[i].item()
            assert torch.equal(yi.grad, y.grad[i])


@pytest.mark.parametrize("several", [False, True])
def test_threaded_path_equals_serial(monkeypatch, several):
    """parallel=True where threads pay off (forced: the test machine may be busy) gives the
    serial values and gradients exactly, for one and for several controlled samples."""
    from histgym.torch import significance as S

    ws = _no_staterror_ws() if several else synth_ws()
    kw = {"sample": ["signal", "background"]} if several else {}
    serial = _sig(ws, "z0", "asimov", **kw)
    par = _sig(ws, "z0", "asimov", parallel=True, **kw)
    rng = np.random.default_rng(11)
    ys = [torch.tensor(_yields(rng, n.numpy(), 40)) for n in serial.nominals]
    calls = []

    def always(work, min_work_per_thread=512):
        calls.append(work)
        return True

    monkeypatch.setattr(S._jit, "threads_pay_off", always)
    out = []
    for sig in (serial, par):
        y = [t.clone().requires_grad_(True) for t in ys]
        v = sig(*y)
        v.sum().backward()
        out.append((v.detach(), [t.grad for t in y]))
    assert calls, "the threaded path was not taken"
    assert torch.equal(out[0][0], out[1][0])
    for g0, g1 in zip(out[0][1], out[1][1]):
        assert torch.equal(g0, g1)
    with pytest.raises(InvalidParameters, match=r"rows \[3\]"):
        bad = ys[0].clone()
        bad[3, 1] = -1.0
        par(bad, *ys[1:])


def test_float32_input_gives_float32_output_and_gradient():
    sig = _sig(synth_ws(), "z0", "asimov")
    y64 = sig.nominal.clone().requires_grad_(True)
    y32 = sig.nominal.float().requires_grad_(True)
    v64, v32 = sig(y64), sig(y32)
    v64.backward()
    v32.backward()
    assert v32.dtype == torch.float32 and y32.grad.dtype == torch.float32
    assert v32.item() == pytest.approx(v64.item(), rel=1e-6)
    np.testing.assert_allclose(y32.grad.numpy(), y64.grad.numpy(), rtol=1e-4, atol=1e-6)


def test_forward_without_grad_and_evaluate():
    sig = _sig(synth_ws(), "q0", "asimov")
    y = sig.nominal.expand(3, -1).clone()
    with torch.no_grad():
        v = sig(y)
    assert v.shape == (3,) and not v.requires_grad
    value, grad = sig.evaluate(y.numpy())
    np.testing.assert_array_equal(value, v.numpy())
    assert grad.shape == (3, 3) and (grad != 0).any()


def test_one_d_input_no_copy_buffer_reuse_and_no_second_derivative():
    sig = _sig(synth_ws(), "z0", "asimov")
    base = sig.nominal
    rows = torch.stack([base, base * 1.3, base * 0.8])
    ref, ref_grad = sig.evaluate(rows.numpy())
    for b in (3, 1, 2, 3):  # the state buffer grows and is reused
        y = rows[:b].clone().requires_grad_(True)
        v = sig(y)
        v.sum().backward()
        np.testing.assert_array_equal(v.detach().numpy(), ref[:b])
        np.testing.assert_array_equal(y.grad.numpy(), ref_grad[:b])
    y1 = rows[1].clone().requires_grad_(True)
    v1 = sig(y1)
    assert v1.shape == () and v1.grad_fn is not None
    (g,) = torch.autograd.grad(v1, y1, create_graph=True)
    np.testing.assert_array_equal(g.numpy(), ref_grad[1])
    assert not g.requires_grad  # no second derivative
    with pytest.raises(RuntimeError):
        g.sum().backward()
    # a non-contiguous view is read correctly
    wide = torch.stack([rows, rows], dim=2).reshape(3, 6)[:, ::2]
    assert not wide.is_contiguous()
    np.testing.assert_array_equal(sig(wide).numpy(), ref)


def test_module_composes_with_a_network():
    """A linear layer producing yields trains through the loss (one optimiser step)."""
    sig = _sig(synth_ws(), "z0", "asimov")
    torch.manual_seed(0)
    layer = torch.nn.Linear(2, 3, dtype=torch.float64)
    x = torch.ones(4, 2, dtype=torch.float64)
    loss = -sig(torch.nn.functional.softplus(layer(x)) * 5.0).mean()
    loss.backward()
    assert layer.weight.grad is not None and torch.isfinite(layer.weight.grad).all()


# ---------------------------------------------------------------------------- errors
def test_bad_inputs_raise_histgym_errors():
    sig = _sig(synth_ws(), "z0", "asimov")
    with pytest.raises(InvalidTensor, match="torch.Tensor"):
        sig(np.ones(3))
    with pytest.raises(InvalidTensor, match="dtype"):
        sig(torch.ones(3, dtype=torch.int64))
    with pytest.raises(InvalidTensor, match="dtype"):
        sig(torch.ones(3, dtype=torch.float16))
    for shape in [(4,), (2, 4), (2, 2, 3), ()]:
        with pytest.raises(InvalidParameters, match=r"'signal' have shape"):
            sig(torch.ones(shape, dtype=torch.float64))
    with pytest.raises(InvalidParameters, match=r"finite and >= 0; rows \[1\]"):
        sig(torch.tensor([[1.0, 2.0, 3.0], [1.0, float("nan"), 3.0]]))
    with pytest.raises(InvalidParameters, match="finite and >= 0"):
        sig(torch.tensor([1.0, -2.0, 3.0]))
    with pytest.raises(InvalidParameters, match="shape"):
        sig.evaluate(np.ones((2, 4)))
    assert issubclass(InvalidTensor, HistgymError) and issubclass(InvalidTensor, TypeError)


def test_bad_options_raise():
    ws = synth_ws()
    with pytest.raises(UnknownName, match="Did you mean 'z0'"):
        Significance(ws, channel="SR", sample="signal", metric="z00")
    with pytest.raises(UnknownName, match="sample"):
        Significance(ws, channel="SR", sample="sgnal")
    with pytest.raises(ValueError, match="data"):
        Significance(ws, channel="SR", sample="signal", data="toys")
    with pytest.raises(InvalidParameters, match="data='asimov'"):
        Significance(ws, channel="SR", sample="signal", metric="cls", data="observed")


def test_core_never_imports_torch_and_missing_torch_names_the_extra():
    code = ("import sys, histgym, histgym.envs, histgym.infer, histgym.interpret;"
            "histgym.make_histfactory_env; assert 'torch' not in sys.modules")
    subprocess.run([sys.executable, "-c", code], check=True, timeout=300)
    code = (  # a finder that hides torch (scipy trips over sys.modules['torch'] = None)
        "import sys\n"
        "class Hide:\n"
        "    def find_spec(self, name, path=None, target=None):\n"
        "        if name.split('.')[0] == 'torch':\n"
        "            raise ModuleNotFoundError(f'No module named {name!r}')\n"
        "sys.meta_path.insert(0, Hide())\n"
        "import histgym.torch\n"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          timeout=300)
    assert proc.returncode != 0
    last = proc.stderr.strip().splitlines()[-1]
    assert last.startswith("histgym.errors.MissingExtra") and 'pip install "histgym[torch]"' in last


# ---------------------------------------------------------------------------- several samples
def _no_staterror_ws() -> dict[str, Any]:
    ws = synth_ws()
    for ch in ws["channels"]:
        for s in ch["samples"]:
            s["modifiers"] = [m for m in s["modifiers"] if m["type"] != "staterror"]
    return ws


@pytest.mark.parametrize("metric, data", [("z0", "asimov"), ("qmu", "observed"),
                                          ("cls", "asimov")])
def test_several_samples_values_pyhf_and_gradcheck(metric, data):
    ws = _no_staterror_ws()
    sig = _sig(ws, metric, data, sample=["signal", "background"], mle_tol=1e-12)
    s0, b0 = sig.nominals
    ys = s0 * torch.linspace(0.7, 1.4, 3, dtype=torch.float64)
    yb = b0 * torch.linspace(1.2, 0.9, 3, dtype=torch.float64)
    value = sig(ys, yb).item()
    ref = _pyhf_value(sig.workspace(ys, yb), metric, data, sig.mu_test)
    assert value == pytest.approx(ref, rel=1e-6, abs=1e-5) and value != 0.0
    a = torch.stack([ys, ys * 1.1]).requires_grad_(True)
    b = torch.stack([yb, yb * 0.95]).requires_grad_(True)
    assert torch.autograd.gradcheck(sig, (a, b), eps=1e-6, atol=1e-6, rtol=1e-4)
    # the first sample's gradient is the single-sample module's (same kernel pass)
    v2 = sig(a, b)
    v2.sum().backward()
    wsb = sig.workspace(ys, yb)
    one = _sig(wsb, metric, data, mle_tol=1e-12)
    y1 = ys.clone().requires_grad_(True)
    one(y1).backward()
    np.testing.assert_allclose(a.grad[0].numpy(), y1.grad.numpy(), rtol=1e-7, atol=1e-10)


@pytest.mark.parametrize("metric, data", [("z0", "asimov"), ("qmu", "observed"),
                                          ("cls", "asimov")])
def test_several_samples_sharing_a_staterror(metric, data):
    """signal and background both carry staterror_SR: each bin's width depends on both
    controlled yields (values equal pyhf's; gradcheck; rows independent)."""
    sig = _sig(synth_ws(), metric, data, sample=["signal", "background"], mle_tol=1e-12)
    s0, b0 = sig.nominals
    ys = s0 * torch.linspace(0.7, 1.4, 3, dtype=torch.float64)
    yb = b0 * torch.linspace(1.2, 0.9, 3, dtype=torch.float64)
    value = sig(ys, yb).item()
    ref = _pyhf_value(sig.workspace(ys, yb), metric, data, sig.mu_test)
    # widths frozen at the nominal background would be off by ~5e-4 relative here
    assert value == pytest.approx(ref, rel=1e-9, abs=1e-12) and value != 0.0
    a = torch.stack([ys, ys * 1.1, s0]).requires_grad_(True)
    b = torch.stack([yb, yb * 0.95, b0]).requires_grad_(True)
    assert torch.autograd.gradcheck(sig, (a, b), eps=1e-6, atol=1e-6, rtol=1e-4)
    v = sig(a, b)
    v.sum().backward()
    for i in range(3):
        ai = a[i].detach().clone().requires_grad_(True)
        bi = b[i].detach().clone().requires_grad_(True)
        vi = sig(ai, bi)
        vi.backward()
        assert vi.item() == v[i].item()
        assert torch.equal(ai.grad, a.grad[i]) and torch.equal(bi.grad, b.grad[i])


def test_several_samples_errors():
    sig = Significance(_no_staterror_ws(), channel="SR", sample=["signal", "background"])
    s0, b0 = sig.nominals
    with pytest.raises(InvalidParameters, match="one per sample"):
        sig(s0)
    with pytest.raises(InvalidParameters, match="expected those of 'signal'"):
        sig(s0, b0.float())
    with pytest.raises(InvalidParameters, match="twice"):
        Significance(synth_ws(), channel="SR", sample=["signal", "signal"])


# ---------------------------------------------------------------------------- property
from hypothesis import given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402
from hypothesis.extra.numpy import arrays  # noqa: E402

_SIGS: dict[str, Significance] = {}


@settings(max_examples=25, deadline=None)
@given(
    metric=st.sampled_from(METRICS),
    scale=arrays(np.float64, (3, 3), elements=st.floats(0.0, 20.0)),
)
def test_property_finite_values_and_gradients_rows_independent(metric, scale):
    """Any non-negative yields (zeros included): finite values and gradients, never NaN;
    each row of a batch equals its own evaluation."""
    if metric not in _SIGS:
        _SIGS[metric] = _sig(synth_ws(), metric, "asimov")
    sig = _SIGS[metric]
    y = torch.tensor(scale * sig.nominal.numpy(), requires_grad=True)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # a degenerate row may not converge (reported)
        v = sig(y)
        v.sum().backward()
        assert torch.isfinite(v).all() and torch.isfinite(y.grad).all()
        ok = sig.last_fit_ok.copy()
        for i in range(3):
            assert sig(y[i].detach()).item() == v[i].item()
    assert y.grad[~torch.from_numpy(ok)].eq(0).all()
