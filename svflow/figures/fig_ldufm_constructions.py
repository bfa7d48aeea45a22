"""The SRG construction of Sukenik, Lampert & Mondelli (2024): its matrices (Fig. 1)
and its loss against DNC over r (Fig. 3 left). Closed forms and built matrices
only, no training."""

from __future__ import annotations

import matplotlib.pyplot as plt
import numpy as np

from .._ldufm_studies import LDUFM_STUDIES
from . import register
from ._ldufm_common import add_caption, integer_axis


def compute_fig1(quick: bool):
    return LDUFM_STUDIES["ldufm_fig1"].compute("quick" if quick else "full")


def compute_fig3_left(quick: bool):
    return LDUFM_STUDIES["ldufm_fig3_left"].compute("quick" if quick else "full")


def plot_fig1(ds):
    layers = list(ds["layer"].values)
    r, K, L = ds.attrs["r"], ds.attrs["classes"], ds.attrs["depth"]
    fig, axes = plt.subplots(1, len(layers), figsize=(2.3 * len(layers), 3.4))
    roles = {
        f"M{L - 1}": "B (incidence), rank r",
        f"pre-M{L}": "pre-activation J - B^T B",
        f"M{L}": "its ReLU: Kneser adjacency",
    }
    for ax, name in zip(axes, layers):
        rows = int(ds["rows"].sel(layer=name))
        m = ds["matrix"].sel(layer=name).values[:rows]
        v = np.nanmax(np.abs(m))
        ax.imshow(m, cmap="RdBu_r", vmin=-v, vmax=v, interpolation="nearest")
        rank = int(ds["matrix_rank"].sel(layer=name))
        role = roles.get(name, "")
        ax.set_title(
            f"{name} ({rows} x {K})\nrank {rank}" + (f"\n{role}" if role else ""),
            fontsize=8,
            color="C3" if role else "k",
        )
        ax.set_xticks([])
        ax.set_yticks([])
    axes[0].set_ylabel("row")
    fig.suptitle(
        f"SRG construction, K = C({r}, 2) = {K} classes (columns = edges of K_{r}), "
        f"L = {L}: class-mean matrices M1 = H, M(l+1) = ReLU(W_l M_l), "
        "pre-M = before the ReLU",
        fontsize=9,
    )
    fig.tight_layout()
    add_caption(
        fig,
        ds,
        f"B = vertex-edge incidence matrix of K_{r}; colour scale symmetric "
        "about 0 (red > 0, blue < 0), one per panel.",
        width=250,
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
