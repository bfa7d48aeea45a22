r"""Per-trajectory cost of a basin map: finite-horizon classifier vs certified outcome.

Workload: ``svflow.studies.basin_map``'s lag family (K = 4 and K = 8, depths
2-4, 5 initial scales log-spaced in [1e-3, 1e-1] x 12 lags log-spaced in
[0.001, 0.9]: 60 starts per row).

Rows:

- **old public**: ``svflow.basin_map`` as it was when issue 11 was filed
  (commit 9718129: one vmapped tsit5 solve in tau = log(1 + t) to t = 1e8,
  121 log-spaced saves, rtol 1e-6, and the finite-horizon classifier; dataset
  built), run from ``git archive`` of that commit in a subprocess of this
  environment. This is "today's" cost the issue's 1.5x target refers to.
- **old engine**: the same solve and ``classify_trajectory`` of this checkout
  as one bare jitted call (no argument checks, no dataset): a stricter floor.
- **new**: ``svflow.studies.basin_map`` at its defaults (double-log clock to
  the hand-offs tau = 30 and 100 in one engine run, the limit map from both,
  later hand-offs for the undecided only).

Timing: process CPU time (all threads) per trajectory, after a warm-up call
that compiles; median of 9 calls; the three measurements of a setting run one
after the other, in 3 rounds (medians over rounds, and the range of the ratios).
``--large``: 10 x 24 = 240 starts per row instead of 60. Run: ``python benchmarks/bench_outcome_cost.py``
(needs git and this repository's history for the old public row).

Measured: see benchmarks/RESULTS.md, section 7.
"""

from __future__ import annotations

import json
import statistics
import subprocess
import sys
import tarfile
import tempfile
import io
import time
from pathlib import Path

import _common as C  # noqa: F401,E402  (puts this checkout on sys.path)

import jax
import jax.numpy as jnp
import numpy as np

import svflow
from svflow.studies._basins import basin_start
from svflow._integrate import Solver, log_times, solve
from svflow._analysis.classify import classify_trajectory
from svflow._simulate import ReducedField

EPS = np.logspace(-3, -1, 5)
DELTA = np.geomspace(0.001, 0.9, 12)
if "--large" in sys.argv:  # 240 starts per row (10 x 24): fixed per-call costs weigh less
    EPS = np.logspace(-3, -1, 10)
    DELTA = np.geomspace(0.001, 0.9, 24)
OLD_COMMIT = "9718129"
ROWS = [(K, depth) for K in (4, 8) for depth in (2, 3, 4)]
REPEATS = 9

_OLD_CHILD = """
import json, statistics, sys, time
import numpy as np
sys.path.insert(0, sys.argv[1])
import svflow
EPS = np.logspace(-3, -1, int(sys.argv[4]))
DELTA = np.geomspace(0.001, 0.9, int(sys.argv[5]))
out = {}
for K, depth in json.loads(sys.argv[2]):
    svflow.basin_map(K, [depth], EPS, DELTA)
    cpus = []
    for _ in range(int(sys.argv[3])):
        c0 = time.process_time()
        ds = svflow.basin_map(K, [depth], EPS, DELTA)
        cpus.append(time.process_time() - c0)
    code = ds["outcome"].values.ravel()
    out[f"{K},{depth}"] = [statistics.median(cpus) / code.size, code.tolist()]
print(json.dumps(out))
"""


def old_public(tree: str, K: int, depth: int) -> tuple:
    """(cpu s per trajectory, codes) of ``svflow.basin_map`` of the old ``tree`` (a subprocess)."""
    res = subprocess.run(
        [
            sys.executable,
            "-c",
            _OLD_CHILD,
            tree,
            json.dumps([[K, depth]]),
            str(REPEATS),
            str(EPS.size),
            str(DELTA.size),
        ],
        capture_output=True,
        text=True,
        check=True,
        cwd=tree,
    )
    t, code = json.loads(res.stdout.strip().splitlines()[-1])[f"{K},{depth}"]
    return t, np.asarray(code)


def before(K, depth):
    cfg = Solver(rtol=1e-6, atol=1e-9, max_steps=20_000)
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
    for _ in range(REPEATS):
        c0 = time.process_time()
        code, steps = jax.block_until_ready(run(*args))
        cpus.append(time.process_time() - c0)
    code = np.asarray(code)
    return statistics.median(cpus) / code.size, code, float(np.mean(steps))


def after(K, depth):
    svflow.studies.basin_map(K, [depth], EPS, DELTA)  # compiles
    cpus = []
    for _ in range(REPEATS):
        c0 = time.process_time()
        ds = svflow.studies.basin_map(K, [depth], EPS, DELTA)
        cpus.append(time.process_time() - c0)
    code = ds["outcome"].values.ravel()
    return statistics.median(cpus) / code.size, code, float(ds["num_steps"].mean())


def main():
    root = Path(__file__).resolve().parent.parent
    blob = subprocess.run(["git", "-C", str(root), "archive", OLD_COMMIT], capture_output=True, check=True)
    with tempfile.TemporaryDirectory() as tree:
        tarfile.open(fileobj=io.BytesIO(blob.stdout)).extractall(tree, filter="data")
        _table(tree)


ROUNDS = 3


def _table(tree: str):
    """One row per (K, depth). A row measures old public, old engine and new one after
    the other, ROUNDS times; it prints the medians over rounds and the range of the
    per-round ratios (the shared machine's load moves single ratios by +-30 %)."""
    print(
        f"{'K':>3} {'L':>2} {'old public':>10} {'old engine':>10} {'new':>7} {'new/old public':>20} "
        f"{'new/old engine':>20} {'steps e/n':>10} {'undecided o/n':>13} {'NC o/n':>7}"
    )
    med = statistics.median
    for K, depth in ROWS:
        tps, tbs, tas = [], [], []
        for _ in range(ROUNDS):
            tp, cp = old_public(tree, K, depth)
            tb, cb, sb = before(K, depth)
            ta, ca, sa = after(K, depth)
            tps.append(tp), tbs.append(tb), tas.append(ta)
        rp = [a / p for a, p in zip(tas, tps)]
        rb = [a / b for a, b in zip(tas, tbs)]
        tp, tb, ta = med(tps), med(tbs), med(tas)
        print(
            f"{K:>3} {depth:>2} {1e3 * tp:>10.3f} {1e3 * tb:>10.3f} {1e3 * ta:>7.3f} "
            f"{med(rp):>8.2f} ({min(rp):.2f}-{max(rp):.2f}) {med(rb):>8.2f} ({min(rb):.2f}-{max(rb):.2f}) "
            f"{sb:>4.0f}/{sa:<5.0f} {int((cp < 0).sum()):>6}/{int((ca < 0).sum()):<6} "
            f"{int((cp == 0).sum()):>3}/{int((ca == 0).sum()):<3}"
        )


if __name__ == "__main__":
    main()
