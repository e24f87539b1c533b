"""Flat-buffer layout of a compiled HistFactory model.

A model is two 1-d buffers, ``fbuf`` (float64) and ``ibuf`` (int64).  ``ibuf`` starts with a
header (scalars, then the offsets of every field in both buffers); :func:`unpack` turns the
buffers into a :class:`ModelArrays` named tuple of views inside compiled code.

Glossary of axes: ``n_bins`` main-measurement bins (all channels, pyhf's order), ``n_cells``
(sample, bin) pairs where a sample exists, ordered by bin then sample; ``n_fac``
multiplicative modifier entries, grouped by cell (``max_fac`` of them at most on one cell); ``n_add`` additive (histosys) entries,
grouped by cell; ``n_ns`` normsys entries; ``n_gauss``/``n_pois`` constrained parameters
with a Gaussian/Poisson constraint; ``n_aux`` auxiliary data.
"""

from __future__ import annotations

from collections import namedtuple

import numpy as np

from ._jit import jit_inline

N_SCALARS = 6  # n_bins, n_pars, n_aux, normsys_code, histosys_code, max_fac
INT_FIELDS = (
    "bin_ptr",  # [n_bins + 1] cells of bin b are bin_ptr[b]:bin_ptr[b+1]
    "fac_ptr",  # [n_cells + 1] multiplicative entries of cell c
    "fac_par",  # [n_fac] parameter index of the entry
    "fac_ref",  # [n_fac] -1: linear factor (the parameter itself); else normsys index
    "add_ptr",  # [n_cells + 1] additive (histosys) entries of cell c
    "add_par",  # [n_add]
    "gauss_par",  # [n_gauss] parameter index
    "gauss_aux",  # [n_gauss] index into auxdata
    "pois_par",  # [n_pois]
    "pois_aux",  # [n_pois]
)
FLOAT_FIELDS = (
    "nominal",  # [n_cells] nominal yield of the cell
    "ns_hi",  # [n_ns] normsys factor at alpha = +1
    "ns_lo",  # [n_ns] normsys factor at alpha = -1
    "ns_coef",  # [n_ns * 6] code4 polynomial coefficients
    "hs_up",  # [n_add] hi - nominal
    "hs_dn",  # [n_add] nominal - lo
    "gauss_sigma",  # [n_gauss] width of the Gaussian constraint
    "pois_factor",  # [n_pois] tau of the Poisson constraint (rate = gamma * tau)
)

ModelArrays = namedtuple(
    "ModelArrays",
    ("n_bins", "n_pars", "n_aux", "normsys_code", "histosys_code", "max_fac")
    + INT_FIELDS
    + FLOAT_FIELDS,
)


def pack(
    scalars: tuple[int, int, int, int, int, int],
    ints: dict[str, np.ndarray],
    floats: dict[str, np.ndarray],
) -> tuple[np.ndarray, np.ndarray]:
    """Pack named arrays into ``(fbuf, ibuf)``; the inverse of :func:`unpack`."""
    n_head = N_SCALARS + len(INT_FIELDS) + 1 + len(FLOAT_FIELDS) + 1
    int_parts = [np.ascontiguousarray(ints[k], dtype=np.int64).ravel() for k in INT_FIELDS]
    flt_parts = [np.ascontiguousarray(floats[k], dtype=np.float64).ravel() for k in FLOAT_FIELDS]
    int_off = np.cumsum([n_head] + [len(p) for p in int_parts])
    flt_off = np.cumsum([0] + [len(p) for p in flt_parts])
    head = np.concatenate([np.asarray(scalars, dtype=np.int64), int_off, flt_off])
    ibuf = np.concatenate([head] + int_parts).astype(np.int64)
    fbuf = np.concatenate(flt_parts).astype(np.float64) if flt_parts else np.zeros(0)
    return np.ascontiguousarray(fbuf), np.ascontiguousarray(ibuf)


def field_slice(name: str, ibuf: np.ndarray) -> slice:
    """Slice of field ``name`` in its buffer (``fbuf`` for float fields, ``ibuf`` otherwise)."""
    if name in INT_FIELDS:
        k = N_SCALARS + INT_FIELDS.index(name)
    else:
        k = N_SCALARS + len(INT_FIELDS) + 1 + FLOAT_FIELDS.index(name)
    return slice(int(ibuf[k]), int(ibuf[k + 1]))


_I = N_SCALARS
_F = N_SCALARS + len(INT_FIELDS) + 1


@jit_inline
def unpack(fbuf, ibuf):
    """Views of every field of a packed model, as a :class:`ModelArrays`."""
    return ModelArrays(
        ibuf[0],
        ibuf[1],
        ibuf[2],
        ibuf[3],
        ibuf[4],
        ibuf[5],
        ibuf[ibuf[_I + 0] : ibuf[_I + 1]],
        ibuf[ibuf[_I + 1] : ibuf[_I + 2]],
        ibuf[ibuf[_I + 2] : ibuf[_I + 3]],
        ibuf[ibuf[_I + 3] : ibuf[_I + 4]],
        ibuf[ibuf[_I + 4] : ibuf[_I + 5]],
        ibuf[ibuf[_I + 5] : ibuf[_I + 6]],
        ibuf[ibuf[_I + 6] : ibuf[_I + 7]],
        ibuf[ibuf[_I + 7] : ibuf[_I + 8]],
        ibuf[ibuf[_I + 8] : ibuf[_I + 9]],
        ibuf[ibuf[_I + 9] : ibuf[_I + 10]],
        fbuf[ibuf[_F + 0] : ibuf[_F + 1]],
        fbuf[ibuf[_F + 1] : ibuf[_F + 2]],
        fbuf[ibuf[_F + 2] : ibuf[_F + 3]],
        fbuf[ibuf[_F + 3] : ibuf[_F + 4]],
        fbuf[ibuf[_F + 4] : ibuf[_F + 5]],
        fbuf[ibuf[_F + 5] : ibuf[_F + 6]],
        fbuf[ibuf[_F + 6] : ibuf[_F + 7]],
        fbuf[ibuf[_F + 7] : ibuf[_F + 8]],
    )
