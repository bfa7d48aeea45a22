r"""Sweep plans: canonical values, cell keys, checksums, and computing one chunk.

Part of :mod:`svflow._sweep.runner` (see its docstring for the design). A
:class:`SweepPlan` holds everything a process needs to compute a chunk, so it
travels to dask workers as it is; compiled, vmapped cell functions are cached
per process by (specification, pickled ``cell_fn``, static setting, batch,
devices).
"""

from __future__ import annotations

import hashlib
import json
import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from .._checks import check_int
from .._dataset import svflow_version
from .._precision import computes

__all__ = ["SweepPlan", "OutputSpec", "cell_key", "compute_chunk", "dispatch_chunk", "collect_chunk"]

FORMAT = 1
STATIC_DIM = "sweep_static"  # flat index of a static setting in the store
CELL_DIM = "sweep_cell"  # flat index of a dynamic cell in the store
CHUNK_DIM = "sweep_chunk"  # chunk index in the store
DONE = "sweep_done"  # completion marks (checksums; 0 = not done)
SPEC_ATTR = "svflow_sweep_spec"
HASH_ATTR = "svflow_sweep_hash"
LAYOUT_ATTR = "svflow_sweep_layout"
_RESERVED = {"key", STATIC_DIM, CELL_DIM, CHUNK_DIM, DONE}


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


@computes
def cell_key(base_seed: int = 0, **coords) -> jax.Array:
    r"""The random key :func:`sweep` gives the cell with these coordinates.

    ``coords`` must name every grid dimension (static ones included) with the
    cell's coordinate value; ``base_seed`` is the sweep's ``base_seed``. Use it
    to recompute one cell outside the runner:
    ``cell_fn(cell_key(0, eps=0.1, seed=3), eps=0.1, seed=3)``.
    """
    base_seed = check_int("base_seed", base_seed, minimum=0)
    return _fold(jax.random.key(base_seed), _words(_cell_hash(coords)))


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

    cell_fn: Callable | None  # None: a plan read back from a store (cannot compute)
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
    batched: bool = False  # cell_fn takes a batch of cells itself (not vmapped, not jitted)

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

    def chunk_cells(self, c: int | np.integer) -> np.ndarray:
        """Flat dynamic cell indices of chunk c (unpadded)."""
        return np.arange(c * self.chunk, min((c + 1) * self.chunk, self.n_cells))

    @property
    def vbatch(self) -> int:
        return self.batch or self.chunk

    def batch_cells(self, c: int) -> list[np.ndarray]:
        """Chunk c cut into the flat cell indices of its vmapped batches."""
        cells = self.chunk_cells(c)
        return [cells[i : i + self.vbatch] for i in range(0, len(cells), self.vbatch)]

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
    fn: Callable[..., Any]
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
            f"cell_fn must return a non-empty dict mapping output names to arrays; got {type(out).__name__}."
        )
    return {str(k): jnp.asarray(v) for k, v in out.items()}


def _batch_call(plan: SweepPlan, s: int, cells: np.ndarray) -> dict:
    """A batch cell function on the flat cells ``cells`` (no padding): keys (B,), coords (B,)."""
    words, dyn, _ = plan.batch_inputs(s, cells, len(cells))
    base = jax.random.key(plan.base_seed)
    keys = jax.vmap(lambda w: _fold(base, w))(jnp.asarray(words))
    assert plan.cell_fn is not None  # a plan built to run has its cell function
    out = plan.cell_fn(keys, **plan.static_values(s), **dyn, **plan.params)
    return {k: np.asarray(v) for k, v in _as_outputs(out).items()}


def dispatch_chunk(plan: SweepPlan, s: int, c: int, devices=None):
    """Start chunk c of static setting s, one vmapped call per batch (JAX dispatches
    asynchronously); returns ``[(device outputs, real cells)]`` for :func:`collect_chunk`.
    A batch cell function (``plan.batched``) runs here, one call per batch."""
    if plan.batched:
        return [(_batch_call(plan, s, cells), len(cells)) for cells in plan.batch_cells(c)]
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


@computes
def _worker_chunk(plan: SweepPlan, s: int, c: int):
    """dask task: compute one chunk on a worker (its own devices, its own compile cache)."""
    return s, c, compute_chunk(plan, s, c)


# --- building the plan


def _make_plan(
    cell_fn, grid, static, params, base_seed, chunk, outputs, coords, batch=None, batched=False
) -> SweepPlan:
    if not callable(cell_fn):
        raise ValueError(f"cell_fn must be callable as cell_fn(key, **coords); got {cell_fn!r}.")
    params = dict(params or {})
    g = _check_grid(grid, params)
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
    chunk, batch = _check_chunk(chunk, batch, int(np.prod([len(g[d]) for d in dynamic], dtype=int)))
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
    if batched:
        spec["batched"] = True
    plan = SweepPlan(
        cell_fn, g, static, dynamic, params, base_seed, chunk, {}, spec, "", batched=bool(batched)
    )
    if batched:  # the first cell is evaluated before the outputs are known: a provisional hash
        plan.spec_hash = "pre-" + hashlib.sha256(_dumps(spec).encode()).hexdigest()
        plan.fn_token = _fn_token(cell_fn)
    coords = dict(coords or {})
    shapes = _batch_output_shapes(plan) if batched else _output_shapes(plan)
    out_specs = _output_specs(shapes, dict(outputs or {}), coords, g)
    spec["outputs"] = {
        n: {"dims": list(o.dims), "shape": list(o.shape), "dtype": o.dtype} for n, o in out_specs.items()
    }
    spec["coords"] = {d: _canonical(np.asarray(v).tolist(), f"coords[{d!r}]") for d, v in coords.items()}
    plan.outputs = out_specs
    plan.spec_hash = hashlib.sha256(_dumps(spec).encode()).hexdigest()
    plan.fn_token = _fn_token(cell_fn)
    plan.batch = batch
    return plan


def _check_grid(grid, params: dict) -> dict[str, np.ndarray]:
    """The grid as ``name -> 1-D array``: identifier names, distinct values, no clash with ``params``."""
    if not isinstance(grid, Mapping) or not grid:
        raise ValueError(f"grid must be a non-empty mapping name -> 1-D values; got {grid!r}.")
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
    return g


def _check_chunk(chunk, batch, n_cells: int) -> tuple[int, int]:
    """``(chunk, batch)``: cells per stored chunk and per vmapped call (a divisor of chunk)."""
    chunk = int(chunk)
    if chunk < 1:
        raise ValueError(f"chunk must be a positive number of cells; got {chunk}.")
    if batch is None:
        chunk = min(chunk, n_cells)
        return chunk, chunk
    batch = int(batch)
    if batch < 1 or chunk % batch:
        raise ValueError(
            f"batch must be a positive divisor of chunk (cells per vmapped call; a chunk "
            f"is chunk / batch calls); got batch={batch}, chunk={chunk}."
        )
    return min(chunk, -(-n_cells // batch) * batch), batch


def _output_shapes(plan: SweepPlan) -> dict:
    """Output shapes and dtypes of ``cell_fn`` from one abstract evaluation of the first cell (cached)."""
    cell_fn, g, params = plan.cell_fn, plan.grid, plan.params
    if cell_fn is None:
        raise ValueError("this sweep plan was read back from a store and has no cell_fn to compute with.")
    stat = plan.static_values(0)
    dyn0 = {d: jnp.asarray(g[d][0]) for d in plan.dynamic}
    shape_key = (
        cell_fn,
        _dumps(stat),
        tuple((d, str(v.dtype)) for d, v in dyn0.items()),
        _dumps(plan.spec["params"]),
    )
    try:
        shapes = _SHAPES.get(shape_key) or jax.eval_shape(
            lambda: _as_outputs(cell_fn(jax.random.key(0), **stat, **dyn0, **params))
        )
        _SHAPES[shape_key] = shapes
    except TypeError as err:
        raise ValueError(
            f"evaluating cell_fn(key, {', '.join([*g, *params])}) on the first cell failed: "
            f"{err}\ncell_fn must take the key first and every grid dimension and params "
            f"entry as keywords. Dynamic dimensions {list(plan.dynamic)} arrive as traced 0-d "
            "arrays: a dimension that sets a shape or a Python branch must be listed in "
            "static=."
        ) from err
    return shapes


def _batch_output_shapes(plan: SweepPlan) -> dict:
    """Output shapes and dtypes of a batch cell function: its ``output_shapes(**static,
    **params) -> {name: (shape, dtype)}`` if it has one (per cell), else from a real
    evaluation on the first cell (a batch of one; cached per process), since its body
    need not be traceable."""
    declared = getattr(plan.cell_fn, "output_shapes", None)
    if callable(declared):  # the function states its shapes: nothing is computed
        out = declared(**plan.static_values(0), **plan.params)
        return {k: jax.ShapeDtypeStruct(tuple(shape), np.dtype(dtype)) for k, (shape, dtype) in out.items()}
    shape_key = ("batched", plan.fn_token, plan.spec_hash)
    shapes = _SHAPES.get(shape_key)
    if shapes is None:
        try:
            out = _batch_call(plan, 0, np.arange(1))
        except TypeError as err:
            raise ValueError(
                f"evaluating the batch cell_fn(keys, {', '.join([*plan.grid, *plan.params])}) on the "
                f"first cell failed: {err}\ncell_fn must take the keys (B,) first and every grid "
                "dimension (static ones as Python values, dynamic ones as arrays (B,)) and params "
                "entry as keywords."
            ) from err
        bad = {k: v.shape for k, v in out.items() if v.ndim < 1 or v.shape[0] != 1}
        if bad:
            raise ValueError(
                f"a batch cell_fn must return arrays with a leading batch axis (one entry per cell); "
                f"on a batch of one cell it returned shapes {bad}."
            )
        shapes = {k: jax.ShapeDtypeStruct(v.shape[1:], v.dtype) for k, v in out.items()}
        _SHAPES[shape_key] = shapes
    return shapes


def _output_specs(shapes: dict, outputs: dict, coords: dict, g: dict) -> dict[str, OutputSpec]:
    """Dims, shape and dtype of every output; the output dims and ``coords`` checked against them."""
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
    return out_specs


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
    return svflow_version()
