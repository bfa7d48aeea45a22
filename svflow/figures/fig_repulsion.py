"""Early-time repulsion (N >= 3) / attraction (N = 2) of Walsh modes vs mu series."""

from __future__ import annotations

from typing import Any

import matplotlib.pyplot as plt
import numpy as np
import xarray as xr

from ..studies import repulsion
from . import register

# The settings of the figure and of scenarios/repulsion.py (keyword arguments of
# svflow.studies.repulsion).
QUICK: dict[str, Any] = dict(classes=8, depths=(1, 2, 3, 5), eps=1e-3, lag=0.5, lam_cap=0.5, num_times=201)
FULL: dict[str, Any] = dict(classes=8, depths=(1, 2, 3, 4, 5), eps=1e-4, lag=0.5, lam_cap=1.0, num_times=801)


def compute(quick: bool) -> xr.Dataset:
    return repulsion(**(QUICK if quick else FULL))


def plot(ds: xr.Dataset):
    depths = ds["depth"].values
    j, k = ds.attrs.get("pair", [1, 3])
    fig, axes = plt.subplots(2, len(depths), figsize=(2.9 * len(depths), 5.6), sharex=True, squeeze=False)
    styles = {
        "order0": ("C1", "--", "leading order (1 - mu = 1)"),
        "order1": ("C2", ":", "first order in mu"),
        "order2": ("C0", "-", "second order in mu"),
    }
    for c, d in enumerate(depths):
        x = ds.sel(depth=d)
        lj = x["lam_j"].values
        meas = x["measured"].values
        ax, ax2 = axes[0, c], axes[1, c]
        for name, (col, ls, lab) in styles.items():
            ax.plot(lj, x[name].values, color=col, ls=ls, lw=1.4, label=lab)
            err = np.abs(x[name].values - meas) / np.abs(meas)
            ax2.plot(lj, np.maximum(err, 1e-12), color=col, ls=ls, lw=1.4)
        ax.plot(lj[::8], meas[::8], "k.", ms=4, label="measured (finite differences)")
        ax.axhline(0, color="0.6", lw=0.6)
        ax.set_xscale("log")
        ax2.set_xscale("log")
        ax2.set_yscale("log")
        kind = "attraction" if d + 1 == 2 else "repulsion"
        ax.set_title(f"L = {d} (N = {d + 1}): {kind}", fontsize=10)
        ax2.set_xlabel(f"$\\lambda_{j}$")
        if c == 0:
            ax.set_ylabel(f"$d/dt\\,\\log(\\lambda_{j}/\\lambda_{k})$")
            ax2.set_ylabel("relative error vs measured")
    axes[0, 0].legend(fontsize=7, loc="best")
    fig.suptitle(
        f"K = {ds.attrs.get('classes')}, start: weight-one modes at "
        f"eps = {ds.attrs.get('eps'):g}, "
        f"the others lag by {ds.attrs.get('lag'):g}; pair (j, k) = ({j}, {k})",
        fontsize=10,
    )
    fig.tight_layout()
    return fig


register(
    "repulsion",
    compute=compute,
    plot=plot,
    description="d/dt log(lam_j/lam_k) at early times vs the mu-series prediction",
)
