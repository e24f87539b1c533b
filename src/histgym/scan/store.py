"""Scan layer: results on disk that survive interruption.

Every finished point is appended at once to a journal next to the output
(``results.json`` -> ``results.json.journal.jsonl``, one JSON record per line, flushed and
fsynced); the output itself (JSON list or CSV) is written atomically at the end, in the
patchset's order, and the journal is then removed.  On restart the records of the existing
output and journal whose settings match are reused: finished points are not recomputed and
never appear twice (the last record of a patch wins; a truncated last line is ignored).
"""

from __future__ import annotations

import csv
import io
import json
import math
import os
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

from ..errors import ScanOutputError

__all__ = ["COLUMNS", "Journal", "read_results", "write_results", "journal_path"]

#: output columns, in order (list-valued cells are JSON text in CSV)
COLUMNS = (
    "patch",
    "values",
    "cls_obs",
    "cls_exp",
    "limit_obs",
    "limit_exp",
    "z0",
    "z0_exp",
    "fit_ok",
    "error",
    "seconds",
    "what",
    "calctype",
    "ntoys",
    "seed",
    "poi_test",
    "cl",
)
_LIST_COLUMNS = ("values", "cls_exp", "limit_exp", "what")


def _kind(path: Path) -> str:
    suffix = path.suffix.lower()
    if suffix not in (".json", ".csv"):
        raise ScanOutputError(f"scan output {str(path)!r} must end in .json or .csv")
    return suffix[1:]


def journal_path(out: str | os.PathLike) -> Path:
    """The journal of output ``out``."""
    return Path(str(out) + ".journal.jsonl")


def _json_safe(rec: Mapping[str, Any]) -> dict[str, Any]:
    def fix(v: Any) -> Any:
        if isinstance(v, float) and not math.isfinite(v):
            return None
        if isinstance(v, list):
            return [fix(x) for x in v]
        return v

    return {k: fix(v) for k, v in rec.items()}


def _from_json(rec: Mapping[str, Any]) -> dict[str, Any]:
    out = dict(rec)
    for k in ("cls_obs", "limit_obs", "z0", "z0_exp"):
        if k in out and out[k] is None:
            out[k] = math.nan
    for k in ("cls_exp", "limit_exp"):
        if k in out and isinstance(out[k], list):
            out[k] = [math.nan if v is None else v for v in out[k]]
    return out


def read_results(path: str | os.PathLike) -> list[dict[str, Any]]:
    """Records of a scan output (``.json`` or ``.csv``); NaN where a value was not computed.

    Raises:
        ScanOutputError: unknown suffix or unreadable content.
    """
    p = Path(path)
    kind = _kind(p)
    text = p.read_text()
    try:
        if kind == "json":
            data = json.loads(text)
            if not isinstance(data, list):
                raise ScanOutputError(f"{str(p)!r} is not a JSON list of records")
            return [_from_json(r) for r in data]
        rows = list(csv.DictReader(io.StringIO(text)))
    except json.JSONDecodeError as err:
        raise ScanOutputError(f"{str(p)!r} is not valid JSON: {err}") from err
    out = []
    for row in rows:
        rec: dict[str, Any] = {}
        for k, v in row.items():
            if k in _LIST_COLUMNS:
                rec[k] = json.loads(v)
            elif k in ("patch", "calctype"):
                rec[k] = v
            elif k == "error":
                rec[k] = v or None
            elif k == "fit_ok":
                rec[k] = v == "True"
            elif k in ("ntoys",):
                rec[k] = int(v)
            elif k == "seed":
                rec[k] = None if v == "" else int(v)
            else:
                rec[k] = float(v) if v != "" else math.nan
        out.append(_from_json(rec))
    return out


def write_results(path: str | os.PathLike, records: Sequence[Mapping[str, Any]]) -> None:
    """Write ``records`` as a JSON list or a CSV table (by suffix), atomically."""
    p = Path(path)
    kind = _kind(p)
    tmp = p.with_name(p.name + ".tmp")
    if kind == "json":
        tmp.write_text(json.dumps([_json_safe(r) for r in records], indent=1) + "\n")
    else:
        buf = io.StringIO()
        w = csv.writer(buf)
        w.writerow(COLUMNS)
        for r in records:
            row = []
            for k in COLUMNS:
                v = r.get(k)
                if k in _LIST_COLUMNS:
                    row.append(json.dumps(_json_safe({"v": v})["v"]))
                elif v is None:
                    row.append("")
                elif isinstance(v, float) and not math.isfinite(v):
                    row.append("nan")
                else:
                    row.append(repr(v) if isinstance(v, float) else str(v))
            w.writerow(row)
        tmp.write_text(buf.getvalue())
    os.replace(tmp, p)


class Journal:
    """Append-only record of finished points (see the module docstring).

    Args:
        out: the scan's output path (``.json`` or ``.csv``); ``None``: keep nothing on disk.
        key: the settings a stored record must match to be reused.
    """

    def __init__(self, out: str | os.PathLike | None, key: Mapping[str, Any]) -> None:
        self.out = Path(out) if out is not None else None
        self.key = dict(key)
        self.done: dict[str, dict[str, Any]] = {}
        self._fh: Any = None
        if self.out is None:
            return
        _kind(self.out)
        if self.out.is_file():
            try:
                self._take(read_results(self.out))
            except (ScanOutputError, ValueError, KeyError):
                pass  # an unreadable old output is overwritten at the end
        jp = journal_path(self.out)
        if jp.is_file():
            recs = []
            for line in jp.read_text().splitlines():
                try:
                    recs.append(_from_json(json.loads(line)))
                except json.JSONDecodeError:
                    continue  # a line cut by the interruption
            self._take(recs)

    def _matches(self, rec: Mapping[str, Any]) -> bool:
        return all(rec.get(k) == v for k, v in self.key.items())

    def _take(self, recs: Iterable[Mapping[str, Any]]) -> None:
        for r in recs:
            if isinstance(r, Mapping) and "patch" in r and self._matches(r):
                self.done[str(r["patch"])] = dict(r)

    def add(self, rec: Mapping[str, Any]) -> None:
        """Record a finished point (appended and synced to disk before returning)."""
        self.done[str(rec["patch"])] = dict(rec)
        if self.out is None:
            return
        if self._fh is None:
            self._fh = open(journal_path(self.out), "a")
        self._fh.write(json.dumps(_json_safe(rec)) + "\n")
        self._fh.flush()
        os.fsync(self._fh.fileno())

    def finish(self, order: Sequence[str]) -> list[dict[str, Any]]:
        """Write the output (records in ``order``) and remove the journal."""
        recs = [self.done[n] for n in order if n in self.done]
        self.close()
        if self.out is not None:
            write_results(self.out, recs)
            journal_path(self.out).unlink(missing_ok=True)
        return recs

    def close(self) -> None:
        """Close the journal file (records stay on disk)."""
        if self._fh is not None:
            self._fh.close()
            self._fh = None
