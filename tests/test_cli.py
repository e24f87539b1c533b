"""``histgym`` command line: parsed --json output equals the library call."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

import histgym
from histgym import cli, infer
from histgym.interpret import rank_impact


@pytest.fixture
def ws_file(tmp_path: Path) -> str:
    p = tmp_path / "ws.json"
    p.write_text(json.dumps(histgym.example_workspace()))
    return str(p)


def assert_same(got: object, want: object, rel: float = 1e-9, where: str = "") -> None:
    """Compare parsed JSON with a library result field by field (nested dicts/lists).

    Numbers agree to ``rel`` relative (the JSON round trip of a float64 is exact, so this
    only absorbs formatting); keys, lengths, strings and booleans must be identical.
    """
    if isinstance(want, dict):
        assert isinstance(got, dict) and set(got) == set(want), where
        for k in want:
            assert_same(got[k], want[k], rel, f"{where}.{k}")
    elif isinstance(want, (list, tuple, np.ndarray)):
        assert isinstance(got, list) and len(got) == len(want), where
        for i, (g, w) in enumerate(zip(got, want)):
            assert_same(g, w, rel, f"{where}[{i}]")
    elif isinstance(want, (bool, str, type(None))):
        assert got == want, where
    else:
        assert got == pytest.approx(float(want), rel=rel, abs=1e-300), where


def run(capsys: pytest.CaptureFixture[str], *args: str) -> str:
    assert cli.main(list(args)) == 0
    return capsys.readouterr().out


def test_fit(capsys: pytest.CaptureFixture[str], ws_file: str) -> None:
    out = json.loads(run(capsys, "fit", ws_file, "--json"))
    r = histgym.fit(histgym.from_pyhf(ws_file))
    np.testing.assert_allclose(out["bestfit"], r.bestfit)
    assert out["twice_nll"] == pytest.approx(r.twice_nll)
    text = run(capsys, "fit", ws_file)
    assert "bkg_norm" in text and "mu" in text and "-2 ln L" in text


def test_significance_cls_limit(capsys: pytest.CaptureFixture[str], ws_file: str) -> None:
    m = histgym.from_pyhf(ws_file)
    assert_same(
        json.loads(run(capsys, "significance", ws_file, "--json")),
        infer.significance(m).as_dict(),
    )
    got = json.loads(run(capsys, "cls", ws_file, "--mu", "1.5", "--json"))
    want = infer.hypotest(1.5, m).as_dict()
    assert_same(got, want)
    got = json.loads(run(capsys, "limit", ws_file, "--json"))
    want = infer.upper_limit(m).as_dict()
    assert_same(got, want)
    assert "CLs" in run(capsys, "cls", ws_file)


def test_rank_and_plot(capsys: pytest.CaptureFixture[str], ws_file: str, tmp_path: Path) -> None:
    got = json.loads(run(capsys, "rank", ws_file, "--top", "1", "--json"))
    assert_same(got, rank_impact(histgym.from_pyhf(ws_file), top_n=1))
    assert got[0]["name"] == "bkg_norm"
    png = tmp_path / "r.png"
    run(capsys, "rank", ws_file, "--plot", str(png))
    assert png.stat().st_size > 0


def test_patch_and_measurement(
    capsys: pytest.CaptureFixture[str], ws_file: str, tmp_path: Path
) -> None:
    patch = [{"op": "replace", "path": "/channels/0/samples/0/data/3", "value": 6.0}]
    pf = tmp_path / "p.json"
    pf.write_text(json.dumps(patch))
    got = json.loads(run(capsys, "fit", ws_file, "--patch", str(pf), "--json"))
    want = histgym.fit(histgym.from_pyhf(ws_file, patches=[patch]))
    np.testing.assert_allclose(got["bestfit"], want.bestfit)
    assert cli.main(["fit", ws_file, "--measurement", "nope"]) == 2
    assert "nope" in capsys.readouterr().err
