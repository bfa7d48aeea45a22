r"""Phase maps of the explicit low-rank bias: which construction has the lowest loss.

Over a grid of class counts K and depths L (L = number of weight matrices),
for the L-DUFM (ReLU, squared loss, weight decay; :func:`svflow.relu_blocks`)
and for the deep linear cross-entropy model with weight decay
(:func:`svflow.ce_blocks`). Category codes are stored as integers with their
names in the variable's attrs (``flag_values`` / ``flag_meanings``, CF style).
"""

from __future__ import annotations

from typing import Sequence

import numpy as np
import xarray as xr

from ._dataset import provenance
from ._explicit import ce_blocks, ce_dnc_loss, ce_pair_loss, dnc_loss, relu_blocks, srg_rho

__all__ = ["RELU_CATEGORIES", "CE_CATEGORIES", "explicit_phase_map", "dnc_thresholds"]

RELU_CATEGORIES = ("zero", "DNC", "SRG", "SRG+DNC", "multi-SRG")
CE_CATEGORIES = ("zero", "DNC", "pairs", "other")


def _flags(names) -> dict:
    return {"flag_values": list(range(len(names))), "flag_meanings": " ".join(names)}


def explicit_phase_map(
    classes: Sequence[int] = tuple(range(2, 41)),
    depths: Sequence[int] = tuple(range(2, 9)),
    *,
    lam: float = 0.004,
    weight_decay: float = 1e-3,
    samples: int = 1,
    radii: Sequence[int] = tuple(range(4, 13)),
) -> xr.Dataset:
    r"""Best construction per (K, L) for both models, as an ``xarray.Dataset``.

    Args:
        classes: class counts K (>= 2).
        depths: depths L (>= 2; number of weight matrices).
        lam: the L-DUFM's weight decay, the same on H and every $W_l$.
        weight_decay: the CE model's weight decay on every factor.
        samples: n samples per class (both models).
        radii: graph sizes r of the SRG table ``srg_rho`` (dims r, depth).

    Returns:
        Dataset with dims ``classes``, ``depth``, ``r`` and variables
        ``relu_category``, ``relu_loss_dnc``, ``relu_loss_best``,
        ``relu_blocks`` (string), ``ce_category``, ``ce_loss_dnc``,
        ``ce_loss_pairs``, ``ce_loss_best``, ``ce_blocks`` (string), ``srg_rho``.
    """
    Ks = np.asarray(classes, dtype=int)
    Ls = np.asarray(depths, dtype=int)
    shape = (Ks.size, Ls.size)
    rc = np.zeros(shape, int)
    rd, rb = np.zeros(shape), np.zeros(shape)
    rblk = np.empty(shape, object)
    cc = np.zeros(shape, int)
    cd, cp, cb = np.zeros(shape), np.full(shape, np.nan), np.zeros(shape)
    cblk = np.empty(shape, object)
    for i, K in enumerate(Ks):
        for j, L in enumerate(Ls):
            ch = relu_blocks(int(K), int(L), lam_H=lam, lam_W=lam, samples=samples)
            rc[i, j] = RELU_CATEGORIES.index(ch.category)
            rd[i, j] = dnc_loss(int(K), int(L), lam_H=lam, lam_W=lam, samples=samples)
            rb[i, j] = ch.loss
            rblk[i, j] = " ".join(map(str, ch.blocks))
            ce = ce_blocks(int(K), int(L), weight_decay=weight_decay, samples=samples)
            cc[i, j] = CE_CATEGORIES.index(ce.category)
            cd[i, j] = ce_dnc_loss(int(K), int(L), weight_decay=weight_decay, samples=samples)[0]
            if K == 2 or K >= 4:
                cp[i, j] = ce_pair_loss(int(K), int(L), weight_decay=weight_decay, samples=samples)[0]
            cb[i, j] = ce.loss
            cblk[i, j] = " ".join(map(str, ce.blocks))
    rho = np.array([[srg_rho(int(r), int(L)) for L in Ls] for r in radii])
    dims = ("classes", "depth")
    ds = xr.Dataset(
        {
            "relu_category": (dims, rc, {"long_name": "best L-DUFM construction", **_flags(RELU_CATEGORIES)}),
            "relu_loss_dnc": (dims, rd, {"long_name": "L_DNC (L-DUFM)"}),
            "relu_loss_best": (dims, rb, {"long_name": "lowest L-DUFM loss over DNC/SRG block constructions"}),
            "relu_blocks": (dims, rblk.astype(str), {"long_name": "SRG blocks (r) and dnc:<classes>"}),
            "ce_category": (dims, cc, {"long_name": "best CE block code", **_flags(CE_CATEGORIES)}),
            "ce_loss_dnc": (dims, cd, {"long_name": "DNC loss, linear CE model with weight decay"}),
            "ce_loss_pairs": (dims, cp, {"long_name": "2 x 2 block competitor loss (odd K: one 3-block)"}),
            "ce_loss_best": (dims, cb, {"long_name": "lowest CE block-code loss"}),
            "ce_blocks": (dims, cblk.astype(str), {"long_name": "block sizes of the best CE block code"}),
            "srg_rho": (("r", "depth"), rho, {"long_name": "rho of the SRG construction, K = C(r, 2)"}),
        },
        coords={
            "classes": ("classes", Ks, {"long_name": "number of classes K"}),
            "depth": ("depth", Ls, {"long_name": "depth L (number of weight matrices)"}),
            "r": ("r", np.asarray(radii, int), {"long_name": "vertices of K_r (SRG block of C(r,2) classes)"}),
        },
        attrs={
            "title": "svflow explicit low-rank bias phase map",
            "lam": float(lam),
            "weight_decay": float(weight_decay),
            "samples_per_class": int(samples),
            **provenance(),
        },
    )
    return ds


def dnc_thresholds(ds: xr.Dataset, model: str = "relu") -> xr.DataArray:
    r"""Per depth, the smallest K of the map from which on DNC never wins again
    (``model`` = ``"relu"`` or ``"ce"``); NaN when DNC wins at the largest K."""
    if model not in ("relu", "ce"):
        raise ValueError(f"model must be 'relu' or 'ce'; got {model!r}.")
    cats = RELU_CATEGORIES if model == "relu" else CE_CATEGORIES
    var = ds[f"{model}_category"]
    dnc_or_zero = (var == cats.index("DNC")) | (var == cats.index("zero"))
    Ks = ds["classes"].values
    out = []
    for L in ds["depth"].values:
        col = dnc_or_zero.sel(depth=L).values
        loses = ~col
        k = np.nan
        for i in range(len(Ks)):
            if loses[i:].all():
                k = float(Ks[i])
                break
        out.append(k)
    return xr.DataArray(np.array(out), coords={"depth": ds["depth"].values}, dims="depth",
                        name=f"{model}_dnc_threshold",
                        attrs={"long_name": "smallest K from which DNC is beaten at every larger K"})
