"""Reduced ODE with weight decay (linear CE model, spectral starts) against the closed
forms."""

from __future__ import annotations

import matplotlib.pyplot as plt
import numpy as np

from ..explicit import weight_decay_endpoints
from . import register


def compute(quick: bool):
    if quick:
        return weight_decay_endpoints(8, (1, 2, 3, 5), (0, 1, 2, 3), weight_decay=1e-3, t_end=1e6)
    return weight_decay_endpoints(16, (1, 2, 3, 4, 6), tuple(range(8)), weight_decay=1e-3, t_end=1e6)


def plot(ds):
    depths = ds["depth"].values
    fig, axes = plt.subplots(2, len(depths), figsize=(3.4 * len(depths), 6.2), squeeze=False)
    t = ds["time"].values
    for j, L in enumerate(depths):
        ax = axes[0, j]
        d = ds.sel(depth=L)
        for s in ds["seed"].values:
            ax.semilogx(t[1:], d["objective"].sel(seed=s).values[1:], lw=1, alpha=0.8)
        ax.axhline(
            float(d["ce_dnc"]), color="k", ls="--", lw=0.9, label="DNC (deep neural collapse) closed form"
        )
        ax.axhline(
            float(d["ce_pairs"]),
            color="C3",
            ls=":",
            lw=1.2,
            label="2x2 blocks closed form",
        )
        ax.axhline(
            float(d["ce_hypercube"]),
            color="C2",
            ls="-.",
            lw=1.0,
            label="hypercube closed form",
        )
        lo = min(float(d["ce_pairs"]), float(d["ce_dnc"]), float(d["ce_hypercube"]))
        ax.set_ylim(lo * 0.9, max(float(d["ce_dnc"]), float(d["ce_pairs"])) * 1.2)
        ax.set_title(
            f"L = {L}: final - best = "
            f"{float((d['objective'].isel(time=-1) - d['ce_best']).min()):.1e}..."
            f"{float((d['objective'].isel(time=-1) - d['ce_best']).max()):.1e}",
            fontsize=8,
        )
        ax.set_xlabel("gradient-flow time t")
        if j == 0:
            ax.set_ylabel("objective")
            ax.legend(fontsize=7)
        ax = axes[1, j]
        for k, s in enumerate(ds["seed"].values):
            lam = d["lam"].sel(seed=s).isel(time=-1).values
            ax.plot(
                np.arange(lam.size) + 0.08 * (k - 1.5),
                lam,
                "o",
                ms=4,
                label=f"seed {s}: {int(d['surviving_modes'].sel(seed=s))} modes",
            )
        ax.set_xlabel("Walsh mode i")
        if j == 0:
            ax.set_ylabel(r"final logit eigenvalue $\lambda_i$")
        ax.legend(fontsize=6)
    fig.suptitle(
        f"deep linear CE with weight decay {ds.attrs['weight_decay']:g}, "
        f"K = {ds.attrs['classes']}: "
        "reduced ODE end points vs the closed-form losses of the explicit constructions",
        fontsize=10,
    )
    fig.tight_layout()
    return fig


register(
    "explicit_ode",
    compute=compute,
    plot=plot,
    description="reduced ODE with weight decay: surviving modes, final loss vs closed forms",
)
