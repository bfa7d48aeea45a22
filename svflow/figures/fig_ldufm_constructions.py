"""The SRG construction of Sukenik, Lampert & Mondelli (2024): its matrices (Fig. 1)
and its loss against DNC over r (Fig. 3 left). Closed forms and built matrices
only, no training."""

from __future__ import annotations

import matplotlib.pyplot as plt
import numpy as np

from ..explicit._ldufm_studies import LDUFM_STUDIES
from . import register
from ._ldufm_common import add_caption, integer_axis


def compute_fig1(quick: bool):
    return LDUFM_STUDIES["ldufm_fig1"].compute("quick" if quick else "full")


def compute_fig3_left(quick: bool):
    return LDUFM_STUDIES["ldufm_fig3_left"].compute("quick" if quick else "full")


def _image(ax, m, title, color="k"):
    v = np.nanmax(np.abs(m))
    v = v if v > 0 else 1.0
    ax.imshow(m, cmap="RdBu_r", vmin=-v, vmax=v, interpolation="nearest")
    ax.set_title(title, fontsize=9, color=color)
    ax.set_xticks([])
    ax.set_yticks([])


def plot_fig1(ds):
    layers = list(ds["layer"].values)
    r, K, L = ds.attrs["r"], ds.attrs["classes"], ds.attrs["depth"]
    grams = "gram" in ds
    nrow = 3 if grams else 1
    fig, axes = plt.subplots(nrow, len(layers), figsize=(2.15 * len(layers), 3.1 * nrow + 0.6), squeeze=False)
    roles = {
        f"M{L - 1}": "B (incidence), rank r",
        f"pre-M{L}": "J - B^T B",
        f"M{L}": "ReLU: Kneser adjacency",
    }
    for k, name in enumerate(layers):
        rows = int(ds["rows"].sel(layer=name))
        m = ds["matrix"].sel(layer=name).values[:rows]
        rank = int(ds["matrix_rank"].sel(layer=name))
        role = roles.get(name, "")
        col = "C3" if role else "k"
        _image(axes[0, k], m, f"{name} ({rows} x {K}), rank {rank}" + (f"\n{role}" if role else ""), col)
        if grams:
            _image(axes[1, k], ds["gram"].sel(layer=name).values, f"SRG: {name}^T {name}, rank {rank}", col)
            dr = int(ds["dnc_rank"].sel(layer=name))
            _image(axes[2, k], ds["dnc_gram"].sel(layer=name).values, f"DNC: {name}^T {name}, rank {dr}")
    axes[0, 0].set_ylabel("SRG class means\n(rows: units)", fontsize=9)
    if grams:
        axes[1, 0].set_ylabel("SRG Gram matrices\n(K x K: class inner products)", fontsize=9)
        axes[2, 0].set_ylabel("DNC Gram matrices\n(contrast: multiples of I_K)", fontsize=9)
    fig.suptitle(
        f"SRG construction, K = C({r}, 2) = {K} classes (columns = edges of K_{r}), "
        f"L = {L}: class-mean matrices M1 = H, M(l+1) = ReLU(W_l M_l), pre-M = before the ReLU;\n"
        "their Gram matrices M^T M, and those of deep neural collapse (DNC) for contrast",
        fontsize=11,
    )
    fig.tight_layout()
    add_caption(
        fig,
        ds,
        f"B = vertex-edge incidence matrix of K_{r}; colour scale symmetric "
        "about 0 (red > 0, blue < 0), one per panel. In the SRG network the classes "
        "share units (Gram matrices with off-diagonal entries, rank r = "
        f"{r} up to the last ReLU); in DNC every layer's class means are orthogonal "
        "(Gram matrices diagonal, rank K).",
        width=200,
    )
    return fig


def plot_fig3_left(ds):
    lams = ds["lam"].values
    fig, axes = plt.subplots(1, len(lams), figsize=(4.3 * len(lams), 3.8), squeeze=False, sharey=True)
    for ax, lam in zip(axes[0], lams):
        for i, L in enumerate(ds["depth"].values):
            ax.plot(
                ds["r"].values,
                ds["ratio"].sel(lam=lam, depth=L),
                "o-",
                ms=3,
                color=f"C{i}",
                label=f"L = {L} (closed form)",
            )
            if "ratio_network" in ds:
                ax.plot(
                    ds["r"].values,
                    ds["ratio_network"].sel(lam=lam, depth=L),
                    "x",
                    ms=6,
                    color=f"C{i}",
                    label=f"L = {L} (built matrices)",
                )
        ax.axhline(1.0, color="k", ls="--", lw=1)
        integer_axis(ax.xaxis)
        sec = ax.secondary_xaxis("top")
        sec.set_xticks(ds["r"].values, [str(k) for k in ds["classes"].values], fontsize=6)
        sec.set_xlabel("K = C(r, 2)", fontsize=8)
        ax.set_xlabel("r (vertices of K_r)")
        ax.set_title(f"weight decay {lam:g} (every factor)", fontsize=9)
        ax.legend(fontsize=6, ncol=2)
    axes[0, 0].set_ylabel("L_SRG / L_DNC  (< 1: SRG beats DNC)")
    fig.suptitle(
        f"SRG construction against DNC at K = C(r, 2) (Fig. 3 left), n = {ds.attrs['samples_per_class']}",
        fontsize=10,
    )
    fig.tight_layout()
    add_caption(
        fig,
        ds,
        "Where both losses reach the trivial point (zero network, loss 1/2: "
        "large K x weight decay) the ratio is 1. Crosses (full setting): the "
        "ratio from the built matrices run through the ReLU network at their "
        "best scale.",
        width=210,
    )
    return fig


register(
    "ldufm_fig1",
    compute=compute_fig1,
    plot=plot_fig1,
    description="Fig. 1: matrices of the SRG construction (K = 10, L = 4) as images",
)
register(
    "ldufm_fig3_left",
    compute=compute_fig3_left,
    plot=plot_fig3_left,
    description="Fig. 3 (left): L_SRG / L_DNC against r for L = 3, 4, 5",
)
