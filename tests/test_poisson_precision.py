"""Poisson log-terms against mpmath at 50 digits (issue 11): each term
``2 (lam - n ln lam + lgamma(n + 1))`` to <= 1e-14 of its magnitude for n, lam in [0, 1e15]."""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from histgym._kernels.likelihood import poisson_twice

mpmath = pytest.importorskip("mpmath")


def _exact(n: float, lam: float):  # type: ignore[no-untyped-def]
    """-2 ln Poisson(n | lam) with continuous lgamma, 50 significant digits (more working
    digits for tiny n, so that ``n + 1`` keeps n)."""
    extra = 0 if n == 0.0 else max(0, int(-math.log10(n)))
    with mpmath.workdps(50 + extra):
        nn, ll = mpmath.mpf(n), mpmath.mpf(lam)
        if n == 0.0:
            return 2 * ll
        return 2 * (ll - nn * mpmath.log(ll) + mpmath.loggamma(nn + 1))


def _rel(n: float, lam: float) -> float:
    e = _exact(n, lam)
    v = poisson_twice(n, lam)
    return float(abs((mpmath.mpf(v) - e) / e))


GRID = [0.0, 1e-300, 1e-12, 1e-3, 0.2499, 0.25, 0.3, 1.0, 2.5, 7.0, 14.999, 15.0, 15.5, 30.0,
        100.0, 1e3, 12345.678, 1e6, 1.9e11, 1e13, 1e15]  # fmt: skip


@pytest.mark.parametrize("n", GRID)
def test_poisson_term_against_mpmath_grid(n: float) -> None:
    lams = [1e-6, 1.0, 1e15]
    if n > 0:
        lams += [n, n * (1 + 1e-12), n * (1 + 1e-7), n * (1 - 1e-3), n * 1.3, n * 0.5, n * 3]
    for lam in lams:
        assert _rel(n, lam) <= 1e-14, (n, lam)


@settings(deadline=None, max_examples=300)
@given(
    st.floats(-3.0, 15.0), st.floats(-3.0, 15.0), st.sampled_from([0.0, 1e-9, 1e-4, 0.1, None])
)
def test_poisson_term_against_mpmath_random(log_n: float, log_lam: float, near: float | None) -> None:
    n = 10.0**log_n
    lam = n * (1.0 + near) if near is not None else 10.0**log_lam
    assert _rel(n, lam) <= 1e-14


def test_huge_tau_constraint_beats_textbook_form() -> None:
    """The issue's shapesys term (tau = 1.9e11): histgym to ~1e-16, the textbook form (as
    pyhf's gammaln) off by ~1e-3 absolute."""
    n = 1.9e11
    lam = n * (1.0 + 3e-6)
    exact = _exact(n, lam)
    ours = poisson_twice(n, lam)
    textbook = 2.0 * (lam - n * math.log(lam) + math.lgamma(n + 1.0))
    assert abs(ours - float(exact)) <= 1e-14 * abs(float(exact))
    assert abs(textbook - float(exact)) > 1e-5
    assert abs(ours - float(exact)) < abs(textbook - float(exact))


def test_gradient_consistent_with_the_new_form() -> None:
    """d/dlam of the term is 2 (1 - n / lam) (what the gradient and Hessian kernels use)."""
    for n in (0.1, 3.0, 20.0, 1e6, 1.9e11):
        for r in (0.5, 0.999, 1.001, 2.0):
            lam = n * r
            h = lam * 1e-6
            fd = (poisson_twice(n, lam + h) - poisson_twice(n, lam - h)) / (2 * h)
            assert fd == pytest.approx(2.0 * (1.0 - n / lam), rel=1e-5, abs=1e-9 * n)


def test_zero_and_infeasible() -> None:
    assert poisson_twice(0.0, 3.0) == 6.0
    assert poisson_twice(2.0, 0.0) == np.inf
