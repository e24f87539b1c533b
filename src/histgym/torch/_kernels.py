"""Compiled packing around the environment kernels for :class:`histgym.torch.Significance`.

One compiled call per forward pass (serial path): check the yields, write them (clipped) into
the state rows, run :func:`histgym._kernels.env_step.env_reset_batch_serial` and read the
metric, the fitted POI, the fit flag and the gradient back, with the one-sided clipping of the
metric applied. The parallel path packs, calls the parallel driver and unpacks (three calls).
Nothing here depends on torch; the layouts are those of ``histgym._kernels.env_step`` and the
offsets are passed in (no constant of that module is frozen into this module's cache).
"""

from __future__ import annotations

import numpy as np

from .._kernels import env_step as K
from .._kernels._jit import jit
from .._kernels.samples import set_yields_batch

__all__ = ["pack_rows", "unpack_rows", "metric_rows_serial", "staterror_rows",
           "set_yields_rows", "reset_rows", "step_rows"]


@jit
def pack_rows(Y, S, row, lo, hi):
    """Fill ``S[:B]`` (float64 [>=B, n_state]) with the state template ``row`` and the yields
    ``Y`` (float64 [B, n_y]) clipped to ``[lo, hi]``.

    Returns -1, or the first row of ``Y`` with a non-finite or negative yield (then ``S`` is
    left untouched).
    """
    b, ny = Y.shape
    for k in range(b):
        for j in range(ny):
            v = Y[k, j]
            if not (v >= 0.0) or v == np.inf:  # NaN fails the comparison
                return k
    for k in range(b):
        S[k, :] = row
        for j in range(ny):
            S[k, j] = min(max(Y[k, j], lo), hi)
    return -1


@jit
def unpack_rows(S, cfg_i, mu_test, value, grad, mu_hat, ok):
    """Read the metric of the rows of ``S[:B]`` into ``value`` [B], ``grad`` [B, n_y],
    ``mu_hat`` [B] and ``ok`` (bool [B]); returns the number of failed fits.

    ``cfg_i`` (int64 [6]): the columns of ``S`` holding the value, the fitted POI, the fit
    flag and the first gradient entry; the clipped side (0: the metric is 0 with a zero
    gradient where ``mu_hat <= 0``, for q0 and z0; 1: where ``mu_hat >= mu_test``, for qmu,
    zmu and cls); 1 to read the gradient (0 writes zeros). A failed fit keeps the kernel's
    fallback value and gets a zero gradient.
    """
    off_value, off_muhat, off_ok, off_grad = cfg_i[0], cfg_i[1], cfg_i[2], cfg_i[3]
    clip_side, gradient = cfg_i[4], cfg_i[5]
    b, ny = grad.shape
    failed = 0
    for k in range(b):
        v = S[k, off_value]
        mh = S[k, off_muhat]
        good = S[k, off_ok] == 1.0
        clipped = mh <= 0.0 if clip_side == 0 else mh >= mu_test
        ok[k] = good
        mu_hat[k] = mh
        if not good:
            failed += 1
        value[k] = 0.0 if clipped else v
        if gradient != 0 and good and not clipped:
            for j in range(ny):
                grad[k, j] = S[k, off_grad + j]
        else:
            for j in range(ny):
                grad[k, j] = 0.0
    return failed


@jit
def metric_rows_serial(Y, S, row, cfg_f, P, Q, ibuf, cfg_i, value, grad, mu_hat, ok):
    """:func:`pack_rows`, the serial environment reset of every row and :func:`unpack_rows`
    in one call; ``cfg_f`` (float64 [3]) is ``(lo, hi, mu_test)``. Returns ``-1 - k`` for an
    invalid row ``k`` of ``Y`` (nothing evaluated), else the number of failed fits."""
    bad = pack_rows(Y, S, row, cfg_f[0], cfg_f[1])
    if bad >= 0:
        return -1 - bad
    b = Y.shape[0]
    mask = np.ones(b, dtype=np.bool_)
    K.env_reset_batch_serial(mask, S[:b], P, Q, ibuf)
    return unpack_rows(S, cfg_i, cfg_f[2], value, grad, mu_hat, ok)


# ---------------------------------------------------------------------------- several samples
# Several controlled samples that share staterror parameters: each sample's parameter
# vector P holds the other samples' nominal sum and squared uncertainties of every bin it
# carries a staterror in (``st_other_nom``, ``st_other_u2``, see
# ``histgym._kernels.control.set_sample_yields``). Those depend on the other controlled
# samples' yields, so each row gets its own copy of P with them recomputed.


@jit
def staterror_rows(P, Yall, nom_idx, u2_idx, nom_fixed, u2_fixed, c_k, c_i, c_pos, c_rel,
                   out):
    """Per-row copies of ``P`` (float64 [n_P]) into ``out`` [B, n_P] with the staterror
    entries of the other controlled samples recomputed from ``Yall`` (float64 [n_samples,
    B, n_y], clipped).

    ``nom_idx``/``u2_idx`` (int64 [n_st]): positions in P of each staterror entry's other
    nominal sum and squared uncertainty; ``nom_fixed``/``u2_fixed``: their parts from the
    samples that are not controlled; contribution ``c``: entry ``c_k[c]`` gets sample
    ``c_i[c]``'s yield in bin ``c_pos[c]`` with relative uncertainty ``c_rel[c]``.
    """
    b = Yall.shape[1]
    for r in range(b):
        out[r, :] = P
        for k in range(nom_idx.shape[0]):
            out[r, nom_idx[k]] = nom_fixed[k]
            out[r, u2_idx[k]] = u2_fixed[k]
        for c in range(c_k.shape[0]):
            y = Yall[c_i[c], r, c_pos[c]]
            u = c_rel[c] * y
            out[r, nom_idx[c_k[c]]] += y
            out[r, u2_idx[c_k[c]]] += u * u


@jit
def set_yields_rows(S, Prows, Q, ibuf, Y):
    """:func:`histgym._kernels.samples.set_yields_batch` with one P per row."""
    for r in range(Y.shape[0]):
        set_yields_batch(S[r : r + 1], Prows[r], Q, ibuf, Y[r : r + 1])


@jit
def reset_rows(S, Prows, Q, ibuf):
    """:func:`histgym._kernels.env_step.env_reset` of rows ``S[:B]`` with one P per row."""
    for r in range(Prows.shape[0]):
        K.env_reset(S[r], Prows[r], Q, ibuf)


@jit
def step_rows(S, Prows, Q, ibuf, zeros):
    """A step with the action ``zeros`` (float64 [n_y]) of rows ``S[:B]``, one P per row."""
    for r in range(Prows.shape[0]):
        K.env_step(zeros, S[r], Prows[r], Q, ibuf)
