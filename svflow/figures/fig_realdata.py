r"""A real network on real data: final rank of the head's output and NC1 against depth.

A bias-free ReLU MLP backbone under a deep linear head of depth L and width d,
trained by Adam on the scikit-learn digits (K = 10, cross-entropy, no weight
decay). Left: the final numerical rank of the centred class-mean logits
(seed mean, seeds as dots) per width, beside the deep UFM's prediction at the
same L and d (random-start phase map, dashed). Middle: NC1 at the head's
input (solid) and output (dotted), log scale. Right: the rank of the head's
output over training at the widest d, one line per depth (seed mean), so a
reader sees whether the final rank has settled.
"""

from __future__ import annotations

import numpy as np
import xarray as xr

from ..studies._realdata import FULL_SETTING as FULL
from ..studies._realdata import QUICK_SETTING as QUICK
from . import register


def compute(quick: bool, progress: bool = False) -> xr.Dataset:
    import svflow

    ds = svflow.studies.realdata_study(**(QUICK if quick else FULL), ufm_reference=True, progress=progress)
    ds.attrs["scenario"] = "quick" if quick else "full"
    return ds


def plot(ds: xr.Dataset):
    import matplotlib.pyplot as plt

    K = int(ds.attrs["classes"])
    depths, widths = ds["depth"].values, ds["width"].values
    colours = plt.cm.viridis(np.linspace(0.0, 0.8, len(widths)))
    fin = ds.isel(time=-1)
    fig, axes = plt.subplots(1, 3, figsize=(15, 4.6), constrained_layout=True)
    ax = axes[0]
    for j, (d, c) in enumerate(zip(widths, colours)):
        off = (j - (len(widths) - 1) / 2) * 0.08
        r = fin["rank_out"].sel(width=d).astype(float)
        ax.plot(depths + off, r.mean("seed"), "o-", color=c, label=f"network, d = {d}")
        for s in ds["seed"].values:
            ax.plot(depths + off, r.sel(seed=s), ".", color=c, alpha=0.4, ms=5)
        if "ufm_rank" in ds:
            u = ds["ufm_rank"].sel(width=d).astype(float)
            ax.plot(depths + off, u.mean("seed"), "s--", color=c, mfc="none", label=f"deep UFM, d = {d}")
    ax.axhline(K - 1, color="grey", lw=0.8, ls=":")
    ax.text(depths[0], K - 1 + 0.15, f"K - 1 = {K - 1} (neural collapse)", fontsize=7, color="grey")
    ax.set(
        xlabel="depth L of the linear head (weight matrices)",
        ylabel="final rank of centred class-mean logits",
        title="rank of the head's output (dots: seeds)",
        ylim=(0, K),
        xticks=depths,
    )
    ax.legend(fontsize=7, loc="lower left")
    ax = axes[1]
    for d, c in zip(widths, colours):
        ax.plot(depths, fin["nc1_in"].sel(width=d).mean("seed"), "o-", color=c, label=f"head input, d = {d}")
        ax.plot(
            depths, fin["nc1_out"].sel(width=d).mean("seed"), "^:", color=c, label=f"head output, d = {d}"
        )
    ax.set_yscale("log")
    ax.set(
        xlabel="depth L of the linear head",
        ylabel=r"NC1 = tr($\Sigma_W\Sigma_B^+$)/K (seed mean)",
        title="within-class variability (0 = collapse)",
        xticks=depths,
    )
    ax.legend(fontsize=7)
    ax = axes[2]
    dmax = widths[-1]
    dc = plt.cm.plasma(np.linspace(0.0, 0.85, len(depths)))
    flow = ds.attrs.get("optimizer") == "flow"
    t = ds["time"].values if flow else ds["step"].values
    for L, c in zip(depths, dc):
        ax.plot(
            t[1:],
            ds["rank_out"].sel(width=dmax, depth=L).astype(float).mean("seed")[1:],
            color=c,
            label=f"L = {L}",
        )
    acc = fin["train_acc"].mean()
    tacc = fin["test_acc"].mean()
    ax.set_xscale("log")
    ax.set(
        xlabel="gradient-flow time t" if flow else "Adam step",
        ylabel="rank of centred class-mean logits",
        title=f"over training, d = {dmax} (final accuracy: train {acc:.0%}, test {tacc:.0%})",
        ylim=(0, K),
    )
    ax.legend(fontsize=7)
    ufm = (
        f"; UFM: gradient flow to t = {ds.attrs['ufm_snapshot_time']:g}, random starts"
        if "ufm_snapshot_time" in ds.attrs
        else ""
    )
    how = (
        f"gradient flow to t = {ds.attrs['t_end']:g}"
        if flow
        else f"Adam lr {ds.attrs['learning_rate']:g}, {ds.attrs['steps']} full-batch steps"
    )
    fig.suptitle(
        f"{ds.attrs['data']} (K = {K}, {ds.attrs['n_train']} train / {ds.attrs['n_test']} test), "
        f"ReLU backbone {ds.attrs['hidden']} + deep linear head, {how}, {ds.sizes['seed']} seeds{ufm} "
        f"[{ds.attrs.get('scenario', '')} setting]",
        fontsize=9,
    )
    return fig


register(
    "realdata",
    compute=compute,
    plot=plot,
    description="real network on the digits: final head-output rank and NC1 against depth, UFM overlaid",
)
