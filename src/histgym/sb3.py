"""Training layer: Stable-Baselines3 ``VecEnv`` over :class:`~histgym.envs.HistFactoryVectorEnv`.

``HistgymVecEnv`` is what ``DummyVecEnv`` over N single environments is to SB3 (same-step
autoreset, ``infos[i]["terminal_observation"]``, ``infos[i]["TimeLimit.truncated"]``,
float32 rewards, ``reset()`` returning observations only, seeds and options used at the next
reset), but all rows are stepped and reset in one compiled call. With the same seeds and
actions it returns the same numbers as SB3's ``make_vec_env`` over histgym's single
environment, every reward metric, action mode and extension included.

Example:
    >>> import histgym.sb3
    >>> venv = histgym.sb3.make_vec_env("histgym/GaussianBump-v0", n_envs=4, seed=0,
    ...                                 env_kwargs={"max_steps": 16})
    >>> venv.reset().shape
    (4, 8)

Needs the ``train`` extra (``pip install "histgym[train]"``).
"""

from __future__ import annotations

import gc
import os
import time
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
import numpy.typing as npt

from .errors import MissingExtra

try:
    from stable_baselines3.common.monitor import Monitor
    from stable_baselines3.common.vec_env import VecEnv, VecMonitor
except ImportError as err:  # pragma: no cover - exercised only without the extra
    raise MissingExtra(
        'histgym.sb3 needs stable-baselines3: pip install "histgym[train]"'
    ) from err

from .envs.vector import HistFactoryVectorEnv
from .errors import InvalidParameters, UnknownName, did_you_mean

__all__ = ["HistgymVecEnv", "make_vec_env", "ENV_IDS"]

#: The Gymnasium ids ``make_vec_env`` accepts (``"histgym:"`` module prefixes are stripped).
ENV_IDS = ("histgym/HistFactory-v0", "histgym/GaussianBump-v0")


class HistgymVecEnv(VecEnv):
    """An SB3 ``VecEnv`` whose sub-environments are the rows of a ``HistFactoryVectorEnv``.

    Args:
        venv: the vector environment (any autoreset mode; it is switched to ``DISABLED``
            and the adapter resets ended rows itself, as ``DummyVecEnv`` does).
        monitor: add ``infos[i]["episode"] = {"r", "l", "t"}`` at the end of each episode, as
            SB3's ``Monitor`` wrapper does (``env_is_wrapped(Monitor)`` is then True). Defaults
            to True (what ``make_vec_env`` gives). Turn it off under ``VecMonitor``.

    ``get_attr`` / ``env_method`` answer per row with the single environment's names
    (``yields``, ``workspace()``, ``current_data()``, ``np_random``...); ``set_attr`` sets an
    attribute shared by all rows (``np_random`` per row).
    """

    def __init__(self, venv: HistFactoryVectorEnv, *, monitor: bool = True) -> None:
        from gymnasium.vector import AutoresetMode

        if not isinstance(venv, HistFactoryVectorEnv):
            msg = f"HistgymVecEnv wraps a HistFactoryVectorEnv, got {type(venv).__name__}"
            raise TypeError(msg)
        venv.autoreset_mode = AutoresetMode.DISABLED
        venv.metadata = {**venv.metadata, "autoreset_mode": AutoresetMode.DISABLED}
        self.venv = venv
        self.monitor = bool(monitor)
        super().__init__(venv.num_envs, venv.single_observation_space,
                         venv.single_action_space)
        n = self.num_envs
        self._actions: npt.NDArray[Any] | None = None
        self._ep_return = np.zeros(n, dtype=np.float64)
        self._ep_len = np.zeros(n, dtype=np.int64)
        self._t_start = time.time()
        self._all = np.ones(n, dtype=bool)

    # ------------------------------------------------------------------ per-row infos
    @staticmethod
    def _rows(infos: dict[str, Any], n: int) -> list[dict[str, Any]]:
        """Per-row dicts (Python scalars, as the single environment's info) from batched infos."""
        keys = [k for k in infos if not k.startswith("_") and k not in ("final_obs", "final_info")]
        cols = []
        for k in keys:
            arr = infos[k]
            cols.append(list(arr) if arr.ndim > 1 else arr.tolist())
        mask = [infos["_" + k] for k in keys]
        if all(m.all() for m in mask):
            return [dict(zip(keys, row)) for row in zip(*cols)]
        out: list[dict[str, Any]] = [{} for _ in range(n)]
        for k, c, m in zip(keys, cols, mask):
            for i in np.flatnonzero(m):
                out[i][k] = c[i]
        return out

    # ------------------------------------------------------------------ VecEnv API
    def reset(self) -> npt.NDArray[np.float64]:
        """Reset every row with the seeds (``seed()``) and options (``set_options()``) given."""
        seeds = list(self._seeds)
        opts = [o for o in self._options]
        options: dict[str, Any] | None = None
        if any(opts):
            if all(o == opts[0] for o in opts):
                options = dict(opts[0])
            elif all(set(o) == {"yields"} for o in opts):
                options = {"yields": np.stack([np.asarray(o["yields"], float) for o in opts])}
            else:
                raise InvalidParameters(
                    "per-row reset options must be equal, or all {'yields': ...}"
                )
        obs, infos = self.venv.reset(seed=seeds if any(s is not None for s in seeds) else None,
                                     options=options)
        self.reset_infos = self._rows(infos, self.num_envs)
        self._ep_return[:] = 0.0
        self._ep_len[:] = 0
        self._reset_seeds()
        self._reset_options()
        return obs

    def step_async(self, actions: npt.NDArray[Any]) -> None:
        """Store the actions (float [n_envs, n_bins]) for :meth:`step_wait`."""
        self._actions = actions

    def step_wait(self) -> tuple[npt.NDArray[np.float64], npt.NDArray[np.float32],
                                 npt.NDArray[np.bool_], list[dict[str, Any]]]:
        """Step every row; ended rows are reset in the same call (``terminal_observation``).

        Python's automatic garbage collection is paused during the call: the one info dict per
        row that SB3 requires would otherwise trigger collections whose cost grows with every
        live object of the process (measured: up to 2x the step's CPU at N=4096).
        """
        if not gc.isenabled():
            return self._step_wait()
        gc.disable()
        try:
            return self._step_wait()
        finally:
            gc.enable()

    def _step_wait(self) -> tuple[npt.NDArray[np.float64], npt.NDArray[np.float32],
                                  npt.NDArray[np.bool_], list[dict[str, Any]]]:
        obs, rew, term, trunc, infos = self.venv.step(self._actions)
        dones = term | trunc
        rows = self._rows(infos, self.num_envs)
        tl = (trunc & ~term).tolist()
        for i, info in enumerate(rows):
            info["TimeLimit.truncated"] = tl[i]
        if self.monitor:
            self._ep_return += rew
            self._ep_len += 1
        if dones.any():
            idx = np.flatnonzero(dones)
            if self.monitor:
                now = round(time.time() - self._t_start, 6)
                for i in idx:
                    rows[i]["episode"] = {"r": round(float(self._ep_return[i]), 6),
                                          "l": int(self._ep_len[i]), "t": now}
                self._ep_return[idx] = 0.0
                self._ep_len[idx] = 0
            for i in idx:
                rows[i]["terminal_observation"] = obs[i].copy()
            obs, rinfos = self.venv.reset(options={"reset_mask": dones})
            rr = self._rows(rinfos, self.num_envs)
            for i in idx:
                self.reset_infos[i] = rr[i]
        return obs, rew.astype(np.float32), dones, rows

    def close(self) -> None:
        """Close the vector environment."""
        self.venv.close()

    def get_images(self) -> Sequence[np.ndarray | None]:
        """RGB frames of every row (``render_mode="rgb_array"``)."""
        if self.render_mode != "rgb_array":
            return [None] * self.num_envs
        return list(self.venv.call("render"))

    def _indices(self, indices: Any) -> list[int]:
        return list(self._get_indices(indices))

    def get_attr(self, attr_name: str, indices: Any = None) -> list[Any]:
        """Attribute ``attr_name`` of the rows in ``indices`` (all by default)."""
        if attr_name == "render_mode":
            return [self.venv.render_mode for _ in self._indices(indices)]
        vals = self.venv.get_attr(attr_name)
        return [vals[i] for i in self._indices(indices)]

    def set_attr(self, attr_name: str, value: Any, indices: Any = None) -> None:
        """Set ``attr_name``: shared by all rows, so ``indices`` must cover every row."""
        idx = self._indices(indices)
        if attr_name == "np_random":
            rngs = list(self.venv._rngs)
            for i in idx:
                rngs[i] = value
            self.venv.set_attr("np_random", rngs)
            return
        if sorted(idx) != list(range(self.num_envs)):
            msg = (f"set_attr({attr_name!r}, indices={indices!r}): the rows share their "
                   "attributes; set it for all rows")
            raise InvalidParameters(msg)
        self.venv.set_attr(attr_name, value)

    def env_method(self, method_name: str, *method_args: Any, indices: Any = None,
                   **method_kwargs: Any) -> list[Any]:
        """Call ``method_name`` of the rows in ``indices`` (see ``HistFactoryVectorEnv.call``)."""
        return [getattr(self.venv._row(i), method_name)(*method_args, **method_kwargs)
                for i in self._indices(indices)]

    def env_is_wrapped(self, wrapper_class: type, indices: Any = None) -> list[bool]:
        """Rows are wrapped by nothing but the ``Monitor`` bookkeeping (when ``monitor``)."""
        wrapped = self.monitor and issubclass(Monitor, wrapper_class)
        return [wrapped for _ in self._indices(indices)]

    def seed(self, seed: int | None = None) -> Sequence[int | None]:
        """Seeds for the next reset (row ``i`` gets ``seed + i``) and the action space."""
        seeds = super().seed(seed)
        if seed is not None:
            self.venv.action_space.seed(int(seed))
        return seeds


def _env_id(env_id: str) -> str:
    name = env_id.split(":", 1)[1] if ":" in env_id else env_id
    if name not in ENV_IDS:
        raise UnknownName(f"unknown histgym env id {env_id!r}; known: {list(ENV_IDS)}."
                          + did_you_mean(name, ENV_IDS))
    return name


def make_vec_env(
    env_id: Any = "histgym/GaussianBump-v0",
    n_envs: int = 1,
    seed: int | None = None,
    start_index: int = 0,
    monitor_dir: str | None = None,
    wrapper_class: Callable[..., Any] | None = None,
    env_kwargs: dict[str, Any] | None = None,
    vec_env_cls: type | None = None,
    vec_env_kwargs: dict[str, Any] | None = None,
    monitor_kwargs: dict[str, Any] | None = None,
    wrapper_kwargs: dict[str, Any] | None = None,
) -> VecEnv:
    """SB3's ``make_vec_env`` for histgym: ``n_envs`` rows of one compiled vector environment.

    The signature is SB3's (``stable_baselines3.common.env_util.make_vec_env``), so
    ``PPO("MlpPolicy", histgym.sb3.make_vec_env("histgym/GaussianBump-v0", n_envs=64))``
    trains as on ``make_vec_env`` over single environments, with the same numbers, only faster.

    Args:
        env_id: ``"histgym/GaussianBump-v0"`` (default), ``"histgym/HistFactory-v0"`` (give
            ``workspace``, ``channel``, ``sample`` in ``env_kwargs``; a ``"histgym:"`` prefix
            is accepted), or a workspace (dict, JSON text, path, ``pyhf.Workspace``), in which
            case ``env_kwargs`` are :func:`histgym.envs.make_histfactory_env`'s arguments.
        n_envs: number of rows, defaults to 1.
        seed: row ``i`` is reset with ``seed + i`` at the first reset; the action space is
            seeded with ``seed``. Defaults to None (random).
        start_index: accepted for compatibility (rows are not separate processes).
        monitor_dir: write the episode statistics to ``monitor_dir/monitor.csv`` (through
            ``VecMonitor``, the format of SB3's ``Monitor`` files). Defaults to None.
        wrapper_class: per-environment Gymnasium wrappers cannot wrap a row; must be None
            unless ``vec_env_cls`` is given.
        env_kwargs: arguments of the environment (``reward_metric``, ``max_steps``, ...).
        vec_env_cls: None (default) for :class:`HistgymVecEnv`; SB3's ``DummyVecEnv`` or
            ``SubprocVecEnv`` build SB3's own vector environment over single environments
            (what ``stable_baselines3``'s ``make_vec_env`` would do).
        vec_env_kwargs: for :class:`HistgymVecEnv`, ``monitor`` and the vector environment's
            ``parallel``; otherwise passed to ``vec_env_cls``.
        monitor_kwargs: passed to ``VecMonitor`` when ``monitor_dir`` is set.
        wrapper_kwargs: passed to ``wrapper_class`` (with ``vec_env_cls`` only).

    Returns:
        A :class:`HistgymVecEnv` (wrapped in ``VecMonitor`` when ``monitor_dir`` is given).
    """
    env_kwargs = dict(env_kwargs or {})
    vec_env_kwargs = dict(vec_env_kwargs or {})
    if isinstance(env_id, str) and not env_id.lstrip().startswith("{") and (
        "/" in env_id and not os.path.exists(env_id) and not env_id.endswith(".json")
    ):
        name = _env_id(env_id)
    else:
        name = "histgym/HistFactory-v0"
        env_kwargs = {"workspace": env_id, **env_kwargs}
    if vec_env_cls is not None and vec_env_cls is not HistgymVecEnv:
        import histgym.envs  # noqa: F401  (registers the ids)
        from stable_baselines3.common.env_util import make_vec_env as sb3_make_vec_env

        return sb3_make_vec_env(name, n_envs=n_envs, seed=seed, start_index=start_index,
                                monitor_dir=monitor_dir, wrapper_class=wrapper_class,
                                env_kwargs=env_kwargs, vec_env_cls=vec_env_cls,
                                vec_env_kwargs=vec_env_kwargs, monitor_kwargs=monitor_kwargs,
                                wrapper_kwargs=wrapper_kwargs)
    if wrapper_class is not None:
        raise InvalidParameters(
            "wrapper_class wraps single environments; histgym.sb3.make_vec_env steps rows of "
            "one vector environment (use VecEnv wrappers, or vec_env_cls=DummyVecEnv)"
        )
    monitor = bool(vec_env_kwargs.pop("monitor", True))
    env_kwargs.setdefault("render_mode", "rgb_array")  # as SB3's make_vec_env
    if name == "histgym/GaussianBump-v0":
        from .envs.vector import make_gaussian_bump_vector_env

        venv = make_gaussian_bump_vector_env(num_envs=n_envs, **vec_env_kwargs, **env_kwargs)
    else:
        venv = HistFactoryVectorEnv(num_envs=n_envs, **vec_env_kwargs, **env_kwargs)
    if seed is not None:
        venv.action_space.seed(int(seed))
    out: VecEnv = HistgymVecEnv(venv, monitor=monitor and monitor_dir is None)
    out.seed(seed)
    if monitor_dir is not None:
        os.makedirs(monitor_dir, exist_ok=True)
        out = VecMonitor(out, filename=os.path.join(monitor_dir, "monitor.csv"),
                         **(monitor_kwargs or {}))
    return out
