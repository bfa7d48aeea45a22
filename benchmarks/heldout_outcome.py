"""Held-out check of svflow.outcome against an independent long integration (issue 27).

Starts: for each group (K = 5, 6, 7, 12 cyclic; K = 16 Walsh) and depth L = 2, 3, 4,
``--per`` random spectral starts (lambda_i(0) = eps u_i, u_i ~ U[0.5, 1.5],
eps ~ 10^U[-3, -1]) and ``--per`` one-dominant-frequency starts (the same with
the modes of frequency 1 (Walsh: mode 1) multiplied by U[1, 2], the family that
gave false NC). Truth: tests/long_flow.py (scipy Radau in double-log time to
tau = 1e10). Prints right / wrong / undecided / no-truth counts.

    PYTHONPATH=$PWD python benchmarks/heldout_outcome.py --per 5 --seed 1
"""

import argparse
import sys
import time
from pathlib import Path

import numpy as np

import svflow

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
from long_flow import long_outcome  # noqa: E402

GROUPS = [(5, False), (6, False), (7, False), (12, False), (16, True)]


def starts(K, walsh, per, rng):
    out = []
    for kind in range(2):
        for _ in range(per):
            u = rng.uniform(0.5, 1.5, K)
            if kind:
                u[1 : 2 if walsh else 3] *= rng.uniform(1.0, 2.0)
            if not walsh:  # conjugate pairs share one value
                for j in range(1, (K - 1) // 2 + 1):
                    u[2 * j] = u[2 * j - 1]
            u[0] = 0.0
            out.append(10 ** rng.uniform(-3, -1) * u)
    return np.array(out)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--per", type=int, default=5)
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--depths", type=int, nargs="+", default=[2, 3, 4])
    a = ap.parse_args()
    rng = np.random.default_rng(a.seed)
    tot = dict(right=0, wrong=0, undecided=0, no_truth=0)
    for K, walsh in GROUPS:
        for L in a.depths:
            lam = starts(K, walsh, a.per, rng)
            tic = time.perf_counter()
            truth = [long_outcome(x, L, walsh)[0] for x in lam]
            t_truth = time.perf_counter() - tic
            tic = time.perf_counter()
            grp = "walsh" if walsh else "cyclic"
            oc = svflow.outcome(K, L, init=lam, batch_dims="start", group=grp)
            got = oc["outcome"].values
            t_oc = time.perf_counter() - tic
            c = dict(right=0, wrong=0, undecided=0, no_truth=0)
            for g, t in zip(got, truth):
                if t == -2:
                    c["no_truth"] += 1
                elif g == -1:
                    c["undecided"] += 1
                elif g == t:
                    c["right"] += 1
                else:
                    c["wrong"] += 1
                    print(f"  WRONG K={K} L={L} got {g} truth {t}", flush=True)
            for k in tot:
                tot[k] += c[k]
            print(f"K={K:2d} L={L} {c} truth {t_truth:.0f}s outcome {t_oc:.0f}s", flush=True)
    print("TOTAL", tot, flush=True)


if __name__ == "__main__":
    main()
