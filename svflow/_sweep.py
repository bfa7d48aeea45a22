r"""``svflow.sweep``: resumable, chunked parameter sweeps on zarr and dask.distributed.

A sweep evaluates one function of a random key and a few coordinates,

$$\mathrm{out}(c) = \mathtt{cell\_fn}(k(c), c_1, \dots, c_d),\qquad
c \in \mathrm{grid} = X_1 \times \dots \times X_d,$$

on every cell $c$ of a product grid and returns one ``xarray.Dataset`` with the
grid's dimensions followed by each output's own dimensions.

How the work is cut
    Grid dimensions named in ``static`` change array shapes or compiled code
    (depth, width, the loss): the runner loops over their combinations and
    passes them to ``cell_fn`` as Python values, so ``cell_fn`` is compiled
    once per static setting. The remaining ("dynamic") dimensions are
    flattened, in C order, into cells; ``chunk`` consecutive cells form one
    chunk (the unit of storage, resumption and dask tasks), computed as
    ``chunk / batch`` calls of ``cell_fn`` under ``jax.vmap`` over ``batch``
    cells, with dynamic coordinates as traced 0-d arrays. The last batch of
    every static setting is padded (by repeating its last cell) to the full
    size, so every call has one shape and one compilation.

Random keys
    $k(c) = \mathrm{fold\_in}(\mathrm{fold\_in}(\mathrm{key}(\mathtt{base\_seed}),
    h_{hi}(c)), h_{lo}(c))$, where $h$ is a 64-bit BLAKE2b hash of the
    cell's coordinate values by name (all grid dimensions, static ones
    included). Keys depend on what a cell is, never on when or where it runs,
    so every cell gets the same random draws however the sweep is cut, resumed
    or distributed. :func:`cell_key` rebuilds one cell's key.

Bitwise reproducibility
    A cell's numbers also depend on the compiled batch shape: XLA's vectorised
    math may round a value differently (by an ulp) at another batch size or
    batch position (observed: 1 of 12 escape times of ``basin_cell``, relative
    1.6e-16). A sweep calls ``cell_fn`` on batches of ``batch`` cells (a
    divisor of ``chunk``, default ``chunk``), cell ``i`` at position
    ``i % batch``, so an interrupted-and-resumed sweep, a distributed sweep and
    a sweep with another ``chunk`` but the same ``batch`` give bitwise-identical
    results; another ``batch`` or a sharded batch agrees to rounding.

Store (a local zarr v3 directory, readable by ``xarray.open_zarr``)
    Created up front, atomically (built in a temporary directory next to it,
    then renamed), from the sweep's template: every output ``name`` is an
    array of dims ``(sweep_static, sweep_cell, *output dims)`` whose zarr
    chunks are exactly the runner's chunks, so each finished chunk is written
    into its own region (whole zarr chunk files, each written atomically by
    zarr's local store). Only after its region is written does a chunk get
    its completion mark: ``sweep_done[static, chunk]`` holds a 64-bit
    checksum of the chunk's data (0 = not done). On every start (and before
    returning) each marked chunk's data is read back and its checksum
    recomputed; a chunk without a mark or whose data does not match it is
    computed (again), never read as a result.

Specification
    The grid, ``static``, ``params``, ``base_seed``, ``cell_fn``'s qualified
    name, the outputs' dims/shapes/dtypes and the svflow version form the
    sweep's specification, stored in the store's attrs with its SHA-256.
    Reopening a store with another specification raises
    :class:`SweepSpecError` before anything is written.

Backends
    In-process by default; with several JAX devices (``devices``), every
    vmapped chunk is sharded over a 1-D ``jax.sharding.Mesh``. With a
    ``dask.distributed`` client (or scheduler address) every chunk is a task
    on the cluster's workers (each worker compiles once per static setting
    and keeps the compiled function); results stream back to the driver as
    they finish (``as_completed``) and the driver alone writes the store.
    One writer means no two processes ever touch the store's metadata or a
    completion mark at once, and a mark is written only by the process that
    has just written (and checksummed) the data it vouches for; workers need
    no access to the store's file system.

Progress
    One tqdm bar per sweep (cells done, rate, ETA), in-process and distributed
    alike: the driver advances it as chunks are written; a resumed sweep
    starts it at the cells already done. Inside one long integration
    (``simulate(..., progress=True)``) diffrax's meter is linear in the
    solver's time variable, which in svflow is $\tau = \log(1 + t)$: it shows
    $\log(1+t)/\log(1+t_{end})$, e.g. 50 % at $t = 10^4$ of a run to $10^8$.
"""

from __future__ import annotations

import dataclasses
import hashlib
import itertools
import json
import math
import os
import shutil
import tempfile
import time as _time
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Mapping, Sequence

import jax
import jax.numpy as jnp
import numpy as np
import xarray as xr

__all__ = ["sweep", "open_sweep", "cell_key", "SweepSpecError", "SweepPlan"]

FORMAT = 1
STATIC_DIM = "sweep_static"  # flat index of a static setting in the store
CELL_DIM = "sweep_cell"  # flat index of a dynamic cell in the store
CHUNK_DIM = "sweep_chunk"  # chunk index in the store
DONE = "sweep_done"  # completion marks (checksums; 0 = not done)
SPEC_ATTR = "svflow_sweep_spec"
HASH_ATTR = "svflow_sweep_hash"
LAYOUT_ATTR = "svflow_sweep_layout"
_RESERVED = {"key", STATIC_DIM, CELL_DIM, CHUNK_DIM, DONE}


class SweepSpecError(ValueError):
    """A store holds another sweep than the one asked for (nothing was written)."""


# --- canonical values and hashes


def _canonical(value, where: str):
    """JSON-able canonical form of a parameter or coordinate value."""
    if isinstance(value, (bool, np.bool_)):
        return bool(value)
    if isinstance(value, (int, np.integer)):
        return int(value)
    if isinstance(value, (float, np.floating)):
        v = float(value)
        if not math.isfinite(v):
            raise ValueError(f"{where} must be finite; got {value!r}.")
        return v
    if isinstance(value, str) or value is None:
        return value
    if isinstance(value, (np.ndarray, jax.Array)):
        return _canonical(np.asarray(value).tolist(), where)
    if isinstance(value, (list, tuple)):
        return [_canonical(v, where) for v in value]
    if isinstance(value, Mapping):
        return {str(k): _canonical(v, f"{where}[{k!r}]") for k, v in value.items()}
    raise ValueError(
        f"{where} must be built from numbers, strings, bools, None, lists and dicts "
        f"(it is recorded in the sweep's specification); got {type(value).__name__}: "
        f"{value!r}. Pass a plain value, or close over the object in cell_fn."
    )


def _dumps(obj) -> str:
    return json.dumps(obj, sort_keys=True, separators=(",", ":"))


def _cell_hash(coords: Mapping[str, Any]) -> int:
    """64-bit hash of one cell's coordinates (sorted by name; canonical JSON values)."""
    text = _dumps({k: _canonical(v, k) for k, v in coords.items()})
    return int.from_bytes(hashlib.blake2b(text.encode(), digest_size=8).digest(), "little")


def _fold(base, words):
    return jax.random.fold_in(jax.random.fold_in(base, words[0]), words[1])


def _words(h: int) -> np.ndarray:
    return np.array([h >> 32, h & 0xFFFFFFFF], dtype=np.uint32)


def cell_key(base_seed: int = 0, **coords) -> jax.Array:
    r"""The random key :func:`sweep` gives the cell with these coordinates.

    ``coords`` must name every grid dimension (static ones included) with the
    cell's coordinate value; ``base_seed`` is the sweep's ``base_seed``. Use it
    to recompute one cell outside the runner:
    ``cell_fn(cell_key(0, eps=0.1, seed=3), eps=0.1, seed=3)``.
    """
    return _fold(jax.random.key(int(base_seed)), _words(_cell_hash(coords)))


def _checksum(arrays: Mapping[str, np.ndarray]) -> int:
    """Nonzero 64-bit BLAKE2b checksum of a chunk's outputs (names, dtypes, shapes, bytes)."""
    h = hashlib.blake2b(digest_size=8)
    for name in sorted(arrays):
        a = np.ascontiguousarray(arrays[name])
        h.update(f"{name}|{a.dtype.str}|{a.shape}|".encode())
        h.update(a.tobytes())
    return int.from_bytes(h.digest(), "little") or 1


# --- the plan: everything a worker needs to compute a chunk


@dataclass(frozen=True)
class OutputSpec:
    dims: tuple[str, ...]
    shape: tuple[int, ...]
    dtype: str


@dataclass
class SweepPlan:
    """How a sweep is cut into static settings and chunks (picklable for dask)."""

    cell_fn: Callable
    grid: dict[str, np.ndarray]
    static: tuple[str, ...]
    dynamic: tuple[str, ...]
    params: dict
    base_seed: int
    chunk: int
    outputs: dict[str, OutputSpec]
    spec: dict
    spec_hash: str
    fn_token: str = ""  # hash of the pickled cell_fn (keys the compile caches)
    batch: int = 0  # cells per vmapped call (divides chunk); 0: = chunk

    @property
    def static_shape(self) -> tuple[int, ...]:
        return tuple(len(self.grid[d]) for d in self.static)

    @property
    def dynamic_shape(self) -> tuple[int, ...]:
        return tuple(len(self.grid[d]) for d in self.dynamic)

    @property
    def n_static(self) -> int:
        return int(np.prod(self.static_shape, dtype=int))

    @property
    def n_cells(self) -> int:
        """Dynamic cells per static setting."""
        return int(np.prod(self.dynamic_shape, dtype=int))

    @property
    def n_chunks(self) -> int:
        """Chunks per static setting."""
        return -(-self.n_cells // self.chunk)

    def static_values(self, s: int) -> dict:
        idx = np.unravel_index(s, self.static_shape) if self.static else ()
        return {d: _canonical(self.grid[d][i], d) for d, i in zip(self.static, idx)}

    def chunk_cells(self, c: int) -> np.ndarray:
        """Flat dynamic cell indices of chunk c (unpadded)."""
        return np.arange(c * self.chunk, min((c + 1) * self.chunk, self.n_cells))

    @property
    def vbatch(self) -> int:
        return self.batch or self.chunk

    def batch_cells(self, c: int) -> list[np.ndarray]:
        """Chunk c cut into the flat cell indices of its vmapped batches."""
        cells = self.chunk_cells(c)
        return [cells[i:i + self.vbatch] for i in range(0, len(cells), self.vbatch)]

    def chunk_inputs(self, s: int, c: int, batch: int):
        """Inputs of chunk c (single-batch form, see :meth:`batch_inputs`)."""
        return self.batch_inputs(s, self.chunk_cells(c), batch)

    def batch_inputs(self, s: int, cells: np.ndarray, batch: int):
        """(hash words (batch, 2), dynamic coordinate arrays, number of real cells) of
        the flat cell indices ``cells``, padded to ``batch`` by repeating the last."""
        n = len(cells)
        cells = np.concatenate([cells, np.full(batch - n, cells[-1])])
        idx = np.unravel_index(cells, self.dynamic_shape) if self.dynamic else ()
        dyn = {d: self.grid[d][i] for d, i in zip(self.dynamic, idx)}
        # the text _cell_hash hashes, assembled from per-value JSON computed once
        text = _value_texts(self)
        sidx = np.unravel_index(s, self.static_shape) if self.static else ()
        parts = {d: [text[d][i]] * batch for d, i in zip(self.static, sidx)}
        parts.update({d: [text[d][i] for i in ii] for d, ii in zip(self.dynamic, idx)})
        names = sorted(parts)
        words = np.empty((batch, 2), np.uint32)
        for j in range(batch):
            body = ",".join(f"{json.dumps(d)}:{parts[d][j]}" for d in names)
            h = hashlib.blake2b(("{" + body + "}").encode(), digest_size=8).digest()
            words[j] = _words(int.from_bytes(h, "little"))
        return words, dyn, n


_TEXTS: dict = {}  # spec hash -> {dim: canonical JSON of each grid value}


def _value_texts(plan: SweepPlan) -> dict[str, list[str]]:
    texts = _TEXTS.get(plan.spec_hash)
    if texts is None:
        texts = {d: [_dumps(_canonical(v, d)) for v in plan.grid[d].tolist()] for d in plan.grid}
        _TEXTS[plan.spec_hash] = texts
    return texts


_COMPILED: dict = {}  # (spec hash, cell_fn token, static, batch, devices) -> (cell_fn, jitted)
_KEEP: list = []
_SHAPES: dict = {}  # (cell_fn, static values, dynamic dtypes, params) -> output shapes


def _devices(devices) -> list:
    if devices is None:
        return list(jax.local_devices())
    if isinstance(devices, int):
        avail = jax.local_devices()
        if not 1 <= devices <= len(avail):
            raise ValueError(f"devices={devices} but this process has {len(avail)} JAX devices.")
        return list(avail[:devices])
    return list(devices)


def _batched(plan: SweepPlan, s: int, devs: list):
    """The jitted, vmapped cell function of static setting s, sharded over ``devs``."""
    batch = -(-plan.vbatch // len(devs)) * len(devs)
    # keyed by the pickled function too: a long-lived worker (or notebook) is never
    # served the compiled code of an older cell_fn of the same name
    cache_key = (plan.spec_hash, plan.fn_token, s, batch, tuple(str(d) for d in devs))
    hit = _COMPILED.get(cache_key)
    if hit is not None:
        return hit[1], batch
    stat = plan.static_values(s)
    base = jax.random.key(plan.base_seed)

    def one(words, *dyn):
        key = _fold(base, words)
        out = plan.cell_fn(key, **stat, **dict(zip(plan.dynamic, dyn)), **plan.params)
        return _as_outputs(out)

    vm = jax.vmap(one)
    if len(devs) > 1:
        from jax.sharding import Mesh, NamedSharding, PartitionSpec

        mesh = Mesh(np.array(devs), ("cells",))
        sh = NamedSharding(mesh, PartitionSpec("cells"))
        fn = jax.jit(vm, in_shardings=sh, out_shardings=sh)
    else:
        jitted = jax.jit(vm)
        dev = devs[0]

        def fn(*args):
            return jitted(*jax.device_put(args, dev))
    _COMPILED[cache_key] = (plan.cell_fn, fn)
    return fn, batch


def _as_outputs(out) -> dict:
    if not isinstance(out, Mapping) or not out:
        raise ValueError(
            "cell_fn must return a non-empty dict mapping output names to arrays; "
            f"got {type(out).__name__}."
        )
    return {str(k): jnp.asarray(v) for k, v in out.items()}


def dispatch_chunk(plan: SweepPlan, s: int, c: int, devices=None):
    """Start chunk c of static setting s, one vmapped call per batch (JAX dispatches
    asynchronously); returns ``[(device outputs, real cells)]`` for :func:`collect_chunk`."""
    devs = _devices(devices)
    fn, batch = _batched(plan, s, devs)
    calls = []
    for cells in plan.batch_cells(c):
        words, dyn, n = plan.batch_inputs(s, cells, batch)
        calls.append((fn(words, *(dyn[d] for d in plan.dynamic)), n))
    return calls


def collect_chunk(plan: SweepPlan, s: int, dispatched) -> dict[str, np.ndarray]:
    """Wait for a dispatched chunk; its outputs as numpy arrays (real cells only)."""
    result = {}
    for name, spec in plan.outputs.items():
        a = np.concatenate([np.asarray(out[name])[:n] for out, n in dispatched])
        if a.shape[1:] != spec.shape or a.dtype != np.dtype(spec.dtype):
            raise ValueError(
                f"cell_fn output {name!r} has shape {a.shape[1:]} and dtype {a.dtype} at "
                f"{plan.static_values(s)}, but {spec.shape} and {spec.dtype} at the first "
                "static setting; every static setting must give the same output shapes "
                "(pad inside cell_fn, e.g. to the largest depth)."
            )
        result[name] = a
    return result


def compute_chunk(plan: SweepPlan, s: int, c: int, devices=None) -> dict[str, np.ndarray]:
    """Outputs of chunk c of static setting s, as numpy arrays (real cells only)."""
    return collect_chunk(plan, s, dispatch_chunk(plan, s, c, devices))


def _worker_chunk(plan: SweepPlan, s: int, c: int):
    """dask task: compute one chunk on a worker (its own devices, its own compile cache)."""
    return s, c, compute_chunk(plan, s, c)


# --- building the plan


def _make_plan(cell_fn, grid, static, params, base_seed, chunk, outputs, coords,
               batch=None) -> SweepPlan:
    if not callable(cell_fn):
        raise ValueError(f"cell_fn must be callable as cell_fn(key, **coords); got {cell_fn!r}.")
    if not isinstance(grid, Mapping) or not grid:
        raise ValueError(f"grid must be a non-empty mapping name -> 1-D values; got {grid!r}.")
    params = dict(params or {})
    g: dict[str, np.ndarray] = {}
    for name, values in grid.items():
        if not (isinstance(name, str) and name.isidentifier()) or name in _RESERVED:
            raise ValueError(
                f"grid dimension names must be Python identifiers other than "
                f"{sorted(_RESERVED)}; got {name!r}."
            )
        if name in params:
            raise ValueError(f"{name!r} is both a grid dimension and a params entry.")
        a = np.asarray(values)
        if a.ndim != 1 or a.size == 0:
            raise ValueError(f"grid[{name!r}] must be a non-empty 1-D sequence; got shape {a.shape}.")
        canon = [_dumps(_canonical(v, f"grid[{name!r}]")) for v in a.tolist()]
        if len(set(canon)) != len(canon):
            raise ValueError(f"grid[{name!r}] has repeated values {a.tolist()}; give each once.")
        g[name] = a
    static = tuple(static)
    for d in static:
        if d not in g:
            raise ValueError(f"static dimension {d!r} is not in the grid {list(g)}.")
    dynamic = tuple(d for d in g if d not in static)
    for d in dynamic:
        if not (np.issubdtype(g[d].dtype, np.number) or g[d].dtype == bool):
            raise ValueError(
                f"grid[{d!r}] has dtype {g[d].dtype}; only numeric dimensions can be "
                f"vmapped. Add {d!r} to static=."
            )
    chunk = int(chunk)
    if chunk < 1:
        raise ValueError(f"chunk must be a positive number of cells; got {chunk}.")
    n_cells = int(np.prod([len(g[d]) for d in dynamic], dtype=int))
    if batch is None:
        chunk = batch = min(chunk, n_cells)
    else:
        batch = int(batch)
        if batch < 1 or chunk % batch:
            raise ValueError(
                f"batch must be a positive divisor of chunk (cells per vmapped call; a chunk "
                f"is chunk / batch calls); got batch={batch}, chunk={chunk}."
            )
        chunk = min(chunk, -(-n_cells // batch) * batch)

    base_seed = int(base_seed)
    fn_name = f"{getattr(cell_fn, '__module__', '?')}.{getattr(cell_fn, '__qualname__', repr(cell_fn))}"
    spec = {
        "format": FORMAT,
        "cell_fn": fn_name,
        "grid": [[d, _canonical(g[d].tolist(), f"grid[{d!r}]")] for d in g],
        "static": list(static),
        "params": _canonical(params, "params"),
        "base_seed": base_seed,
        "svflow_version": _svflow_version(),
    }
    plan = SweepPlan(cell_fn, g, static, dynamic, params, base_seed, chunk, {}, spec, "")

    # --- output shapes from one abstract evaluation of the first cell
    stat = plan.static_values(0)
    dyn0 = {d: jnp.asarray(g[d][0]) for d in dynamic}
    shape_key = (cell_fn, _dumps(stat), tuple((d, str(v.dtype)) for d, v in dyn0.items()),
                 _dumps(spec["params"]))
    try:
        shapes = _SHAPES.get(shape_key) or jax.eval_shape(
            lambda: _as_outputs(cell_fn(jax.random.key(0), **stat, **dyn0, **params))
        )
        _SHAPES[shape_key] = shapes
    except TypeError as err:
        raise ValueError(
            f"evaluating cell_fn(key, {', '.join([*g, *params])}) on the first cell failed: "
            f"{err}\ncell_fn must take the key first and every grid dimension and params "
            f"entry as keywords. Dynamic dimensions {list(dynamic)} arrive as traced 0-d "
            "arrays: a dimension that sets a shape or a Python branch must be listed in "
            "static=."
        ) from err
    outputs = dict(outputs or {})
    coords = dict(coords or {})
    unknown = set(outputs) - set(shapes)
    if unknown:
        raise ValueError(f"outputs names {sorted(unknown)} that cell_fn does not return {sorted(shapes)}.")
    out_specs = {}
    for name, sd in shapes.items():
        dims = tuple(outputs.get(name, tuple(f"{name}_dim{i}" for i in range(sd.ndim))))
        if len(dims) != sd.ndim:
            raise ValueError(
                f"outputs[{name!r}] names dims {dims} but cell_fn returns shape {sd.shape}; "
                f"give {sd.ndim} dimension names."
            )
        if set(dims) & (set(g) | _RESERVED):
            raise ValueError(f"output {name!r} dims {dims} reuse a grid or reserved name.")
        if name in g or name in _RESERVED:
            raise ValueError(f"output name {name!r} clashes with a grid or reserved name.")
        out_specs[name] = OutputSpec(dims, tuple(int(n) for n in sd.shape), np.dtype(sd.dtype).str)
    sizes: dict[str, int] = {}
    for name, o in out_specs.items():
        for d, n in zip(o.dims, o.shape):
            if sizes.setdefault(d, n) != n:
                raise ValueError(f"output dim {d!r} has sizes {sizes[d]} and {n} in different outputs.")
    for d, v in coords.items():
        if d not in sizes or np.asarray(v).shape != (sizes[d],):
            raise ValueError(f"coords[{d!r}] must be 1-D of the output dim's size {sizes.get(d)}.")
    spec["outputs"] = {n: {"dims": list(o.dims), "shape": list(o.shape), "dtype": o.dtype}
                       for n, o in out_specs.items()}
    spec["coords"] = {d: _canonical(np.asarray(v).tolist(), f"coords[{d!r}]") for d, v in coords.items()}
    plan.outputs = out_specs
    plan.spec_hash = hashlib.sha256(_dumps(spec).encode()).hexdigest()
    plan.fn_token = _fn_token(cell_fn)
    plan.batch = batch
    return plan


def _fn_token(fn) -> str:
    """Content hash of a function (its cloudpickle, which holds the code of functions
    defined in ``__main__`` or closures); the object's id if it cannot be pickled."""
    import cloudpickle

    try:
        return hashlib.sha256(cloudpickle.dumps(fn)).hexdigest()
    except Exception:
        _KEEP.append(fn)  # keep it alive so that its id is never reused
        return f"id:{id(fn)}"


def _svflow_version() -> str:
    from . import __version__

    return __version__


# --- the store


def _fill(dtype: np.dtype):
    return np.nan if np.issubdtype(dtype, np.floating) or np.issubdtype(dtype, np.complexfloating) else 0


def _create_store(path: Path, plan: SweepPlan) -> None:
    """Write the template (metadata, coordinates, empty data) atomically."""
    import dask.array as da

    S, C, K = plan.n_static, plan.n_cells, plan.n_chunks
    data = {}
    encoding = {}
    for name, o in plan.outputs.items():
        dt = np.dtype(o.dtype)
        data[name] = ((STATIC_DIM, CELL_DIM, *o.dims),
                      da.full((S, C, *o.shape), _fill(dt), dtype=dt, chunks=(1, plan.chunk, *o.shape)))
        encoding[name] = {"chunks": (1, plan.chunk, *o.shape)}
        if not np.issubdtype(dt, np.floating):
            encoding[name]["_FillValue"] = None
    data[DONE] = ((STATIC_DIM, CHUNK_DIM), da.zeros((S, K), dtype=np.uint64, chunks=(1, 1)))
    encoding[DONE] = {"chunks": (1, 1), "_FillValue": None}
    coords = {}
    sidx = np.unravel_index(np.arange(S), plan.static_shape) if plan.static else ()
    for d, i in zip(plan.static, sidx):
        coords[d] = (STATIC_DIM, plan.grid[d][i])
    cidx = np.unravel_index(np.arange(C), plan.dynamic_shape) if plan.dynamic else ()
    for d, i in zip(plan.dynamic, cidx):
        coords[d] = (CELL_DIM, plan.grid[d][i])
    for d, v in plan.spec["coords"].items():
        coords[d] = (d, np.asarray(v))
    attrs = {SPEC_ATTR: _dumps(plan.spec), HASH_ATTR: plan.spec_hash,
             LAYOUT_ATTR: _dumps({"chunk": plan.chunk, "batch": plan.vbatch})}
    template = xr.Dataset(data, coords=coords, attrs=attrs)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent))
    try:
        template.to_zarr(tmp, mode="w", compute=False, consolidated=False, encoding=encoding,
                         zarr_format=3)
        os.replace(tmp, path)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


def _read_spec(path: Path) -> tuple[dict, str, dict]:
    import zarr

    try:
        g = zarr.open_group(str(path), mode="r")
        return json.loads(g.attrs[SPEC_ATTR]), g.attrs[HASH_ATTR], json.loads(g.attrs[LAYOUT_ATTR])
    except (KeyError, FileNotFoundError, zarr.errors.GroupNotFoundError):
        raise SweepSpecError(
            f"{path} exists but is not an svflow sweep store (no {SPEC_ATTR!r} attribute); "
            "pass another store path."
        ) from None


def _spec_diff(old: dict, new: dict) -> list[str]:
    diff = []
    for k in sorted(set(old) | set(new)):
        a, b = old.get(k), new.get(k)
        if a == b:
            continue
        if isinstance(a, dict) and isinstance(b, dict):
            diff += [f"{k}[{j!r}]: {a.get(j)!r} -> {b.get(j)!r}"
                     for j in sorted(set(a) | set(b)) if a.get(j) != b.get(j)]
        elif k == "grid":
            da_, db_ = dict(map(tuple, a)), dict(map(tuple, b))
            if list(da_) != list(db_):
                diff.append(f"grid dims: {list(da_)} -> {list(db_)}")
            diff += [f"grid[{j!r}]: {da_.get(j)} -> {db_.get(j)}"
                     for j in da_ if j in db_ and da_[j] != db_[j]]
        else:
            diff.append(f"{k}: {a!r} -> {b!r}")
    return diff


def _check_store(path: Path, plan: SweepPlan) -> bool:
    """Whether ``path`` holds this sweep already (False: nothing there yet); raise
    :class:`SweepSpecError` if it holds another one. Reads only."""
    if not path.exists() or (path.is_dir() and not any(path.iterdir())):
        return False  # a missing path or an empty directory
    spec, h, layout = _read_spec(path)
    if h != plan.spec_hash:
        diff = _spec_diff(spec, plan.spec) or ["(specification hash differs)"]
        raise SweepSpecError(
            f"the store {path} holds another sweep; resuming would mix two "
            f"experiments. Differences (stored -> requested): {'; '.join(diff)}. "
            "Pass a new store path, or delete the old store to start over. The store "
            "was not modified."
        )
    if layout.get("chunk") != plan.chunk:
        raise SweepSpecError(
            f"the store {path} was written with chunk={layout.get('chunk')}; resume it "
            f"with chunk={layout.get('chunk')} (got {plan.chunk}). The store was not modified."
        )
    return True


def _open_store(path: Path, plan: SweepPlan):
    """Create the store or check that it holds this sweep; return the zarr group."""
    import zarr

    if not _check_store(path, plan):
        _create_store(path, plan)
    return zarr.open_group(str(path), mode="r+")


def _verify(group, plan: SweepPlan) -> tuple[dict[str, np.ndarray], np.ndarray]:
    """Read every output and the marks; return (data, done) where done[s, c] is True only
    for chunks whose stored data matches their completion checksum."""
    damaged_files = False
    try:
        marks = np.asarray(group[DONE][...])
    except Exception:  # an undecodable mark counts as no mark
        damaged_files = True
        marks = np.zeros((plan.n_static, plan.n_chunks), np.uint64)
        for s, c in itertools.product(range(plan.n_static), range(plan.n_chunks)):
            try:
                marks[s, c] = group[DONE][s, c]
            except Exception:
                pass
    data = {}
    for name in plan.outputs:
        try:
            data[name] = np.asarray(group[name][...])
        except Exception:  # undecodable chunk file: fall back to reading chunk by chunk
            damaged_files = True
            o = plan.outputs[name]
            a = np.full((plan.n_static, plan.n_cells, *o.shape), _fill(np.dtype(o.dtype)),
                        dtype=np.dtype(o.dtype))
            for s, c in itertools.product(range(plan.n_static), range(plan.n_chunks)):
                cells = plan.chunk_cells(c)
                try:
                    a[s, cells[0]:cells[-1] + 1] = group[name][s, cells[0]:cells[-1] + 1]
                except Exception:
                    marks[s, c] = 0
            data[name] = a
    done = np.zeros(marks.shape, dtype=bool)
    for s, c in zip(*np.nonzero(marks)):
        cells = plan.chunk_cells(int(c))
        region = {n: a[s, cells[0]:cells[-1] + 1] for n, a in data.items()}
        if _checksum(region) == int(marks[s, c]):
            done[s, c] = True
        else:
            damaged_files = True
    if damaged_files and marks.any():
        bad = int(np.count_nonzero(marks) - done.sum())
        if bad:
            warnings.warn(f"{bad} chunk(s) in the sweep store have data that does not match "
                          "their completion checksum; they will be recomputed.", stacklevel=3)
    return data, done


def _write_chunk(arrays, plan: SweepPlan, s: int, c: int, out: Mapping[str, np.ndarray]) -> None:
    """Write a chunk's region, then (only then) its completion mark.

    ``arrays`` maps output names and ``DONE`` to the store's zarr arrays."""
    cells = plan.chunk_cells(c)
    sl = slice(int(cells[0]), int(cells[-1]) + 1)
    for name, a in out.items():
        arrays[name][s, sl] = a
    arrays[DONE][s, c] = np.uint64(_checksum(out))


# --- the result


def _to_dataset(plan: SweepPlan, data: dict[str, np.ndarray]) -> xr.Dataset:
    grid_dims = list(plan.grid)
    order = [*plan.static, *plan.dynamic]
    perm = [order.index(d) for d in grid_dims]
    variables = {}
    for name, o in plan.outputs.items():
        a = data[name].reshape(*plan.static_shape, *plan.dynamic_shape, *o.shape)
        a = a.transpose(*perm, *range(len(order), a.ndim))
        variables[name] = ((*grid_dims, *o.dims), a)
    coords = {d: (d, plan.grid[d]) for d in grid_dims}
    coords.update({d: (d, np.asarray(v)) for d, v in plan.spec["coords"].items()})
    from ._dataset import provenance

    attrs = {
        "title": "svflow sweep",
        "cell_fn": plan.spec["cell_fn"],
        "static_dims": list(plan.static),
        "params": plan.spec["params"],
        "base_seed": plan.base_seed,
        "sweep_spec_hash": plan.spec_hash,
        "chunk": plan.chunk,
        "batch": plan.vbatch,
        **provenance(),
    }
    return xr.Dataset(variables, coords=coords, attrs=attrs)


def _plan_from_store(path: Path) -> SweepPlan:
    spec, h, layout = _read_spec(path)
    grid = {d: np.asarray(v) for d, v in spec["grid"]}
    outputs = {n: OutputSpec(tuple(o["dims"]), tuple(o["shape"]), o["dtype"])
               for n, o in spec["outputs"].items()}
    static = tuple(spec["static"])
    return SweepPlan(None, grid, static, tuple(d for d in grid if d not in static),
                     spec["params"], spec["base_seed"], layout["chunk"], outputs, spec, h)


def open_sweep(store, *, allow_incomplete: bool = False) -> xr.Dataset:
    """Read a sweep store written by :func:`sweep` as a grid-shaped Dataset.

    Every chunk's data is checked against its completion checksum. Incomplete
    or damaged chunks raise ``ValueError`` unless ``allow_incomplete=True``, in
    which case their cells are NaN (or 0 for integer outputs) and the boolean
    variable ``complete`` (grid dims) says which cells hold results.
    """
    import zarr

    path = Path(store)
    if not path.exists():
        raise FileNotFoundError(f"no sweep store at {path}")
    plan = _plan_from_store(path)
    data, done = _verify(zarr.open_group(str(path), mode="r"), plan)
    cell_done = np.repeat(done, plan.chunk, axis=1)[:, :plan.n_cells]
    if not cell_done.all():
        if not allow_incomplete:
            raise ValueError(
                f"the sweep in {path} is incomplete ({int(cell_done.sum())} of "
                f"{cell_done.size} cells done); resume it with svflow.sweep(...) or pass "
                "allow_incomplete=True."
            )
        for name, a in data.items():
            a[~cell_done] = _fill(a.dtype)
    ds = _to_dataset(plan, data)
    if allow_incomplete:
        flag = dataclasses.replace(plan, outputs={"complete": OutputSpec((), (), "|b1")})
        ds["complete"] = _to_dataset(flag, {"complete": cell_done})["complete"]
    ds.attrs["cell_fn"] = plan.spec["cell_fn"]
    return ds


# --- the runner


def sweep(
    cell_fn: Callable,
    grid: Mapping[str, Sequence],
    *,
    store,
    chunk: int,
    client=None,
    static: Sequence[str] = (),
    params: Mapping[str, Any] | None = None,
    outputs: Mapping[str, Sequence[str]] | None = None,
    coords: Mapping[str, Sequence] | None = None,
    base_seed: int = 0,
    devices=None,
    progress: bool = True,
    batch: int | None = None,
    max_chunks: int | None = None,
    dry_run: bool = False,
) -> xr.Dataset | dict | None:
    r"""Run ``cell_fn`` on every cell of ``grid``, resumably, into a zarr store.

    Each cell $c$ (one value per grid dimension) gives
    ``cell_fn(key, **c, **params) -> {name: array}`` with
    ``key = cell_key(base_seed, **c)`` (see the module docstring: the key is a
    function of the coordinates only). Static dimensions arrive as Python
    values; dynamic ones as traced 0-d arrays (``cell_fn`` runs under
    ``jax.vmap``, so it must be traceable in them).

    Args:
        cell_fn: ``cell_fn(key, **coords, **params)``, returning a dict of arrays
            (each output may have its own dims; shapes fixed per sweep).
        grid: ordered mapping ``name -> 1-D values`` (e.g. ``depth``, ``eps``,
            ``seed``); the result's leading dims, in this order.
        store: path of a local zarr directory; created if missing, resumed if it
            holds the same sweep (same specification and ``chunk``).
        chunk: cells per chunk (per vmapped call, per dask task, per region).
        client: ``None`` (run in this process), a ``dask.distributed.Client``
            or a scheduler address such as ``"tcp://127.0.0.1:8786"``.
        static: grid dims that change shapes or compiled code (compiled once each).
        params: extra keyword arguments for ``cell_fn`` (plain JSON-able values),
            recorded in the specification.
        outputs: optional ``name -> dims`` names for the outputs' own dims
            (default ``<name>_dim<i>``); shapes and dtypes come from
            ``jax.eval_shape`` of one cell.
        coords: optional coordinate values for output dims.
        base_seed: seed of the base key every cell key is folded from.
        devices: JAX devices of this process to shard each chunk over (``None``:
            all local devices; an int: the first n). Ignored with ``client``
            (each worker uses its own devices).
        progress: show one tqdm bar (cells done, rate, ETA).
        batch: cells per vmapped call (the compiled shape), a divisor of ``chunk``
            (default: ``chunk``). Runs with the same ``batch`` are bitwise equal
            whatever their ``chunk`` (a cell sits at position ``index % batch`` of
            a batch of ``batch`` cells); XLA may round a few values differently
            (by an ulp) for another batch shape, including a per-device shard.
        max_chunks: stop after computing this many chunks and return ``None``
            (for staged runs and tests); ``None`` runs to the end.
        dry_run: only plan: check the arguments (one abstract evaluation of
            ``cell_fn``) and the store (read-only), and return a dict with the
            numbers of static settings, cells, chunks, chunks done and to do,
            the outputs and the specification hash. Nothing is computed or written.

    Returns:
        ``xarray.Dataset`` with dims ``(*grid, *output dims)``, coordinates from
        ``grid`` and ``coords``, attrs with the specification and provenance
        (``None`` when stopped early by ``max_chunks``).

    Raises:
        ValueError: bad grid, params or outputs (message says what to pass).
        SweepSpecError: ``store`` holds a different sweep (nothing is written).
    """
    # --- plan and store
    plan = _make_plan(cell_fn, grid, static, params, base_seed, chunk, outputs, coords, batch)
    path = Path(store)
    if dry_run:
        return _summary(path, plan)
    group = _open_store(path, plan)
    _, done = _verify(group, plan)
    todo = [(s, c) for s in range(plan.n_static) for c in range(plan.n_chunks) if not done[s, c]]
    if max_chunks is not None:
        todo = todo[: int(max_chunks)]
    total = plan.n_static * plan.n_cells
    cells_done = int(sum(len(plan.chunk_cells(c)) for _, c in zip(*np.nonzero(done))))

    from tqdm.auto import tqdm

    bar = tqdm(total=total, initial=cells_done, unit="cell", desc=f"sweep {path.name}",
               disable=not progress, smoothing=0.1)

    arrays = {name: group[name] for name in [*plan.outputs, DONE]}

    def record(s, c, out):
        _write_chunk(arrays, plan, s, c, out)
        bar.update(len(plan.chunk_cells(c)))

    # --- compute
    try:
        if client is None:
            # dispatch chunk i + 1 before writing chunk i: the store write overlaps compute
            devs = _devices(devices)
            previous = None
            for s, c in todo:
                current = (s, c, dispatch_chunk(plan, s, c, devs))
                if previous is not None:
                    record(previous[0], previous[1], collect_chunk(plan, previous[0], previous[2]))
                previous = current
            if previous is not None:
                record(previous[0], previous[1], collect_chunk(plan, previous[0], previous[2]))
        else:
            _run_distributed(client, plan, todo, record)
    finally:
        bar.close()
    if max_chunks is not None and len(todo) < int(np.count_nonzero(~done)):
        return None

    # --- read back, verified
    data, done = _verify(group, plan)
    if not done.all():
        raise RuntimeError(
            f"{int((~done).sum())} chunk(s) of {path} failed verification right after "
            "being written; the store's file system may be unreliable. Run again to recompute them."
        )
    return _to_dataset(plan, data)


def _summary(path: Path, plan: SweepPlan) -> dict:
    import zarr

    exists = _check_store(path, plan)
    done = np.zeros((plan.n_static, plan.n_chunks), bool)
    if exists:
        _, done = _verify(zarr.open_group(str(path), mode="r"), plan)
    n_done = int(sum(len(plan.chunk_cells(c)) for _, c in zip(*np.nonzero(done))))
    return {
        "store": str(path),
        "store_exists": exists,
        "static_settings": plan.n_static,
        "cells": plan.n_static * plan.n_cells,
        "cells_done": n_done,
        "chunk": plan.chunk,
        "chunks": int(done.size),
        "chunks_done": int(done.sum()),
        "chunks_todo": int(done.size - done.sum()),
        "outputs": {n: {"dims": o.dims, "shape": o.shape, "dtype": o.dtype}
                    for n, o in plan.outputs.items()},
        "spec_hash": plan.spec_hash,
    }


def _run_distributed(client, plan: SweepPlan, todo, record) -> None:
    """Chunks as dask tasks; results stream back and are written here (single writer)."""
    from distributed import Client, as_completed

    own = isinstance(client, str)
    if own:
        client = Client(client)
    try:
        nthreads = sum(client.nthreads().values()) or 1
        window = max(2 * nthreads, 2)
        [plan_f] = client.scatter([plan], broadcast=True, hash=False)
        it = iter(todo)

        def submit(s, c):
            return client.submit(_worker_chunk, plan_f, s, c, pure=False,
                                 key=f"svflow-chunk-{plan.spec_hash[:10]}-{s}-{c}-{_time.time_ns()}")

        ac = as_completed([submit(*sc) for sc in itertools.islice(it, window)])
        for fut in ac:
            s, c, out = fut.result()
            fut.release()
            record(s, c, out)
            nxt = next(it, None)
            if nxt is not None:
                ac.add(submit(*nxt))
    finally:
        if own:
            client.close()
