"""Events layer: event input and validation, the analysis description, the built-in toy.

From simulated events to binned templates: :func:`read_columns` reads and validates per-process
columns (dicts of arrays, pandas DataFrames, parquet, ROOT TTrees through uproot);
:class:`Analysis` (loadable with :func:`load_analysis` from YAML/JSON) says what may be tuned
(cuts, binning) and which uncertainties enter; :func:`prepare` lays the events out once for the
compiled histogramming; :func:`toy_analysis` is the built-in example.
"""

from __future__ import annotations

from .analysis import Analysis, Cut, MinBackground, NormSys, Process, ShapeSys, load_analysis
from .inputs import InvalidAnalysis, InvalidEvents, MissingExtra, read_columns, validate_columns
from .prepare import PreparedEvents, prepare, workspace_spec
from .toy import TOY_YIELDS, toy_analysis, toy_events

__all__ = [
    "Analysis",
    "Cut",
    "InvalidAnalysis",
    "InvalidEvents",
    "MinBackground",
    "MissingExtra",
    "NormSys",
    "PreparedEvents",
    "Process",
    "ShapeSys",
    "TOY_YIELDS",
    "load_analysis",
    "prepare",
    "read_columns",
    "toy_analysis",
    "toy_events",
    "validate_columns",
    "workspace_spec",
]


def __dir__() -> list[str]:
    return sorted(__all__)
