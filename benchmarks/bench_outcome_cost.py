r"""Per-trajectory cost of a basin map: finite-horizon classifier vs certified outcome.

Workload: ``svflow.studies.basin_map``'s lag family (K = 8 and K = 4, depths 2-4,
5 initial scales log-spaced in [1e-3, 1e-1] x 12 lags log-spaced in [0.001, 0.9]).

- before: what ``basin_map`` ran until the certified outcome replaced it: one
  vmapped tsit5 solve in tau = log(1 + t) to t = 1e8 (121 log-spaced saves,
  rtol 1e-6, atol 1e-9) and ``svflow.studies.classify_trajectory`` on every trajectory;
- after: ``svflow.studies.basin_map`` at its defaults (double-log clock to the
  hand-offs tau = 30 and 100, a limit-flow run from each, later hand-offs for
  the undecided ones only).

Timing: process CPU time (all threads) per trajectory, after a warm-up call that
compiles; median of 3. Run: ``python benchmarks/bench_outcome_cost.py``.

Measured (2-core shared AMD EPYC, float64; 60 starts per row; ms = CPU per
trajectory; steps = mean solver steps, exact and limit flow together;
undecided / NC = counts of 60). "after" = hand-offs at tau = 30 and 100 to the
limit flow (:mod:`svflow._analysis.limit_flow`), every stage through the refill
batch engine (:func:`svflow._batch.solve_many`):

====  ==  =========  ========  =====  =========  ==============  =======
K     L   before ms  after ms  ratio  steps b/a  undecided b/a   NC b/a
====  ==  =========  ========  =====  =========  ==============  =======
4     2   0.144      1.207     8.4    66/309     0/0             49/51
4     3   0.170      1.272     7.5    73/307     0/0             40/42
4     4   0.165      1.211     7.4    77/305     0/0             35/35
8     2   0.201      3.809     19.0   71/321     2/0             44/46
8     3   0.204      3.314     16.2   79/318     1/0             35/35
8     4   0.255      4.286     16.8   83/323     0/0             30/29
====  ==  =========  ========  =====  =========  ==============  =======

The certified outcome costs 7-19x the finite-horizon classifier: the exact flow
to tau = 100 takes 150-200 steps (its late phase is stiff), and each of the two
limit runs about 100 steps whose right-hand sides solve a small
complementarity problem (about 10x the cost of an exact step for K = 8).
"""

from __future__ import annotations

import statistics
import time

import _common as C  # noqa: F401,E402  (puts this checkout on sys.path)

import jax
import jax.numpy as jnp
import numpy as np

import svflow
from svflow._basins import basin_start
from svflow._integrate import SolverConfig, log_times, solve
from svflow._analysis.classify import classify_trajectory
from svflow._simulate import ReducedField

EPS = np.logspace(-3, -1, 5)
DELTA = np.geomspace(0.001, 0.9, 12)


def before(K, depth):
    cfg = SolverConfig(rtol=1e-6, atol=1e-9, max_steps=20_000)
    ts = jnp.asarray(log_times(1e8, 121))
    field = ReducedField(jnp.asarray(0.0), "ce", depth + 1, True)
    E, D = np.meshgrid(EPS, DELTA, indexing="ij")

    @jax.jit
    def run(e, d):
        def one(e, d):
            lam0 = basin_start("lag", K, e, d)
            ys, _, steps = solve(field, lam0, ts, None, cfg)
            return classify_trajectory(ts, ys).code, steps

        return jax.vmap(one)(e, d)

    args = (jnp.asarray(E.ravel()), jnp.asarray(D.ravel()))
    jax.block_until_ready(run(*args))
    cpus = []
    for _ in range(3):
        c0 = time.process_time()
        code, steps = jax.block_until_ready(run(*args))
        cpus.append(time.process_time() - c0)
    code = np.asarray(code)
    return statistics.median(cpus) / code.size, code, float(np.mean(steps))


def after(K, depth):
    svflow.studies.basin_map(K, [depth], EPS, DELTA)  # compiles
    cpus = []
    for _ in range(3):
        c0 = time.process_time()
        ds = svflow.studies.basin_map(K, [depth], EPS, DELTA)
        cpus.append(time.process_time() - c0)
    code = ds["outcome"].values.ravel()
    return statistics.median(cpus) / code.size, code, float(ds["num_steps"].mean())


def main():
    print(
        f"{'K':>3} {'L':>2} {'before ms':>10} {'after ms':>9} {'ratio':>6} "
        f"{'steps b/a':>12} {'undecided b/a':>14} {'NC b/a':>9}"
    )
    for K in (4, 8):
        for depth in (2, 3, 4):
            tb, cb, sb = before(K, depth)
            ta, ca, sa = after(K, depth)
            print(
                f"{K:>3} {depth:>2} {1e3 * tb:>10.3f} {1e3 * ta:>9.3f} {ta / tb:>6.2f} "
                f"{sb:>5.0f}/{sa:<6.0f} {int((cb < 0).sum()):>6}/{int((ca < 0).sum()):<7} "
                f"{int((cb == 0).sum()):>4}/{int((ca == 0).sum()):<4}"
            )


if __name__ == "__main__":
    main()
