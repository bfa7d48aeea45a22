"""Basins of attraction of neural collapse for balanced spectral starts.

For K in {4, 8} and depths L = 1..5 (N = 2..6 factors) run the "lag" family
(weight-one Walsh modes at eps, the others at eps (1 - delta)) and the
"random" family (lambda_i(0) = eps u_i, u_i ~ U[1 - delta, 1 + delta], seeds),
decide every start's t -> infinity outcome (NC / support size r / undecided,
the late-phase criterion of svflow.outcome, integrated in double-log time)
and print the basin width: the largest grid delta up to which every start
reaches NC, and the NC fractions of the random family.

    python scenarios/basins.py --quick [--out basins.nc]   # writes basins_K4.nc, basins_K8.nc
    python scenarios/basins.py          # full grid
    python scenarios/basins.py --store stores/basins --scheduler tcp://127.0.0.1:8786

Every basin map runs through :func:`svflow.sweep`: grid depth x eps x
delta x seed, depth static (one compile of :func:`svflow.studies.basin_cell` per
depth), the rest vmapped in chunks, to the first horizon (tau = log(1 + t) =
100); the undecided starts are then continued through the later horizons
(300, 1e3, 3e3, 1e4) in this process; one zarr store per (K, family) in the
directory ``--store`` (default ``stores/basins[_quick]``), resumed by a re-run;
``--scheduler`` sends the chunks to a dask cluster. ``--out PATH`` writes one
netCDF dataset per K (``PATH`` with ``_K4``, ``_K8`` before the suffix: the
mode dim has K entries); ``--dry-run`` prints each store's plan and progress.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import diffrax
import numpy as np
import xarray as xr

import svflow
from svflow._outcome import NC
from svflow.studies._basins import FIRST_HORIZON, LATER_HORIZONS, continue_undecided

HORIZONS = (FIRST_HORIZON,) + LATER_HORIZONS


def basin_sweep_cell(key, depth, eps, delta, seed, *, classes, horizon, family):
    """One start of a basin family (the sweep's key is unused: the family's own
    seed, a grid coordinate, drives the random draw, as in svflow.studies.basin_map)."""
    return svflow.studies.basin_cell(
        eps, delta, seed, classes=classes, depth=depth, horizon=horizon, family=family
    )


def sweep_basin_map(
    classes,
    depths,
    eps,
    delta,
    *,
    horizons=HORIZONS,
    family,
    seeds=(0,),
    store,
    scheduler=None,
    chunk=64,
    progress=True,
    dry_run=False,
):
    """svflow.studies.basin_map's dataset, computed through svflow.sweep into ``store`` (first
    horizon), the undecided starts continued here through the later horizons."""
    seeds = list(seeds) if family == "random" else [0]
    grid = dict(
        depth=list(depths), eps=np.asarray(eps, float), delta=np.asarray(delta, float), seed=np.asarray(seeds)
    )
    ds = svflow.sweep(
        basin_sweep_cell,
        grid,
        store=store,
        chunk=chunk,
        client=scheduler,
        static=("depth",),
        params=dict(classes=int(classes), horizon=float(horizons[0]), family=family),
        outputs={
            "lam0": ("mode",),
            "lam_end": ("mode",),
            "support": ("mode",),
            "frozen": ("mode",),
            "ratio": ("mode",),
            "rate_ratio": ("mode",),
        },
        progress=progress,
        dry_run=dry_run,
    )
    if dry_run:
        return ds
    ds = ds.load()
    parts = []
    for d in ds["depth"].values:
        sub = ds.sel(depth=d)
        names = [v for v in sub.data_vars]
        dims = {v: sub[v].dims for v in names}
        flat = {v: sub[v].transpose("eps", "delta", "seed", ...).values for v in names}
        shape = flat["outcome"].shape
        out = {v: a.reshape((-1,) + a.shape[3:]) for v, a in flat.items()}
        out = continue_undecided(out, depth=int(d), horizons=tuple(horizons[1:]))
        new = sub.copy()
        for v in names:
            arr = np.asarray(out[v]).reshape(shape + np.asarray(out[v]).shape[1:])
            order = ("eps", "delta", "seed") + tuple(x for x in dims[v] if x not in ("eps", "delta", "seed"))
            new[v] = (order, arr.astype(sub[v].dtype))
            new[v] = new[v].transpose(*dims[v])
        parts.append(new)
    ds = xr.concat(parts, dim="depth")
    ok = ds["solver_result"] == diffrax.RESULTS.successful._value
    if not bool(ok.all()):
        raise svflow.IntegrationError(
            f"basin map K = {classes}, {family}: {int((~ok).sum())} trajectories failed "
            f"before tau = {horizons[-1]:g} (see solver_result); use smaller eps or "
            "tighter rtol/atol."
        )
    ds = ds.assign_coords(factors=("depth", np.asarray(depths) + 1), mode=np.arange(classes))
    if family == "lag":
        ds = ds.isel(seed=0, drop=True)
    lead = [1 << b for b in range(int(np.log2(classes)))]
    ds.attrs.update(
        classes=int(classes),
        family=family,
        horizons_tau=[float(h) for h in horizons],
        loss_name="ce",
        leaders=lead if family == "lag" else [],
        family_definition={
            "lag": f"lambda_i(0) = eps for leading modes {lead}, eps (1 - delta) for the "
            "other modes i >= 1, lambda_0 = 0",
            "random": "lambda_i(0) = eps u_i, u_i ~ U[1 - delta, 1 + delta] from "
            "jax.random.key(seed), lambda_0 = 0",
        }[family],
    )
    return ds


def describe_plan(classes: int, family: str, plan: dict) -> str:
    """One store's plan (``svflow.sweep(..., dry_run=True)``) in words."""
    state = "resumed" if plan["store_exists"] else "not yet created"
    per_static = plan["cells"] // plan["static_settings"]
    mode_outputs = sorted(n for n, o in plan["outputs"].items() if o["dims"])
    return (
        f"K = {classes}, {family} family: store {plan['store']} ({state})\n"
        f"  {plan['cells']} starts ({plan['static_settings']} depths x {per_static}), "
        f"{plan['cells_done']} done; chunks of {plan['chunk']}: {plan['chunks_done']} of "
        f"{plan['chunks']} done, {plan['chunks_todo']} to compute\n"
        f"  outputs per start: {', '.join(sorted(n for n in plan['outputs'] if n not in mode_outputs))}; "
        f"per mode: {', '.join(mode_outputs)}"
    )


def _family_attrs(lag: xr.Dataset, rnd: xr.Dataset) -> dict:
    """The attrs of both families' maps: shared ones once, the others prefixed ``lag_`` / ``random_``."""
    skip = {"family", "family_definition", "leaders"}
    out = {}
    for k in dict.fromkeys([*lag.attrs, *rnd.attrs]):
        if k in skip:
            continue
        a, b = lag.attrs.get(k), rnd.attrs.get(k)
        if a is not None and b is not None and np.array_equal(np.asarray(a), np.asarray(b)):
            out[k] = a
        else:
            if a is not None:
                out[f"lag_{k}"] = a
            if b is not None:
                out[f"random_{k}"] = b
    return out


def out_paths(out, classes) -> dict:
    """``--out PATH``: one file per K, ``PATH`` with ``_K<K>`` before its suffix."""
    p = Path(out)
    return {int(K): p.with_name(f"{p.stem}_K{int(K)}{p.suffix or '.nc'}") for K in classes}


def run(
    quick: bool,
    classes=(4, 8),
    horizons=HORIZONS,
    store=None,
    scheduler=None,
    chunk: int = 64,
    dry_run: bool = False,
) -> dict[int, xr.Dataset] | None:
    """The basin study of each K: ``{K: dataset}`` (the mode dim has K entries), or None for a dry run."""
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
    run_kw = dict(horizons=tuple(horizons), scheduler=scheduler, chunk=chunk, dry_run=dry_run)
    out = {}
    for K in classes:
        tic = time.perf_counter()
        lag = sweep_basin_map(K, depths, eps, delta, family="lag", store=store / f"K{K}_lag.zarr", **run_kw)
        rnd = sweep_basin_map(
            K, depths, eps, rdelta, family="random", seeds=seeds, store=store / f"K{K}_random.zarr", **run_kw
        )
        if dry_run:
            print(describe_plan(K, "lag", lag))
            print(describe_plan(K, "random", rnd))
            continue
        w = svflow.studies.basin_width(lag)
        ds = xr.Dataset(
            {
                "outcome_lag": lag["outcome"],
                "rank_lag": lag["rank"],
                "support_lag": lag["support"],
                "ratio_lag": lag["ratio"],
                "log_t_end_lag": lag["log_t_end"],
                "width_lag": w["width"],
                "edge_outcome_lag": w["edge_outcome"],
                "outcome_random": rnd["outcome"].rename(delta="spread"),
                "rank_random": rnd["rank"].rename(delta="spread"),
                "nc_fraction_random": (rnd["outcome"] == NC).mean("seed").rename(delta="spread"),
            },
            attrs=_family_attrs(lag, rnd),
        )
        ds.attrs["lag_family"] = lag.attrs["family_definition"]
        ds.attrs["random_family"] = rnd.attrs["family_definition"]
        ds.attrs["leaders"] = lag.attrs["leaders"]
        ds.attrs["title"] = "svflow scenario: NC basins of balanced spectral starts"
        ds.attrs["quick"] = int(bool(quick))
        out[int(K)] = ds
        print(f"K = {K}: {time.perf_counter() - tic:.1f} s")
    return None if dry_run else out


def report(ds: xr.Dataset) -> None:
    """Print the basin widths and NC fractions of one K's dataset (from :func:`run`)."""
    for K in [ds.attrs["classes"]]:
        sub = ds
        print(f"\nK = {K}: basin width (largest lag delta with NC on the whole grid stretch; '<' = none)")
        print("  eps      " + "  ".join(f"N={d + 1:<5d}" for d in sub["depth"].values))
        for e in sub["eps"].values:
            row = []
            for d in sub["depth"].values:
                w = float(sub["width_lag"].sel(depth=d, eps=e))
                edge = int(sub["edge_outcome_lag"].sel(depth=d, eps=e))
                txt = f"<{sub['delta'].values[0]:.3g}" if np.isnan(w) else f"{w:.3g}"
                row.append(txt + ("?" if edge == -1 else "") + ("+" if edge == -2 else ""))
            print(f"  {e:<8.2g} " + "  ".join(f"{r:<7s}" for r in row))
        frac = sub["nc_fraction_random"]
        undec = float((sub["outcome_lag"] == -1).mean())
        print(f"  ('?' = next grid lag undecided, '+' = whole grid NC); undecided lag cells: {undec:.1%}")
        undec_r = float((sub["outcome_random"] == -1).mean())
        print(
            f"  random family: NC fraction over all cells {float(frac.mean()):.3f}, undecided {undec_r:.1%}"
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
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument(
        "--quick",
        action="store_true",
        help="small grid (about a minute per K on 2 cores)",
    )
    p.add_argument(
        "--out",
        default=None,
        help="write the datasets here (netCDF): one per K, PATH with _K4, _K8 before the suffix",
    )
    p.add_argument("--classes", type=int, nargs="+", default=[4, 8])
    p.add_argument(
        "--horizons",
        type=float,
        nargs="+",
        default=list(HORIZONS),
        help="increasing horizons in tau = log(1 + t)",
    )
    p.add_argument(
        "--store",
        type=Path,
        default=None,
        help="directory of the sweep stores, one per (K, family), resumed if "
        "present; default stores/basins[_quick]",
    )
    p.add_argument(
        "--scheduler",
        default=None,
        help="dask scheduler address (e.g. tcp://127.0.0.1:8786); default: this process",
    )
    p.add_argument("--chunk", type=int, default=64, help="starts per chunk")
    p.add_argument("--dry-run", action="store_true", help="print the plans and the stores' state")
    args = p.parse_args(argv)
    if args.out:  # fail now, not after the computation
        for path in out_paths(args.out, args.classes).values():
            try:
                svflow._dataset.check_writable(path)
            except OSError as e:
                p.error(f"--out: {e}")
    ds = run(
        args.quick,
        tuple(args.classes),
        tuple(args.horizons),
        args.store,
        args.scheduler,
        args.chunk,
        args.dry_run,
    )
    if ds is None:
        return 0
    paths = out_paths(args.out, ds) if args.out else {}
    for K, sub in ds.items():
        report(sub)
        if args.out:
            svflow.save(sub, paths[K])
            print(f"wrote {paths[K]}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
