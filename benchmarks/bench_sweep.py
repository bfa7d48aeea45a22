"""Overhead of ``svflow.sweep`` and its scaling from 1 to 2 dask workers.

Workload: one vmappable basin cell (``basin_cell`` below: a "random"-family
start of :func:`svflow.studies.basin_start` integrated in double-log time to
tau = log(1 + t) = 100 by :func:`svflow._outcome.advance`; K = 8, depth 3; the
measurements below were taken with svflow 0.2's ``basin_cell``, t_end = 1e8) on
an eps x delta x seed grid, one static setting. Rows (compilation excluded everywhere: each timed run follows a
warm-up that compiled the same shapes in the same processes):

- ``direct``: the same jitted, vmapped batches called in a loop, keys computed
  the same way, results copied to numpy; no store.
- ``sweep, in-process``: ``svflow.sweep`` into a fresh zarr store.
- ``sweep, dask n workers``: a ``LocalCluster(n_workers=n, threads_per_worker=1,
  processes=True)``; results stream back and the driver writes the store.

    PYTHONPATH=$PWD python benchmarks/bench_sweep.py [--cells-per-dim 16 16 256] [--chunk 2048]

Measured 2026-11-23 on the project's 2-core CPU box, shared with ~6 other
agents (1-min load average 5-8 throughout, so every wall time is noisy):
65536 cells, 32 chunks of 2048. The runner's own work, timed directly, is
1.26 s (hashing 0.48, store creation 0.10, region + mark writes 0.50,
read-back verification 0.18) = 12 % of the 10.7 s of compute (hashing since
cut to 0.19 s by precomputing each grid value's JSON: ~1.0 s, 9 %); in-process it
largely overlaps compute (chunk k + 1 is dispatched before chunk k is
written): sweep - direct = +0.69 s (+6 %). 1 -> 2 dask workers
(LocalCluster, processes, 1 thread each): 1.43x (16.2 s -> 11.3 s); two earlier
runs of the same configuration gave 1.06x and 2.07x.
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from pathlib import Path

import jax
import numpy as np

import svflow
from svflow._outcome import OUTCOME_SOLVER, advance
from svflow._sweep.runner import _make_plan

PARAMS = dict(classes=8, horizon=100.0, family="random")


def basin_cell(key, depth, eps, delta, seed, *, classes, horizon, family):
    """One start of a basin family integrated to tau = ``horizon`` (vmappable; key unused)."""
    lam0 = svflow.studies.basin_start(family, classes, eps, delta, seed)
    ys, res, steps = advance(lam0, 0.0, horizon, factors=depth + 1, balanced=True, config=OUTCOME_SOLVER)
    return {"lam0": lam0, "lam_end": ys[-1], "solver_result": res, "num_steps": steps}


def grid_of(n_eps, n_delta, n_seed):
    return dict(
        depth=[3],
        eps=np.logspace(-3, -1, n_eps),
        delta=np.linspace(0.05, 0.5, n_delta),
        seed=np.arange(n_seed),
    )


def sweep_kw(chunk):
    return dict(
        chunk=chunk,
        static=("depth",),
        outputs={"lam0": ("mode",), "lam_end": ("mode",)},
        params=PARAMS,
        progress=False,
    )


def time_direct(grid, chunk, repeats):
    """Jitted vmapped batches called directly (same keys, same padding)."""
    plan = _make_plan(
        basin_cell,
        grid,
        ("depth",),
        PARAMS,
        0,
        chunk,
        {"lam0": ("mode",), "lam_end": ("mode",)},
        None,
    )
    stat = plan.static_values(0)
    base = jax.random.key(0)

    def one(words, *dyn):
        key = jax.random.fold_in(jax.random.fold_in(base, words[0]), words[1])
        return basin_cell(key, **stat, **dict(zip(plan.dynamic, dyn)), **plan.params)

    fn = jax.jit(jax.vmap(one))
    inputs = [plan.chunk_inputs(0, c, chunk) for c in range(plan.n_chunks)]
    tic = time.perf_counter()
    for words, dyn, n in inputs[:1]:
        jax.block_until_ready(fn(words, *(dyn[d] for d in plan.dynamic)))
    compile_s = time.perf_counter() - tic
    best = np.inf
    for _ in range(repeats):
        tic = time.perf_counter()
        for words, dyn, n in inputs:
            out = fn(words, *(dyn[d] for d in plan.dynamic))
            {k: np.asarray(v)[:n] for k, v in out.items()}
        best = min(best, time.perf_counter() - tic)
    return best, compile_s


def runner_costs(grid, chunk, tmp):
    """The runner's own work, timed apart from any compute (robust on a busy machine):
    cell hashing/padding, store creation, region + mark writes, read-back verification."""
    from svflow._sweep import runner as S

    plan = _make_plan(
        basin_cell,
        grid,
        ("depth",),
        PARAMS,
        0,
        chunk,
        {"lam0": ("mode",), "lam_end": ("mode",)},
        None,
    )
    out = S.compute_chunk(plan, 0, 0)
    costs = {}
    tic = time.perf_counter()
    [plan.chunk_inputs(0, c, chunk) for c in range(plan.n_chunks)]
    costs["hash + pad cell inputs"] = time.perf_counter() - tic
    tic = time.perf_counter()
    group = S._open_store(tmp / "costs", plan)
    costs["create store"] = time.perf_counter() - tic
    arrays = {n: group[n] for n in [*plan.outputs, S.DONE]}
    tic = time.perf_counter()
    for c in range(plan.n_chunks):
        cells = len(plan.chunk_cells(c))
        S._write_chunk(arrays, plan, 0, c, {k: v[:cells] for k, v in out.items()})
    costs["write regions + marks"] = time.perf_counter() - tic
    tic = time.perf_counter()
    data, done = S._verify(group, plan)
    costs["read back + verify"] = time.perf_counter() - tic
    tic = time.perf_counter()
    S._to_dataset(plan, data)
    costs["build dataset"] = time.perf_counter() - tic
    return costs, plan.n_chunks


def time_sweep(grid, chunk, tmp, tag, repeats, client=None):
    tic = time.perf_counter()
    svflow.sweep(basin_cell, grid, store=tmp / f"{tag}-warm", client=client, **sweep_kw(chunk))
    cold = time.perf_counter() - tic
    best = np.inf
    for r in range(repeats):
        tic = time.perf_counter()
        svflow.sweep(basin_cell, grid, store=tmp / f"{tag}-{r}", client=client, **sweep_kw(chunk))
        best = min(best, time.perf_counter() - tic)
    return best, cold


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument(
        "--cells-per-dim", type=int, nargs=3, default=[16, 16, 256], metavar=("EPS", "DELTA", "SEED")
    )
    p.add_argument("--chunk", type=int, default=2048)
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--workers", type=int, nargs="*", default=[1, 2])
    p.add_argument("--classes", type=int, default=8)
    p.add_argument("--t-end", type=float, default=1e8)
    a = p.parse_args(argv)
    PARAMS.update(classes=a.classes, t_end=a.t_end)
    load0 = os.getloadavg()[0]
    grid = grid_of(*a.cells_per_dim)
    cells = int(np.prod(a.cells_per_dim))
    rows = []
    with tempfile.TemporaryDirectory() as d:
        tmp = Path(d)
        t, c = time_direct(grid, a.chunk, a.repeats)
        rows.append(("direct (jit+vmap loop)", t, c + t))
        t, c = time_sweep(grid, a.chunk, tmp, "local", a.repeats)
        rows.append(("sweep, in-process", t, c))
        if a.workers:
            from distributed import Client, LocalCluster

            for n in a.workers:
                with (
                    LocalCluster(
                        n_workers=n, threads_per_worker=1, processes=True, dashboard_address=None
                    ) as cl,
                    Client(cl) as client,
                ):
                    t, c = time_sweep(grid, a.chunk, tmp, f"dask{n}", a.repeats, client)
                rows.append((f"sweep, dask {n} worker{'s' * (n > 1)}", t, c))
        costs, n_chunks = runner_costs(grid, a.chunk, tmp)
    base = rows[0][1]
    print(
        f"\nbasin cell (random family) K = {a.classes}, depth 3, t_end = {a.t_end:g}; "
        f"{cells} cells, chunk {a.chunk} ({-(-cells // a.chunk)} chunks); "
        f"{os.cpu_count()} CPU cores, 1-min load average {load0:.1f} -> "
        f"{os.getloadavg()[0]:.1f}; JAX {jax.__version__} on {jax.default_backend()}"
    )
    print(f"{'backend':<26}{'warm s':>9}{'cells/s':>10}{'vs direct':>11}{'cold s':>9}")
    for name, t, c in rows:
        print(f"{name:<26}{t:>9.2f}{cells / t:>10.1f}{t / base:>10.2f}x{c:>9.1f}")
    named = {n: t for n, t, _ in rows}
    if "sweep, dask 1 worker" in named and "sweep, dask 2 workers" in named:
        print(
            f"1 -> 2 workers speed-up: {named['sweep, dask 1 worker'] / named['sweep, dask 2 workers']:.2f}x"
        )
    print(
        f"in-process sweep - direct: {named['sweep, in-process'] - base:+.2f} s "
        "(difference of two noisy timings)"
    )
    print("runner's own work, timed directly:")
    for k, v in costs.items():
        print(f"  {k:<24}{v:>8.3f} s")
    total = sum(costs.values())
    print(
        f"  {'total':<24}{total:>8.3f} s = {100 * total / base:.1f} % of the direct compute "
        f"time ({1e3 * total / n_chunks:.1f} ms per chunk)"
    )
    return rows


if __name__ == "__main__":
    main()
