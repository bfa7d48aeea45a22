"""Logit eigenvalues lambda_i(t) over log-time for depths L = 1..5 from one start.

Two-layer training (L = 1) pulls every mode together (neural collapse); deeper
networks let the largest modes escape first and freeze the rest (low rank).
"""

from __future__ import annotations

import matplotlib.pyplot as plt
import numpy as np
import xarray as xr

import svflow

from .. import _dims as D
from . import register

K = 8
DEPTHS = (1, 2, 3, 4, 5)
SCALE, SPREAD, SEED = 1e-2, 0.5, 0


def compute(quick: bool) -> xr.Dataset:
    t_end = 1e8
    runs = []
    for L in DEPTHS:
        start = svflow.spectral_init(K, L, scale=SCALE, spread=SPREAD, seed=SEED)
        ds = svflow.simulate(K, L, init=start, t_end=t_end, num_times=121 if quick else 321)
        runs.append(ds[["lam", "loss", "margin", "rank"]])
    out = xr.concat(
        runs, dim=xr.DataArray(list(DEPTHS), dims="depth", name="depth"), combine_attrs="drop_conflicts"
    )
    out["depth"].attrs = D.attrs(D.DEPTH)
    out.attrs.update(
        title="lambda_i(t) from one Hadamard start, depths 1..5",
        classes=K,
        init=f"spectral_init(scale={SCALE}, spread={SPREAD}, seed={SEED})",
        loss_name="ce",
        t_end=t_end,
    )
    for k in ("depth", "factors", "num_steps", "wall_time_s"):
        out.attrs.pop(k, None)
    return out


def plot(ds: xr.Dataset):
    depths = ds["depth"].values
    fig, axes = plt.subplots(1, len(depths), figsize=(3.1 * len(depths), 3.3), sharey=True)
    colors = plt.cm.viridis(np.linspace(0, 0.9, ds.sizes["mode"] - 1))
    t = ds.time.values[1:]
    for ax, L in zip(np.atleast_1d(axes), depths):
        lam = ds.lam.sel(depth=L).values[1:]
        for i in range(1, ds.sizes["mode"]):
            ax.loglog(t, lam[:, i], color=colors[i - 1], lw=1.4, label=rf"$\lambda_{i}$")
        r = int(ds["rank"].sel(depth=L).values[-1])
        ax.set_title(f"L = {L} (N = {L + 1})\nrank at t = {t[-1]:.0e}: {r}", fontsize=10)
        ax.set_xlabel("gradient-flow time t")
        ax.grid(alpha=0.3, which="major")
    np.atleast_1d(axes)[0].set_ylabel(r"logit eigenvalue $\lambda_i(t)$")
    np.atleast_1d(axes)[-1].legend(fontsize=7, loc="upper left")
    fig.suptitle(
        f"K = {ds.attrs['classes']}, cross-entropy, one Hadamard start "
        rf"$\lambda(0) = \varepsilon u$, $\varepsilon$ = {SCALE}, $u \sim U[0.5, 1.5]$",
        fontsize=11,
    )
    fig.tight_layout()
    return fig


register(
    "singular_values",
    compute=compute,
    plot=plot,
    description="lambda_i(t) over log-time, depths 1..5, K = 8: NC at L = 1, low rank deeper",
)
