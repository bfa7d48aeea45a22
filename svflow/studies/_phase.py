r"""Depth x width phase map from random starts: the $t \to \infty$ outcome beside a finite-t snapshot.

(docs: scenarios/phase-map.md; theory/random-starts.md)

Each cell (classes K, depth L, width d) runs the full-parameter gradient flow
(:func:`svflow.flow`) from seeded fan-in Gaussian starts
(:func:`svflow.random_model`), all seeds of a cell in one batch call, and
reports for every start

- the **limit**: the random-start outcome of :func:`svflow.outcome`
  (``outcome``: 0 = NC, r = rank of the limit direction of the centred
  logits, -1 = undecided; ``limit_rank`` = r, or K - 1 for NC, NaN when
  undecided), the limit's ratios $s_i/s_1$, its KKT residual and the horizon
  reached;
- the **snapshot**: the numerical rank and $s_{K-1}/s_1$ of the centred
  logits at the stated finite time ``snapshot_time`` (default t = 500, the
  horizon the earlier gradient-descent map stopped at), read off the same flow.

:func:`phase_cell` computes one cell as a dataset; :func:`phase_map` loops
over the cells (optionally keeping each finished cell in a ``checkpoint``
folder, so an interrupted map resumes) and stacks them.
"""

from __future__ import annotations

import os
import resource
import sys
import time as _time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import xarray as xr

from .. import _dims as D
from .._checks import check_float, check_int
from .._dataset import grid_dataset
from .._full.model import random_model
from .._full.outcome import FLOW_HORIZONS, RANDOM_OUTCOME_SOLVER, RULE, flow_outcome
from .._integrate import Solver, check_solver
from .._precision import computes

__all__ = ["phase_cell", "phase_map", "PHASE_OUTPUTS", "FULL_SETTING", "QUICK_SETTING"]

# The settings of the depth x width phase map (keyword arguments of phase_map),
# shared by scenarios/phase_map.py and the figure ``phase_map`` so the two never
# drift apart. Costs measured on 2 CPU cores: docs/scenarios/phase-map.md.
QUICK_SETTING: dict[str, Any] = dict(
    classes=(8, 16),
    depths=(1, 3, 6),
    widths=(8, 32),
    seeds=(0, 1),
    scale=1.0,
)
FULL_SETTING: dict[str, Any] = dict(
    classes=(8, 16),
    depths=(1, 2, 3, 4, 5, 6),
    widths=(8, 16, 32, 64, 128, 256),
    seeds=tuple(range(8)),
    scale=1.0,
)

PHASE_OUTPUTS = (
    "outcome",
    "limit_rank",
    "undecided",
    "reached_nc",
    "snapshot_rank",
    "snapshot_sv_ratio",
    "limit_sv_ratio",
    "kkt_residual",
    "horizon",
    "num_steps",
)
"""Per-start outputs of :func:`phase_cell` (dims ``seed``), besides ``limit`` (seed, sv)."""

_LONG_NAMES = {
    "outcome": "t -> infinity outcome: 0 = NC, r = rank of the limit, -1 = undecided",
    "limit_rank": "rank of the limit direction of the centred logits (K - 1 at NC; NaN if undecided)",
    "undecided": "the outcome rule did not decide by the last horizon",
    "reached_nc": "the limit is neural collapse (all K - 1 modes in the support)",
    "snapshot_rank": "numerical rank of the centred logits at snapshot_time",
    "snapshot_sv_ratio": "s_(K-1) / s_1 of the centred logits at snapshot_time",
    "limit_sv_ratio": "s_(K-1) / s_1 of the centred logits at the horizon reached",
    "kkt_residual": "max-margin KKT stationarity residual at the horizon reached",
    "horizon": "tau = log(1 + t) reached",
    "num_steps": "solver step attempts, all stages",
    "limit": "s_i / s_1 of the centred logits at the horizon reached (NaN beyond K - 1)",
    "cpu_time_s": "CPU time of the cell (process user + system, all threads)",
    "wall_time_s": "wall time of the cell",
}


def _cpu() -> float:
    r = resource.getrusage(resource.RUSAGE_SELF)
    return r.ru_utime + r.ru_stime


def _check_seeds(seeds) -> tuple[int, ...]:
    if isinstance(seeds, (int, np.integer)) or not isinstance(seeds, (list, tuple, range, np.ndarray)):
        raise TypeError(
            f"seeds must be a sequence of integer seeds (e.g. range(8)); got {seeds!r}. "
            "Pass range(n) for n seeds."
        )
    out = tuple(check_int("seeds[i]", s, minimum=0) for s in seeds)
    if not out or len(set(out)) != len(out):
        raise ValueError(f"seeds must be a non-empty sequence of distinct seeds; got {seeds!r}.")
    return out


@computes
def phase_cell(
    classes: int,
    depth: int,
    width: int,
    *,
    seeds: Sequence[int],
    scale: float = 1.0,
    snapshot_time: float = 500.0,
    horizons=FLOW_HORIZONS,
    solver: Solver = RANDOM_OUTCOME_SOLVER,
) -> xr.Dataset:
    r"""One (K, L, d) cell: the random-start outcome and the snapshot of every seed.

    The starts ``random_model(K, depth=L, width=d, scale=scale, key=seed)``
    (one per seed) run as one batch of :func:`svflow.outcome`'s random-start
    route (double-log flow to $\tau$ = 1e3, the undecided on to 1e4), which
    also reads the snapshot at ``snapshot_time``.

    Returns:
        Dataset over ``seed`` (and ``sv`` for ``limit``, K - 1 entries) with
        :data:`PHASE_OUTPUTS`, ``limit``, and attrs ``cpu_time_s``, ``wall_time_s``.
    """
    classes = check_int("classes", classes, minimum=2)
    depth = check_int("depth", depth, minimum=1)
    width = check_int("width", width, minimum=1)
    seeds = _check_seeds(seeds)
    scale = check_float("scale", scale, minimum=0.0, strict_min=True)
    snapshot_time = check_float("snapshot_time", snapshot_time, minimum=0.0, strict_min=True)
    cpu0, wall0 = _cpu(), _time.perf_counter()
    models = [random_model(classes, depth=depth, width=width, scale=scale, key=int(s)) for s in seeds]
    out = flow_outcome(models, horizons=horizons, snapshot_times=[snapshot_time], solver=solver)
    code = out.outcome.values
    decided = code >= 0
    K = classes
    snap = out.snapshot_sigma.values[:, 0]
    data = {
        "outcome": code,
        "limit_rank": np.where(decided, np.where(code == 0, K - 1, code), np.nan).astype(float),
        "undecided": ~decided,
        "reached_nc": code == 0,
        "snapshot_rank": out.snapshot_rank.values[:, 0],
        "snapshot_sv_ratio": snap[:, K - 2] / snap[:, 0],
        "limit_sv_ratio": out.limit.values[:, K - 2],
        "kkt_residual": out.kkt_residual.values,
        "horizon": out.horizon.values,
        "num_steps": out.num_steps.values,
    }
    variables: dict[str, tuple] = {
        k: ((D.SEED,), np.asarray(v), {"long_name": _LONG_NAMES[k]}) for k, v in data.items()
    }
    variables["limit"] = ((D.SEED, "sv"), out.limit.values, {"long_name": _LONG_NAMES["limit"]})
    attrs = dict(
        classes=K,
        depth=depth,
        width=width,
        scale=scale,
        snapshot_time=snapshot_time,
        horizons=np.asarray(out.attrs["horizons"]),
        **check_solver(solver).as_attrs(),
        rule=out.attrs["rule"],
        cpu_time_s=_cpu() - cpu0,
        wall_time_s=_time.perf_counter() - wall0,
    )
    return xr.Dataset(variables, coords={D.SEED: np.asarray(seeds)}, attrs=attrs)


def _cell_file(folder: Path, K: int, L: int, d: int) -> Path:
    return folder / f"cell_K{K}_L{L}_d{d}.nc"


def _load_cell(path: Path, seeds, scale, snapshot_time, horizons, solver: Solver) -> xr.Dataset | None:
    """A checkpointed cell if it holds exactly these settings, else None."""
    if not path.exists():
        return None
    ds = xr.load_dataset(path)
    same = (
        list(ds[D.SEED].values) == list(seeds)
        and ds.attrs["scale"] == scale
        and ds.attrs["snapshot_time"] == snapshot_time
        and np.array_equal(np.atleast_1d(ds.attrs["horizons"]), np.asarray(horizons, dtype=float))
        and all(ds.attrs.get(k) == v for k, v in solver.as_attrs().items())
        and ds.attrs.get("rule") == RULE  # a cell decided by an earlier rule is recomputed
    )
    return ds if same else None


@computes
def phase_map(
    classes: Sequence[int] = (8, 16),
    depths: Sequence[int] = (1, 2, 3, 4, 5, 6),
    widths: Sequence[int] = (8, 16, 32, 64),
    *,
    seeds: Sequence[int] = tuple(range(8)),
    scale: float = 1.0,
    snapshot_time: float = 500.0,
    horizons=FLOW_HORIZONS,
    solver: Solver = RANDOM_OUTCOME_SOLVER,
    checkpoint: str | Path | None = None,
    progress: bool = True,
) -> xr.Dataset:
    r"""The random-start outcome over classes x depth x width x seed (cell by cell).

    Calls :func:`phase_cell` for every (K, L, d) (all ``seeds`` of a cell in
    one batch). With ``checkpoint`` (a folder), each finished cell is saved
    there as netCDF and a later call with the same settings reuses it, so an
    interrupted map resumes where it stopped, and several processes given the
    same folder (e.g. one per K) share their finished cells.

    Returns:
        Dataset with dims ``classes``, ``depth``, ``width``, ``seed`` (and
        ``sv`` for ``limit``, padded with NaN beyond K - 1): :data:`PHASE_OUTPUTS`,
        ``limit``, ``cpu_time_s`` and ``wall_time_s`` per cell (a reused cell
        keeps the times of the run that computed it); attrs with every setting,
        the total CPU time and the undecided fraction.
    """
    classes = [check_int("classes", k, minimum=2) for k in classes]
    depths = [check_int("depths", k, minimum=1) for k in depths]
    widths = [check_int("widths", k, minimum=1) for k in widths]
    seeds = _check_seeds(seeds)
    scale = check_float("scale", scale, minimum=0.0, strict_min=True)
    folder = None if checkpoint is None else Path(checkpoint)
    if folder is not None:
        folder.mkdir(parents=True, exist_ok=True)
    shape = (len(classes), len(depths), len(widths))
    S, Kmax = len(seeds), max(classes)
    out = {k: np.zeros(shape + (S,)) for k in PHASE_OUTPUTS}
    out["limit"] = np.full(shape + (S, Kmax - 1), np.nan)
    cpu_s, wall_s = np.zeros(shape), np.zeros(shape)
    cells = [(a, b, c) for a in range(len(classes)) for b in range(len(depths)) for c in range(len(widths))]
    bar = None
    if progress:
        from tqdm import tqdm

        bar = tqdm(cells, desc="phase map", unit="cell", file=sys.stderr)
    tic = _time.perf_counter()
    settings = dict(
        scale=scale, snapshot_time=float(snapshot_time), horizons=horizons, solver=check_solver(solver)
    )
    for a, b, c in bar if bar is not None else cells:
        K, L, d = classes[a], depths[b], widths[c]
        cell = None
        if folder is not None:
            cell = _load_cell(_cell_file(folder, K, L, d), seeds, **settings)
        if cell is None:
            cell = phase_cell(K, L, d, seeds=seeds, **settings)
            if folder is not None:  # write, then rename: a reader never sees half a file
                path = _cell_file(folder, K, L, d)
                tmp = path.with_suffix(f".{os.getpid()}.tmp")
                cell.to_netcdf(tmp)
                os.replace(tmp, path)
        for k in PHASE_OUTPUTS:
            out[k][a, b, c] = cell[k].values
        out["limit"][a, b, c, :, : K - 1] = cell["limit"].values
        cpu_s[a, b, c], wall_s[a, b, c] = cell.attrs["cpu_time_s"], cell.attrs["wall_time_s"]
    dims = (D.CLASSES, D.DEPTH, "width", D.SEED)
    data: dict[str, tuple] = {k: (dims, out[k], {"long_name": _LONG_NAMES[k]}) for k in PHASE_OUTPUTS}
    for k in ("outcome", "snapshot_rank", "num_steps"):
        data[k] = (dims, out[k].astype(int), data[k][2])
    for k in ("undecided", "reached_nc"):
        data[k] = (dims, out[k].astype(bool), data[k][2])
    data["limit"] = (dims + ("sv",), out["limit"], {"long_name": _LONG_NAMES["limit"]})
    data["cpu_time_s"] = (dims[:3], cpu_s, {"long_name": _LONG_NAMES["cpu_time_s"], "units": "s"})
    data["wall_time_s"] = (dims[:3], wall_s, {"long_name": _LONG_NAMES["wall_time_s"], "units": "s"})
    coords = {
        D.CLASSES: np.asarray(classes),
        D.DEPTH: np.asarray(depths),
        "width": np.asarray(widths),
        D.SEED: np.asarray(seeds),
    }
    undecided = float(np.mean(out["undecided"]))
    attrs = {
        "title": "svflow depth x width phase map (random starts: t -> infinity outcome and a snapshot)",
        "engine": "flow",
        "init": "random_model (fan-in scaled Gaussian), key = seed",
        "scale": scale,
        "snapshot_time": float(snapshot_time),
        "horizons": np.asarray(horizons, dtype=float),
        **check_solver(solver).as_attrs(),
        "rule": RULE,
        "loss_name": "ce",
        "activation": "linear",
        "samples_per_class": 1,
        "undecided_fraction": undecided,
        "cpu_time_total_s": float(cpu_s.sum()),
        "wall_time_s": _time.perf_counter() - tic,
    }
    return grid_dataset(coords, data, attrs)
