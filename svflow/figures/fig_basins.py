"""Basins of the t -> infinity outcomes over (initial scale, lag), per depth.

Every cell's outcome is the certified limit of :func:`svflow.outcome`'s
criterion (double-log time, late-phase rates), drawn as the Walsh code it
converges to: the support size r and the ratios of the limit on the support
(e.g. ``4: 1 .5 .5 .5``), not only a rank.
"""

from __future__ import annotations

from typing import Any

import matplotlib.pyplot as plt
import numpy as np
import xarray as xr
from matplotlib.colors import ListedColormap
from matplotlib.patches import Patch

from ..studies import basin_map, basin_width, kkt_point
from . import register

DEPTHS = (1, 2, 3, 4, 5)


def code_label(outcome: int, limit, support, K: int) -> str:
    """A cell's code: 'NC', 'undecided' or 'r: the limit's ratios on the support'
    (descending, one decimal)."""
    if outcome < 0:
        return "undecided"
    q = np.sort(np.asarray(limit)[np.asarray(support)])[::-1]
    if outcome == 0 and np.all(q > 0.95):
        return "NC"
    r = K - 1 if outcome == 0 else int(outcome)
    return f"{r}: " + " ".join("1" if v > 0.95 else f"{v:.1f}".lstrip("0") for v in q)


def basin_study(classes=(8,), families=("lag",), *, n_eps=5, n_delta=12, seeds=(0, 1, 2, 3)) -> xr.Dataset:
    """Basin maps for several K and families, merged along a ``classes`` dim.

    Variables ``outcome_<family>`` (classes, depth, eps, delta[, seed]),
    ``code_<family>`` (the limit's code as a string, lag family),
    ``width_<family>`` (classes, depth, eps[, seed]). The delta grid is
    log-spaced in [0.001, 0.9]; delta = 0 (the exact NC start) is NC at every depth.
    """
    eps = np.logspace(-3, -1, n_eps)
    delta = np.geomspace(0.001, 0.9, n_delta)
    out = []
    for K in classes:
        parts = []
        for fam in families:
            ds = basin_map(K, list(DEPTHS), eps, delta, family=fam, seeds=seeds)
            w = basin_width(ds)
            keep: dict[str, Any] = {f"{v}_{fam}": ds[v] for v in ("outcome", "rank", "log_t_end")}
            keep[f"width_{fam}"] = w["width"]
            keep[f"edge_outcome_{fam}"] = w["edge_outcome"]
            if fam == "lag":
                oc = ds["outcome"].transpose("depth", "eps", "delta")
                le = ds["lam_end"].transpose("depth", "eps", "delta", "mode").values
                su = ds["support"].transpose("depth", "eps", "delta", "mode").values
                lab = np.empty(oc.shape, dtype=object)
                for idx in np.ndindex(oc.shape):
                    code = int(oc.values[idx])
                    lim = None
                    if code >= 0:  # the limit: KKT point on the decided support
                        p = kkt_point(le[idx], int(ds["depth"].values[idx[0]]), support=su[idx])
                        lim = p.lam / p.lam.max()
                    lab[idx] = code_label(code, lim, su[idx], K)
                keep[f"code_{fam}"] = (oc.dims, lab.astype(str))
            mode_coords = ["mode", "frequency", "pair", "part"]
            parts.append(
                xr.Dataset(keep, coords=ds.coords)
                .drop_vars(mode_coords, errors="ignore")
                .assign_attrs(ds.attrs)
            )
        out.append(xr.merge(parts, combine_attrs="drop_conflicts").expand_dims(classes=[K]))
    res = xr.concat(out, dim="classes", combine_attrs="drop_conflicts")
    res.attrs.update(
        {
            "title": "t -> infinity outcomes of balanced spectral starts",
            "families": list(families),
            "delta_grid": "log-spaced in [0.001, 0.9]; delta = 0 is the exact NC start",
        }
    )
    res.attrs.pop("classes", None)
    return res


def compute(quick: bool) -> xr.Dataset:
    if quick:
        return basin_study((4, 8), ("lag",), n_eps=3, n_delta=8)
    return basin_study((4, 8, 16), ("lag", "random"), n_eps=9, n_delta=24, seeds=tuple(range(8)))


_PALETTE = [
    "#1b9e77",
    "#bbbbbb",
    "#fdd49e",
    "#fc8d59",
    "#d7301f",
    "#7f0000",
    "#4a1486",
    "#807dba",
    "#2171b5",
    "#6baed6",
    "#252525",
    "#f781bf",
    "#a6761d",
    "#e6ab02",
]


def plot(ds: xr.Dataset):
    fams = [f for f in ("lag", "random") if f"outcome_{f}" in ds]
    rows = [(K, f) for K in ds["classes"].values for f in fams]
    depths = ds["depth"].values
    labels = []
    if "code_lag" in ds:
        found = np.unique(ds["code_lag"].values.astype(str))
        vals = [v for v in found if v not in ("NC", "undecided", "nan", "")]
        labels = ["NC", "undecided"] + sorted(vals, key=lambda s: (int(s.split(":")[0]), s))
    index = {lab: i for i, lab in enumerate(labels)}
    cmap = ListedColormap([_PALETTE[i % len(_PALETTE)] for i in range(max(len(labels), 1))])
    fig, axes = plt.subplots(
        len(rows),
        len(depths),
        figsize=(2.7 * len(depths) + 1.0, 2.4 * len(rows) + 1.8),
        sharex=True,
        sharey=True,
        squeeze=False,
        layout="constrained",
    )
    eps, delta = ds["eps"].values, ds["delta"].values
    im = None
    for r, (K, fam) in enumerate(rows):
        sub = ds.sel(classes=K)
        for c, d in enumerate(depths):
            ax = axes[r, c]
            if fam == "random":
                oc = sub[f"outcome_{fam}"].sel(depth=d)
                frac = (oc == 0).mean("seed").transpose("delta", "eps").values
                im = ax.pcolormesh(eps, delta, frac, cmap="Greens", vmin=0, vmax=1, shading="nearest")
                w = sub[f"width_{fam}"].sel(depth=d).median("seed").values
            else:
                lab = sub[f"code_{fam}"].sel(depth=d).transpose("delta", "eps").values
                idx = np.vectorize(lambda s: index.get(str(s), np.nan), otypes=[float])(lab)
                ax.pcolormesh(
                    eps, delta, idx, cmap=cmap, vmin=-0.5, vmax=len(labels) - 0.5, shading="nearest"
                )
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
    handles: list[Patch | plt.Line2D] = [
        Patch(color=cmap(index[lab]), label=lab if lab in ("NC", "undecided") else f"code {lab}")
        for lab in labels
    ]
    handles.append(
        plt.Line2D([], [], color="k", marker=".", label=r"basin width (largest NC $\delta$; random: median)")
    )
    fig.legend(
        handles=handles,
        loc="outside lower center",
        ncol=5,
        frameon=False,
        fontsize=8,
        title="limit code: support size r, then the limit's ratios on the support",
        title_fontsize=8,
    )
    if im is not None:
        rnd = [i for i, (_, f) in enumerate(rows) if f == "random"]
        fig.colorbar(
            im, ax=axes[rnd, :].ravel().tolist(), label="NC fraction over seeds", shrink=0.9, pad=0.01
        )
    fig.suptitle(
        "t -> infinity outcome of balanced spectral starts (certified in double-log "
        "time); lag family: the weight-one Walsh modes lead, the others lag by "
        "$\\delta$",
        fontsize=10,
    )
    return fig


register(
    "basins",
    compute=compute,
    plot=plot,
    description="t -> infinity outcome codes over (initial scale, lag) per depth",
)
