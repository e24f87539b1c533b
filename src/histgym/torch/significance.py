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
import warnings
from typing import Any

import numpy as np
import numpy.typing as npt
import torch
from scipy.special import ndtr
from torch.autograd.function import once_differentiable

from .._kernels import env_step as K
from ..envs import core
from ..errors import FitWarning, HistgymError, InvalidParameters, UnknownName, did_you_mean
from ..fit import fixed_poi_fit

__all__ = ["METRICS", "Significance", "InvalidTensor"]

FloatArray = npt.NDArray[np.float64]

#: metrics of :class:`Significance` (``cls`` is the median expected CLs at ``mu_test``)
METRICS = ("z0", "q0", "qmu", "zmu", "cls")
_ENV_METRIC = {"z0": "z0", "q0": "q0", "qmu": "qmu", "zmu": "zmu", "cls": "zmu"}
_DTYPES = (torch.float32, torch.float64)
#: batches at least this large run the kernel's numba-parallel driver when ``parallel=None``
PARALLEL_MIN_BATCH = 256


class InvalidTensor(HistgymError, TypeError):
    """A tensor argument is not a ``torch.Tensor`` or has an unsupported dtype."""


class Significance(torch.nn.Module):
    """Differentiable profile-likelihood metric of one sample's yields.

    ``forward(yields)`` maps float ``[n_bins]`` to a scalar or ``[B, n_bins]`` to ``[B]``,
    in the input's dtype (float32 or float64; the kernels compute in float64) and on its
    device (the computation runs on the CPU). The value is exactly the histogram
    environment's ``info["value"]`` for the same workspace, channel, sample, ``data``,
    ``mu_test`` and yields (a fresh ``reset(options={"yields": y})``); it is **not**
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
    at the POI = 0 fit to the observed data (``"observed"``; this needs that fit not to
    depend on the yields: the sample must be scaled by the POI and carry no staterror,
    otherwise :class:`~histgym.errors.InvalidParameters` is raised). ``q_A`` is pyhf's
    ``qmu_tilde(mu_test)`` on that data set, and the value equals the median of
    ``pyhf.infer.hypotest(mu_test, ..., test_stat="qtilde", return_expected=True)``.

    Modifiers on the sample keep their relative size as in the environments (normsys,
    normfactor, lumi multiplicative; histosys hi/lo ratios; staterror/shapesys relative
    uncertainties); :meth:`workspace` exports a yield vector as a pyhf workspace on which
    pyhf gives the same value.

    Gradient: exact at the fitted optima (envelope theorem), computed by the kernel together
    with the value; for ``"cls"`` it is ``2 phi(-sqrt(q_A))`` times the gradient of
    ``-sqrt(q_A)`` (from qmu's). Where the one-sided test statistic is clipped to 0
    (``mu_hat < 0`` for q0/z0, ``mu_hat > mu_test`` for qmu/zmu/cls, or ``q = 0``) the
    returned gradient is 0: the derivative on the clipped side, a valid subgradient of
    ``max(0, .)`` (for z0 and zmu, whose one-sided derivative diverges like ``1/sqrt(q)``
    as ``q -> 0+``, it is the finite choice; never NaN). At a POI at its bound (e.g.
    ``mu_hat = 0`` with the POI bounded below at 0) the envelope theorem holds with the
    bound active, and the gradient is exact. Yields are clipped to ``[clip_min, clip_max]``
    before the evaluation and the gradient is passed through unchanged (it is the
    one-sided derivative at a yield of 0). A fit that fails gives the kernel's fallback value
    (as the environment), a zero gradient for that row, and a :class:`~histgym.FitWarning`;
    :attr:`last_fit_ok` tells which rows converged.

    Args:
        workspace: dict, JSON text, path or ``pyhf.Workspace``.
        channel: channel of the controlled sample.
        sample: the controlled sample (its yields are the forward's input).
        metric: one of :data:`METRICS`, defaults to ``"z0"``.
        data: ``"asimov"`` (default) or ``"observed"``.
        mu_test: tested POI of ``qmu``, ``zmu`` and ``cls``, defaults to 5.0 (the
            environment's default; use 1.0 to test the nominal signal).
        clip_min, clip_max: yield range, defaults to 1e-12 and 1e12.
        mle_max_iter: Newton iterations per fit, defaults to 200.
        mle_tol: fit tolerance (estimated distance to minimum, -ln L units), defaults to
            1e-6; Newton converges quadratically, so values agree with tight pyhf fits to
            ~1e-8 (use 1e-10 for finite-difference checks).
        parallel: run the batch in numba threads; defaults to None (threads for batches of
            at least :data:`PARALLEL_MIN_BATCH` rows).

    Raises:
        UnknownName: unknown metric, channel or sample.
        ValueError: bad ``data``, ``mu_test``, clip range or tolerance.
        InvalidParameters: ``metric="cls", data="observed"`` where the background-only fit
            depends on the yields.

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
        sample: str,
        metric: str = "z0",
        data: str = "asimov",
        mu_test: float = 5.0,
        clip_min: float = 1e-12,
        clip_max: float = 1e12,
        mle_max_iter: int = 200,
        mle_tol: float = 1e-6,
        parallel: bool | None = None,
    ) -> None:
        super().__init__()
        if metric not in METRICS:
            msg = f"unknown metric {metric!r}; expected one of {list(METRICS)}."
            raise UnknownName(msg + did_you_mean(str(metric), METRICS))
        if parallel not in (None, True, False):
            raise ValueError(f"parallel must be None, True or False, got {parallel!r}")
        cls = metric == "cls"
        params = core.build_params(
            workspace, channel=channel, sample=sample, reward_metric=_ENV_METRIC[metric],
            mu_test=mu_test, clip_min=clip_min, clip_max=clip_max, mle_max_iter=mle_max_iter,
            mle_tol=mle_tol, data="asimov" if cls else data, return_gradient=True,
        )
        if cls:
            params = _background_asimov(params, data)
        self.metric = metric
        self.data = data
        self.channel = channel
        self.sample = sample
        self.mu_test = float(mu_test)
        self.parallel = parallel
        self._params = params
        ny, nf, nd, npar = params.sizes
        self._ny = ny
        self._row = params.new_state(1).S[0].copy()
        self._off_out = ny + nf + nd + 2 * npar
        self._off_grad = self._off_out + K.N_OUT
        self._q_grad = params.Q.copy()
        self._q_nograd = params.Q.copy()
        self._q_nograd[K.Q_HEAD + K.CI_GRAD] = 0
        self._clip = (float(clip_min), float(clip_max))
        self.last_fit_ok: npt.NDArray[np.bool_] = np.ones(0, dtype=bool)
        self.last_mu_hat: FloatArray = np.zeros(0)

    # ------------------------------------------------------------------ properties
    @property
    def n_bins(self) -> int:
        """Number of bins of the controlled sample."""
        return self._ny

    @property
    def nominal(self) -> torch.Tensor:
        """The sample's nominal yields in the workspace (float64 [n_bins], a new tensor)."""
        return torch.from_numpy(self._params.base_yields.copy())

    def extra_repr(self) -> str:
        return (f"channel={self.channel!r}, sample={self.sample!r}, metric={self.metric!r}, "
                f"data={self.data!r}, mu_test={self.mu_test}, n_bins={self._ny}")

    def workspace(self, yields: Any) -> dict[str, Any]:
        """The workspace with the sample's yields replaced (modifiers kept relative).

        Args:
            yields: float [n_bins] (tensor or array).

        Returns:
            A pyhf workspace dict; for ``data="asimov"`` its observations are unchanged
            (build the Asimov data set from it as the environment does).
        """
        if isinstance(yields, torch.Tensor):
            yields = yields.detach().cpu().double().numpy()
        y = core.check_yields(self._params, yields)
        return core.workspace_with_yields(self._params, y)

    # ------------------------------------------------------------------ evaluation
    def evaluate(self, yields: Any, *, gradient: bool = True) -> tuple[FloatArray, FloatArray]:
        """The metric and its gradient for each row of ``yields``, without autograd.

        Args:
            yields: float64 [B, n_bins] array (finite, >= 0).
            gradient: compute the gradient (else it is returned as zeros).

        Returns:
            ``(value [B], d value / d yields [B, n_bins])``, float64.
        """
        y = np.asarray(yields, dtype=np.float64)
        if y.ndim != 2 or y.shape[1] != self._ny:
            raise InvalidParameters(
                f"yields of {self.sample!r} have shape {y.shape}; expected (B, {self._ny})"
            )
        _check_values(y, self.sample)
        return self._evaluate(y, gradient)

    def _evaluate(self, y: FloatArray, gradient: bool) -> tuple[FloatArray, FloatArray]:
        b = y.shape[0]
        p = self._params
        S = np.empty((b, self._row.size))
        S[:] = self._row
        np.clip(y, self._clip[0], self._clip[1], out=S[:, : self._ny])
        mask = np.ones(b, dtype=np.bool_)
        par = self.parallel if self.parallel is not None else b >= PARALLEL_MIN_BATCH
        run = K.env_reset_batch if par else K.env_reset_batch_serial
        run(mask, S, p.P, self._q_grad if gradient else self._q_nograd, p.ibuf)
        out = S[:, self._off_out : self._off_out + K.N_OUT]
        value = out[:, K.O_VALUE].copy()
        grad = S[:, self._off_grad : self._off_grad + self._ny].copy()
        self.last_fit_ok = out[:, K.O_OK] == 1.0
        self.last_mu_hat = out[:, K.O_MUHAT].copy()
        if self.metric == "cls":
            # value = -sqrt(q_A); CLs = 2 Phi(-sqrt(q_A)); dCLs/dy = 2 phi(value) dvalue/dy
            dens = np.exp(-0.5 * value * value) * (2.0 / math.sqrt(2.0 * math.pi))
            grad *= dens[:, None]
            value = 2.0 * ndtr(value)
        if not self.last_fit_ok.all():
            rows = np.flatnonzero(~self.last_fit_ok)[:5].tolist()
            warnings.warn(
                f"Significance({self.metric!r}): a fit did not converge for rows {rows}; "
                "their value is the kernel's fallback and their gradient 0",
                FitWarning, stacklevel=3,
            )
        return value, grad

    def forward(self, yields: torch.Tensor) -> torch.Tensor:
        """Metric of ``yields`` (float [n_bins] -> scalar, [B, n_bins] -> [B])."""
        if not isinstance(yields, torch.Tensor):
            raise InvalidTensor(
                f"yields must be a torch.Tensor, got {type(yields).__name__}"
            )
        if yields.dtype not in _DTYPES:
            raise InvalidTensor(
                f"yields have dtype {yields.dtype}; expected torch.float32 or torch.float64"
            )
        if yields.dim() == 1:
            if yields.shape[0] != self._ny:
                raise InvalidParameters(
                    f"yields of {self.sample!r} have shape {tuple(yields.shape)}; "
                    f"expected ({self._ny},) or (B, {self._ny})"
                )
            return _MetricFunction.apply(yields.unsqueeze(0), self)[0]  # type: ignore[no-any-return]
        if yields.dim() != 2 or yields.shape[1] != self._ny:
            raise InvalidParameters(
                f"yields of {self.sample!r} have shape {tuple(yields.shape)}; "
                f"expected ({self._ny},) or (B, {self._ny})"
            )
        return _MetricFunction.apply(yields, self)  # type: ignore[no-any-return]


def _check_values(y: FloatArray, sample: str) -> None:
    good = np.isfinite(y).all(axis=1) & (y >= 0.0).all(axis=1)
    if not good.all():
        rows = np.flatnonzero(~good)[:5].tolist()
        raise InvalidParameters(
            f"yields of {sample!r} must be finite and >= 0; rows {rows} are not"
        )


class _MetricFunction(torch.autograd.Function):
    """Autograd function: yields [B, n_bins] -> metric [B], gradient from the kernel."""

    @staticmethod
    def forward(ctx: Any, yields: torch.Tensor, module: Significance) -> torch.Tensor:  # type: ignore[override]
        y = yields.detach().to(device="cpu", dtype=torch.float64).numpy()
        _check_values(y, module.sample)
        want = bool(ctx.needs_input_grad[0])
        value, grad = module._evaluate(y, want)
        if want:
            ctx.save_for_backward(torch.from_numpy(grad).to(dtype=yields.dtype,
                                                            device=yields.device))
        return torch.from_numpy(value).to(dtype=yields.dtype, device=yields.device)

    @staticmethod
    @once_differentiable
    def backward(ctx: Any, grad_output: torch.Tensor) -> tuple[torch.Tensor, None]:  # type: ignore[override]
        (g,) = ctx.saved_tensors
        return grad_output.unsqueeze(-1) * g, None


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
