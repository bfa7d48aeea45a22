"""Gradient descent on the L-DUFM (ReLU, squared loss, weight decay): Figures 2, 3
(middle, right), 5 and 6 of Sukenik, Lampert & Mondelli (2024).

Settings come from :data:`svflow.explicit._ldufm_studies.LDUFM_STUDIES` (shared with the
scenarios); every figure prints what the paper fixes and what was chosen here,
init scale included: the init scale decides which minimum GD finds.
"""

from __future__ import annotations

import matplotlib.pyplot as plt
import numpy as np

from .. import _dims as D
from ..explicit._ldufm_studies import LDUFM_STUDIES
from . import register
from ._ldufm_common import (
    add_caption,
    integer_axis,
)

_SCALE_COLORS = ("C0", "C1", "C4", "C5")


def _compute(name):
    def compute(quick: bool, progress: bool = False):
        return LDUFM_STUDIES[name].compute("quick" if quick else "full", progress=progress)

    return compute


def _scalar(da) -> float:
    return float(np.asarray(da.values).ravel()[0])


def _rows(ds):
    """(row label, sub-dataset, colour dim values) for the GD-run figures."""
    if "classes" in ds.dims:
        return [(f"K = {int(K)}", ds.sel(classes=K), True) for K in ds["classes"].values]
    return [(None, ds, True)]


def _run_panels(axes, d, K, L, samples):
    """Objective / L_DNC over t, NC1 over t (n > 1), ranks per layer, spectra; with a
    second row of axes (``axes`` of 8): the fit / regularisation split, the rank
    over training, the matrix pictures of the lowest-loss run."""
    scales = d["scale"].values if "scale" in d.dims else [d.attrs.get("init_scale")]
    best_val, best_pick = _panel_objective(axes[0], d, K, L, scales)
    over_t = axes[1]
    if len(axes) > 4:
        _panel_split(axes[1], d, scales)
        over_t = axes[4]
    if samples > 1 and "nc1_layer_t" not in d:  # datasets from before the records
        _panel_nc1_end(over_t, d, samples, scales)
    elif samples > 1:
        _panel_nc1_time(over_t, d, samples, scales)
    else:
        _panel_rank_time(over_t, d, K, L, scales)
    _panel_layer_ranks(axes[2], d, K, scales)
    _panel_best_spectra(axes[3], d, K, best_val / _scalar(d["L_DNC"]), best_pick)
    if len(axes) > 4:
        _panel_matrices(axes[5:8], d, K, L, best_pick, best_val / _scalar(d["L_DNC"]))


def _by_scale(d, scales):
    """(index, init scale, the runs of that scale, its colour) for each init scale."""
    for k, s in enumerate(scales):
        yield k, s, (d.sel(scale=s) if "scale" in d.dims else d), _SCALE_COLORS[k % len(_SCALE_COLORS)]


def _panel_objective(ax, d, K, L, scales):
    """Objective / L_DNC over t for every run; returns (lowest final objective, (scale, seed))."""
    Ld = _scalar(d["L_DNC"])
    Lb = _scalar(d["L_best"])
    t = d[D.TIME].values
    best_val, best_pick = np.inf, None
    for k, s, ds_s, col in _by_scale(d, scales):
        ndnc = int(ds_s["is_dnc"].sum())
        for j, seed in enumerate(ds_s["seed"].values):
            obj = ds_s["objective"].sel(seed=seed).values
            ax.semilogx(
                t[1:],
                obj[1:] / Ld,
                color=col,
                lw=0.9,
                alpha=0.8,
                label=f"init scale {s:g}: {ndnc}/{ds_s.sizes['seed']} runs end in DNC" if j == 0 else None,
            )
            if obj[-1] < best_val:
                best_val, best_pick = obj[-1], (s, seed)
    ax.axhline(1.0, color="k", ls="--", lw=1, label="L_DNC")
    if Lb < Ld * (1 - 1e-9):
        ax.axhline(Lb / Ld, color="C3", ls=":", lw=1.3, label="L_SRG (best known)")
    finals = d["final_objective"].values / Ld
    off = finals > 1.55
    top = 1.6 if not off.all() else 1.05 * max(0.5 / Ld, np.nanmax(finals))
    if off.any() and not off.all():
        ax.text(
            0.98,
            0.97,
            f"{int(off.sum())} of {off.size} runs end above the frame "
            f"(up to {np.nanmax(finals):.2f} x L_DNC)",
            transform=ax.transAxes,
            ha="right",
            va="top",
            fontsize=6,
        )
    if 0.5 / Ld <= top:
        ax.axhline(0.5 / Ld, color="gray", ls="-.", lw=1, label="trivial point (loss 1/2)")
    ax.set_ylim(0.85 * min(Lb / Ld, float(np.nanmin(finals))), top)
    ax.set_xlabel("t = steps x learning rate")
    ax.set_ylabel("objective / L_DNC")
    ax.legend(fontsize=6)
    ax.set_title(f"K = {K}, L = {L}: objective over training", fontsize=8)
    return best_val, best_pick


def _panel_nc1_end(ax, d, samples, scales):
    """NC1 per layer at the end of every run (datasets without records over training)."""
    layers = d["layer"].values
    for k, s, ds_s, col in _by_scale(d, scales):
        for j, seed in enumerate(ds_s["seed"].values):
            ax.semilogy(
                np.arange(len(layers)),
                np.where(nc_end := ds_s["nc1_layer"].sel(seed=seed).values, nc_end, np.nan),
                "o-",
                ms=2.5,
                lw=0.6,
                color=col,
                label=f"init scale {s:g}" if j == 0 else None,
            )
    ax.axhspan(1e-40, 1e-20, color="0.9", zorder=0, label="round-off level (NC1 < 1e-20)")
    ax.set_xticks(np.arange(len(layers)), layers, fontsize=6, rotation=45)
    ax.set_ylabel("NC1 = tr(S_W S_B^+)/K at the end (not clipped)")
    ax.set_title(
        f"NC1 per layer at the end (n = {samples}; this dataset has no records over training)",
        fontsize=7,
    )
    ax.legend(fontsize=6)


def _panel_nc1_time(ax, d, samples, scales):
    """Within-class collapse NC1 (max over layers) over training, every run.

    Drawn as computed, not clipped: values near 1e-27 are the round-off floor of
    float64 covariances (the within-class spread has collapsed to round-off)."""
    t = d[D.TIME].values
    for k, s, ds_s, col in _by_scale(d, scales):
        for j, seed in enumerate(ds_s["seed"].values):
            nc = ds_s["nc1_layer_t"].sel(seed=seed).max("layer").values
            ax.loglog(
                t[1:],
                np.where(nc[1:] > 0, nc[1:], np.nan),
                color=col,
                lw=0.9,
                alpha=0.8,
                label=f"init scale {s:g}" if j == 0 else None,
            )
    ax.axhspan(1e-40, 1e-20, color="0.9", zorder=0, label="round-off level (NC1 < 1e-20)")
    ax.set_xlabel("t = steps x learning rate")
    ax.set_ylabel("NC1 = tr(S_W S_B^+)/K, max over layers")
    ax.set_title(f"within-class collapse NC1 over training (n = {samples}), not clipped", fontsize=8)
    ax.legend(fontsize=6)


def _panel_rank_time(ax, d, K, L, scales):
    """Rank of the pre-activation before the last ReLU over training (n = 1: no NC1)."""
    t = d[D.TIME].values
    for k, s, ds_s, col in _by_scale(d, scales):
        L_name = f"pre{L - 1}"
        for j, seed in enumerate(ds_s["seed"].values):
            rk = ds_s["rank_layer_t"].sel(seed=seed, layer=L_name).values
            ax.semilogx(
                t[1:],
                rk[1:],
                drawstyle="steps-post",
                color=col,
                lw=0.9,
                alpha=0.8,
                label=f"init scale {s:g}" if j == 0 else None,
            )
    integer_axis(ax.yaxis)
    ax.set_ylim(-0.5, K + 0.5)
    ax.set_xlabel("t = steps x learning rate")
    ax.set_ylabel(f"rank of the pre-activation of W_{L - 1}")
    ax.set_title(
        f"K = {K}: rank before the last ReLU over training (n = 1: no NC1);\nintegers, not offset: "
        "runs with the same rank share a line",
        fontsize=8,
    )
    ax.legend(fontsize=6)


def _panel_split(ax, d, scales):
    """The objective's two parts over training, fit (mean squared loss) and
    regularisation (weight-decay penalty), for the lowest-loss run of each init scale."""
    t = d[D.TIME].values
    Ld = _scalar(d["L_DNC"])
    for k, s, ds_s, col in _by_scale(d, scales):
        seed = ds_s["seed"].values[int(np.nanargmin(ds_s["final_objective"].values))]
        run = ds_s.sel(seed=seed)
        fit, reg = run["fit_t"].values, run["regularisation_t"].values
        lab = f"init scale {s:g}, seed {int(seed)}"
        ax.loglog(t[1:], fit[1:] / Ld, color=col, lw=1.3, label=f"fit, {lab}: {fit[-1] / Ld:.3f}")
        ax.loglog(
            t[1:], reg[1:] / Ld, color=col, lw=1.3, ls="--", label=f"regularisation: {reg[-1] / Ld:.3f}"
        )
    ax.axhline(1.0, color="k", ls=":", lw=0.8, label="L_DNC")
    ax.set_xlabel("t = steps x learning rate")
    ax.set_ylabel("part of the objective / L_DNC")
    ax.set_title(
        "objective = fit + regularisation, lowest run per init scale\n"
        "(fit: 1/(2Kn)||Z - Y||^2; regularisation: (wd/2) sum ||F||^2; end values in the legend)",
        fontsize=7,
    )
    ax.legend(fontsize=6)


def _nonzero_rows(M, rtol=1e-8):
    """Rows of M (NaN padding dropped) with an entry above ``rtol`` x max |M|."""
    M = M[~np.all(np.isnan(M), axis=1)]
    top = np.max(np.abs(M)) if M.size else 0.0
    keep = np.max(np.abs(M), axis=1) > rtol * top if top > 0 else np.zeros(len(M), bool)
    return M[keep], int(keep.sum()), len(M)


def _heat(ax, M, title, colorbar=True):
    v = float(np.max(np.abs(M))) if M.size else 0.0
    im = ax.imshow(M, cmap="RdBu_r", vmin=-v or -1, vmax=v or 1, interpolation="nearest", aspect="auto")
    ax.set_title(title, fontsize=7)
    integer_axis(ax.xaxis)
    integer_axis(ax.yaxis)
    ax.tick_params(labelsize=6)
    if colorbar:
        ax.figure.colorbar(im, ax=ax, fraction=0.046, pad=0.03).ax.tick_params(labelsize=6)


def _panel_matrices(axes, d, K, L, best_pick, best_ratio):
    """The paper's matrix pictures of the lowest-loss run: M_(L-1) (the class means
    entering the last ReLU layer), the pre-activation M~_L = W_(L-1) M_(L-1) and the
    Gram matrix M_(L-1)^T M_(L-1)."""
    s, seed = best_pick
    db = d.sel(scale=s, seed=seed) if "scale" in d.dims else d.sel(seed=seed)
    if "class_means" not in db:
        for ax in axes:
            ax.axis("off")
        axes[0].text(0.0, 0.5, "this dataset has no class-mean matrices", fontsize=8)
        return
    cols = slice(0, K)
    last, pre = f"post{L - 2}", f"pre{L - 1}"
    M = db["class_means"].sel(layer=last).values[:, cols]
    P = db["class_means"].sel(layer=pre).values[:, cols]
    G = db["gram"].sel(layer=last).values[cols, cols]
    run = f"init scale {s:g}, seed {int(seed)}: {best_ratio:.3f} x L_DNC"
    Mr, m_live, d_rows = _nonzero_rows(M)
    if m_live == 0:
        for ax in axes:
            ax.axis("off")
        axes[0].text(
            0.0,
            0.5,
            f"lowest-loss run ({run}):\nevery class mean of M{L - 1} = {last} is exactly 0\n"
            "(the zero network): no matrix to draw",
            fontsize=8,
            va="center",
        )
        return
    rk = int(db["rank_layer"].sel(layer=last))
    rk_pre = int(db["rank_layer"].sel(layer=pre))
    _heat(
        axes[0],
        Mr,
        f"M{L - 1} = class means of {last}, rank {rk}\n({m_live} of {d_rows} units non-zero shown; {run})",
    )
    axes[0].set_xlabel("class", fontsize=7)
    axes[0].set_ylabel("unit (non-zero rows)", fontsize=7)
    Pr, p_live, _ = _nonzero_rows(P)
    _heat(
        axes[1],
        Pr,
        f"M~{L} = W_{L - 1} M{L - 1} (pre-activation {pre}), rank {rk_pre}\n({p_live} non-zero units)",
    )
    axes[1].set_xlabel("class", fontsize=7)
    axes[1].set_ylabel("unit (non-zero rows)", fontsize=7)
    _heat(axes[2], G, f"M{L - 1}^T M{L - 1}: class inner products (Gram), rank {rk}")
    axes[2].set_xlabel("class", fontsize=7)
    axes[2].set_ylabel("class", fontsize=7)


def _panel_layer_ranks(ax, d, K, scales):
    """Class-mean rank of every layer at the end of every run."""
    layers = d["layer"].values
    for k, s, ds_s, col in _by_scale(d, scales):
        nseed = ds_s.sizes["seed"]
        for j, seed in enumerate(ds_s["seed"].values):
            rk = ds_s["rank_layer"].sel(seed=seed).values
            ax.plot(
                np.arange(len(layers)) + 0.25 * (k - 0.5) + 0.02 * (j - nseed / 2),
                rk,
                "o-",
                ms=2.5,
                lw=0.6,
                alpha=0.7,
                color=col,
                label=f"init scale {s:g}" if j == 0 else None,
            )
    ax.set_xticks(np.arange(len(layers)), layers, fontsize=6, rotation=45)
    integer_axis(ax.yaxis)
    ax.set_ylim(-0.5, K + 0.5)
    ax.set_ylabel("numerical rank of the class means")
    ax.set_title(
        "rank per layer at the end (every run; integers,\ndots shifted sideways per init scale and run)",
        fontsize=8,
    )
    ax.legend(fontsize=6)


def _panel_best_spectra(ax, d, K, best_ratio, best_pick):
    """Class-mean spectra of every layer of the lowest-loss run."""
    layers = d["layer"].values
    s, seed = best_pick
    db = d.sel(scale=s, seed=seed) if "scale" in d.dims else d.sel(seed=seed)
    zero = []
    for i, name in enumerate(layers):
        sv = db["sv_layer"].sel(layer=name).values[:K]
        if not sv[0] > 0:  # a layer whose class means are all 0 (the zero network)
            zero.append(str(name))
            continue
        ax.semilogy(
            np.arange(1, K + 1),
            np.maximum(sv / sv[0], 1e-12),
            "o-",
            ms=3,
            label=name,
            color=plt.cm.viridis(i / max(len(layers) - 1, 1)),
        )
    if zero:
        ax.text(
            0.02,
            0.02,
            f"class means exactly 0 (not drawn): {', '.join(zero)}",
            transform=ax.transAxes,
            fontsize=6,
            va="bottom",
        )
    ax.axhline(d.attrs.get("rank_rtol", 1e-3), color="gray", lw=0.7)
    ax.set_ylim(1e-8, 2)
    integer_axis(ax.xaxis)
    ax.set_xlabel("index i")
    ax.set_ylabel("sigma_i / sigma_1 of the class means")
    ax.set_title(
        f"spectra of the lowest-loss run (init scale {s:g}, seed {int(seed)}): {best_ratio:.3f} x L_DNC",
        fontsize=7,
    )
    if len(zero) < len(layers):
        ax.legend(fontsize=5, ncol=2)


def _failed_note(d) -> str:
    """A note for a row whose runs all fail: kept, because the init scale decides
    which minimum GD finds, and this scale finds none below the trivial point."""
    finals = d["final_objective"].values.ravel()
    if np.all(np.abs(finals - 0.5) <= 1e-3 * 0.5):
        return (
            f"\nall {finals.size} runs collapse to the zero network (loss 1/2); row kept:"
            "\nthe init scale decides which minimum GD finds"
        )
    if not d["is_dnc"].values.any() and np.all(finals > float(d["L_DNC"].values.ravel()[0])):
        return f"\nall {finals.size} runs stall above L_DNC; row kept: the init scale decides"
    return ""


def _plot_runs(ds, row_dim=None, matrices=False):
    L = int(ds.attrs["depth"])
    samples = int(ds.attrs["samples_per_class"])
    if "classes" in ds.dims:
        rows = [(int(K), ds.sel(classes=K)) for K in ds["classes"].values]
        rows = [(K, d.isel(sv=slice(0, K))) for K, d in rows]
        rows_by = "classes"
    elif "scale" in ds.dims and row_dim == "scale":
        K = int(ds.attrs["classes"])
        rows = [(K, ds.sel(scale=[s])) for s in ds["scale"].values]
        rows_by = "scale"
    else:
        rows = [(int(ds.attrs["classes"]), ds)]
        rows_by = None
    per = 2 if matrices else 1  # rows of panels per K or init scale
    fig, axes = plt.subplots(per * len(rows), 4, figsize=(17, 3.6 * per * len(rows) + 0.4), squeeze=False)
    for i, (K, d) in enumerate(rows):
        ax_row = np.concatenate(axes[per * i : per * (i + 1)])
        _run_panels(ax_row, d, K, L, samples)
        if rows_by == "scale":
            ax_row[0].set_title(
                f"K = {K}, L = {L}, init scale {float(d['scale'].values[0]):g}" + _failed_note(d),
                fontsize=8,
            )
    a = ds.attrs
    fig.suptitle(
        f"GD on the L-DUFM: L = {L}, width {a['width']}, weight decay {a['lam']:g} "
        f"(every factor), learning rate {a['eta']:g}, n = {samples} samples per class, "
        f"{a['steps']:.0e} steps",
        fontsize=10,
    )
    fig.tight_layout(rect=(0, 0, 1, 1 - 0.35 / fig.get_figheight()))  # room for the title
    text = (
        "A run ends in DNC when every layer's class means have rank K and its "
        "objective is within 1% of L_DNC. Rank: sigma_i > "
        f"{a.get('rank_rtol', 1e-3):g} sigma_1 (grey line, spectra panel)."
    )
    if matrices:
        text += (
            " Layers: M1 = H, M(l+1) = ReLU(W_l M_l) (svflow's post<l>), pre<l> = W_l M_l "
            f"before the ReLU; M{L - 1} = post{L - 2} enters the last hidden layer, M~{L} = pre{L - 1} "
            "is its pre-activation (the paper's bottleneck pictures). Matrix pictures: the class-mean "
            "matrices at the end of GD of the lowest-loss run, one symmetric colour scale per panel "
            "(red > 0, blue < 0), units whose class means are all 0 (dead ReLUs) left out."
        )
    add_caption(fig, ds, text)
    return fig


def plot_fig2(ds):
    return _plot_runs(ds, row_dim="scale")


def plot_fig5(ds):
    return _plot_runs(ds, matrices=True)


def plot_fig6(ds):
    return _plot_runs(ds, row_dim="scale", matrices=True)


def plot_fig3_middle(ds):
    fig, axes = plt.subplots(1, 2, figsize=(11, 4))
    lams = ds["lam"].values
    ax = axes[0]
    for i, name in enumerate(ds["layer"].values):
        ax.semilogx(
            lams,
            ds["rank_layer"].sel(layer=name).mean("seed"),
            "o-",
            ms=3,
            label=name,
            color=plt.cm.viridis(i / max(ds.sizes["layer"] - 1, 1)),
        )
    integer_axis(ax.yaxis)
    ax.set_xlabel("weight decay (every factor)")
    ax.set_ylabel(f"numerical rank at the end (mean over {ds.sizes['seed']} runs)")
    ax.set_title(
        f"K = {ds.attrs['classes']}, L = {ds.attrs['depth']}, width "
        f"{ds.attrs['width']}, init scale {ds.attrs.get('init_scale', 1.0):g}",
        fontsize=9,
    )
    ax.legend(fontsize=7, ncol=2)
    ax = axes[1]
    fin = ds["final_objective"]
    ax.semilogx(lams, (fin / ds["L_DNC"]).values, "o", color="C0", alpha=0.6)
    ax.plot([], [], "o", color="C0", alpha=0.6, label="GD runs")
    ax.semilogx(
        lams,
        (ds["L_best"] / ds["L_DNC"]).values,
        "s-",
        color="C3",
        label="L_SRG / L_DNC (best known construction)",
    )
    ax.axhline(1, color="k", ls="--", lw=1, label="L_DNC")
    ax.set_xlabel("weight decay (every factor)")
    ax.set_ylabel("final objective / L_DNC")
    # the legend gets its own band below every point (it hid runs at 0.88-0.92)
    lowest = float(np.nanmin(np.concatenate([(fin / ds["L_DNC"]).values.ravel(), [0.80]])))
    ax.set_ylim(lowest - 0.1, 1.02)
    ax.set_title(f"learning rate {ds.attrs['eta']:g}, {ds.attrs['steps']:.0e} steps", fontsize=9)
    ax.legend(fontsize=7, loc="lower center", ncol=3, columnspacing=1.0, handletextpad=0.4)
    fig.suptitle("Rank against weight decay (Fig. 3 middle)", fontsize=10)
    fig.tight_layout()
    add_caption(fig, ds, y=-0.03, width=150)
    return fig


def plot_fig3_right(ds):
    fig, axes = plt.subplots(1, 2, figsize=(11, 4))
    w = ds["width"].values
    ax = axes[0]
    ax.plot(w, ds["is_dnc"].mean("seed"), "o-")
    ax.set_ylim(-0.05, 1.05)
    ax.set_xlabel("width")
    ax.set_ylabel("fraction of runs ending in DNC")
    ax.set_title(
        f"K = {ds.attrs['classes']}, L = {ds.attrs['depth']}, weight decay "
        f"{ds.attrs['lam']:g}, init scale {ds.attrs.get('init_scale', 1.0):g}, "
        f"{ds.sizes['seed']} runs per width",
        fontsize=9,
    )
    ax = axes[1]
    L = int(ds.attrs["depth"])
    mid = ds["rank_layer"].sel(layer=f"pre{L - 1}")
    ax.plot(w, mid.values, "o", color="C0", alpha=0.4)
    ax.plot(w, mid.mean("seed"), "-", color="C0", label=f"pre-activation of W_{L - 1}")
    ax.plot(
        w,
        ds["rank_layer"].sel(layer="H").mean("seed"),
        "--",
        color="C1",
        label="H (mean)",
    )
    integer_axis(ax.yaxis)
    ax.set_xlabel("width")
    ax.set_ylabel("numerical rank of the class means")
    ax.set_title(f"learning rate {ds.attrs['eta']:g}, {ds.attrs['steps']:.0e} steps", fontsize=9)
    ax.legend(fontsize=7)
    fig.suptitle("Runs ending in DNC against width (Fig. 3 right)", fontsize=10)
    fig.tight_layout()
    add_caption(
        fig,
        ds,
        "A run ends in DNC when every layer's class means have rank K and its "
        "objective is within 1% of L_DNC.",
        y=-0.03,
        width=165,  # 150 left the first line's last word alone on the next
    )
    return fig


def _describe(name, what):
    s = LDUFM_STUDIES[name]
    return f"{s.paper}: {what}"


register(
    "ldufm_fig2",
    compute=_compute("ldufm_fig2"),
    plot=plot_fig2,
    description=_describe(
        "ldufm_fig2",
        "GD at K=10, L=4, weight decay 0.004, width 30; init scales 0.55, 1.0, 1.5: "
        "loss / L_DNC, NC1 over training, ranks, spectra",
    ),
)
register(
    "ldufm_fig3_middle",
    compute=_compute("ldufm_fig3_middle"),
    plot=plot_fig3_middle,
    description=_describe("ldufm_fig3_middle", "numerical rank per layer against weight decay"),
)
register(
    "ldufm_fig3_right",
    compute=_compute("ldufm_fig3_right"),
    plot=plot_fig3_right,
    description=_describe("ldufm_fig3_right", "fraction of runs ending in DNC against width"),
)
register(
    "ldufm_fig5",
    compute=_compute("ldufm_fig5"),
    plot=plot_fig5,
    description=_describe("ldufm_fig5", "GD for K = 3, 4, 5 at L = 4 (low-rank solutions)"),
)
register(
    "ldufm_fig6",
    compute=_compute("ldufm_fig6"),
    plot=plot_fig6,
    description=_describe("ldufm_fig6", "GD for K = 15 at L = 7"),
)
