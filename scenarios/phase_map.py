"""Depth x width phase map of random-start full GD (docs: theory/outcomes.md).

    python scenarios/phase_map.py --quick --out figures/data/phase_map_scenario.nc
    python scenarios/phase_map.py --out phase_map_full.nc   # full grid, for a GPU
    python scenarios/phase_map.py --store stores/phase_map.zarr --scheduler tcp://127.0.0.1:8786

Random fan-in Gaussian starts (svflow.random_model), cross-entropy, no weight
decay, full-batch GD; per cell (K, L, d) several seeds. Prints the mean final
rank of the centred logits per depth x width for each K, the fraction of
seeds that reached neural collapse, and saves the dataset.

Runs through :func:`svflow.sweep`: grid classes x depth x width x
seed, the first three static (one compile of :func:`svflow.studies.phase_cell` each),
seeds vmapped in chunks; results go to a zarr store (``--store``, default
``stores/phase_map[_quick].zarr``) that a re-run resumes; ``--scheduler``
sends the chunks to a dask cluster. Each (K, L, d, seed) start is drawn from
the sweep's per-cell key (a hash of its coordinates), so a resumed, rechunked
or distributed run gives the same numbers. The settings QUICK and FULL are
shared with the figure ``phase_map`` (svflow/figures/fig_phase_map.py).
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np

import svflow
from svflow._cli import scenario_cli
from svflow.studies._phase import FULL_SETTING as FULL
from svflow.studies._phase import QUICK_SETTING as QUICK


def table(ds, var: str = "rank", fmt: str = "{:5.2f}") -> str:
    """Markdown table of the seed mean of ``var``: per K, depth rows x width columns."""
    lines = []
    for K in ds["classes"].values:
        sub = ds[var].sel(classes=K).astype(float).mean("seed")
        lines.append(f"\nK = {K}: mean {var} over {ds.sizes['seed']} seeds")
        lines.append("| L \\ d | " + " | ".join(str(w) for w in ds["width"].values) + " |")
        lines.append("|---" * (ds.sizes["width"] + 1) + "|")
        for L in ds["depth"].values:
            row = sub.sel(depth=L).values
            lines.append(f"| {L} | " + " | ".join(fmt.format(v) for v in row) + " |")
    return "\n".join(lines)


def phase_sweep_cell(key, classes, depth, width, seed, *, scale, eta, steps, num_records, kmax):
    """One (K, L, d, seed) run of :func:`svflow.studies.phase_cell`; ``sigma`` padded to kmax."""
    out = svflow.studies.phase_cell(
        jax.random.key_data(key)[None],
        classes=classes,
        depth=depth,
        width=width,
        scale=scale,
        eta=eta,
        steps=steps,
        num_records=num_records,
    )
    out = {k: v[0] for k, v in out.items()}
    out["sigma"] = jnp.concatenate([out["sigma"], jnp.full(kmax - classes, jnp.nan)])
    return out


def run_sweep(
    cfg: dict,
    store,
    scheduler=None,
    chunk=None,
    progress=True,
    dry_run=False,
    num_records: int = 17,
    base_seed: int = 0,
):
    """The phase map through svflow.sweep; a Dataset with the layout of svflow.studies.phase_map."""
    grid = dict(
        classes=list(cfg["classes"]),
        depth=list(cfg["depths"]),
        width=list(cfg["widths"]),
        seed=np.arange(cfg["seeds"]),
    )
    params = dict(
        scale=float(cfg["scale"]),
        eta=float(cfg["eta"]),
        steps=int(cfg["steps"]),
        num_records=int(num_records),
        kmax=int(max(cfg["classes"])),
    )
    tic = time.perf_counter()
    ds = svflow.sweep(
        phase_sweep_cell,
        grid,
        store=store,
        chunk=chunk or cfg["seeds"],
        client=scheduler,
        static=("classes", "depth", "width"),
        params=params,
        outputs={"sigma": ("sv",), "rank_t": ("record",), "sv_ratio_t": ("record",)},
        base_seed=base_seed,
        progress=progress,
        dry_run=dry_run,
    )
    if dry_run:
        return ds
    from svflow._full.train import step_grid

    ds = ds.assign_coords(record_time=("record", step_grid(params["steps"], num_records) * params["eta"]))
    ds.attrs.update(
        title="svflow depth x width phase map (random starts, full GD; svflow.sweep)",
        engine="full",
        init="random_model (fan-in scaled Gaussian), key = sweep cell key",
        scale=params["scale"],
        eta=params["eta"],
        steps=params["steps"],
        t_end=params["steps"] * params["eta"],
        loss_name="ce",
        activation="linear",
        samples_per_class=1,
        device=str(jax.devices()[0]) if scheduler is None else f"dask cluster at {scheduler}",
        wall_time_s=time.perf_counter() - tic,
    )
    return ds


def _options(p) -> None:
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--steps", type=int, default=None, help="override the number of GD steps")
    p.add_argument("--eta", type=float, default=None, help="override the step size")
    p.add_argument("--scale", type=float, default=None, help="override the init scale")
    p.add_argument(
        "--store",
        type=Path,
        default=None,
        help="zarr store of the sweep (resumed if it exists); default stores/phase_map[_quick].zarr",
    )
    p.add_argument(
        "--scheduler",
        default=None,
        help="dask scheduler address (e.g. tcp://127.0.0.1:8786); default: this process",
    )
    p.add_argument("--chunk", type=int, default=None, help="seeds per chunk (default: all)")
    p.add_argument("--dry-run", action="store_true", help="print the plan and the store's state")
    p.add_argument(
        "--legacy",
        action="store_true",
        help="run svflow.studies.phase_map in memory instead (no store, no resume)",
    )


def main(argv=None) -> int:
    args, _, cfg = scenario_cli(
        __doc__,
        {"quick": QUICK, "full": FULL},
        argv,
        options=_options,
        quick_help="small grid: a few minutes on 2 CPU cores",
    )
    for k in ("steps", "eta", "scale"):
        if getattr(args, k) is not None:
            cfg[k] = getattr(args, k)
    store = args.store or Path("stores") / f"phase_map{'_quick' if args.quick else ''}.zarr"
    if args.dry_run:
        print(run_sweep(cfg, store, chunk=args.chunk, dry_run=True, base_seed=args.seed))
        return 0
    if args.legacy:
        ds = svflow.studies.phase_map(**cfg, seed=args.seed)
    else:
        ds = run_sweep(cfg, store, args.scheduler, args.chunk, base_seed=args.seed)
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
