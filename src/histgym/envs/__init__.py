"""Environments layer: Gymnasium environments over HistFactory workspaces.

Importing this package registers the Gymnasium ids (``histgym/HistFactory-v0``,
``histgym/GaussianBump-v0``); the environment classes load on first access.
"""

from __future__ import annotations

from typing import Any

from .registration import ENV_IDS, register_envs

register_envs()

__all__ = [
    "AnalysisEnv",
    "AnalysisVectorEnv",
    "make_analysis_env",
    "ENV_IDS",
    "HistFactoryEnv",
    "HistFactoryVectorEnv",
    "make_gaussian_bump_env",
    "make_histfactory_env",
    "register_envs",
]

_LAZY = {
    "AnalysisEnv": "analysis",
    "AnalysisVectorEnv": "analysis",
    "make_analysis_env": "analysis",
    "HistFactoryEnv": "single",
    "make_histfactory_env": "single",
    "make_gaussian_bump_env": "single",
    "HistFactoryVectorEnv": "vector",
}


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        import importlib

        mod = importlib.import_module(f".{_LAZY[name]}", __name__)
        return getattr(mod, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(__all__)
