r"""Basins of neural collapse and winning codes for K that are not powers of two.

Spectral starts over the cyclic group $\mathbb Z_K$ (real Fourier basis) for
K = 6 and K = 10, beside K = 8 over both the cyclic and the Walsh group
$(\mathbb Z_2)^3$. Top row: outcome of the balanced "lag" family
(:func:`svflow.studies.basin_map`: the leading modes at $\varepsilon$, every other
mode at $\varepsilon(1-\delta)$; leaders are the lowest-frequency pair, the
K-gon, for the cyclic group and the weight-one modes, the hypercube, for the
Walsh group) over depth and lag, with the NC basin width. Bottom row: the
code predicted by the max-margin problem (:func:`svflow.code_table`: the
equal-$\lambda$ support of largest normalised margin $\gamma_S$) per depth,
its rank, and the rank the lag family reaches at the largest lag.

``QUICK`` and ``FULL`` are the settings of the figure and of
``scenarios/groups.py``.
"""

from __future__ import annotations

import numpy as np
import xarray as xr

from . import register

PANELS = ((6, "cyclic"), (10, "cyclic"), (8, "cyclic"), (8, "walsh"))

QUICK = dict(depths=(1, 2, 3, 5), eps=(1e-2,), delta=tuple(np.geomspace(0.003, 0.9, 7)))
FULL = dict(depths=(1, 2, 3, 4, 5, 6), eps=(1e-3, 1e-2, 1e-1), delta=tuple(np.geomspace(0.001, 0.9, 16)))


def compute(quick: bool = False, *, panels=PANELS, progress: bool = True) -> xr.Dataset:
    """Basin maps (lag family) and code tables for every (K, group) panel."""
    import time

    from .. import code_table
    from ..studies import basin_map, basin_width

    cfg = QUICK if quick else FULL
    out = []
    for K, group in panels:
        tic = time.perf_counter()
        ds = basin_map(
            K,
            list(cfg["depths"]),
            np.asarray(cfg["eps"]),
            np.asarray(cfg["delta"]),
            family="lag",
            group=group,
        )
        w = basin_width(ds)
        ct = code_table(K, [d + 1 for d in cfg["depths"]], group=group)
        name = f"K{K}_{group}"
        part = xr.Dataset(
            {
                "outcome": ds["outcome"],
                "rank": ds["rank"],
                "width": w["width"],
                "edge_outcome": w["edge_outcome"],
                "code_name": ("depth", ct["name"].values),
                "code_size": ("depth", ct["size"].values),
                "code_rho": ("depth", ct["rho"].values),
                "code_gamma": ("depth", ct["gamma"].values),
            },
            coords={"depth": ds["depth"], "eps": ds["eps"], "delta": ds["delta"]},
        )
        if "gamma_global" in ct:
            part["gamma_global"] = ("depth", ct["gamma_global"].values)
        out.append(part.expand_dims(panel=[name]))
        if progress:
            print(f"{name}: {time.perf_counter() - tic:.1f} s")
    res = xr.concat(out, dim="panel", combine_attrs="drop")
    res["classes"] = ("panel", np.array([K for K, _ in panels]))
    res["group"] = ("panel", np.array([g for _, g in panels]))
    res.attrs = {
        "title": "svflow: NC basins and winning codes over finite abelian groups",
        "family": "lag: lambda_i(0) = eps on the leading modes (cyclic: the frequency-1 "
        "pair, the K-gon; walsh: the weight-one modes, the hypercube), eps (1 - delta) "
        "on the other modes i >= 1, lambda_0 = 0",
        "quick": bool(quick),
        "horizons_tau": "100, 300, 1e3, 3e3, 1e4 (t -> infinity outcomes, svflow.outcome's criterion)",
        "loss_name": "ce",
        "weight_decay": 0.0,
        "conventions": "depth L = number of weight matrices, N = L + 1 factors; "
        "t = steps x step size; mean-reduced loss",
    }
    return res


def report(ds: xr.Dataset) -> str:
    """Text table: per panel and depth, the winning code and the NC basin width."""
    lines = []
    eps = ds["eps"].values
    for p in ds["panel"].values:
        sub = ds.sel(panel=p)
        lines.append(
            f"{p}: code winner (max-margin, equal lambda) and NC basin width "
            f"(largest lag delta with NC from the smallest delta) at eps = "
            + ", ".join(f"{e:g}" for e in eps)
        )
        for d in sub["depth"].values:
            s = sub.sel(depth=d)
            widths = []
            for e in eps:
                w = float(s["width"].sel(eps=e))
                edge = int(s["edge_outcome"].sel(eps=e))
                txt = "<" + f"{ds['delta'].values[0]:.3g}" if np.isnan(w) else f"{w:.3g}"
                widths.append(txt + ("+" if edge == -2 else "?" if edge == -1 else ""))
            reached = int(s["rank"].isel(eps=0, delta=-1))
            name = str(s["code_name"].values)
            tie = " (tie)" if "(tie)" in name else ""
            name = name.replace(" (tie)", "").split(" r=")[0] + tie
            lines.append(
                f"  L={int(d)} (N={int(d) + 1}): {name:<24s} "
                f"r={int(s['code_size'])} rho={float(s['code_rho']):.4g}  "
                f"width {' '.join(widths)}  rank at largest lag {reached}"
            )
    return "\n".join(lines)


# a rank r >= 1 gets RANK_COLORS[(r - 1) % len]: tab10's hues without its green (NC's) and grey
# (undecided's), ordered so that neighbouring ranks differ in hue and lightness
RANK_COLORS = ("#1f77b4", "#ff7f0e", "#9467bd", "#d62728", "#17becf", "#8c564b", "#e377c2", "#bcbd22")


def outcome_colors(rmax: int) -> list:
    """Colours of the outcome codes -1 (undecided, grey), 0 (NC, green) and ranks 1..rmax."""
    return ["0.75", "#1b7837"] + [RANK_COLORS[(r - 1) % len(RANK_COLORS)] for r in range(1, rmax + 1)]


def plot(ds: xr.Dataset):
    import matplotlib.pyplot as plt
    from matplotlib.colors import BoundaryNorm, ListedColormap
    from matplotlib.patches import Patch

    panels = list(ds["panel"].values)
    eps_show = float(ds["eps"].values[len(ds["eps"]) // 2])
    fig, axes = plt.subplots(
        2,
        len(panels),
        figsize=(3.6 * len(panels), 6.4),
        gridspec_kw=dict(height_ratios=[3, 2]),
        squeeze=False,
    )
    rmax = int(max(ds["classes"].values))
    cmap = ListedColormap(outcome_colors(rmax))
    norm = BoundaryNorm(np.arange(-1.5, rmax + 0.5), cmap.N)
    used = set()
    for c, p in enumerate(panels):
        sub = ds.sel(panel=p)
        used |= _basin_panel(axes[0, c], sub, eps_show, cmap, norm, first=c == 0)
        _code_panel(axes[1, c], sub, eps_show, first=c == 0)
    labels = {-1: "undecided", 0: "NC"}
    handles = [Patch(color=cmap(norm(v)), label=labels.get(v, f"rank {v}")) for v in sorted(used)]
    fig.legend(handles=handles, loc="upper center", ncol=len(handles), fontsize=8, bbox_to_anchor=(0.5, 1.0))
    fig.suptitle(
        "Cross-entropy, no weight decay: NC basins (top) and max-margin codes "
        "(bottom; * = tie between equivalent codes)",
        y=0.955,
        fontsize=10,
    )
    fig.tight_layout(rect=(0, 0, 1, 0.93))
    return fig


def _cell_edges(depths: np.ndarray, delta: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Cell edges of the (depth, delta) map: integer depth cells, geometric mid-points in delta."""
    de = np.concatenate([[depths[0] - 0.5], depths[:-1] + 0.5 * np.diff(depths), [depths[-1] + 0.5]])
    ld = np.log(delta)
    dl = np.exp(
        np.concatenate(
            [
                [ld[0] - 0.5 * (ld[1] - ld[0])],
                0.5 * (ld[1:] + ld[:-1]),
                [ld[-1] + 0.5 * (ld[-1] - ld[-2])],
            ]
        )
    )
    return de, dl


def _basin_panel(ax, sub: xr.Dataset, eps_show: float, cmap, norm, first: bool) -> set:
    """Top panel: outcome over (depth, lag) at ``eps_show`` and the NC basin width; the outcomes shown."""
    depths, delta = sub["depth"].values, sub["delta"].values
    K, grp = int(sub["classes"]), str(sub["group"].values)
    oc = sub["outcome"].sel(eps=eps_show).transpose("delta", "depth").values
    ax.pcolormesh(*_cell_edges(depths, delta), oc, cmap=cmap, norm=norm, edgecolors="w", linewidth=0.3)
    w = sub["width"].sel(eps=eps_show).values
    ax.plot(depths, np.where(np.isnan(w), delta[0], w), "k.-", lw=1.2, label="NC basin width")
    ax.set_yscale("log")
    ax.set_xticks(depths)
    ax.set_xlabel("depth L")
    if first:
        ax.set_ylabel(r"lag $\delta$ of the non-leading modes")
    gname = r"$\mathbb{Z}_{%d}$" % K if grp == "cyclic" else r"$(\mathbb{Z}_2)^{%d}$" % int(np.log2(K))
    ax.set_title(f"K = {K}, {grp} {gname}\n" + r"$\varepsilon$ = " + f"{eps_show:g}", fontsize=10)
    if first:
        ax.legend(loc="lower left", fontsize=7)
    return set(np.unique(oc).tolist())


def _code_panel(ax2, sub: xr.Dataset, eps_show: float, first: bool) -> None:
    """Bottom panel: predicted code size per depth and the rank the lag family reaches at the largest lag."""
    from matplotlib.ticker import MaxNLocator

    depths, delta = sub["depth"].values, sub["delta"].values
    K = int(sub["classes"])
    ax2.plot(depths, sub["code_size"].values, "o-", color="#762a83", label="max-margin code: rank r")
    ax2.plot(
        depths,
        sub["rank"].sel(eps=eps_show).isel(delta=-1).values,
        "s--",
        color="#e08214",
        mfc="none",
        label=f"reached by the lag family at $\\delta$ = {delta[-1]:.2g}",
    )
    for d, name in zip(depths, sub["code_name"].values):
        name = str(name)
        short = "NC" if "(NC)" in name else name.replace(" (tie)", "").split(" r=")[0]
        short += "*" if "(tie)" in name else ""
        ax2.annotate(
            short,
            (d, float(sub["code_size"].sel(depth=d))),
            textcoords="offset points",
            xytext=(0, 6),
            ha="center",
            fontsize=6.5,
            rotation=30,
        )
    ax2.set_ylim(0, K + 3)
    ax2.yaxis.set_major_locator(MaxNLocator(integer=True))
    ax2.set_xticks(depths)
    ax2.set_xlabel("depth L")
    if first:
        ax2.set_ylabel("rank of the code")
        ax2.legend(loc="lower left", fontsize=7)


register(
    "groups",
    compute=compute,
    plot=plot,
    description="NC basins and winning codes for K = 6, 10 (cyclic) and K = 8 (cyclic, Walsh)",
)
