"""Optional dependencies: import one, or raise a one-line error naming the extra to install."""

from __future__ import annotations

import importlib
from types import ModuleType

from .errors import MissingExtra

__all__ = ["require"]


def require(module: str, extra: str, what: str) -> ModuleType:
    """Import ``module``; if it is missing raise :class:`~histgym.errors.MissingExtra`.

    Args:
        module: the module to import (e.g. ``"cma"``, ``"matplotlib.pyplot"``).
        extra: the histgym extra that installs it (e.g. ``"plot"``).
        what: the feature that needs it, for the message (e.g. ``"histgym.plot"``).

    >>> require("json", "none", "this doctest").__name__
    'json'
    >>> require("no_such_module_xyz", "plot", "a figure")
    Traceback (most recent call last):
    ...
    histgym.errors.MissingExtra: a figure needs no_such_module_xyz: pip install "histgym[plot]"
    """
    try:
        return importlib.import_module(module)
    except ImportError as err:
        root = module.split(".")[0]
        raise MissingExtra(f'{what} needs {root}: pip install "histgym[{extra}]"') from err
