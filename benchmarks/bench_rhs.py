r"""Item 3: cost of one reduced right-hand side, fast Walsh transform vs dense matrix.

One evaluation of the balanced cross-entropy field
$\dot\lambda = -N G |\lambda|^{2-2/N}$ costs two Walsh-Hadamard transforms
(margins, then the softmax eigenvalues): $O(K\log K)$ with butterflies,
$O(K^2)$ with a dense $H$. Three ways of timing it, each the median of many
repeats with ``block_until_ready``:

* ``call``: one jitted call per evaluation (includes JAX's dispatch overhead,
  a few microseconds, which hides everything at small K);
* ``loop``: R evaluations chained inside one compiled ``lax.fori_loop``,
  divided by R: the cost the ODE solver actually pays per stage;
* ``batch``: like ``loop`` but on a vmapped batch of B states (a basin map),
  per state.

The exponent p of time ~ K^p is fitted over the large-K end; for the fast
transform K log K predicts p a bit above 1, for the dense one p -> 2.

Run: ``python benchmarks/bench_rhs.py [--full]`` (quick: K = 2^4 .. 2^10;
full: up to 2^12).
"""

from __future__ import annotations

import argparse
import math

import _common as C  # noqa: E402  (puts this checkout on sys.path)

import jax
import jax.numpy as jnp
import numpy as np

import svflow  # noqa: F401
import svflow._walsh
from svflow._fields import rhs_balanced
from svflow._groups import Walsh

DEPTH = 5  # L = 5, N = 6


def fwht_blocked(x, radix: int = 16):
    r"""Candidate fast transform: $H_K = H_{16}\otimes\cdots\otimes H_{16}\otimes H_{2^r}$,
    applied as small dense matmuls along each radix-16 axis: $4K\log_2 K$ flops
    (vs $K\log_2 K$ for butterflies) but matmul-shaped, so it vectorises.
    Not used by svflow; timed here as the proposed next step."""
    K = x.shape[-1]
    m = K.bit_length() - 1
    q = radix.bit_length() - 1
    sizes = [radix] * (m // q) + ([2 ** (m % q)] if m % q else [])
    b = x.shape[:-1]
    y = x.reshape(b + tuple(sizes))
    for i, n in enumerate(sizes):
        y = jnp.moveaxis(
            jnp.tensordot(y, svflow._walsh.hadamard(n, dtype=x.dtype), axes=([len(b) + i], [0])),
            -1,
            len(b) + i,
        )
    return y.reshape(x.shape)


class _patched_fast:
    """Within the block, method="fast" uses :func:`fwht_blocked` (for tracing only)."""

    def __enter__(self):
        self.orig = svflow._walsh._fwht
        svflow._walsh._fwht = fwht_blocked

    def __exit__(self, *exc):
        svflow._walsh._fwht = self.orig


def _loop_fn(method: str, reps: int, batch: int | None):
    """Compiled function chaining ``reps`` evaluations (a contraction keeps values finite)."""

    def one(lam):
        return rhs_balanced(0.0, lam, "ce", 0.0, DEPTH + 1, Walsh(lam.shape[-1]), method)

    f = jax.vmap(one) if batch else one

    @jax.jit
    def run(lam):
        def body(_, y):
            return y + 1e-6 * f(y)

        return jax.lax.fori_loop(0, reps, body, lam)

    return run


def measure(K: int, method: str, quick: bool) -> dict:
    if method == "blocked":
        with _patched_fast():
            row = _measure(K, "fast", quick)
        row["method"] = "blocked"
        return row
    return _measure(K, method, quick)


def _measure(K: int, method: str, quick: bool) -> dict:
    rng = np.random.default_rng(K)
    lam = jnp.asarray(np.r_[0.0, rng.uniform(0.5, 1.5, K - 1)])
    call = jax.jit(lambda l: rhs_balanced(0.0, l, "ce", 0.0, DEPTH + 1, Walsh(K), method))
    call(lam).block_until_ready()  # trace now (while a patched transform is in place)
    t_call = C.timeit(lambda: call(lam).block_until_ready(), repeats=30, min_time=0.2)
    # loop: choose reps so one run takes ~20-50 ms
    reps = int(max(20, min(20000, 2e6 / (K * max(1, math.log2(K)) * (K / 16 if method == "dense" else 1)))))
    run = _loop_fn(method, reps, None)
    run(lam).block_until_ready()
    t_loop = C.timeit(lambda: run(lam).block_until_ready(), repeats=7) / reps
    row = {"K": K, "method": method, "call_us": 1e6 * t_call, "loop_us": 1e6 * t_loop}
    B = 256 if K <= 1024 else 0
    if B:
        lamB = jnp.asarray(np.c_[np.zeros(B), rng.uniform(0.5, 1.5, (B, K - 1))])
        repsB = max(5, reps // 32)
        runB = _loop_fn(method, repsB, B)
        runB(lamB).block_until_ready()
        t_b = C.timeit(lambda: runB(lamB).block_until_ready(), repeats=5) / (repsB * B)
        row["batch_us_per_state"] = 1e6 * t_b
    else:
        row["batch_us_per_state"] = float("nan")
    return row


def solve_check(Ks=(16, 32, 64, 128, 256)) -> list[dict]:
    """Whole solves (t = 1e6, 41 saves, rtol 1e-8), dense vs fast: one start, and 256 starts
    through the refill engine (svflow._batch.solve_batch, 64 lanes). CPU time, median."""
    from svflow._batch import solve_batch
    from svflow._integrate import Solver, log_times, solve
    from svflow._simulate import ReducedField

    rows = []
    ts = log_times(1e6, 41)
    for K in Ks:
        rng = np.random.default_rng(0)
        lam0 = 10 ** rng.uniform(-2, -1, (256, 1)) * rng.uniform(0.5, 1.5, (256, K))
        lam0[:, 0] = 0.0
        t = {}
        for method in ("dense", "fast"):
            field = ReducedField(jnp.asarray(0.0), "ce", DEPTH + 1, True, method)
            t[method, "batch"] = C.timeit(lambda: solve_batch(field, lam0, ts), repeats=3)
            y0, tsj, cfg = jnp.asarray(lam0[0]), jnp.asarray(ts), Solver()
            t[method, "single"] = C.timeit(
                lambda: jax.block_until_ready(solve(field, y0, tsj, None, cfg)), repeats=20
            )
        rows.append(
            {
                "K": K,
                "single_dense_ms": 1e3 * t["dense", "single"],
                "single_fast_ms": 1e3 * t["fast", "single"],
                "single dense/fast": t["dense", "single"] / t["fast", "single"],
                "batch256_dense_s": t["dense", "batch"],
                "batch256_fast_s": t["fast", "batch"],
                "batch dense/fast": t["dense", "batch"] / t["fast", "batch"],
                "auto_picks": "dense" if K <= getattr(svflow._walsh, "AUTO_DENSE_MAX", 32) else "fast",
            }
        )
    return rows


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--full", action="store_true", help="K up to 2^12 (default 2^10)")
    a = p.parse_args(argv)
    kmax = 12 if a.full else 10
    Ks = [2**m for m in range(4, kmax + 1)]
    rows = []
    for K in Ks:
        for method in ("fast", "dense", "blocked"):
            r = measure(K, method, not a.full)
            rows.append(r)
            print(
                f"K={K:5d} {method:7s} call {r['call_us']:9.2f} us  loop {r['loop_us']:9.3f} us  "
                f"batch {r['batch_us_per_state']:9.3f} us/state",
                flush=True,
            )
    # speed-up and exponents
    summary = []
    for K in Ks:
        f = next(r for r in rows if r["K"] == K and r["method"] == "fast")
        d = next(r for r in rows if r["K"] == K and r["method"] == "dense")
        b = next(r for r in rows if r["K"] == K and r["method"] == "blocked")
        summary.append(
            {
                "K": K,
                "fast_loop_us": f["loop_us"],
                "dense_loop_us": d["loop_us"],
                "dense/fast loop": d["loop_us"] / f["loop_us"],
                "dense/fast batch": d["batch_us_per_state"] / f["batch_us_per_state"],
                "dense/fast call": d["call_us"] / f["call_us"],
                "fast_loop / (K log2 K) ns": 1e3 * f["loop_us"] / (K * math.log2(K)),
                "dense/blocked loop": d["loop_us"] / b["loop_us"],
                "dense/blocked batch": d["batch_us_per_state"] / b["batch_us_per_state"],
                "auto_picks": "dense" if K <= getattr(svflow._walsh, "AUTO_DENSE_MAX", 32) else "fast",
            }
        )
    big = [K for K in Ks if K >= 256]
    exps = {}
    for method in ("fast", "dense", "blocked"):
        for col in ("loop_us", "batch_us_per_state"):
            ks = [K for K in big if K <= (1024 if col.startswith("batch") else 1 << 30)]
            ys = [next(r[col] for r in rows if r["K"] == K and r["method"] == method) for K in ks]
            if len(ks) < 2:
                continue
            exps[f"exponent_{method}_{col}"] = C.fit_exponent(ks, ys)
    ys = [next(r["loop_us"] for r in rows if r["K"] == K and r["method"] == "fast") for K in big]
    exps["exponent_KlogK_model"] = C.fit_exponent(big, [K * math.log2(K) for K in big])
    print(C.table(summary, "\nRHS cost per evaluation (balanced CE, N = 6)"))
    print("\nfitted exponents over K >= 256:", {k: round(v, 3) for k, v in exps.items()})
    solves = solve_check()
    print(C.table(solves, "\nWhole solves, dense vs fast (ratio < 1: dense faster)"))
    C.write_results("rhs_solve_check", solves, quick=not a.full)
    C.write_results("rhs_scaling", rows, {**exps, "depth": DEPTH}, quick=not a.full)
    C.write_results("rhs_scaling_summary", summary, exps, quick=not a.full)
    return rows, summary, exps


if __name__ == "__main__":
    main()
