"""The README's tour runs as written, and its set-up commands are the ones CI runs."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
README = (ROOT / "README.md").read_text()


def python_blocks() -> list[str]:
    return re.findall(r"```python\n(.*?)```", README, flags=re.S)


def test_readme_tour_executes(capsys: pytest.CaptureFixture[str]) -> None:
    pytest.importorskip("stable_baselines3")
    blocks = python_blocks()
    assert len(blocks) >= 5
    namespace: dict = {"__name__": "readme"}
    for block in blocks:
        exec(compile(block, "README.md", "exec"), namespace)  # noqa: S102
    out = capsys.readouterr().out
    # the values the README shows in comments
    assert "['mu', 'bkg_norm'] mu" in out
    assert "Z0 = 1.883" in out
    assert "mu < 2.059" in out
    assert "1 bkg_norm 0.3733" in out
    assert namespace["result"].converged


def test_ci_runs_the_readme_test_command() -> None:
    commands = re.findall(r"```bash\n(pip install torch.*?)\n```", README)
    assert len(commands) == 2, "the README must show the two set-up commands"
    main_job, test_cmd = commands
    assert "histgym train" in main_job
    ci = (ROOT / ".ci" / "run").read_text()
    assert test_cmd in ci
