"""Model layer: :class:`Model`, a compiled HistFactory model with pyhf's parameter layout.

``Model`` is immutable: :meth:`Model.with_sample_yields` returns a new model sharing the
index arrays.  Parameter vectors are in pyhf's order (``parameter_names``), data vectors are
main bins (pyhf's channel order) followed by auxdata (pyhf's order).
"""

from __future__ import annotations

import copy
import math
from collections.abc import Mapping, Sequence
from functools import cached_property
from typing import Any

import numpy as np
import numpy.typing as npt

from ._kernels.control import set_sample_yields
from ._kernels.layout import field_slice
from ._kernels.likelihood import (
    expected_main,
    twice_nll,
    twice_nll_batch,
    twice_nll_grad,
    twice_nll_grad_batch,
    twice_nll_grad_models_batch,
    twice_nll_hess,
    twice_nll_models_batch,
)
from .compile import Compiled, SampleCells, check_packed, compile_model, sample_cells
from .errors import InvalidData, InvalidParameters, UnknownName, did_you_mean
from .workspace import WorkspaceLike, build_pyhf_model

__all__ = ["Model", "from_pyhf"]

FloatArray = npt.NDArray[np.float64]


class Model:
    """A HistFactory model compiled for fast, exact likelihood evaluation.

    Build it with :func:`histgym.from_pyhf`.  All likelihood methods take ``pars`` as a
    float64 array of shape ``[n_params]`` in pyhf's order and ``data`` as ``[n_data]``
    (main bins then auxdata); ``data=None`` means the workspace's observed data.
    """

    def __init__(
        self,
        config: Any,
        spec: Mapping[str, Any],
        observed: Sequence[float],
        compiled: Compiled,
        fbuf: FloatArray | None = None,
    ) -> None:
        self._config = config
        self._spec = spec
        self._compiled = compiled
        self._observed = np.ascontiguousarray(observed, dtype=np.float64)
        self._observed.setflags(write=False)
        if fbuf is None:
            check_packed(compiled.fbuf, compiled.ibuf)  # every stored index is in range
            fbuf = compiled.fbuf
        elif not (
            isinstance(fbuf, np.ndarray) and fbuf.dtype == np.float64 and fbuf.ndim == 1
            and fbuf.size == compiled.fbuf.size and fbuf.flags.c_contiguous
        ):  # fmt: skip
            raise InvalidParameters(
                f"fbuf must be a C-contiguous float64 array of {compiled.fbuf.size} entries"
            )
        self.fbuf = fbuf
        self.ibuf = compiled.ibuf
        self.parameter_names: list[str] = list(config.par_names)
        self.poi_name: str | None = config.poi_name
        self.poi_index: int | None = config.poi_index
        self.n_params: int = int(config.npars)
        self.n_bins: int = compiled.n_bins
        self.n_aux: int = len(config.auxdata)
        self.channels: list[str] = list(config.channels)
        self._lower = np.array([b[0] for b in config.suggested_bounds()], dtype=np.float64)
        self._upper = np.array([b[1] for b in config.suggested_bounds()], dtype=np.float64)
        self._init = np.array(config.suggested_init(), dtype=np.float64)
        self._fixed = np.array(config.suggested_fixed(), dtype=bool)
        ib = self.ibuf
        if (int(ib[0]), int(ib[1]), int(ib[2])) != (self.n_bins, self.n_params, self.n_aux):
            raise InvalidParameters("the compiled model does not match its parameter layout")
        if self._observed.shape != (self.n_data,):
            msg = (
                f"observed data have shape {self._observed.shape} but the model expects "
                f"({self.n_data},): {self.n_bins} main bins + {self.n_aux} auxdata"
            )
            raise InvalidData(msg)

    # ------------------------------------------------------------------ layout
    @property
    def config(self) -> Any:
        """pyhf's model configuration (``pyhf.pdf._ModelConfig``): the parameter layout."""
        return self._config

    @property
    def spec(self) -> Mapping[str, Any]:
        """The model specification (channels + measurement parameters, patches applied)."""
        return self._spec

    @cached_property
    def pyhf_model(self) -> Any:
        """pyhf's ``Model`` of the same spec (built on first use: slow for large workspaces).

        It describes the spec's nominal yields, not those set by :meth:`with_sample_yields`.
        """
        import pyhf

        return pyhf.Model(
            copy.deepcopy(dict(self._spec)),
            poi_name=self._config.poi_name,
            modifier_settings=self._config.modifier_settings,
            validate=False,
        )

    @property
    def n_data(self) -> int:
        """Length of a data vector: main bins plus auxdata."""
        return self.n_bins + self.n_aux

    def samples(self, channel: str) -> list[str]:
        """Sample names present in ``channel``, in pyhf's (sorted) order."""
        self._check_channel(channel)
        return [s for s in self._config.samples if (channel, s) in self._compiled.cell_of]

    def channel_slice(self, channel: str) -> slice:
        """Slice of ``channel``'s bins in the main-bin vector."""
        self._check_channel(channel)
        return self._config.channel_slices[channel]

    def par_slice(self, name: str) -> slice:
        """Slice of the parameter set ``name`` (pyhf's un-expanded name) in a parameter vector."""
        try:
            return self._config.par_slice(name)
        except KeyError:
            names = list(self._config.par_order)
            raise UnknownName(f"unknown parameter {name!r}." + did_you_mean(name, names)) from None

    def suggested_init(self) -> FloatArray:
        """pyhf's initial values (float64 [n_params])."""
        return self._init.copy()

    def suggested_bounds(self) -> FloatArray:
        """pyhf's bounds as float64 [n_params, 2] (lower, upper)."""
        return np.stack([self._lower, self._upper], axis=1)

    def suggested_fixed(self) -> npt.NDArray[np.bool_]:
        """pyhf's fixed flags (bool [n_params])."""
        return self._fixed.copy()

    def observed_data(self) -> FloatArray:
        """The workspace's observed main bins followed by auxdata (float64 [n_data], a copy)."""
        return self._observed.copy()

    def __repr__(self) -> str:
        return (
            f"<histgym.Model: {len(self.channels)} channels, {self.n_bins} bins, "
            f"{self.n_params} parameters, poi={self.poi_name!r}>"
        )

    # ------------------------------------------------------------------ checks
    def _check_channel(self, channel: str) -> None:
        if channel not in self.channels:
            msg = f"unknown channel {channel!r}; the model has {self.channels}."
            raise UnknownName(msg + did_you_mean(channel, self.channels))

    def _check_sample(self, channel: str, sample: str) -> None:
        names = self.samples(channel)
        if sample not in names:
            msg = f"unknown sample {sample!r} in channel {channel!r}; it has {names}."
            raise UnknownName(msg + did_you_mean(sample, names))

    def check_pars(self, pars: Any, *, name: str = "pars") -> FloatArray:
        """Return ``pars`` as float64 [n_params], or raise :class:`InvalidParameters`."""
        arr = _as_float64(pars, name, InvalidParameters)
        if arr.shape != (self.n_params,):
            msg = f"{name} has shape {arr.shape} but the model has {self.n_params} parameters"
            raise InvalidParameters(msg + f" (expected shape ({self.n_params},))")
        if not np.all(np.isfinite(arr)):
            bad = [self.parameter_names[i] for i in np.flatnonzero(~np.isfinite(arr))[:5]]
            raise InvalidParameters(f"{name} has non-finite values for {bad}")
        return arr

    def check_data(self, data: Any) -> FloatArray:
        """Return ``data`` (None = observed) as float64 [n_data], or raise :class:`InvalidData`."""
        if data is None:
            return self._observed
        arr = _as_float64(data, "data", InvalidData)
        if arr.shape == (self.n_bins,) and self.n_aux:
            msg = (
                f"data has {self.n_bins} entries: the main bins only; append the "
                f"{self.n_aux} auxdata (e.g. model.observed_data()[{self.n_bins}:])"
            )
            raise InvalidData(msg)
        if arr.shape != (self.n_data,):
            msg = (
                f"data has shape {arr.shape} but the model expects ({self.n_data},): "
                f"{self.n_bins} main bins + {self.n_aux} auxdata"
            )
            raise InvalidData(msg)
        if not np.all(np.isfinite(arr)) or np.any(arr[: self.n_bins] < 0):
            idx = np.flatnonzero(~np.isfinite(arr) | (np.arange(arr.size) < self.n_bins) & (arr < 0))
            raise InvalidData(f"data must be finite and main bins >= 0; bad entries at {idx[:5].tolist()}")
        return arr

    # ------------------------------------------------------------------ likelihood
    def expected_data(self, pars: Any, include_auxdata: bool = True) -> FloatArray:
        """Expected main-bin yields (and auxdata expectations) at ``pars``.

        Returns:
            float64 [n_data] (or [n_bins] with ``include_auxdata=False``), as pyhf's
            ``model.expected_data``.
        """
        p = self.check_pars(pars)
        main = np.empty(self.n_bins)
        expected_main(p, self.fbuf, self.ibuf, main)
        if not include_auxdata:
            return main
        return np.concatenate([main, self._expected_aux(p)])

    def _expected_aux(self, p: FloatArray) -> FloatArray:
        aux = np.empty(self.n_aux)
        ib = self.ibuf
        gp = ib[field_slice("gauss_par", ib)]
        ga = ib[field_slice("gauss_aux", ib)]
        pp = ib[field_slice("pois_par", ib)]
        pa = ib[field_slice("pois_aux", ib)]
        tau = self.fbuf[field_slice("pois_factor", ib)]
        aux[ga] = p[gp]
        aux[pa] = p[pp] * tau
        return aux

    def twice_nll(self, pars: Any, data: Any = None) -> float:
        """-2 ln L, equal to ``-2 * pyhf_model.logpdf(pars, data)`` (all constants included).

        ``+inf`` where a bin with data has a non-positive expected yield (pyhf: NaN), and
        where finite parameters are so extreme that an expected yield overflows (never NaN).

        Raises:
            InvalidParameters: ``pars`` has the wrong shape or non-finite values.
            InvalidData: ``data`` has the wrong shape, NaN or negative main bins.
        """
        p = pars
        if not (type(p) is np.ndarray and p.dtype == np.float64 and p.flags.c_contiguous):
            p = _as_float64(pars, "pars", InvalidParameters)
        if p.shape != (self.n_params,):
            self.check_pars(p)  # raises with the expected shape
        value = float(twice_nll(p, self.check_data(data), self.fbuf, self.ibuf))
        if not math.isfinite(value):  # validate only here: non-finite pars make it inf or NaN
            self.check_pars(p)
            if math.isnan(value):  # finite pars so large that an expected yield overflows
                return math.inf
        return value

    def nll(self, pars: Any, data: Any = None) -> float:
        """-ln L, equal to ``-pyhf_model.logpdf(pars, data)``; see :meth:`twice_nll`."""
        return 0.5 * self.twice_nll(pars, data)

    def grad_nll(self, pars: Any, data: Any = None) -> FloatArray:
        """Exact gradient of -ln L with respect to ``pars`` (float64 [n_params])."""
        g = np.empty(self.n_params)
        twice_nll_grad(self.check_pars(pars), self.check_data(data), self.fbuf, self.ibuf, g)
        return 0.5 * g

    def nll_and_grad(self, pars: Any, data: Any = None) -> tuple[float, FloatArray]:
        """(-ln L, its gradient) in one pass."""
        g = np.empty(self.n_params)
        f = twice_nll_grad(self.check_pars(pars), self.check_data(data), self.fbuf, self.ibuf, g)
        return 0.5 * float(f), 0.5 * g

    def hessian_nll(self, pars: Any, data: Any = None) -> FloatArray:
        """Exact Hessian of -ln L (float64 [n_params, n_params])."""
        g = np.empty(self.n_params)
        h = np.empty((self.n_params, self.n_params))
        twice_nll_hess(self.check_pars(pars), self.check_data(data), self.fbuf, self.ibuf, g, h)
        return 0.5 * h

    # ------------------------------------------------------------------ batches
    def _batch(self, pars: Any, data: Any) -> tuple[FloatArray, FloatArray]:
        p = _as_float64(pars, "pars", InvalidParameters)
        if p.ndim != 2 or p.shape[1] != self.n_params:
            msg = f"batched pars must have shape (N, {self.n_params}), got {p.shape}"
            raise InvalidParameters(msg)
        if not np.all(np.isfinite(p)):
            raise InvalidParameters("batched pars contain non-finite values")
        if data is None or np.ndim(data) == 1:
            d1 = self.check_data(data)
            d = np.broadcast_to(d1, (p.shape[0], d1.size))
        else:
            d = _as_float64(data, "data", InvalidData)
            if d.shape != (p.shape[0], self.n_data):
                raise InvalidData(f"batched data must have shape ({p.shape[0]}, {self.n_data}), got {d.shape}")
            for row in d:
                self.check_data(row)
        return p, d

    def twice_nll_batch(self, pars: Any, data: Any = None) -> FloatArray:
        """-2 ln L for a batch: pars [N, n_params], data [n_data] or [N, n_data] -> [N]."""
        p, d = self._batch(pars, data)
        out = np.empty(p.shape[0])
        twice_nll_batch(p, d, self.fbuf, self.ibuf, out)
        return out

    def grad_nll_batch(self, pars: Any, data: Any = None) -> tuple[FloatArray, FloatArray]:
        """(-ln L [N], gradient [N, n_params]) for a batch of parameter vectors."""
        p, d = self._batch(pars, data)
        out = np.empty(p.shape[0])
        g = np.empty_like(p)
        twice_nll_grad_batch(p, d, self.fbuf, self.ibuf, out, g)
        return 0.5 * out, 0.5 * g

    def sample_yields_buffers(self, channel: str, sample: str, yields: Any) -> FloatArray:
        """Model buffers (float64 [N, n_fbuf]) with ``sample``'s nominal replaced per row.

        ``yields`` is [N, n_channel_bins]; modifier semantics as :meth:`with_sample_yields`.
        """
        y = _as_float64(yields, "yields", InvalidParameters)
        nb = self.channel_slice(channel).stop - self.channel_slice(channel).start
        if y.ndim != 2 or y.shape[1] != nb:
            raise InvalidParameters(f"yields must have shape (N, {nb}), got {y.shape}")
        ctl = self.sample_control(channel, sample)
        bufs = np.repeat(self.fbuf[None, :], y.shape[0], axis=0)
        for i in range(y.shape[0]):
            _check_yields(y[i], channel, sample)
            ctl.apply(bufs[i], self.ibuf, y[i])
        return bufs

    def twice_nll_yields_batch(
        self, channel: str, sample: str, yields: Any, pars: Any, data: Any = None
    ) -> FloatArray:
        """-2 ln L [N] with ``sample``'s yields replaced by row i of ``yields`` [N, bins] at pars[i]."""
        bufs = self.sample_yields_buffers(channel, sample, yields)
        p, d = self._batch(pars, data)
        _same_rows(bufs, p)
        out = np.empty(p.shape[0])
        twice_nll_models_batch(p, d, bufs, self.ibuf, out)
        return out

    def grad_nll_yields_batch(
        self, channel: str, sample: str, yields: Any, pars: Any, data: Any = None
    ) -> tuple[FloatArray, FloatArray]:
        """(-ln L [N], gradient [N, n_params]) with per-row replaced yields of ``sample``."""
        bufs = self.sample_yields_buffers(channel, sample, yields)
        p, d = self._batch(pars, data)
        _same_rows(bufs, p)
        out = np.empty(p.shape[0])
        g = np.empty_like(p)
        twice_nll_grad_models_batch(p, d, bufs, self.ibuf, out, g)
        return 0.5 * out, 0.5 * g

    # ------------------------------------------------------------------ modified samples
    def sample_control(self, channel: str, sample: str) -> SampleControl:
        """Bookkeeping to replace ``sample``'s nominal yields in ``channel`` quickly."""
        self._check_sample(channel, sample)
        return SampleControl(sample_cells(self._compiled, self._config, self._spec, channel, sample))

    def sample_yields(self, channel: str, sample: str) -> FloatArray:
        """Current nominal yields of ``sample`` in ``channel`` (float64 [n_channel_bins])."""
        self._check_sample(channel, sample)
        cells = self._compiled.cell_of[(channel, sample)]
        return self.fbuf[field_slice("nominal", self.ibuf)][cells].copy()

    def with_sample_yields(self, channel: str, sample: str, yields: Any) -> Model:
        """A new model with ``sample``'s nominal yields in ``channel`` replaced by ``yields``.

        Modifiers on the sample keep their relative size (DESIGN.md): normsys, normfactor,
        lumi act multiplicatively; histosys keep their hi/nominal and lo/nominal ratios;
        staterror/shapesys keep the sample's relative uncertainties, and the combined
        staterror widths are recomputed as pyhf computes them.
        """
        ctl = self.sample_control(channel, sample)
        y = _as_float64(yields, "yields", InvalidParameters)
        if y.shape != ctl.cells.nominal.shape:
            msg = f"yields for {sample!r} in {channel!r} must have shape {ctl.cells.nominal.shape}, got {y.shape}"
            raise InvalidParameters(msg)
        _check_yields(y, channel, sample)
        fbuf = self.fbuf.copy()
        ctl.apply(fbuf, self.ibuf, y)
        return Model(self._config, self._spec, self._observed, self._compiled, fbuf)

    @cached_property
    def _sample_index(self) -> dict[str, int]:
        return {n: i for i, n in enumerate(self.parameter_names)}

    def index(self, name: str) -> int:
        """Position of an expanded parameter name (e.g. ``'staterror_SR[0]'``)."""
        try:
            return self._sample_index[name]
        except KeyError:
            msg = f"unknown parameter {name!r}." + did_you_mean(name, self.parameter_names)
            raise UnknownName(msg) from None


def _as_float64(x: Any, name: str, exc: type[Exception]) -> FloatArray:
    """``x`` as a C-contiguous float64 array; real dtypes of any width or byte order are
    converted, anything else (strings, objects, complex) raises ``exc`` naming ``name``."""
    if isinstance(x, np.ndarray) and x.dtype == np.float64 and x.flags.c_contiguous:
        return x
    try:
        a = np.asarray(x)
        if a.dtype.kind not in "fiu":
            raise TypeError(f"dtype {a.dtype}")
        return np.ascontiguousarray(a, dtype=np.float64)
    except (TypeError, ValueError, OverflowError) as err:
        raise exc(f"{name} must be an array of real numbers ({err})") from None


def _same_rows(bufs: FloatArray, pars: FloatArray) -> None:
    if bufs.shape[0] != pars.shape[0]:
        msg = f"yields have {bufs.shape[0]} rows but pars {pars.shape[0]}: one per batch row"
        raise InvalidParameters(msg)


def _check_yields(y: FloatArray, channel: str, sample: str) -> None:
    if not np.all(np.isfinite(y)) or np.any(y < 0):
        bad = np.flatnonzero(~np.isfinite(y) | (y < 0))[:5].tolist()
        msg = f"yields of {sample!r} in {channel!r} must be finite and >= 0; bad bins {bad}"
        raise InvalidParameters(msg)


class SampleControl:
    """Replace one sample's nominal yields in packed model buffers (see ``set_sample_yields``)."""

    def __init__(self, cells: SampleCells) -> None:
        self.cells = cells
        c = cells
        self._args = (
            c.cells,
            c.add_entries,
            c.add_pos,
            c.up_abs,
            c.up_rel,
            c.dn_abs,
            c.dn_rel,
            c.staterror_gauss,
            c.staterror_pos,
            c.staterror_other_nom,
            c.staterror_other_u2,
            c.staterror_rel,
        )

    @property
    def n_bins(self) -> int:
        """Number of bins of the controlled sample's channel."""
        return int(self.cells.cells.size)

    def apply(self, fbuf: FloatArray, ibuf: npt.NDArray[np.int64], yields: FloatArray) -> None:
        """Write ``yields`` into ``fbuf`` in place (no checks: callers validate)."""
        set_sample_yields(fbuf, ibuf, yields, *self._args)


def from_pyhf(
    workspace: WorkspaceLike,
    *,
    measurement: str | None = None,
    patches: Sequence[Any] | None = None,
    modifier_settings: Mapping[str, Mapping[str, str]] | None = None,
) -> Model:
    """Compile a pyhf JSON workspace into a :class:`Model`.

    Args:
        workspace: a dict, JSON text, a path to a JSON file, or a ``pyhf.Workspace``.
        measurement: measurement name; defaults to the first one (pyhf's choice).
        patches: JSON patches (lists of operations, patchset entries, ``pyhf.patchset.Patch``
            or paths to JSON files) applied in order before building.
        modifier_settings: pyhf's interpolation settings, e.g.
            ``{"normsys": {"interpcode": "code1"}, "histosys": {"interpcode": "code0"}}``;
            defaults to pyhf's Model defaults (normsys ``code4``, histosys ``code4p``).

    Raises:
        WorkspaceError: the workspace is malformed, violates the schema, has non-finite
            numbers or negative observations, or a patch/measurement/setting is invalid.

    Example:
        >>> import histgym
        >>> model = histgym.from_pyhf(histgym.example_workspace())
        >>> model.parameter_names
        ['mu', 'bkg_norm']
        >>> round(model.twice_nll(model.suggested_init()), 6)
        35.582271
    """
    from .fastbuild import build_model  # the fast path (histgym.build); reference: _from_pyhf_reference

    return build_model(workspace, measurement=measurement, patches=patches, modifier_settings=modifier_settings)


def _from_pyhf_reference(
    workspace: WorkspaceLike,
    *,
    measurement: str | None = None,
    patches: Sequence[Any] | None = None,
    modifier_settings: Mapping[str, Mapping[str, str]] | None = None,
) -> Model:
    """:func:`from_pyhf` through ``pyhf.Workspace`` and :mod:`histgym.compile` (slow; for tests)."""
    _, spec, config, observed = build_pyhf_model(
        workspace, measurement=measurement, patches=patches, modifier_settings=modifier_settings
    )
    return Model(config, spec, observed, compile_model(config, spec))
