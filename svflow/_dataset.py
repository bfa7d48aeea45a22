"""Building, saving and loading trajectory datasets (one layout for both engines).

Layout (dims ``time``, ``mode``, ``factor``, ``sv``):

=================  ======================  ==========================================
variable           dims                    meaning
=================  ======================  ==========================================
``lam``            (time, mode)            logit eigenvalues in the Walsh frame
``s``              (time, factor, mode)    factor singular values in the Walsh frame
``sigma``          (time, sv)              singular values of the centred logits
``sigma_factor``   (time, factor, sv)      singular values of every factor (full)
``loss``           (time,)                 mean data loss
``objective``      (time,)                 loss + weight-decay penalty
``margin``         (time,)                 min_y Z[y,y] - max_{c!=y} Z[c,y]
``rank``           (time,)                 numerical rank of the centred logits
``frame_drift``    (time,)                 ||offdiag(U^T Z U)||_F (full, spectral)
=================  ======================  ==========================================

Attrs hold every parameter, the solver settings and statistics, the svflow /
jax / diffrax versions and a UTC timestamp. netCDF attrs take no dicts, None
or bools: :func:`encode_attrs` stores those as ``"json:..."`` strings and
:func:`load` decodes them, so a round trip is lossless.
"""

from __future__ import annotations

import datetime as _dt
import json
import os
import platform
import tempfile
from pathlib import Path

import numpy as np
import xarray as xr

from . import _dims as D

__all__ = ["build_dataset", "provenance", "encode_attrs", "decode_attrs", "save", "load"]

_JSON = "json:"


def provenance() -> dict:
    """Versions, platform and a UTC timestamp for a dataset's attrs."""
    import diffrax
    import equinox
    import jax

    from . import __version__

    return {
        "svflow_version": __version__,
        "jax_version": jax.__version__,
        "diffrax_version": diffrax.__version__ if hasattr(diffrax, "__version__") else "unknown",
        "equinox_version": equinox.__version__ if hasattr(equinox, "__version__") else "unknown",
        "xarray_version": xr.__version__,
        "python_version": platform.python_version(),
        "jax_backend": jax.default_backend(),
        "jax_enable_x64": bool(jax.config.jax_enable_x64),
        "created": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
    }


def _encode(v):
    if isinstance(v, (bool, np.bool_)) or v is None or isinstance(v, (dict, list, tuple)):
        return _JSON + json.dumps(_jsonable(v), sort_keys=True)
    if isinstance(v, np.generic):
        return v.item()
    return v


def _jsonable(v):
    if isinstance(v, dict):
        return {str(k): _jsonable(x) for k, x in v.items()}
    if isinstance(v, (list, tuple)):
        return [_jsonable(x) for x in v]
    if isinstance(v, np.ndarray):
        return v.tolist()
    if isinstance(v, np.generic):
        return v.item()
    return v


def encode_attrs(attrs: dict) -> dict:
    """Make attrs netCDF-safe: bools, None, dicts, lists become ``"json:..."`` strings."""
    return {k: _encode(v) for k, v in attrs.items()}


def decode_attrs(attrs: dict) -> dict:
    """Inverse of :func:`encode_attrs`."""
    out = {}
    for k, v in attrs.items():
        if isinstance(v, str) and v.startswith(_JSON):
            out[k] = json.loads(v[len(_JSON):])
        elif isinstance(v, np.generic):
            out[k] = v.item()
        else:
            out[k] = v
    return out


def build_dataset(
    times,
    *,
    attrs: dict,
    lam=None,
    s=None,
    sigma=None,
    sigma_factor=None,
    loss=None,
    objective=None,
    margin=None,
    rank=None,
    frame_drift=None,
    extra: dict | None = None,
) -> xr.Dataset:
    """Assemble the common dataset layout from numpy/JAX arrays (time axis first).

    Any variable may be omitted (``None``); ``extra`` adds further
    ``name -> (dims, array, attrs)`` entries.
    """
    times = np.asarray(times, dtype=float)
    data = {}

    def put(name, dims, value, long_name, units="1"):
        if value is not None:
            data[name] = xr.Variable(dims, np.asarray(value), {"long_name": long_name, "units": units})

    put(D.LAM, (D.TIME, D.MODE), lam, "logit eigenvalue in the Walsh frame (U^T Z U diagonal)")
    put(D.S, (D.TIME, D.FACTOR, D.MODE), s, "factor singular value in the Walsh frame")
    put(D.SIGMA, (D.TIME, D.SV), sigma, "singular value of the centred logits (decreasing)")
    put(D.SIGMA_FACTOR, (D.TIME, D.FACTOR, D.SV), sigma_factor, "singular value of each factor")
    put(D.LOSS, (D.TIME,), loss, "mean data loss")
    put(D.OBJECTIVE, (D.TIME,), objective, "loss + (wd/2) sum_l ||W_l||_F^2")
    put(D.MARGIN, (D.TIME,), margin, "min_y Z[y,y] - max_{c != y} Z[c,y]")
    put(D.RANK, (D.TIME,), rank, "numerical rank of the centred logits")
    put(D.DRIFT, (D.TIME,), frame_drift, "||offdiag(U^T Z U)||_F (frame drift)")
    for name, (dims, value, vattrs) in (extra or {}).items():
        data[name] = xr.Variable(dims, np.asarray(value), dict(vattrs))

    coords = {D.TIME: xr.Variable(D.TIME, times, D.TIME_ATTRS)}
    sizes = {d: n for v in data.values() for d, n in zip(v.dims, v.shape)}
    if D.MODE in sizes:
        coords[D.MODE] = xr.Variable(D.MODE, np.arange(sizes[D.MODE]), {"long_name": "Walsh mode index"})
    if D.FACTOR in sizes:
        coords[D.FACTOR] = xr.Variable(
            D.FACTOR, np.arange(sizes[D.FACTOR]),
            {"long_name": "factor index (0 = features H, N-1 = last weight W_L)"},
        )
    if D.SV in sizes:
        coords[D.SV] = xr.Variable(D.SV, np.arange(sizes[D.SV]), {"long_name": "singular value index"})
    return xr.Dataset(data, coords=coords, attrs={**attrs, **provenance()})


def save(ds: xr.Dataset, path) -> Path:
    """Write ``ds`` to netCDF (h5netcdf) atomically: temp file, then rename.

    Attrs that netCDF cannot hold (bools, None, dicts, lists) are encoded and
    restored by :func:`load`.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    out = ds.copy()
    out.attrs = encode_attrs(ds.attrs)
    for name in out.variables:
        out[name].attrs = encode_attrs(ds[name].attrs)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    try:
        out.to_netcdf(tmp, engine="h5netcdf")
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise
    return path


def load(path) -> xr.Dataset:
    """Read a dataset written by :func:`save` into memory, decoding its attrs."""
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"no svflow dataset at {path}")
    ds = xr.load_dataset(path, engine="h5netcdf")
    ds.attrs = decode_attrs(ds.attrs)
    for name in ds.variables:
        ds[name].attrs = decode_attrs(ds[name].attrs)
    return ds
