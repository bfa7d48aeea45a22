r"""Empirical optimality map of the L-DUFM: the best objective gradient descent finds,
against deep neural collapse and the known constructions.

For every class count K and depth L (L = number of weight matrices, N = L + 1
factors) full-batch gradient descent runs on the L-DUFM of Súkeník, Lampert &
Mondelli (NeurIPS 2024, arXiv 2405.14468),

$$\mathcal L = \frac{1}{2Kn}\|W_L\sigma(W_{L-1}\cdots\sigma(W_1H)) - Y\|_F^2
 + \frac{\lambda}{2}\Big(\|H\|_F^2 + \sum_{l=1}^L\|W_l\|_F^2\Big),$$

($\sigma$ = ReLU, the same weight decay $\lambda$ on every factor), from
Gaussian starts of several init scales and seeds (:func:`svflow.random_model`:
entries $\mathcal N(0, \text{scale}^2/\text{width})$), all starts of one
(K, L) vmapped in one compiled loop. The lowest final objective is divided by
$L_{\rm DNC}$ (:func:`svflow.explicit.dnc_loss`, exact: the minimum over DNC
configurations) and set beside $L_{\rm best}/L_{\rm DNC}$ of the known
constructions (:func:`svflow.explicit.relu_blocks`: DNC and block-diagonal SRG
networks). A GD objective below $L_{\rm DNC}$ is a point that beats deep neural
collapse, whatever GD converged to; below $L_{\rm best}$ it beats every known
construction. GD gives upper bounds on the minimum, never its value.
"""

from __future__ import annotations

import contextlib
from typing import Sequence

import numpy as np
import xarray as xr

from . import _dims as D
from ._checks import check_float, check_fraction, check_int
from ._dataset import grid_dataset
from ._explicit import dnc_loss, relu_blocks
from ._ldufm import (
    RANK_RTOL_LAYERS,
    class_mean_spectra,
    layer_representations,
    ldufm_gd_batch,
)
from ._precision import computes

__all__ = ["ldufm_optimality_map"]


@computes
def ldufm_optimality_map(
    classes: Sequence[int] = tuple(range(2, 17)),
    depths: Sequence[int] = tuple(range(2, 7)),
    *,
    lam: float = 0.004,
    eta: float = 0.5,
    steps: int = 50_000,
    scales: Sequence[float] = (0.55, 1.0, 1.5),
    seeds: int = 4,
    width: int | None = None,
    samples: int = 1,
    rank_rtol: float = RANK_RTOL_LAYERS,
    beat_rtol: float = 1e-3,
    progress: bool = False,
) -> xr.Dataset:
    r"""Best GD objective over init scales and seeds per (K, L), divided by L_DNC.

    Args:
        classes: class counts K (>= 2).
        depths: depths L (>= 2, number of weight matrices).
        lam: weight decay on H and every $W_l$.
        eta: learning rate (time t = steps x eta).
        steps: GD steps per start.
        scales: init scales of :func:`svflow.random_model`.
        seeds: number of seeds per scale (seeds 0 .. seeds - 1).
        width: hidden width d; default ``max(16, 2 K)`` per K.
        samples: n samples per class.
        rank_rtol: numerical rank threshold ($\sigma_i > \epsilon\,\sigma_1$, $\epsilon$ = rank_rtol)
            of the class means.
        beat_rtol: a GD objective beats a reference value R when it is below
            $(1 - \text{beat\_rtol})R$.
        progress: a tqdm bar over the (K, L) cells.

    Returns:
        Dataset with dims ``classes``, ``depth``, ``scale``, ``seed``:
        ``objective`` (every run), ``ratio`` (objective / L_DNC), ``best_ratio``
        (lowest over scales and seeds), ``best_scale``, ``best_seed``,
        ``best_rank`` (the smallest class-mean rank over the hidden
        representations H, pre-activations and ReLU outputs of the best run:
        its bottleneck), ``best_layer_ranks`` (string: every layer's rank, H
        to Z), ``construction_ratio`` (L_best / L_DNC of
        :func:`svflow.explicit.relu_blocks`), ``construction`` (its blocks),
        ``L_DNC``, ``beats_dnc`` and ``beats_constructions`` (booleans,
        ``beat_rtol``), ``width``.
    """
    Ks = [check_int("classes[i]", K, minimum=2) for K in classes]
    Ls = [check_int("depths[i]", L, minimum=2) for L in depths]
    lam = check_float("lam", lam, minimum=0.0, strict_min=True)
    seeds = check_int("seeds", seeds, minimum=1)
    samples = check_int("samples", samples, minimum=1)
    rank_rtol = check_fraction("rank_rtol", rank_rtol)
    beat_rtol = check_fraction("beat_rtol", beat_rtol, open_low=False)
    if width is not None:
        width = check_int("width", width, minimum=1)
    if not Ks or not Ls:
        raise ValueError("classes and depths must each hold at least one value.")
    scales = [check_float("scales[i]", s, minimum=0.0, strict_min=True) for s in scales]
    out = _empty_results(len(Ks), len(Ls), len(scales), seeds)
    settings = dict(lam=lam, eta=eta, steps=steps, scales=scales, seeds=seeds, samples=samples)
    _run_cells(out, Ks, Ls, width, progress, dict(settings, rank_rtol=rank_rtol))
    attrs = {
        "title": "empirical optimality map of the L-DUFM (GD vs DNC and known constructions)",
        "lam": float(lam),
        "eta": float(eta),
        "steps": int(steps),
        "samples_per_class": int(samples),
        "rank_rtol": float(rank_rtol),
        "beat_rtol": float(beat_rtol),
        "width_rule": "max(16, 2K)" if width is None else str(width),
    }
    return _map_dataset(out, Ks, Ls, scales, seeds, rank_rtol, beat_rtol, attrs)


def _run_cells(out: dict, Ks: list, Ls: list, width, progress: bool, settings: dict) -> None:
    """Fill ``out`` cell by cell over (K, L); the width defaults to ``max(16, 2 K)``."""
    cells = [(i, j) for i in range(len(Ks)) for j in range(len(Ls))]
    bar = _progress_bar(len(cells)) if progress else contextlib.nullcontext()
    with bar:
        for i, j in cells:
            K, L = Ks[i], Ls[j]
            out["widths"][i] = d = width if width is not None else max(16, 2 * K)
            _map_cell(out, (i, j), K, L, width=d, **settings)
            if progress:
                bar.update(1)


def _empty_results(nK: int, nL: int, nscales: int, seeds: int) -> dict:
    shape = (nK, nL)
    return {
        "obj": np.full(shape + (nscales, seeds), np.nan),
        "best_rank": np.zeros(shape, int),
        "layer_ranks": np.empty(shape, object),
        "widths": np.zeros(nK, int),
        "Ldnc": np.zeros(shape),
        "Lcon": np.zeros(shape),
        "con": np.empty(shape, object),
    }


def _progress_bar(total: int):
    from tqdm import tqdm

    return tqdm(total=total, desc="optimality map", unit="cell")


def _map_cell(
    out: dict, ij: tuple, K: int, L: int, *, width, lam, eta, steps, scales, seeds, samples, rank_rtol
) -> None:
    r"""Run every start of one (K, L) cell and write its results into ``out[...][ij]``.

    The best run's bottleneck rank is the smallest class-mean rank
    ($\sigma_i > $ rank_rtol $\sigma_1$) over the hidden representations
    (every layer but the logits Z).
    """
    factors, o = ldufm_gd_batch(
        K,
        L,
        width=width,
        lam=lam,
        eta=eta,
        steps=steps,
        scales=scales,
        seeds=range(seeds),
        samples=samples,
    )
    out["obj"][ij] = o.reshape(len(scales), seeds)
    b = int(np.argmin(o))
    names, mats = layer_representations([F[b] for F in factors])
    sv = np.stack([class_mean_spectra(X, K) for X in mats])
    top = np.where(sv[:, :1] > 0, sv[:, :1], 1.0)
    rk = ((sv > rank_rtol * top) & (sv > 0)).sum(axis=1)
    hidden = [k for k, n in enumerate(names) if n != "Z"]
    out["best_rank"][ij] = int(rk[hidden].min())
    out["layer_ranks"][ij] = " ".join(f"{n}:{r}" for n, r in zip(names, rk))
    out["Ldnc"][ij] = dnc_loss(K, L, lam_H=lam, lam_W=lam, samples=samples)
    ch = relu_blocks(K, L, lam_H=lam, lam_W=lam, samples=samples)
    out["Lcon"][ij] = ch.loss
    out["con"][ij] = f"{ch.category} " + " ".join(map(str, ch.blocks))


def _map_dataset(out: dict, Ks, Ls, scales, seeds, rank_rtol, beat_rtol, attrs) -> xr.Dataset:
    """The optimality-map dataset from the per-cell arrays of :func:`_map_cell`."""
    obj, Ldnc, Lcon = out["obj"], out["Ldnc"], out["Lcon"]
    flat = obj.reshape(obj.shape[:2] + (-1,))
    arg = np.argmin(flat, axis=-1)
    best = np.take_along_axis(flat, arg[..., None], -1)[..., 0]
    dims = (D.CLASSES, D.DEPTH)
    runs = dims + (D.SCALE, D.SEED)
    beat = f"best GD objective < (1 - {beat_rtol:g})"
    variables = {
        "objective": (runs, obj, {"long_name": "final L-DUFM objective of each GD run"}),
        "ratio": (runs, obj / Ldnc[..., None, None], {"long_name": "final objective / L_DNC"}),
        "best_ratio": (
            dims,
            best / Ldnc,
            {"long_name": "lowest GD objective / L_DNC (over scales and seeds)"},
        ),
        "best_scale": (dims, np.asarray(scales)[arg // seeds], {"long_name": "init scale of the best run"}),
        "best_seed": (dims, arg % seeds, {"long_name": "seed of the best run"}),
        "best_rank": (
            dims,
            out["best_rank"],
            {
                "long_name": "bottleneck rank of the best run (smallest class-mean "
                f"rank over H and hidden layers, sigma_i > {rank_rtol:g} sigma_1)"
            },
        ),
        "best_layer_ranks": (
            dims,
            out["layer_ranks"].astype(str),
            {"long_name": "class-mean rank of every layer of the best run"},
        ),
        "construction_ratio": (
            dims,
            Lcon / Ldnc,
            {"long_name": "best known construction (DNC / SRG blocks) / L_DNC"},
        ),
        "construction": (
            dims,
            out["con"].astype(str),
            {"long_name": "best known construction: category and blocks"},
        ),
        "L_DNC": (dims, Ldnc, {"long_name": "closed-form best DNC loss"}),
        "beats_dnc": (dims, best < (1 - beat_rtol) * Ldnc, {"long_name": f"{beat} L_DNC"}),
        "beats_constructions": (
            dims,
            best < (1 - beat_rtol) * Lcon,
            {"long_name": f"{beat} x the best known construction"},
        ),
        "width": ((D.CLASSES,), out["widths"], {"long_name": "hidden width d"}),
    }
    coords = {
        D.CLASSES: (np.asarray(Ks), {"long_name": "number of classes K"}),
        D.DEPTH: (np.asarray(Ls), {"long_name": "depth L (number of weight matrices)"}),
        D.SCALE: (np.asarray(scales), {"long_name": "init scale"}),
        D.SEED: np.arange(seeds),
    }
    return grid_dataset(coords, variables, attrs)
