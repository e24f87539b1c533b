"""Torch layer: :class:`Significance`, a profile-likelihood figure of merit as a PyTorch module.

The forward pass maps the yields of one sample (e.g. the signal histogram produced by a
network) to the metric that the histogram environment reports as ``info["value"]``; the
backward pass uses the exact gradient that the environment kernels compute at the fitted
optima (envelope theorem: at an optimum ``d T*/dy = dT/dy`` at fixed parameters, so no
derivative of the fit itself is needed). A batch of yield vectors is evaluated in one call of
the compiled batched kernel (``histgym._kernels.env_step.env_reset_batch``): no Python loop
over the batch. This module only packs arrays; the metric and its gradient are the scoring
core shared with the environments.
"""

from __future__ import annotations

import dataclasses
import math
import threading
import warnings
from collections.abc import Sequence
from typing import Any

import numpy as np
import numpy.typing as npt
import torch
from scipy.special import ndtr
from torch.autograd.function import once_differentiable

from .._kernels import _jit
from .._kernels import env_step as K
from .._kernels.samples import set_yields_batch
from . import _kernels as TK
from ..envs import core
from ..errors import (
    FitWarning,
    InvalidParameters,
    InvalidTensor,
    UnknownName,
    did_you_mean,
)
from ..fit import fixed_poi_fit

__all__ = ["METRICS", "Significance", "InvalidTensor"]

FloatArray = npt.NDArray[np.float64]

#: metrics of :class:`Significance` (``cls`` is the median expected CLs at ``mu_test``)
METRICS = ("z0", "q0", "qmu", "zmu", "cls")
_ENV_METRIC = {"z0": "z0", "q0": "q0", "qmu": "qmu", "zmu": "zmu", "cls": "zmu"}
_DTYPES = (torch.float32, torch.float64)
#: with ``parallel=True``, rows per numba thread below which the batch runs in one thread
_MIN_ROWS_PER_THREAD = 16


class Significance(torch.nn.Module):
    """Differentiable profile-likelihood metric of one sample's yields.

    ``forward(yields)`` maps float ``[n_bins]`` to a scalar or ``[B, n_bins]`` to ``[B]``,
    (``forward(y_1, ..., y_k)`` when ``sample`` lists k samples),
    in the input's dtype (float32 or float64; the kernels compute in float64) and on its
    device (the computation runs on the CPU). The value is exactly the histogram
    environment's ``info["value"]`` for the same workspace, channel, sample, ``data``,
    ``mu_test``, ``mle_tol`` and yields (a fresh ``reset(options={"yields": y})``); it is **not**
    negated: maximise it, e.g. ``loss = -sig(yields)``.

    | ``metric`` | value | grows with sensitivity |
    |---|---|---|
    | ``"z0"`` | ``sqrt(q0)`` | yes |
    | ``"q0"`` | discovery ``q0`` (0 when ``mu_hat < 0``) | yes |
    | ``"qmu"`` | ``-qmu_tilde(mu_test)`` (the env's sign) | yes |
    | ``"zmu"`` | ``-sqrt(qmu_tilde(mu_test))`` (the env's sign) | yes |
    | ``"cls"`` | median expected CLs at ``mu_test``, ``2 Phi(-sqrt(q_A))`` | no: minimise it |

    Data (``data``): ``"asimov"`` (default) is the expected data of the current yields at
    POI = 1 with nuisance parameters at their nominal values, recomputed for every yield
    vector, so the value is the *expected* sensitivity; ``"observed"`` uses the workspace's
    observations. For ``"cls"`` the Asimov data set is the background-only one as in pyhf's
    asymptotic calculator: POI = 0 and nuisances at their nominal values (``"asimov"``), or
    at the POI = 0 fit to the observed data (``"observed"``). ``q_A`` is pyhf's
    ``qmu_tilde(mu_test)`` on that data set, and the value equals the median of
    ``pyhf.infer.hypotest(mu_test, ..., test_stat="qtilde", return_expected=True)``.

    Not supported (:class:`~histgym.errors.InvalidParameters` at construction):
    ``metric="cls", data="observed"`` when the POI = 0 fit to the observed data depends on
    the controlled yields, i.e. when a controlled sample is not scaled by the POI as a
    normfactor (e.g. a background sample) or carries a staterror (its width enters the
    constraint). The Asimov data set then moves with the yields through the refitted
    nuisance parameters ``theta0(y)``, and the gradient needs ``d theta0 / d y``, the
    implicit derivative of that fit (its Hessian and the mixed derivative in ``y``), which
    the envelope theorem does not give and the kernels do not compute. The POI = 0 fit is
    done once, at construction, for the allowed cases. Use ``data="asimov"`` (nominal
    nuisances), or ``metric="zmu"``/``"qmu"`` on the observed data.

    Modifiers on the sample keep their relative size as in the environments (normsys,
    normfactor, lumi multiplicative; histosys hi/lo ratios; staterror/shapesys relative
    uncertainties); :meth:`workspace` exports a yield vector as a pyhf workspace on which
    pyhf gives the same value.

    Gradient: exact at the fitted optima (envelope theorem), computed by the kernel together
    with the value; for ``"cls"`` it is ``2 phi(-sqrt(q_A))`` times the gradient of
    ``-sqrt(q_A)`` (from qmu's). Where the one-sided test statistic is clipped to 0
    (``mu_hat < 0`` for q0/z0, ``mu_hat > mu_test`` for qmu/zmu/cls, or ``q = 0``) the
    returned gradient is 0: the derivative on the clipped side (for q0/qmu a valid
    subgradient of ``max(0, .)``; for z0/zmu/cls the derivative on the active side tends to
    a finite, non-zero limit, so the derivative jumps there and 0 is the clipped side's
    value, never NaN; the kernel's ``1/sqrt(q)`` factor is never evaluated at q = 0).
    A fitted POI exactly at the tested value (e.g. ``mu_hat = 0`` at the POI's lower
    bound 0 for q0) also gives q = 0 and a zero gradient: both fits then solve the same
    problem, and the difference of the two minima that the kernel returns there is
    round-off (the environment reports it as it is). A POI at its bound below the tested
    value (e.g. ``mu_hat = 0 < mu_test`` for qmu, zmu and cls, as on background-only
    Asimov data) keeps the envelope theorem with the bound active: the gradient is exact
    there. Yields are clipped to ``[clip_min, clip_max]`` before the evaluation and the
    gradient is passed through unchanged (it is the one-sided derivative at a yield of 0).
    A fit that fails gives the kernel's fallback value (as the environment), a zero
    gradient for that row, and a :class:`~histgym.FitWarning`;
    :attr:`last_fit_ok` tells which rows converged.

    Args:
        workspace: dict, JSON text, path or ``pyhf.Workspace``.
        channel: channel of the controlled sample.
        sample: the controlled sample (its yields are the forward's input), or a list of
            samples of the channel, all controlled (``forward`` then takes one tensor per
            sample, in that order, and returns the gradient for each). With several samples
            (e.g. every histogram of a classifier-based analysis) the extra gradients come
            from one more warm-started kernel pass per sample at the same optima. Where
            controlled samples share a staterror, each bin's width
            ``sqrt(sum_s u_s^2) / sum_s nominal_s`` is recomputed from all the controlled
            yields of the row (each sample's ``u_s / nominal_s`` kept), as pyhf does for the
            exported workspace; that case runs in one thread (``parallel`` is ignored).
        metric: one of :data:`METRICS`, defaults to ``"z0"``.
        data: ``"asimov"`` (default) or ``"observed"``.
        mu_test: tested POI of ``qmu``, ``zmu`` and ``cls``, defaults to 5.0 (the
            environment's default; use 1.0 to test the nominal signal).
        clip_min, clip_max: yield range, defaults to 1e-12 and 1e12.
        mle_max_iter: Newton iterations per fit, defaults to 200.
        mle_tol: fit tolerance (estimated distance to minimum, -ln L units), defaults to
            1e-10, tighter than the environment's 1e-6: the envelope gradient is accurate to
            about ``sqrt(mle_tol)`` relative to the parameter uncertainties (the value to
            ``mle_tol``); Newton converges quadratically, so this costs about one iteration.
        parallel: run the rows of a batch in numba threads (``prange``) where they pay off:
            at least 16 rows per thread and two cores free by the load average, else in one
            thread; defaults to False (one thread: faster for small batches and on busy
            machines; threads pay off for large batches on idle cores). Ignored (one
            thread) when several controlled samples carry a staterror.

    Cost: one forward pass of a single sample is one compiled call (validation, packing,
    the fits, unpacking) into buffers kept by the module; the gradient is computed in the
    forward pass and the backward only scales it. A contiguous float64 CPU tensor is read
    without a copy. At batch size 1 the time is dominated by PyTorch's own per-call cost
    (tensor, graph, ``backward``: about 110 us of CPU on the 2-core test machine, more than
    half of a step), which any loss pays (``benchmarks/torch_loss.py``).
    Second derivatives are not available: under ``create_graph=True`` this module's part
    of the gradient carries no graph (as with torch's ``once_differentiable``), so a second
    derivative misses its contribution (and differentiating a gradient that comes from this
    module alone raises).

    Raises:
        UnknownName: unknown metric, channel or sample.
        ValueError: bad ``data``, ``mu_test``, clip range or tolerance.
        InvalidParameters: ``metric="cls", data="observed"`` where the background-only fit
            depends on the yields (see above).

    Example:
        >>> import torch, histgym
        >>> from histgym.torch import Significance
        >>> sig = Significance(histgym.example_workspace(), channel="SR", sample="signal")
        >>> y = sig.nominal.clone().requires_grad_(True)
        >>> z0 = sig(y)
        >>> z0.backward()
        >>> round(z0.item(), 3), y.grad.shape
        (1.883, torch.Size([8]))
    """

    def __init__(
        self,
        workspace: Any,
        *,
        channel: str,
        sample: str | Sequence[str],
        metric: str = "z0",
        data: str = "asimov",
        mu_test: float = 5.0,
        clip_min: float = 1e-12,
        clip_max: float = 1e12,
        mle_max_iter: int = 200,
        mle_tol: float = 1e-10,
        parallel: bool = False,
    ) -> None:
        super().__init__()
        if metric not in METRICS:
            msg = f"unknown metric {metric!r}; expected one of {list(METRICS)}."
            raise UnknownName(msg + did_you_mean(str(metric), METRICS))
        if parallel not in (True, False):
            raise ValueError(f"parallel must be True or False, got {parallel!r}")
        samples = (sample,) if isinstance(sample, str) else tuple(sample)
        if not samples or not all(isinstance(s, str) for s in samples):
            raise InvalidParameters(f"sample must be a name or a list of names, got {sample!r}")
        if len(set(samples)) != len(samples):
            raise InvalidParameters(f"sample lists a name twice: {list(samples)}")
        cls = metric == "cls"
        spec = core.load_workspace(workspace)
        plist = []
        for name in samples:
            p = core.build_params(
                spec, channel=channel, sample=name, reward_metric=_ENV_METRIC[metric],
                mu_test=mu_test, clip_min=clip_min, clip_max=clip_max,
                mle_max_iter=mle_max_iter, mle_tol=mle_tol, data="asimov" if cls else data,
                return_gradient=True,
            )
            plist.append(_background_asimov(p, data) if cls else p)
        self.metric = metric
        self.data = data
        self.channel = channel
        self.sample = samples[0] if len(samples) == 1 else samples
        self.samples = samples
        self._single = len(samples) == 1
        self._name = samples[0]
        self.mu_test = float(mu_test)
        self.parallel = parallel
        self._plist = plist
        self._st_maps = _staterror_maps(plist) if len(plist) > 1 else None
        self._params = plist[0]
        ny, nf, nd, npar = plist[0].sizes
        self._ny = ny
        self._row = plist[0].new_state(1).S[0].copy()
        self._off_out = ny + nf + nd + 2 * npar
        self._off_grad = self._off_out + K.N_OUT
        self._q_nograd = plist[0].Q.copy()
        self._q_nograd[K.Q_HEAD + K.CI_GRAD] = 0
        self._clip = (float(clip_min), float(clip_max))
        # packed arguments of the compiled single-sample path (histgym.torch._kernels):
        # (clip_min, clip_max, mu_test) and the columns of S, the clipped side, gradient flag
        self._cfg_f = np.array([clip_min, clip_max, mu_test], dtype=np.float64)
        cols = [self._off_out + K.O_VALUE, self._off_out + K.O_MUHAT, self._off_out + K.O_OK,
                self._off_grad, 0 if metric in ("z0", "q0") else 1]
        self._cfg_i = (np.array(cols + [0], dtype=np.int64),
                       np.array(cols + [1], dtype=np.int64))
        # state rows reused from call to call (grown on demand); a call that finds the
        # buffer busy (another thread) allocates its own
        self._S: FloatArray = np.empty((0, self._row.size))
        self._lock = threading.Lock()
        self.last_fit_ok: npt.NDArray[np.bool_] = np.ones(0, dtype=bool)
        self.last_mu_hat: FloatArray = np.zeros(0)

    # ------------------------------------------------------------------ properties
    @property
    def n_bins(self) -> int:
        """Number of bins of the controlled sample."""
        return self._ny

    @property
    def nominal(self) -> torch.Tensor:
        """The (first) sample's nominal yields in the workspace (float64 [n_bins], a copy)."""
        return torch.from_numpy(self._params.base_yields.copy())

    @property
    def nominals(self) -> tuple[torch.Tensor, ...]:
        """Every controlled sample's nominal yields (float64 [n_bins] each, copies)."""
        return tuple(torch.from_numpy(p.base_yields.copy()) for p in self._plist)

    def extra_repr(self) -> str:
        return (f"channel={self.channel!r}, sample={self.sample!r}, metric={self.metric!r}, "
                f"data={self.data!r}, mu_test={self.mu_test}, n_bins={self._ny}")

    def workspace(self, *yields: Any) -> dict[str, Any]:
        """The workspace with the samples' yields replaced (modifiers kept relative).

        Args:
            *yields: float [n_bins] (tensor or array), one per controlled sample.

        Returns:
            A pyhf workspace dict; for ``data="asimov"`` its observations are unchanged
            (build the Asimov data set from it as the environment does).
        """
        if len(yields) != len(self._plist):
            raise InvalidParameters(
                f"workspace() takes one yield vector per sample {list(self.samples)}, "
                f"got {len(yields)}"
            )
        spec = self._params.spec
        for p, y in zip(self._plist, yields):
            if isinstance(y, torch.Tensor):
                y = y.detach().cpu().double().numpy()
            p = dataclasses.replace(p, spec=spec)
            spec = core.workspace_with_yields(p, core.check_yields(p, y))
        return spec

    # ------------------------------------------------------------------ evaluation
    def evaluate(self, *yields: Any, gradient: bool = True) -> tuple[FloatArray, ...]:
        """The metric and its gradients for each row of the yields, without autograd.

        Args:
            *yields: float64 [B, n_bins] arrays (finite, >= 0), one per controlled sample.
            gradient: compute the gradients (else they are returned as zeros).

        Returns:
            ``(value [B], d value / d yields [B, n_bins] per sample...)``, float64.
        """
        _check_count(self, yields)
        ys = []
        for name, y in zip(self.samples, yields):
            y = np.asarray(y, dtype=np.float64)
            if y.ndim != 2 or y.shape[1] != self._ny:
                raise InvalidParameters(
                    f"yields of {name!r} have shape {y.shape}; expected (B, {self._ny})"
                )
            _check_values(y, name)
            ys.append(y)
        if len({y.shape for y in ys}) != 1:
            raise InvalidParameters(f"yields have different shapes {[y.shape for y in ys]}")
        return self._evaluate(ys, gradient)

    def _evaluate(self, ys: list[FloatArray], gradient: bool) -> tuple[FloatArray, ...]:
        if len(ys) == 1:
            return self._evaluate_one(ys[0], gradient)
        return self._evaluate_many(ys, gradient)

    def _use_threads(self, b: int) -> bool:
        return self.parallel and _jit.threads_pay_off(b, min_work_per_thread=_MIN_ROWS_PER_THREAD)

    def _evaluate_one(self, y: FloatArray, gradient: bool) -> tuple[FloatArray, FloatArray]:
        """One controlled sample: the lean path (one compiled call when serial, the state
        rows in a buffer kept by the module, validation inside the compiled call)."""
        b = y.shape[0]
        y = np.ascontiguousarray(y, dtype=np.float64)
        value = np.empty(b)
        grad = np.empty((b, self._ny))
        mu_hat = np.empty(b)
        ok = np.empty(b, dtype=np.bool_)
        if self._lock.acquire(blocking=False):
            try:
                if self._S.shape[0] < b:
                    self._S = np.empty((b, self._row.size))
                r = self._run_one(y, self._S, gradient, value, grad, mu_hat, ok)
            finally:
                self._lock.release()
        else:  # another thread is using the buffer
            r = self._run_one(y, np.empty((b, self._row.size)), gradient, value, grad,
                              mu_hat, ok)
        if r < 0:
            _check_values(y, self.samples[0])  # names every bad row
            raise AssertionError("unreachable: the kernel found a bad row")  # pragma: no cover
        object.__setattr__(self, "last_mu_hat", mu_hat)
        object.__setattr__(self, "last_fit_ok", ok)
        if self.metric == "cls":
            value = _cls_transform(value, [grad])
        if r > 0:
            _warn_failed(self.metric, ok)
        return value, grad

    def _run_one(self, y: FloatArray, S: FloatArray, gradient: bool, value: FloatArray,
                 grad: FloatArray, mu_hat: FloatArray, ok: npt.NDArray[np.bool_]) -> int:
        p0 = self._params
        q, cfg_i = (p0.Q, self._cfg_i[1]) if gradient else (self._q_nograd, self._cfg_i[0])
        cfg_f = self._cfg_f
        if self._use_threads(y.shape[0]):
            bad = TK.pack_rows(y, S, self._row, cfg_f[0], cfg_f[1])
            if bad >= 0:
                return -1 - bad
            b = y.shape[0]
            K.env_reset_batch(np.ones(b, dtype=np.bool_), S[:b], p0.P, q, p0.ibuf,
                              _jit.thread_count())
            return int(TK.unpack_rows(S, cfg_i, cfg_f[2], value, grad, mu_hat, ok))
        return int(TK.metric_rows_serial(y, S, self._row, cfg_f, p0.P, q, p0.ibuf, cfg_i,
                                         value, grad, mu_hat, ok))

    def _evaluate_many(self, ys: list[FloatArray], gradient: bool) -> tuple[FloatArray, ...]:
        b = ys[0].shape[0]
        p0 = self._params
        ibuf = p0.ibuf
        lo, hi = self._clip
        S = np.empty((b, self._row.size))
        S[:] = self._row
        ys = [np.clip(y, lo, hi) for y in ys]
        maps = self._st_maps
        prows: list[FloatArray] = []
        if maps is not None:
            # staterror widths shared by controlled samples: one P per row and sample
            yall = np.ascontiguousarray(np.stack(ys))
            for p, mp in zip(self._plist, maps):
                pr = np.empty((b, p.P.size))
                TK.staterror_rows(p.P, yall, *mp, pr)
                prows.append(pr)
            for p, pr, y in zip(self._plist[1:], prows[1:], ys[1:]):
                TK.set_yields_rows(S, pr, p.Q, ibuf, y)
        else:
            for p, y in zip(self._plist[1:], ys[1:]):
                set_yields_batch(S, p.P, p.Q, ibuf, y)
        S[:, : self._ny] = ys[0]
        mask = np.ones(b, dtype=np.bool_)
        par = maps is None and self._use_threads(b)
        q0 = p0.Q if gradient else self._q_nograd
        if maps is not None:
            TK.reset_rows(S, prows[0], q0, ibuf)
        elif par:
            K.env_reset_batch(mask, S, p0.P, q0, ibuf, _jit.thread_count())
        else:
            K.env_reset_batch_serial(mask, S, p0.P, q0, ibuf)
        out = S[:, self._off_out : self._off_out + K.N_OUT]
        gslot = slice(self._off_grad, self._off_grad + self._ny)
        value = out[:, K.O_VALUE].copy()
        ok = out[:, K.O_OK] == 1.0
        object.__setattr__(self, "last_mu_hat", out[:, K.O_MUHAT].copy())
        grads = [S[:, gslot].copy()]
        if gradient and len(ys) > 1:
            # the other samples' gradients at the same optima: a step with a zero action
            # from the converged fits (warm start: the Newton fits stop at once)
            zeros = np.zeros((b, self._ny))
            bad = np.zeros(b, dtype=np.int64)
            for j, (p, y) in enumerate(zip(self._plist[1:], ys[1:]), start=1):
                S[:, : self._ny] = y
                if maps is not None:
                    TK.step_rows(S, prows[j], p.Q, ibuf, zeros[0])
                elif par:
                    K.env_step_batch(mask, zeros, S, p.P, p.Q, ibuf, bad, _jit.thread_count())
                else:
                    K.env_step_batch_serial(mask, zeros, S, p.P, p.Q, ibuf, bad)
                ok &= out[:, K.O_OK] == 1.0
                grads.append(S[:, gslot].copy())
            for g in grads:
                g[~ok] = 0.0
        elif not gradient:
            grads += [np.zeros_like(grads[0]) for _ in ys[1:]]
        # plain attributes (nn.Module.__setattr__ costs ~25 us per call)
        object.__setattr__(self, "last_fit_ok", ok)
        # At mu_hat == tested POI both fits solve the same problem: q is 0 exactly, and the
        # kernel's difference of the two minima is round-off (amplified by sqrt and 1/sqrt)
        mh = self.last_mu_hat
        clipped = mh <= 0.0 if self.metric in ("z0", "q0") else mh >= self.mu_test
        if clipped.any():
            value[clipped] = 0.0
            for g in grads:
                g[clipped] = 0.0
        if self.metric == "cls":
            value = _cls_transform(value, grads)
        if not ok.all():
            _warn_failed(self.metric, ok)
        return (value, *grads)

    def forward(self, *yields: torch.Tensor) -> torch.Tensor:
        """Metric of the yields: one tensor per controlled sample, each float [n_bins]
        (-> scalar) or [B, n_bins] (-> [B]), all of the same shape and dtype."""
        if len(yields) == 1 and self._single:  # the lean path
            y = yields[0]
            _check_tensor(self._name, y, self._ny)
            return _OneSampleFunction.apply(self, y)  # type: ignore[no-any-return]
        if len(yields) != len(self.samples):
            _check_count(self, yields)
        first = yields[0]
        for name, y in zip(self.samples, yields):
            _check_tensor(name, y, self._ny)
            if y is not first and (y.shape != first.shape or y.dtype != first.dtype):
                raise InvalidParameters(
                    f"yields of {name!r} have shape {tuple(y.shape)} and dtype {y.dtype}; "
                    f"expected those of {self.samples[0]!r}: {tuple(first.shape)}, {first.dtype}"
                )
        return _MetricFunction.apply(self, *yields)  # type: ignore[no-any-return]


def _check_tensor(name: str, y: Any, ny: int) -> None:
    if not isinstance(y, torch.Tensor):
        raise InvalidTensor(f"yields of {name!r} must be a torch.Tensor, got {type(y).__name__}")
    if y.dtype not in _DTYPES:
        raise InvalidTensor(
            f"yields of {name!r} have dtype {y.dtype}; expected torch.float32 or torch.float64"
        )
    if y.dim() not in (1, 2) or y.shape[-1] != ny:
        raise InvalidParameters(
            f"yields of {name!r} have shape {tuple(y.shape)}; expected ({ny},) or (B, {ny})"
        )


def _as_rows(y: torch.Tensor) -> FloatArray:
    """float64 [B, n_bins] numpy view of a tensor (no copy for a contiguous float64 CPU
    tensor; the compiled code only reads it)."""
    a = y.detach()
    if a.dtype != torch.float64 or a.device.type != "cpu":
        a = a.to(device="cpu", dtype=torch.float64)
    arr = a.numpy()
    return arr.reshape(1, -1) if arr.ndim == 1 else arr


def _check_count(module: Significance, ys: Sequence[Any]) -> None:
    if len(ys) != len(module.samples):
        raise InvalidParameters(
            f"expected {len(module.samples)} yield tensor(s), one per sample "
            f"{list(module.samples)}; got {len(ys)}"
        )


def _staterror_maps(plist: Sequence[core.EnvParams]) -> list[tuple[Any, ...]] | None:
    """Arguments of :func:`histgym.torch._kernels.staterror_rows` per controlled sample, or
    None when no controlled sample carries a staterror.

    A staterror width is ``sqrt(sum_s u_s^2) / sum_s nominal_s`` over the samples of the bin
    that carry it (pyhf); each sample's P holds the other samples' sums, fixed at the
    workspace's nominal: the controlled samples' parts are taken out here and put back
    from each row's yields by the kernel.
    """
    infos = []
    for p in plist:
        nci = int(p.Q[4])
        o = K.Q_HEAD + K.N_CFG_I
        ctl_i = np.asarray(p.Q[o : o + nci], dtype=np.int64)
        ny, na, ns = int(ctl_i[0]), int(ctl_i[1]), int(ctl_i[2])
        fo = K.N_CFG_F + 5 * int(p.Q[3]) + 4 * na  # P: cfg_f, pvec [5, n_par], ctl_f
        st = 4 + ny + 2 * na
        infos.append((
            fo + np.arange(ns, dtype=np.int64),  # other nominal sums
            fo + ns + np.arange(ns, dtype=np.int64),  # other squared uncertainties
            np.asarray(p.P[fo + 2 * ns : fo + 3 * ns], dtype=np.float64),  # u / nominal
            ctl_i[st : st + ns],  # constraint (parameter) of each entry
            ctl_i[st + ns : st + 2 * ns],  # bin of each entry
        ))
    if all(info[0].size == 0 for info in infos):
        return None
    maps = []
    for j, (nom_idx, u2_idx, _, st_g, _) in enumerate(infos):
        nom_fixed = plist[j].P[nom_idx].astype(np.float64)
        u2_fixed = plist[j].P[u2_idx].astype(np.float64)
        ck, ci, cpos, crel = [], [], [], []
        for k, g in enumerate(st_g):
            for i, (_, _, rel_i, st_g_i, st_p_i) in enumerate(infos):
                if i == j:
                    continue
                for k2 in np.flatnonzero(st_g_i == g):
                    pos = int(st_p_i[k2])
                    base = float(plist[i].base_yields[pos])
                    nom_fixed[k] -= base
                    u2_fixed[k] -= (float(rel_i[k2]) * base) ** 2
                    ck.append(k)
                    ci.append(i)
                    cpos.append(pos)
                    crel.append(float(rel_i[k2]))
        maps.append((nom_idx, u2_idx, nom_fixed, np.maximum(u2_fixed, 0.0),
                     np.array(ck, dtype=np.int64), np.array(ci, dtype=np.int64),
                     np.array(cpos, dtype=np.int64), np.array(crel, dtype=np.float64)))
    return maps


def _cls_transform(value: FloatArray, grads: list[FloatArray]) -> FloatArray:
    """``value = -sqrt(q_A)`` -> CLs ``= 2 Phi(-sqrt(q_A))``; ``dCLs/dy = 2 phi(value)
    dvalue/dy`` (the gradients are scaled in place)."""
    dens = np.exp(-0.5 * value * value) * (2.0 / math.sqrt(2.0 * math.pi))
    for g in grads:
        g *= dens[:, None]
    return np.asarray(2.0 * ndtr(value), dtype=np.float64)


def _warn_failed(metric: str, ok: npt.NDArray[np.bool_]) -> None:
    rows = np.flatnonzero(~ok)[:5].tolist()
    warnings.warn(
        f"Significance({metric!r}): a fit did not converge for rows {rows}; "
        "their value is the kernel's fallback and their gradient 0",
        FitWarning, stacklevel=5,
    )


def _check_values(y: FloatArray, sample: str) -> None:
    if np.isfinite(y).all() and (y >= 0.0).all():
        return
    good = np.isfinite(y).all(axis=1) & (y >= 0.0).all(axis=1)
    if not good.all():
        rows = np.flatnonzero(~good)[:5].tolist()
        raise InvalidParameters(
            f"yields of {sample!r} must be finite and >= 0; rows {rows} are not"
        )


class _MetricFunction(torch.autograd.Function):
    """Autograd function: yields [n_bins] or [B, n_bins] per sample -> metric [] or [B]; the
    kernel computes the gradients in the forward pass, the backward only scales them."""

    @staticmethod
    def forward(  # type: ignore[override]
        ctx: Any, module: Significance, *yields: torch.Tensor
    ) -> torch.Tensor:
        ys = [_as_rows(y) for y in yields]
        if len(ys) > 1:  # the single-sample path validates inside the compiled call
            for name, a in zip(module.samples, ys):
                _check_values(a, name)
        want = any(ctx.needs_input_grad[1:])
        value, *grads = module._evaluate(ys, want)
        y0 = yields[0]
        one_d = y0.dim() == 1
        ctx.one_d = one_d
        if one_d:
            value = value.reshape(())
            grads = [g.reshape(-1) for g in grads]
        out = torch.from_numpy(value)
        same = y0.dtype == torch.float64 and y0.device.type == "cpu"
        if not same:
            out = out.to(dtype=y0.dtype, device=y0.device)
        if want:
            ctx.grads = tuple(
                torch.from_numpy(g) if same else torch.from_numpy(g).to(dtype=y0.dtype,
                                                                         device=y0.device)
                for g in grads
            )
        return out

    @staticmethod
    def backward(  # type: ignore[override]
        ctx: Any, grad_output: torch.Tensor
    ) -> tuple[torch.Tensor | None, ...]:
        if torch.is_grad_enabled():  # create_graph=True: no second derivative
            return _backward_once(ctx, grad_output)  # type: ignore[no-any-return]
        return _backward(ctx, grad_output)


class _OneSampleFunction(torch.autograd.Function):
    """:class:`_MetricFunction` for one controlled sample with the least Python per call
    (at batch size 1 PyTorch's own per-call cost and this glue are most of the time)."""

    @staticmethod
    def forward(  # type: ignore[override]
        ctx: Any, module: Significance, y: torch.Tensor
    ) -> torch.Tensor:
        a = y.detach()
        same = a.dtype is torch.float64 and a.is_cpu
        if not same:
            a = a.to(device="cpu", dtype=torch.float64)
        arr = a.numpy()
        one_d = arr.ndim == 1
        want = ctx.needs_input_grad[1]
        value, grad = module._evaluate_one(arr.reshape(1, -1) if one_d else arr, want)
        ctx.one_d = one_d
        out = torch.from_numpy(value.reshape(()) if one_d else value)
        if want:
            g = torch.from_numpy(grad.reshape(-1) if one_d else grad)
            ctx.g = g if same else g.to(dtype=y.dtype, device=y.device)
        return out if same else out.to(dtype=y.dtype, device=y.device)

    @staticmethod
    def backward(  # type: ignore[override]
        ctx: Any, grad_output: torch.Tensor
    ) -> tuple[None, torch.Tensor]:
        if torch.is_grad_enabled():  # create_graph=True: no second derivative
            return _backward_one_once(ctx, grad_output)  # type: ignore[no-any-return]
        if ctx.one_d:
            return None, grad_output * ctx.g
        return None, grad_output.unsqueeze(-1) * ctx.g


def _backward_one(ctx: Any, grad_output: torch.Tensor) -> tuple[None, torch.Tensor]:
    go = grad_output if ctx.one_d else grad_output.unsqueeze(-1)
    return None, go * ctx.g


_backward_one_once = once_differentiable(_backward_one)


def _backward(ctx: Any, grad_output: torch.Tensor) -> tuple[torch.Tensor | None, ...]:
    go = grad_output if ctx.one_d else grad_output.unsqueeze(-1)
    return (None, *(go * g for g in ctx.grads))


#: under ``create_graph=True`` the gradient is returned without a graph and a second
#: derivative through it raises (torch's ``once_differentiable``)
_backward_once = once_differentiable(_backward)


def _background_asimov(params: core.EnvParams, data: str) -> core.EnvParams:
    """Params whose kernel Asimov data set is pyhf's background-only one (expected CLs).

    ``data="asimov"``: POI = 0, nuisances nominal. ``data="observed"``: POI = 0, nuisances at
    the POI = 0 fit to the observed data (main bins and auxdata at that fit), which must not
    depend on the controlled yields.
    """
    core._choice("data", data, core.DATA_MODES)
    m = params.model
    poi = m.poi_index
    assert poi is not None  # build_params checked it for profiled metrics
    npar = m.n_params
    P = params.P.copy()
    row = K.N_CFG_F + K.PV_ASIMOV * npar
    base_data = params.base_data.copy()
    if data == "asimov":
        P[row + poi] = 0.0
    else:
        nci = int(params.Q[4])
        o = K.Q_HEAD + K.N_CFG_I
        ctl_i = np.ascontiguousarray(params.Q[o : o + nci])
        if not K.cond_fit_is_constant(m.fbuf, m.ibuf, ctl_i, int(poi), 0):
            raise InvalidParameters(
                f"metric='cls' with data='observed' needs the background-only fit to the "
                f"observed data not to depend on {params.sample!r}'s yields (the sample scaled "
                f"by the POI and without staterror); use data='asimov'"
            )
        with warnings.catch_warnings():
            warnings.simplefilter("error", FitWarning)
            res = fixed_poi_fit(0.0, m, m.observed_data())
        theta = np.asarray(res.bestfit, dtype=np.float64)
        P[row : row + npar] = theta
        base_data = m.expected_data(theta)
    return dataclasses.replace(params, P=np.ascontiguousarray(P),
                               base_data=np.ascontiguousarray(base_data))
