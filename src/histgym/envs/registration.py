"""Environments layer: Gymnasium ids of histgym (imports gymnasium only, not the envs)."""

from __future__ import annotations

from gymnasium.envs.registration import register, registry

__all__ = ["register_envs", "ENV_IDS"]

ENV_IDS = ("histgym/HistFactory-v0", "histgym/GaussianBump-v0", "histgym/AnalysisDesign-v0")


def register_envs() -> None:
    """Register ``histgym/HistFactory-v0`` and ``histgym/GaussianBump-v0`` (idempotent).

    ``HistFactory-v0`` needs ``workspace=..., channel=..., sample=...``; ``GaussianBump-v0`` is
    the built-in 8-bin example (defaults: ``reward_metric="z0", data="asimov",
    budget="total"``). Episodes truncate themselves after ``max_steps``, so no TimeLimit is set.
    """
    if "histgym/HistFactory-v0" not in registry:
        register(
            id="histgym/HistFactory-v0",
            entry_point="histgym.envs.single:HistFactoryEnv",
            vector_entry_point="histgym.envs.vector:HistFactoryVectorEnv",
            disable_env_checker=False,
        )
    if "histgym/GaussianBump-v0" not in registry:
        register(
            id="histgym/GaussianBump-v0",
            entry_point="histgym.envs.single:make_gaussian_bump_env",
            vector_entry_point="histgym.envs.vector:make_gaussian_bump_vector_env",
        )
    if "histgym/AnalysisDesign-v0" not in registry:
        # the built-in toy search on simulated events (cuts and binning; see envs/analysis.py)
        register(
            id="histgym/AnalysisDesign-v0",
            entry_point="histgym.envs.analysis:make_analysis_design_env",
            vector_entry_point="histgym.envs.analysis:make_analysis_design_vector_env",
        )
