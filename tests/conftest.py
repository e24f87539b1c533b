"""Shared pytest fixtures."""

from __future__ import annotations

import pytest


@pytest.fixture(scope="session")
def seed_model():
    """The built-in 8-bin example model."""
    import histgym

    return histgym.from_pyhf(histgym.example_workspace())
