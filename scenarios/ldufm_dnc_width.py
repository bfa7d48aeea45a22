"""Seed 1, Figure 3 (right): fraction of GD runs ending in DNC against width, L = 4, K =
10.

    python scenarios/ldufm_dnc_width.py --quick --out dnc_width_quick.nc   # 4 seeds,
    5e4 steps
    python scenarios/ldufm_dnc_width.py --out dnc_width.nc                 # 10 seeds,
    2e5 steps

Every lambda 0.004, lr 0.5, n = 1. A run ends in DNC when every layer's
class means have rank K (threshold 1e-3) and its objective is within 1e-2
(relative) of L_DNC.
"""

from __future__ import annotations

import argparse

import svflow

WIDTHS = (10, 20, 30, 50, 80)


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
    kw = dict(classes=10, depth=4, lam=0.004, eta=0.5, samples=1)
    if a.quick:
        ds = svflow.ldufm_sweep(
            "width", WIDTHS, **kw, steps=50_000, seeds=(0, 1, 2, 3), num_times=21
        )
    else:
        ds = svflow.ldufm_sweep(
            "width", WIDTHS, **kw, steps=200_000, seeds=tuple(range(10)), num_times=41
        )
    for w in ds["width"].values:
        d = ds.sel(width=w)
        print(
            f"width {w}: DNC fraction {float(d['is_dnc'].mean()):.2f}  "
            f"rank of pre3 {d['rank_layer'].sel(layer='pre3').values.tolist()}"
        )
    if a.out:
        svflow.save(ds, a.out)
        print("saved", a.out)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
