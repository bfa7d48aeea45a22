"""Basins of attraction of neural collapse over (initial scale, lag), per depth."""

from __future__ import annotations

import matplotlib.pyplot as plt
import numpy as np
import xarray as xr
from matplotlib.colors import BoundaryNorm, ListedColormap
from matplotlib.patches import Patch

from ..studies import basin_map, basin_width
from . import register

DEPTHS = (1, 2, 3, 4, 5)


def basin_study(
    classes=(8,),
    families=("lag",),
    *,
    n_eps=5,
    n_delta=12,
    seeds=(0, 1, 2, 3),
    t_end=1e8,
    num_times=121,
) -> xr.Dataset:
    """Basin maps for several K and families, merged along a ``classes`` dim.

    Variables ``outcome_<family>`` (classes, depth, eps, delta[, seed]) and
    ``width_<family>`` (classes, depth, eps[, seed]). The delta grid is
    log-spaced in [0.001, 0.9]; delta = 0 (the exact NC start) is NC at every depth.
    """
    eps = np.logspace(-3, -1, n_eps)
    delta = np.geomspace(0.001, 0.9, n_delta)
    out = []
    for K in classes:
        parts = []
        for fam in families:
            ds = basin_map(
                K,
                list(DEPTHS),
                eps,
                delta,
                t_end=t_end,
                num_times=num_times,
                family=fam,
                seeds=seeds,
            )
            w = basin_width(ds)
            keep = {
                f"{v}_{fam}": ds[v]
                for v in ("outcome", "rank", "escape_time", "min_ratio")
            }
            keep[f"width_{fam}"] = w["width"]
            keep[f"edge_outcome_{fam}"] = w["edge_outcome"]
            parts.append(xr.Dataset(keep).assign_attrs(ds.attrs))
        out.append(
            xr.merge(parts, combine_attrs="drop_conflicts").expand_dims(classes=[K])
        )
    res = xr.concat(out, dim="classes", combine_attrs="drop_conflicts")
    res.attrs.update(
        {
            "title": "NC basins of balanced spectral starts",
            "families": list(families),
            "delta_grid": "log-spaced in [0.001, 0.9]; delta = 0 is the exact NC start",
        }
    )
    res.attrs.pop("classes", None)
    return res


def compute(quick: bool) -> xr.Dataset:
    if quick:
        return basin_study((8,), ("lag",), n_eps=5, n_delta=12)
    return basin_study(
        (4, 8), ("lag", "random"), n_eps=9, n_delta=24, seeds=tuple(range(8))
    )


_COLORS = ["#bbbbbb", "#1b9e77"] + [
    "#fdd49e",
    "#fc8d59",
    "#d7301f",
    "#7f0000",
    "#4a1486",
    "#252525",
]


def plot(ds: xr.Dataset):
    fams = [f for f in ("lag", "random") if f"outcome_{f}" in ds]
    rows = [(K, f) for K in ds["classes"].values for f in fams]
    depths = ds["depth"].values
    fig, axes = plt.subplots(
        len(rows),
        len(depths),
        figsize=(2.7 * len(depths) + 1.0, 2.4 * len(rows) + 1.2),
        sharex=True,
        sharey=True,
        squeeze=False,
        layout="constrained",
    )
    eps, delta = ds["eps"].values, ds["delta"].values
    # colours: -1 undecided, 0 NC, 1..6 rank r (rank >= 6 share the last colour)
    cmap = ListedColormap(_COLORS)
    norm = BoundaryNorm(np.arange(-1.5, 7.5), cmap.N)
    for r, (K, fam) in enumerate(rows):
        sub = ds.sel(classes=K)
        for c, d in enumerate(depths):
            ax = axes[r, c]
            oc = sub[f"outcome_{fam}"].sel(depth=d)
            if fam == "random":
                frac = (oc == 0).mean("seed").transpose("delta", "eps").values
                im = ax.pcolormesh(
                    eps, delta, frac, cmap="Greens", vmin=0, vmax=1, shading="nearest"
                )
                w = sub[f"width_{fam}"].sel(depth=d).median("seed").values
            else:
                vals = np.minimum(oc.transpose("delta", "eps").values, 6)
                ax.pcolormesh(eps, delta, vals, cmap=cmap, norm=norm, shading="nearest")
                w = sub[f"width_{fam}"].sel(depth=d).values
            ax.plot(eps, np.where(np.isnan(w), delta[0], w), "k.-", lw=1, ms=4)
            ax.set_xscale("log")
            ax.set_yscale("log")
            if r == 0:
                ax.set_title(f"L = {d} (N = {d + 1})")
            if c == 0:
                what = "lag" if fam == "lag" else "spread"
                ax.set_ylabel(f"K = {K}, {fam}\n{what} $\\delta$")
            if r == len(rows) - 1:
                ax.set_xlabel(r"initial scale $\varepsilon$")
    handles = [
        Patch(color=_COLORS[1], label="NC"),
        Patch(color=_COLORS[0], label="undecided"),
    ]
    handles += [Patch(color=_COLORS[i + 1], label=f"rank {i}") for i in range(2, 7)]
    handles.append(
        plt.Line2D(
            [],
            [],
            color="k",
            marker=".",
            label=r"basin width (largest NC $\delta$; random: median over seeds)",
        )
    )
    fig.legend(
        handles=handles,
        loc="outside lower center",
        ncol=4,
        frameon=False,
        fontsize=8,
    )
    if "random" in fams:
        rnd = [i for i, (_, f) in enumerate(rows) if f == "random"]
        fig.colorbar(
            im,
            ax=axes[rnd, :].ravel().tolist(),
            label="NC fraction over seeds",
            shrink=0.9,
            pad=0.01,
        )
    t_end = ds.attrs.get("t_end", float("nan"))
    fig.suptitle(
        f"Outcome of balanced spectral starts at t = {t_end:.0e}; lag family: the "
        "weight-one Walsh modes lead, the others lag by $\\delta$",
        fontsize=10,
    )
    return fig


register(
    "basins",
    compute=compute,
    plot=plot,
    description="NC basin over (initial scale, lag) per depth; shrinks with depth "
    "and with smaller eps",
)
