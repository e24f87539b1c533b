"""A missing optional dependency gives one ``histgym.errors.MissingExtra`` whose one-line
message names the extra to install, whichever feature needs it."""

from __future__ import annotations

import importlib
import re
import sys
from typing import Any, Callable

import numpy as np
import pytest

from histgym.errors import HistgymError, MissingExtra


def _agents_cmaes() -> Any:
    from histgym.agents import cmaes_analysis

    return cmaes_analysis(None)


def _agents_open_loop() -> Any:
    from histgym.agents import optimise_open_loop

    return optimise_open_loop(None)


def _plot() -> Any:
    from histgym import plot

    return plot._plt()


def _scan_plot() -> Any:
    from histgym.scan import plot

    return plot._plt()


def _render() -> Any:
    from histgym.envs.render import rgb_array

    return rgb_array({"s": np.ones(3)}, "s", np.ones(3), 0)


def _parquet() -> Any:
    from histgym.events.inputs import read_columns

    return read_columns("signal", "events.parquet", ["x"])


def _root() -> Any:
    from histgym.events.inputs import read_columns

    return read_columns("signal", "events.root:tree", ["x"])


def _train() -> Any:
    from histgym import train

    return train.algorithm_class("ppo")


def _ray() -> Any:
    from histgym.scan.execute import require_ray

    return require_ray()


def _sb3_module() -> Any:
    sys.modules.pop("histgym.sb3", None)
    return importlib.import_module("histgym.sb3")


# (id, call, modules hidden from import, extra named in the message)
CASES: list[tuple[str, Callable[[], Any], tuple[str, ...], str]] = [
    ("cmaes_analysis", _agents_cmaes, ("cma",), "design"),
    ("optimise_open_loop", _agents_open_loop, ("cma",), "train"),
    ("histgym.plot", _plot, ("matplotlib.pyplot",), "plot"),
    ("scan plots", _scan_plot, ("matplotlib.pyplot",), "plot"),
    ("render rgb_array", _render, ("matplotlib.figure", "matplotlib.backends.backend_agg"), "plot"),
    ("parquet events", _parquet, ("pyarrow", "pyarrow.parquet"), "io"),
    ("ROOT events", _root, ("uproot",), "io"),
    ("histgym train", _train, ("stable_baselines3",), "train"),
    ("ray scans", _ray, ("ray",), "ray"),
    ("histgym.sb3", _sb3_module, ("stable_baselines3.common.vec_env",), "train"),
]


@pytest.mark.parametrize(
    "call, hidden, extra", [c[1:] for c in CASES], ids=[c[0] for c in CASES]
)
def test_missing_extra_names_the_extra(
    monkeypatch: pytest.MonkeyPatch, call: Callable[[], Any], hidden: tuple[str, ...], extra: str
) -> None:
    """``sys.modules[name] = None`` makes ``import name`` fail as if it were not installed."""
    monkeypatch.delitem(sys.modules, "histgym.sb3", raising=False)  # restored afterwards
    for name in hidden:
        monkeypatch.setitem(sys.modules, name, None)
    with pytest.raises(MissingExtra) as info:
        call()
    message = str(info.value)
    assert re.search(rf'pip install .*"histgym\[{extra}\]"', message), message
    assert "\n" not in message
    assert isinstance(info.value, HistgymError) and isinstance(info.value, ImportError)


def test_one_missing_extra_class() -> None:
    """Every module re-exports the one class, so ``except MissingExtra`` catches them all."""
    import histgym.events
    import histgym.scan.execute

    assert histgym.events.MissingExtra is MissingExtra
    assert histgym.scan.execute.MissingExtra is MissingExtra
