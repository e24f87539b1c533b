"""``nextstat.gym``'s import path: ``from histgym.gym import make_histfactory_env``.

Code written for ``nextstat.gym`` runs unchanged after replacing ``nextstat`` by ``histgym``.
"""

from __future__ import annotations

from .envs.single import HistFactoryEnv, make_gaussian_bump_env, make_histfactory_env
from .envs.vector import HistFactoryVectorEnv

__all__ = ["HistFactoryEnv", "HistFactoryVectorEnv", "make_gaussian_bump_env", "make_histfactory_env"]
