"""Basins of attraction of neural collapse for balanced spectral starts.

For K in {4, 8} and depths L = 1..5 (N = 2..6 factors) run the "lag" family
(weight-one Walsh modes at eps, the others at eps (1 - delta)) and the
"random" family (lambda_i(0) = eps u_i, u_i ~ U[1 - delta, 1 + delta], seeds),
classify every run (NC / rank r / undecided) and print the basin width: the
largest grid delta up to which every start reaches NC.

    python scenarios/basins.py --quick [--out basins.nc]
    python scenarios/basins.py          # full grid
    python scenarios/basins.py --store stores/basins --scheduler tcp://127.0.0.1:8786

Every basin map runs through :func:`svflow.sweep`: grid depth x eps x
delta x seed, depth static (one compile of :func:`svflow.studies.basin_cell` per
depth), the rest vmapped in chunks; one zarr store per (K, family) in the
directory ``--store`` (default ``stores/basins[_quick]``), resumed by a re-run;
``--scheduler`` sends the chunks to a dask cluster.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import diffrax
import numpy as np
import xarray as xr

import svflow
from svflow._outcomes import NC


def basin_sweep_cell(key, depth, eps, delta, seed, *, classes, t_end, family):
    """One start of a basin family (the sweep's key is unused: the family's own
    seed, a grid coordinate, drives the random draw, as in svflow.studies.basin_map)."""
    return svflow.studies.basin_cell(eps, delta, seed, classes=classes, depth=depth, t_end=t_end,
                             family=family)


def sweep_basin_map(classes, depths, eps, delta, *, t_end, family, seeds=(0,), store,
                    scheduler=None, chunk=64, progress=True, dry_run=False):
    """svflow.studies.basin_map's dataset, computed through svflow.sweep into ``store``."""
    seeds = list(seeds) if family == "random" else [0]
    grid = dict(depth=list(depths), eps=np.asarray(eps, float),
                delta=np.asarray(delta, float), seed=np.asarray(seeds))
    ds = svflow.sweep(basin_sweep_cell, grid, store=store, chunk=chunk, client=scheduler,
                      static=("depth",), params=dict(classes=int(classes), t_end=float(t_end),
                                                     family=family),
                      outputs={"lam0": ("mode",), "lam_end": ("mode",)},
                      progress=progress, dry_run=dry_run)
    if dry_run:
        return ds
    ok = ds["solver_result"] == diffrax.RESULTS.successful._value
    if not bool(ok.all()):
        raise svflow.IntegrationError(
            f"basin map K = {classes}, {family}: {int((~ok).sum())} trajectories failed "
            f"before t = {t_end:g} (see solver_result in {store}); use smaller eps, tighter "
            "rtol/atol, or a shorter t_end."
        )
    ds = ds.assign_coords(factors=("depth", np.asarray(depths) + 1),
                          mode=np.arange(classes))
    if family == "lag":
        ds = ds.isel(seed=0, drop=True)
    lead = [1 << b for b in range(int(np.log2(classes)))]
    ds.attrs.update(
        classes=int(classes), family=family, t_end=float(t_end), loss_name="ce",
        leaders=lead if family == "lag" else [],
        family_definition={
            "lag": f"lambda_i(0) = eps for leading modes {lead}, eps (1 - delta) for the "
            "other modes i >= 1, lambda_0 = 0",
            "random": "lambda_i(0) = eps u_i, u_i ~ U[1 - delta, 1 + delta] from "
            "jax.random.key(seed), lambda_0 = 0",
        }[family],
    )
    return ds


def run(quick: bool, classes=(4, 8), t_end: float = 1e8, store=None, scheduler=None,
        chunk: int = 64, dry_run: bool = False) -> xr.Dataset:
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
    store = Path(store or Path("stores") / f"basins{'_quick' if quick else ''}")
    run_kw = dict(t_end=t_end, scheduler=scheduler, chunk=chunk, dry_run=dry_run)
    out = []
    for K in classes:
        tic = time.perf_counter()
        lag = sweep_basin_map(K, depths, eps, delta, family="lag",
                              store=store / f"K{K}_lag.zarr", **run_kw)
        rnd = sweep_basin_map(K, depths, eps, rdelta, family="random", seeds=seeds,
                              store=store / f"K{K}_random.zarr", **run_kw)
        if dry_run:
            print(f"K = {K}: lag {lag}\nK = {K}: random {rnd}")
            continue
        w = svflow.studies.basin_width(lag)
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
                "nc_fraction_random": (rnd["outcome"] == NC)
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
    if dry_run:
        return None
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
    p.add_argument("--store", type=Path, default=None,
                   help="directory of the sweep stores, one per (K, family), resumed if "
                   "present; default stores/basins[_quick]")
    p.add_argument("--scheduler", default=None,
                   help="dask scheduler address (e.g. tcp://127.0.0.1:8786); default: this process")
    p.add_argument("--chunk", type=int, default=64, help="starts per chunk")
    p.add_argument("--dry-run", action="store_true", help="print the plans and the stores' state")
    args = p.parse_args(argv)
    if args.out:  # fail now, not after the computation
        try:
            svflow.check_writable(args.out)
        except OSError as e:
            p.error(f"--out: {e}")
    ds = run(args.quick, tuple(args.classes), args.t_end, args.store, args.scheduler,
             args.chunk, args.dry_run)
    if ds is None:
        return 0
    report(ds)
    if args.out:
        svflow.save(ds, args.out)
        print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
