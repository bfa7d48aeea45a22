r"""Basin throughput on one accelerator: trajectories per minute through the public batch path.

Workload: the basin "random" family at K = 16, L = 5, integrated to t = 1e8
with rtol = 1e-8, atol = 1e-10 and 161 saves. Rows:

- ``simulate``: the public batch path :func:`svflow.simulate` on a 16 x 16 x S grid
  (eps x delta x seeds; integration through the refill engine with its
  default lanes for the backend, then the dataset);
- ``engine``: :func:`svflow._batch.solve_batch` alone at several lane counts
  (on an accelerator many more lanes pay off than on a CPU core).

The goal on an H100-class GPU is >= 1e7 trajectories per minute.

One command (whatever the device):

    python benchmarks/gpu_basins.py                 # 2^16 starts, lanes 2^12..2^16
    python benchmarks/gpu_basins.py --tiny          # CPU smoke run: 256 starts, 2 lane counts

Prints a table (device, method, starts, lanes, wall seconds, trajectories per
minute, mean steps) and writes ``results/gpu_basins[_tiny].csv/.nc``. Wall time (the
device works asynchronously), after one warm-up call per lane count that
compiles.
"""

from __future__ import annotations

import argparse
import time

import _common as C  # noqa: E402  (puts this checkout on sys.path)

import jax
import jax.numpy as jnp
import numpy as np

jax.config.update("jax_enable_x64", True)

import svflow
from bench_batch import ATOL, NUM_TIMES, RTOL, T_END, starts
from svflow._batch import default_lanes, solve_batch
from svflow._integrate import Solver, log_times
from svflow._simulate import ReducedField

K, DEPTH = 16, 5


def engine(lam0, lanes):
    field = ReducedField(jnp.asarray(0.0), "ce", DEPTH + 1, True)
    sol = solve_batch(field, lam0, log_times(T_END, NUM_TIMES), Solver(rtol=RTOL, atol=ATOL), lanes=lanes)
    return float(sol.num_steps.mean())


def public(seeds):
    """The public batch path: svflow.simulate on (16 x 16 x seeds) random starts to T_END."""
    rng = np.random.default_rng(0)
    n = 16 * 16 * seeds
    eps = np.repeat(np.logspace(-3, -1, 16), 16 * seeds)
    delta = np.tile(np.repeat(np.linspace(0.1, 0.9, 16), seeds), 16)
    u = 1.0 - delta[:, None] + 2.0 * delta[:, None] * rng.uniform(size=(n, K))
    lam0 = eps[:, None] * u
    ds = svflow.simulate(
        K,
        DEPTH,
        init=lam0,
        batch_dims="start",
        t_end=T_END,
        num_times=NUM_TIMES,
        solver=svflow.Solver(rtol=RTOL, atol=ATOL, max_steps=200_000),
    )
    return float(ds["num_steps"].mean())


def timed(fn, *args):
    fn(*args)  # compile
    tic = time.perf_counter()
    steps = fn(*args)
    return time.perf_counter() - tic, steps


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--tiny", action="store_true", help="256 starts, lanes 64 and 256 (runs on a CPU)")
    p.add_argument("--starts", type=int, default=None)
    p.add_argument("--lanes", type=int, nargs="*", default=None)
    a = p.parse_args()
    B = a.starts or (256 if a.tiny else 1 << 16)
    lanes_list = a.lanes or ([64, 256] if a.tiny else [1 << 12, 1 << 14, 1 << 16])
    lam0 = starts(K, B)
    device = str(jax.devices()[0])
    rows = []
    seeds = max(1, B // 256)
    wall, steps = timed(public, seeds)
    rows.append(
        dict(
            device=device,
            method="simulate",
            starts=256 * seeds,
            lanes=default_lanes(),
            wall_s=wall,
            traj_per_min=60 * 256 * seeds / wall,
            mean_steps=steps,
        )
    )
    print(rows[-1], flush=True)
    for lanes in lanes_list:
        lanes = min(lanes, B)
        wall, steps = timed(engine, lam0, lanes)
        rows.append(
            dict(
                device=device,
                method="engine",
                starts=B,
                lanes=lanes,
                wall_s=wall,
                traj_per_min=60 * B / wall,
                mean_steps=steps,
            )
        )
        print(rows[-1], flush=True)
    best = max(rows, key=lambda r: r["traj_per_min"])
    print(C.table(rows, f"basin throughput, K = {K}, L = {DEPTH}, t = {T_END:g} (wall time)"))
    print(f"best: {best['traj_per_min']:.3g} trajectories per minute with {best['lanes']} lanes on {device}")
    C.write_results("gpu_basins", rows, attrs={"clock": "wall time"}, quick=a.tiny)
    assert np.isfinite(best["traj_per_min"])


if __name__ == "__main__":
    main()
