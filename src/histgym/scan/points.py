"""Scan layer: what is computed for one signal point (a patched model), and toy chunks.

A point's *main* task gives the asymptotic numbers (``histgym.infer.hypotest`` at mu = 1 with
``qtilde``, ``histgym.infer.upper_limit`` at 95% CL, ``histgym.infer.significance``; the CLs at
mu = 1 and the limits from the same fits, :func:`histgym.infer.limits.hypotest_and_limit`,
and Z0 reusing three of their fits, :mod:`histgym.infer.pointfits`: equal to the separate
calls); with
``calctype="toybased"`` the CLs values come from toy *chunks* of :data:`TOY_CHUNK` toys per
hypothesis, each drawn from its own seeded stream ``SeedSequence([seed, crc32(patch), j])``:
the toys of a point, hence its result, do not depend on how many workers ran the chunks nor
on which other points are scanned.  Limits and Z0 stay asymptotic.
"""

from __future__ import annotations

import math
import time
import warnings
import zlib
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from ..model import Model

__all__ = ["WHAT", "TOY_CHUNK", "Settings", "main_task", "toy_chunk", "combine_toys", "toy_rng", "empty_record"]

#: quantities a scan can compute
WHAT = ("cls", "limit", "z0")
#: toys per hypothesis in one chunk (fixed: the split does not depend on the workers)
TOY_CHUNK = 250

_NAN5 = [math.nan] * 5


@dataclass(frozen=True)
class Settings:
    """What a scan computes at every point.

    Attributes:
        what: subset of :data:`WHAT`.
        calctype: ``"asymptotics"`` or ``"toybased"`` (CLs only; limits and Z0 asymptotic).
        ntoys: toys per hypothesis for ``"toybased"``.
        seed: base seed of the toy streams.
        poi_test: POI value of the CLs test, defaults to 1 (the nominal signal).
        cl: confidence level of the upper limits, defaults to 0.95.
    """

    what: tuple[str, ...] = WHAT
    calctype: str = "asymptotics"
    ntoys: int = 1000
    seed: int = 0
    poi_test: float = 1.0
    cl: float = 0.95

    @property
    def n_chunks(self) -> int:
        """Toy chunks per point (0 for asymptotics)."""
        if self.calctype != "toybased" or "cls" not in self.what:
            return 0
        return max(1, math.ceil(self.ntoys / TOY_CHUNK))

    def chunk_size(self, j: int) -> int:
        """Toys per hypothesis in chunk ``j``."""
        return min(TOY_CHUNK, self.ntoys - j * TOY_CHUNK)

    def key(self) -> dict[str, Any]:
        """The fields a stored record must match to be reused on restart."""
        return {
            "what": list(self.what),
            "calctype": self.calctype,
            "ntoys": self.ntoys if self.n_chunks else 0,
            "seed": self.seed if self.n_chunks else None,
            "poi_test": self.poi_test,
            "cl": self.cl,
        }


def empty_record(name: str, values: Sequence[Any], settings: Settings) -> dict[str, Any]:
    """A record with every output column, NaN where not computed."""
    rec: dict[str, Any] = {
        "patch": name,
        "values": list(values),
        "cls_obs": math.nan,
        "cls_exp": list(_NAN5),
        "limit_obs": math.nan,
        "limit_exp": list(_NAN5),
        "z0": math.nan,
        "z0_exp": math.nan,
        "fit_ok": True,
        "error": None,
        "seconds": 0.0,
    }
    rec.update(settings.key())
    return rec


def main_task(model: Model, settings: Settings) -> dict[str, Any]:
    """The asymptotic part of a point: CLs (unless toy-based), limits, Z0.

    Warnings of the fits (``FitWarning``) are not raised: they set ``fit_ok = False``.

    Returns:
        ``{"cls_obs", "cls_exp", "limit_obs", "limit_exp", "z0", "z0_exp", "fit_ok",
        "seconds"}`` for the requested quantities.
    """
    from .. import infer
    from ..infer.limits import hypotest_and_limit
    from ..infer.pointfits import FitMemo, significance

    memo = FitMemo()  # the fits the calculators of this point share

    t0 = time.perf_counter()
    out: dict[str, Any] = {"fit_ok": True}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        want_cls = "cls" in settings.what and settings.calctype == "asymptotics"
        r = lim = None
        if "limit" in settings.what:
            # the limit search starts with the CLs at POI = 1: one calculator, shared fits
            h, lim = hypotest_and_limit(model, cl=settings.cl, memo=memo)
            if want_cls and h.poi_test == settings.poi_test:
                r = h
        if want_cls:
            if r is None:
                r = infer.hypotest(settings.poi_test, model)
            out["cls_obs"] = float(r.cls_obs)
            out["cls_exp"] = [float(v) for v in r.cls_exp]
            out["fit_ok"] &= bool(r.converged)
        if lim is not None:
            out["limit_obs"] = float(lim.obs)
            out["limit_exp"] = [float(v) for v in lim.exp]
            out["fit_ok"] &= bool(lim.converged)
        if "z0" in settings.what:
            sig = significance(model, memo)
            out["z0"] = float(sig.z_obs)
            out["z0_exp"] = float(sig.z_exp)
            out["fit_ok"] &= bool(sig.converged)
    out["seconds"] = time.perf_counter() - t0
    return out


def toy_rng(seed: int, patch: str, j: int) -> np.random.Generator:
    """The random stream of toy chunk ``j`` of ``patch``."""
    return np.random.default_rng(np.random.SeedSequence([int(seed), zlib.crc32(patch.encode()), int(j)]))


def toy_chunk(model: Model, settings: Settings, patch: str, j: int) -> dict[str, Any]:
    """Test statistics (qtilde at ``poi_test``) of chunk ``j``'s signal and background toys.

    Follows :func:`histgym.infer.toys.toy_hypotest` step by step (same fits, same sampling
    order), so a single chunk reproduces ``infer.hypotest(..., calctype="toybased",
    ntoys=n, seed=toy_rng(seed, patch, 0))``.

    Returns:
        ``{"q_obs", "q_sig" [n], "q_bkg" [n], "ok", "seconds"}``.
    """
    from ..infer.toys import _clip_q, sample_data, toy_teststats
    from ..infer.teststats import fixed_poi_min, setup, tmu_like

    t0 = time.perf_counter()
    n = settings.chunk_size(j)
    rng = toy_rng(settings.seed, patch, j)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        s = setup(model)
        d = model.check_data(None)
        mu = float(settings.poi_test)
        t_obs, fx, fr = tmu_like(s, mu, d)
        q_obs = float(_clip_q(np.array([t_obs]), np.array([fr.x[s.poi]]), mu, "qtilde")[0])
        sig_fit = fixed_poi_min(s, mu, d)
        bkg_fit = fixed_poi_min(s, 0.0, d)
        toys = np.concatenate([sample_data(model, sig_fit.x, n, rng), sample_data(model, bkg_fit.x, n, rng)])
        start = np.concatenate([np.repeat(sig_fit.x[None, :], n, 0), np.repeat(bkg_fit.x[None, :], n, 0)])
        q, ok = toy_teststats(s, mu, toys, "qtilde", init=start)
    return {
        "q_obs": q_obs,
        "q_sig": q[:n],
        "q_bkg": q[n:],
        "ok": bool(fx.converged and fr.converged and sig_fit.converged and bkg_fit.converged and np.all(ok)),
        "seconds": time.perf_counter() - t0,
    }


def combine_toys(chunks: Sequence[dict[str, Any]]) -> dict[str, Any]:
    """CLs observed and expected band from all chunks of a point (in chunk order).

    Same p-values and percentiles as :func:`histgym.infer.toys.toy_hypotest`.
    """
    from ..infer.toys import NORMAL_PERCENTILES, _cls, _tail

    sig = np.sort(np.concatenate([c["q_sig"] for c in chunks]))
    bkg = np.sort(np.concatenate([c["q_bkg"] for c in chunks]))
    q_obs = np.array([chunks[0]["q_obs"]])
    clsb = _tail(sig, q_obs)
    clb = _tail(bkg, q_obs)
    cls = float(_cls(clsb, clb)[0])
    e_cls = _cls(_tail(sig, bkg), _tail(bkg, bkg))
    band = np.percentile(e_cls, NORMAL_PERCENTILES, method="linear")
    return {
        "cls_obs": cls,
        "cls_exp": [float(b) for b in band],
        "fit_ok": all(c["ok"] for c in chunks),
        "seconds": sum(c["seconds"] for c in chunks),
    }
