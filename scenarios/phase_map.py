"""Depth x width phase map of random-start full GD (issue 3; MODEL.md section 5).

    python scenarios/phase_map.py --quick --out figures/data/phase_map_scenario.nc
    python scenarios/phase_map.py --out phase_map_full.nc   # full grid, for a GPU

Random fan-in Gaussian starts (svflow.random_model), cross-entropy, no weight
decay, full-batch GD; per cell (K, L, d) several seeds. Prints the mean final
rank of the centred logits per depth x width for each K, the fraction of
seeds that reached neural collapse, and saves the dataset.
"""

from __future__ import annotations

import argparse
import sys

import numpy as np

import svflow

QUICK = dict(
    classes=(8, 16),
    depths=(1, 2, 3, 4, 5, 6),
    widths=(8, 32, 128),
    seeds=3,
    scale=1.0,
    eta=0.2,
    steps=4000,
)
FULL = dict(
    classes=(8, 16),
    depths=(1, 2, 3, 4, 5, 6),
    widths=(8, 16, 32, 64, 128, 256, 512),
    seeds=8,
    scale=1.0,
    eta=0.2,
    steps=20000,
)


def table(ds, var: str = "rank", fmt: str = "{:5.2f}") -> str:
    """Markdown table of the seed mean of ``var``: per K, depth rows x width columns."""
    lines = []
    for K in ds["classes"].values:
        sub = ds[var].sel(classes=K).astype(float).mean("seed")
        lines.append(f"\nK = {K}: mean {var} over {ds.sizes['seed']} seeds")
        lines.append(
            "| L \\ d | " + " | ".join(str(w) for w in ds["width"].values) + " |"
        )
        lines.append("|---" * (ds.sizes["width"] + 1) + "|")
        for L in ds["depth"].values:
            row = sub.sel(depth=L).values
            lines.append(f"| {L} | " + " | ".join(fmt.format(v) for v in row) + " |")
    return "\n".join(lines)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument(
        "--quick", action="store_true", help="small grid: a few minutes on 2 CPU cores"
    )
    p.add_argument("--out", default=None, help="write the dataset here (netCDF)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument(
        "--steps", type=int, default=None, help="override the number of GD steps"
    )
    p.add_argument("--eta", type=float, default=None, help="override the step size")
    p.add_argument("--scale", type=float, default=None, help="override the init scale")
    args = p.parse_args(argv)
    cfg = dict(QUICK if args.quick else FULL)
    for k in ("steps", "eta", "scale"):
        if getattr(args, k) is not None:
            cfg[k] = getattr(args, k)
    ds = svflow.phase_map(**cfg, seed=args.seed)
    ds.attrs["scenario"] = "quick" if args.quick else "full"
    print(
        f"phase map: t_end = {ds.attrs['t_end']:g}, scale = {ds.attrs['scale']}, "
        f"eta = {ds.attrs['eta']}, {ds.attrs['wall_time_s']:.0f} s "
        f"on {ds.attrs['device']}"
    )
    print(table(ds, "rank"))
    print(table(ds, "reached_nc", "{:5.2f}"))
    if bool(np.any(ds["diverged"].values)):
        print(
            f"WARNING: {int(ds['diverged'].sum())} runs diverged; lower --eta",
            file=sys.stderr,
        )
    if args.out:
        svflow.save(ds, args.out)
        print(f"saved {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
