"""Depth x width phase map of random starts: the t -> infinity outcome beside the rank at t = 500.

    python scenarios/phase_map.py --quick --out figures/data/phase_map_scenario.nc
    python scenarios/phase_map.py --out figures/data/phase_map_full.nc   # the FULL grid (docs: its cost)

Random fan-in Gaussian starts (svflow.random_model, key = seed), cross-entropy,
no weight decay. Per cell (K, L, d) all seeds run as one batch of the
full-parameter gradient flow (svflow.flow, double-log time) to tau = log(1 + t)
= 1e3, the undecided ones on to 1e4, and are decided by the random-start rule
of svflow.outcome (0 = NC, r = rank of the limit, -1 = undecided); the rank of
the centred logits at t = 500 is read off the same flow. Prints, per K, the
mean limit rank, the mean rank at t = 500, the undecided counts and the CPU
time per cell. Each finished cell is kept in --checkpoint (default
stores/phase_map[_quick]_cells/), so an interrupted run resumes. The settings
QUICK and FULL are shared with the figure ``phase_map``
(svflow/figures/fig_phase_map.py).
"""

from __future__ import annotations

import sys
from pathlib import Path

import svflow
from svflow._cli import scenario_cli
from svflow.studies._phase import FULL_SETTING as FULL
from svflow.studies._phase import QUICK_SETTING as QUICK


def table(ds, var: str, fmt: str = "{:5.2f}", reduce: str = "mean") -> str:
    """Markdown table of ``var`` reduced over seeds: per K, depth rows x width columns."""
    lines = []
    for K in ds["classes"].values:
        sub = ds[var].sel(classes=K).astype(float)
        sub = (
            sub.mean("seed", skipna=True) if reduce == "mean" else sub.sum("seed") if reduce == "sum" else sub
        )
        lines.append(
            f"\nK = {K}: {reduce} {var} over {ds.sizes['seed']} seeds" if reduce else f"\nK = {K}: {var}"
        )
        lines.append("| L \\ d | " + " | ".join(str(w) for w in ds["width"].values) + " |")
        lines.append("|---" * (ds.sizes["width"] + 1) + "|")
        for L in ds["depth"].values:
            row = sub.sel(depth=L).values
            lines.append(f"| {L} | " + " | ".join(fmt.format(v) for v in row) + " |")
    return "\n".join(lines)


def _options(p) -> None:
    p.add_argument("--scale", type=float, default=None, help="override the init scale")
    p.add_argument(
        "--checkpoint",
        type=Path,
        default=None,
        help="folder of finished cells (resumed if it exists); default stores/phase_map[_quick]_cells",
    )


def main(argv=None) -> int:
    args, _, cfg = scenario_cli(
        __doc__,
        {"quick": QUICK, "full": FULL},
        argv,
        options=_options,
        quick_help="small grid: a few minutes on 2 CPU cores",
    )
    if args.scale is not None:
        cfg["scale"] = args.scale
    folder = args.checkpoint or Path("stores") / f"phase_map{'_quick' if args.quick else ''}_cells"
    ds = svflow.studies.phase_map(**cfg, checkpoint=folder)
    ds.attrs["scenario"] = "quick" if args.quick else "full"
    ds.attrs["setting"] = ds.attrs["scenario"]  # what the figure runner records (figures/README.md)
    ds.attrs["figure_quick"] = int(args.quick)
    n, und = ds["undecided"].size, int(ds["undecided"].sum())
    print(
        f"phase map: scale = {ds.attrs['scale']}, snapshot t = {ds.attrs['snapshot_time']:g}, "
        f"horizons tau = {list(ds.attrs['horizons'])}; {und} of {n} starts undecided "
        f"({100 * und / n:.1f} %); CPU {ds.attrs['cpu_time_total_s']:.0f} s over the cells, "
        f"wall {ds.attrs['wall_time_s']:.0f} s in this run"
    )
    print(table(ds, "limit_rank"))
    print(table(ds, "snapshot_rank"))
    print(table(ds, "undecided", "{:3.0f}", "sum"))
    print(table(ds, "reached_nc", "{:3.0f}", "sum"))
    print(table(ds, "cpu_time_s", "{:6.1f}", ""))
    if und:
        print(f"note: {und} start(s) undecided at tau = {ds.attrs['horizons'][-1]:g}", file=sys.stderr)
    if args.out:
        svflow.save(ds, args.out)
        print(f"saved {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
