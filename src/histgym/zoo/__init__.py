"""rl-zoo3 hyperparameters for histgym's Gymnasium ids (top layer; plain data, no imports of SB3).

rl-zoo3 reads hyperparameters from its own ``hyperparams/<algo>.yml`` or from ``--conf-file``,
which may name a Python module holding a ``hyperparams`` dict keyed by environment id. One
module per algorithm lives here, with ``histgym train``'s defaults (task, algorithm settings,
VecNormalize, number of environments and steps)::

    python -m rl_zoo3.train --algo ppo --env histgym/GaussianBump-v0 --gym-packages histgym \\
        --conf-file histgym.zoo.ppo

``histgym/GaussianBump-v0`` gets ``histgym train``'s default task as ``env_kwargs``;
``histgym/HistFactory-v0`` needs ``--env-kwargs workspace:... channel:... sample:...``.
"""

from __future__ import annotations

import copy
from typing import Any

__all__ = ["zoo_hyperparams"]


def zoo_hyperparams(algo: str) -> dict[str, dict[str, Any]]:
    """rl-zoo3's ``hyperparams`` dict for ``algo``: env id -> settings.

    Built from :data:`histgym.train.DEFAULT_HYPERPARAMS`, :data:`~histgym.train.DEFAULT_NORMALIZE`,
    :data:`~histgym.train.DEFAULT_TASK` and :data:`~histgym.train.DEFAULT_TIMESTEPS`, so that
    ``rl_zoo3.train`` and ``histgym train`` train the same way.
    """
    from ..train import (
        DEFAULT_HYPERPARAMS,
        DEFAULT_N_ENVS,
        DEFAULT_NORMALIZE,
        DEFAULT_TASK,
        DEFAULT_TIMESTEPS,
    )

    hp = copy.deepcopy(DEFAULT_HYPERPARAMS[algo])
    normalize: Any = dict(DEFAULT_NORMALIZE[algo] or {}) or False
    base = dict(n_envs=DEFAULT_N_ENVS, n_timesteps=DEFAULT_TIMESTEPS,
                policy=hp.pop("policy", "MlpPolicy"),
                normalize=normalize, **hp)
    return {
        "histgym/GaussianBump-v0": dict(base, env_kwargs=dict(DEFAULT_TASK)),
        "histgym/HistFactory-v0": dict(base),
    }
