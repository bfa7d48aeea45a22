"""Empirical optimality map of the L-DUFM: the best objective GD finds over seeds and
init scales, divided by L_DNC, beside the known constructions' ratio."""

from __future__ import annotations

import matplotlib.pyplot as plt
import numpy as np
from matplotlib.colors import TwoSlopeNorm

from .._ldufm_studies import LDUFM_STUDIES
from . import register
from ._ldufm_common import DNC_SRG_CAPTION, setting_lines, wrap_caption


def compute(quick: bool):
    return LDUFM_STUDIES["ldufm_optimality"].compute("quick" if quick else "full")


def _heat(ax, values, Ks, Ls, title, norm, cmap="RdBu_r"):
    im = ax.imshow(
        values.T,
        origin="lower",
        aspect="auto",
        cmap=cmap,
        norm=norm,
        extent=(Ks[0] - 0.5, Ks[-1] + 0.5, Ls[0] - 0.5, Ls[-1] + 0.5),
        interpolation="nearest",
    )
    ax.set_xticks(Ks)
    ax.set_yticks(Ls)
    ax.set_xlabel("classes K")
    ax.set_ylabel("depth L (weight matrices)")
    ax.set_title(title, fontsize=9)
    return im


def plot(ds):
    Ks, Ls = ds["classes"].values, ds["depth"].values
    gd = ds["best_ratio"].values
    con = ds["construction_ratio"].values
    rel = gd / con
    lo = float(np.nanmin([gd.min(), con.min()]))
    norm = TwoSlopeNorm(vmin=min(lo, 0.99), vcenter=1.0, vmax=max(1.01, np.nanmax(gd)))
    fig, axes = plt.subplots(1, 3, figsize=(19, 5.6))
    _panel_gd(fig, axes, ds, Ks, Ls, gd, norm)
    _panel_constructions(fig, axes, Ks, Ls, con, norm)
    _panel_relative(fig, axes, ds, Ks, Ls, rel)
    a = ds.attrs
    nsc, nse = ds.sizes["scale"], ds.sizes["seed"]
    scales = ", ".join(f"{s:g}" for s in ds["scale"].values)
    fig.suptitle(
        "Empirical optimality map of the L-DUFM: the lowest objective full-batch GD "
        f"reached from {nsc} init scales ({scales}) x {nse} seeds, "
        f"{a['steps']:.0e} steps [{a.get('setting', '?')} setting]",
        fontsize=10,
    )
    fig.tight_layout()
    _caption(fig, ds, Ks, Ls)
    return fig


def _panel_gd(fig, axes, ds, Ks, Ls, gd, norm) -> None:
    """Best GD objective / L_DNC per (K, L), with the bottleneck rank of that run."""
    im = _heat(
        axes[0],
        gd,
        Ks,
        Ls,
        "GD: best objective / L_DNC (number)\nand bottleneck rank of that run (rk = ...)",
        norm,
    )
    fig.colorbar(im, ax=axes[0], fraction=0.04)
    for i, K in enumerate(Ks):
        for j, L in enumerate(Ls):
            axes[0].text(K, L + 0.13, f"{gd[i, j]:.3f}", ha="center", va="center", fontsize=5.5)
            axes[0].text(
                K,
                L - 0.2,
                f"rk {int(ds['best_rank'].values[i, j])}",
                ha="center",
                va="center",
                fontsize=5.5,
            )


def _panel_constructions(fig, axes, Ks, Ls, con, norm) -> None:
    """Best known construction (DNC / SRG blocks) / L_DNC per (K, L)."""
    im = _heat(
        axes[1],
        con,
        Ks,
        Ls,
        "best known construction (DNC / SRG blocks) / L_DNC",
        norm,
    )
    fig.colorbar(im, ax=axes[1], fraction=0.04)
    for i, K in enumerate(Ks):
        for j, L in enumerate(Ls):
            axes[1].text(K, L, f"{con[i, j]:.3f}", ha="center", va="center", fontsize=5.5)


def _panel_relative(fig, axes, ds, Ks, Ls, rel) -> None:
    """GD best / best known construction, marking the cells where GD beats them."""
    rnorm = TwoSlopeNorm(
        vmin=min(float(np.nanmin(rel)), 0.99),
        vcenter=1.0,
        vmax=max(1.01, float(np.nanmax(rel))),
    )
    im = _heat(
        axes[2],
        rel,
        Ks,
        Ls,
        "GD best / best known construction\n* = GD beats every known construction, o = GD beats DNC only",
        rnorm,
        cmap="PuOr_r",
    )
    fig.colorbar(im, ax=axes[2], fraction=0.04)
    beat_c, beat_d = ds["beats_constructions"].values, ds["beats_dnc"].values
    for i, K in enumerate(Ks):
        for j, L in enumerate(Ls):
            mark = "*" if beat_c[i, j] else ("o" if beat_d[i, j] else "")
            axes[2].text(K, L + 0.15, f"{rel[i, j]:.3f}", ha="center", va="center", fontsize=5.5)
            if mark:
                axes[2].text(K, L - 0.2, mark, ha="center", va="center", fontsize=9, weight="bold")


def _caption(fig, ds, Ks, Ls) -> None:
    """The setting, the conventions and the cells where GD beats every construction."""
    a = ds.attrs
    beat_c = ds["beats_constructions"].values
    beats = [f"(K={K}, L={L})" for i, K in enumerate(Ks) for j, L in enumerate(Ls) if beat_c[i, j]]
    fig.text(
        0.01,
        -0.01,
        wrap_caption(
            setting_lines(ds) + f"\nweight decay {a['lam']:g} on every factor, learning rate {a['eta']:g}, "
            f"n = {a['samples_per_class']}, width {a.get('width_rule', '')}; a GD objective "
            f"beats a value when it is below (1 - {a.get('beat_rtol', 1e-3):g}) x it. "
            "GD gives upper bounds on the minimum, not its value. Bottleneck rank: "
            "smallest class-mean rank over H and the hidden layers "
            f"(sigma_i > {a.get('rank_rtol', 1e-3):g} sigma_1).\n"
            + DNC_SRG_CAPTION
            + "\nGD beats every known construction at: "
            + (", ".join(beats) if beats else "no cell"),
            250,
        ),
        ha="left",
        va="top",
        fontsize=7,
    )


register(
    "ldufm_optimality",
    compute=compute,
    plot=plot,
    description="empirical optimality map: best GD objective / L_DNC over K = 2..16, "
    "L = 2..6, beside the constructions",
)
