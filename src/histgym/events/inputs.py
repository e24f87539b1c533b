"""Events layer: read and validate per-process event columns (observables, weights, variations).

A process's events are a mapping ``column name -> float64 [n_events]``.  Sources: a dict of
arrays, a pandas ``DataFrame``, a parquet file (pyarrow) or a ROOT TTree (uproot, given as
``"file.root:tree"`` or with ``tree=``).  pandas, pyarrow and uproot are optional (extra
``io``) and imported only when such a source is read.

Validation (every error names the process and the column): unknown columns (with a
suggestion), non-numeric or non-1-d columns, unequal lengths, NaN/inf values or weights, and
a process without events.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import numpy.typing as npt

from .._extras import require
from ..errors import InvalidAnalysis, InvalidEvents, MissingExtra, UnknownName, did_you_mean

__all__ = [
    "InvalidEvents",
    "InvalidAnalysis",
    "MissingExtra",
    "read_columns",
    "validate_columns",
]

FloatArray = npt.NDArray[np.float64]


def _require(module: str, extra: str = "io") -> Any:
    return require(module, extra, "reading this input")


def _is_dataframe(obj: Any) -> bool:
    return type(obj).__module__.startswith("pandas") and hasattr(obj, "columns")


def _available(process: str, source: Any, tree: str | None) -> tuple[list[str], Any]:
    """Column names of ``source`` and a reader ``f(columns) -> dict``."""
    if isinstance(source, Mapping):
        names = [str(k) for k in source]
        return names, lambda cols: {c: source[c] for c in cols}
    if _is_dataframe(source):
        names = [str(c) for c in source.columns]
        return names, lambda cols: {c: source[c].to_numpy() for c in cols}
    if isinstance(source, (str, os.PathLike)):
        path = os.fspath(source)
        low = path.lower()
        if ".root" in low:
            if tree is None and ":" in path.rsplit(".root", 1)[-1]:
                path, tree = path.rsplit(":", 1)
            if tree is None:
                raise InvalidEvents(
                    f"process {process!r}: a ROOT source needs a tree ('file.root:tree' or "
                    f"tree=...), got {path!r}",
                    process,
                )
            uproot = _require("uproot")
            if not os.path.exists(path):
                raise InvalidEvents(f"process {process!r}: no such file {path!r}", process)
            f = uproot.open(path)
            if tree not in f:
                keys = [k.split(";")[0] for k in f.keys()]
                msg = f"process {process!r}: no tree {tree!r} in {path!r}; it has {keys}."
                raise UnknownName(msg + did_you_mean(tree, keys))
            t = f[tree]
            names = [str(k) for k in t.keys()]
            return names, lambda cols: dict(t.arrays(list(cols), library="np"))
        if low.endswith((".parquet", ".pq")):
            pq = _require("pyarrow.parquet")
            if not os.path.exists(path):
                raise InvalidEvents(f"process {process!r}: no such file {path!r}", process)
            schema = pq.read_schema(path)
            names = list(schema.names)
            return names, lambda cols: {
                k: v.to_numpy() for k, v in zip(cols, pq.read_table(path, columns=list(cols)).columns)
            }
        raise InvalidEvents(
            f"process {process!r}: unsupported file {path!r} (expected .parquet/.pq or "
            f".root with a tree)",
            process,
        )
    msg = (
        f"process {process!r}: events must be a dict of arrays, a pandas DataFrame, a parquet "
        f"path or a ROOT 'file.root:tree', got {type(source).__name__}"
    )
    raise InvalidEvents(msg, process)


def read_columns(
    process: str, source: Any, columns: Sequence[str], *, tree: str | None = None
) -> dict[str, FloatArray]:
    """Read ``columns`` of one process from ``source`` and validate them.

    Args:
        process: the process name (used in error messages).
        source: dict of arrays, pandas DataFrame, parquet path, or ROOT path
            (``"file.root:tree"``, or a path with ``tree``).
        columns: the columns to read (observables, weights, variations).
        tree: the TTree name of a ROOT file, defaults to the part after ``:`` in the path.

    Returns:
        ``{column: float64 [n_events]}`` (C-contiguous copies).

    Raises:
        UnknownName: a column is not in the source (with a suggestion).
        InvalidEvents: see :func:`validate_columns`; unsupported source type or file.
        MissingExtra: pandas/pyarrow/uproot is needed and missing.
    """
    names, reader = _available(process, source, tree)
    cols = list(dict.fromkeys(columns))
    for c in cols:
        if c not in names:
            msg = f"process {process!r} has no column {c!r}; it has {sorted(names)}."
            raise UnknownName(msg + did_you_mean(c, names))
    raw = reader(cols)
    return validate_columns(process, {c: raw[c] for c in cols})


def validate_columns(process: str, columns: Mapping[str, Any]) -> dict[str, FloatArray]:
    """Check the columns of one process: numeric, 1-d, equal lengths, finite, not empty.

    Raises:
        InvalidEvents: naming the process and the column.
    """
    out: dict[str, FloatArray] = {}
    n: int | None = None
    first = ""
    for name, values in columns.items():
        try:
            a = np.asarray(values)
            if a.dtype.kind not in "biuf":
                raise TypeError(a.dtype)
            a = np.ascontiguousarray(a, dtype=np.float64)
        except (TypeError, ValueError) as err:
            msg = f"process {process!r}, column {name!r}: not a numeric array ({err})"
            raise InvalidEvents(msg, process, name) from err
        if a.ndim != 1:
            msg = f"process {process!r}, column {name!r}: must be 1-d, has shape {a.shape}"
            raise InvalidEvents(msg, process, name)
        if n is None:
            n, first = a.size, name
        elif a.size != n:
            msg = (
                f"process {process!r}, column {name!r}: has {a.size} events but column "
                f"{first!r} has {n}"
            )
            raise InvalidEvents(msg, process, name)
        bad = ~np.isfinite(a)
        if bad.any():
            idx = np.flatnonzero(bad)[:5].tolist()
            msg = f"process {process!r}, column {name!r}: non-finite values at events {idx}"
            raise InvalidEvents(msg, process, name)
        out[name] = a
    if not n:
        msg = f"process {process!r} has no events"
        raise InvalidEvents(msg, process, first)
    return out
