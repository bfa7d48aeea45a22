r"""The sweep store: a local zarr v3 directory with regions and completion checksums.

Part of :mod:`svflow._sweep.runner` (see its docstring for the layout and the
guarantees). Only the driver process calls these functions.
"""

from __future__ import annotations

import itertools
import json
import os
import shutil
import tempfile
import warnings
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
import xarray as xr

from .plan import (
    CELL_DIM,
    CHUNK_DIM,
    DONE,
    HASH_ATTR,
    LAYOUT_ATTR,
    SPEC_ATTR,
    STATIC_DIM,
    OutputSpec,
    SweepPlan,
    _checksum,
    _dumps,
)

__all__ = ["SweepSpecError"]


class SweepSpecError(ValueError):
    """A store holds another sweep than the one asked for (nothing was written)."""


# --- the store


def _fill(dtype: np.dtype):
    return np.nan if np.issubdtype(dtype, np.floating) or np.issubdtype(dtype, np.complexfloating) else 0


def _create_store(path: Path, plan: SweepPlan) -> None:
    """Write the template (metadata, coordinates, empty data) atomically."""
    import dask.array as da

    S, C, K = plan.n_static, plan.n_cells, plan.n_chunks
    data = {}
    encoding: dict[str, dict[str, Any]] = {}
    for name, o in plan.outputs.items():
        dt = np.dtype(o.dtype)
        data[name] = (
            (STATIC_DIM, CELL_DIM, *o.dims),
            da.full((S, C, *o.shape), _fill(dt), dtype=dt, chunks=(1, plan.chunk, *o.shape)),
        )
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
    attrs = {
        SPEC_ATTR: _dumps(plan.spec),
        HASH_ATTR: plan.spec_hash,
        LAYOUT_ATTR: _dumps({"chunk": plan.chunk, "batch": plan.vbatch}),
    }
    template = xr.Dataset(data, coords=coords, attrs=attrs)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent))
    try:
        template.to_zarr(tmp, mode="w", compute=False, consolidated=False, encoding=encoding, zarr_format=3)
        os.replace(tmp, path)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


def _read_spec(path: Path) -> tuple[dict, str, dict]:
    import zarr

    try:
        g = zarr.open_group(str(path), mode="r")
        spec, layout = json.loads(str(g.attrs[SPEC_ATTR])), json.loads(str(g.attrs[LAYOUT_ATTR]))
        return spec, str(g.attrs[HASH_ATTR]), layout
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
            diff += [
                f"{k}[{j!r}]: {a.get(j)!r} -> {b.get(j)!r}"
                for j in sorted(set(a) | set(b))
                if a.get(j) != b.get(j)
            ]
        elif k == "grid":
            da_, db_ = dict(map(tuple, a or ())), dict(map(tuple, b or ()))
            if list(da_) != list(db_):
                diff.append(f"grid dims: {list(da_)} -> {list(db_)}")
            diff += [
                f"grid[{j!r}]: {da_.get(j)} -> {db_.get(j)}" for j in da_ if j in db_ and da_[j] != db_[j]
            ]
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
            a = np.full(
                (plan.n_static, plan.n_cells, *o.shape), _fill(np.dtype(o.dtype)), dtype=np.dtype(o.dtype)
            )
            for s, c in itertools.product(range(plan.n_static), range(plan.n_chunks)):
                cells = plan.chunk_cells(c)
                try:
                    a[s, cells[0] : cells[-1] + 1] = group[name][s, cells[0] : cells[-1] + 1]
                except Exception:
                    marks[s, c] = 0
            data[name] = a
    done = np.zeros(marks.shape, dtype=bool)
    for s, c in zip(*np.nonzero(marks)):
        cells = plan.chunk_cells(int(c))
        region = {n: a[s, cells[0] : cells[-1] + 1] for n, a in data.items()}
        if _checksum(region) == int(marks[s, c]):
            done[s, c] = True
        else:
            damaged_files = True
    if damaged_files and marks.any():
        bad = int(np.count_nonzero(marks) - done.sum())
        if bad:
            warnings.warn(
                f"{bad} chunk(s) in the sweep store have data that does not match "
                "their completion checksum; they will be recomputed.",
                stacklevel=3,
            )
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
    from .._dataset import netcdf_safe, provenance

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
    return netcdf_safe(xr.Dataset(variables, coords=coords, attrs=attrs))


def _plan_from_store(path: Path) -> SweepPlan:
    spec, h, layout = _read_spec(path)
    grid = {d: np.asarray(v) for d, v in spec["grid"]}
    outputs = {
        n: OutputSpec(tuple(o["dims"]), tuple(o["shape"]), o["dtype"]) for n, o in spec["outputs"].items()
    }
    static = tuple(spec["static"])
    return SweepPlan(
        None,
        grid,
        static,
        tuple(d for d in grid if d not in static),
        spec["params"],
        spec["base_seed"],
        layout["chunk"],
        outputs,
        spec,
        h,
    )
