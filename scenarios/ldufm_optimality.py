"""Empirical optimality map of the L-DUFM: the best objective GD + an L-BFGS polish
finds over init scales and seeds, divided by L_DNC, beside the known constructions,
with the number of runs below L_DNC and below the best construction.

    python scenarios/ldufm_optimality.py --quick --out optimality_quick.nc       # minutes
    python scenarios/ldufm_optimality.py --setting polished --out optimality.nc  # ~45 min, busy 2 cores
    python scenarios/ldufm_optimality.py --setting medium --out optimality.nc    # longer
    python scenarios/ldufm_optimality.py --out optimality_full.nc                # hours

K = 2..16, L = 2..6, weight decay 0.004 on every factor, learning rate 0.5,
width max(16, 2K), n = 1. QUICK: init scales 0.55, 1.0 x 2 seeds, 1e4 steps;
MEDIUM: 0.55, 1.0, 1.5 x 4 seeds, 4e4 steps; FULL: 0.3, 0.55, 1.0, 1.5 x 10
seeds, 5e5 steps; POLISHED (the committed figure): K = 2..6, init scales
0.55, 1.0 x 12 seeds, 2e4 steps, no per-run kink stage (the figure re-polishes
the best points with it). Every run is polished by L-BFGS (2000-3000 steps).
Prints the best ratio, the count of runs below L_DNC out of the runs made, the
bottleneck rank and init scale per cell, and the cells where the best run
beats DNC and where it beats every known construction.
"""

from __future__ import annotations

from svflow.explicit._ldufm_studies import study_main


def summary(ds) -> str:
    Ks, Ls = ds["classes"].values, ds["depth"].values
    lines = [
        "best polished objective / L_DNC (runs below L_DNC / runs, bottleneck rank, init scale); "
        "construction / L_DNC in brackets"
    ]
    lines.append("K \\ L " + "".join(f"{L:>38d}" for L in Ls))
    for K in Ks:
        cells = []
        for L in Ls:
            c = ds.sel(classes=K, depth=L)
            cells.append(
                f"{float(c['best_ratio']):.4f} ({int(c['n_below_dnc'])}/{int(c['n_runs'])}, "
                f"r{int(c['best_rank'])}, s{float(c['best_scale']):g}) "
                f"[{float(c['construction_ratio']):.4f}]"
            )
        lines.append(f"{K:5d} " + "".join(f"{x:>38s}" for x in cells))
    for var, what in (("beats_dnc", "DNC"), ("beats_constructions", "every known construction")):
        hits = [
            f"(K={K}, L={L}: {float(ds['best_ratio'].sel(classes=K, depth=L)):.4f})"
            for K in Ks
            for L in Ls
            if bool(ds[var].sel(classes=K, depth=L))
        ]
        lines.append(f"the best run beats {what} at: " + (", ".join(hits) if hits else "no cell"))
    return "\n".join(lines)


if __name__ == "__main__":
    raise SystemExit(study_main("ldufm_optimality", summary, doc=__doc__))
