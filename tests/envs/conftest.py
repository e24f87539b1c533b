"""Fixtures for the environment tests (defined in envtools.py, a uniquely named module)."""

from envtools import *  # noqa: F401,F403
