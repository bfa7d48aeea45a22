r"""Depth x width phase map of random-start full GD (deeper: lower rank; wider: higher rank).

Mean final numerical rank of the centred class-mean logits over seeds, per
depth L (rows) and width d (columns), one panel per K; the number in each
cell is the mean rank, the small text below it (final row) the mean
$\sigma_{K-1}/\sigma_1$ and the fraction of seeds that reached neural
collapse (ratio >= 0.9). Deeper -> lower rank; wider -> higher rank. The
lower row is the rank of the random start itself, for comparison: training
raises it in shallow nets and lowers it in deep, narrow ones.
"""

from __future__ import annotations

import xarray as xr

from ..studies._phase import FULL_SETTING as FULL
from ..studies._phase import QUICK_SETTING as QUICK
from . import register


def compute(quick: bool) -> xr.Dataset:
    import svflow

    return svflow.studies.phase_map(**(QUICK if quick else FULL), progress=False)


def plot(ds: xr.Dataset):
    import matplotlib.pyplot as plt

    Ks = ds["classes"].values
    fig, axes = plt.subplots(2, len(Ks), figsize=(4.8 * len(Ks), 7.4), constrained_layout=True, squeeze=False)
    widths, depths = ds["width"].values, ds["depth"].values
    panels = [(axes[0, k], K, "final", ds["rank"]) for k, K in enumerate(Ks)]
    panels += [(axes[1, k], K, "t = 0", ds["rank_t"].isel(record=0)) for k, K in enumerate(Ks)]
    for ax, K, when, var in panels:
        rank = var.sel(classes=K).astype(float).mean("seed").values
        nc = ds["reached_nc"].sel(classes=K).astype(float).mean("seed").values
        ratio = ds["sv_ratio"].sel(classes=K).mean("seed").values
        im = ax.imshow(rank, origin="lower", cmap="viridis", vmin=1, vmax=K - 1, aspect="auto")
        for i in range(len(depths)):
            for j in range(len(widths)):
                light = rank[i, j] < 0.6 * (K - 1)
                ax.text(
                    j,
                    i + 0.08,
                    f"{rank[i, j]:.1f}",
                    ha="center",
                    va="center",
                    fontsize=9,
                    color="white" if light else "black",
                )
                if when == "final":
                    ax.text(
                        j,
                        i - 0.25,
                        f"ratio {ratio[i, j]:.2f}, NC {nc[i, j]:.0%}",
                        ha="center",
                        va="center",
                        fontsize=6,
                        color="white" if light else "black",
                    )
        ax.set_xticks(range(len(widths)), [str(w) for w in widths])
        ax.set_yticks(range(len(depths)), [str(d) for d in depths])
        ax.set(
            xlabel="width d",
            ylabel="depth L (weight matrices)",
            title=f"K = {K}: mean rank, {when} (max K-1 = {K - 1})",
        )
        fig.colorbar(im, ax=ax, shrink=0.85, label="rank of centred Z")
    fig.suptitle(
        f"random starts, scale {ds.attrs['scale']}, learning rate $\\eta$ = {ds.attrs['eta']}, "
        f"t = {ds.attrs['t_end']:g}, {ds.sizes['seed']} seeds/cell",
        fontsize=10,
    )
    return fig


register(
    "phase_map",
    compute=compute,
    plot=plot,
    description="depth x width map of the final rank from random starts",
)
