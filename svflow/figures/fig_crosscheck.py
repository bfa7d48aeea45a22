r"""Cross-check: full-parameter GD from a spectral start against the reduced ODE.

K = 8, L = 3 (N = 4 factors), d = 16, cross-entropy, float64. Left: the logit
eigenvalues $\lambda_i(t)$ of the reduced ODE (lines) and of full GD
(markers) over log time. Right: the largest relative error of $\lambda$
against the step size, with a slope-1 guide (first-order agreement).
"""

from __future__ import annotations

import numpy as np
import xarray as xr

from . import register

K, DEPTH, WIDTH = 8, 3, 16


def compute(quick: bool) -> xr.Dataset:
    import jax.numpy as jnp

    import svflow
    from svflow._full.train import step_grid

    lam0 = np.array([0.0, 1.0, 0.8, 0.6, 0.9, 0.7, 0.5, 1.1])
    etas = [0.04, 0.02, 0.01] if quick else [0.08, 0.04, 0.02, 0.01, 0.005]
    t_end = 30.0 if quick else 300.0
    model = svflow.spectral_model(lam0, depth=DEPTH, width=WIDTH, key=0, dtype=jnp.float64)
    # one time grid shared by every step size: multiples of the largest eta
    coarse = max(etas)
    times = step_grid(int(round(t_end / coarse)), 41) * coarse
    reduced = svflow.simulate(K, DEPTH, init=lam0, times=times, solver=svflow.Solver(rtol=1e-11, atol=1e-13))
    fulls, cmps = [], []
    for eta in etas:
        full = svflow.train(model, eta=eta, times=times)
        fulls.append(full)
        cmps.append(svflow.compare(reduced, full))
    ds = xr.Dataset(
        {
            "lam_reduced": reduced["lam"],
            "lam_full": xr.concat([f["lam"] for f in fulls], dim="eta"),
            "frame_drift": xr.concat([f["frame_drift"] for f in fulls], dim="eta"),
            "rel_error": xr.concat([c["rel_error"] for c in cmps], dim="eta"),
            "max_rel_error": xr.concat([c["max_rel_error"] for c in cmps], dim="eta"),
        },
        coords={"eta": ("eta", np.asarray(etas), {"long_name": "GD step size"})},
    )
    e = ds["max_rel_error"].values
    slope = np.polyfit(np.log(etas), np.log(e), 1)[0]
    ds.attrs.update(
        title="full GD vs reduced ODE (spectral start)",
        classes=K,
        depth=DEPTH,
        width=WIDTH,
        t_end=t_end,
        loss_name="ce",
        observed_order=float(slope),
        dtype="float64",
        device=fulls[0].attrs["device"],
    )
    return ds


def plot(ds: xr.Dataset):
    import matplotlib.pyplot as plt

    fig, (ax, bx) = plt.subplots(1, 2, figsize=(10, 4), constrained_layout=True)
    t = ds["time"].values
    pos = t > 0
    colors = plt.cm.viridis(np.linspace(0, 0.9, ds.sizes["mode"]))
    fine = ds["lam_full"].isel(eta=-1)
    for i in range(1, ds.sizes["mode"]):
        ax.plot(t[pos], ds["lam_reduced"].values[pos, i], color=colors[i], lw=1.5)
        ax.plot(
            t[pos][::2],
            fine.values[pos, i][::2],
            "o",
            ms=3.5,
            mfc="none",
            color=colors[i],
        )
    ax.set(
        xscale="log",
        yscale="log",
        xlabel=r"gradient-flow time t = steps $\times$ learning rate $\eta$",
        ylabel=r"$\lambda_i(t)$",
        title=f"K={ds.attrs['classes']}, L={ds.attrs['depth']}, d={ds.attrs['width']}: "
        f"lines: reduced ODE, o: full GD ($\\eta$ = {float(ds.eta[-1]):g})",
    )
    ax.title.set_fontsize(9)
    etas = ds["eta"].values
    err = ds["max_rel_error"].values
    bx.loglog(etas, err, "o-", label="max_t relative error of lambda")
    bx.loglog(etas, err[-1] * etas / etas[-1], "k--", lw=1, label="slope 1")
    drift = float(ds["frame_drift"].max())
    bx.set(
        xlabel=r"learning rate (step size) $\eta$",
        ylabel=r"$\max_t \|\lambda^{GD}-\lambda^{ODE}\| / \|\lambda^{ODE}\|$",
        title=f"observed order {ds.attrs['observed_order']:.2f}; max frame drift {drift:.1e}",
    )
    bx.title.set_fontsize(10)
    # label the learning rates run, not the log axis' minor ticks (they collide)
    from matplotlib.ticker import FixedLocator, NullLocator

    bx.xaxis.set_major_locator(FixedLocator([float(e) for e in etas]))
    bx.xaxis.set_minor_locator(NullLocator())
    bx.set_xticklabels([f"{e:g}" for e in etas])
    bx.legend(fontsize=8)
    return fig


register(
    "crosscheck",
    compute=compute,
    plot=plot,
    description="full GD vs reduced ODE: lambda(t) and error vs eta (order 1)",
)
