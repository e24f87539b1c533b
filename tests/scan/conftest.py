"""Fixtures of the scan tests: small backgrounds and patchsets written to a temporary folder."""

from __future__ import annotations

import json

import pytest

import histgym
from histgym.scan.synthetic import signal_grid


def example_background() -> dict:
    """The built-in example without its signal sample: a background-only workspace."""
    ws = histgym.example_workspace()
    ws["channels"][0]["samples"] = [s for s in ws["channels"][0]["samples"] if s["name"] != "signal"]
    return ws


@pytest.fixture
def small_grid(tmp_path):
    """(background path, patchset path) of a 6-point synthetic grid on the 8-bin example."""
    bkg = example_background()
    points = [(m1, m2) for m1 in (200.0, 400.0, 600.0) for m2 in (0.0, 100.0)]
    ps = signal_grid(bkg, points)
    bp, pp = tmp_path / "bkg.json", tmp_path / "patchset.json"
    bp.write_text(json.dumps(bkg))
    pp.write_text(json.dumps(ps))
    return bp, pp
