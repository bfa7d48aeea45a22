"""Throughput of full-parameter GD against the device's matmul ceiling.

    python benchmarks/full_flops.py                      # d = 4096, meant for a GPU
    python benchmarks/full_flops.py --width 256 --steps 20  # a CPU smoke run

Measures, in the same process: (1) the matmul ceiling, a square (d x d) @ (d x d)
product in the run's dtype; (2) wall time per GD step of svflow's compiled
loop for a linear deep UFM (K classes, n samples per class, width d, depth L).
FLOPs per step are counted from the model: forward 2 d^2 M per hidden layer,
backward 4 d^2 M (weight and input gradients), and 6 K d M for W_L
(M = K n columns; the elementwise update is not counted). With M << d each
step is a chain of skinny products that is memory-bound, so the achieved
fraction of the ceiling grows with n.
Prints one markdown table row per n, for benchmarks/RESULTS.md.
"""

from __future__ import annotations

import argparse
import sys
import time

import jax
import jax.numpy as jnp

import svflow
from svflow._full.train import advance


def matmul_ceiling(d: int, dtype, repeats: int = 10) -> float:
    """Achieved FLOP/s of a square d x d matmul (best of ``repeats``)."""
    k1, k2 = jax.random.split(jax.random.PRNGKey(0))
    a = jax.random.normal(k1, (d, d), dtype)
    b = jax.random.normal(k2, (d, d), dtype)
    f = jax.jit(lambda x, y: x @ y)
    f(a, b).block_until_ready()
    best = float("inf")
    for _ in range(repeats):
        tic = time.perf_counter()
        f(a, b).block_until_ready()
        best = min(best, time.perf_counter() - tic)
    return 2 * d**3 / best


def step_flops(K: int, n: int, d: int, L: int) -> float:
    """FLOPs of one GD step of the linear deep UFM (matmuls only)."""
    M = K * n
    hidden = (L - 1) * 6 * d * d * M  # W_l x, W_l^T g (dH for l = 1), g x^T
    last = 6 * K * d * M  # the same three products for W_L (K x d)
    return float(hidden + last)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--width", type=int, default=4096)
    p.add_argument("--depth", type=int, default=3)
    p.add_argument("--classes", type=int, default=16)
    p.add_argument("--samples", type=int, nargs="+", default=[1, 64, 256])
    p.add_argument("--steps", type=int, default=200)
    p.add_argument("--dtype", default="float32", choices=["float32", "float64"])
    args = p.parse_args(argv)
    dtype = jnp.dtype(args.dtype)
    d, L, K = args.width, args.depth, args.classes
    dev = jax.devices()[0]
    ceiling = matmul_ceiling(d, dtype)
    print(f"device: {dev} ({getattr(dev, 'device_kind', dev.platform)}), dtype {dtype}")
    print(f"matmul ceiling ({d}x{d}): {ceiling / 1e12:.3f} TFLOP/s")
    print("| K | n | d | L | dtype | steps | s/step | TFLOP/s | % of matmul ceiling |")
    print("|---|---|---|---|---|---|---|---|---|")
    run = jax.jit(advance)
    for n in args.samples:
        m = svflow.random_model(K, depth=L, width=d, samples_per_class=n, key=0, dtype=dtype)
        m2, _ = run(m, 0.01, 0, 2)  # compile
        jax.block_until_ready(m2.factors)
        tic = time.perf_counter()
        m2, bad = run(m, 0.01, 0, args.steps)
        jax.block_until_ready(m2.factors)
        per = (time.perf_counter() - tic) / args.steps
        fl = step_flops(K, n, d, L) / per
        print(
            f"| {K} | {n} | {d} | {L} | {dtype} | {args.steps} | {per:.3e} | "
            f"{fl / 1e12:.3f} | {100 * fl / ceiling:.1f} |"
        )
        if int(bad) >= 0:
            print(f"  (loss non-finite at step {int(bad)}; timing still valid)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
