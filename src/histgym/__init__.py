"""histgym: exact, fast HistFactory likelihoods (pyhf JSON) and Gymnasium environments on them."""

from __future__ import annotations

import json
from importlib import resources
from typing import Any

from .errors import (
    DegenerateModelWarning,
    FailedFit,
    FitWarning,
    HistgymError,
    InvalidData,
    InvalidOption,
    InvalidOptionType,
    InvalidParameters,
    ResetNeeded,
    UnknownName,
    WorkspaceError,
    WorkspaceTypeError,
)
from .fit import FitResult, fit, fixed_poi_fit
from .model import Model, from_pyhf

from ._kernels._jit import start_thread_pool  # noqa: E402

start_thread_pool()

from . import envs  # registers the Gymnasium ids; env classes load on first use  # noqa: E402

__version__ = "0.1.0"

_ENV_NAMES = ("HistFactoryEnv", "HistFactoryVectorEnv", "make_histfactory_env", "make_gaussian_bump_env")
_ENV_NAMES += ("AnalysisEnv", "AnalysisVectorEnv", "make_analysis_env")  # analysis design (events)


def __getattr__(name: str) -> Any:
    if name in _ENV_NAMES:
        return getattr(envs, name)
    raise AttributeError(f"module 'histgym' has no attribute {name!r}")


def example_workspace() -> dict[str, Any]:
    """The built-in example: the seed notebook's 8-bin Gaussian bump over a falling background.

    One channel ``"SR"`` with samples ``"signal"`` (normfactor ``mu``) and ``"background"``
    (normsys ``bkg_norm`` +-8%); observed data = nominal signal + background.
    """
    text = resources.files("histgym").joinpath("data/seed_notebook_gaussian_bump.json").read_text()
    return json.loads(text)


__all__ = [
    "AnalysisEnv",
    "AnalysisVectorEnv",
    "make_analysis_env",
    "HistFactoryEnv",
    "HistFactoryVectorEnv",
    "make_histfactory_env",
    "make_gaussian_bump_env",
    "DegenerateModelWarning",
    "FailedFit",
    "FitResult",
    "FitWarning",
    "HistgymError",
    "InvalidData",
    "InvalidOption",
    "InvalidOptionType",
    "InvalidParameters",
    "ResetNeeded",
    "Model",
    "UnknownName",
    "WorkspaceError",
    "WorkspaceTypeError",
    "example_workspace",
    "fit",
    "fixed_poi_fit",
    "from_pyhf",
]
