"""Environments layer: the functional core shared by the single and the vector environment.

:class:`EnvParams` holds everything fixed for the lifetime of an environment (the compiled
model, the packed description of the controlled sample, the option codes); the per-episode
state (yields, model buffer, data, warm-start optima) lives in struct-of-arrays form with the
batch axis first, created by :meth:`EnvParams.new_state`.  The step itself is the compiled
kernel in ``histgym._kernels.env_step``; this module only builds its arguments.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt

from .._kernels import env_step as K
from ..checks import check_bool, check_choice, check_float, check_int
from ..errors import InvalidOption, InvalidParameters, UnknownName, did_you_mean
from ..model import Model, from_pyhf
from ..workspace import load_workspace as _load_workspace

__all__ = [
    "EnvParams", "EnvState", "REWARD_METRICS", "ACTION_MODES", "build_params", "start_yields",
    "start_yields_batch",
]

FloatArray = npt.NDArray[np.float64]

REWARD_METRICS = ("nll", "q0", "z0", "qmu", "zmu")
ACTION_MODES = ("logmul", "add")
DATA_MODES = ("observed", "asimov")
REWARD_MODES = ("value", "delta")
BUDGETS = (None, "total")
_METRIC_CODE = {"nll": K.M_NLL, "q0": K.M_Q0, "z0": K.M_Z0, "qmu": K.M_QMU, "zmu": K.M_ZMU}


def _choice(kind: str, value: Any, choices: Sequence[Any]) -> None:
    check_choice(kind, value, choices)


def load_workspace(workspace: Any) -> dict[str, Any]:
    """The workspace as an independent JSON dict: :func:`histgym.workspace.load_workspace`
    (dict, JSON text or bytes, a path or a ``pyhf.Workspace``; ``WorkspaceError`` otherwise)."""
    return _load_workspace(workspace)


class EnvState:
    """Per-environment state, batch axis first (N environments), packed for the kernel.

    ``S`` (float64 [N, n_state]) holds, per row, the yields, the environment's own model
    buffer, its data, the fit optima, the step outputs and the gradient; the attributes below
    are views into it.

    Attributes:
        S: float64 [N, n_state] the packed state.
        yields: float64 [N, n_y] current yields of the controlled sample (events).
        fbuf: float64 [N, n_f] each environment's own model buffer.
        data: float64 [N, n_data] main bins + auxdata the metric is computed on.
        x: float64 [N, 2, n_params] optima of the free / conditional fits (warm starts).
        out: float64 [N, N_OUT] outputs of the last step (see ``_kernels.env_step``).
        grad: float64 [N, n_y] gradient of the reward value with respect to ``yields``.
        step: int64 [N] steps taken in the current episode.
    """

    def __init__(self, S: FloatArray, step: npt.NDArray[np.int64], sizes: tuple[int, ...]) -> None:
        self.S = S
        self.step = step
        self.sizes = sizes
        ny, nf, nd, npar = sizes
        n = S.shape[0]
        o = 0
        self.yields = S[:, o : o + ny]
        o += ny
        self.fbuf = S[:, o : o + nf]
        o += nf
        self.data = S[:, o : o + nd]
        o += nd
        self.x = S[:, o : o + 2 * npar].reshape(n, 2, npar)
        o += 2 * npar
        self.out = S[:, o : o + K.N_OUT]
        o += K.N_OUT
        self.grad = S[:, o : o + ny]

    def __getstate__(self) -> dict[str, Any]:
        return {"S": self.S, "step": self.step, "sizes": self.sizes}

    def __setstate__(self, d: dict[str, Any]) -> None:
        self.__init__(d["S"], d["step"], d["sizes"])  # type: ignore[misc]


@dataclass
class EnvParams:
    """Everything fixed for the lifetime of an environment (see :func:`build_params`).

    ``P`` (float64) and ``Q`` (int64) are the packed kernel parameters (see
    ``histgym._kernels.env_step``); ``ibuf`` the model's integer buffer.
    """

    spec: dict[str, Any]
    model: Model
    channel: str
    sample: str
    base_yields: FloatArray
    total: float
    P: FloatArray
    Q: npt.NDArray[np.int64]
    base_data: FloatArray
    options: dict[str, Any]

    @property
    def n_y(self) -> int:
        """Number of bins of the controlled sample."""
        return int(self.base_yields.size)

    @property
    def ibuf(self) -> npt.NDArray[np.int64]:
        """The model's integer buffer."""
        return self.model.ibuf

    @property
    def sizes(self) -> tuple[int, int, int, int]:
        """(n_y, n_f, n_data, n_params)."""
        m = self.model
        return (self.n_y, int(m.fbuf.size), int(m.n_data), int(m.n_params))

    def new_state(self, n: int) -> EnvState:
        """Fresh state for ``n`` environments at the nominal yields (not yet evaluated)."""
        ny, nf, nd, npar = self.sizes
        m = self.model
        row = np.concatenate(
            [self.base_yields, m.fbuf, self.base_data, np.tile(self.init, 2),
             np.zeros(K.N_OUT), np.zeros(ny)]
        )
        S = np.ascontiguousarray(np.repeat(row[None, :], n, axis=0))
        return EnvState(S, np.zeros(n, dtype=np.int64), self.sizes)

    @property
    def kernel_args(self) -> tuple[None, ...]:
        """Trailing argument of the step/reset kernels: ``(None,)`` when neither the reward
        gradient nor Asimov data are asked for (a kernel variant compiled without that code,
        see ``histgym._kernels.env_step``), else ``()``."""
        o = self.options
        return () if o["return_gradient"] or o["data"] == "asimov" else (None,)

    @property
    def init(self) -> FloatArray:
        """Initial parameter values (float64 [n_params])."""
        npar = self.model.n_params
        return self.P[K.N_CFG_F + K.PV_INIT * npar : K.N_CFG_F + (K.PV_INIT + 1) * npar]


def build_params(
    workspace: Any,
    *,
    channel: str,
    sample: str,
    reward_metric: str = "nll",
    mu_test: float = 5.0,
    max_steps: int = 128,
    action_scale: float = 0.05,
    action_mode: str = "logmul",
    init_noise: float = 0.0,
    clip_min: float = 1e-12,
    clip_max: float = 1e12,
    fixed_params: Sequence[float] | None = None,
    mle_max_iter: int = 200,
    mle_tol: float = 1e-6,
    mle_m: int = 10,
    data: str = "observed",
    reward_mode: str = "value",
    budget: str | None = None,
    return_gradient: bool = False,
) -> EnvParams:
    """Validate the options and compile everything an environment needs.

    Raises:
        UnknownName: unknown channel or sample (with a suggestion).
        ValueError: bad metric, action mode, data mode, reward mode, budget, scale, clip
            range, ``max_steps``, ``mu_test`` or tolerance.
        InvalidParameters: ``fixed_params`` of the wrong length or non-finite.
    """
    _choice("reward_metric", reward_metric, REWARD_METRICS)
    _choice("action_mode", action_mode, ACTION_MODES)
    _choice("data", data, DATA_MODES)
    _choice("reward_mode", reward_mode, REWARD_MODES)
    _choice("budget", budget, BUDGETS)
    max_steps = check_int("max_steps", max_steps, low=1)
    action_scale = check_float("action_scale", action_scale, low=0.0, low_open=True)
    init_noise = check_float("init_noise", init_noise, low=0.0)
    clip_min = check_float("clip_min", clip_min, low=0.0, low_open=True)
    clip_max = check_float("clip_max", clip_max, low=clip_min, low_open=True)
    mu_test = check_float("mu_test", mu_test, low=0.0 if reward_metric in ("qmu", "zmu") else None)
    mle_max_iter = check_int("mle_max_iter", mle_max_iter, low=1)
    mle_tol = check_float("mle_tol", mle_tol, low=0.0, low_open=True)
    check_int("mle_m", mle_m, low=1)
    return_gradient = check_bool("return_gradient", return_gradient)
    del mle_m  # accepted for compatibility with the reference (an L-BFGS memory size)

    spec = load_workspace(workspace)
    model = from_pyhf(spec)
    if channel not in model.channels:
        msg = f"unknown channel {channel!r}; the workspace has {model.channels}."
        raise UnknownName(msg + did_you_mean(channel, model.channels))
    names = model.samples(channel)
    if sample not in names:
        msg = f"unknown sample {sample!r} in channel {channel!r}; it has {names}."
        raise UnknownName(msg + did_you_mean(sample, names))
    profiled = reward_metric != "nll"
    poi = model.poi_index
    if profiled and poi is None:
        msg = f"reward_metric={reward_metric!r} needs a parameter of interest (the measurement has none)"
        raise InvalidOption(msg, option="reward_metric")
    if profiled and model.suggested_fixed()[poi]:
        msg = (
            f"reward_metric={reward_metric!r} profiles the POI {model.poi_name!r}, but the "
            "measurement fixes it; unfix it (histgym.infer and pyhf refuse a fixed POI too)"
        )
        raise InvalidOption(msg, option="reward_metric")

    ctl = model.sample_control(channel, sample)
    c = ctl.cells
    base = np.array(model.sample_yields(channel, sample), dtype=np.float64)
    if base.size == 0:
        raise InvalidOption(f"sample {sample!r} in channel {channel!r} has no bins", option="sample")
    # nominal yields are not clipped: a bin at exactly 0 stays 0 (see clip_yields)
    if np.any(base > clip_max) or np.any((base > 0) & (base < clip_min)):
        bad = np.flatnonzero((base > clip_max) | ((base > 0) & (base < clip_min)))[:5].tolist()
        msg = (
            f"the nominal yields of {sample!r} in {channel!r} lie outside [clip_min, clip_max] = "
            f"[{clip_min}, {clip_max}] in bins {bad}; widen the clip range"
        )
        raise InvalidOption(msg, option="clip_min" if base[bad[0]] < clip_min else "clip_max")
    if budget == "total" and not base.sum() > 0.0:
        msg = f"budget='total' needs a positive total yield of {sample!r} in {channel!r}"
        raise InvalidOption(msg, option="budget")
    ctl_i = np.concatenate(
        [
            np.array(
                [c.cells.size, c.add_entries.size, c.staterror_gauss.size,
                 model.channel_slice(channel).start],
                dtype=np.int64,
            ),
            c.cells, c.add_entries, c.add_pos, c.staterror_gauss, c.staterror_pos,
        ]
    ).astype(np.int64)
    ctl_f = np.concatenate(
        [c.up_abs, c.up_rel, c.dn_abs, c.dn_rel, c.staterror_other_nom,
         c.staterror_other_u2, c.staterror_rel, np.zeros(1)]
    ).astype(np.float64)

    init = model.suggested_init()
    bounds = model.suggested_bounds()
    lower = bounds[:, 0].copy()
    upper = bounds[:, 1].copy()
    if reward_metric in ("qmu", "zmu"):
        assert poi is not None  # checked above for every profiled metric
        lower[poi] = max(lower[poi], 0.0)  # qmu_tilde: the POI is bounded below at 0
    if fixed_params is None:
        p_nll = init.copy()
    else:
        p_nll = model.check_pars(fixed_params, name="fixed_params").copy()
    p_as = init.copy()
    if poi is not None:
        p_as[poi] = 1.0
    pvec = np.ascontiguousarray(np.stack([p_nll, lower, upper, init, p_as]))
    fixed = model.suggested_fixed()
    cond = fixed.copy()
    if poi is not None:
        cond[poi] = True
    fixed2 = np.ascontiguousarray(np.stack([fixed, cond]))

    base_data = model.observed_data()
    if data == "asimov":
        base_data = model.expected_data(p_as)  # auxdata part is what stays fixed

    cfg_i = np.zeros(K.N_CFG_I, dtype=np.int64)
    cfg_i[K.CI_METRIC] = _METRIC_CODE[reward_metric]
    cfg_i[K.CI_MODE] = ACTION_MODES.index(action_mode)
    cfg_i[K.CI_BUDGET] = 1 if budget == "total" else 0
    cfg_i[K.CI_ASIMOV] = 1 if data == "asimov" else 0
    cfg_i[K.CI_DELTA] = 1 if reward_mode == "delta" else 0
    cfg_i[K.CI_POI] = -1 if poi is None else int(poi)
    cfg_i[K.CI_MAXIT] = int(mle_max_iter)
    cfg_i[K.CI_GRAD] = 1 if return_gradient else 0
    if reward_metric in ("q0", "z0") and poi is not None:
        cfg_i[K.CI_COND_CONST] = int(
            K.cond_fit_is_constant(model.fbuf, model.ibuf, ctl_i, int(poi), cfg_i[K.CI_ASIMOV])
        )
    cfg_f = np.zeros(K.N_CFG_F)
    cfg_f[K.CF_SCALE] = float(action_scale)
    cfg_f[K.CF_CMIN] = float(clip_min)
    cfg_f[K.CF_CMAX] = float(clip_max)
    cfg_f[K.CF_MUTEST] = float(mu_test)
    cfg_f[K.CF_TOL] = float(mle_tol)
    cfg_f[K.CF_TOTAL] = float(base.sum())
    P = np.ascontiguousarray(np.concatenate([cfg_f, pvec.ravel(), ctl_f]), dtype=np.float64)
    Q = np.ascontiguousarray(
        np.concatenate(
            [
                np.array([base.size, model.fbuf.size, model.n_data, model.n_params, ctl_i.size]),
                cfg_i,
                ctl_i,
                fixed2.ravel().astype(np.int64),
            ]
        ),
        dtype=np.int64,
    )
    options = dict(
        reward_metric=reward_metric, mu_test=float(mu_test), max_steps=int(max_steps),
        action_scale=float(action_scale), action_mode=action_mode,
        init_noise=float(init_noise), clip_min=float(clip_min), clip_max=float(clip_max),
        fixed_params=None if fixed_params is None else [float(v) for v in fixed_params],
        mle_max_iter=int(mle_max_iter), mle_tol=float(mle_tol), data=data,
        reward_mode=reward_mode, budget=budget, return_gradient=bool(return_gradient),
    )
    return EnvParams(
        spec=spec, model=model, channel=channel, sample=sample, base_yields=base,
        total=float(base.sum()), P=P, Q=Q, base_data=np.ascontiguousarray(base_data),
        options=options,
    )


def check_state(
    params: EnvParams, S: Any, step: Any, sizes: Any, *, n: int
) -> EnvState:
    """An :class:`EnvState` over ``S`` after checking it fits ``params`` (e.g. when unpickling):
    the kernels index ``S`` by the sizes in ``params``, so a foreign state must not reach them.

    Raises:
        InvalidParameters: wrong dtype, shape or sizes.
    """
    S = np.asarray(S)
    step = np.asarray(step)
    n_state = params.new_state(1).S.shape[1]
    if (
        S.dtype != np.float64 or S.shape != (n, n_state) or not S.flags.c_contiguous
        or step.dtype != np.int64 or step.shape != (n,) or tuple(sizes) != params.sizes
    ):  # fmt: skip
        msg = (
            f"environment state does not fit this environment: S {S.dtype} {S.shape}, step "
            f"{step.dtype} {step.shape}, sizes {tuple(sizes)}; expected float64 ({n}, {n_state}),"
            f" int64 ({n},), {params.sizes}"
        )
        raise InvalidParameters(msg)
    return EnvState(S, step, params.sizes)


def start_yields(params: EnvParams, rng: np.random.Generator) -> FloatArray:
    """Initial yields of an episode: nominal, times ``exp(N(0, init_noise))`` per bin."""
    return start_yields_batch(params, [rng])[0]


def start_yields_batch(params: EnvParams, rngs: Sequence[np.random.Generator]) -> FloatArray:
    """Initial yields of ``len(rngs)`` episodes (float64 [k, n_y]); row j draws from ``rngs[j]``.

    The same arithmetic as :func:`start_yields` row by row (the single environment calls this
    with one generator), so a vector environment's rows equal single environments exactly.
    Only with ``init_noise > 0`` is there one ``normal`` draw per row; the rest is vectorised.
    """
    k = len(rngs)
    opts = params.options
    base = np.repeat(params.base_yields[None, :], k, axis=0)
    noise = opts["init_noise"]
    if noise > 0.0 and k:
        eps = np.stack([r.normal(0.0, noise, size=params.n_y) for r in rngs])
        base = base * np.exp(eps)
    base = clip_yields(params, base)  # an empty nominal bin stays empty
    if opts["budget"] == "total":
        base = clip_yields(params, base * (params.total / base.sum(axis=1, keepdims=True)))
    return base


def clip_yields(params: EnvParams, yields: FloatArray) -> FloatArray:
    """Clip yields to ``[clip_min, clip_max]``, except that a yield of exactly 0 stays 0.

    An empty bin of the nominal sample stays empty under ``logmul`` updates: it contributes
    nothing to the likelihood when its data are 0 too (pyhf's convention), whereas clipping
    it to ``clip_min`` would put a signal into a bin without background.
    """
    lo, hi = params.options["clip_min"], params.options["clip_max"]
    return np.where(yields == 0.0, 0.0, np.clip(yields, lo, hi))


def check_yields(params: EnvParams, yields: Any) -> FloatArray:
    """Validate user-given yields (float [n_y], finite, >= 0) and clip them to the box."""
    y = _float_array(yields, "yields")
    if y.shape != (params.n_y,):
        raise InvalidParameters(f"yields have shape {y.shape}; expected ({params.n_y},)")
    if not np.all(np.isfinite(y)) or np.any(y < 0):
        bad = np.flatnonzero(~np.isfinite(y) | (y < 0))[:5].tolist()
        raise InvalidParameters(f"yields must be finite and >= 0; bad bins {bad}")
    return clip_yields(params, y)


def _float_array(x: Any, name: str) -> FloatArray:
    """``x`` as a C-contiguous float64 array: any real dtype or byte order (float16,
    longdouble, big-endian) is converted here, at the boundary; strings, objects and complex
    numbers raise :class:`InvalidParameters`."""
    try:
        a = np.asarray(x)
        if a.dtype.kind not in "fiu":
            raise TypeError(a.dtype)
        return np.ascontiguousarray(a, dtype=np.float64)
    except (TypeError, ValueError) as err:
        msg = f"{name} must be an array of real numbers, got {type(x).__name__}"
        raise InvalidParameters(msg + (f" of dtype {err}" if isinstance(err, TypeError) else "")) from None


def check_action(action: Any, n_y: int) -> FloatArray:
    """Return ``action`` as float64 [n_y], or raise ``ValueError`` (shape, NaN/inf)."""
    a = _float_array(action, "action")
    if a.shape != (n_y,):
        raise InvalidParameters(f"action has shape {a.shape}; expected ({n_y},)")
    if not np.all(np.isfinite(a)):
        bad = np.flatnonzero(~np.isfinite(a))[:5].tolist()
        raise InvalidParameters(f"action has non-finite entries at {bad}")
    return np.ascontiguousarray(a)


def workspace_with_yields(params: EnvParams, yields: FloatArray) -> dict[str, Any]:
    """The workspace with the controlled sample's yields replaced (modifiers kept relative).

    histosys ``hi_data``/``lo_data`` keep their ratios to the nominal, staterror and shapesys
    absolute uncertainties are rescaled with the yields; others are unchanged.
    """
    spec = json.loads(json.dumps(params.spec))
    y = np.asarray(yields, dtype=np.float64)
    for ch in spec["channels"]:
        if ch["name"] != params.channel:
            continue
        for s in ch["samples"]:
            if s["name"] != params.sample:
                continue
            old = np.asarray(s["data"], dtype=np.float64)
            ratio = np.divide(y, old, out=np.ones_like(y), where=old != 0)
            for mod in s.get("modifiers", []):
                if mod["type"] == "histosys":
                    for key in ("hi_data", "lo_data"):
                        v = np.asarray(mod["data"][key], dtype=np.float64)
                        shift = v - old
                        new_shift = np.where(old != 0, shift * ratio, shift)
                        mod["data"][key] = (y + new_shift).tolist()
                elif mod["type"] in ("staterror", "shapesys"):
                    v = np.asarray(mod["data"], dtype=np.float64)
                    mod["data"] = np.where(old != 0, v * ratio, v).tolist()
            s["data"] = y.tolist()
    return spec

