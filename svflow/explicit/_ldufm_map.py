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
construction. GD gives upper bounds on the minimum, not its value.

Every run is polished by L-BFGS after GD (:func:`svflow.explicit.polish`) and
the map is read at the polished points: per run the polished objective, its
gradient norm and a converged flag (gradient norm below ``grad_tol``; runs
stalled at a ReLU kink are kept and flagged); per cell the number of runs
below L_DNC and below the best construction out of the number run, the best
value, its seed and init scale, its gap ranks and the best run's factors
(``best_parameters``, flattened: :func:`map_parameters` rebuilds them), so
that any claimed point can be re-evaluated.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import xarray as xr

from .. import _dims as D
from .._checks import check_bool, check_float, check_fraction, check_int
from .._dataset import grid_dataset, provenance
from .._precision import computes
from ._ldufm import (
    CLARKE_NAME,
    GRAD_TOL,
    KINK_NAME,
    POLISH_NAME,
    POLISH_STEPS,
    _ldufm_model,
    _weight_decay_of,
    ldufm_gd_batch,
    polished_runs,
)
from ._ldufm_forms import dnc_loss, relu_blocks

__all__ = ["ldufm_optimality_map", "map_parameters", "repolish_map"]


@computes
def ldufm_optimality_map(
    classes: Sequence[int] = tuple(range(2, 17)),
    depths: Sequence[int] = tuple(range(2, 7)),
    *,
    weight_decay: float | None = None,
    lam: float | None = None,
    eta: float = 0.5,
    steps: int = 50_000,
    scales: Sequence[float] = (0.55, 1.0, 1.5),
    seeds: int = 4,
    width: int | None = None,
    samples: int = 1,
    beat_rtol: float = 1e-3,
    polish_steps: int = POLISH_STEPS,
    grad_tol: float = GRAD_TOL,
    kinks: bool = True,
    progress: bool = False,
) -> xr.Dataset:
    r"""Best GD objective over init scales and seeds per (K, L), divided by L_DNC.

    Args:
        classes: class counts K (>= 2).
        depths: depths L (>= 2, number of weight matrices).
        weight_decay: weight decay on H and every $W_l$ (default 0.004; stored
            as the attribute ``lam``).
        lam: alias of ``weight_decay`` (the paper's lambda): pass one of them.
        eta: learning rate (time t = steps x eta).
        steps: GD steps per start.
        scales: init scales of :func:`svflow.random_model`.
        seeds: number of seeds per scale (seeds 0 .. seeds - 1).
        width: hidden width d; default ``max(16, 2 K)`` per K.
        samples: n samples per class.
        beat_rtol: a polished objective beats a reference value R when it is
            below $(1 - \text{beat\_rtol})R$.
        polish_steps: L-BFGS steps of the polish after GD.
        grad_tol: a polished run is converged when its Clarke gap
            (:func:`svflow.explicit.clarke_gap`) is below this.
        kinks: run the polish's nonsmooth stage on runs stalled at ReLU kinks
            (40 s to 5 min each at K = 10, L = 4, width 30); ``False`` reports them as they are
            (not converged). Stored as the attribute ``kink_stage``.
        progress: a tqdm bar over the (K, L) cells.

    Returns:
        Dataset with dims ``classes``, ``depth``, ``scale``, ``seed``, ``param``.
            Per run: ``objective`` (GD end), ``polished_objective``, ``ratio``
            (polished objective / L_DNC), ``grad_norm``, ``clarke_gap``,
            ``converged`` (``clarke_gap < grad_tol``),
            ``kink_count`` (:func:`svflow.explicit.kink_count`),
            ``bottleneck_rank`` (smallest gap rank over H and the hidden layers).
            Per cell: ``n_runs``, ``n_below_dnc``, ``n_below_construction``,
            ``n_converged``; ``best_ratio`` (lowest polished objective / L_DNC),
            ``best_objective``, ``best_fit`` and ``best_regularisation`` (its
            split), ``best_scale``, ``best_seed``, ``best_grad_norm``,
            ``best_clarke_gap``, ``best_converged``, ``best_rank`` (bottleneck gap rank),
            ``best_gap`` (the spectral gap at that rank), ``best_layer_ranks``
            (string: every layer's gap rank, H to Z), ``best_parameters`` (the
            best run's factors flattened, NaN-padded: :func:`map_parameters`);
            ``construction_ratio`` (L_best / L_DNC of
            :func:`svflow.explicit.relu_blocks`), ``construction`` (its blocks),
            ``L_DNC``, ``beats_dnc`` and ``beats_constructions`` (booleans,
            ``beat_rtol``), ``width``.
    """
    Ks = [check_int("classes[i]", K, minimum=2) for K in classes]
    Ls = [check_int("depths[i]", L, minimum=2) for L in depths]
    lam = _weight_decay_of(weight_decay, lam)
    seeds = check_int("seeds", seeds, minimum=1)
    samples = check_int("samples", samples, minimum=1)
    beat_rtol = check_fraction("beat_rtol", beat_rtol, open_low=False)
    if width is not None:
        width = check_int("width", width, minimum=1)
    if not Ks or not Ls:
        raise ValueError("classes and depths must each hold at least one value.")
    scales = [check_float("scales[i]", s, minimum=0.0, strict_min=True) for s in scales]
    polish_steps = check_int("polish_steps", polish_steps, minimum=1)
    grad_tol = check_float("grad_tol", grad_tol, minimum=0.0, strict_min=True)
    widths = [width if width is not None else max(16, 2 * K) for K in Ks]
    nparam = max(_param_count(K, L, d) for K, d in zip(Ks, widths) for L in Ls)
    out = _empty_results(len(Ks), len(Ls), len(scales), seeds, nparam)
    settings = dict(lam=lam, eta=eta, steps=steps, scales=scales, seeds=seeds, samples=samples)
    kinks = check_bool("kinks", kinks)
    settings.update(polish_steps=polish_steps, grad_tol=grad_tol, kinks=kinks)
    _run_cells(out, Ks, Ls, widths, progress, settings)
    attrs = {
        "title": "empirical optimality map of the L-DUFM (GD vs DNC and known constructions)",
        "lam": float(lam),
        "eta": float(eta),
        "steps": int(steps),
        "samples_per_class": int(samples),
        "beat_rtol": float(beat_rtol),
        "width_rule": "max(16, 2K)" if width is None else str(width),
        "polish": POLISH_NAME + ", from the GD end of every run",
        "polish_steps": int(polish_steps),
        "grad_tol": float(grad_tol),
        "kink_stage": int(kinks),
        "rank_rule": "largest gap of sigma_i / sigma_1 (floor 1e-14)",
        "parameter_layout": "H (d, K), W_1 .. W_(L-1) (d, d), W_L (K, d), each row-major, concatenated",
    }
    return _map_dataset(out, Ks, Ls, scales, seeds, beat_rtol, attrs)


def _param_count(K: int, L: int, d: int) -> int:
    return d * K + (L - 1) * d * d + K * d


@computes
def map_parameters(ds: xr.Dataset, classes: int, depth: int) -> list[np.ndarray]:
    """The factors ``[H, W_1, ..., W_L]`` of the best run of cell (``classes``, ``depth``)
    of an optimality map (:func:`ldufm_optimality_map`), rebuilt from
    ``best_parameters`` (H is d x K, W_1 .. W_(L-1) d x d, W_L K x d; d = the
    cell's ``width``; n = 1 sample per class in the map's default)."""
    K = check_int("classes", classes, minimum=2)
    L = check_int("depth", depth, minimum=2)
    if "best_parameters" not in ds:
        raise ValueError("ds has no best_parameters: pass a dataset of ldufm_optimality_map.")
    if K not in ds[D.CLASSES].values or L not in ds[D.DEPTH].values:
        raise ValueError(
            f"cell (K={K}, L={L}) is not in the map (classes {list(ds[D.CLASSES].values)}, "
            f"depths {list(ds[D.DEPTH].values)})."
        )
    d = int(ds["width"].sel({D.CLASSES: K}))
    n = int(ds.attrs.get("samples_per_class", 1))
    flat = np.asarray(ds["best_parameters"].sel({D.CLASSES: K, D.DEPTH: L}).values, float)
    shapes = [(d, K * n)] + [(d, d)] * (L - 1) + [(K, d)]
    out, i = [], 0
    for shp in shapes:
        size = shp[0] * shp[1]
        out.append(flat[i : i + size].reshape(shp))
        i += size
    return out


@computes
def repolish_map(
    ds: xr.Dataset,
    *,
    max_steps: int = 100,
    grad_tol: float | None = None,
    cells=None,
    progress: bool = False,
) -> xr.Dataset:
    r"""An optimality map (:func:`ldufm_optimality_map`) with the stored best point of
    every cell polished again by :func:`svflow.explicit.polish` (L-BFGS for
    ``max_steps`` steps, then, where the Clarke gap is at or above ``grad_tol``,
    the smoothing continuation and the face Newton).

    Replaces the best run's variables by those of the re-polished point:
    ``best_objective``, ``best_ratio``, ``best_fit``, ``best_regularisation``,
    ``best_grad_norm``, ``best_clarke_gap`` (added when absent),
    ``best_kink_count``, ``best_converged`` (``best_clarke_gap < grad_tol``),
    ``best_rank``, ``best_gap``, ``best_layer_ranks``, ``best_parameters``,
    ``beats_dnc`` and ``beats_constructions``. The per-run variables and the
    counts stay those of the map's own polish (the re-polish lowers a best
    value or leaves it within 1e-9 relative, so no count changes sign).
    ``grad_tol`` defaults to the map's attribute. ``cells``: a list of
    ``(classes, depth)`` pairs to re-polish (default None: every cell; the
    others keep their stored values). ``progress``: a bar over the cells.
    Attribute ``repolish`` says what was
    done and by which code (svflow version, git commit and dirty flag, UTC time),
    appended to an earlier one; the dataset's own provenance attrs stay those of
    the run that made the map."""
    if not isinstance(ds, xr.Dataset) or "best_parameters" not in ds:
        raise ValueError("ds must be a dataset of ldufm_optimality_map (with best_parameters).")
    max_steps = check_int("max_steps", max_steps, minimum=1)
    progress = check_bool("progress", progress)
    tol = (
        float(ds.attrs["grad_tol"])
        if grad_tol is None
        else check_float("grad_tol", grad_tol, minimum=0.0, strict_min=True)
    )
    lam, n = float(ds.attrs["lam"]), int(ds.attrs.get("samples_per_class", 1))
    beat = float(ds.attrs["beat_rtol"])
    every = [(int(K), int(L)) for K in ds[D.CLASSES].values for L in ds[D.DEPTH].values]
    if cells is None:
        todo = every
    else:
        try:
            todo = [(int(K), int(L)) for K, L in cells]
        except (TypeError, ValueError):
            raise TypeError(f"cells must be a list of (classes, depth) pairs; got {cells!r}.") from None
        missing = [c for c in todo if c not in every]
        if missing:
            raise ValueError(f"cells {missing} are not in the map (cells (classes, depth): {every}).")
    out = ds.copy(deep=True)
    if "best_clarke_gap" not in out:
        out["best_clarke_gap"] = xr.full_like(out["best_grad_norm"], np.nan)
        out["best_kink_count"] = xr.zeros_like(out["best_rank"])
    out["best_clarke_gap"].attrs = {"long_name": "Clarke gap of the best run (re-polished)", "units": "1"}
    out["best_kink_count"].attrs = {
        "long_name": "live ReLU kinks of the best run (re-polished)",
        "units": "entries",
    }
    with _progress_bar(len(todo), progress, "re-polish") as bar:
        for K, L in todo:
            bar.set_postfix_str(f"K {K}, L {L}")
            at = {D.CLASSES: K, D.DEPTH: L}
            d = int(ds["width"].sel({D.CLASSES: K}))
            fs = map_parameters(ds, K, L)
            pol = polished_runs(
                _ldufm_model(K, L, d, n, lam), tuple(F[None] for F in fs), max_steps=max_steps, grad_tol=tol
            )
            obj, Ld = float(pol["objective"][0]), float(ds["L_DNC"].sel(at))
            hidden = [k for k, name in enumerate(pol["names"]) if name != "Z"]
            low = hidden[int(np.argmin(pol["rank"][0, hidden]))]
            flat = np.full(ds.sizes["param"], np.nan)
            vals = np.concatenate([np.asarray(F[0]).ravel() for F in pol["factors"]])
            flat[: vals.size] = vals
            Lcon = float(ds["construction_ratio"].sel(at)) * Ld
            new = {
                "best_objective": obj,
                "best_ratio": obj / Ld,
                "best_fit": float(pol["fit"][0]),
                "best_regularisation": float(pol["regularisation"][0]),
                "best_grad_norm": float(pol["grad_norm"][0]),
                "best_clarke_gap": float(pol["clarke_gap"][0]),
                "best_kink_count": int(pol["kink_count"][0]),
                "best_converged": bool(pol["clarke_gap"][0] < tol),
                "best_rank": int(pol["rank"][0, low]),
                "best_gap": float(pol["gap"][0, low]),
                "best_layer_ranks": " ".join(f"{a}:{r}" for a, r in zip(pol["names"], pol["rank"][0])),
                "best_parameters": flat,
                "beats_dnc": obj < (1 - beat) * Ld,
                "beats_constructions": obj < (1 - beat) * Lcon,
            }
            for name, value in new.items():
                out[name].loc[at] = value
            bar.update(1)
    for name, flag in (("best_converged", "best_clarke_gap"), ("converged", "clarke_gap")):
        if name in out:
            out[name].attrs["long_name"] = (
                f"{flag} < {tol:g}" if name == "converged" else (f"best run has clarke_gap < {tol:g}")
            )
    out.attrs["grad_tol"] = tol
    which = "every cell" if cells is None else "cells " + ", ".join(f"(K {K}, L {L})" for K, L in todo)
    made = provenance()
    note = (
        f"best point of {which} re-polished by svflow.explicit.polish (LBFGS {max_steps} steps; "
        f"Clarke gap >= {tol:g}: {POLISH_NAME}) with svflow {made['svflow_version']} at git commit "
        f"{made['git_commit']} (dirty {made['git_dirty']}), {made['created']}"
    )
    out.attrs["repolish"] = f"{ds.attrs['repolish']}; then {note}" if "repolish" in ds.attrs else note
    return out


def _run_cells(out: dict, Ks: list, Ls: list, widths: list, progress: bool, settings: dict) -> None:
    """Fill ``out`` cell by cell over (K, L), width ``widths[i]`` at ``Ks[i]``."""
    cells = [(i, j) for i in range(len(Ks)) for j in range(len(Ls))]
    bar = _progress_bar(len(cells), progress)
    with bar:
        for i, j in cells:
            K, L = Ks[i], Ls[j]
            out["widths"][i] = d = widths[i]
            _map_cell(out, (i, j), K, L, width=d, **settings)
            bar.update(1)


def _empty_results(nK: int, nL: int, nscales: int, seeds: int, nparam: int) -> dict:
    shape = (nK, nL)
    runs = shape + (nscales, seeds)
    return {
        "obj": np.full(runs, np.nan),
        "pol": np.full(runs, np.nan),
        "gn": np.full(runs, np.nan),
        "gap": np.full(runs, np.nan),
        "bott": np.zeros(runs, int),
        "kinks": np.zeros(runs, int),
        "fit": np.zeros(shape),
        "reg": np.zeros(shape),
        "best_gap": np.zeros(shape),
        "params": np.full(shape + (nparam,), np.nan),
        "best_rank": np.zeros(shape, int),
        "layer_ranks": np.empty(shape, object),
        "widths": np.zeros(nK, int),
        "Ldnc": np.zeros(shape),
        "Lcon": np.zeros(shape),
        "con": np.empty(shape, object),
    }


def _progress_bar(total: int, show: bool, desc: str = "optimality map"):
    from tqdm import tqdm

    return tqdm(total=total, desc=desc, unit="cell", disable=not show)


def _map_cell(
    out: dict,
    ij: tuple,
    K: int,
    L: int,
    *,
    width,
    lam,
    eta,
    steps,
    scales,
    seeds,
    samples,
    polish_steps,
    grad_tol,
    kinks,
) -> None:
    r"""Run and polish every start of one (K, L) cell and write its results into
    ``out[...][ij]``.

    The best run is the one of lowest polished objective; its bottleneck rank is
    the smallest gap rank (:func:`svflow.explicit.gap_rank`) over the hidden
    representations (every layer but the logits Z).
    """
    factors, o = ldufm_gd_batch(
        K,
        L,
        width=width,
        weight_decay=lam,
        eta=eta,
        steps=steps,
        scales=scales,
        seeds=range(seeds),
        samples=samples,
    )
    shape = (len(scales), seeds)
    model = _ldufm_model(K, L, width, samples, lam)
    pol = polished_runs(model, factors, max_steps=polish_steps, grad_tol=grad_tol, kinks=kinks)
    out["obj"][ij] = o.reshape(shape)
    out["pol"][ij] = pol["objective"].reshape(shape)
    out["gn"][ij] = pol["grad_norm"].reshape(shape)
    out["gap"][ij] = pol["clarke_gap"].reshape(shape)
    out["bott"][ij] = pol["bottleneck"].reshape(shape)
    out["kinks"][ij] = pol["kink_count"].reshape(shape)
    b = int(np.argmin(pol["objective"]))
    out["fit"][ij] = pol["fit"][b]
    out["reg"][ij] = pol["regularisation"][b]
    hidden = [k for k, n in enumerate(pol["names"]) if n != "Z"]
    low = hidden[int(np.argmin(pol["rank"][b, hidden]))]
    out["best_rank"][ij] = int(pol["rank"][b, low])
    out["best_gap"][ij] = float(pol["gap"][b, low])
    out["layer_ranks"][ij] = " ".join(f"{n}:{r}" for n, r in zip(pol["names"], pol["rank"][b]))
    flat = np.concatenate([np.asarray(F[b]).ravel() for F in pol["factors"]])
    out["params"][ij][: flat.size] = flat
    out["Ldnc"][ij] = dnc_loss(K, L, lam_H=lam, lam_W=lam, samples=samples)
    ch = relu_blocks(K, L, lam_H=lam, lam_W=lam, samples=samples)
    out["Lcon"][ij] = ch.loss
    out["con"][ij] = f"{ch.category} " + " ".join(map(str, ch.blocks))


def _map_dataset(out: dict, Ks, Ls, scales, seeds, beat_rtol, attrs) -> xr.Dataset:
    """The optimality-map dataset from the per-cell arrays of :func:`_map_cell`."""
    obj, pol, Ldnc, Lcon = out["obj"], out["pol"], out["Ldnc"], out["Lcon"]
    tol = attrs["grad_tol"]
    flat = pol.reshape(pol.shape[:2] + (-1,))
    arg = np.argmin(flat, axis=-1)
    best = np.take_along_axis(flat, arg[..., None], -1)[..., 0]
    gn_best = np.take_along_axis(out["gn"].reshape(flat.shape), arg[..., None], -1)[..., 0]
    gap_best = np.take_along_axis(out["gap"].reshape(flat.shape), arg[..., None], -1)[..., 0]
    gap_attrs = {"long_name": CLARKE_NAME, "units": "1"}
    below_d = pol < (1 - beat_rtol) * Ldnc[..., None, None]
    below_c = pol < (1 - beat_rtol) * Lcon[..., None, None]
    dims = (D.CLASSES, D.DEPTH)
    runs = dims + (D.SCALE, D.SEED)
    beat = f"polished objective < (1 - {beat_rtol:g})"
    count = {"units": "runs"}
    variables = {
        "objective": (runs, obj, {"long_name": "L-DUFM objective at the end of GD"}),
        "polished_objective": (runs, pol, {"long_name": "L-DUFM objective after the L-BFGS polish"}),
        "ratio": (runs, pol / Ldnc[..., None, None], {"long_name": "polished objective / L_DNC"}),
        "grad_norm": (runs, out["gn"], {"long_name": "norm of the full gradient at the polished point"}),
        "clarke_gap": (runs, out["gap"], gap_attrs),
        "converged": (runs, out["gap"] < tol, {"long_name": f"clarke_gap < {tol:g}"}),
        "kink_count": (
            runs,
            out["kinks"],
            {"long_name": KINK_NAME},
        ),
        "bottleneck_rank": (
            runs,
            out["bott"],
            {"long_name": "smallest gap rank of the class means over H and the hidden layers"},
        ),
        "n_runs": (dims, np.full(best.shape, flat.shape[-1]), {"long_name": "runs per cell", **count}),
        "n_below_dnc": (dims, below_d.sum(axis=(-2, -1)), {"long_name": f"runs with {beat} L_DNC", **count}),
        "n_below_construction": (
            dims,
            below_c.sum(axis=(-2, -1)),
            {"long_name": f"runs with {beat} x the best known construction", **count},
        ),
        "n_converged": (
            dims,
            (out["gap"] < tol).sum(axis=(-2, -1)),
            {"long_name": f"runs with clarke_gap < {tol:g}", **count},
        ),
        "best_ratio": (
            dims,
            best / Ldnc,
            {"long_name": "lowest polished objective / L_DNC (over scales and seeds)"},
        ),
        "best_objective": (dims, best, {"long_name": "lowest polished objective"}),
        "best_fit": (dims, out["fit"], {"long_name": "mean squared loss of the best run"}),
        "best_regularisation": (dims, out["reg"], {"long_name": "weight-decay penalty of the best run"}),
        "best_scale": (dims, np.asarray(scales)[arg // seeds], {"long_name": "init scale of the best run"}),
        "best_seed": (dims, arg % seeds, {"long_name": "seed of the best run"}),
        "best_grad_norm": (dims, gn_best, {"long_name": "gradient norm of the best run (polished)"}),
        "best_clarke_gap": (
            dims,
            gap_best,
            {**gap_attrs, "long_name": "Clarke gap of the best run (polished)"},
        ),
        "best_kink_count": (
            dims,
            np.take_along_axis(out["kinks"].reshape(flat.shape), arg[..., None], -1)[..., 0],
            {"long_name": "live ReLU kinks of the best run (polished)", "units": "entries"},
        ),
        "best_converged": (dims, gap_best < tol, {"long_name": f"best run has clarke_gap < {tol:g}"}),
        "best_rank": (
            dims,
            out["best_rank"],
            {
                "long_name": "bottleneck rank of the best run (smallest class-mean "
                "gap rank over H and the hidden layers)"
            },
        ),
        "best_gap": (dims, out["best_gap"], {"long_name": "sigma_r / sigma_(r+1) at the bottleneck rank"}),
        "best_layer_ranks": (
            dims,
            out["layer_ranks"].astype(str),
            {"long_name": "class-mean gap rank of every layer of the best run"},
        ),
        "best_parameters": (
            dims + ("param",),
            out["params"],
            {"long_name": "factors of the best run, flattened (see parameter_layout), NaN-padded"},
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
        "beats_dnc": (dims, best < (1 - beat_rtol) * Ldnc, {"long_name": f"best {beat} L_DNC"}),
        "beats_constructions": (
            dims,
            best < (1 - beat_rtol) * Lcon,
            {"long_name": f"best {beat} x the best known construction"},
        ),
        "width": ((D.CLASSES,), out["widths"], {"long_name": "hidden width d"}),
    }
    coords = {
        D.CLASSES: (np.asarray(Ks), {"long_name": "number of classes K"}),
        D.DEPTH: (np.asarray(Ls), {"long_name": "depth L (number of weight matrices)"}),
        D.SCALE: (np.asarray(scales), {"long_name": "init scale"}),
        D.SEED: np.arange(seeds),
        "param": np.arange(out["params"].shape[-1]),
    }
    return grid_dataset(coords, variables, attrs)
