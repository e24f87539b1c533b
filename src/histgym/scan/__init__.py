"""Scan layer: a whole signal grid (a background-only workspace and a patchset) in one call.

For every patch (signal point): CLs at mu = 1 with its expected band, the 95% CL upper limit
on mu (observed and expected band), the discovery significance Z0, the fit status and the
patch metadata; asymptotic by default, CLs from toys with ``calctype="toybased"``.

The background is compiled once; each point's model is the background with the patch
applied incrementally (:class:`histgym.patchset.Background`).  Points run in local processes
(all cores by default) or on Ray; finished points are journaled on disk at once, so an
interrupted scan resumes where it stopped (:mod:`histgym.scan.store`).

Example:
    >>> from histgym.scan import scan
    >>> rows = scan("BkgOnly.json", "patchset.json", out="results.json")   # doctest: +SKIP
    >>> rows[0]["patch"], rows[0]["values"], rows[0]["cls_obs"], rows[0]["limit_exp"][2]  # doctest: +SKIP
"""

from __future__ import annotations

import math
import os
import sys
import time
from collections.abc import Mapping, Sequence
from typing import Any

from ..errors import InvalidParameters, UnknownName, did_you_mean
from ..patchset import Background, Patch, read_patchset, select_patches
from .points import WHAT, Settings, combine_toys, empty_record
from .store import COLUMNS, Journal, read_results, write_results

__all__ = ["scan", "Settings", "WHAT", "COLUMNS", "read_results", "write_results"]


class _Progress:
    """A one-line progress bar on stderr (points done / total, elapsed, remaining)."""

    def __init__(self, total: int, done: int, enabled: bool) -> None:
        self.total, self.done, self.enabled = total, done, enabled and total > 0
        self.t0 = time.perf_counter()
        self.start_done = done
        self._draw()

    def step(self) -> None:
        self.done += 1
        self._draw()

    def _draw(self) -> None:
        if not self.enabled:
            return
        el = time.perf_counter() - self.t0
        new = self.done - self.start_done
        rem = el / new * (self.total - self.done) if new else math.nan
        width = 30
        fill = int(width * self.done / self.total)
        eta = f"{rem:5.0f}s left" if math.isfinite(rem) else "  ...   "
        sys.stderr.write(f"\rscan [{'#' * fill}{'.' * (width - fill)}] {self.done}/{self.total} points  {el:5.0f}s  {eta}")
        sys.stderr.flush()

    def close(self) -> None:
        if self.enabled:
            sys.stderr.write("\n")
            sys.stderr.flush()


def _check_what(what: Any) -> tuple[str, ...]:
    items = [w.strip() for w in what.split(",")] if isinstance(what, str) else list(what)
    for w in items:
        if w not in WHAT:
            raise UnknownName(f"unknown scan quantity {w!r}; choose from {list(WHAT)}." + did_you_mean(w, WHAT))
    if not items:
        raise InvalidParameters(f"what must name at least one of {list(WHAT)}")
    return tuple(w for w in WHAT if w in items)


def scan(
    background: Any,
    patchset: Any,
    *,
    patches: Sequence[str] | None = None,
    what: str | Sequence[str] = WHAT,
    calctype: str = "asymptotics",
    ntoys: int = 1000,
    seed: int = 0,
    jobs: int | None = None,
    ray: str | bool | None = None,
    out: str | os.PathLike | None = None,
    progress: bool = False,
    measurement: str | None = None,
    modifier_settings: Mapping[str, Mapping[str, str]] | None = None,
    poi_test: float = 1.0,
    cl: float = 0.95,
    _fault: dict[str, Any] | None = None,
) -> list[dict[str, Any]]:
    """Scan every signal point of ``patchset`` on ``background``.

    Args:
        background: the background-only workspace (dict, JSON text, path, ``pyhf.Workspace``)
            or an already compiled :class:`histgym.patchset.Background`.
        patchset: a pyhf patchset (dict, JSON text, path, ``pyhf.PatchSet``) or a list of
            :class:`histgym.patchset.Patch`.
        patches: names of the patches to scan; defaults to all, in the patchset's order.
        what: quantities, a subset of ``("cls", "limit", "z0")`` (or ``"cls,limit"``).
        calctype: ``"asymptotics"`` (default) or ``"toybased"`` (CLs from toys; limits and
            Z0 stay asymptotic).
        ntoys: toys per hypothesis for ``"toybased"``, defaults to 1000.
        seed: base seed of the toy streams, defaults to 0.
        jobs: local worker processes; defaults to all cores (``os.cpu_count()``); 1 runs in
            this process.  Ignored with ``ray``.
        ray: run on Ray: ``True`` (the running Ray, else a new local one), ``"auto"`` (the
            cluster of this machine) or an address (``"ray://head:10001"``, ``"head:6379"``).
        out: results file, ``.json`` (a list of records) or ``.csv``; finished points are
            journaled next to it and reused on restart.  Defaults to None (nothing written).
        progress: draw a progress bar on stderr.
        measurement, modifier_settings: as :func:`histgym.from_pyhf`.
        poi_test: POI value of the CLs test, defaults to 1.
        cl: confidence level of the limits, defaults to 0.95.

    Returns:
        One record per point in the patchset's order: ``patch``, ``values``, ``cls_obs``,
        ``cls_exp`` [5], ``limit_obs``, ``limit_exp`` [5], ``z0``, ``z0_exp``, ``fit_ok``,
        ``error`` (None, or why the point failed), ``seconds`` (its compute time), and the
        settings (``what``, ``calctype``, ``ntoys``, ``seed``, ``poi_test``, ``cl``).
        Quantities not asked for are NaN.  The expected bands are ordered -2..+2 sigma.

    Raises:
        WorkspaceError: invalid background or patchset.
        UnknownName: unknown patch name, quantity or calctype.
        InvalidParameters: ``ntoys`` < 1 or ``jobs`` < 1.
    """
    if calctype not in ("asymptotics", "toybased"):
        raise UnknownName(
            f"unknown calctype {calctype!r}; choose 'asymptotics' or 'toybased'."
            + did_you_mean(calctype, ("asymptotics", "toybased"))
        )
    if int(ntoys) < 1:
        raise InvalidParameters(f"ntoys must be >= 1, got {ntoys}")
    if jobs is not None and int(jobs) < 1:
        raise InvalidParameters(f"jobs must be >= 1, got {jobs}")
    settings = Settings(what=_check_what(what), calctype=calctype, ntoys=int(ntoys), seed=int(seed), poi_test=float(poi_test), cl=float(cl))
    bkg = background if isinstance(background, Background) else Background(
        background, measurement=measurement, modifier_settings=modifier_settings
    )
    all_patches = list(patchset) if isinstance(patchset, (list, tuple)) else read_patchset(patchset)
    chosen = select_patches(all_patches, patches)
    journal = Journal(out, settings.key())
    todo = [i for i, p in enumerate(chosen) if p.name not in journal.done]

    from .execute import Context, run_local, run_ray

    ctx = Context(bkg, chosen, settings, _fault)
    tasks: list[tuple[Any, ...]] = []
    for i in todo:
        tasks.append(("main", i))
        tasks.extend(("toy", i, j) for j in range(settings.n_chunks))
    partial: dict[int, dict[str, Any]] = {}
    chunks: dict[int, dict[int, dict[str, Any]]] = {}
    need = {i: 1 + settings.n_chunks for i in todo}
    bar = _Progress(len(chosen), len(chosen) - len(todo), progress)

    def on_result(task: tuple[Any, ...], res: dict[str, Any]) -> None:
        i = task[1]
        p = chosen[i]
        rec = partial.setdefault(i, empty_record(p.name, p.values, settings))
        if "error" in res:
            rec["error"] = res["error"]
            rec["fit_ok"] = False
        elif task[0] == "main":
            ok = res.pop("fit_ok")
            rec.update(res)
            rec["fit_ok"] = rec["fit_ok"] and ok
        else:
            chunks.setdefault(i, {})[task[2]] = res
        need[i] -= 1
        if need[i] == 0:
            if settings.n_chunks and rec["error"] is None:
                got = chunks.pop(i)
                toy = combine_toys([got[j] for j in range(settings.n_chunks)])
                rec["cls_obs"], rec["cls_exp"] = toy["cls_obs"], toy["cls_exp"]
                rec["fit_ok"] = rec["fit_ok"] and toy["fit_ok"]
                rec["seconds"] += toy["seconds"]
            journal.add(partial.pop(i))
            bar.step()

    try:
        if ray is not None and ray is not False:
            address = None if ray is True else str(ray)
            run_ray(ctx, tasks, on_result, address=address)
        else:
            run_local(ctx, tasks, on_result, jobs=int(jobs) if jobs else (os.cpu_count() or 1))
    finally:
        bar.close()
        journal.close()
    return journal.finish([p.name for p in chosen])
