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
    python scenarios/basins.py --quick --dry-run   # plan and progress of the stores; computes nothing
    python scenarios/basins.py --store stores/basins --scheduler tcp://127.0.0.1:8786

Every map is :func:`svflow.studies.basin_map` with a store: it runs through
:func:`svflow.sweep` (depth static, chunks of ``--chunk`` starts, each chunk
one batch through the outcome pipeline, every horizon included), one zarr
store per (K, family) in the directory ``--store`` (default
``stores/basins[_quick]``), resumed by a re-run; ``--scheduler`` sends the
chunks to a dask cluster. ``--out PATH`` writes one netCDF dataset per K
(``PATH`` with ``_K4``, ``_K8`` before the suffix: the mode dim has K entries);
``--dry-run`` prints each store's plan and progress.
"""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np
import xarray as xr

import svflow
from svflow._cli import scenario_cli
from svflow._outcome import NC
from svflow.studies._basins import FIRST_HORIZON, LATER_HORIZONS

HORIZONS = (FIRST_HORIZON,) + LATER_HORIZONS

SETTINGS = {
    "quick": dict(
        depths=[1, 2, 3, 4, 5],
        eps=[1e-3, 1e-1],
        delta=np.geomspace(0.001, 0.9, 12).tolist(),
        spread=np.geomspace(0.01, 0.9, 4).tolist(),
        seeds=[0, 1],
    ),
    "full": dict(
        depths=[1, 2, 3, 4, 5],
        eps=np.logspace(-3, -1, 9).tolist(),
        delta=np.geomspace(0.001, 0.9, 24).tolist(),
        spread=np.geomspace(0.01, 0.9, 12).tolist(),
        seeds=list(range(8)),
    ),
}


def describe_plan(classes: int, family: str, plan: dict) -> str:
    """One store's plan (``basin_map(..., store=, dry_run=True)``) in words."""
    state = "resumed" if plan["store_exists"] else "not yet created"
    per_static = plan["cells"] // plan["static_settings"]
    mode_outputs = sorted(n for n, o in plan["outputs"].items() if o["dims"])
    per_start = ", ".join(sorted(n for n in plan["outputs"] if n not in mode_outputs))
    return (
        f"K = {classes}, {family} family: store {plan['store']} ({state})\n"
        f"  {plan['cells']} starts ({plan['static_settings']} depths x {per_static}), "
        f"{plan['cells_done']} done; chunks of {plan['chunk']}: {plan['chunks_done']} of "
        f"{plan['chunks']} done, {plan['chunks_todo']} to compute\n"
        f"  outputs per start: {per_start}; per mode: {', '.join(mode_outputs)}"
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
    setting: dict,
    classes=(4, 8),
    horizons=HORIZONS,
    store=None,
    scheduler=None,
    chunk: int = 64,
    dry_run=False,
):
    """The basin study of each K: ``{K: dataset}`` (the mode dim has K entries); with
    ``dry_run`` the stores' plans are printed and None is returned."""
    store = Path(store)
    kw = dict(
        horizons=tuple(horizons), chunk_size=chunk, client=scheduler, progress=not dry_run, dry_run=dry_run
    )
    out = {}
    for K in classes:
        tic = time.perf_counter()
        lag = svflow.studies.basin_map(
            K, setting["depths"], setting["eps"], setting["delta"], store=store / f"K{K}_lag.zarr", **kw
        )
        rnd = svflow.studies.basin_map(
            K,
            setting["depths"],
            setting["eps"],
            setting["spread"],
            family="random",
            seeds=setting["seeds"],
            store=store / f"K{K}_random.zarr",
            **kw,
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
        out[int(K)] = ds
        print(f"K = {K}: {time.perf_counter() - tic:.1f} s")
    return None if dry_run else out


def report(ds: xr.Dataset) -> None:
    """Print the basin widths and NC fractions of one K's dataset (from :func:`run`)."""
    K = ds.attrs["classes"]
    print(f"\nK = {K}: basin width (largest lag delta with NC on the whole grid stretch; '<' = none)")
    print("  eps      " + "  ".join(f"N={d + 1:<5d}" for d in ds["depth"].values))
    for e in ds["eps"].values:
        row = []
        for d in ds["depth"].values:
            w = float(ds["width_lag"].sel(depth=d, eps=e))
            edge = int(ds["edge_outcome_lag"].sel(depth=d, eps=e))
            txt = f"<{ds['delta'].values[0]:.3g}" if np.isnan(w) else f"{w:.3g}"
            row.append(txt + ("?" if edge == -1 else "") + ("+" if edge == -2 else ""))
        print(f"  {e:<8.2g} " + "  ".join(f"{r:<7s}" for r in row))
    frac = ds["nc_fraction_random"]
    undec = float((ds["outcome_lag"] == -1).mean())
    print(f"  ('?' = next grid lag undecided, '+' = whole grid NC); undecided lag cells: {undec:.1%}")
    undec_r = float((ds["outcome_random"] == -1).mean())
    print(f"  random family: NC fraction over all cells {float(frac.mean()):.3f}, undecided {undec_r:.1%}")
    print("  random family, NC fraction over seeds (rows eps, columns spread):")
    for d in ds["depth"].values:
        rows = [
            " ".join(f"{v:.2f}" for v in frac.sel(depth=d, eps=e).values) for e in ds["eps"].values[[0, -1]]
        ]
        print(f"   N={d + 1}: " + " | ".join(rows))


def _options(p) -> None:
    p.add_argument("--classes", type=int, nargs="+", default=[4, 8])
    p.add_argument(
        "--horizons", type=float, nargs="+", default=list(HORIZONS), help="increasing horizons in tau"
    )
    p.add_argument(
        "--store",
        type=Path,
        default=None,
        help="directory of the sweep stores, one per (K, family), resumed if present; "
        "default stores/basins[_quick]",
    )
    p.add_argument("--scheduler", default=None, help="dask scheduler address; default: this process")
    p.add_argument("--chunk", type=int, default=64, help="starts per chunk")
    p.add_argument("--dry-run", action="store_true", help="print the plans and the stores' state")


def main(argv=None) -> int:
    args, name, setting = scenario_cli(
        __doc__,
        SETTINGS,
        argv,
        options=_options,
        quick_help="small grid (about a minute per K on 2 cores)",
    )
    store = args.store or Path("stores") / f"basins{'_quick' if args.quick else ''}"
    ds = run(
        setting, tuple(args.classes), tuple(args.horizons), store, args.scheduler, args.chunk, args.dry_run
    )
    if ds is None:
        return 0
    paths = out_paths(args.out, ds) if args.out else {}
    for K, sub in ds.items():
        sub.attrs["quick"] = int(args.quick)
        report(sub)
        if args.out:
            svflow.save(sub, paths[K])
            print(f"wrote {paths[K]}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
