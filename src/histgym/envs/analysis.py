"""Environments layer: analysis design on simulated events (cuts and binning chosen by an agent).

:class:`AnalysisCore` is the functional core: the prepared events, the histgym model compiled
once from the pyhf workspace of the starting analysis, and the packed kernel arguments; its
state is struct-of-arrays with the batch axis first.  A step is one compiled call
(``histgym._kernels.histogram.analysis_step``): move the thresholds and edges, update the
histograms incrementally, check the minimum-background requirement, write the templates into
the model and score it with the same ``_evaluate`` as the histogram environments.
:class:`AnalysisEnv` (``gymnasium.Env``) and :class:`AnalysisVectorEnv` (native
``VectorEnv``) are thin adapters over it.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, SupportsFloat

import gymnasium
import numpy as np
import numpy.typing as npt
from gymnasium import spaces
from gymnasium.utils import seeding
from gymnasium.vector import AutoresetMode, VectorEnv
from gymnasium.vector.utils import batch_space

from .._kernels import env_step as K
from .._kernels import histogram as HK
from .._kernels.layout import field_slice
from ..errors import InvalidParameters, did_you_mean
from ..events.analysis import Analysis
from ..events.inputs import InvalidAnalysis
from ..events.prepare import PreparedEvents, prepare, split_templates, workspace_spec
from ..model import Model, from_pyhf

__all__ = [
    "AnalysisCore",
    "AnalysisEnv",
    "AnalysisVectorEnv",
    "AnalysisResult",
    "make_analysis_env",
    "make_analysis_design_env",
    "make_analysis_design_vector_env",
    "ANALYSIS_METRICS",
]

FloatArray = npt.NDArray[np.float64]
ANALYSIS_METRICS = ("z0", "q0", "limit")
_VIOLATIONS = {
    HK.V_OK: None,
    HK.V_MIN_EVENTS: "min_background_events",
    HK.V_REL_STAT: "min_background_rel_stat_error",
    HK.V_NEGATIVE: "negative_yield",
    HK.V_NORM: "non_positive_variation",
}
_STATIC = (
    "ev_off", "view_off", "fine_off", "fine", "w_off", "wc", "W", "vc", "h_off", "srt_off",
    "srt_idx", "srt_val", "thr_srt", "thr_kind", "thr_lo", "thr_hi", "str_off", "str_e",
    "str_cell", "str_woff", "str_w", "thr_str",
)


def _choice(kind: str, value: Any, choices: Sequence[Any]) -> None:
    if value not in choices:
        msg = f"unknown {kind} {value!r}; expected one of {list(choices)}."
        raise InvalidAnalysis(msg + did_you_mean(str(value), [str(c) for c in choices]))


@dataclass(frozen=True)
class AnalysisResult:
    """The score of one analysis.

    Attributes:
        value: the metric value (``z0``, ``q0`` or ``-limit``); the floor value when invalid.
        valid: whether the analysis satisfies the minimum-background requirement.
        violation: the violated requirement (None when valid); ``bin`` its bin.
        cuts: threshold values (float64 [n_thr]); ``edges`` bin edges (float64 [B + 1]).
    """

    value: float
    valid: bool
    violation: str | None
    bin: int
    cuts: FloatArray
    edges: FloatArray


class AnalysisState:
    """Per-environment state (batch axis first); every attribute is an array [N, ...]."""

    def __init__(self, core: AnalysisCore, n: int) -> None:
        prep = core.prep
        sz = prep.state_sizes()
        B = prep.n_bins
        m = core.model
        self.thr = np.zeros((n, prep.n_thr))
        self.edge_f = np.zeros((n, B - 1))
        self.ek = np.zeros((n, B + 1), dtype=np.int64)
        self.pos = np.zeros((n, sz["K"], prep.n_thr), dtype=np.int64)
        self.fail = np.zeros((n, sz["E"]), dtype=np.int8)
        self.H = np.zeros((n, sz["H"]))
        self.T = np.zeros((n, sz["T"]))
        self.Tn = np.zeros((n, sz["T"]))
        self.fbuf = np.ascontiguousarray(np.repeat(m.fbuf[None, :], n, axis=0))
        self.data = np.ascontiguousarray(np.repeat(core.base_data[None, :], n, axis=0))
        self.x = np.zeros((n, 2, m.n_params))
        self.out = np.zeros((n, K.N_OUT))
        self.st_i = np.zeros((n, HK.N_ST_I), dtype=np.int64)
        self.step = np.zeros(n, dtype=np.int64)

    def arrays(self) -> tuple[Any, ...]:
        """The state arrays in the kernel's argument order."""
        return (self.thr, self.edge_f, self.ek, self.pos, self.fail, self.H, self.T,
                self.Tn, self.fbuf, self.data, self.x, self.out, self.st_i)


class AnalysisCore:
    """Everything fixed for the lifetime of analysis environments (see the module docstring).

    Args:
        analysis: the :class:`~histgym.events.Analysis`, or a prepared one.
        reward_metric: ``"z0"`` (default), ``"q0"`` or ``"limit"`` (negative expected 95 % CLs
            upper limit on the POI, ``qtilde``, asymptotics, as ``pyhf.infer.intervals``).
        reward_mode: ``"value"`` or ``"delta"``.
        data: ``"asimov"`` only (expected data of the current analysis at POI = 1, nuisance
            parameters nominal).
        cut_scale: a threshold moves by at most this fraction of its range per step.
        edge_scale: an inner edge moves by at most this fraction of the gap to its neighbour
            (<= 0.5, keeps edges ordered).
        mle_max_iter, mle_tol: Newton fit settings.
    """

    def __init__(self, analysis: Analysis | PreparedEvents, *, reward_metric: str = "z0",
                 reward_mode: str = "value", data: str = "asimov", cut_scale: float = 0.02,
                 edge_scale: float = 0.25, mle_max_iter: int = 200,
                 mle_tol: float = 1e-6) -> None:
        _choice("reward_metric", reward_metric, ANALYSIS_METRICS)
        _choice("reward_mode", reward_mode, ("value", "delta"))
        _choice("data", data, ("asimov",))
        if not (math.isfinite(float(cut_scale)) and 0.0 < float(cut_scale) <= 1.0):
            raise InvalidAnalysis(f"cut_scale must be in (0, 1], got {cut_scale!r}")
        if not (math.isfinite(float(edge_scale)) and 0.0 < float(edge_scale) <= 0.5):
            raise InvalidAnalysis(f"edge_scale must be in (0, 0.5], got {edge_scale!r}")
        if not (int(mle_max_iter) > 0 and float(mle_tol) > 0.0):
            raise InvalidAnalysis("mle_max_iter must be > 0 and mle_tol > 0")
        prep = analysis if isinstance(analysis, PreparedEvents) else prepare(analysis)
        self.prep = prep
        self.analysis = prep.analysis
        self.reward_metric = reward_metric
        self.reward_mode = reward_mode
        self.options = dict(reward_metric=reward_metric, reward_mode=reward_mode, data=data,
                            cut_scale=float(cut_scale), edge_scale=float(edge_scale),
                            mle_max_iter=int(mle_max_iter), mle_tol=float(mle_tol))
        an = prep.analysis
        B = prep.n_bins
        mb = an.min_background
        self.acfg_f = np.array([float(cut_scale), float(edge_scale), float(mb.events),
                                float(mb.rel_stat_error or 0.0)])
        self.static = tuple(prep.arrays[k] for k in _STATIC)
        # templates of the starting analysis, computed by the kernels themselves
        thr0 = prep.thr_init.copy()
        ef0 = prep.equal_width_edges()
        T0, code, where = self._templates_at(thr0, ef0)
        if code != HK.V_OK:
            raise InvalidAnalysis(
                f"the starting analysis violates the requirement {_VIOLATIONS[code]!r} in bin "
                f"{where}; loosen the cuts or the min_background requirement"
            )
        nominal_obs = split_templates(prep, T0)["Y"].sum(axis=0)
        self.spec0 = workspace_spec(prep, T0, nominal_obs)
        model = from_pyhf(self.spec0)
        self.model = model
        comp = model._compiled
        ch = an.channel
        self.cell = np.ascontiguousarray(
            np.stack([comp.cell_of[(ch, p)] for p in prep.processes]), dtype=np.int64
        )
        ib = model.ibuf
        add_par = ib[field_slice("add_par", ib)]
        fac_ptr = ib[field_slice("fac_ptr", ib)]
        fac_par = ib[field_slice("fac_par", ib)]
        fac_ref = ib[field_slice("fac_ref", ib)]
        nsh = len(prep.shape_entries)
        sh_hs = -np.ones((nsh, B), dtype=np.int64)
        sh_ns = -np.ones((nsh, B), dtype=np.int64)
        for i, (p, s) in enumerate(prep.shape_entries):
            par = model.par_slice(s).start
            for e, b in comp.add_of.get((ch, p), []):
                if add_par[e] == par:
                    sh_hs[i, b] = e
            pi = prep.processes.index(p)
            for b in range(B):
                c = self.cell[pi, b]
                for j in range(fac_ptr[c], fac_ptr[c + 1]):
                    if fac_par[j] == par and fac_ref[j] >= 0:
                        sh_ns[i, b] = fac_ref[j]
        st_gauss = -np.ones(B, dtype=np.int64)
        if an.staterror:
            info = comp.staterror[f"staterror_{ch}"]
            for k, g in enumerate(info["gauss"]):
                st_gauss[info["bins"][k]] = g
        self.sh_hs, self.sh_ns, self.st_gauss = sh_hs, sh_ns, st_gauss
        poi = model.poi_index
        assert poi is not None  # the exported workspace always has the POI
        self.poi = int(poi)
        init = model.suggested_init()
        bounds = model.suggested_bounds()
        p_as = init.copy()
        p_as[poi] = 1.0
        self.pvec = np.ascontiguousarray(np.stack([init, bounds[:, 0], bounds[:, 1], init, p_as]))
        fixed = model.suggested_fixed()
        cond = fixed.copy()
        cond[poi] = True
        self.fixed2 = np.ascontiguousarray(np.stack([fixed, cond]))
        self.base_data = np.ascontiguousarray(model.expected_data(p_as))
        cfg_i = np.zeros(K.N_CFG_I, dtype=np.int64)
        cfg_i[K.CI_METRIC] = K.M_Q0 if reward_metric == "q0" else K.M_Z0
        cfg_i[K.CI_ASIMOV] = 1
        cfg_i[K.CI_DELTA] = 1 if reward_mode == "delta" else 0
        cfg_i[K.CI_POI] = self.poi
        cfg_i[K.CI_MAXIT] = int(mle_max_iter)
        self.cfg_i = cfg_i
        cfg_f = np.zeros(K.N_CFG_F)
        cfg_f[K.CF_TOL] = float(mle_tol)
        self.cfg_f = cfg_f
        self.score = 0 if reward_metric == "limit" else 1
        self.floor = 0.0 if reward_metric != "limit" else -float(bounds[poi, 1])
        self.thr0 = thr0
        self.edge0 = ef0
        self._mid = (prep.arrays["proc_view"], prep.arrays["sh_src"], prep.arrays["is_bkg"],
                     self.cell, sh_hs, sh_ns, st_gauss, HK.CODE4_AINV, self.acfg_f, cfg_i,
                     cfg_f, self.pvec, self.fixed2, model.ibuf)
        sig = prep.processes.index(an.signal)
        Y0 = split_templates(prep, T0)["Y"]
        self.norm_sig = float(max(Y0[sig].sum(), 1e-300))
        self.norm_bkg = float(max(np.delete(Y0, sig, axis=0).sum(), 1e-300))
        self.sig_index = sig
        self._n_proc = len(prep.processes)

    # ------------------------------------------------------------------ kernels
    def _templates_at(self, thr: FloatArray, edge_f: FloatArray) -> tuple[FloatArray, int, int]:
        prep = self.prep
        sz = prep.state_sizes()
        B = prep.n_bins
        pos = np.zeros((sz["K"], prep.n_thr), dtype=np.int64)
        fail = np.zeros(sz["E"], dtype=np.int8)
        H = np.zeros(sz["H"])
        a = prep.arrays
        HK.rebuild(thr.copy(), a["ev_off"], a["view_off"], a["fine_off"], a["fine"], a["w_off"],
                   a["wc"], a["W"], a["vc"], a["h_off"], a["srt_off"], a["srt_idx"],
                   a["srt_val"], a["thr_srt"], a["thr_kind"], prep.G, pos, fail, H)
        ek = np.zeros(B + 1, dtype=np.int64)
        HK.quantize_edges(edge_f.copy(), prep.G, ek)
        T = np.zeros(sz["T"])
        code, where = HK.templates(H, a["h_off"], a["vc"], ek, a["proc_view"], a["sh_src"],
                                   a["is_bkg"], self.acfg_f, T)
        return T, int(code), int(where)

    def new_state(self, n: int) -> AnalysisState:
        """Fresh (not yet reset) state for ``n`` environments."""
        return AnalysisState(self, n)

    def run(self, st: AnalysisState, mask: npt.NDArray[np.bool_], mode: int,
            actions: FloatArray | None = None, thr: FloatArray | None = None,
            edges: FloatArray | None = None, parallel: bool = False) -> None:
        """Advance the rows in ``mask``: mode 0 actions [N, n_act], 1 move / 2 reset to
        ``thr`` [N, n_thr] and ``edges`` [N, B-1] (grid units); ``parallel`` runs the rows in
        numba threads."""
        n = mask.shape[0]
        prep = self.prep
        a = actions if actions is not None else np.zeros((n, self.n_action))
        t = thr if thr is not None else st.thr
        e = edges if edges is not None else st.edge_f
        rows = np.flatnonzero(mask)
        if n == 1 or rows.size == 1:
            r = int(rows[0]) if rows.size else 0
            if rows.size:
                HK.analysis_step(mode, a[r], t[r], e[r], *self.static, prep.G, *self._mid,
                                 self.score, *(x[r] for x in st.arrays()))
        else:
            f = HK.analysis_step_batch if parallel else HK.analysis_step_batch_serial
            f(mask, mode, a, t, e, *self.static, prep.G, *self._mid, self.score, *st.arrays())
        if self.score == 0:
            for r in rows:
                self._score_limit(st, int(r), mode == 2)

    def _score_limit(self, st: AnalysisState, r: int, first: bool) -> None:
        out = st.out[r]
        if st.st_i[r, 3] == 1:
            value, status = self.limit_value(st.fbuf[r], st.data[r])
            prev = out[K.O_VALUE]
            ok = status == 0
            if ok or first:
                out[K.O_VALUE] = value
            out[K.O_METRIC] = -value
            out[K.O_STATUS] = status
            out[K.O_OK] = 1.0 if ok else 0.0
            if self.reward_mode == "delta":
                out[K.O_REWARD] = 0.0 if first else out[K.O_VALUE] - prev
            else:
                out[K.O_REWARD] = out[K.O_VALUE]

    def limit_value(self, fbuf: FloatArray, data: FloatArray) -> tuple[float, int]:
        """(-expected median 95 % CLs upper limit, status) of the model buffer ``fbuf``."""
        import warnings

        from ..errors import FitWarning
        from ..infer.limits import upper_limit

        m = self.model
        model = Model(m.config, m.spec, m.observed_data(), m._compiled, fbuf.copy())
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", FitWarning)
            r = upper_limit(model, data.copy())
        v = -float(r.exp[2])
        if not math.isfinite(v):
            return self.floor, 3
        return v, 0 if r.converged else 1

    @property
    def n_action(self) -> int:
        """Action size: thresholds then inner edges."""
        return self.prep.n_thr + self.prep.n_bins - 1

    # ------------------------------------------------------------------ views
    def observation(self, st: AnalysisState) -> FloatArray:
        """Observations float64 [N, n_thr + B - 1 + 2 B] (see :class:`AnalysisEnv`)."""
        prep = self.prep
        lo, hi = prep.thr_lo, prep.thr_hi
        cuts = (st.thr - lo) / (hi - lo)
        edges = st.ek[:, 1:-1] / prep.G
        P = len(prep.processes)
        B = prep.n_bins
        Y = st.T[:, : P * B].reshape(-1, P, B)
        sig = Y[:, self.sig_index] / self.norm_sig
        bkg = (Y.sum(axis=1) - Y[:, self.sig_index]) / self.norm_bkg
        obs = np.concatenate([cuts, edges, np.maximum(sig, 0.0), np.maximum(bkg, 0.0)], axis=1)
        return np.ascontiguousarray(obs, dtype=np.float64)

    def observation_row(self, st: AnalysisState, r: int = 0) -> FloatArray:
        """The observation of row ``r`` (float64 [n_thr + B - 1 + 2 B]), one compiled call."""
        prep = self.prep
        out = np.empty(prep.n_thr + 3 * prep.n_bins - 1)
        HK.observation(st.thr[r], prep.thr_lo, prep.thr_hi, st.ek[r], prep.G, st.T[r],
                       self._n_proc, self.sig_index, self.norm_sig, self.norm_bkg, out)
        return out

    def edges(self, st: AnalysisState, r: int = 0) -> FloatArray:
        """Bin edges (fit-observable units) of row ``r`` (float64 [B + 1])."""
        return self.prep.edges_value(st.ek[r])

    def workspace(self, st: AnalysisState, r: int = 0) -> dict[str, Any]:
        """The pyhf workspace of row ``r``'s current analysis (observations: its Asimov data)."""
        return workspace_spec(self.prep, st.T[r], st.data[r][: self.prep.n_bins])

    def check_analysis(self, cuts: Any, edges: Any) -> tuple[FloatArray, FloatArray]:
        """Validate user cuts (float [n_thr]) and inner edges (float [B-1], observable units).

        Returns (thresholds, inner edges in grid units).
        """
        prep = self.prep
        c = np.asarray(prep.thr_init if cuts is None else cuts, dtype=np.float64)
        if c.shape != (prep.n_thr,) or not np.all(np.isfinite(c)):
            raise InvalidParameters(
                f"cuts must be {prep.n_thr} finite thresholds ({prep.thr_names}), got {np.asarray(cuts)!r}"
            )
        if edges is None:
            return c, prep.equal_width_edges()
        e = np.asarray(edges, dtype=np.float64)
        B = prep.n_bins
        lo, hi = prep.analysis.range
        if e.shape == (B + 1,):
            e = e[1:-1]
        if e.shape != (B - 1,) or not np.all(np.isfinite(e)) or np.any(np.diff(e) <= 0) or (
            e.size and (e[0] <= lo or e[-1] >= hi)
        ):
            raise InvalidParameters(
                f"edges must be {B - 1} increasing inner edges inside ({lo}, {hi}) "
                f"(or {B + 1} edges), got {np.asarray(edges)!r}"
            )
        return c, prep.edges_to_grid(e)

    def info(self, st: AnalysisState, r: int = 0) -> dict[str, Any]:
        """The info dict of row ``r``."""
        o = st.out[r]
        code = int(st.st_i[r, 0])
        info: dict[str, Any] = {
            "step": int(st.step[r]),
            "reward_metric": self.reward_metric,
            "value": float(o[K.O_VALUE]),
            "valid": code == HK.V_OK,
            "violation": _VIOLATIONS.get(code),
            "violation_bin": int(st.st_i[r, 1]),
            "events_visited": int(st.st_i[r, 2]),
            "cuts": dict(zip(self.prep.thr_names, st.thr[r].tolist())),
            "edges": self.edges(st, r),
            "fit_status": int(o[K.O_STATUS]),
            "fit_ok": bool(o[K.O_OK] == 1.0),
        }
        if self.reward_metric == "limit":
            info["limit"] = -float(o[K.O_VALUE])
        else:
            q = float(o[K.O_METRIC])
            info["q0"] = q
            info["z0"] = math.sqrt(q) if q >= 0.0 else float("nan")
            info["mu_hat"] = float(o[K.O_MUHAT])
        return info


class AnalysisEnv(gymnasium.Env[FloatArray, npt.NDArray[np.float32]]):
    """Choose cut thresholds and bin edges of an analysis on simulated events.

    ## Description
    The events of a signal and its backgrounds (with systematic variations) are selected by
    tunable cuts and binned in the fit observable; the agent moves the thresholds and the inner
    bin edges, and is rewarded with the expected sensitivity of the resulting HistFactory model
    (POI normfactor on the signal, normsys, lumi, NormPlusShape shape systematics, staterror
    from the sum of squared weights), computed by the same compiled fits as
    :class:`~histgym.envs.HistFactoryEnv`.  :meth:`workspace` exports the current analysis as a
    pyhf workspace on which pyhf computes the same value.

    ## Observation Space
    ``Box(0, inf, (n_thr + B - 1 + 2 B,), float64)``: thresholds scaled to their ranges (0..1),
    inner edges scaled to the fit range (0..1), signal yields per bin divided by the starting
    analysis's total signal, total background per bin divided by its starting total.

    ## Action Space
    ``Box(-1, 1, (n_thr + B - 1,), float32)`` (entries clipped to [-1, 1]): threshold ``j``
    moves by ``cut_scale * a_j * (range width)`` (clipped to its range); inner edge ``j`` moves
    by ``edge_scale * a`` times the gap to its neighbour on the side it moves to (edges stay
    ordered and inside the range); edges live on a grid of ``fine_bins`` cells.

    ## Rewards
    ``reward_metric``: ``"z0"`` (expected discovery significance, Asimov data of the current
    analysis at POI = 1, nuisance parameters profiled), ``"q0"``, or ``"limit"`` (minus the
    expected median 95 % CLs upper limit on the POI).  ``reward_mode="delta"`` returns the
    change of the value.  **Minimum background**: a proposal for which a bin has less
    background than ``min_background.events`` (or a larger relative MC statistical
    uncertainty than ``min_background.rel_stat_error``), a negative yield, or a vanishing
    systematic variation is *rejected*: the previous analysis is kept, the reward is its value
    (0 with ``"delta"``) and ``info["valid"]`` is False with the reason in
    ``info["violation"]``.  An empty selection is therefore never adopted; rewards are never
    NaN (a failed fit keeps the last good value, as in the histogram environments).

    ## Starting State
    The description's initial cuts and equal-width bins (or ``reset(options={"cuts": ...,
    "edges": ...})``).

    ## Episode End
    Never terminated; truncated after ``max_steps`` steps.

    ## Arguments
    | argument | default | meaning |
    |---|---|---|
    | ``analysis`` | toy | an :class:`~histgym.events.Analysis`, a YAML/JSON path or dict |
    | ``reward_metric`` | ``"z0"`` | ``z0``, ``q0``, ``limit`` |
    | ``reward_mode`` | ``"value"`` | or ``"delta"`` |
    | ``data`` | ``"asimov"`` | the only choice (simulated events have no observed data) |
    | ``max_steps`` | 100 | episode length |
    | ``cut_scale``, ``edge_scale`` | 0.02, 0.25 | step sizes (a step visits only the events
    crossing a moved threshold, so its cost grows with ``cut_scale``) |

    ## Vectorized environment
    :class:`AnalysisVectorEnv` (``gymnasium.make_vec("histgym/AnalysisDesign-v0", num_envs=N,
    vectorization_mode="vector_entry_point")``) steps N analyses in one compiled loop.

    ## Version History
    * v0: initial version.
    """

    metadata = {"render_modes": ["ansi"], "render_fps": 4}

    def __init__(self, analysis: Any = None, *, reward_metric: str = "z0",
                 reward_mode: str = "value", data: str = "asimov", max_steps: int = 100,
                 cut_scale: float = 0.02, edge_scale: float = 0.25, mle_max_iter: int = 200,
                 mle_tol: float = 1e-6, render_mode: str | None = None,
                 core: AnalysisCore | None = None) -> None:
        if render_mode is not None and render_mode not in self.metadata["render_modes"]:
            raise InvalidAnalysis(f"render_mode must be 'ansi' or None, got {render_mode!r}")
        if not (isinstance(max_steps, (int, np.integer)) and max_steps > 0):
            raise InvalidAnalysis(f"max_steps must be a positive integer, got {max_steps!r}")
        if core is None:
            core = AnalysisCore(
                _as_analysis(analysis), reward_metric=reward_metric, reward_mode=reward_mode,
                data=data, cut_scale=cut_scale, edge_scale=edge_scale,
                mle_max_iter=mle_max_iter, mle_tol=mle_tol,
            )
        self.core = core
        self.render_mode = render_mode
        self.reward_metric = core.reward_metric
        self.max_steps = int(max_steps)
        n_obs = core.prep.n_thr + 3 * core.prep.n_bins - 1
        self.observation_space = spaces.Box(0.0, np.inf, shape=(n_obs,), dtype=np.float64)
        self.action_space = spaces.Box(-1.0, 1.0, shape=(core.n_action,), dtype=np.float32)
        self._st = core.new_state(1)
        self._mask = np.ones(1, dtype=bool)
        # the kernel arguments of one step, bound once (views into the state)
        self._fixed = (*core.static, core.prep.G, *core._mid, core.score)
        self._rows = tuple(x[0] for x in self._st.arrays())
        self._goto(core.thr0, core.edge0, 2)

    @property
    def analysis(self) -> Analysis:
        """The analysis description."""
        return self.core.analysis

    @property
    def cuts(self) -> FloatArray:
        """Current thresholds (float64 [n_thr], in the order of ``core.prep.thr_names``)."""
        return self._st.thr[0].copy()

    @property
    def edges(self) -> FloatArray:
        """Current bin edges (float64 [B + 1], fit-observable units)."""
        return self.core.edges(self._st)

    def workspace(self) -> dict[str, Any]:
        """The current analysis as a pyhf workspace (observations: its Asimov data)."""
        return self.core.workspace(self._st)

    def _goto(self, thr: FloatArray, edge_f: FloatArray, mode: int) -> None:
        self.core.run(self._st, self._mask, mode, thr=thr[None, :].copy(),
                      edges=edge_f[None, :].copy())

    def reset(self, *, seed: int | None = None,
              options: dict[str, Any] | None = None) -> tuple[FloatArray, dict[str, Any]]:
        """Start an episode at the initial analysis, or at ``options["cuts"]``/``["edges"]``.

        Raises:
            InvalidParameters: bad cuts/edges or unknown options.
            InvalidAnalysis: the requested analysis violates the minimum-background requirement.
        """
        super().reset(seed=seed)
        if seed is not None:
            self.action_space.seed(int(seed))
        opts = dict(options or {})
        cuts = opts.pop("cuts", None)
        edges = opts.pop("edges", None)
        if opts:
            raise InvalidParameters(f"unknown reset options {sorted(opts)}; known: ['cuts', 'edges']")
        thr, ef = self.core.check_analysis(cuts, edges)
        self._goto(thr, ef, 2)
        if self._st.st_i[0, 0] != HK.V_OK:
            v = _VIOLATIONS[int(self._st.st_i[0, 0])]
            self._goto(self.core.thr0, self.core.edge0, 2)
            raise InvalidAnalysis(f"the requested analysis violates {v!r} in bin {int(self._st.st_i[0, 1])}")
        self._st.step[0] = 0
        return self.core.observation(self._st)[0], self.core.info(self._st)

    def step(self, action: Any) -> tuple[FloatArray, SupportsFloat, bool, bool, dict[str, Any]]:
        """Move the cuts and edges by ``action``; see the class docstring."""
        a = np.asarray(action, dtype=np.float64)
        if a.shape != (self.core.n_action,):
            raise InvalidParameters(f"action has shape {a.shape}; expected ({self.core.n_action},)")
        if not math.isfinite(a.sum()):
            bad = np.flatnonzero(~np.isfinite(a))[:5].tolist()
            raise InvalidParameters(f"action has non-finite entries at {bad}")
        rows = self._rows
        HK.analysis_step(0, a, rows[0], rows[1], *self._fixed, *rows)
        if self.core.score == 0:
            self.core._score_limit(self._st, 0, False)
        st = self._st
        st.step[0] += 1
        reward = float(st.out[0, K.O_REWARD])
        trunc = bool(st.step[0] >= self.max_steps)
        return self.core.observation_row(st), reward, False, trunc, self.core.info(st)

    def evaluate(self, cuts: Any, edges: Any = None) -> AnalysisResult:
        """Score an analysis (thresholds [n_thr], inner edges [B-1] or all edges [B+1]).

        The environment moves there when the analysis is valid (the step counter is
        unchanged); an invalid analysis gets the floor value (0 for ``z0``/``q0``, minus the
        POI's upper bound for ``limit``) and the environment stays where it was.
        """
        thr, ef = self.core.check_analysis(cuts, edges)
        self.core.run(self._st, self._mask, 1, thr=thr[None, :].copy(), edges=ef[None, :].copy())
        code = int(self._st.st_i[0, 0])
        ek = np.zeros(self.core.prep.n_bins + 1, dtype=np.int64)
        HK.quantize_edges(ef.copy(), self.core.prep.G, ek)
        return AnalysisResult(
            value=float(self._st.out[0, K.O_VALUE]) if code == HK.V_OK else self.core.floor,
            valid=code == HK.V_OK,
            violation=_VIOLATIONS.get(code),
            bin=int(self._st.st_i[0, 1]),
            cuts=np.clip(thr, self.core.prep.thr_lo, self.core.prep.thr_hi),
            edges=self.core.prep.edges_value(ek),
        )

    def render(self) -> Any:
        """``"ansi"``: the cuts, edges and per-bin yields as text."""
        if self.render_mode is None:
            gymnasium.logger.warn("render() called without a render_mode; nothing to render")
            return None
        info = self.core.info(self._st)
        t = split_templates(self.core.prep, self._st.T[0])
        lines = [f"step {info['step']}  {self.reward_metric} value {info['value']:.4f}"]
        lines.append("cuts: " + ", ".join(f"{k} {v:.4g}" for k, v in info["cuts"].items()))
        e = info["edges"]
        for b in range(self.core.prep.n_bins):
            s = t["Y"][self.core.sig_index, b]
            bk = t["Y"][:, b].sum() - s
            lines.append(f"[{e[b]:9.4g}, {e[b + 1]:9.4g})  signal {s:10.4g}  background {bk:10.4g}")
        return "\n".join(lines)


class AnalysisVectorEnv(VectorEnv):
    """``num_envs`` analysis environments stepped in one compiled loop (autoreset NEXT_STEP).

    Same arguments as :class:`AnalysisEnv` plus ``num_envs`` and ``parallel`` (numba threads
    over the rows).  The step after a truncation resets that row (its action is ignored,
    reward 0).  ``infos`` holds per-row arrays (``value``, ``valid``, the metric, ``fit_ok``)
    with Gymnasium's ``_key`` masks.
    """

    metadata = {"render_modes": [], "autoreset_mode": AutoresetMode.NEXT_STEP}

    def __init__(self, analysis: Any = None, *, num_envs: int = 1, max_steps: int = 100,
                 parallel: bool = False, render_mode: str | None = None,
                 core: AnalysisCore | None = None, **kwargs: Any) -> None:
        if not (isinstance(num_envs, (int, np.integer)) and num_envs > 0):
            raise InvalidAnalysis(f"num_envs must be a positive integer, got {num_envs!r}")
        if render_mode is not None:
            raise InvalidAnalysis("AnalysisVectorEnv does not render; use AnalysisEnv")
        if not (isinstance(max_steps, (int, np.integer)) and max_steps > 0):
            raise InvalidAnalysis(f"max_steps must be a positive integer, got {max_steps!r}")
        self.core = core if core is not None else AnalysisCore(_as_analysis(analysis), **kwargs)
        c = self.core
        self.num_envs = int(num_envs)
        self.render_mode = None
        self.max_steps = int(max_steps)
        self.parallel = bool(parallel)
        n_obs = c.prep.n_thr + 3 * c.prep.n_bins - 1
        self.single_observation_space = spaces.Box(0.0, np.inf, shape=(n_obs,), dtype=np.float64)
        self.single_action_space = spaces.Box(-1.0, 1.0, shape=(c.n_action,), dtype=np.float32)
        self.observation_space = batch_space(self.single_observation_space, self.num_envs)
        self.action_space = batch_space(self.single_action_space, self.num_envs)
        self._st = c.new_state(self.num_envs)
        self._autoreset = np.zeros(self.num_envs, dtype=bool)
        self._thr0 = np.ascontiguousarray(np.repeat(c.thr0[None, :], self.num_envs, axis=0))
        self._edge0 = np.ascontiguousarray(np.repeat(c.edge0[None, :], self.num_envs, axis=0))
        self._rng = seeding.np_random(None)[0]

    def _run(self, mask: npt.NDArray[np.bool_], mode: int, actions: FloatArray | None = None) -> None:
        self.core.run(self._st, mask, mode, actions=actions, thr=self._thr0, edges=self._edge0,
                      parallel=self.parallel)

    def reset(self, *, seed: int | Sequence[int | None] | None = None,
              options: dict[str, Any] | None = None) -> tuple[FloatArray, dict[str, Any]]:
        """Reset every row to the starting analysis."""
        if options:
            raise InvalidParameters(f"unknown reset options {sorted(options)}")
        if seed is not None:
            s0 = seed if isinstance(seed, int) else next((s for s in seed if s is not None), None)
            self._rng = seeding.np_random(s0)[0]
            self.action_space.seed(s0)
        mask = np.ones(self.num_envs, dtype=bool)
        self._run(mask, 2)
        self._st.step[:] = 0
        self._autoreset[:] = False
        return self.core.observation(self._st), self._infos()

    def step(self, actions: Any) -> tuple[FloatArray, FloatArray, npt.NDArray[np.bool_],
                                          npt.NDArray[np.bool_], dict[str, Any]]:
        """Step every row (rows truncated at the previous step are reset)."""
        a = np.ascontiguousarray(actions, dtype=np.float64)
        shape = (self.num_envs, self.core.n_action)
        if a.shape != shape:
            raise InvalidParameters(f"actions have shape {a.shape}; expected {shape}")
        if not np.isfinite(a).all():
            rows = np.flatnonzero(~np.isfinite(a).all(axis=1))[:5].tolist()
            raise InvalidParameters(f"actions have non-finite entries in rows {rows}")
        st = self._st
        resetting = self._autoreset.copy()
        stepping = ~resetting
        if resetting.any():
            self._run(resetting, 2)
            st.step[resetting] = 0
        if stepping.any():
            self._run(stepping, 0, actions=a)
        st.step[stepping] += 1
        rewards = st.out[:, K.O_REWARD].copy()
        rewards[resetting] = 0.0
        trunc = stepping & (st.step >= self.max_steps)
        term = np.zeros(self.num_envs, dtype=bool)
        self._autoreset = trunc | term
        return self.core.observation(st), rewards, term, trunc, self._infos()

    def workspace(self, i: int = 0) -> dict[str, Any]:
        """The pyhf workspace of row ``i``'s current analysis."""
        return self.core.workspace(self._st, i)

    def _infos(self) -> dict[str, Any]:
        o = self._st.out
        infos: dict[str, Any] = {
            "step": self._st.step.copy(),
            "value": o[:, K.O_VALUE].copy(),
            "valid": self._st.st_i[:, 0] == HK.V_OK,
            "fit_ok": o[:, K.O_OK] == 1.0,
        }
        if self.core.reward_metric == "limit":
            infos["limit"] = -o[:, K.O_VALUE]
        else:
            infos["q0"] = o[:, K.O_METRIC].copy()
            infos["z0"] = np.sqrt(np.maximum(o[:, K.O_METRIC], 0.0))
        for key in list(infos):
            infos["_" + key] = np.ones(self.num_envs, dtype=bool)
        return infos


def _as_analysis(analysis: Any) -> Analysis | PreparedEvents:
    if analysis is None:
        from ..events.toy import toy_analysis

        return toy_analysis()
    if isinstance(analysis, (Analysis, PreparedEvents)):
        return analysis
    from ..events.analysis import load_analysis

    return load_analysis(analysis)


def make_analysis_env(analysis: Any = None, **kwargs: Any) -> AnalysisEnv:
    """An :class:`AnalysisEnv` on ``analysis`` (an Analysis, YAML/JSON path or dict).

    Example:
        >>> from histgym.envs.analysis import make_analysis_env
        >>> from histgym.events import toy_analysis
        >>> env = make_analysis_env(toy_analysis(n_events=2000))
        >>> obs, info = env.reset(seed=0)
        >>> info["valid"], info["value"] > 0
        (True, True)
    """
    return AnalysisEnv(analysis, **kwargs)


def make_analysis_design_env(seed: int = 0, n_events: int = 100_000, **kwargs: Any) -> AnalysisEnv:
    """The built-in toy search (:func:`histgym.events.toy_analysis`) as an :class:`AnalysisEnv`
    (``reward_metric="z0"``, ``data="asimov"`` by default)."""
    from ..events.toy import toy_analysis

    return AnalysisEnv(toy_analysis(seed=seed, n_events=n_events), **kwargs)


def make_analysis_design_vector_env(num_envs: int = 1, seed: int = 0, n_events: int = 100_000,
                                    **kwargs: Any) -> AnalysisVectorEnv:
    """Vector form of :func:`make_analysis_design_env`."""
    from ..events.toy import toy_analysis

    return AnalysisVectorEnv(toy_analysis(seed=seed, n_events=n_events), num_envs=num_envs,
                             **kwargs)
