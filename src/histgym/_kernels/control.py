"""Replace one sample's nominal yields inside a packed model, keeping modifiers relative.

histosys shifts keep their hi/nominal and lo/nominal ratios; staterror widths are
recomputed from the sample's relative uncertainty as pyhf computes them
(``sqrt(sum_s u_s^2) / sum_s nominal_s`` per bin).  normsys/normfactor/lumi need nothing,
and shapesys constraints depend only on the relative uncertainty, so they are unchanged.
"""

from __future__ import annotations

import math

from ._jit import jit
from .layout import unpack


@jit
def set_sample_yields(
    fbuf,
    ibuf,
    yields,
    cells,
    add_entries,
    add_pos,
    up_abs,
    up_rel,
    dn_abs,
    dn_rel,
    st_gauss,
    st_pos,
    st_other_nom,
    st_other_u2,
    st_rel,
):
    """Write ``yields`` (float64 [n_channel_bins]) as the sample's nominal into ``fbuf``."""
    m = unpack(fbuf, ibuf)
    for i in range(cells.shape[0]):
        m.nominal[cells[i]] = yields[i]
    for k in range(add_entries.shape[0]):
        y = yields[add_pos[k]]
        m.hs_up[add_entries[k]] = up_abs[k] + up_rel[k] * y
        m.hs_dn[add_entries[k]] = dn_abs[k] + dn_rel[k] * y
    for k in range(st_gauss.shape[0]):
        y = yields[st_pos[k]]
        u = st_rel[k] * y
        tot = st_other_nom[k] + y
        sig = math.sqrt(st_other_u2[k] + u * u) / tot if tot > 0.0 else 0.0
        # a zero width would make the constraint singular: pyhf fixes such parameters
        m.gauss_sigma[st_gauss[k]] = sig if sig > 0.0 else 1.0
