"""Event input, validation and the analysis description (histgym.events)."""

from __future__ import annotations

import json

import numpy as np
import pytest

from histgym.errors import HistgymError, UnknownName
from histgym.events import (
    Analysis,
    InvalidAnalysis,
    InvalidEvents,
    load_analysis,
    prepare,
    read_columns,
    toy_analysis,
    toy_events,
)


@pytest.fixture(scope="module")
def cols():
    rng = np.random.default_rng(1)
    return {"x": rng.normal(size=50), "y": rng.uniform(size=50), "w": rng.uniform(0.5, 1.5, 50)}


def test_sources_agree(tmp_path, cols):
    pd = pytest.importorskip("pandas")
    pytest.importorskip("pyarrow")
    uproot = pytest.importorskip("uproot")
    df = pd.DataFrame(cols)
    df.to_parquet(tmp_path / "ev.parquet")
    with uproot.recreate(tmp_path / "ev.root") as f:
        f["tree"] = cols
    want = read_columns("p", cols, ["x", "w"])
    for src, tree in ((df, None), (str(tmp_path / "ev.parquet"), None),
                      (f"{tmp_path / 'ev.root'}:tree", None), (tmp_path / "ev.root", "tree")):
        got = read_columns("p", src, ["x", "w"], tree=tree)
        for k in want:
            np.testing.assert_array_equal(got[k], want[k])
            assert got[k].dtype == np.float64


@pytest.mark.parametrize(
    "mutate, err, words",
    [
        (lambda c: c.update(x=c["x"][:-1]), InvalidEvents, ["'sig'", "'x'", "49"]),
        (lambda c: c["y"].__setitem__(3, np.nan), InvalidEvents, ["'sig'", "'y'", "[3]"]),
        (lambda c: c["w"].__setitem__(7, np.inf), InvalidEvents, ["'sig'", "'w'", "[7]"]),
        (lambda c: c.pop("y"), UnknownName, ["'sig'", "'y'"]),
        (lambda c: c.update(x=np.array(["a"] * 50)), InvalidEvents, ["'sig'", "'x'"]),
        (lambda c: c.update(x=np.zeros((50, 2))), InvalidEvents, ["'sig'", "'x'", "1-d"]),
    ],
)
def test_bad_columns(cols, mutate, err, words):
    c = {k: v.copy() for k, v in cols.items()}
    mutate(c)
    with pytest.raises(err) as exc:
        read_columns("sig", c, ["x", "y", "w"])
    assert isinstance(exc.value, HistgymError)
    for w in words:
        assert w in str(exc.value)


def test_empty_process_and_bad_sources(tmp_path):
    with pytest.raises(InvalidEvents, match="'bkg' has no events"):
        read_columns("bkg", {"x": np.zeros(0)}, ["x"])
    with pytest.raises(InvalidEvents, match="'bkg'.*dict of arrays"):
        read_columns("bkg", 42, ["x"])
    with pytest.raises(InvalidEvents, match="unsupported file"):
        read_columns("bkg", str(tmp_path / "ev.csv"), ["x"])
    with pytest.raises(InvalidEvents, match="needs a tree"):
        read_columns("bkg", str(tmp_path / "ev.root"), ["x"])
    with pytest.raises(InvalidEvents, match="no such file"):
        read_columns("bkg", str(tmp_path / "ev.parquet"), ["x"])


def test_unknown_column_suggests():
    with pytest.raises(UnknownName, match="Did you mean 'mass'"):
        read_columns("signal", {"mass": np.ones(3)}, ["mas"])


def test_analysis_validation():
    ev = {"s": {"m": np.ones(3)}, "b": {"m": np.ones(3)}}
    ok = dict(processes=ev, signal="s", observable="m", range=(0, 1))
    Analysis(**ok)
    with pytest.raises(UnknownName, match="Did you mean 's'"):
        Analysis(**{**ok, "signal": "ss"})
    with pytest.raises(InvalidAnalysis, match="direction"):
        Analysis(**ok, cuts=({"observable": "m", "direction": ">=", "range": (0, 1)},))
    with pytest.raises(InvalidAnalysis, match="range"):
        Analysis(**{**ok, "range": (1, 0)})
    with pytest.raises(InvalidAnalysis, match="bins"):
        Analysis(**ok, bins=0)
    with pytest.raises(InvalidAnalysis, match="outside its range"):
        Analysis(**ok, cuts=({"observable": "m", "direction": ">", "range": (0, 1), "init": 2},)).cuts[0].thresholds()
    with pytest.raises(InvalidAnalysis, match="unknown key 'hi_'"):
        Analysis(**ok, normsys=({"name": "n", "processes": ["b"], "hi_": 1.1, "lo": 0.9},))
    with pytest.raises(UnknownName, match="unknown process 'c'"):
        Analysis(**ok, normsys=({"name": "n", "processes": ["c"], "hi": 1.1, "lo": 0.9},))
    with pytest.raises(InvalidAnalysis, match="min_background"):
        Analysis(**ok, min_background={"events": -1})
    with pytest.raises(InvalidAnalysis, match="kind"):
        Analysis(**ok, shape_systematics=({"name": "x", "kind": "weights", "up": "a", "down": "b"},))
    # unknown observable at prepare time, naming the process and the column
    with pytest.raises(UnknownName, match="'s' has no column 'pt'"):
        prepare(Analysis(**ok, cuts=({"observable": "pt", "direction": ">", "range": (0, 1)},)))


def test_load_yaml_and_json(tmp_path):
    pytest.importorskip("yaml")
    pd = pytest.importorskip("pandas")
    ev = toy_events(0, 500)
    for p, c in ev.items():
        pd.DataFrame(c).to_parquet(tmp_path / f"{p}.parquet")
    d = {
        "processes": {p: {"source": f"{p}.parquet", "weight": "weight"} for p in ev},
        "signal": "signal",
        "observable": "mass",
        "range": [100, 150],
        "bins": 4,
        "cuts": [{"observable": "score", "direction": ">", "range": [0, 1]}],
        "normsys": [{"name": "bn", "processes": ["resonant"], "hi": 1.1, "lo": 0.9}],
        "min_background": {"events": 0.5},
    }
    (tmp_path / "a.json").write_text(json.dumps(d))
    import yaml

    (tmp_path / "a.yaml").write_text(yaml.safe_dump(d))
    a1 = load_analysis(tmp_path / "a.json")
    a2 = load_analysis(str(tmp_path / "a.yaml"))
    assert a1.bins == a2.bins == 4 and a1.cuts == a2.cuts
    p1 = prepare(a1)
    assert p1.n_events == {p: 500 for p in ev}
    with pytest.raises(InvalidAnalysis, match="unknown analysis key 'bin'"):
        load_analysis({**d, "bin": 3})
    with pytest.raises(InvalidAnalysis, match="malformed JSON"):
        load_analysis("{ nope")
    with pytest.raises(InvalidAnalysis, match="needs 'signal'"):
        load_analysis({k: v for k, v in d.items() if k != "signal"})


def test_toy_is_seeded():
    a = toy_events(3, 1000)
    b = toy_events(3, 1000)
    c = toy_events(4, 1000)
    np.testing.assert_array_equal(a["signal"]["mass"], b["signal"]["mass"])
    assert not np.array_equal(a["signal"]["mass"], c["signal"]["mass"])
    an = toy_analysis(n_events=1000)
    assert an.backgrounds == ["continuum", "resonant"]
    assert len(an.cuts) == 2 and an.shape_systematics[0].kind == "observable"
