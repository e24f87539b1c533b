"""Environments layer: :class:`HistFactoryEnv`, one HistFactory design environment."""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Sequence
from typing import Any, SupportsFloat

import gymnasium
import numpy as np
import numpy.typing as npt
from gymnasium import spaces

from .._kernels import env_step as K
from .._kernels import small as _small
from ..checks import check_choice, check_seed
from ..errors import InvalidOption, InvalidOptionType, InvalidParameters, ResetNeeded
from ..model import Model
from . import core

__all__ = ["HistFactoryEnv", "make_histfactory_env", "make_gaussian_bump_env"]

FloatArray = npt.NDArray[np.float64]


class HistFactoryEnv(gymnasium.Env[FloatArray, npt.NDArray[np.float32]]):
    """Reshape one sample of a HistFactory workspace to optimise a likelihood figure of merit.

    ## Description
    The same surface as ``nextstat.gym.HistFactoryEnv``: the agent proposes per-bin updates to
    one sample's nominal yields (e.g. the signal histogram) of a pyhf JSON workspace and is
    rewarded with a statistical figure of merit computed by histgym's compiled likelihood.
    Modifiers on the controlled sample keep their relative size (histosys ratios, staterror and
    shapesys relative uncertainties); :meth:`workspace` exports the current state.

    ## Observation Space
    ``Box(0, clip_max, (n_bins,), float64)``: the current yields (events) of the controlled
    sample in the channel's bins, each in ``[clip_min, clip_max]`` or exactly 0: a bin whose
    nominal yield is 0 is not clipped and stays empty under ``logmul`` updates (the lower bound
    0 also keeps zero-filled placeholders, e.g. torchrl's final observations, in the space).

    ## Action Space
    ``Box(-1, 1, (n_bins,), float32)``. ``action_mode="logmul"``: ``y <- clip(y * exp(scale * a))``;
    ``"add"``: ``y <- clip(y + scale * a)``; with ``budget="total"`` the yields are then
    rescaled to their initial total (and clipped again). Actions outside [-1, 1] are applied as
    given (as the reference does); non-finite actions or a wrong shape raise ``ValueError``.

    ## Rewards
    | ``reward_metric`` | reward value |
    |---|---|
    | ``"nll"`` | ``-NLL(fixed_params)`` (no fit) |
    | ``"q0"`` | discovery ``q0`` (pyhf's ``q0``, pyhf's bounds) |
    | ``"z0"`` | ``sqrt(q0)`` |
    | ``"qmu"`` | ``-qmu_tilde(mu_test)`` (POI bounded below at 0) |
    | ``"zmu"`` | ``-sqrt(qmu_tilde(mu_test))`` |

    ``reward_mode="value"`` returns the value, ``"delta"`` its change since the previous step.
    Profiled metrics run two bounded Newton fits per step, warm-started from the previous
    optima. A fit that fails is reported in ``info["fit_status"]`` (``info["fit_ok"]`` False)
    and the last good value is used: rewards are never NaN.

    ## Starting State
    The workspace's nominal yields, times ``exp(N(0, init_noise))`` per bin when
    ``init_noise > 0`` (drawn from ``self.np_random``).

    ## Episode End
    Never terminated; truncated after ``max_steps`` steps.

    ## Info
    ``step``, ``reward_metric``, the metric under its name (``nll``/``q0``/``z0``/``qmu``/``zmu``),
    ``value``, ``mu_hat``, ``twice_nll_free``, ``twice_nll_cond``, ``fit_status``, ``fit_ok``,
    ``n_iter``; ``reward_grad`` (float64 [n_bins], gradient of the reward value with respect to
    the yields, envelope theorem at the fitted optima) when ``return_gradient=True``.

    ## Arguments
    | argument | default | meaning |
    |---|---|---|
    | ``workspace`` | | dict, JSON text, path or ``pyhf.Workspace`` |
    | ``channel``, ``sample`` | | the controlled sample |
    | ``reward_metric`` | ``"nll"`` | ``nll``, ``q0``, ``z0``, ``qmu``, ``zmu`` |
    | ``mu_test`` | 5.0 | tested POI value of ``qmu``/``zmu`` |
    | ``max_steps`` | 128 | episode length |
    | ``action_scale`` | 0.05 | step size |
    | ``action_mode`` | ``"logmul"`` | ``logmul`` or ``add`` |
    | ``init_noise`` | 0.0 | log-normal noise on the starting yields |
    | ``clip_min``, ``clip_max`` | 1e-12, 1e12 | yield range |
    | ``fixed_params`` | None | parameters of the ``nll`` metric (default: suggested init) |
    | ``mle_max_iter``, ``mle_tol`` | 200, 1e-6 | Newton iterations, EDM tolerance (-ln L units) |
    | ``data`` | ``"observed"`` | or ``"asimov"``: expected data of the current yields at mu=1 |
    | ``reward_mode`` | ``"value"`` | or ``"delta"`` |
    | ``budget`` | None | or ``"total"``: keep the sample's total yield fixed |
    | ``return_gradient`` | False | put ``reward_grad`` in ``info`` |
    | ``render_mode`` | None | ``"ansi"`` or ``"rgb_array"`` (needs matplotlib) |
    | ``string_info`` | True | False: no ``reward_metric``/``seed`` in infos (torchrl) |

    ## Vectorized environment
    ``histgym.envs.HistFactoryVectorEnv`` steps N copies in one compiled parallel loop
    (``gymnasium.make_vec("histgym/HistFactory-v0", num_envs=N,
    vectorization_mode="vector_entry_point", ...)``).

    ## Version History
    * v0: initial version.
    """

    metadata = {"render_modes": ["ansi", "rgb_array"], "render_fps": 4}

    def __init__(
        self,
        workspace: Any = None,
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
        render_mode: str | None = None,
        workspace_json: Any = None,
        string_info: bool = True,
    ) -> None:
        if workspace is None:
            workspace = workspace_json
        if workspace is None:
            msg = "HistFactoryEnv needs a workspace (dict, JSON text, path, pyhf.Workspace)"
            raise InvalidOptionType(msg, option="workspace")
        check_choice("render_mode", render_mode, [None, *self.metadata["render_modes"]])
        self._init_kwargs: dict[str, Any] = dict(
            channel=channel, sample=sample, reward_metric=reward_metric, mu_test=mu_test,
            max_steps=max_steps, action_scale=action_scale, action_mode=action_mode,
            init_noise=init_noise, clip_min=clip_min, clip_max=clip_max,
            fixed_params=fixed_params, mle_max_iter=mle_max_iter, mle_tol=mle_tol,
            mle_m=mle_m, data=data, reward_mode=reward_mode, budget=budget,
            return_gradient=return_gradient,
        )
        self._params = core.build_params(workspace, **self._init_kwargs)
        self.string_info = bool(string_info)
        self.render_mode = render_mode
        p = self._params
        self.channel = channel
        self.sample = sample
        self.reward_metric = reward_metric
        self.max_steps = int(max_steps)
        self.action_mode = action_mode
        self.budget = budget
        self.return_gradient = bool(return_gradient)
        self.observation_space = spaces.Box(
            low=0.0, high=p.options["clip_max"], shape=(p.n_y,), dtype=np.float64
        )
        self.action_space = spaces.Box(low=-1.0, high=1.0, shape=(p.n_y,), dtype=np.float32)
        self._shape = (p.n_y,)
        self._bind(p.new_state(1))
        self._started = False
        self._reset_core(p.base_yields)

    # ------------------------------------------------------------------ properties
    @property
    def spec(self) -> Any:
        """The ``EnvSpec`` set by ``gymnasium.make`` (``max_episode_steps`` default: max_steps)."""
        return self.__dict__.get("_spec")

    @spec.setter
    def spec(self, value: Any) -> None:
        if value is not None and value.max_episode_steps is None:
            value = dataclasses.replace(value, max_episode_steps=self.max_steps)
        self.__dict__["_spec"] = value

    @property
    def model(self) -> Model:
        """The compiled model at the workspace's nominal yields (not the current state)."""
        return self._params.model

    @property
    def yields(self) -> FloatArray:
        """Current yields of the controlled sample (float64 [n_bins], a copy)."""
        return self._st.yields[0].copy()

    def current_model(self) -> Model:
        """A :class:`~histgym.Model` with the current yields (for fits and inference)."""
        return self._params.model.with_sample_yields(self.channel, self.sample, self._st.yields[0])

    def current_data(self) -> FloatArray:
        """The data (main bins + auxdata, float64 [n_data]) the metric is computed on."""
        return self._st.data[0].copy()

    def workspace(self) -> dict[str, Any]:
        """The current state as a pyhf workspace dict (modifiers rescaled as the model does)."""
        return core.workspace_with_yields(self._params, self._st.yields[0])

    # ------------------------------------------------------------------ gymnasium API
    def _bind(self, st: core.EnvState) -> None:
        """Adopt ``st`` as the state (row 0) and cache the kernel arguments (views into it)."""
        self._st = st
        self._y = st.yields[0]
        self._S = st.S[0]
        self._P = self._params.P
        self._Q = self._params.Q
        self._ibuf = self._params.ibuf
        self._out = st.out[0]
        self._grad = st.grad[0]
        self._grad_on = bool(self._params.options["return_gradient"])
        # the vector environment's serial kernels over one row: one set of kernels to compile
        self._S2 = st.S
        self._one = np.ones(1, dtype=bool)
        self._bad = np.zeros(1, dtype=np.int64)
        self._ga = self._params.kernel_args
        self._tables = _small.tables(self._params)  # the small-model path, or None
        self._t = int(st.step[0])

    def _reset_core(self, y0: FloatArray) -> None:
        st = self._st
        st.yields[0] = y0
        st.step[0] = 0
        self._t = 0
        if self._tables is not None:
            _small.reset_batch_serial(self._one, self._S2, self._P, self._Q, *self._tables)
        else:
            K.env_reset_batch_serial(self._one, self._S2, self._P, self._Q, self._ibuf, *self._ga)

    def reset(
        self, *, seed: int | None = None, options: dict[str, Any] | None = None
    ) -> tuple[FloatArray, dict[str, Any]]:
        """Start an episode.

        Args:
            seed: seeds ``self.np_random`` (starting noise) and the action space.
            options: ``{"yields": array [n_bins]}`` starts from these yields instead of the
                nominal ones (finite, >= 0; clipped to ``[clip_min, clip_max]``); other keys
                raise ``ValueError``.
        """
        seed = check_seed("seed", seed)
        if options is not None and not isinstance(options, dict):
            raise InvalidOptionType(f"options must be a dict or None, got {type(options).__name__}",
                                    option="options")
        super().reset(seed=seed)
        if seed is not None:
            self.action_space.seed(seed)
        opts = dict(options or {})
        if "yields" in opts:
            y0 = core.check_yields(self._params, opts.pop("yields"))
        else:
            y0 = core.start_yields(self._params, self.np_random)
        if opts:
            msg = f"unknown reset options {sorted(map(str, opts))}; known: ['yields']"
            raise InvalidOption(msg, option="options")
        self._reset_core(y0)
        self._started = True
        info = self._info()
        del info["value_reward"]
        if self.string_info:
            info["seed"] = seed
        return self._st.yields[0].copy(), info

    def step(
        self, action: Any
    ) -> tuple[FloatArray, SupportsFloat, bool, bool, dict[str, Any]]:
        """Apply ``action`` (float [n_bins]); return ``(obs, reward, terminated, truncated, info)``.

        Raises:
            InvalidParameters: the action has the wrong shape, a non-real dtype or non-finite
                entries (a ``ValueError``).
            ResetNeeded: called before :meth:`reset` or after the episode was truncated
                (a ``RuntimeError``, as Gymnasium's ``OrderEnforcing`` raises).
        """
        if not self._started or self._t >= self.max_steps:
            raise ResetNeeded(self._order_message())
        a = action
        if not (type(a) is np.ndarray and a.dtype == np.float64 and a.flags.c_contiguous
                and a.flags.writeable and a.dtype.isnative):
            # one array type reaches the kernel (no compile per dtype, layout or byte order);
            # float16, longdouble, byte-swapped, lists, non-real dtypes are checked here
            a = core.check_action(action, self._shape[0])
        if a.shape != self._shape:
            raise InvalidParameters(f"action has shape {a.shape}; expected {self._shape}")
        if self._tables is not None:
            _small.step_batch_serial(self._one, a[None], self._S2, self._P, self._Q,
                                     *self._tables, self._bad)
        else:
            K.env_step_batch_serial(self._one, a[None], self._S2, self._P, self._Q, self._ibuf,
                                    self._bad, *self._ga)
        if self._bad[0]:
            bad = np.flatnonzero(~np.isfinite(a))[:5].tolist()
            raise InvalidParameters(f"action has non-finite entries at {bad}")
        self._t += 1
        info = self._info()
        return self._y.copy(), info.pop("value_reward"), False, self._t >= self.max_steps, info

    def _order_message(self) -> str:
        if not self._started:
            return "cannot call step() before reset(): call env.reset() first"
        return (
            f"the episode was truncated after max_steps={self.max_steps} steps; call "
            "env.reset() before stepping again"
        )

    def _info(self) -> dict[str, Any]:
        o = self._out.tolist()
        metric = self.reward_metric
        info: dict[str, Any] = {
            "step": self._t,
            "value": o[K.O_VALUE],
            "fit_status": int(o[K.O_STATUS]),
            "fit_ok": o[K.O_OK] == 1.0,
        }
        raw = o[K.O_METRIC]
        if metric == "nll":
            info["nll"] = raw
        else:
            info["q0" if metric in ("q0", "z0") else "qmu"] = raw
            if metric in ("z0", "zmu"):
                info[metric] = math.sqrt(raw) if raw == raw else raw
            info["mu_hat"] = o[K.O_MUHAT]
            info["twice_nll_free"] = o[K.O_T_FREE]
            info["twice_nll_cond"] = o[K.O_T_COND]
            info["n_iter"] = int(o[K.O_NITER])
        if self._grad_on:
            info["reward_grad"] = self._grad.copy()
        if self.string_info:
            info["reward_metric"] = metric
        info["value_reward"] = o[K.O_REWARD]
        return info

    def render(self) -> Any:
        """``"ansi"``: a text table; ``"rgb_array"``: uint8 [H, W, 3] stacked-sample histogram."""
        if self.render_mode is None:
            gymnasium.logger.warn("render() called without a render_mode; nothing to render")
            return None
        from . import render as _render

        stack = _render.stacked_samples(self.current_model(), self.channel)
        data = self._st.data[0][self._params.model.channel_slice(self.channel)]
        if self.render_mode == "ansi":
            return _render.ansi(stack, self.sample, data, self._t)
        return _render.rgb_array(stack, self.sample, data, self._t)

    # ------------------------------------------------------------------ pickling
    def __getstate__(self) -> dict[str, Any]:
        st = self._st
        st.step[0] = self._t
        return {
            "spec": self._params.spec,
            "kwargs": self._init_kwargs,
            "render_mode": self.render_mode,
            "string_info": self.string_info,
            "state": (st.S.copy(), st.step.copy(), st.sizes),
            "np_random": self._np_random,
            "np_random_seed": getattr(self, "_np_random_seed", None),
            "action_space_rng": self.action_space.np_random,
            "started": self._started,
        }

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__init__(state["spec"], render_mode=state["render_mode"],  # type: ignore[misc]
                      string_info=state.get("string_info", True),
                      **state["kwargs"])
        self._bind(core.check_state(self._params, *state["state"], n=1))
        self._np_random = state["np_random"]
        self._np_random_seed = state["np_random_seed"]
        self.action_space._np_random = state["action_space_rng"]
        self._started = state["started"]


def make_histfactory_env(
    workspace: Any,
    *,
    channel: str,
    sample: str,
    reward_metric: str = "nll",
    **kwargs: Any,
) -> HistFactoryEnv:
    """Build a :class:`HistFactoryEnv` (``nextstat.gym.make_histfactory_env``'s signature).

    Args:
        workspace: a dict, JSON text, a path or a ``pyhf.Workspace``.
        channel: the channel of the controlled sample.
        sample: the controlled sample.
        reward_metric: ``"nll"``, ``"q0"``, ``"z0"``, ``"qmu"`` or ``"zmu"``, defaults to ``"nll"``.
        **kwargs: the other arguments of :class:`HistFactoryEnv`.

    Example:
        >>> import histgym
        >>> from histgym.envs import make_histfactory_env
        >>> env = make_histfactory_env(histgym.example_workspace(), channel="SR",
        ...                            sample="signal", reward_metric="z0")
        >>> obs, info = env.reset(seed=0)
        >>> round(info["z0"], 3)  # sqrt(histgym.infer.q0(model)) on the observed data
        1.883
    """
    return HistFactoryEnv(
        workspace, channel=channel, sample=sample, reward_metric=reward_metric, **kwargs
    )


def make_gaussian_bump_env(**kwargs: Any) -> HistFactoryEnv:
    """The built-in example (seed notebook's 8-bin Gaussian bump), controlling ``"signal"``.

    Defaults to the well-posed task ``reward_metric="z0", data="asimov", budget="total"``;
    every argument of :class:`HistFactoryEnv` can be overridden.
    """
    from .. import example_workspace

    opts: dict[str, Any] = dict(
        channel="SR", sample="signal", reward_metric="z0", data="asimov", budget="total"
    )
    opts.update(kwargs)
    return HistFactoryEnv(example_workspace(), **opts)
