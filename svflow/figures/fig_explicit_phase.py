"""Phase maps of the explicit low-rank bias: which known construction has the lowest
loss over (K, L). Only the listed constructions are compared; gradient descent can
do better (see the empirical optimality map)."""

from __future__ import annotations

import matplotlib.pyplot as plt
import numpy as np
from matplotlib.colors import ListedColormap

from ..explicit import ce_direct_table, dnc_thresholds, explicit_phase_map
from . import register
from ._ldufm_common import wrap_caption

_COLORS = ["#dddddd", "#3b6fb6", "#d1495b", "#edae49", "#66a182", "#8e5ea2"]  # 6 categories max


def compute(quick: bool):
    # closed forms over the grid (about 20 s) and the direct minimisation of the CE
    # model at the cells of CE_DIRECT_CELLS (minutes); quick == full
    ds = explicit_phase_map(
        range(2, 41), range(2, 9), relu_weight_decay=0.004, ce_weight_decay=1e-3, samples=1
    )
    table = ce_direct_table(weight_decay=1e-3, samples=1)
    # the table's cells are a list (dim cell): prefix what would clash with the map
    clash = [v for v in map(str, table.data_vars) if v in ds or v.startswith(("ce_", "known"))]
    table = table.rename(
        {"classes": "cell_classes", "depth": "cell_depth", **{v: f"cell_{v}" for v in clash}}
    )
    return ds.merge(table, combine_attrs="override").assign_attrs(
        direct_seeds=table.attrs["direct_seeds"],
        direct_max_steps=table.attrs["direct_max_steps"],
        direct_rtol=table.attrs["rtol"],
    )


def _catmap(ax, ds, var, title):
    da = ds[var]
    names = da.attrs["flag_meanings"].split()
    Ks, Ls = ds["classes"].values, ds["depth"].values
    cmap = ListedColormap(_COLORS[: len(names)])
    ax.imshow(
        da.values.T,
        origin="lower",
        aspect="auto",
        cmap=cmap,
        vmin=-0.5,
        vmax=len(names) - 0.5,
        extent=(Ks[0] - 0.5, Ks[-1] + 0.5, Ls[0] - 0.5, Ls[-1] + 0.5),
        interpolation="nearest",
    )
    for i, name in enumerate(names):
        ax.plot([], [], "s", color=_COLORS[i], label=name.replace("_", " "), ms=8)
    ax.legend(
        loc="lower right",
        fontsize=7,
        framealpha=0.95,
        title="lowest loss among known ones",
        title_fontsize=7,
    )
    ax.set_xlabel("classes K")
    ax.set_ylabel("depth L (weight matrices)")
    ax.set_title(title, fontsize=9)


def _from_k(thr) -> str:
    return ", ".join(f"{int(t) if np.isfinite(t) else '-'}" for t in thr)


def _mark_direct(ax, ds) -> None:
    """On the CE map: the cells minimised directly; x + rank where no known code is
    optimal, o where no polished random start beat the best known code."""
    if "direct" not in ds:
        return
    for c in range(ds.sizes["cell"]):
        K, L = int(ds["cell_classes"][c]), int(ds["cell_depth"][c])
        if bool(ds["direct_wins"][c]):
            ax.text(
                K,
                L,
                str(int(ds["direct_rank"][c])),
                ha="center",
                va="center",
                fontsize=7.5,
                weight="bold",
                bbox=dict(boxstyle="square,pad=0.12", fc="white", ec="k", lw=0.8),
            )
        else:
            ax.plot(K, L, "o", mfc="none", color="k", ms=6)
    ax.plot(
        [], [], "s", mfc="white", color="k", label="boxed N: direct min. beats every known code; N = its rank"
    )
    ax.plot([], [], "o", mfc="none", color="k", label="no polished random start beats the best known code")


def _direct_table(ax, ds) -> None:
    """The direct row beside the constructions, one line per minimised cell."""
    ax.axis("off")
    cols = ["K", "L", "DNC", "blocks", "hypercube", "polygon", "direct (rank)", "known best"]
    rows, colours = [], []
    for c in range(ds.sizes["cell"]):
        f = lambda v: "-" if not np.isfinite(float(v)) else f"{float(v):.6f}"  # noqa: E731
        win = bool(ds["direct_wins"][c])
        rows.append(
            [
                str(int(ds["cell_classes"][c])),
                str(int(ds["cell_depth"][c])),
                f(ds["cell_ce_dnc"][c]),
                f(ds["cell_ce_blocks"][c]),
                f(ds["cell_ce_hypercube"][c]),
                f(ds["cell_ce_polygon"][c]),
                f"{float(ds['direct'][c]):.6f} ({int(ds['direct_rank'][c])})",
                str(ds["cell_known_code"].values[c]).split()[0],
            ]
        )
        colours.append(["#f4d6d6" if win else "white"] * len(cols))
    t = ax.table(cellText=rows, colLabels=cols, cellColours=colours, loc="upper center", cellLoc="center")
    t.auto_set_font_size(False)
    t.set_fontsize(7.5)
    t.scale(1.0, 1.25)
    ax.set_title(
        f"CE + weight decay {ds.attrs['ce_weight_decay']:g}: losses of the known codes and of direct "
        f"minimisation\n(best of {ds.attrs.get('direct_seeds', '?')} L-BFGS-polished random starts; "
        "red rows: no known construction is optimal)",
        fontsize=9,
    )


def plot(ds):
    if "direct" in ds:
        fig = plt.figure(figsize=(15, 8.8))
        grid = fig.add_gridspec(2, 3, height_ratios=[1, 0.75])
        axes = [fig.add_subplot(grid[0, k]) for k in range(3)]
        table_ax = fig.add_subplot(grid[1, :])
    else:
        fig, axes = plt.subplots(1, 3, figsize=(15, 4.6))
        table_ax = None
    thr = dnc_thresholds(ds, "relu").values
    _catmap(
        axes[0],
        ds,
        "relu_category",
        f"L-DUFM (ReLU, squared, weight decay {ds.attrs['relu_weight_decay']:g} on every factor)\n"
        "an SRG block network beats DNC for every K from "
        + _from_k(thr)
        + f" (L = {ds['depth'].values[0]}..{ds['depth'].values[-1]})",
    )
    thr_ce = dnc_thresholds(ds, "ce").values
    _catmap(
        axes[1],
        ds,
        "ce_category",
        f"deep linear CE, weight decay {ds.attrs['ce_weight_decay']:g}\n"
        "a known code beats DNC for every K from " + _from_k(thr_ce),
    )
    _mark_direct(axes[1], ds)
    if "direct" in ds:
        axes[1].legend(loc="upper left", fontsize=6.5, framealpha=0.95)
    if table_ax is not None:
        _direct_table(table_ax, ds)
    ax = axes[2]
    for L in ds["depth"].values:
        ax.plot(
            ds["r"].values * (ds["r"].values - 1) // 2,
            ds["srg_rho"].sel(depth=L),
            "o-",
            ms=3,
            label=f"L = {L}",
        )
    ax.axhline(1.0, color="k", lw=0.8)
    ax.set_xscale("log")
    ks = ds["r"].values * (ds["r"].values - 1) // 2
    ax.set_xticks(ks, [str(k) for k in ks], fontsize=7)
    ax.minorticks_off()
    ax.set_xlabel("classes K = C(r, 2)")
    ax.set_ylabel("rho (SRG penalty / DNC penalty)")
    ax.set_title("SRG construction: rho < 1 beats DNC (small weight decay)", fontsize=9)
    ax.legend(fontsize=7, ncol=2)
    fig.tight_layout()
    fig.text(
        0.01,
        -0.02,
        wrap_caption(
            "Known constructions only: a cell 'no known construction beats DNC' (e.g. "
            "every K <= 5, where no SRG block exists) does not say DNC is optimal; "
            "gradient descent beats L_DNC at some of them (empirical optimality map).\n"
            "DNC: deep neural collapse (orthogonal class means of rank K in every layer). "
            "SRG: the strongly-regular-graph construction of Sukenik, Lampert & Mondelli "
            "(2024), K = C(r, 2) classes, rank r up to the last ReLU; blocks: "
            "block-diagonal networks of SRG and DNC blocks. CE codes: simplex (DNC), "
            "2 x 2 blocks (pairs), other block partitions, the hypercube code, the regular "
            "K-gon (polygon, rank 2). Direct: the deep linear CE model minimised over all "
            "factors (svflow.explicit.ce_minimum: random starts polished by L-BFGS, width K) "
            "at the marked cells; an upper bound on the minimum. "
            "'trivial point best': the zero network (loss 1/2, resp. log K) is as good as "
            f"any construction. n = {ds.attrs['samples_per_class']} sample per class.",
            200,
        ),
        ha="left",
        va="top",
        fontsize=7,
    )
    return fig


register(
    "explicit_phase",
    compute=compute,
    plot=plot,
    description="which known construction (DNC / SRG blocks / CE codes) has the lowest loss over K and L",
)
