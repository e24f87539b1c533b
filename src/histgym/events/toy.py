"""Events layer: the built-in toy search (generated at run time, seeded, no downloads).

A narrow resonance (``signal``) in a mass-like fit observable ``mass`` in [100, 150], over a
falling continuum (``continuum``) and a broad peaking background (``resonant``).  Two
discriminating variables: ``score`` (a classifier output in [0, 1]) and ``pt`` (a transverse
momentum, GeV).  Weighted events (about ``n_events`` per process); systematics: a
normalisation uncertainty of 10 % on ``resonant`` (normsys ``resonant_norm``) and an energy
scale of +-1 % on ``mass`` for every process (shape systematic ``mass_scale``, shifted
observables ``mass_up``/``mass_down``).  Tunable cuts: ``score > t`` and a ``pt`` window.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import numpy.typing as npt

from .analysis import Analysis

__all__ = ["toy_events", "toy_analysis", "TOY_YIELDS"]

#: Expected events of each process before cuts (sum of weights).
TOY_YIELDS = {"signal": 60.0, "continuum": 4000.0, "resonant": 600.0}


def toy_events(
    seed: int = 0, n_events: int = 100_000
) -> dict[str, dict[str, npt.NDArray[np.float64]]]:
    """Events of the toy search: ``{process: {column: float64 [n]}}``.

    Columns: ``mass``, ``mass_up``, ``mass_down``, ``score``, ``pt``, ``weight``.
    """
    rng = np.random.default_rng(seed)
    n = int(n_events)
    out: dict[str, dict[str, npt.NDArray[np.float64]]] = {}

    def finish(name: str, mass: Any, score: Any, pt: Any) -> None:
        w = rng.uniform(0.5, 1.5, n)
        w *= TOY_YIELDS[name] / w.sum()
        out[name] = {
            "mass": mass,
            "mass_up": mass * 1.01,
            "mass_down": mass * 0.99,
            "score": np.clip(score, 0.0, 1.0),
            "pt": pt,
            "weight": w,
        }

    finish("signal", rng.normal(125.0, 2.0, n), rng.beta(5.0, 2.0, n), rng.gamma(6.0, 10.0, n))
    finish("continuum", 95.0 + rng.exponential(25.0, n), rng.beta(2.0, 5.0, n),
           rng.exponential(25.0, n))
    finish("resonant", rng.normal(122.0, 12.0, n), rng.beta(3.0, 3.0, n), rng.gamma(3.0, 50.0, n))
    return out


def toy_analysis(seed: int = 0, n_events: int = 100_000, **overrides: Any) -> Analysis:
    """The toy search as an :class:`Analysis` over :func:`toy_events` (in memory).

    Defaults: 8 equal-width bins of ``mass`` in [100, 150], cuts ``score > t`` (range [0, 1],
    start 0) and ``20 < pt < 300`` (window, range [0, 300]), normsys ``resonant_norm`` (+-10 %),
    shape systematic ``mass_scale``, staterror, at least 1 background event per bin with a
    relative MC stat. uncertainty <= 30 %.  Keyword arguments override fields of
    :class:`Analysis`.
    """
    ev = toy_events(seed, n_events)
    kw: dict[str, Any] = dict(
        processes={p: {"source": cols, "weight": "weight"} for p, cols in ev.items()},
        signal="signal",
        observable="mass",
        range=(100.0, 150.0),
        bins=8,
        cuts=(
            {"observable": "score", "direction": ">", "range": (0.0, 1.0), "init": 0.0},
            {"observable": "pt", "direction": "window", "range": (0.0, 300.0), "init": (20.0, 300.0)},
        ),
        normsys=({"name": "resonant_norm", "processes": ["resonant"], "hi": 1.1, "lo": 0.9},),
        shape_systematics=(
            {"name": "mass_scale", "kind": "observable", "up": {"mass": "mass_up"},
             "down": {"mass": "mass_down"}},
        ),
        min_background={"events": 1.0, "rel_stat_error": 0.3},
    )
    kw.update(overrides)
    return Analysis(**kw)
