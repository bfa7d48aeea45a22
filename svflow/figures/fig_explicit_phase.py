"""Phase maps of the explicit low-rank bias: which known construction has the lowest
loss over (K, L). Only the listed constructions are compared; gradient descent can
do better (see the empirical optimality map)."""

from __future__ import annotations

import matplotlib.pyplot as plt
import numpy as np
from matplotlib.colors import ListedColormap

from ..explicit import dnc_thresholds, explicit_phase_map
from . import register
from ._ldufm_common import wrap_caption

_COLORS = ["#dddddd", "#3b6fb6", "#d1495b", "#edae49", "#66a182", "#8e5ea2"]  # 6 categories max


def compute(quick: bool):
    # closed forms only: the full grid is cheap (about 20 s), so quick == full
    return explicit_phase_map(range(2, 41), range(2, 9), lam=0.004, weight_decay=1e-3, samples=1)


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


def plot(ds):
    fig, axes = plt.subplots(1, 3, figsize=(15, 4.6))
    thr = dnc_thresholds(ds, "relu").values
    _catmap(
        axes[0],
        ds,
        "relu_category",
        f"L-DUFM (ReLU, squared, weight decay {ds.attrs['lam']:g} on every factor)\n"
        "an SRG block network beats DNC for every K from "
        + _from_k(thr)
        + f" (L = {ds['depth'].values[0]}..{ds['depth'].values[-1]})",
    )
    thr_ce = dnc_thresholds(ds, "ce").values
    _catmap(
        axes[1],
        ds,
        "ce_category",
        f"deep linear CE, weight decay {ds.attrs['weight_decay']:g}\n"
        "a known code beats DNC for every K from " + _from_k(thr_ce),
    )
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
            "2 x 2 blocks (pairs), other block partitions, the hypercube code. "
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
