"""Errors and warnings of histgym (bottom layer: imports nothing from histgym).

Every exception subclasses the matching built-in so that ``except ValueError`` keeps working.
"""

from __future__ import annotations

import difflib
from collections.abc import Iterable

__all__ = [
    "HistgymError",
    "WorkspaceError",
    "WorkspaceTypeError",
    "InvalidParameters",
    "InvalidData",
    "UnknownName",
    "InvalidOption",
    "InvalidOptionType",
    "ResetNeeded",
    "FailedFit",
    "MissingExtra",
    "InvalidEvents",
    "InvalidAnalysis",
    "InvalidTensor",
    "ScanOutputError",
    "FitWarning",
    "DegenerateModelWarning",
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


class WorkspaceTypeError(WorkspaceError, TypeError):
    """A workspace was given as an object of an unsupported type (not a dict, JSON text, a
    path or a ``pyhf.Workspace``)."""


class InvalidParameters(HistgymError, ValueError):
    """A parameter vector (or batch) has the wrong shape, or non-finite / out-of-range values."""


class InvalidData(HistgymError, ValueError):
    """A data vector (main bins + auxdata) has the wrong shape, or NaN / negative entries."""


class UnknownName(HistgymError, KeyError):
    """A channel, sample, parameter or option name that the model does not know."""

    def __str__(self) -> str:  # KeyError would quote the message
        return str(self.args[0]) if self.args else ""


class InvalidOption(HistgymError, ValueError):
    """A keyword option (of an environment, a fit, an inference call) has an invalid value.

    Attributes:
        option: the name of the offending option.
    """

    def __init__(self, message: str, option: str = "") -> None:
        super().__init__(message)
        self.option = option


class InvalidOptionType(InvalidOption, TypeError):
    """A keyword option has the wrong type (e.g. the string ``"0.1"`` for a float, ``True``
    for an integer); histgym never coerces such values silently."""


class ResetNeeded(HistgymError, RuntimeError):
    """An environment was stepped before ``reset()`` or after its episode ended (as
    Gymnasium's ``OrderEnforcing`` wrapper raises ``gymnasium.error.ResetNeeded``)."""


class FailedFit(HistgymError, RuntimeError):
    """A fit that an API cannot continue without did not converge. ``.result`` holds it."""

    def __init__(self, message: str, result: object = None) -> None:
        super().__init__(message)
        self.result = result


class MissingExtra(HistgymError, ImportError):
    """An optional dependency is not installed; the one-line message names the extra to
    install (``pip install "histgym[extra]"``)."""


class InvalidEvents(HistgymError, ValueError):
    """Event inputs are malformed: unequal lengths, NaN/inf values, an empty process, bad types.

    Attributes:
        process: the offending process ("" when not process-specific).
        column: the offending column ("" when not column-specific).
    """

    def __init__(self, message: str, process: str = "", column: str = "") -> None:
        super().__init__(message)
        self.process = process
        self.column = column


class InvalidAnalysis(HistgymError, ValueError):
    """An analysis description is malformed (bad range, direction, bins, unknown process...)."""


class InvalidTensor(HistgymError, TypeError):
    """A tensor argument is not a ``torch.Tensor`` or has an unsupported dtype."""


class ScanOutputError(HistgymError, ValueError):
    """An output path with an unknown suffix, or a results file that cannot be read."""


class FitWarning(RuntimeWarning):
    """A fit did not converge; the returned result has ``converged=False``."""


class DegenerateModelWarning(FitWarning):
    """A fit result is degenerate: a free parameter has no effect on the likelihood (a
    singular Hessian), so its uncertainty is undefined; the result has ``converged=False``."""


def did_you_mean(name: str, choices: Iterable[str]) -> str:
    """Return ``" Did you mean 'x'?"`` for the closest known name, or ``""``."""
    close = difflib.get_close_matches(str(name), [str(c) for c in choices], n=1)
    return f" Did you mean {close[0]!r}?" if close else ""
