"""Figure: convergence of class geometry to softmax codes, and the predicted winning code per depth."""

from __future__ import annotations

import numpy as np
import xarray as xr

from .. import _dims as D
from . import register

NAME = "code_convergence"


# The settings of the figure and of scenarios/codes.py: K of the trajectories,
# keyword arguments of code_convergence_study (spectral starts, reduced ODE) and
# random_start_code_study (random starts, full GD), the code search
# (code_kwargs, None: the defaults) and the winner table over (K, N).
QUICK = dict(
    classes=8,
    spectral=dict(depths=(1, 2, 3, 5), seeds=(0,), t_end=1e8, num_times=25),
    random=dict(depths=(1, 3, 5), seeds=(0,), width=32, eta=0.1, t_end=1e4, num_times=13),
    code_kwargs=dict(starts=32, steps=2000),
    table=dict(classes=(4, 8, 16), factors=tuple(range(2, 9))),
)
FULL = dict(
    classes=8,
    spectral=dict(depths=(1, 2, 3, 4, 5), seeds=(0, 1, 2), t_end=1e12, num_times=49),
    random=dict(depths=(1, 2, 3, 4, 5), seeds=(0, 1), width=32, eta=0.1, t_end=1e5, num_times=25),
    code_kwargs=None,
    table=dict(classes=(4, 8, 16), factors=tuple(range(2, 9))),
)


def compute(quick: bool) -> xr.Dataset:
    return compute_setting(QUICK if quick else FULL)


def compute_setting(cfg: dict) -> xr.Dataset:
    """The figure's dataset for one setting (a dict shaped like :data:`QUICK`)."""
    from svflow.studies._codes import (
        code_convergence_study,
        code_winner_table,
        random_start_code_study,
    )

    K, kw = cfg["classes"], cfg["code_kwargs"]
    runs = code_convergence_study(K, **cfg["spectral"], code_kwargs=kw)
    rand = random_start_code_study(K, **cfg["random"], code_kwargs=kw)
    return combine(runs, rand, code_winner_table(**cfg["table"]))


def combine(runs: xr.Dataset, rand: xr.Dataset, table: xr.Dataset) -> xr.Dataset:
    """One dataset: spectral runs, random runs (``random_*`` on dims ``rdepth, rseed, rtime``), table."""
    rand = rand.rename({"depth": "rdepth", "seed": "rseed", "time": "rtime"})
    rand = rand.rename({v: f"random_{v}" for v in rand.data_vars})
    ds = xr.merge([runs, rand, table], combine_attrs="override")
    ds.attrs["random_starts"] = (
        f"full engine, random_model(width={rand.attrs['width']}, scale={rand.attrs['scale']}), "
        f"GD eta={rand.attrs['eta']}, t_end={rand.attrs['t_end']:g}; rank = numerical rank at t_end"
    )
    ds.attrs["spectral_starts"] = (
        f"reduced ODE, spectral_init(scale={runs.attrs['scale']}, "
        f"spread={runs.attrs['spread']}), t_end={runs.attrs['t_end']:g}; rank = KKT support size"
    )
    ds.attrs["svflow_function"] = (
        "svflow.studies._codes: code_convergence_study, random_start_code_study, code_winner_table"
    )
    return ds


def plot(ds: xr.Dataset):
    import matplotlib.pyplot as plt

    fig = plt.figure(figsize=(13, 8), constrained_layout=True)
    gs = fig.add_gridspec(2, 2)
    ax1, ax2 = fig.add_subplot(gs[0, 0]), fig.add_subplot(gs[0, 1])
    ax4, ax3 = fig.add_subplot(gs[1, 0]), fig.add_subplot(gs[1, 1])
    cmap = plt.get_cmap("viridis")
    _plot_spectral(ax1, ax2, ds, cmap)
    _plot_random(ax4, ds, cmap)
    _plot_winners(fig, ax3, ds)
    return fig


def _plot_spectral(ax1, ax2, ds: xr.Dataset, cmap) -> None:
    """Spectral starts (reduced ODE): rho/rho* over time and Gram distance to the best code."""
    depths = ds[D.DEPTH].values
    t = ds[D.TIME].values
    sel = t > 0
    for a, L in enumerate(depths):
        col = cmap(a / max(1, len(depths) - 1))
        for b, seed in enumerate(ds[D.SEED].values):
            lab = (
                (f"N={L + 1} -> r=" + ",".join(str(int(x)) for x in ds["outcome_rank"].values[a]))
                if b == 0
                else None
            )
            ax1.semilogx(
                t[sel],
                ds["rho_ratio"].values[a, b, sel],
                color=col,
                lw=1.4,
                label=lab,
                ls=["-", "--", ":"][b % 3],
            )
            ax1.plot(
                [t[sel][-1] * 3 * (1.8**a)],
                [ds["limit_rho_ratio"].values[a, b]],
                marker="<",
                color=col,
                ms=7,
            )
            ax2.loglog(
                t[sel],
                ds["gram_distance"].values[a, b, sel],
                color=col,
                lw=1.4,
                ls=["-", "--", ":"][b % 3],
            )
    ax1.set_xlabel("time t")
    ax1.set_ylabel(r"$\rho(t)\,/\,\rho^*(K, r)$")
    ax1.set_title(
        f"K={ds.attrs.get('classes')}: margin ratio (spectral starts, reduced ODE)\n"
        "triangles: limit at the KKT direction",
        fontsize=9,
    )
    ax1.legend(fontsize=8, loc="lower right")
    ax1.grid(alpha=0.3)
    ax2.set_xlabel("time t")
    ax2.set_ylabel("Gram distance to best code (RMS, relabelled)")
    ax2.set_title("distance to the best rank-r softmax code", fontsize=9)
    ax2.grid(alpha=0.3, which="both")


def _plot_random(ax4, ds: xr.Dataset, cmap) -> None:
    """Random Gaussian starts (full engine): rho/rho* over time, when the dataset has them."""
    depths = ds[D.DEPTH].values
    if "random_rho_ratio" in ds:
        rd = ds["rdepth"].values
        rt = ds["rtime"].values
        rs = rt > 0
        for a, L in enumerate(rd):
            col = cmap(list(depths).index(L) / max(1, len(depths) - 1)) if L in depths else "k"
            for b, seed in enumerate(ds["rseed"].values):
                r = int(ds["random_outcome_rank"].values[a, b])
                ax4.semilogx(
                    rt[rs],
                    ds["random_rho_ratio"].values[a, b, rs],
                    color=col,
                    lw=1.4,
                    ls=["-", "--", ":"][b % 3],
                    label=f"N={L + 1}, seed {seed}: r={r}",
                )
        ax4.legend(fontsize=7, loc="lower right", ncol=2)
    ax4.set_xlabel(r"gradient-flow time t = steps $\times$ learning rate $\eta$")
    ax4.set_ylabel(r"$\rho(t)\,/\,\rho^*(K, r)$")
    ax4.set_title(
        "random Gaussian starts (full engine, GD): margin ratio; r = rank at t_end",
        fontsize=9,
    )
    ax4.grid(alpha=0.3)


def _plot_winners(fig, ax3, ds: xr.Dataset) -> None:
    """Table of the predicted winning Walsh code [r, m, d] per (K, N)."""
    Ks = ds["table_classes"].values
    Ns = ds["factors"].values
    frac = np.array(
        [[ds["win_size"].values[i, j] / (K - 1) for j in range(len(Ns))] for i, K in enumerate(Ks)]
    )
    im = ax3.imshow(frac, cmap="coolwarm", vmin=0, vmax=1, aspect="auto")
    fig.colorbar(im, ax=ax3, shrink=0.85, label="r / (K - 1)  (1 = neural collapse)")
    for i, K in enumerate(Ks):
        for j, N in enumerate(Ns):
            r, d = int(ds["win_size"].values[i, j]), int(ds["win_dmin"].values[i, j])
            m = int(np.log2(K))
            txt = f"[{r},{m},{d}]"
            if r == K - 1:
                txt += "\nNC"
            elif r == m and d == 1:
                txt += "\ncube"
            ax3.text(j, i, txt, ha="center", va="center", fontsize=8)
    ax3.set_xticks(range(len(Ns)), [str(n) for n in Ns])
    ax3.set_yticks(range(len(Ks)), [f"K={k}" for k in Ks])
    ax3.set_xlabel("factors N = depth + 1")
    ax3.set_title(
        "predicted winning Walsh code [r, m, d] (max normalised margin):\n"
        "r = rank (code length), m = log2 K, d = minimum Hamming distance;\n"
        "NC = neural collapse (r = K - 1), cube = hypercube code (r = m)",
        fontsize=9,
    )


register(
    NAME,
    compute=compute,
    plot=plot,
    description="rho/rho* over time for spectral starts per depth; predicted winning code per (K, N)",
)
