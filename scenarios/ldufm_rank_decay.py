"""Seed 1, Figure 3 (left): numerical rank at convergence against weight decay, L = 4.

    python scenarios/ldufm_rank_decay.py --quick --out rank_decay_quick.nc   # 3 seeds,
    5e4 steps
    python scenarios/ldufm_rank_decay.py --out rank_decay.nc                 # 10 seeds,
    2e5 steps

K = 10, L = 4, width 30, lr 0.5, n = 1, every factor's weight decay = lambda.
Prints the mean rank of every layer's class means per lambda.
"""

from __future__ import annotations

import argparse

import svflow

LAMS = (0.001, 0.002, 0.004, 0.008, 0.016)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument("--quick", action="store_true")
    p.add_argument("--out", default=None)
    a = p.parse_args(argv)
    if a.out:  # fail now, not after the computation
        try:
            svflow.check_writable(a.out)
        except OSError as e:
            p.error(f"--out: {e}")
    kw = dict(classes=10, depth=4, width=30, eta=0.5, samples=1)
    if a.quick:
        ds = svflow.ldufm_sweep(
            "lam", LAMS, **kw, steps=50_000, seeds=(0, 1, 2), num_times=21
        )
    else:
        ds = svflow.ldufm_sweep(
            "lam", LAMS, **kw, steps=200_000, seeds=tuple(range(10)), num_times=41
        )
    print("layers:", " ".join(ds["layer"].values))
    for lam in ds["lam"].values:
        d = ds.sel(lam=lam)
        print(
            f"lambda {lam:g}: mean ranks "
            f"{d['rank_layer'].mean('seed').values.round(2).tolist()}  "
            f"DNC fraction {float(d['is_dnc'].mean()):.2f}  "
            "final/L_DNC "
            f"{(d['final_objective'] / d['L_DNC']).values.round(4).tolist()}"
        )
    if a.out:
        svflow.save(ds, a.out)
        print("saved", a.out)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
