"""Seed 1, Figure 2: GD on the L-DUFM (ReLU, squared loss, weight decay) against L_DNC
and L_SRG.

    python scenarios/ldufm_fig2.py --quick --out fig2_quick.nc   # 1e5 steps (~1.5 min,
    2 cores)
    python scenarios/ldufm_fig2.py --out fig2.nc                 # 1e6 steps (~7 min)

K = 10, L = 4, every lambda 0.004, width 30, lr 0.5, 10 seeds, n samples per
class (default 5; the seed's n is not known here). Prints each seed's final
objective relative to L_DNC and L_SRG, its numerical rank per layer, NC1 and
whether it ended in DNC.
"""

from __future__ import annotations

import argparse

import numpy as np

import svflow


def main(argv=None) -> int:
    p = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument("--quick", action="store_true")
    p.add_argument("--out", default=None, help="netCDF path for the dataset")
    p.add_argument("--samples", type=int, default=5)
    a = p.parse_args(argv)
    if a.out:  # fail now, not after the computation
        try:
            svflow.check_writable(a.out)
        except OSError as e:
            p.error(f"--out: {e}")
    ds = svflow.ldufm_runs(
        10,
        4,
        width=30,
        lam=0.004,
        eta=0.5,
        samples=a.samples,
        steps=100_000 if a.quick else 1_000_000,
        seeds=tuple(range(10)),
    )
    Ld, Ls = float(ds["L_DNC"]), float(ds["L_best"])
    print(f"L_DNC = {Ld:.6f}   L_SRG = {Ls:.6f} ({ds.attrs['best_construction']})")
    print("layers:", " ".join(ds["layer"].values))
    for s in ds["seed"].values:
        d = ds.sel(seed=s)
        f = float(d["final_objective"])
        print(
            f"seed {s}: final {f:.6f}  /L_DNC {f / Ld:.4f}  /L_SRG {f / Ls:.4f}  "
            f"ranks {d['rank_layer'].values.tolist()}  "
            f"max NC1 {float(d['nc1_layer'].max()):.1e}  "
            f"DNC={bool(d['is_dnc'])}"
        )
    print(
        f"DNC fraction {float(ds['is_dnc'].mean()):.2f}; mean final/L_DNC "
        f"{np.mean(ds['final_objective'].values) / Ld:.4f}"
    )
    if a.out:
        svflow.save(ds, a.out)
        print("saved", a.out)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
