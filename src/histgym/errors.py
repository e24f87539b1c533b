"""Errors and warnings of histgym (bottom layer: imports nothing from histgym).

Every exception subclasses the matching built-in so that ``except ValueError`` keeps working.
"""

from __future__ import annotations

import difflib
from collections.abc import Iterable

__all__ = [
    "HistgymError",
    "WorkspaceError",
    "InvalidParameters",
    "InvalidData",
    "UnknownName",
    "FailedFit",
    "FitWarning",
    "did_you_mean",
]


class HistgymError(Exception):
    """Base class of every histgym exception."""


class WorkspaceError(HistgymError, ValueError):
    """A workspace is malformed: bad JSON, schema violation, unknown measurement, bad data.

    Attributes:
        path: the JSON path of the offending field (e.g. ``channels[0].samples[1].data``),
            or ``""`` when the problem is not located in the document.
    """

    def __init__(self, message: str, path: str = "") -> None:
        super().__init__(message)
        self.path = path


class InvalidParameters(HistgymError, ValueError):
    """A parameter vector (or batch) has the wrong shape, or non-finite / out-of-range values."""


class InvalidData(HistgymError, ValueError):
    """A data vector (main bins + auxdata) has the wrong shape, or NaN / negative entries."""


class UnknownName(HistgymError, KeyError):
    """A channel, sample, parameter or option name that the model does not know."""

    def __str__(self) -> str:  # KeyError would quote the message
        return str(self.args[0]) if self.args else ""


class FailedFit(HistgymError, RuntimeError):
    """A fit that an API cannot continue without did not converge. ``.result`` holds it."""

    def __init__(self, message: str, result: object = None) -> None:
        super().__init__(message)
        self.result = result


class FitWarning(RuntimeWarning):
    """A fit did not converge; the returned result has ``converged=False``."""


def did_you_mean(name: str, choices: Iterable[str]) -> str:
    """Return ``" Did you mean 'x'?"`` for the closest known name, or ``""``."""
    close = difflib.get_close_matches(str(name), [str(c) for c in choices], n=1)
    return f" Did you mean {close[0]!r}?" if close else ""
