"""Test helpers: the reference data directory (../shared/data next to the repo), models.

Imported as ``from refdata import ...`` (a unique module name: ``conftest`` is ambiguous
once sub-folders have their own conftest.py).
"""

from __future__ import annotations

import functools
import json
import os
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
SHARED_DATA = Path(os.environ.get("HISTGYM_SHARED_DATA", REPO.parent / "shared" / "data"))
HAVE_SHARED = (SHARED_DATA / "reference.json").is_file()
SKIP_NO_SHARED = pytest.mark.skipif(
    not HAVE_SHARED,
    reason=f"reference data not found at {SHARED_DATA} (set HISTGYM_SHARED_DATA; CI has it)",
)

#: workspaces whose pyhf model takes more than a minute to build; fitted once per session
HUGE = {"combined_stress_10_atlas_models"}


def workspace_names() -> list[str]:
    """Stems of the workspaces in the shared data (empty where the data are absent)."""
    if not HAVE_SHARED:
        return []
    return sorted(p.stem for p in (SHARED_DATA / "workspaces").glob("*.json"))


def workspace_params(include_huge: bool = True) -> list:
    """pytest params over the shared workspaces, the huge one marked ``slow``-free but last."""
    names = workspace_names()
    if not names:
        return [pytest.param(None, marks=SKIP_NO_SHARED, id="no-shared-data")]
    out = []
    for n in names:
        if n in HUGE and not include_huge:
            continue
        out.append(pytest.param(n, id=n))
    return out


@functools.lru_cache(maxsize=1)
def reference() -> dict:
    """pyhf 0.7.6 reference values per workspace (``reference.json['workspaces']``)."""
    return json.loads((SHARED_DATA / "reference.json").read_text())["workspaces"]


@functools.lru_cache(maxsize=None)
def load_model(name: str):
    """histgym Model of a shared workspace, built once per test session."""
    import histgym

    return histgym.from_pyhf(SHARED_DATA / "workspaces" / f"{name}.json")
