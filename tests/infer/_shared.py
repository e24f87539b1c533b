"""Locate ../shared/data (or $HISTGYM_SHARED_DATA) and load reference numbers; skip if absent."""

from __future__ import annotations

import json
import os
from functools import cache
from pathlib import Path
from typing import Any

import pytest


def shared_data_dir() -> Path | None:
    env = os.environ.get("HISTGYM_SHARED_DATA")
    if env:
        p = Path(env)
        return p if p.is_dir() else None
    repo_root = Path(__file__).resolve().parents[2]
    p = (repo_root / ".." / "shared" / "data").resolve()
    return p if p.is_dir() else None


def require_shared() -> Path:
    p = shared_data_dir()
    if p is None:
        pytest.skip("shared test data (../shared/data or $HISTGYM_SHARED_DATA) not available")
    return p


@cache
def _load(name: str) -> Any:
    p = shared_data_dir()
    if p is None or not (p / name).is_file():
        return None
    return json.loads((p / name).read_text())


def reference() -> dict[str, Any]:
    ref = _load("reference.json")
    if ref is None:
        pytest.skip("reference.json not available")
    return ref["workspaces"]


def root_validation() -> dict[str, Any]:
    ref = _load("root_validation.json")
    if ref is None:
        pytest.skip("root_validation.json not available")
    return ref


def workspace_path(stem: str) -> Path:
    return require_shared() / "workspaces" / f"{stem}.json"


def workspace_stems() -> list[str]:
    p = shared_data_dir()
    if p is None:
        return []
    return sorted(x.stem for x in (p / "workspaces").glob("*.json"))
