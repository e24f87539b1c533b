"""Interpolation codes of HistFactory, with first and second derivatives.

Multiplicative (normsys): code1 (piecewise exponential), code4 (polynomial inside
|alpha| < 1, exponential outside). Additive (histosys): code0 (piecewise linear), code2
(quadratic inside |alpha| <= 1, pyhf's linear extrapolation outside), code4p (polynomial
inside |alpha| <= 1, linear outside).  Formulas and branch boundaries follow
``pyhf.interpolators`` (0.7.6) exactly, including which side of each boundary a tie falls.
"""

from __future__ import annotations

import math

import numpy as _np

from ._jit import jit_inline

CODE0, CODE1, CODE2, CODE4, CODE4P = 0, 1, 2, 4, 5
NORMSYS_CODES = {"code1": CODE1, "code4": CODE4}
HISTOSYS_CODES = {"code0": CODE0, "code2": CODE2, "code4p": CODE4P}


@jit_inline
def factor_1(code, alpha, hi, lo, coef):
    """Multiplicative factor of a normsys at ``alpha``; returns (f, df/dalpha, d2f/dalpha2).

    ``hi``/``lo`` are the factors at alpha = +1/-1; ``coef`` the 6 code4 polynomial
    coefficients (unused for code1).
    """
    return factor_at(code, alpha, hi, lo, coef, 0)


@jit_inline
def factor_at(code, alpha, hi, lo, c, o):
    """:func:`factor_1` with the coefficients at ``c[o : o + 6]`` (no view of ``c`` is made;
    the same operations)."""
    if code == CODE1:
        if alpha > 0.0:
            f = hi**alpha
            lg = math.log(hi)
            return f, lg * f, lg * lg * f
        f = lo ** (-alpha)
        lg = -math.log(lo)
        return f, lg * f, lg * lg * f
    # code4, alpha0 = 1
    if alpha >= 1.0:
        f = hi**alpha
        lg = math.log(hi)
        return f, lg * f, lg * lg * f
    if alpha <= -1.0:
        f = lo ** (-alpha)
        lg = -math.log(lo)
        return f, lg * f, lg * lg * f
    a2 = alpha * alpha
    a3 = a2 * alpha
    a4 = a3 * alpha
    a5 = a4 * alpha
    f = 1.0 + (
        c[o] * alpha
        + c[o + 1] * a2
        + c[o + 2] * a3
        + c[o + 3] * a4
        + c[o + 4] * a5
        + c[o + 5] * a5 * alpha
    )
    df = (
        c[o]
        + 2.0 * c[o + 1] * alpha
        + 3.0 * c[o + 2] * a2
        + 4.0 * c[o + 3] * a3
        + 5.0 * c[o + 4] * a4
        + 6.0 * c[o + 5] * a5
    )
    d2f = (
        2.0 * c[o + 1]
        + 6.0 * c[o + 2] * alpha
        + 12.0 * c[o + 3] * a2
        + 20.0 * c[o + 4] * a3
        + 30.0 * c[o + 5] * a4
    )
    return f, df, d2f


@jit_inline
def delta_1(code, alpha, up, dn):
    """Additive shift of a histosys at ``alpha``; returns (delta, d/dalpha, d2/dalpha2).

    ``up = hi - nominal`` and ``dn = nominal - lo`` for one bin.
    """
    if code == CODE4P:
        if alpha > 1.0:
            return alpha * up, up, 0.0
        if alpha < -1.0:
            return alpha * dn, dn, 0.0
        s = 0.5 * (up + dn)
        a = 0.0625 * (up - dn)
        a2 = alpha * alpha
        poly = a2 * (a2 * (a2 * 3.0 - 10.0) + 15.0)
        dpoly = alpha * (30.0 + a2 * (-40.0 + 18.0 * a2))
        d2poly = 30.0 + a2 * (-120.0 + 90.0 * a2)
        return poly * a + alpha * s, dpoly * a + s, d2poly * a
    if code == CODE0:
        if alpha > 0.0:
            return alpha * up, up, 0.0
        return alpha * dn, dn, 0.0
    # code2: a = (hi + lo)/2 - nom, b = (hi - lo)/2
    a = 0.5 * (up - dn)
    b = 0.5 * (up + dn)
    if alpha > 1.0:
        return (b + 2.0 * a) * (alpha - 1.0), b + 2.0 * a, 0.0
    if alpha >= -1.0:
        return a * alpha * alpha + b * alpha, 2.0 * a * alpha + b, 2.0 * a
    # pyhf's vectorised code2 (the one its Model uses) extrapolates below -1 as
    # alpha * (b - 2a), unlike its slow reference; histgym matches the Model.
    return (b - 2.0 * a) * alpha, b - 2.0 * a, 0.0


#: code4 polynomial: coefficients = A^-1 b (pyhf.interpolators.code4, alpha0 = 1); shared by
#: the compiler (histgym.compile) and the analysis kernel (_kernels.histogram).
CODE4_AINV = _np.array(
    [
        [15.0 / 16, -15.0 / 16, -7.0 / 16, -7.0 / 16, 1.0 / 16, -1.0 / 16],
        [3.0 / 2, 3.0 / 2, -9.0 / 16, 9.0 / 16, 1.0 / 16, 1.0 / 16],
        [-5.0 / 8, 5.0 / 8, 5.0 / 8, 5.0 / 8, -1.0 / 8, 1.0 / 8],
        [3.0 / -2, 3.0 / -2, -7.0 / -8, 7.0 / -8, -1.0 / 8, -1.0 / 8],
        [3.0 / 16, -3.0 / 16, -3.0 / 16, -3.0 / 16, 1.0 / 16, -1.0 / 16],
        [1.0 / 2, 1.0 / 2, -5.0 / 16, 5.0 / 16, 1.0 / 16, 1.0 / 16],
    ]
)
