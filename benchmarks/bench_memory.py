r"""Item 5: peak resident memory of a basin batch (K = 16, L = 5, 161 save times).

Each configuration runs in its own Python subprocess, which reports its peak
resident set size (``resource.getrusage(RUSAGE_SELF).ru_maxrss``) after the
batch, and its resident size after imports and compilation of nothing (the
baseline of Python + JAX). Configurations:

* ``one vmap``: every start in flight at once (as many lanes as starts, one
  chunk: what a single ``vmap`` of the solver holds);
* ``solve_batch``: :func:`svflow._batch.solve_batch` with its defaults (64
  lanes; chunks of starts sized from a 1 GiB budget for their saved
  trajectories, each chunk's result copied to host memory before the next).

The saved trajectories alone take B x 161 x 16 x 8 bytes (2.06 GB for 1e5
starts); the target is a peak below 4 GiB.

Run: ``python benchmarks/bench_memory.py`` (quick: 2e4 starts) or ``--full``
(1e5 starts, a few minutes).
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path

import _common as C  # noqa: E402  (puts this checkout on sys.path)

K, DEPTH = 16, 5
LIMIT = 4 * 2**30


def child(mode: str, B: int) -> dict:
    import resource

    import jax.numpy as jnp
    import numpy as np

    import svflow
    from svflow._batch import solve_batch
    from svflow._integrate import check_solution
    from svflow._integrate import Solver
    from svflow._simulate import ReducedField

    rng = np.random.default_rng(0)
    lam0 = 10 ** rng.uniform(-3, -1, (B, 1)) * rng.uniform(0.5, 1.5, (B, K))
    lam0[:, 0] = 0.0
    ts = svflow.log_times(1e8)
    field = ReducedField(jnp.asarray(0.0), "ce", DEPTH + 1, True)
    config = Solver()
    base = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    tic = time.perf_counter()
    if mode == "one vmap":
        sol = solve_batch(field, lam0, ts, config, lanes=B, max_bytes=1 << 62)
    else:
        sol = solve_batch(field, lam0, ts, config)
    wall = time.perf_counter() - tic
    check_solution(sol.ys, sol.result, sol.num_steps, config, ts[-1])
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    return {
        "mode": mode,
        "starts": B,
        "chunk_size": sol.chunk_size,
        "num_chunks": sol.num_chunks,
        "baseline_rss_MiB": base / 2**20,
        "peak_rss_MiB": peak / 2**20,
        "saved_MiB": sol.ys.nbytes / 2**20,
        "wall_s": wall,
        "fits_4GiB": bool(peak < LIMIT),
    }


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--full", action="store_true", help="1e5 starts (default 2e4)")
    p.add_argument("--starts", type=int, default=None)
    p.add_argument("--modes", default="solve_batch,one vmap")
    p.add_argument("--child", default=None, help=argparse.SUPPRESS)
    a = p.parse_args(argv)
    B = a.starts or (100_000 if a.full else 20_000)
    if a.child:
        print("RESULT " + json.dumps(child(a.child, B)), flush=True)
        return None
    rows = []
    for mode in a.modes.split(","):
        cmd = [sys.executable, str(Path(__file__).resolve()), "--child", mode, "--starts", str(B)]
        out = subprocess.run(cmd, capture_output=True, text=True, check=False)
        line = [x for x in out.stdout.splitlines() if x.startswith("RESULT ")]
        if not line:
            print(out.stdout[-2000:], out.stderr[-4000:])
            rows.append(
                {
                    "mode": mode,
                    "starts": B,
                    "chunk_size": -1,
                    "num_chunks": -1,
                    "baseline_rss_MiB": float("nan"),
                    "peak_rss_MiB": float("nan"),
                    "saved_MiB": float("nan"),
                    "wall_s": float("nan"),
                    "fits_4GiB": False,
                }
            )
            continue
        rows.append(json.loads(line[0][7:]))
        print(f"  {mode}: peak {rows[-1]['peak_rss_MiB']:.0f} MiB in {rows[-1]['wall_s']:.1f} s", flush=True)
    print(C.table(rows, f"\nPeak resident memory, basin batch K={K}, L={DEPTH}, 161 save times"))
    C.write_results(f"memory_{B}", rows, {"limit_bytes": LIMIT})
    return rows


if __name__ == "__main__":
    main()
