"""Environments layer: :class:`HistFactoryVectorEnv`, N design environments in one kernel call."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import gymnasium
import numpy as np
import numpy.typing as npt
from gymnasium import spaces
from gymnasium.utils import seeding
from gymnasium.vector import AutoresetMode, VectorEnv
from gymnasium.vector.utils import batch_space

from .._kernels import env_step as K
from ..checks import check_int, check_seed
from ..errors import InvalidOption, InvalidParameters, ResetNeeded
from . import core

__all__ = ["HistFactoryVectorEnv", "make_gaussian_bump_vector_env"]

FloatArray = npt.NDArray[np.float64]


class HistFactoryVectorEnv(VectorEnv):
    """``num_envs`` copies of :class:`~histgym.envs.HistFactoryEnv` stepped in one kernel call.

    Same arguments as :class:`~histgym.envs.HistFactoryEnv` plus ``num_envs`` and
    ``parallel``. The state of all copies is one struct-of-arrays block; a step runs the
    compiled step kernel over the rows inside one compiled loop (no Python loop over rows).

    Sub-environment ``i`` reset with ``seed=s`` behaves exactly as a single environment reset
    with ``seed=s + i``. Autoreset mode is ``NEXT_STEP``: the step after a truncation resets
    that row (its action is ignored, reward 0). ``infos`` holds arrays of the per-row info
    values (``value``, ``fit_status``, ``fit_ok``, the metric, ``mu_hat``, ``reward_grad``
    on request) with Gymnasium's ``_key`` masks. ``parallel=True`` runs the rows in numba
    threads (``prange``); the default (serial) is faster for small batches or busy machines.
    """

    metadata = {"render_modes": [], "autoreset_mode": AutoresetMode.NEXT_STEP}

    def __init__(self, workspace: Any = None, *, num_envs: int = 1, channel: str, sample: str,
                 reward_metric: str = "nll", render_mode: str | None = None,
                 parallel: bool = False, **kwargs: Any) -> None:
        check_int("num_envs", num_envs, low=1)
        if render_mode is not None:
            msg = "HistFactoryVectorEnv does not render; use HistFactoryEnv"
            raise InvalidOption(msg, option="render_mode")
        kwargs.pop("workspace_json", None)
        self._init_args = dict(channel=channel, sample=sample, reward_metric=reward_metric,
                               **kwargs)
        self._params = core.build_params(workspace, **self._init_args)
        p = self._params
        self.num_envs = int(num_envs)
        self.render_mode = None
        self.reward_metric = reward_metric
        self.max_steps = p.options["max_steps"]
        opts = p.options
        self.single_observation_space = spaces.Box(
            low=0.0, high=opts["clip_max"], shape=(p.n_y,), dtype=np.float64
        )
        self.single_action_space = spaces.Box(-1.0, 1.0, shape=(p.n_y,), dtype=np.float32)
        self.observation_space = batch_space(self.single_observation_space, self.num_envs)
        self.action_space = batch_space(self.single_action_space, self.num_envs)
        self._st = p.new_state(self.num_envs)
        self._rngs = [seeding.np_random(None)[0] for _ in range(self.num_envs)]
        self._autoreset = np.zeros(self.num_envs, dtype=bool)
        self._started = False
        self._bad = np.zeros(self.num_envs, dtype=np.int64)
        self._all = np.ones(self.num_envs, dtype=bool)
        # numba threads pay off only for large batches on idle cores; opt in explicitly
        self.parallel = bool(parallel)
        self._step_batch = K.env_step_batch if self.parallel else K.env_step_batch_serial
        self._reset_batch = K.env_reset_batch if self.parallel else K.env_reset_batch_serial

    @property
    def yields(self) -> FloatArray:
        """Current yields (float64 [num_envs, n_bins], a copy)."""
        return self._st.yields.copy()

    def _reset_rows(self, mask: npt.NDArray[np.bool_]) -> None:
        st = self._st
        for i in np.flatnonzero(mask):
            st.yields[i] = core.start_yields(self._params, self._rngs[i])
        st.step[mask] = 0
        p = self._params
        self._reset_batch(mask, st.S, p.P, p.Q, p.ibuf)

    def reset(self, *, seed: int | Sequence[int | None] | None = None,
              options: dict[str, Any] | None = None) -> tuple[FloatArray, dict[str, Any]]:
        """Reset every sub-environment; ``seed`` is an int (row i gets ``seed + i``) or a list."""
        if options:
            raise InvalidOption(f"unknown reset options {sorted(map(str, options))}", option="options")
        if seed is not None:
            if isinstance(seed, (list, tuple, np.ndarray)):
                seeds: list[int | None] = [check_seed("seed", s) for s in seed]
            else:
                s0 = check_seed("seed", seed)
                seeds = [s0 + i for i in range(self.num_envs)]
            if len(seeds) != self.num_envs:
                msg = f"got {len(seeds)} seeds for {self.num_envs} environments"
                raise InvalidOption(msg, option="seed")
            for i, s in enumerate(seeds):
                if s is not None:
                    self._rngs[i] = seeding.np_random(int(s))[0]
            self.action_space.seed(seeds[0])
        self._reset_rows(self._all)
        self._autoreset[:] = False
        self._started = True
        return self._st.yields.copy(), self._infos()

    def step(self, actions: Any) -> tuple[FloatArray, FloatArray, npt.NDArray[np.bool_],
                                          npt.NDArray[np.bool_], dict[str, Any]]:
        """Step every sub-environment (rows truncated at the previous step are reset)."""
        if not self._started:
            raise ResetNeeded("cannot call step() before reset(): call reset() first")
        a = core._float_array(actions, "actions")
        shape = (self.num_envs, self._params.n_y)
        if a.shape != shape:
            raise InvalidParameters(f"actions have shape {a.shape}; expected {shape}")
        if not np.isfinite(a).all():
            rows = np.flatnonzero(~np.isfinite(a).all(axis=1))[:5].tolist()
            raise InvalidParameters(f"actions have non-finite entries in rows {rows}")
        st, p = self._st, self._params
        resetting = self._autoreset.copy()
        stepping = ~resetting
        if resetting.any():
            self._reset_rows(resetting)
        self._step_batch(stepping, a, st.S, p.P, p.Q, p.ibuf, self._bad)
        st.step[stepping] += 1
        rewards = st.out[:, K.O_REWARD].copy()
        rewards[resetting] = 0.0
        truncations = stepping & (st.step >= self.max_steps)
        terminations = np.zeros(self.num_envs, dtype=bool)
        self._autoreset = truncations | terminations
        return st.yields.copy(), rewards, terminations, truncations, self._infos()

    def _infos(self) -> dict[str, Any]:
        o = self._st.out
        metric = self.reward_metric
        infos: dict[str, Any] = {
            "step": self._st.step.copy(),
            "value": o[:, K.O_VALUE].copy(),
            "fit_status": o[:, K.O_STATUS].astype(np.int64),
            "fit_ok": o[:, K.O_OK] == 1.0,
        }
        raw = o[:, K.O_METRIC].copy()
        if metric == "nll":
            infos["nll"] = raw
        else:
            infos["q0" if metric in ("q0", "z0") else "qmu"] = raw
            if metric in ("z0", "zmu"):
                infos[metric] = np.sqrt(raw)
            infos["mu_hat"] = o[:, K.O_MUHAT].copy()
        if self._params.options["return_gradient"]:
            infos["reward_grad"] = self._st.grad.copy()
        for key in list(infos):
            infos["_" + key] = np.ones(self.num_envs, dtype=bool)
        return infos

    def __getstate__(self) -> dict[str, Any]:
        return {"spec": self._params.spec, "args": self._init_args, "num_envs": self.num_envs,
                "parallel": self.parallel,
                "st": self._st, "rngs": self._rngs, "autoreset": self._autoreset,
                "started": self._started}

    def __setstate__(self, d: dict[str, Any]) -> None:
        self.__init__(d["spec"], num_envs=d["num_envs"], parallel=d["parallel"], **d["args"])  # type: ignore[misc]
        st = d["st"]
        self._st = core.check_state(self._params, st.S, st.step, st.sizes, n=self.num_envs)
        self._rngs = d["rngs"]
        self._autoreset = d["autoreset"]
        self._started = d.get("started", True)


def make_gaussian_bump_vector_env(num_envs: int = 1, **kwargs: Any) -> HistFactoryVectorEnv:
    """Vector version of :func:`histgym.envs.make_gaussian_bump_env`."""
    from .. import example_workspace

    opts: dict[str, Any] = dict(
        channel="SR", sample="signal", reward_metric="z0", data="asimov", budget="total"
    )
    opts.update(kwargs)
    return HistFactoryVectorEnv(example_workspace(), num_envs=num_envs, **opts)


del gymnasium
