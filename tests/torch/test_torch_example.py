"""The torch example runs end to end with few steps; its notebook is built from its cells."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import nbformat
import pytest

ROOT = Path(__file__).resolve().parents[2]
EXAMPLES = ROOT / "examples"


def test_torch_example_runs(tmp_path):
    pytest.importorskip("torch")
    fig = tmp_path / "fig.png"
    proc = subprocess.run(
        [sys.executable, "-W", "ignore::DeprecationWarning",
         str(EXAMPLES / "torch_significance.py"), "--steps", "3", "--figure", str(fig)],
        capture_output=True, text=True, timeout=900, cwd=tmp_path,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    out = proc.stdout
    lines = [ln for ln in out.splitlines() if "expected Z0 with systematics" in ln]
    assert len(lines) == 2, out
    for ln in lines:  # histgym's value equals pyhf's on the exported workspace
        hg = float(ln.split("histgym ")[1].split(",")[0])
        py = float(ln.split("pyhf ")[1])
        assert hg > 0 and abs(hg - py) < 2e-4
    assert "Z0-trained / BCE-trained expected Z0" in out
    assert fig.exists() and fig.stat().st_size > 10_000


def test_torch_notebook_matches_script():
    sys.path.insert(0, str(EXAMPLES))
    try:
        from build_notebook import build
    finally:
        sys.path.pop(0)
    on_disk = nbformat.read(EXAMPLES / "torch_significance.ipynb", as_version=4)
    fresh = build(EXAMPLES / "torch_significance.py")
    assert [c.source for c in on_disk.cells] == [c.source for c in fresh.cells]
    assert [c.cell_type for c in on_disk.cells] == [c.cell_type for c in fresh.cells]
    nbformat.validate(on_disk)
