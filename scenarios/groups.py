"""NC basins and winning codes for any K: spectral starts over finite abelian groups.

K = 6 and K = 10 over the cyclic group Z_K (real Fourier basis), beside K = 8
over both Z_8 and the Walsh group (Z_2)^3: for each depth, the balanced "lag"
family (svflow.studies.basin_map, group=...) gives the NC basin width, and
svflow.code_table(..., group=...) the code of largest normalised margin (the
max-margin direction that gradient flow selects among equal-lambda codes).
The settings QUICK and FULL are shared with the figure ``groups``
(svflow/figures/fig_groups.py).

    python scenarios/groups.py --quick [--out groups.nc]
    python scenarios/groups.py          # full grid
"""

from __future__ import annotations

import svflow
from svflow._cli import scenario_cli
from svflow.figures.fig_groups import FULL, PANELS, QUICK, compute, report

__all__ = ["QUICK", "FULL", "PANELS", "run"]


def run(quick: bool):
    """The figure's dataset (basin maps and code tables of every panel)."""
    return compute(quick)


def main(argv=None) -> int:
    args, _, _ = scenario_cli(
        __doc__,
        {"quick": QUICK, "full": FULL},
        argv,
        quick_help="small grid (a few minutes on 2 cores)",
    )
    ds = run(args.quick)
    print(report(ds))
    if args.out:
        svflow.save(ds, args.out)
        print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
