r"""Where do random spectral starts end? A depth x eps x delta x seed sweep.

Each cell integrates the balanced reduced ODE under cross-entropy (MODEL.md
section 3, no weight decay, N = depth + 1 factors)

$$\dot\lambda_i = (N/K)(1 - \mu_i)|\lambda_i|^{2 - 2/N}$$

from $\lambda_i(0) = \varepsilon u_i$, $u_i \sim U[1 - \delta, 1 + \delta]$ drawn
from the cell's own key ($\lambda_0 = 0$), to ``t_end``, and records the end
state ``lam_end`` (mode), ``min_ratio`` $= \min_{i \ge 1}|\lambda_i| / \max_j
|\lambda_j|$ (near 1: neural collapse; near 0: a low-rank outcome) and
``rank_half`` (modes above half the largest). These are end-of-run proxies, not
the log-time outcome classifier of the basins study.

The sweep runs through :func:`svflow.sweep`: it resumes when ``--store``
exists, and runs on a dask cluster with ``--scheduler ADDRESS`` (or on a
throw-away local one with ``--workers N``).

    python scenarios/basin_sweep.py --quick
    python scenarios/basin_sweep.py --store sweeps/basins.zarr --scheduler tcp://127.0.0.1:8786
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import diffrax
import jax
import jax.numpy as jnp
import numpy as np

import svflow
from svflow._integrate import SolverConfig, solve
from svflow._simulate import ReducedField

QUICK = dict(classes=8, t_end=1e6, grid=dict(
    depth=[1, 3, 5], eps=[1e-2, 1e-1], delta=[0.1, 0.3, 0.5], seed=np.arange(4)))
FULL = dict(classes=16, t_end=1e8, grid=dict(
    depth=[1, 2, 3, 4, 5], eps=np.logspace(-3, -1, 5), delta=np.linspace(0.0, 0.5, 11),
    seed=np.arange(32)))


def basin_cell(key, depth, eps, delta, seed, classes, t_end):
    """One random spectral start, integrated and summarised (vmapped by the runner)."""
    N = depth + 1
    u = jax.random.uniform(key, (classes,), minval=1.0 - delta, maxval=1.0 + delta)
    lam0 = (eps * u).at[0].set(0.0)
    field = ReducedField(jnp.asarray(0.0), "ce", N, True)
    ts = jnp.array([0.0, t_end])
    ys, result, steps = solve(field, lam0, ts, None, SolverConfig(rtol=1e-6, atol=1e-9,
                                                                  max_steps=50_000))
    lam = ys[-1]
    q = jnp.abs(lam[1:]) / jnp.max(jnp.abs(lam))
    return dict(lam_end=lam, min_ratio=jnp.min(q), rank_half=jnp.sum(q > 0.5),
                num_steps=steps, solver_ok=result == diffrax.RESULTS.successful)


def run(quick: bool, store: Path, scheduler: str | None = None, workers: int = 0,
        chunk: int | None = None, progress: bool = True, dry_run: bool = False):
    cfg = QUICK if quick else FULL
    chunk = chunk or (8 if quick else 64)
    kw = dict(store=store, chunk=chunk, static=("depth",), outputs={"lam_end": ("mode",)},
              params=dict(classes=cfg["classes"], t_end=cfg["t_end"]), progress=progress)
    if dry_run:
        return svflow.sweep(basin_cell, cfg["grid"], dry_run=True, **kw)
    if workers:
        from distributed import Client, LocalCluster

        with LocalCluster(n_workers=workers, threads_per_worker=1, processes=True,
                          dashboard_address=None) as cluster, Client(cluster) as client:
            return svflow.sweep(basin_cell, cfg["grid"], client=client, **kw)
    return svflow.sweep(basin_cell, cfg["grid"], client=scheduler, **kw)


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--quick", action="store_true", help="small grid (K = 8, ~1 min on 2 cores)")
    p.add_argument("--store", type=Path, default=None,
                   help="zarr store (resumed if it exists); default sweeps/basin_sweep[_quick].zarr")
    p.add_argument("--scheduler", default=None, help="dask scheduler address, e.g. tcp://127.0.0.1:8786")
    p.add_argument("--workers", type=int, default=0, help="start a local dask cluster of N workers")
    p.add_argument("--chunk", type=int, default=None, help="cells per chunk (default 8 quick / 64 full)")
    p.add_argument("--out", type=Path, default=None, help="also save the dataset as netCDF")
    p.add_argument("--dry-run", action="store_true", help="print the plan and the store's state")
    a = p.parse_args(argv)
    store = a.store or Path("sweeps") / f"basin_sweep{'_quick' if a.quick else ''}.zarr"
    if a.dry_run:
        print(run(a.quick, store, chunk=a.chunk, dry_run=True))
        return None
    tic = time.perf_counter()
    ds = run(a.quick, store, a.scheduler, a.workers, a.chunk)
    print(f"done in {time.perf_counter() - tic:.1f} s; store {store}")
    if not bool(ds.solver_ok.all()):
        raise SystemExit(f"{int((~ds.solver_ok).sum())} integrations failed; see solver_ok in {store}")
    frac = (ds.min_ratio > 0.9).mean("seed")
    print("fraction of seeds ending near NC (min_ratio > 0.9), by depth x delta (eps averaged):")
    print(frac.mean("eps").to_pandas().round(2).to_string())
    if a.out:
        svflow.save(ds, a.out)
        print(f"dataset: {a.out}")
    return ds


if __name__ == "__main__":
    main()
