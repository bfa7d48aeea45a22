"""GD on seed 1's L-DUFM (ReLU, squared loss, weight decay): seed Figure 2 and the two
Figure 3 sweeps."""

from __future__ import annotations

import matplotlib.pyplot as plt
import numpy as np

from .. import ldufm_runs, ldufm_sweep
from . import register

# seed 1, Figure 2: K = 10, L = 4, all lambdas 0.004, width 30, lr 0.5, 10 seeds.
# n = 5 samples per class (the seed's n is not in our summary), so NC1 is measurable.
FIG2 = dict(classes=10, depth=4, width=30, lam=0.004, eta=0.5, samples=5)


def compute_fig2(quick: bool):
    return ldufm_runs(
        **FIG2, steps=50_000 if quick else 1_000_000, seeds=tuple(range(10))
    )


def compute_rank_decay(quick: bool):
    lams = (0.001, 0.002, 0.004, 0.008, 0.016)
    kw = {**FIG2, "samples": 1}
    kw.pop("lam")
    if quick:
        return ldufm_sweep(
            "lam", lams, **kw, steps=50_000, seeds=(0, 1, 2), num_times=21
        )
    return ldufm_sweep(
        "lam", lams, **kw, steps=200_000, seeds=tuple(range(10)), num_times=41
    )


def compute_dnc_width(quick: bool):
    widths = (10, 20, 30, 50, 80)
    kw = {**FIG2, "samples": 1}
    kw.pop("width")
    if quick:
        return ldufm_sweep(
            "width", widths, **kw, steps=50_000, seeds=(0, 1, 2, 3), num_times=21
        )
    return ldufm_sweep(
        "width", widths, **kw, steps=200_000, seeds=tuple(range(10)), num_times=41
    )


def _refs(ax, ds):
    ax.axhline(
        float(ds["L_DNC"].values.ravel()[0]), color="k", ls="--", lw=1, label="L_DNC"
    )
    ax.axhline(
        float(ds["L_best"].values.ravel()[0]),
        color="C3",
        ls=":",
        lw=1.3,
        label=f"L_SRG ({ds.attrs.get('best_construction', 'best construction')})",
    )


def plot_fig2(ds):
    fig, axes = plt.subplots(1, 3, figsize=(15, 4.2))
    ax = axes[0]
    t = ds["time"].values
    for s in ds["seed"].values:
        d = ds.sel(seed=s)
        ax.semilogx(
            t[1:],
            d["objective"].values[1:],
            lw=1,
            color="C2" if bool(d["is_dnc"]) else "C0",
        )
    _refs(ax, ds)
    ax.set_ylim(0.9 * float(ds["L_best"]), 1.5 * float(ds["L_DNC"]))
    ax.set_xlabel("t = steps x lr")
    ax.set_ylabel("objective")
    ax.set_title(
        f"K={ds.attrs['classes']}, L={ds.attrs['depth']}, width {ds.attrs['width']}, "
        f"lambda {ds.attrs['lam']:g}, n={ds.attrs['samples_per_class']}: "
        f"{int(ds['is_dnc'].sum())}/{ds.sizes['seed']} DNC (green)",
        fontsize=8,
    )
    ax.legend(fontsize=7)
    ax = axes[1]
    best = int(np.argmin(ds["final_objective"].values))
    d = ds.isel(seed=best)
    for i, name in enumerate(ds["layer"].values):
        sv = d["sv_layer"].sel(layer=name).values
        ax.semilogy(
            np.arange(1, sv.size + 1),
            np.maximum(sv / sv[0], 1e-12),
            "o-",
            ms=3,
            label=name,
            color=plt.cm.viridis(i / (ds.sizes["layer"] - 1)),
        )
    ax.axhline(ds.attrs["rank_rtol"], color="gray", lw=0.7)
    ax.set_ylim(1e-8, 2)
    ax.set_xlabel("index i")
    ax.set_ylabel("sigma_i / sigma_1 (class means)")
    ax.set_title(
        f"layer spectra at the end, lowest-loss seed {int(d['seed'])}", fontsize=8
    )
    ax.legend(fontsize=6, ncol=2)
    ax = axes[2]
    layers = ds["layer"].values
    for s in ds["seed"].values:
        r = ds["rank_layer"].sel(seed=s).values
        ax.plot(
            np.arange(len(layers)) + 0.03 * (s - 4.5),
            r,
            "o-",
            ms=3,
            lw=0.8,
            alpha=0.8,
            color="C2" if bool(ds["is_dnc"].sel(seed=s)) else "C0",
        )
    ax.set_xticks(np.arange(len(layers)), layers, fontsize=7)
    ax.set_ylabel("numerical rank of class means")
    nc1max = float(ds["nc1_layer"].max())
    ax.set_title(
        f"rank per layer (all seeds); max NC1 over layers/seeds = {nc1max:.1e}",
        fontsize=8,
    )
    fig.tight_layout()
    return fig


def _mid_rank(ds):
    """Rank of the last rank-r layer of the SRG picture: the pre-activation of
    W_{L-1}."""
    L = int(ds.attrs["depth"])
    return ds["rank_layer"].sel(layer=f"pre{L - 1}")


def plot_rank_decay(ds):
    fig, axes = plt.subplots(1, 2, figsize=(10, 4))
    lams = ds["lam"].values
    ax = axes[0]
    for name in ds["layer"].values:
        ax.semilogx(
            lams, ds["rank_layer"].sel(layer=name).mean("seed"), "o-", ms=3, label=name
        )
    ax.set_xlabel("weight decay lambda (every factor)")
    ax.set_ylabel("mean numerical rank at the end")
    ax.set_title(
        f"K={ds.attrs['classes']}, L={ds.attrs['depth']}, width {ds.attrs['width']}",
        fontsize=9,
    )
    ax.legend(fontsize=7, ncol=2)
    ax = axes[1]
    fin = ds["final_objective"]
    ax.semilogx(lams, (fin / ds["L_DNC"]).values, "o", color="C0", alpha=0.6)
    ax.semilogx(
        lams,
        (ds["L_best"] / ds["L_DNC"]).values,
        "s-",
        color="C3",
        label="L_SRG / L_DNC",
    )
    ax.axhline(1, color="k", ls="--", lw=1)
    ax.set_xlabel("weight decay lambda")
    ax.set_ylabel("final objective / L_DNC")
    ax.legend(fontsize=7)
    fig.tight_layout()
    return fig


def plot_dnc_width(ds):
    fig, axes = plt.subplots(1, 2, figsize=(10, 4))
    w = ds["width"].values
    ax = axes[0]
    ax.plot(w, ds["is_dnc"].mean("seed"), "o-")
    ax.set_ylim(-0.05, 1.05)
    ax.set_xlabel("width")
    ax.set_ylabel("fraction of runs ending in DNC")
    ax.set_title(
        f"K={ds.attrs['classes']}, L={ds.attrs['depth']}, lambda {ds.attrs['lam']:g}, "
        f"{ds.sizes['seed']} seeds",
        fontsize=9,
    )
    ax = axes[1]
    ax.plot(w, _mid_rank(ds).values, "o", color="C0", alpha=0.5)
    ax.plot(
        w,
        _mid_rank(ds).mean("seed"),
        "-",
        color="C0",
        label="pre-activation of W_(L-1)",
    )
    ax.plot(
        w,
        ds["rank_layer"].sel(layer="H").mean("seed"),
        "--",
        color="C1",
        label="H (mean)",
    )
    ax.set_xlabel("width")
    ax.set_ylabel("numerical rank")
    ax.legend(fontsize=7)
    fig.tight_layout()
    return fig


register(
    "ldufm_fig2",
    compute=compute_fig2,
    plot=plot_fig2,
    description="GD on the L-DUFM (K=10, L=4, lambda 0.004, width 30): loss vs "
    "L_DNC/L_SRG, spectra, ranks",
)
register(
    "ldufm_rank_decay",
    compute=compute_rank_decay,
    plot=plot_rank_decay,
    description="GD on the L-DUFM: numerical rank per layer vs weight decay (L = 4)",
)
register(
    "ldufm_dnc_width",
    compute=compute_dnc_width,
    plot=plot_dnc_width,
    description="GD on the L-DUFM: fraction of runs ending in DNC vs width "
    "(L = 4, K = 10)",
)
