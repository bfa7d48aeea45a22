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
    batch position (observed: 1 of 12 escape times of a vmapped basin cell, relative
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

Arguments in detail
    ``outputs`` names the dims of each output (default ``<name>_dim<i>``);
    shapes and dtypes come from ``jax.eval_shape`` of one cell, and each
    output may have its own dims (shapes fixed per sweep). ``params`` are
    plain JSON-able values, recorded in the specification. ``devices`` is
    ignored with ``client`` (each worker uses its own devices). Runs with the
    same ``batch`` are bitwise equal whatever their ``chunk`` (above).
    ``max_chunks`` serves staged runs and tests: the sweep stops after that
    many chunks and returns ``None``. ``dry_run=True`` checks the arguments
    (one abstract evaluation of ``cell_fn``) and the store (read-only) and
    returns a dict with the numbers of static settings, cells, chunks, chunks
    done and to do, the outputs and the specification hash. ``batched=True``
    declares a batch cell function (see :func:`sweep`; ``batched`` is part of
    the specification).

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
import itertools
import os
import time as _time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import xarray as xr

from .._checks import check_int
from .._precision import computes
from .plan import (  # noqa: F401  (re-exported for tests and benchmarks)
    _COMPILED,
    CELL_DIM,
    CHUNK_DIM,
    DONE,
    STATIC_DIM,
    OutputSpec,
    SweepPlan,
    _batched,
    _devices,
    _make_plan,
    _worker_chunk,
    cell_key,
    collect_chunk,
    compute_chunk,
    dispatch_chunk,
)
from .store import (  # noqa: F401
    SweepSpecError,
    _check_store,
    _fill,
    _open_store,
    _plan_from_store,
    _to_dataset,
    _verify,
    _write_chunk,
)

__all__ = ["sweep", "open_sweep", "cell_key", "SweepSpecError", "SweepInterrupted", "SweepPlan"]


@computes
def _store_path(store, where: str) -> Path:
    """``store`` as a local path (``~`` expanded), or a ``TypeError`` saying what to pass."""
    if not isinstance(store, (str, os.PathLike)) or str(store) == "":
        raise TypeError(
            f"{where}: store must be the path of a local zarr directory (a str or "
            f"pathlib.Path, e.g. store='stores/run.zarr'); got {store!r}."
        )
    return Path(store).expanduser()


_EXTRA = ("zarr", "dask", "distributed", "cloudpickle")  # the sweep extra's packages


def _require_extra(where: str) -> None:
    """An ``ImportError`` naming the ``sweep`` extra if any of its packages is missing."""
    import importlib.util

    missing = [m for m in _EXTRA if importlib.util.find_spec(m) is None]
    if missing:
        raise ImportError(
            f"{where} needs {', '.join(missing)}, from svflow's sweep extra: pip install 'svflow[sweep]' "
            "(zarr stores, dask.distributed)."
        )


def open_sweep(store, *, allow_incomplete: bool = False) -> xr.Dataset:
    """Read a sweep store written by :func:`sweep` as a grid-shaped Dataset.

    Every chunk's data is checked against its completion checksum. Incomplete
    or damaged chunks raise ``ValueError`` unless ``allow_incomplete=True``, in
    which case their cells are NaN (or 0 for integer outputs) and the boolean
    variable ``complete`` (grid dims) says which cells hold results.
    """
    _require_extra("svflow.open_sweep")
    import zarr

    path = _store_path(store, "open_sweep")
    if not path.exists():
        raise FileNotFoundError(f"no sweep store at {path}")
    plan = _plan_from_store(path)
    data, done = _verify(zarr.open_group(str(path), mode="r"), plan)
    cell_done = np.repeat(done, plan.chunk, axis=1)[:, : plan.n_cells]
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


class SweepInterrupted(KeyboardInterrupt):
    """Ctrl-C during :func:`sweep`; the message says how many chunks are safe."""


@computes
def sweep(
    cell_fn: Callable,
    grid: Mapping[str, Sequence | np.ndarray],
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
    batched: bool = False,
) -> xr.Dataset | dict | None:
    r"""Run ``cell_fn`` on every cell of ``grid``, resumably, into a zarr store.

    Each cell $c$ (one value per grid dimension) gives
    ``cell_fn(key, **c, **params) -> {name: array}`` with
    ``key = cell_key(base_seed, **c)``; static dimensions arrive as Python
    values, dynamic ones as traced 0-d arrays (``cell_fn`` runs under
    ``jax.vmap``). The documentation's Sweeps page (``docs/api/sweeps.md``, "How
    a sweep works") describes chunks, batches, keys, the store, the backends
    and the arguments in detail.

    Args:
        cell_fn: ``cell_fn(key, **coords, **params)``, returning a dict of arrays.
        grid: ordered mapping ``name -> 1-D values``: the result's leading dims.
        store: local zarr directory; created if missing, resumed if it holds the same sweep.
        chunk: cells per chunk (the unit of storage, resumption and dask tasks).
        client: ``None`` (in process), a ``dask.distributed.Client`` or a scheduler address.
        static: grid dims that change shapes or compiled code (compiled once each).
        params: extra JSON-able keyword arguments of ``cell_fn`` (part of the specification).
        outputs, coords: ``name -> dims`` of the outputs' own dims (default
            ``<name>_dim<i>``) and coordinate values of those dims.
        base_seed: seed of the base key every cell key is folded from.
        devices: local JAX devices to shard each chunk over (None: all; an int: the first n).
        progress: show one tqdm bar (cells done, rate, ETA).
        batch: cells per vmapped call, a divisor of ``chunk`` (default: ``chunk``).
        max_chunks: stop after computing this many chunks and return ``None``.
        dry_run: only plan and check; return a summary dict (nothing is computed or written).
        batched: ``cell_fn`` takes a whole batch of cells itself,
            ``cell_fn(keys, **coords, **params)`` with ``keys`` (B,), static
            dimensions as Python values and dynamic ones as arrays (B,), and
            returns arrays with a leading axis B; it is called as it is (no
            ``jax.vmap``, no ``jax.jit``, no sharding over ``devices``), so a
            chunk can go through an engine of its own (e.g. svflow's refill
            batch engine, :func:`svflow.studies.basin_map`). Its output shapes
            come from its attribute ``cell_fn.output_shapes(**static, **params)
            -> {name: (shape, dtype)}`` (per cell) if it has one, else from one
            real evaluation on the first cell.

    Returns:
        ``xarray.Dataset`` with dims ``(*grid, *output dims)``, coordinates from
        ``grid`` and ``coords``, attrs with the specification and provenance.

    Raises:
        ValueError: bad grid, params or outputs (message says what to pass).
        SweepSpecError: ``store`` holds a different sweep (nothing is written).
    """
    _require_extra("svflow.sweep")
    path = _store_path(store, "sweep")
    plan = _make_plan(cell_fn, grid, static, params, base_seed, chunk, outputs, coords, batch, batched)
    if max_chunks is not None:
        max_chunks = check_int("max_chunks", max_chunks, minimum=0)
    if dry_run:
        return _summary(path, plan)
    group = _open_store(path, plan)
    _, done = _verify(group, plan)
    todo = [(s, c) for s in range(plan.n_static) for c in range(plan.n_chunks) if not done[s, c]]
    if max_chunks is not None:
        todo = todo[: int(max_chunks)]
    _compute(plan, group, todo, done, path, client, devices, progress)
    if max_chunks is not None and len(todo) < int(np.count_nonzero(~done)):
        return None
    return _read_back(group, plan, path)


def _compute(plan: SweepPlan, group, todo: list, done, path: Path, client, devices, progress: bool) -> None:
    """Compute the chunks ``todo`` (in process or on ``client``), writing and marking each as it finishes."""
    bar = _progress_bar(plan, done, path, progress)
    arrays = {name: group[name] for name in [*plan.outputs, DONE]}
    written = []

    def record(s, c, out):
        _write_chunk(arrays, plan, s, c, out)
        written.append((s, c))
        bar.update(len(plan.chunk_cells(c)))

    try:
        if client is None:
            _run_local(plan, todo, _devices(devices), record)
        else:
            _run_distributed(client, plan, todo, record)
    except KeyboardInterrupt:
        bar.close()
        safe = int(done.sum()) + len(written)
        raise SweepInterrupted(
            f"sweep interrupted: {safe} of {plan.n_static * plan.n_chunks} chunks are "
            f"complete and safe in {str(path)!r} ({len(written)} written in this run). "
            "Run the same sweep(...) call again to resume from there; nothing is recomputed."
        ) from None
    finally:
        bar.close()


def _read_back(group, plan: SweepPlan, path: Path) -> xr.Dataset:
    """The finished sweep as a dataset, every chunk's checksum verified once more."""
    data, done = _verify(group, plan)
    if not done.all():
        raise RuntimeError(
            f"{int((~done).sum())} chunk(s) of {path} failed verification right after "
            "being written; the store's file system may be unreliable. Run again to recompute them."
        )
    return _to_dataset(plan, data)


def _progress_bar(plan: SweepPlan, done, path: Path, progress: bool):
    """One tqdm bar over every cell of the sweep, starting at the cells already done."""
    from tqdm.auto import tqdm

    cells_done = int(sum(len(plan.chunk_cells(c)) for _, c in zip(*np.nonzero(done))))
    return tqdm(
        total=plan.n_static * plan.n_cells,
        initial=cells_done,
        unit="cell",
        desc=f"sweep {path.name}",
        disable=not progress,
        smoothing=0.1,
    )


def _run_local(plan: SweepPlan, todo, devs, record) -> None:
    """Compute the chunks ``todo`` in this process and ``record`` each one.

    Chunk i + 1 is dispatched (JAX runs asynchronously) before chunk i is
    collected and written, so the store write overlaps the next computation.
    """
    previous = None
    for s, c in todo:
        current = (s, c, dispatch_chunk(plan, s, c, devs))
        if previous is not None:
            record(previous[0], previous[1], collect_chunk(plan, previous[0], previous[2]))
        previous = current
    if previous is not None:
        record(previous[0], previous[1], collect_chunk(plan, previous[0], previous[2]))


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
        "outputs": {n: {"dims": o.dims, "shape": o.shape, "dtype": o.dtype} for n, o in plan.outputs.items()},
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
            return client.submit(
                _worker_chunk,
                plan_f,
                s,
                c,
                pure=False,
                key=f"svflow-chunk-{plan.spec_hash[:10]}-{s}-{c}-{_time.time_ns()}",
            )

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
