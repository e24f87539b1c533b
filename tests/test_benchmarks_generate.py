"""The benchmark workspace generator (benchmarks/generate.py) builds valid, pyhf-exact models."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import numpy as np
import pyhf
import pytest

import histgym

GENERATE = Path(__file__).resolve().parents[1] / "benchmarks" / "generate.py"


@pytest.fixture(scope="module")
def generate():
    spec = importlib.util.spec_from_file_location("histgym_benchmarks_generate", GENERATE)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.mark.parametrize(("n_bins", "n_channels"), [(50, 1), (12, 3)])
def test_generated_workspace_matches_pyhf(generate, n_bins, n_channels):
    ws = generate.generate_workspace(n_bins, seed=1, n_channels=n_channels)
    json.dumps(ws)  # JSON-ready
    workspace = pyhf.Workspace(ws)  # validates against pyhf's schema
    pyhf_model = workspace.model()
    data = workspace.data(pyhf_model)
    assert pyhf_model.config.npars == generate.expected_n_params(n_bins)
    assert sum(pyhf_model.config.channel_nbins.values()) == n_bins
    assert pyhf_model.config.samples == ["bkg1", "bkg2", "signal"]
    assert {"normfactor", "normsys", "histosys", "staterror"} <= {
        m["type"] for c in ws["channels"] for s in c["samples"] for m in s["modifiers"]
    }
    assert all(float(x).is_integer() and x >= 0 for o in ws["observations"] for x in o["data"])

    model = histgym.from_pyhf(ws)
    assert model.n_params == generate.expected_n_params(n_bins)
    init = np.asarray(pyhf_model.config.suggested_init(), dtype=float)
    expected = -2.0 * float(pyhf_model.logpdf(init, data)[0])
    assert model.twice_nll(init) == pytest.approx(expected, rel=1e-9)


def test_generator_sizes_and_seed(generate):
    assert generate.expected_n_params(50) == 81
    assert generate.expected_n_params(500) == 531
    assert generate.generate_workspace(20, seed=3) == generate.generate_workspace(20, seed=3)
    assert generate.generate_workspace(20, seed=3) != generate.generate_workspace(20, seed=4)


def test_generator_command_line(generate, tmp_path):
    out = tmp_path / "ws.json"
    assert generate.main(["--bins", "10", "-o", str(out)]) == 0
    ws = json.loads(out.read_text())
    assert pyhf.Workspace(ws).model().config.npars == generate.expected_n_params(10)
