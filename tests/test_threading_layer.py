"""Defect 11: numba's ``workqueue`` threading layer (used where neither TBB nor OpenMP exists)
aborts the process when two Python threads launch parallel kernels at once.  histgym
serialises its parallel launches under that layer (``histgym._kernels._jit.jit_parallel``)."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

import histgym

SCRIPT = textwrap.dedent(
    """
    import threading
    import numpy as np
    import numba
    import histgym
    from histgym._kernels import _jit
    from histgym.envs import HistFactoryVectorEnv
    assert _jit.workqueue_only(), "expected the workqueue layer"
    ws = histgym.example_workspace()
    m = histgym.from_pyhf(ws)
    pars = np.tile(m.suggested_init(), (64, 1))
    m.twice_nll_batch(pars)
    venvs = [HistFactoryVectorEnv(ws, num_envs=8, channel="SR", sample="signal", parallel=True,
                                  reward_metric="q0") for _ in range(4)]
    for v in venvs:
        v.reset(seed=0)
    errors = []
    def work(k):
        try:
            for _ in range(50):
                m.twice_nll_batch(pars)
                venvs[k].step(np.zeros((8, 8)))
        except Exception as err:  # noqa: BLE001
            errors.append(repr(err))
    threads = [threading.Thread(target=work, args=(k,)) for k in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors, errors
    print("layer", numba.threading_layer(), "ok")
    """
)


def test_workqueue_detection_follows_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    from histgym._kernels import _jit

    monkeypatch.setenv("NUMBA_THREADING_LAYER", "workqueue")
    assert _jit.workqueue_only()
    monkeypatch.setenv("NUMBA_THREADING_LAYER", "omp")
    assert not _jit.workqueue_only()


@pytest.mark.slow
def test_threads_under_workqueue_do_not_abort(tmp_path: Path) -> None:
    env = dict(os.environ, NUMBA_THREADING_LAYER="workqueue",
               NUMBA_CACHE_DIR=str(tmp_path / "cache"))  # fmt: skip
    src = str(Path(histgym.__file__).resolve().parents[1])
    env["PYTHONPATH"] = src + os.pathsep + env.get("PYTHONPATH", "")
    (tmp_path / "run.py").write_text(SCRIPT)
    proc = subprocess.run([sys.executable, str(tmp_path / "run.py")], env=env,
                          capture_output=True, text=True, timeout=3600)  # fmt: skip
    assert proc.returncode == 0 and "layer workqueue ok" in proc.stdout, proc.stderr[-3000:]


@pytest.mark.parametrize("order", ["torch-first", "histgym-first", "set-after-import"])
def test_torch_thread_count_survives_numbas_pool(order: str) -> None:
    """numba's OpenMP pool must not reset a ``torch.set_num_threads(1)`` (before or after
    ``import histgym``) when the first vector environment launches parallel kernels."""
    pytest.importorskip("torch")
    head = {
        "torch-first": "import torch\ntorch.set_num_threads(1)\nimport histgym\n",
        "histgym-first": "import histgym\nimport torch\ntorch.set_num_threads(1)\n",
        "set-after-import": "import torch\nimport histgym\ntorch.set_num_threads(1)\n",
    }[order]
    code = head + textwrap.dedent(
        """
        import gymnasium as gym
        env = gym.make_vec("histgym/GaussianBump-v0", num_envs=4,
                           vectorization_mode="vector_entry_point")
        env.reset(seed=0)
        env.step(env.action_space.sample())
        print(torch.get_num_threads())
        """)
    src = str(Path(__file__).resolve().parents[1] / "src")
    env = dict(os.environ, PYTHONPATH=src + os.pathsep + os.environ.get("PYTHONPATH", ""))
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env,
                         timeout=600, check=True).stdout
    assert out.split()[-1] == "1"
