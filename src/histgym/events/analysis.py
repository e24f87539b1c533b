"""Events layer: the analysis description (what an analyser may tune, and what is fixed).

An :class:`Analysis` names the processes and their event sources, the signal (scaled by the
POI normfactor), the fit observable with its range and number of bins, the tunable cuts, the
systematic uncertainties and the minimum-background requirement.  It loads from YAML or JSON
(:func:`load_analysis`) with the same field names as the dataclasses.

Conventions:
    * Cut directions: ``">"`` selects ``x > t``; ``"<"`` selects ``x < t``; ``"window"``
      selects ``lo < x < hi`` (two thresholds).  Thresholds move inside ``range``.
    * Bins: the outer edges are the fit range ``[lo, hi]`` (events outside are dropped); the
      inner edges move on a grid of ``fine_bins`` equal cells (bins as ``np.histogram``:
      ``[a, b)``, the last one ``[a, hi]``).
    * ``normsys``: a normalisation uncertainty (pyhf ``normsys``, factors ``hi``/``lo``).
    * ``lumi``: relative luminosity uncertainty (pyhf ``lumi`` modifier on every process).
    * ``shape_systematics``: up/down variations as alternative weights (``kind="weight"``,
      ``up``/``down`` name weight columns) or shifted observables (``kind="observable"``,
      ``up``/``down`` map observable -> shifted column).  Each becomes, as cabinetry's
      ``NormPlusShape``, a ``normsys`` (total variation / nominal) plus a ``histosys`` with the
      templates normalised to the nominal yield (no histosys with one bin).
    * ``staterror``: pyhf ``staterror`` from the sum of squared weights of the selected events.
    * ``min_background``: every bin needs a total background ``>= events`` and, if set, a
      relative MC statistical uncertainty of the background ``<= rel_stat_error``.
"""

from __future__ import annotations

import json
import math
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, fields
from typing import Any

from ..errors import UnknownName, did_you_mean
from .inputs import InvalidAnalysis, _require

__all__ = [
    "Analysis",
    "Cut",
    "MinBackground",
    "NormSys",
    "Process",
    "ShapeSys",
    "load_analysis",
]

DIRECTIONS = (">", "<", "window")


def _pair(name: str, v: Any) -> tuple[float, float]:
    try:
        a, b = (float(x) for x in v)
    except (TypeError, ValueError) as err:
        raise InvalidAnalysis(f"{name} must be a pair of numbers, got {v!r}") from err
    if not (math.isfinite(a) and math.isfinite(b) and a < b):
        raise InvalidAnalysis(f"{name} must be finite with lo < hi, got {v!r}")
    return a, b


@dataclass(frozen=True)
class Process:
    """One process (sample): its event source and weight column.

    Attributes:
        source: dict of arrays, pandas DataFrame, parquet path, or ROOT ``"file.root:tree"``.
        weight: name of the event-weight column; defaults to None (unit weights).
        tree: TTree name for ROOT sources without ``:tree``; defaults to None.
    """

    source: Any
    weight: str | None = None
    tree: str | None = None


@dataclass(frozen=True)
class Cut:
    """A tunable cut on one observable.

    Attributes:
        observable: column name.
        direction: ``">"``, ``"<"`` or ``"window"``.
        range: (lo, hi) allowed thresholds.
        init: starting threshold (a pair for a window); defaults to the loosest value.
    """

    observable: str
    direction: str
    range: tuple[float, float]
    init: Any = None

    def __post_init__(self) -> None:
        if self.direction not in DIRECTIONS:
            msg = f"cut on {self.observable!r}: unknown direction {self.direction!r}; expected one of {list(DIRECTIONS)}."
            raise InvalidAnalysis(msg + did_you_mean(str(self.direction), DIRECTIONS))
        object.__setattr__(self, "range", _pair(f"cut on {self.observable!r}: range", self.range))

    def thresholds(self) -> list[tuple[str, float]]:
        """(kind, initial value) of each threshold: kind ``">"`` or ``"<"``."""
        lo, hi = self.range
        if self.direction == "window":
            init = (lo, hi) if self.init is None else _pair(f"cut on {self.observable!r}: init", self.init)
            out = [(">", init[0]), ("<", init[1])]
        else:
            default = lo if self.direction == ">" else hi
            try:
                v = default if self.init is None else float(self.init)
            except (TypeError, ValueError) as err:
                raise InvalidAnalysis(f"cut on {self.observable!r}: init must be a number, got {self.init!r}") from err
            out = [(self.direction, v)]
        for _, v in out:
            if not (math.isfinite(v) and lo <= v <= hi):
                raise InvalidAnalysis(
                    f"cut on {self.observable!r}: init {v!r} outside its range [{lo}, {hi}]"
                )
        return out


@dataclass(frozen=True)
class NormSys:
    """A normalisation systematic (pyhf ``normsys``) on some processes."""

    name: str
    processes: tuple[str, ...]
    hi: float
    lo: float

    def __post_init__(self) -> None:
        object.__setattr__(self, "processes", tuple(self.processes))
        for k in ("hi", "lo"):
            v = float(getattr(self, k))
            if not (math.isfinite(v) and v > 0.0):
                raise InvalidAnalysis(f"normsys {self.name!r}: {k} must be finite and > 0, got {v!r}")


@dataclass(frozen=True)
class ShapeSys:
    """A shape (+ normalisation) systematic from up/down variations.

    Attributes:
        name: modifier name.
        kind: ``"weight"`` (``up``/``down`` are weight columns) or ``"observable"``
            (``up``/``down`` map observable names to shifted columns).
        up, down: see ``kind``.
        processes: the processes it acts on; defaults to all.
    """

    name: str
    kind: str
    up: Any
    down: Any
    processes: tuple[str, ...] | None = None

    def __post_init__(self) -> None:
        if self.kind not in ("weight", "observable"):
            msg = f"shape systematic {self.name!r}: kind must be 'weight' or 'observable', got {self.kind!r}."
            raise InvalidAnalysis(msg + did_you_mean(str(self.kind), ["weight", "observable"]))
        for k in ("up", "down"):
            v = getattr(self, k)
            if self.kind == "weight" and not isinstance(v, str):
                raise InvalidAnalysis(f"shape systematic {self.name!r}: {k} must name a weight column")
            if self.kind == "observable":
                if not (isinstance(v, Mapping) and v and all(isinstance(c, str) for c in v.values())):
                    raise InvalidAnalysis(
                        f"shape systematic {self.name!r}: {k} must map observables to shifted columns"
                    )
                object.__setattr__(self, k, dict(v))
        if self.processes is not None:
            object.__setattr__(self, "processes", tuple(self.processes))


@dataclass(frozen=True)
class MinBackground:
    """The minimum-background requirement per bin.

    Attributes:
        events: minimum total expected background (events), defaults to 1.0.
        rel_stat_error: maximum relative MC statistical uncertainty of the total background
            (``sqrt(sum w^2) / sum w``), defaults to None (no requirement).
    """

    events: float = 1.0
    rel_stat_error: float | None = None

    def __post_init__(self) -> None:
        if not (math.isfinite(float(self.events)) and float(self.events) >= 0.0):
            raise InvalidAnalysis(f"min_background.events must be finite and >= 0, got {self.events!r}")
        r = self.rel_stat_error
        if r is not None and not (math.isfinite(float(r)) and float(r) > 0.0):
            raise InvalidAnalysis(f"min_background.rel_stat_error must be > 0, got {r!r}")


@dataclass(frozen=True)
class Analysis:
    """An analysis to optimise: processes, fit observable, tunable cuts, systematics.

    Attributes:
        processes: ``{name: Process}`` (a bare source is accepted for ``Process(source)``).
        signal: the signal process (scaled by the POI ``poi``).
        observable: the fit observable; ``range`` its (lo, hi); ``bins`` the number of bins.
        cuts: tunable cuts (see :class:`Cut`).
        normsys, lumi, shape_systematics, staterror: uncertainties (module docstring).
        min_background: the per-bin requirement (:class:`MinBackground`).
        fine_bins: cells of the grid the inner bin edges live on, defaults to 1000.
        channel, poi, measurement: names in the exported pyhf workspace.
    """

    processes: Mapping[str, Any]
    signal: str
    observable: str
    range: tuple[float, float]
    bins: int = 8
    cuts: tuple[Cut, ...] = ()
    normsys: tuple[NormSys, ...] = ()
    lumi: float | None = None
    shape_systematics: tuple[ShapeSys, ...] = ()
    staterror: bool = True
    min_background: MinBackground = field(default_factory=MinBackground)
    fine_bins: int = 1000
    channel: str = "SR"
    poi: str = "mu"
    measurement: str = "analysis"

    def __post_init__(self) -> None:
        procs = {}
        for name, p in dict(self.processes).items():
            if isinstance(p, Process):
                procs[str(name)] = p
            elif isinstance(p, Mapping) and "source" in p:
                extra = set(p) - {"source", "weight", "tree"}
                if extra:
                    raise InvalidAnalysis(f"process {name!r}: unknown keys {sorted(extra)}")
                procs[str(name)] = Process(**p)
            else:
                procs[str(name)] = Process(p)
        if len(procs) < 2:
            raise InvalidAnalysis(f"an analysis needs a signal and >= 1 background, got {list(procs)}")
        object.__setattr__(self, "processes", procs)
        if self.signal not in procs:
            msg = f"unknown signal process {self.signal!r}; processes are {list(procs)}."
            raise UnknownName(msg + did_you_mean(self.signal, procs))
        object.__setattr__(self, "range", _pair("observable range", self.range))
        if not (isinstance(self.bins, int) and not isinstance(self.bins, bool) and self.bins >= 1):
            raise InvalidAnalysis(f"bins must be a positive integer, got {self.bins!r}")
        if not (isinstance(self.fine_bins, int) and self.fine_bins >= self.bins):
            raise InvalidAnalysis(f"fine_bins must be an integer >= bins ({self.bins}), got {self.fine_bins!r}")
        object.__setattr__(self, "cuts", tuple(_as(Cut, c) for c in self.cuts))
        object.__setattr__(self, "normsys", tuple(_as(NormSys, c) for c in self.normsys))
        object.__setattr__(
            self, "shape_systematics", tuple(_as(ShapeSys, c) for c in self.shape_systematics)
        )
        object.__setattr__(self, "min_background", _as(MinBackground, self.min_background))
        if self.lumi is not None and not (math.isfinite(float(self.lumi)) and float(self.lumi) > 0):
            raise InvalidAnalysis(f"lumi must be a finite relative uncertainty > 0, got {self.lumi!r}")
        names: list[str] = []
        for s in (*self.normsys, *self.shape_systematics):
            for p in s.processes or ():
                if p not in procs:
                    msg = f"systematic {s.name!r}: unknown process {p!r}; processes are {list(procs)}."
                    raise UnknownName(msg + did_you_mean(p, procs))
            names.append(s.name)
        reserved = {self.poi, "lumi", f"staterror_{self.channel}"}
        for n in names:
            if names.count(n) > 1 or n in reserved:
                raise InvalidAnalysis(f"systematic name {n!r} is used twice or reserved")

    @property
    def backgrounds(self) -> list[str]:
        """Background process names (every process except the signal), in given order."""
        return [p for p in self.processes if p != self.signal]

    def shape_processes(self, s: ShapeSys) -> list[str]:
        """The processes a shape systematic acts on."""
        return list(self.processes) if s.processes is None else list(s.processes)

    def cut_observables(self) -> list[str]:
        """Observables with a tunable cut (in cut order)."""
        return [c.observable for c in self.cuts]

    def with_processes(self, processes: Mapping[str, Any]) -> Analysis:
        """A copy with other event sources (e.g. in-memory arrays for the same names)."""
        kw = {f.name: getattr(self, f.name) for f in fields(self)}
        kw["processes"] = processes
        return Analysis(**kw)


def _as(cls: Any, v: Any) -> Any:
    if isinstance(v, cls):
        return v
    if isinstance(v, Mapping):
        known = {f.name for f in fields(cls)}
        extra = set(v) - known
        if extra:
            bad = sorted(extra)[0]
            msg = f"{cls.__name__}: unknown key {bad!r}; known keys {sorted(known)}."
            raise InvalidAnalysis(msg + did_you_mean(bad, known))
        try:
            return cls(**v)
        except TypeError as err:
            raise InvalidAnalysis(f"{cls.__name__}: {err}") from err
    raise InvalidAnalysis(f"expected a {cls.__name__} or a mapping, got {type(v).__name__}")


def load_analysis(path_or_dict: Any, *, base_dir: str | None = None) -> Analysis:
    """Load an :class:`Analysis` from a YAML/JSON file, YAML/JSON text or a dict.

    Relative file paths of process sources are resolved against the file's directory (or
    ``base_dir``).  YAML needs pyyaml (extra ``io``).

    Raises:
        InvalidAnalysis: unreadable file, unknown keys, bad values.
        UnknownName: unknown signal or process names.
    """
    d: Any = path_or_dict
    if isinstance(d, (str, os.PathLike)) and not str(d).lstrip().startswith(("{", "signal", "processes")) and os.path.exists(os.fspath(d)):
        path = os.fspath(d)
        base_dir = base_dir or os.path.dirname(os.path.abspath(path))
        with open(path, encoding="utf-8") as fh:
            text = fh.read()
        d = _parse(text, path.lower().endswith(".json"))
    elif isinstance(d, str):
        d = _parse(d, d.lstrip().startswith("{"))
    if not isinstance(d, Mapping):
        raise InvalidAnalysis(f"an analysis description must be a mapping, got {type(d).__name__}")
    d = dict(d)
    known = {f.name for f in fields(Analysis)}
    for k in d:
        if k not in known:
            raise InvalidAnalysis(f"unknown analysis key {k!r}." + did_you_mean(k, known))
    for k in ("processes", "signal", "observable", "range"):
        if k not in d:
            raise InvalidAnalysis(f"the analysis description needs {k!r}")
    procs = d["processes"]
    if not isinstance(procs, Mapping):
        raise InvalidAnalysis("processes must map names to {source, weight, tree}")
    if base_dir:
        fixed = {}
        for name, p in procs.items():
            p = dict(p) if isinstance(p, Mapping) else {"source": p}
            src = p.get("source")
            if isinstance(src, str) and not os.path.isabs(src.split(":")[0]):
                p["source"] = os.path.join(base_dir, src)
            fixed[name] = p
        d["processes"] = fixed
    for k in ("cuts", "normsys", "shape_systematics"):
        if k in d:
            if not isinstance(d[k], Sequence) or isinstance(d[k], str):
                raise InvalidAnalysis(f"{k} must be a list")
            d[k] = tuple(d[k])
    try:
        return Analysis(**d)
    except TypeError as err:
        raise InvalidAnalysis(f"analysis description: {err}") from err


def _parse(text: str, is_json: bool) -> Any:
    if is_json:
        try:
            return json.loads(text)
        except json.JSONDecodeError as err:
            raise InvalidAnalysis(f"malformed JSON analysis description: {err}") from err
    yaml = _require("yaml")
    try:
        return yaml.safe_load(text)
    except yaml.YAMLError as err:
        raise InvalidAnalysis(f"malformed YAML analysis description: {err}") from err
