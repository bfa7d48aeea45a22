r"""Depth x width phase map of random starts: the $t \to \infty$ outcome beside the rank at t = 500.

Top row: the mean rank of the limit direction of the centred logits over the
decided seeds (random-start rule of :func:`svflow.outcome`: full-parameter
flow in double-log time to $\tau = \log(1 + t) = 10^3$, the undecided on to
$10^4$; NC counts as rank K - 1), per depth L (rows) and width d (columns),
one column of panels per K; the small text gives the seeds at NC and the
undecided seeds. Bottom row: the mean numerical rank of the same flows at
the finite time t = ``snapshot_time`` (500, where the earlier
gradient-descent map stopped), with the mean $s_{K-1}/s_1$ there.
"""

from __future__ import annotations

import numpy as np
import xarray as xr

from ..studies._phase import FULL_SETTING as FULL
from ..studies._phase import QUICK_SETTING as QUICK
from . import register


def compute(quick: bool, progress: bool = False) -> xr.Dataset:
    import svflow

    return svflow.studies.phase_map(**(QUICK if quick else FULL), progress=progress)


def plot(ds: xr.Dataset):
    import matplotlib.pyplot as plt

    Ks = ds["classes"].values
    widths, depths = ds["width"].values, ds["depth"].values
    # about 1 inch per width column (the per-cell counts need it), 4.8 at the least
    panel = max(4.8, 1.0 + 0.95 * len(widths))
    fig, axes = plt.subplots(
        2, len(Ks), figsize=(panel * len(Ks), 7.6), constrained_layout=True, squeeze=False
    )
    S = ds.sizes["seed"]
    t_snap = ds.attrs["snapshot_time"]
    for k, K in enumerate(Ks):
        sub = ds.sel(classes=K)
        limit = sub["limit_rank"].mean("seed", skipna=True).values
        snap = sub["snapshot_rank"].astype(float).mean("seed").values
        nc = sub["reached_nc"].sum("seed").values
        und = sub["undecided"].sum("seed").values
        ratio = sub["snapshot_sv_ratio"].mean("seed").values
        for row, (values, when) in enumerate(((limit, "t -> infinity (limit)"), (snap, f"t = {t_snap:g}"))):
            ax = axes[row, k]
            im = ax.imshow(values, origin="lower", cmap="viridis", vmin=1, vmax=K - 1, aspect="auto")
            for i in range(len(depths)):
                for j in range(len(widths)):
                    v = values[i, j]
                    light = not np.isfinite(v) or v < 0.6 * (K - 1)
                    color = "white" if light else "black"
                    ax.text(j, i + 0.1, f"{v:.1f}", ha="center", va="center", fontsize=9, color=color)
                    small = f"NC {nc[i, j]}/{S}, und {und[i, j]}" if row == 0 else f"ratio {ratio[i, j]:.2f}"
                    ax.text(j, i - 0.25, small, ha="center", va="center", fontsize=6, color=color)
            ax.set_xticks(range(len(widths)), [str(w) for w in widths])
            ax.set_yticks(range(len(depths)), [str(d) for d in depths])
            ax.set(xlabel="width d", ylabel="depth L (weight matrices)", title=f"K = {K}: mean rank, {when}")
            fig.colorbar(im, ax=ax, shrink=0.85, label="rank of centred Z")
    n, u = ds["undecided"].size, int(ds["undecided"].sum())
    fig.suptitle(
        f"random starts (scale {ds.attrs['scale']}), full-parameter gradient flow, {S} seeds/cell\n"
        f"limit decided at tau = log(1+t) <= {ds.attrs['horizons'][-1]:g} ({u} of {n} starts undecided)",
        fontsize=10,
    )
    return fig


register(
    "phase_map",
    compute=compute,
    plot=plot,
    description="depth x width map of random starts: rank of the t -> infinity limit and rank at t = 500",
)
