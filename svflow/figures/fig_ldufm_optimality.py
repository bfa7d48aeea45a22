"""Empirical optimality map of the L-DUFM: the best objective GD finds over seeds and
init scales, divided by L_DNC, beside the known constructions' ratio."""

from __future__ import annotations

import matplotlib.pyplot as plt
import numpy as np
from matplotlib.colors import TwoSlopeNorm

from ..explicit._ldufm_map import repolish_map
from ..explicit._ldufm_studies import LDUFM_STUDIES
from . import register
from ._ldufm_common import DNC_SRG_CAPTION, setting_lines, wrap_caption

FULL_SETTING = "polished"
"""The study setting of the committed figure (K = 2..6, 24 runs per cell); the
study's FULL grid (K = 2..16, 5e5 steps, 40 runs per cell) is the scenario's."""


def compute(quick: bool, progress: bool = False):
    """Quick: the QUICK setting. Full: the POLISHED setting (every run L-BFGS
    polished), then every cell's best point re-polished with the nonsmooth kink
    stage (:func:`svflow.explicit.repolish_map`), as the committed map was made."""
    study = LDUFM_STUDIES["ldufm_optimality"]
    if quick:
        return study.compute("quick", progress=progress)
    return repolish_map(study.compute(FULL_SETTING, progress=progress), progress=progress)


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
    ax.set_title(title, fontsize=10)
    return im


def _has_counts(ds) -> bool:
    return "n_below_dnc" in ds


def plot(ds):
    Ks, Ls = ds["classes"].values, ds["depth"].values
    gd = ds["best_ratio"].values
    con = ds["construction_ratio"].values
    rel = gd / con
    lo = float(np.nanmin([gd.min(), con.min()]))
    norm = TwoSlopeNorm(vmin=min(lo, 0.99), vcenter=1.0, vmax=max(1.01, np.nanmax(gd)))
    width = max(10.0, 0.95 * len(Ks) + 3)
    fig, axes = plt.subplots(3, 1, figsize=(width, 3 * (0.95 * len(Ls) + 1.4)))
    _panel_gd(fig, axes, ds, Ks, Ls, gd, norm)
    _panel_constructions(fig, axes, Ks, Ls, con, norm)
    _panel_relative(fig, axes, ds, Ks, Ls, rel)
    a = ds.attrs
    nsc, nse = ds.sizes["scale"], ds.sizes["seed"]
    scales = ", ".join(f"{s:g}" for s in ds["scale"].values)
    polish = f" + L-BFGS polish ({a['polish_steps']} steps)" if "polish_steps" in a else ""
    fig.suptitle(
        "Empirical optimality map of the L-DUFM: the lowest objective reached from "
        f"{nsc} init scales ({scales}) x {nse} seeds = {nsc * nse} runs per cell,\n"
        f"{a['steps']:.0e} GD steps{polish} [{a.get('setting', '?')} setting]",
        fontsize=11,
    )
    fig.tight_layout(rect=(0, 0, 1, 0.965))
    _caption(fig, ds, Ks, Ls)
    return fig


def _ink(norm, value, cmap) -> str:
    """Black or white text, whichever reads on the cell's colour."""
    r, g, b, _ = plt.get_cmap(cmap)(norm(value))
    return "white" if 0.299 * r + 0.587 * g + 0.114 * b < 0.45 else "black"


def _panel_gd(fig, axes, ds, Ks, Ls, gd, norm) -> None:
    """Best polished objective / L_DNC per (K, L), the count of runs below L_DNC and
    the bottleneck rank of the best run."""
    counts = _has_counts(ds)
    title = (
        "best polished objective / L_DNC; k/n = runs below L_DNC of runs made; "
        "rk = bottleneck rank of the best run (gap rank)"
        if counts
        else "GD: best objective / L_DNC and bottleneck rank of that run (rk = ...)"
    )
    im = _heat(axes[0], gd, Ks, Ls, title, norm)
    fig.colorbar(im, ax=axes[0], fraction=0.03, pad=0.01)
    for i, K in enumerate(Ks):
        for j, L in enumerate(Ls):
            c = ds.isel(classes=i, depth=j)
            lines = [f"{gd[i, j]:.3f}"]
            if counts:
                lines.append(f"{int(c['n_below_dnc'])}/{int(c['n_runs'])}")
            rk = f"rk {int(c['best_rank'])}"
            if counts and not bool(c["best_converged"]):
                rk += "*"
            lines.append(rk)
            axes[0].text(
                K,
                L,
                "\n".join(lines),
                ha="center",
                va="center",
                fontsize=8,
                linespacing=1.05,
                color=_ink(norm, gd[i, j], "RdBu_r"),
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
    fig.colorbar(im, ax=axes[1], fraction=0.03, pad=0.01)
    for i, K in enumerate(Ks):
        for j, L in enumerate(Ls):
            axes[1].text(
                K,
                L,
                f"{con[i, j]:.3f}",
                ha="center",
                va="center",
                fontsize=8.5,
                color=_ink(norm, con[i, j], "RdBu_r"),
            )


def _panel_relative(fig, axes, ds, Ks, Ls, rel) -> None:
    """Best polished point / best known construction, with the count of runs below it."""
    counts = _has_counts(ds)
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
        "best polished point / best known construction; k/n = runs below it"
        if counts
        else "GD best / best known construction",
        rnorm,
        cmap="PuOr_r",
    )
    fig.colorbar(im, ax=axes[2], fraction=0.03, pad=0.01)
    for i, K in enumerate(Ks):
        for j, L in enumerate(Ls):
            c = ds.isel(classes=i, depth=j)
            lines = [f"{rel[i, j]:.3f}"]
            if counts:
                lines.append(f"{int(c['n_below_construction'])}/{int(c['n_runs'])}")
            axes[2].text(
                K,
                L,
                "\n".join(lines),
                ha="center",
                va="center",
                fontsize=8.5,
                color=_ink(rnorm, rel[i, j], "PuOr_r"),
            )


def _caption(fig, ds, Ks, Ls) -> None:
    """The setting, the conventions and the cells where a run beats every construction."""
    a = ds.attrs
    beat_c = ds["beats_constructions"].values
    beats = [f"(K={K}, L={L})" for i, K in enumerate(Ks) for j, L in enumerate(Ls) if beat_c[i, j]]
    rtol = a.get("beat_rtol", 1e-3)
    conv = ""
    if _has_counts(ds):
        tol = f"{a['grad_tol']:g}"
        gap = (
            "Clarke gap (smallest gradient over ReLU slopes in [0, 1] at the kinks; the gradient "
            f"norm where there is none) < {tol}"
        )
        best = f"best points: {int(ds['best_converged'].sum())} of {ds['best_converged'].size} converged"
        if "clarke_gap" in ds:  # per-run gaps: every run went through the nonsmooth polish
            runs = f"{int(ds['n_converged'].sum())} of {int(ds['n_runs'].sum())} runs; {best}"
        else:  # a map whose best points alone were re-polished (repolish_map)
            runs = (
                f"{best} (re-polished); per-run counts are of the earlier L-BFGS polish: "
                f"{int(ds['n_converged'].sum())} of {int(ds['n_runs'].sum())} runs with gradient "
                f"norm < {tol}"
            )
        stage = (
            "at ReLU kinks a softplus continuation, then Newton on the kink face"
            if int(a.get("kink_stage", 1))
            else "no nonsmooth kink stage in this setting: runs stalled at a kink stay unconverged"
        )
        conv = (
            f"Every run is polished after GD (L-BFGS; {stage}); converged = {gap}: {runs}. "
            "rk N* = the best run is not converged (its objective is "
            "still a value the L-DUFM takes, so 'below L_DNC' holds). The best run's factors are "
            "stored (best_parameters) for re-evaluation. Bottleneck rank: smallest class-mean "
            "rank over H and the hidden layers, the threshold in the largest gap of "
            "sigma_i / sigma_1 (best_gap stores it).\n"
        )
    fig.text(
        0.01,
        -0.005,
        wrap_caption(
            setting_lines(ds) + f"\nweight decay {a['lam']:g} on every factor, learning rate {a['eta']:g}, "
            f"n = {a['samples_per_class']}, width {a.get('width_rule', '')}; a run is below a value "
            f"when its objective is below (1 - {rtol:g}) x it. These are upper bounds on the "
            "minimum, not its value.\n"
            + conv
            + DNC_SRG_CAPTION
            + "\nThe best run beats every known construction at: "
            + (", ".join(beats) if beats else "no cell"),
            170,
        ),
        ha="left",
        va="top",
        fontsize=8,
    )


register(
    "ldufm_optimality",
    compute=compute,
    plot=plot,
    description="empirical optimality map: best polished GD objective / L_DNC over K = 2..6, "
    "L = 2..6 (polished setting, best points re-polished), beside the constructions",
)
