"""Basins of attraction of neural collapse for balanced spectral starts (issue 4).

For K in {4, 8} and depths L = 1..5 (N = 2..6 factors) run the "lag" family
(weight-one Walsh modes at eps, the others at eps (1 - delta)) and the
"random" family (lambda_i(0) = eps u_i, u_i ~ U[1 - delta, 1 + delta], seeds),
classify every run (NC / rank r / undecided) and print the basin width: the
largest grid delta up to which every start reaches NC.

    python scenarios/basins.py --quick [--out basins.nc]
    python scenarios/basins.py          # full grid
"""

from __future__ import annotations

import argparse
import time

import numpy as np
import xarray as xr

import svflow


def run(quick: bool, classes=(4, 8), t_end: float = 1e8) -> xr.Dataset:
    depths = [1, 2, 3, 4, 5]
    if quick:
        eps, delta, rdelta, seeds = (
            np.array([1e-3, 1e-1]),
            np.geomspace(0.001, 0.9, 12),
            np.geomspace(0.01, 0.9, 4),
            [0, 1],
        )
    else:
        eps, delta, rdelta, seeds = (
            np.logspace(-3, -1, 9),
            np.geomspace(0.001, 0.9, 24),
            np.geomspace(0.01, 0.9, 12),
            list(range(8)),
        )
    out = []
    for K in classes:
        tic = time.perf_counter()
        lag = svflow.basin_map(K, depths, eps, delta, t_end=t_end, family="lag")
        rnd = svflow.basin_map(
            K, depths, eps, rdelta, t_end=t_end, family="random", seeds=seeds
        )
        w = svflow.basin_width(lag)
        ds = xr.Dataset(
            {
                "outcome_lag": lag["outcome"],
                "rank_lag": lag["rank"],
                "escape_time_lag": lag["escape_time"],
                "min_ratio_lag": lag["min_ratio"],
                "width_lag": w["width"],
                "edge_outcome_lag": w["edge_outcome"],
                "outcome_random": rnd["outcome"].rename(delta="spread"),
                "rank_random": rnd["rank"].rename(delta="spread"),
                "nc_fraction_random": (rnd["outcome"] == svflow._outcomes.NC)
                .mean("seed")
                .rename(delta="spread"),
            },
            attrs={
                k: v
                for k, v in lag.attrs.items()
                if k not in ("family", "family_definition", "leaders")
            },
        )
        ds.attrs["lag_family"] = lag.attrs["family_definition"]
        ds.attrs["random_family"] = rnd.attrs["family_definition"]
        ds.attrs["leaders"] = lag.attrs["leaders"]
        out.append(ds.expand_dims(classes=[K]))
        print(f"K = {K}: {time.perf_counter() - tic:.1f} s")
    res = xr.concat(out, dim="classes", combine_attrs="drop_conflicts")
    res.attrs["title"] = "svflow scenario: NC basins of balanced spectral starts"
    res.attrs["quick"] = bool(quick)
    return res


def report(ds: xr.Dataset) -> None:
    for K in ds["classes"].values:
        sub = ds.sel(classes=K)
        print(
            f"\nK = {K}: basin width (largest lag delta with NC on the whole grid "
            "stretch; '<' = none)"
        )
        print("  eps      " + "  ".join(f"N={d + 1:<5d}" for d in sub["depth"].values))
        for e in sub["eps"].values:
            row = []
            for d in sub["depth"].values:
                w = float(sub["width_lag"].sel(depth=d, eps=e))
                edge = int(sub["edge_outcome_lag"].sel(depth=d, eps=e))
                txt = f"<{sub['delta'].values[0]:.3g}" if np.isnan(w) else f"{w:.3g}"
                row.append(
                    txt + ("?" if edge == -1 else "") + ("+" if edge == -2 else "")
                )
            print(f"  {e:<8.2g} " + "  ".join(f"{r:<7s}" for r in row))
        frac = sub["nc_fraction_random"]
        undec = float((sub["outcome_lag"] == -1).mean())
        print(
            "  ('?' = next grid lag undecided, '+' = whole grid NC); "
            f"undecided lag cells: {undec:.1%}"
        )
        print("  random family, NC fraction over seeds (rows eps, columns spread):")
        for d in sub["depth"].values:
            print(
                f"   N={d + 1}: "
                + " | ".join(
                    " ".join(f"{v:.2f}" for v in frac.sel(depth=d, eps=e).values)
                    for e in sub["eps"].values[[0, -1]]
                )
            )


def main(argv=None) -> int:
    p = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument(
        "--quick",
        action="store_true",
        help="small grid (about a minute per K on 2 cores)",
    )
    p.add_argument("--out", default=None, help="write the dataset here (netCDF)")
    p.add_argument("--classes", type=int, nargs="+", default=[4, 8])
    p.add_argument("--t-end", type=float, default=1e8)
    args = p.parse_args(argv)
    ds = run(args.quick, tuple(args.classes), args.t_end)
    report(ds)
    if args.out:
        svflow.save(ds, args.out)
        print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
