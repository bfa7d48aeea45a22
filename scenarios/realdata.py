"""A real network on real data: does depth lower the rank of trained features? (docs: scenarios/realdata.md)

    python scenarios/realdata.py --quick --out figures/data/realdata_scenario.nc
    python scenarios/realdata.py --out realdata_full.nc          # the full grid
    python scenarios/realdata.py --quick --X feats.npy --y labels.npy   # your own features
    python scenarios/realdata.py --quick --optimizer flow --t-end 30     # gradient flow of all weights

A bias-free ReLU MLP backbone (two layers of 64) under a deep linear head of
depth L and width d, trained by Adam (full batch) on the mean cross-entropy
with no weight decay, on the scikit-learn digits (1797 8x8 images, K = 10;
a stratified 25 % held out) or on any ``(X, y)`` saved as ``.npy``. Per
(L, d) several seeds, through :func:`svflow.sweep` (a store, default
``stores/realdata[_quick].zarr``, that a re-run resumes). Beside the
network's final rank of the centred class-mean logits it runs the deep UFM's
random-start phase map (:func:`svflow.studies.phase_map`, K = 10, the same
L, d and number of seeds): the model's prediction. Prints both, NC1 and the
accuracies, and saves the dataset. The settings QUICK and FULL are shared
with the figure ``realdata`` (svflow/figures/fig_realdata.py).
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np

import svflow
from svflow._cli import scenario_cli
from svflow.studies._realdata import FULL_SETTING as FULL
from svflow.studies._realdata import QUICK_SETTING as QUICK


def table(ds) -> str:
    """Markdown table: per (L, d), the seed means of the final ranks, NC1 and accuracies."""
    fin = ds.isel(time=-1)
    lines = [
        "| L | d | rank out (net) | rank out (UFM) | rank in | NC1 in | NC1 out | train acc | test acc |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for L in ds["depth"].values:
        for d in ds["width"].values:
            c = fin.sel(depth=L, width=d)
            ufm = f"{float(ds['ufm_rank'].sel(depth=L, width=d).mean()):.2f}" if "ufm_rank" in ds else "-"
            lines.append(
                f"| {L} | {d} | {float(c['rank_out'].mean()):.2f} "
                f"({', '.join(str(int(r)) for r in c['rank_out'].values)}) | {ufm} | "
                f"{float(c['rank_in'].mean()):.2f} | {float(c['nc1_in'].mean()):.3f} | "
                f"{float(c['nc1_out'].mean()):.3f} | {float(c['train_acc'].mean()):.3f} | "
                f"{float(c['test_acc'].mean()):.3f} |"
            )
    return "\n".join(lines)


def _options(p) -> None:
    p.add_argument("--seed", type=int, default=0, help="base seed of the sweep's cell keys")
    p.add_argument("--steps", type=int, default=None, help="override the number of Adam steps")
    p.add_argument("--batch-size", type=int, default=None, help="mini-batch size (default: full batch)")
    p.add_argument("--X", type=Path, default=None, help=".npy of features (n, D); with --y")
    p.add_argument("--y", type=Path, default=None, help=".npy of integer labels 0..K-1 (n,)")
    p.add_argument("--store", type=Path, default=None, help="zarr store (resumed if it exists)")
    p.add_argument("--no-ufm", action="store_true", help="skip the deep-UFM reference phase map")
    p.add_argument(
        "--optimizer",
        choices=("adam", "flow"),
        default="adam",
        help="adam (default) or flow: the gradient flow of all weights (float64; stiff, slow on a CPU)",
    )
    p.add_argument("--t-end", type=float, default=100.0, help="gradient-flow time of --optimizer flow")


def main(argv=None) -> int:
    args, setting, cfg = scenario_cli(
        __doc__,
        {"quick": QUICK, "full": FULL},
        argv,
        options=_options,
        quick_help="L = 1, 3, 6; d = 16, 64; 3 seeds",
    )
    if args.steps is not None:
        cfg["steps"] = args.steps
    if args.batch_size is not None:
        cfg["batch_size"] = args.batch_size
    if args.optimizer == "flow":
        for k in ("learning_rate", "steps", "batch_size"):
            cfg.pop(k, None)
        cfg.update(optimizer="flow", t_end=args.t_end, dtype="float64")
    X = y = None
    if (args.X is None) != (args.y is None):
        print("pass both --X and --y", file=sys.stderr)
        return 2
    if args.X is not None:
        X, y = np.load(args.X), np.load(args.y)
    tag = ("_quick" if args.quick else "") + ("_flow" if args.optimizer == "flow" else "")
    store = args.store or Path("stores") / f"realdata{tag}.zarr"
    ds = svflow.studies.realdata_study(
        X, y, **cfg, store=store, base_seed=args.seed, ufm_reference=not args.no_ufm, progress=True
    )
    ds.attrs["scenario"] = setting
    how = (
        f"gradient flow to t = {ds.attrs['t_end']:g} ({int(ds['num_steps'].max())} solver steps at most)"
        if args.optimizer == "flow"
        else f"Adam lr {ds.attrs['learning_rate']}, {ds.attrs['steps']} steps, {ds.attrs['dtype']}"
    )
    print(
        f"real data ({ds.attrs['data']}, K = {ds.attrs['classes']}, n_train = {ds.attrs['n_train']}): "
        f"{how}; network {ds.attrs['wall_time_s']:.0f} s on {ds.attrs['device']}"
    )
    print(table(ds))
    if args.out:
        svflow.save(ds, args.out)
        print(f"saved {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
