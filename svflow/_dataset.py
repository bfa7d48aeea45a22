"""Building, saving and loading trajectory datasets (one layout for both engines).

Layout (dims ``time``, ``mode``, ``factor``, ``sv``):

=================  ======================  ==========================================
variable           dims                    meaning
=================  ======================  ==========================================
``lam``            (time, mode)            logit eigenvalues in the spectral frame
``s``              (time, factor, mode)    factor singular values (balanced: optional)
``sigma``          (time, sv)              singular values of the centred logits
``sigma_factor``   (time, factor, sv)      singular values of every factor (full)
``loss``           (time,)                 mean data loss
``objective``      (time,)                 loss + weight-decay penalty
``margin``         (time,)                 min_y Z[y,y] - max_{c!=y} Z[c,y]
``rank``           (time,)                 numerical rank of the centred logits
``frame_drift``    (time,)                 ||offdiag(U^T Z U)||_F (full, spectral)
=================  ======================  ==========================================

Attrs hold every parameter, the solver settings and statistics, the svflow /
jax / diffrax versions, the git commit of the code and a UTC timestamp. They
are netCDF-safe from the start (CF style, see :func:`netcdf_attrs`): numbers,
strings and 1-D numeric arrays only, booleans stored as the integers 0/1, None
as the string ``"none"``, dicts flattened into ``<name>_<key>`` attrs. So plain
``ds.to_netcdf(path)`` and ``xarray.open_dataset(path)`` round-trip every
svflow dataset; :func:`save` and :func:`load` only add an atomic write and
clear errors. :func:`load` still reads files of the older ``"json:..."``
encoding.
"""

from __future__ import annotations

import datetime as _dt
import functools
import json
import numbers
import os
import platform
import stat
import subprocess
import tempfile
from pathlib import Path

import numpy as np
import xarray as xr

from . import _dims as D

__all__ = [
    "build_dataset",
    "grid_dataset",
    "provenance",
    "git_commit",
    "netcdf_attrs",
    "netcdf_safe",
    "encode_attrs",
    "decode_attrs",
    "save",
    "load",
    "check_writable",
]

_JSON = "json:"


@functools.lru_cache(maxsize=1)
def svflow_version() -> str:
    """The version of this svflow: its checkout's pyproject.toml, else the installed metadata.

    A source checkout (editable install, or on ``PYTHONPATH``) reads its own
    ``pyproject.toml``, so the version never comes from another installed copy's
    stale metadata; an installed wheel has no ``pyproject.toml`` beside it.
    """
    from importlib.metadata import PackageNotFoundError, version
    from pathlib import Path

    pyproject = Path(__file__).resolve().parent.parent / "pyproject.toml"
    if pyproject.is_file():
        import tomllib

        project = tomllib.loads(pyproject.read_text(encoding="utf-8")).get("project", {})
        if project.get("name") == "svflow" and "version" in project:
            return str(project["version"])
    try:
        return version("svflow")
    except PackageNotFoundError:
        return "0+unknown"


def provenance() -> dict:
    """Versions, platform and a UTC timestamp for a dataset's attrs."""
    import diffrax
    import equinox
    import jax

    return {
        "svflow_version": svflow_version(),
        "jax_version": jax.__version__,
        "diffrax_version": diffrax.__version__ if hasattr(diffrax, "__version__") else "unknown",
        "equinox_version": equinox.__version__ if hasattr(equinox, "__version__") else "unknown",
        "xarray_version": xr.__version__,
        "python_version": platform.python_version(),
        "jax_backend": jax.default_backend(),
        "jax_enable_x64": int(bool(jax.config.values["jax_enable_x64"])),
        **git_commit(),
        "created": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
    }


@functools.lru_cache(maxsize=1)
def _git_state() -> tuple[str, int]:
    root = Path(__file__).resolve().parent.parent
    try:
        run = functools.partial(
            subprocess.run, cwd=root, capture_output=True, text=True, timeout=10, check=True
        )
        commit = run(["git", "rev-parse", "HEAD"]).stdout.strip()
        dirty = run(["git", "status", "--porcelain", "--untracked-files=no"]).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return "unknown", -1
    return commit or "unknown", int(bool(dirty))


def git_commit() -> dict:
    """The git commit of the svflow source that is running, and a dirty flag.

    ``git_commit``: the commit hash, or ``"unknown"`` outside a git checkout
    (an installed wheel); ``git_dirty``: 1 if tracked files differ from that
    commit, 0 if not, -1 if unknown. Read once per process.
    """
    commit, dirty = _git_state()
    return {"git_commit": commit, "git_dirty": dirty}


def _flatten(name: str, value, out: dict) -> None:
    if isinstance(value, dict):
        for k, v in value.items():
            _flatten(f"{name}_{k}", v, out)
        return
    if isinstance(value, (bool, np.bool_)):
        out[name] = int(value)
    elif value is None:
        out[name] = "none"
    elif isinstance(value, str):
        out[name] = value
    elif isinstance(value, (numbers.Number, np.number)) and not isinstance(
        value, (complex, np.complexfloating)
    ):
        out[name] = value.item() if isinstance(value, np.generic) else value
    elif isinstance(value, (list, tuple, np.ndarray)):
        arr = np.asarray(value, dtype=object).ravel() if not isinstance(value, np.ndarray) else value.ravel()
        items = [x.item() if isinstance(x, np.generic) else x for x in arr.tolist()]
        if not items:
            out[name] = ""
        elif all(isinstance(x, str) for x in items):
            out[name] = " ".join(items) if all(" " not in x for x in items) else json.dumps(items)
        elif items and all(
            isinstance(x, (numbers.Real, np.bool_)) and not isinstance(x, bool) for x in items
        ):
            # one number is stored as a scalar: netCDF reads a 1-element array back as one
            out[name] = np.asarray(items) if len(items) > 1 else items[0]
        elif items and all(isinstance(x, (bool, np.bool_)) for x in items):
            out[name] = np.asarray(items, dtype=np.int64) if len(items) > 1 else int(items[0])
        else:
            out[name + "_json"] = json.dumps(_jsonable(value), sort_keys=True)
    else:
        out[name] = str(value)


def netcdf_attrs(attrs: dict) -> dict:
    """Attrs any netCDF writer accepts and any reader returns unchanged (CF style).

    Booleans become the integers 1/0, None the string ``"none"``, a dict
    ``{"a": 1}`` under ``name`` the attrs ``name_a = 1``, a list of numbers a
    1-D numeric array (a list of one number that number: netCDF reads a
    1-element array back as a scalar), a list of words one space-separated string, any
    other list a JSON string under ``<name>_json``; numpy scalars become Python
    numbers, an empty list the empty string and anything else its ``str``.
    Idempotent.
    """
    out: dict = {}
    for k, v in attrs.items():
        _flatten(str(k), v, out)
    return out


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


def netcdf_safe(ds: xr.Dataset) -> xr.Dataset:
    """``ds`` with its own and every variable's attrs passed through :func:`netcdf_attrs`."""
    ds.attrs = netcdf_attrs(ds.attrs)
    for name in ds.variables:
        ds[name].attrs = netcdf_attrs(ds[name].attrs)
    return ds


def encode_attrs(attrs: dict) -> dict:
    """The older encoding: bools, None, dicts, lists as ``"json:..."`` strings.

    Kept to read and write files of earlier svflow versions; new code uses
    :func:`netcdf_attrs`, which needs no decoding.
    """
    return {k: _encode(v) for k, v in attrs.items()}


def decode_attrs(attrs: dict) -> dict:
    """Inverse of :func:`encode_attrs`."""
    out = {}
    for k, v in attrs.items():
        if isinstance(v, str) and v.startswith(_JSON):
            out[k] = json.loads(v[len(_JSON) :])
        elif isinstance(v, np.generic):
            out[k] = v.item()
        else:
            out[k] = v
    return out


# the dims of the trajectory variables (both engines), in the order a dataset lists them
_TRAJECTORY_DIMS = {
    D.LAM: (D.TIME, D.MODE),
    D.S: (D.TIME, D.FACTOR, D.MODE),
    D.SIGMA: (D.TIME, D.SV),
    D.SIGMA_FACTOR: (D.TIME, D.FACTOR, D.SV),
    D.LOSS: (D.TIME,),
    D.OBJECTIVE: (D.TIME,),
    D.MARGIN: (D.TIME,),
    D.RANK: (D.TIME,),
    D.DRIFT: (D.TIME,),
}


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
    """The trajectory layout (time axis first) through :func:`grid_dataset`.

    Any variable may be omitted (``None``); ``extra`` adds further ``name ->
    (dims, array[, attrs])`` entries. The ``mode``, ``factor`` and ``sv``
    coordinates are the indices of the dims the variables use.
    """
    given = dict(
        lam=lam,
        s=s,
        sigma=sigma,
        sigma_factor=sigma_factor,
        loss=loss,
        objective=objective,
        margin=margin,
        rank=rank,
        frame_drift=frame_drift,
    )
    variables = {k: (_TRAJECTORY_DIMS[k], v) for k, v in given.items() if v is not None}
    variables.update(extra or {})
    sizes = {d: n for dims, v, *_ in variables.values() for d, n in zip(_dims_of(dims), np.shape(v))}
    coords: dict = {D.TIME: (np.asarray(times, dtype=float), D.TIME_ATTRS)}
    coords.update({d: np.arange(sizes[d]) for d in (D.MODE, D.FACTOR, D.SV) if d in sizes})
    return grid_dataset(coords, variables, attrs)


def _dims_of(dims) -> tuple:
    return (dims,) if isinstance(dims, str) else tuple(dims)


def variable(dims, values, attrs: dict | None = None) -> xr.Variable:
    """``xr.Variable(dims, values, attrs)`` with ``values`` as a numpy array.

    Numeric, boolean and text arrays (``<U``, or object arrays of ``str`` as
    :func:`svflow._dims.text` makes) take xarray's ``fastpath`` (the one its own
    ``Variable.copy`` and indexing take): xarray's conversion would keep such an
    array as it is, but first tests whether it is a dask array, which imports
    ``dask.array`` (0.3 s in a fresh process) wherever dask is installed. Other
    object, datetime and timedelta arrays go through xarray's conversion."""
    values = np.asarray(values)
    kind = values.dtype.kind
    plain = kind not in "OMm" or (kind == "O" and all(type(v) is str for v in values.flat))
    return xr.Variable(dims, values, attrs, fastpath=plain)


def _coord(name: str, spec) -> xr.Variable:
    if isinstance(spec, xr.Variable):
        return spec
    if isinstance(spec, tuple) and len(spec) == 3:  # (dims, values, attrs): a non-index coordinate
        dims, values, vattrs = spec
        return variable(dims, values, _attrs(name, vattrs))
    if isinstance(spec, tuple) and len(spec) == 2:  # (values, attrs): an index coordinate
        values, vattrs = spec
        return variable(name, values, _attrs(name, vattrs))
    return variable(name, spec, _attrs(name, None))


def _attrs(name: str, given) -> dict:
    """``name``'s attrs from the vocabulary (:data:`svflow._dims.VOCABULARY`), then ``given``, netCDF-safe."""
    return netcdf_attrs(D.attrs(name, **dict(given or {})))


def grid_dataset(coords: dict, variables: dict, attrs: dict | None = None) -> xr.Dataset:
    """The dataset of a study: results on a grid of settings, netCDF-safe, with provenance.

    Every dataset svflow returns (trajectories through :func:`build_dataset`,
    phase maps, basin maps, code studies, seed sweeps) ends here, so they share
    one layout rule: dimension names are the constants of ``svflow._dims``
    (``depth``, ``classes``, ``seed``, ``time``, ...); every variable and
    coordinate gets its ``long_name`` and ``units`` from the vocabulary
    (:data:`svflow._dims.VOCABULARY`), then the attrs given with it (which
    win: a meaning particular to one dataset); attrs pass through
    :func:`netcdf_attrs` and the dataset attrs carry :func:`provenance`
    (versions, git commit, UTC timestamp), so plain ``ds.to_netcdf``
    round-trips the result.

    Args:
        coords: ``name -> values`` (an index coordinate), ``name -> (values,
            attrs)`` (an index coordinate along the dim ``name``) or ``name ->
            (dims, values, attrs)`` (a coordinate on other dims, e.g. a label
            per cell).
        variables: ``name -> (dims, values, attrs)`` or ``name -> (dims,
            values)``; ``dims`` is a tuple of dim names (or one name).
        attrs: the study's parameters (any values :func:`netcdf_attrs`
            accepts); provenance is added after them.

    Returns:
        ``xr.Dataset`` whose own and per-variable attrs are netCDF-safe.
    """
    data = {}
    for name, spec in variables.items():
        dims, values, *rest = spec
        data[name] = variable(dims, values, _attrs(name, rest[0] if rest else None))
    cvars = {name: _coord(name, spec) for name, spec in coords.items()}
    return xr.Dataset(data, coords=cvars, attrs=netcdf_attrs({**(attrs or {}), **provenance()}))


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def check_writable(path) -> Path:
    """Check that :func:`save` can write ``path`` (a temp file is created and removed).

    Returns the path with ``~`` expanded. Raises ``IsADirectoryError`` (the
    path is a folder), ``NotADirectoryError`` (a parent is a file) or
    ``PermissionError`` (the file or the nearest existing folder is read-only),
    each naming the path. Scripts call it before a long computation.
    """
    try:
        path = Path(os.fspath(path)).expanduser()
    except TypeError as e:
        raise TypeError(f"path must be a file path (str or os.PathLike); got {path!r}.") from e
    if path.is_dir() or path.name in ("", ".", ".."):
        raise IsADirectoryError(
            f"path {str(path)!r} is a directory; pass a file name such as {str(path / 'run.nc')!r}."
        )
    folder = path.parent
    while not folder.exists():
        folder = folder.parent
    if not folder.is_dir():
        raise NotADirectoryError(f"cannot write {str(path)!r}: {str(folder)!r} is a file, not a folder.")
    try:  # a real probe: os.access is optimistic for root and on some file systems
        with tempfile.TemporaryFile(dir=folder, prefix=".svflow-probe-"):
            pass
    except OSError as e:
        raise PermissionError(
            f"cannot write {str(path)!r}: the folder {str(folder)!r} is not writable ({e.strerror or e})."
        ) from None
    if path.exists() and not os.access(path, os.W_OK):
        raise PermissionError(f"cannot write {str(path)!r}: the file is read-only.")
    return path


def save(ds: xr.Dataset, path) -> Path:
    """Write ``ds`` to netCDF (h5netcdf) atomically: temp file, then rename.

    The attrs are passed through :func:`netcdf_attrs` (a no-op for datasets
    that svflow built), so plain ``xarray.open_dataset`` reads the file back
    with the same attrs. ``~`` is expanded; missing folders are created. A new
    file gets the usual permissions (0666 minus the umask, 0644 under umask
    022); an overwritten file keeps its mode.
    """
    if isinstance(ds, xr.DataArray):
        raise TypeError(
            "ds must be an xarray.Dataset; got a DataArray. Save it as "
            "svflow.save(da.to_dataset(name='...'), path)."
        )
    if not isinstance(ds, xr.Dataset):
        raise TypeError(f"ds must be an xarray.Dataset; got {type(ds).__name__}.")
    path = check_writable(path)
    if path.suffix.lower() == ".zarr":
        raise ValueError(
            f"svflow.save writes netCDF, but {str(path)!r} ends in .zarr: pass a .nc name, or "
            "write a zarr store with ds.to_zarr(path) (open it with xarray.open_zarr)."
        )
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise OSError(
            f"cannot create the folder {str(path.parent)!r} for {str(path)!r}: {e.strerror or e}."
        ) from e
    try:
        mode = stat.S_IMODE(path.stat().st_mode)
    except FileNotFoundError:
        mode = 0o666 & ~_umask()
    out = ds.copy()
    out.attrs = netcdf_attrs(ds.attrs)
    for name in out.variables:
        out[name].attrs = netcdf_attrs(ds[name].attrs)
    try:
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    except OSError as e:
        raise PermissionError(
            f"cannot write {str(path)!r}: its folder {str(path.parent)!r} is not writable "
            f"({e.strerror or e})."
        ) from e
    os.close(fd)
    try:
        out.to_netcdf(tmp, engine="h5netcdf")
        os.chmod(tmp, mode)
        os.replace(tmp, path)
    except BaseException as e:
        if os.path.exists(tmp):
            os.unlink(tmp)
        if isinstance(e, OSError) and not isinstance(e, FileNotFoundError):
            raise OSError(f"cannot write {str(path)!r}: {e.strerror or e}.") from e
        raise
    return path


def load(path) -> xr.Dataset:
    """Read a netCDF dataset (from :func:`save` or ``ds.to_netcdf``) into memory.

    netCDF4 files (HDF5, what :func:`save` writes) are read with h5netcdf,
    netCDF3 files (e.g. ``ds.to_netcdf(path, engine="scipy")``) with scipy.

    Attrs come back as written; files of svflow's older ``"json:..."`` attr
    encoding are decoded and converted to the current netCDF-safe attrs.
    """
    try:
        path = Path(os.fspath(path)).expanduser()
    except TypeError as e:
        raise TypeError(f"path must be a file path (str or os.PathLike); got {path!r}.") from e
    if not path.exists():
        raise FileNotFoundError(f"no svflow dataset at {str(path)!r}: the file does not exist.")
    if path.is_dir():
        hint = (
            " It looks like a zarr store: open a sweep store with svflow.open_sweep(path)."
            if (path / "zarr.json").exists() or (path / ".zgroup").exists()
            else ""
        )
        raise IsADirectoryError(f"{str(path)!r} is a directory, not a netCDF file.{hint}")
    if path.stat().st_size == 0:
        raise ValueError(f"{str(path)!r} is empty (0 bytes): not a netCDF dataset.")
    with open(path, "rb") as f:
        magic = f.read(4)
    # netCDF3 (classic b"CDF\x01", 64-bit offset b"CDF\x02"), e.g. from to_netcdf(engine="scipy"),
    # is read with scipy; netCDF4/HDF5 with h5netcdf
    engine = "scipy" if magic in (b"CDF\x01", b"CDF\x02") else "h5netcdf"
    try:
        ds = xr.load_dataset(path, engine=engine)
    except Exception as e:
        raise ValueError(
            f"cannot read {str(path)!r} as a netCDF dataset ({type(e).__name__}: {e}). "
            "The file may be truncated, corrupt or of another format."
        ) from e
    ds.attrs = netcdf_attrs(decode_attrs(ds.attrs))
    for name in ds.variables:
        ds[name].attrs = netcdf_attrs(decode_attrs(ds[name].attrs))
    # text as Python strings, as svflow builds it (fixed-width <U strings warn in to_zarr)
    text = {name: D.text(ds[name].values) for name in ds.variables if ds[name].dtype.kind in "US"}
    return ds.assign_coords(
        {k: (ds[k].dims, v, ds[k].attrs) for k, v in text.items() if k in ds.coords}
    ).assign({k: (ds[k].dims, v, ds[k].attrs) for k, v in text.items() if k not in ds.coords})
