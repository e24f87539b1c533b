"""The compiled incremental histogramming against np.histogram and boost-histogram."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from histgym._kernels import histogram as HK
from histgym.events import Analysis, prepare
from histgym.events.prepare import split_templates


def _events(seed, n):
    rng = np.random.default_rng(seed)
    out = {}
    for p in ("sig", "bkg"):
        x = rng.uniform(-0.2, 1.2, n)  # some events outside the fit range [0, 1]
        x[:5] = [0.0, 1.0, 0.5, 0.25, 0.75]  # exactly on grid points
        out[p] = {
            "x": x, "x_up": x + 0.01, "x_dn": x - 0.01,
            "a": rng.normal(size=n), "b": rng.exponential(size=n),
            "w": rng.uniform(-0.2, 1.0, n), "wu": rng.uniform(0, 1, n), "wd": rng.uniform(0, 1, n),
        }
        out[p]["a"][5:8] = 0.0  # ties at a threshold
    return out


EV = _events(0, 3000)
AN = Analysis(
    processes={p: {"source": c, "weight": "w"} for p, c in EV.items()},
    signal="sig", observable="x", range=(0.0, 1.0), bins=5, fine_bins=100,
    cuts=({"observable": "a", "direction": ">", "range": (-3, 3), "init": -3},
          {"observable": "b", "direction": "window", "range": (0, 5), "init": (0, 5)},
          {"observable": "x", "direction": "<", "range": (0, 1), "init": 1}),
    shape_systematics=({"name": "shift", "kind": "observable", "up": {"x": "x_up"},
                        "down": {"x": "x_dn"}},
                       {"name": "wsys", "kind": "weight", "up": "wu", "down": "wd"},
                       {"name": "acut", "kind": "observable", "up": {"a": "b"},
                        "down": {"a": "a"}, "processes": ["bkg"]}),
    min_background={"events": -0.0},
)
PREP = prepare(AN)
A = PREP.arrays


class Hist:
    """Kernel state for one analysis."""

    def __init__(self):
        sz = PREP.state_sizes()
        self.pos = np.zeros((sz["K"], PREP.n_thr), dtype=np.int64)
        self.fail = np.zeros(sz["E"], dtype=np.int8)
        self.H = np.zeros(sz["H"])
        self.thr = PREP.thr_init.copy()
        self.T = np.zeros(sz["T"])
        HK.rebuild(self.thr.copy(), A["ev_off"], A["view_off"], A["fine_off"], A["fine"],
                   A["w_off"], A["wc"], A["W"], A["vc"], A["h_off"], A["srt_off"], A["srt_idx"],
                   A["srt_val"], A["thr_srt"], A["thr_kind"], PREP.G, self.pos, self.fail,
                   self.H)

    def move(self, thr):
        HK.move_thresholds(np.asarray(thr, dtype=np.float64), A["ev_off"], A["view_off"],
                           A["wc"], A["vc"], A["h_off"], A["srt_off"], A["srt_val"],
                           A["thr_srt"], A["thr_kind"], A["str_off"], A["str_e"],
                           A["str_cell"], A["str_woff"], A["str_w"], A["thr_str"], PREP.G,
                           self.thr, self.pos, self.fail, self.H)

    def templates(self, ek):
        acfg = np.array([0.05, 0.25, -1.0, 0.0])
        HK.templates(self.H, A["h_off"], A["vc"], np.asarray(ek, dtype=np.int64),
                     A["proc_view"], A["sh_src"], A["is_bkg"], acfg, self.T)
        return split_templates(PREP, self.T)


def _reference(p, thr, edges, obs="x", weight="w", a_col="a"):
    c = EV[p]
    sel = (c[a_col] > thr[0]) & (c["b"] > thr[1]) & (c["b"] < thr[2]) & (c["x"] < thr[3])
    h, _ = np.histogram(c[obs][sel], bins=edges, weights=c[weight][sel])
    h2, _ = np.histogram(c[obs][sel], bins=edges, weights=c[weight][sel] ** 2)
    return h, h2


thr_st = st.tuples(st.floats(-3, 3), st.floats(0, 5), st.floats(0, 5), st.floats(0, 1))
ek_st = st.lists(st.integers(1, 99), min_size=4, max_size=4, unique=True).map(
    lambda v: [0] + sorted(v) + [100]
)


@settings(deadline=None, max_examples=25)
@given(moves=st.lists(thr_st, min_size=1, max_size=4), ek=ek_st)
def test_incremental_equals_numpy(moves, ek):
    h = Hist()
    for thr in moves:
        h.move(thr)
    thr = moves[-1]
    t = h.templates(ek)
    edges = PREP.edges_value(ek)
    for pi, p in enumerate(PREP.processes):
        want, want2 = _reference(p, thr, edges)
        np.testing.assert_allclose(t["Y"][pi], want, rtol=1e-12, atol=1e-11)
        np.testing.assert_allclose(t["S2"][pi], want2, rtol=1e-12, atol=1e-11)
    # one move from the start gives the same histograms and fail counts
    fresh = Hist()
    fresh.move(thr)
    np.testing.assert_allclose(fresh.H, h.H, rtol=1e-12, atol=1e-11)
    np.testing.assert_array_equal(fresh.fail, h.fail)


@settings(deadline=None, max_examples=15)
@given(thr=thr_st, ek=ek_st)
def test_variations_equal_boost_histogram(thr, ek):
    bh = pytest.importorskip("boost_histogram")
    h = Hist()
    h.move(thr)
    t = h.templates(ek)
    edges = PREP.edges_value(ek)
    for i, (p, s) in enumerate(PREP.shape_entries):
        c = EV[p]
        if s == "shift":
            up_obs, dn_obs, up_w, dn_w, a_up, a_dn = "x_up", "x_dn", "w", "w", "a", "a"
        elif s == "wsys":
            up_obs, dn_obs, up_w, dn_w, a_up, a_dn = "x", "x", "wu", "wd", "a", "a"
        else:
            up_obs, dn_obs, up_w, dn_w, a_up, a_dn = "x", "x", "w", "w", "b", "a"
        pi = PREP.processes.index(p)
        y = t["Y"][pi]
        for obs, w, a_col, tmpl, norm in ((up_obs, up_w, a_up, t["HU"][i], t["NU"][i]),
                                          (dn_obs, dn_w, a_dn, t["HD"][i], t["ND"][i])):
            # the shifted fit observable is also cut on (x < t): the variation moves that cut
            sel = (c[a_col] > thr[0]) & (c["b"] > thr[1]) & (c["b"] < thr[2]) & (c[obs] < thr[3])
            hist = bh.Histogram(bh.axis.Variable(edges), storage=bh.storage.Weight())
            hist.fill(c[obs][sel], weight=c[w][sel])
            raw = hist.values()
            # boost-histogram's last bin is open at the top: add events exactly at the edge
            at_top = sel & (c[obs] == edges[-1])
            raw[-1] += c[w][at_top].sum()
            if y.sum() == 0.0 or raw.sum() <= 0.0:
                # no nominal events: templates = nominal; a vanishing variation: the
                # analysis is invalid (V_NORM) and the factor is stored as 1
                assert norm == 1.0
                continue
            want_norm = raw.sum() / y.sum()
            np.testing.assert_allclose(norm, want_norm, rtol=1e-10)
            np.testing.assert_allclose(tmpl * norm, raw, rtol=1e-10, atol=1e-10)


@settings(deadline=None, max_examples=15)
@given(moves=st.lists(thr_st, min_size=1, max_size=4))
def test_cell_records_count_selected_events(moves):
    """Each view's cell records: count, sum w, sum w^2 per fine cell (np.histogram on the fine
    grid); the extra cell G counts the selected events outside the fit range."""
    h = Hist()
    for thr in moves:
        h.move(thr)
    thr = moves[-1]
    G = PREP.G
    # both kernel paths are exercised: sets with and without alternative weights
    assert {int(c) for c in A["wc"]} >= {1, 3}
    for pi, p in enumerate(PREP.processes):
        v = int(A["proc_view"][pi])
        R = HK.rec_width.py_func(int(A["vc"][v]))
        rec = h.H[A["h_off"][v] : A["h_off"][v + 1]].reshape(G + 1, R)
        c = EV[p]
        sel = (c["a"] > thr[0]) & (c["b"] > thr[1]) & (c["b"] < thr[2]) & (c["x"] < thr[3])
        n, _ = np.histogram(c["x"][sel], bins=PREP.grid)
        w, _ = np.histogram(c["x"][sel], bins=PREP.grid, weights=c["w"][sel])
        np.testing.assert_array_equal(rec[:G, 0], n)
        assert rec[G, 0] == sel.sum() - n.sum()
        np.testing.assert_allclose(rec[:G, 1], w, rtol=1e-12, atol=1e-12)
        assert np.all(rec[:G, 1][n == 0] == 0.0) and np.all(rec[:G, 2][n == 0] == 0.0)


def test_empty_selection_is_defined():
    h = Hist()
    h.move([3.0, 5.0, 0.0, 0.0])  # nothing passes
    t = h.templates([0, 20, 40, 60, 80, 100])
    assert np.all(t["Y"] == 0.0) and np.all(t["S2"] == 0.0)
    assert np.all(h.H == 0.0)  # emptied cells are exactly zero, no rounding residue
    assert np.all(t["NU"] == 1.0) and np.all(t["ND"] == 1.0)
    acfg = np.array([0.05, 0.25, 1.0, 0.0])
    code, where = HK.templates(h.H, A["h_off"], A["vc"], np.array([0, 20, 40, 60, 80, 100]),
                               A["proc_view"], A["sh_src"], A["is_bkg"], acfg, h.T)
    assert code == HK.V_MIN_EVENTS and where == 0


def test_quantize_edges_keeps_order():
    ek = np.zeros(6, dtype=np.int64)
    HK.quantize_edges(np.array([0.2, 0.3, 0.4, 99.9]), 100, ek)
    assert ek.tolist() == [0, 1, 2, 3, 99, 100]
    HK.quantize_edges(np.array([50.0, 50.0, 50.0, 50.0]), 100, ek)
    assert np.all(np.diff(ek) >= 1)
