"""Environments layer: :class:`HistFactoryVectorEnv`, N design environments in one kernel call."""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from typing import Any

import gymnasium
import numpy as np
import numpy.typing as npt
from gymnasium import spaces
from gymnasium.utils import seeding
from gymnasium.vector import AutoresetMode, VectorEnv
from gymnasium.vector.utils import batch_space

from .._kernels import _jit
from .._kernels import env_step as K
from .._kernels import small as _small
from ..checks import check_int, check_seed
from ..errors import InvalidOption, InvalidParameters, ResetNeeded
from ..model import Model
from . import core

__all__ = ["HistFactoryVectorEnv", "ResetNeeded", "make_gaussian_bump_vector_env"]

FloatArray = npt.NDArray[np.float64]
BoolArray = npt.NDArray[np.bool_]

_MODES = {m.value.lower(): m for m in AutoresetMode} | {m.name.lower(): m for m in AutoresetMode}


def _autoreset_mode(value: Any) -> AutoresetMode:
    if isinstance(value, AutoresetMode):
        return value
    key = str(value).lower()
    if key not in _MODES:
        msg = (f"unknown autoreset_mode {value!r}; expected an AutoresetMode or one of "
               f"{[m.value for m in AutoresetMode]}")
        raise InvalidParameters(msg)
    return _MODES[key]


def _zero_like(arr: np.ndarray) -> Any:
    return None if arr.dtype == object else 0


def _masked(infos: dict[str, Any], mask: BoolArray) -> dict[str, Any]:
    """Gymnasium's ``_add_info`` layout of ``infos`` (full rows) for the rows in ``mask`` only."""
    out: dict[str, Any] = {}
    keep_all = bool(mask.all())
    for key, arr in infos.items():
        if not keep_all:
            arr = arr.copy()
            arr[~mask] = _zero_like(arr)
        out[key] = arr
        out["_" + key] = mask.copy()
    return out


class _Row:
    """One sub-environment seen through the single environment's attribute names (``call``)."""

    def __init__(self, venv: HistFactoryVectorEnv, i: int) -> None:
        object.__setattr__(self, "_venv", venv)
        object.__setattr__(self, "_i", i)

    @property
    def yields(self) -> FloatArray:
        return self._venv._st.yields[self._i].copy()

    @property
    def np_random(self) -> np.random.Generator:
        return self._venv._rngs[self._i]

    @property
    def np_random_seed(self) -> int | None:
        return self._venv._row_seeds[self._i]

    def current_data(self) -> FloatArray:
        return self._venv._st.data[self._i].copy()

    def current_model(self) -> Model:
        v = self._venv
        p = v._params
        return p.model.with_sample_yields(p.channel, p.sample, v._st.yields[self._i])

    def workspace(self) -> dict[str, Any]:
        return core.workspace_with_yields(self._venv._params, self._venv._st.yields[self._i])

    def render(self) -> Any:
        return self._venv._render_row(self._i)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._venv, name)


class HistFactoryVectorEnv(VectorEnv):
    """``num_envs`` copies of :class:`~histgym.envs.HistFactoryEnv` stepped in one kernel call.

    Same arguments as :class:`~histgym.envs.HistFactoryEnv` plus the ones below. The state of
    all copies is one struct-of-arrays block; a step (and a reset of any set of rows) runs the
    compiled kernel over the rows inside one compiled loop, with no Python loop over rows.
    Observations, rewards, terminations, truncations and infos equal those of
    ``gymnasium.vector.SyncVectorEnv`` over single environments with the same autoreset mode,
    seeds and actions, number for number.

    Args:
        workspace: a dict, JSON text, a path or a ``pyhf.Workspace``.
        num_envs: number of sub-environments (rows).
        autoreset_mode: ``AutoresetMode.NEXT_STEP`` (default: the step after an episode ended
            resets that row, its action ignored, reward 0), ``SAME_STEP`` (the ending step
            returns the first observation of the next episode; the last one is in
            ``infos["final_obs"]`` and its info in ``infos["final_info"]``) or ``DISABLED``
            (reset ended rows yourself with ``reset(options={"reset_mask": mask})``; stepping
            them raises :class:`ResetNeeded`). Also accepted as the mode's value or name.
        max_episode_steps: an extra time limit (``gymnasium.make_vec`` passes it): episodes
            are truncated after ``min(max_steps, max_episode_steps)`` steps, as a single
            environment under ``TimeLimit`` is. Defaults to None (``max_steps`` only).
        parallel: ``True`` runs the rows in numba threads, ``False`` in one thread; ``None``
            (default) chooses per call from the batch size and the threads that are free.
        render_mode: ``"ansi"`` or ``"rgb_array"``: :meth:`render` draws row 0.
        string_info: False leaves ``reward_metric`` and ``seed`` (the keys whose values are not
            numbers) out of the infos, as the single environment's ``string_info`` does; torchrl
            (``GymWrapper``, ``GymEnv``) needs that, since it stores infos as tensors.

    Seeding: ``reset(seed=s)`` seeds row ``i`` with ``s + i`` (as ``SyncVectorEnv``), a list
    seeds row by row. ``reset(options=...)`` accepts ``"reset_mask"`` (bool [num_envs]: reset
    only these rows; infos carry only those rows) and ``"yields"`` (float [n_bins] for every
    row, or [num_envs, n_bins] row by row).

    Infos hold the single environment's keys as arrays (``step``, ``reward_metric``,
    ``value``, ``fit_status``, ``fit_ok``, the metric, ``mu_hat``, ``twice_nll_free``,
    ``twice_nll_cond``, ``n_iter``, ``reward_grad`` on request, ``seed`` at resets) with
    Gymnasium's ``_key`` masks.
    """

    metadata = {
        "render_modes": ["ansi", "rgb_array"],
        "render_fps": 4,
        "autoreset_mode": AutoresetMode.NEXT_STEP,
    }

    def __init__(self, workspace: Any = None, *, num_envs: int = 1, channel: str, sample: str,
                 reward_metric: str = "nll", render_mode: str | None = None,
                 parallel: bool | None = None, autoreset_mode: Any = AutoresetMode.NEXT_STEP,
                 max_episode_steps: int | None = None, string_info: bool = True,
                 **kwargs: Any) -> None:
        check_int("num_envs", num_envs, low=1)
        if render_mode is not None and render_mode not in self.metadata["render_modes"]:
            msg = f"render_mode must be one of {self.metadata['render_modes']} or None"
            raise InvalidParameters(f"{msg}, got {render_mode!r}")
        if max_episode_steps is not None and not (
            isinstance(max_episode_steps, (int, np.integer)) and max_episode_steps > 0
        ):
            msg = f"max_episode_steps must be a positive integer or None, got {max_episode_steps!r}"
            raise InvalidParameters(msg)
        if workspace is None:
            workspace = kwargs.pop("workspace_json", None)
        kwargs.pop("workspace_json", None)
        if workspace is None:
            raise TypeError("HistFactoryVectorEnv needs a workspace (dict, JSON text, path)")
        self._init_args = dict(channel=channel, sample=sample, reward_metric=reward_metric,
                               **kwargs)
        self._started = False
        self._params = core.build_params(workspace, **self._init_args)
        p = self._params
        opts = p.options
        self.num_envs = int(num_envs)
        self.render_mode = render_mode
        self.channel = channel
        self.sample = sample
        self.reward_metric = reward_metric
        self.string_info = bool(string_info)
        self.max_steps = opts["max_steps"]
        self.max_episode_steps = None if max_episode_steps is None else int(max_episode_steps)
        self._horizon = min(self.max_steps, self.max_episode_steps or self.max_steps)
        self.autoreset_mode = _autoreset_mode(autoreset_mode)
        self.metadata = {**type(self).metadata, "autoreset_mode": self.autoreset_mode}
        self.single_observation_space = spaces.Box(
            low=0.0, high=opts["clip_max"], shape=(p.n_y,), dtype=np.float64
        )
        self.single_action_space = spaces.Box(-1.0, 1.0, shape=(p.n_y,), dtype=np.float32)
        self.observation_space = batch_space(self.single_observation_space, self.num_envs)
        self.action_space = batch_space(self.single_action_space, self.num_envs)
        self._st = p.new_state(self.num_envs)
        self._rngs = [seeding.np_random(None)[0] for _ in range(self.num_envs)]
        self._row_seeds: list[int | None] = [None] * self.num_envs
        self._done = np.zeros(self.num_envs, dtype=bool)  # ended at the previous step
        self._bad = np.zeros(self.num_envs, dtype=np.int64)
        self._all = np.ones(self.num_envs, dtype=bool)
        self._start0 = core.start_yields_batch(p, [np.random.default_rng(0)])
        self._ga = p.kernel_args
        self._tables = _small.tables(p)  # the small-model step path, or None
        self.parallel = parallel
        self._spec: Any = None

    # ------------------------------------------------------------------ attributes
    @property
    def spec(self) -> Any:
        """The ``EnvSpec`` set by ``gymnasium.make_vec``; ``max_episode_steps`` is filled in."""
        return self._spec

    @spec.setter
    def spec(self, value: Any) -> None:
        if value is not None and value.max_episode_steps is None:
            value = dataclasses.replace(value, max_episode_steps=self._horizon)
        self._spec = value

    @property
    def yields(self) -> FloatArray:
        """Current yields (float64 [num_envs, n_bins], a copy)."""
        return self._st.yields.copy()

    @property
    def params(self) -> core.EnvParams:
        """The compiled parameters shared by every row."""
        return self._params

    def _use_threads(self) -> bool:
        if self.parallel is not None:
            return bool(self.parallel)
        cost = 1 if self.reward_metric == "nll" else 8
        return _jit.threads_pay_off(self.num_envs * cost)

    # ------------------------------------------------------------------ kernels
    def _reset_rows(self, mask: BoolArray, yields: FloatArray | None = None) -> None:
        """Start new episodes in the rows of ``mask`` (from ``yields`` [k, n_y] if given)."""
        st, p = self._st, self._params
        rows = np.flatnonzero(mask)
        if yields is None:
            if p.options["init_noise"] > 0.0:
                yields = core.start_yields_batch(p, [self._rngs[i] for i in rows])
            else:  # no randomness: every row starts from the same (cached) yields
                yields = self._start0
        st.yields[rows] = yields
        st.step[rows] = 0
        if self._tables is not None:
            ti, tf = self._tables
            if self._use_threads():
                _small.reset_batch(mask, st.S, p.P, p.Q, ti, tf, _jit.thread_count())
            else:
                _small.reset_batch_serial(mask, st.S, p.P, p.Q, ti, tf)
        elif self._use_threads():
            K.env_reset_batch(mask, st.S, p.P, p.Q, p.ibuf, _jit.thread_count(), *self._ga)
        else:
            K.env_reset_batch_serial(mask, st.S, p.P, p.Q, p.ibuf, *self._ga)

    def _step_rows(self, mask: BoolArray, a: FloatArray) -> None:
        st, p = self._st, self._params
        if self._tables is not None:
            ti, tf = self._tables
            if self._use_threads():
                _small.step_batch(mask, a, st.S, p.P, p.Q, ti, tf, self._bad, _jit.thread_count())
            else:
                _small.step_batch_serial(mask, a, st.S, p.P, p.Q, ti, tf, self._bad)
        elif self._use_threads():
            K.env_step_batch(mask, a, st.S, p.P, p.Q, p.ibuf, self._bad, _jit.thread_count(),
                             *self._ga)
        else:
            K.env_step_batch_serial(mask, a, st.S, p.P, p.Q, p.ibuf, self._bad, *self._ga)
        st.step += mask  # (not st.step[mask] += 1: a fancy-index pass)

    # ------------------------------------------------------------------ gymnasium API
    def reset(self, *, seed: int | Sequence[int | None] | None = None,
              options: dict[str, Any] | None = None) -> tuple[FloatArray, dict[str, Any]]:
        """Reset the sub-environments (all, or those in ``options["reset_mask"]``).

        Args:
            seed: None, an int (row ``i`` gets ``seed + i``) or a list of ``num_envs`` ints /
                None.
            options: ``"reset_mask"`` (bool numpy array [num_envs] with at least one True),
                ``"yields"`` (float [n_bins] or [num_envs, n_bins]: start there instead of the
                nominal yields; finite, >= 0, clipped to the box). Other keys raise.

        Returns:
            (observations float64 [num_envs, n_bins], infos of the reset rows).
        """
        n = self.num_envs
        if seed is None:
            seeds: list[int | None] = [None] * n
        elif isinstance(seed, (list, tuple, np.ndarray)):
            seeds = [None if s is None else check_seed("seed", s) for s in seed]
            if len(seeds) != n:
                msg = f"got {len(seeds)} seeds for {n} environments"
                raise InvalidOption(msg, option="seed")
        else:
            s0 = check_seed("seed", seed)
            seeds = [s0 + i for i in range(n)]
        opts = dict(options or {})
        mask = self._all
        if "reset_mask" in opts:
            mask = opts.pop("reset_mask")
            if not isinstance(mask, np.ndarray) or mask.dtype != np.bool_ or mask.shape != (n,):
                desc = (f"{type(mask).__name__} {getattr(mask, 'dtype', '')} "
                        f"{getattr(mask, 'shape', '')}")
                msg = (f"options['reset_mask'] must be a numpy bool array of shape ({n},), "
                       f"got {desc}")
                raise InvalidParameters(msg)
            if not mask.any():
                raise InvalidParameters("options['reset_mask'] has no True entry")
        rows = np.flatnonzero(mask)
        y0 = None
        if "yields" in opts:
            y = np.asarray(opts.pop("yields"), dtype=np.float64)
            if y.ndim == 2 and y.shape[0] == n:
                y0 = np.stack([core.check_yields(self._params, y[i]) for i in rows])
            else:
                if y.shape != (self._params.n_y,):
                    msg = (f"options['yields'] has shape {y.shape}; expected "
                           f"({self._params.n_y},) or ({n}, {self._params.n_y})")
                    raise InvalidParameters(msg)
                y0 = np.repeat(core.check_yields(self._params, y)[None, :], rows.size, axis=0)
        if opts:
            msg = f"unknown reset options {sorted(opts)}; known: ['reset_mask', 'yields']"
            raise InvalidParameters(msg)
        for i in rows:
            s = seeds[i]
            if s is not None:
                self._rngs[i], self._row_seeds[i] = seeding.np_random(int(s))
        if isinstance(seed, (int, np.integer)) and mask is self._all:
            self._np_random, self._np_random_seed = seeding.np_random(int(seed))
            self.action_space.seed(int(seed))
        self._reset_rows(mask, y0)
        self._done[mask] = False
        self._started = True
        infos = self._infos()
        if self.string_info:
            infos["seed"] = self._seed_array(mask, seeds)
        return self._st.yields.copy(), _masked(infos, mask)

    def step(self, actions: Any) -> tuple[FloatArray, FloatArray, BoolArray, BoolArray,
                                          dict[str, Any]]:
        """Step every sub-environment according to ``autoreset_mode`` (see the class)."""
        if not self._started:
            raise ResetNeeded("cannot call step() before reset(): call reset() first")
        a = actions
        if not (type(a) is np.ndarray and a.dtype == np.float64 and a.flags.c_contiguous
                and a.flags.writeable and a.dtype.isnative):
            # one layout for the kernel; non-real dtypes and non-arrays are refused here
            a = np.ascontiguousarray(core._float_array(actions, "actions"))
        shape = (self.num_envs, self._params.n_y)
        if a.shape != shape:
            raise InvalidParameters(f"actions have shape {a.shape}; expected {shape}")
        if not np.isfinite(a).all():
            rows = np.flatnonzero(~np.isfinite(a).all(axis=1))[:5].tolist()
            raise InvalidParameters(f"actions have non-finite entries in rows {rows}")
        mode = self.autoreset_mode
        done = self._done
        if mode is AutoresetMode.DISABLED and done.any():
            rows = np.flatnonzero(done)[:5].tolist()
            msg = (f"sub-environments {rows} ended and were not reset (autoreset_mode DISABLED): "
                   "call reset(options={'reset_mask': mask}) first")
            raise ResetNeeded(msg)
        stepping = ~done if mode is AutoresetMode.NEXT_STEP else self._all
        self._step_rows(stepping, a)
        st = self._st
        # the outputs in one pass over the rows (a column of st.out touches a cache line per row)
        out = np.ascontiguousarray(st.out)
        rewards = out[:, K.O_REWARD].copy()
        truncations = stepping & (st.step >= self._horizon)
        terminations = np.zeros(self.num_envs, dtype=bool)
        ended = truncations | terminations
        if mode is AutoresetMode.NEXT_STEP:
            resetting = done
            if resetting.any():
                self._reset_rows(resetting)
                rewards[resetting] = 0.0
                out = None
            infos = self._flag(self._infos(out))
            if resetting.any() and self.string_info:
                infos["seed"] = self._seed_array(resetting, [None] * self.num_envs)
                infos["_seed"] = resetting.copy()
            self._done = ended
            return st.yields.copy(), rewards, terminations, truncations, infos
        if mode is AutoresetMode.SAME_STEP and ended.any():
            final = _masked(self._infos(out), ended)
            last = st.yields.copy()
            final_obs = np.full(self.num_envs, None, dtype=object)
            for i in np.flatnonzero(ended):
                final_obs[i] = last[i]
            self._reset_rows(ended)
            infos = self._flag(self._infos())
            if self.string_info:
                infos["seed"] = self._seed_array(ended, [None] * self.num_envs)
                infos["_seed"] = ended.copy()
            infos["final_obs"] = final_obs
            infos["_final_obs"] = ended.copy()
            infos["final_info"] = final
            infos["_final_info"] = ended.copy()
            return st.yields.copy(), rewards, terminations, truncations, infos
        self._done = ended if mode is AutoresetMode.DISABLED else self._done
        return st.yields.copy(), rewards, terminations, truncations, self._flag(self._infos(out))

    def _seed_array(self, mask: BoolArray, seeds: Sequence[int | None]) -> np.ndarray:
        """``seed`` info as Gymnasium batches it: int64 when the rows' seeds are ints."""
        rows = np.flatnonzero(mask)
        vals = [seeds[i] for i in rows]
        if vals and all(v is not None for v in vals):
            arr = np.zeros(self.num_envs, dtype=np.int64)
        else:
            arr = np.full(self.num_envs, None, dtype=object)
        arr[rows] = vals
        return arr

    def _flag(self, infos: dict[str, Any]) -> dict[str, Any]:
        """Add an all-rows ``_key`` mask to each key of ``infos``."""
        for key in list(infos):
            infos["_" + key] = np.ones(self.num_envs, dtype=bool)
        return infos

    def _infos(self, out: FloatArray | None = None) -> dict[str, Any]:
        """The single environment's info keys as arrays over all rows (no masks); ``out``: a
        contiguous copy of the current ``st.out`` if the caller has one."""
        st = self._st
        o = np.ascontiguousarray(st.out) if out is None else out
        n = self.num_envs
        metric = self.reward_metric
        infos: dict[str, Any] = {
            "step": st.step.copy(),
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
            infos["twice_nll_free"] = o[:, K.O_T_FREE].copy()
            infos["twice_nll_cond"] = o[:, K.O_T_COND].copy()
            infos["n_iter"] = o[:, K.O_NITER].astype(np.int64)
        if self._params.options["return_gradient"]:
            infos["reward_grad"] = st.grad.copy()
        if self.string_info:
            reward_metric = np.empty(n, dtype=object)
            reward_metric[:] = metric
            infos["reward_metric"] = reward_metric
        return infos

    # ------------------------------------------------------------------ sub-environments
    def _row(self, i: int) -> _Row:
        return _Row(self, i)

    def call(self, name: str, *args: Any, **kwargs: Any) -> tuple[Any, ...]:
        """Call method ``name`` (or read attribute ``name``) of every sub-environment.

        Each row answers with the single environment's names (``yields``, ``workspace()``,
        ``current_data()``, ``current_model()``, ``np_random``, ``render()``, and every
        attribute of this vector environment, which the rows share).
        """
        out = []
        for i in range(self.num_envs):
            attr = getattr(self._row(i), name)
            out.append(attr(*args, **kwargs) if callable(attr) else attr)
        return tuple(out)

    def get_attr(self, name: str) -> tuple[Any, ...]:
        """Attribute ``name`` of every sub-environment (see :meth:`call`)."""
        return self.call(name)

    def set_attr(self, name: str, values: Any) -> None:
        """Set attribute ``name`` of the sub-environments.

        ``np_random`` is per row (a list of generators, or one for every row). Every other
        attribute is shared by the rows, so ``values`` must be one value or ``num_envs``
        equal ones.
        """
        if not isinstance(values, (list, tuple)):
            values = [values] * self.num_envs
        if len(values) != self.num_envs:
            msg = (f"set_attr({name!r}) got {len(values)} values for {self.num_envs} "
                   "environments")
            raise InvalidParameters(msg)
        if name == "np_random":
            self._rngs = list(values)
            self._row_seeds = [-1] * self.num_envs
            return
        first = values[0]
        if any(v is not first and v != first for v in values[1:]):
            msg = (f"set_attr({name!r}): the rows of HistFactoryVectorEnv share this attribute; "
                   "pass one value or equal values")
            raise InvalidParameters(msg)
        setattr(self, name, first)

    def _render_row(self, i: int) -> Any:
        if self.render_mode is None:
            gymnasium.logger.warn("render() called without a render_mode; nothing to render")
            return None
        from . import render as _render

        p = self._params
        stack = _render.stacked_samples(self._row(i).current_model(), p.channel)
        data = self._st.data[i][p.model.channel_slice(p.channel)]
        step = int(self._st.step[i])
        if self.render_mode == "ansi":
            return _render.ansi(stack, p.sample, data, step)
        return _render.rgb_array(stack, p.sample, data, step)

    def render(self) -> Any:
        """Row 0 rendered as :meth:`HistFactoryEnv.render` would (``render_mode`` ansi/rgb)."""
        return self._render_row(0)

    # ------------------------------------------------------------------ pickling
    def __getstate__(self) -> dict[str, Any]:
        return {
            "spec_json": self._params.spec, "args": self._init_args, "num_envs": self.num_envs,
            "parallel": self.parallel, "render_mode": self.render_mode,
            "string_info": self.string_info,
            "autoreset_mode": self.autoreset_mode.value,
            "max_episode_steps": self.max_episode_steps,
            "st": self._st, "rngs": self._rngs, "row_seeds": self._row_seeds,
            "started": self._started,
            "done": self._done,
            "np_random": self._np_random, "np_random_seed": self._np_random_seed,
            "action_rng": self.action_space.np_random,
            "single_action_rng": self.single_action_space.np_random,
            "gym_spec": self._spec,
        }

    def __setstate__(self, d: dict[str, Any]) -> None:
        self.__init__(  # type: ignore[misc]
                      d["spec_json"], num_envs=d["num_envs"], parallel=d["parallel"],
                      render_mode=d["render_mode"], autoreset_mode=d["autoreset_mode"],
                      max_episode_steps=d["max_episode_steps"], string_info=d["string_info"],
                      **d["args"])
        st = d["st"]
        self._st = core.check_state(self._params, st.S, st.step, st.sizes, n=self.num_envs)
        self._started = d.get("started", True)
        self._rngs = d["rngs"]
        self._row_seeds = d["row_seeds"]
        self._done = d["done"]
        self._np_random = d["np_random"]
        self._np_random_seed = d["np_random_seed"]
        self.action_space._np_random = d["action_rng"]
        self.single_action_space._np_random = d["single_action_rng"]
        self._spec = d["gym_spec"]


def make_gaussian_bump_vector_env(num_envs: int = 1, **kwargs: Any) -> HistFactoryVectorEnv:
    """Vector version of :func:`histgym.envs.make_gaussian_bump_env`."""
    from .. import example_workspace

    opts: dict[str, Any] = dict(
        channel="SR", sample="signal", reward_metric="z0", data="asimov", budget="total"
    )
    opts.update(kwargs)
    return HistFactoryVectorEnv(example_workspace(), num_envs=num_envs, **opts)
