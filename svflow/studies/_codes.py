r"""Studies built on softmax codes: convergence of spectral runs, winner tables.

:func:`code_convergence_study` runs the reduced ODE from spectral starts for
several depths and seeds and measures, over time, how close the class
geometry comes to the best softmax code of the predicted outcome rank
(:func:`svflow.studies.code_convergence`); the rank is the support size of the
certified $t \to \infty$ limit of the start (:func:`svflow.outcome`), whose KKT
point is also where the curves are heading (``limit_rho_ratio``).
:func:`code_winner_table` collects :func:`svflow.code_table` for several K.
"""

from __future__ import annotations

import time as _time

import numpy as np
import xarray as xr

from .. import _dims as D
from .._analysis.asymptotics import code_table, limit_point, max_margin_direction
from .._analysis.codes import (
    class_embedding,
    code_convergence,
    exact_rho,
    one_vs_rest_margin,
    softmax_code,
)
from .._dataset import grid_dataset, netcdf_safe
from .._groups import Group, resolve_group
from .._outcome import outcome
from .._precision import computes
from .._simulate import simulate
from .._start import spectral_init
from .._walsh import check_classes

__all__ = ["code_convergence_study", "code_winner_table", "random_start_code_study"]


def _limit_rho(lam: np.ndarray, rank: int, group: Group) -> float:
    U = group.basis()
    E = class_embedding(U @ np.diag(lam) @ U.T, rank)
    return one_vs_rest_margin(E, normalise=False)


@computes
def code_convergence_study(
    classes: int = 8,
    depths=(1, 2, 3, 5),
    seeds=(0, 1),
    *,
    scale: float = 1e-2,
    spread: float = 0.5,
    t_end: float = 1e8,
    num_times: int = 33,
    gram: bool = True,
    code_kwargs: dict | None = None,
    group=None,
) -> xr.Dataset:
    r"""$\rho(t)/\rho^*(K, r)$ and the Gram distance for spectral starts, per depth and seed.

    ``group``: the spectral frame (``"walsh"``, ``"cyclic"``, a tuple of cyclic
    orders; default Walsh for K = 2^m, else cyclic).

    Each run: :func:`svflow.simulate` from ``spectral_init(K, depth, scale,
    spread, seed)`` to ``t_end`` (all seeds of a depth in one batch), continued
    by :func:`svflow.outcome` from its last state to its certified
    $t \to \infty$ limit (each start is integrated once); r = support size of
    the KKT point of that limit; :func:`svflow.studies.code_convergence` with that r.

    Returns:
        ``xarray.Dataset`` with dims (depth, seed, time): ``rho``,
        ``rho_ratio``, ``gram_distance``, ``lam``; (depth, seed):
        ``outcome_rank``, ``limit_rho_ratio`` (ratio at the KKT direction),
        ``kkt_residual``, ``limit_gamma``, ``rho_star``.
    """
    grp = resolve_group(group, classes)
    depths = [int(d) for d in depths]
    seeds = [int(s) for s in seeds]
    if not depths or not seeds:
        raise ValueError("depths and seeds must each list at least one value.")
    tic = _time.perf_counter()
    codes: dict = {}
    rows = []
    for depth in depths:
        starts = [spectral_init(classes, depth, scale, spread, seed, group=grp) for seed in seeds]
        runs = simulate(classes, depth, init=starts, t_end=t_end, num_times=num_times)  # one batch
        lims = outcome(classes, depth, init=runs, kkt=False)  # t -> infinity, continuing the runs
        rows.append(
            [
                _spectral_code_run(
                    runs.isel(start=b), lims.isel(start=b), depth, grp, codes, code_kwargs, gram
                )
                for b in range(len(seeds))
            ]
        )
    attrs = {
        "title": "convergence of spectral runs to softmax codes",
        "engine": "reduced",
        "classes": int(classes),
        "group": grp.label,
        "scale": float(scale),
        "spread": float(spread),
        "t_end": float(t_end),
        "rho_star_exact": {str(r): exact_rho(classes, r) for r in codes},
        "rho_star_found": {str(r): c.rho for r, c in codes.items()},
        "wall_time_s": _time.perf_counter() - tic,
    }
    times = runs[D.TIME].values
    return _spectral_study_dataset(rows, depths, seeds, times, classes, attrs)


def _best_code(codes: dict, classes: int, rank: int, code_kwargs: dict | None):
    """The best softmax code of rank ``rank`` (searched once per rank, kept in ``codes``)."""
    if rank not in codes:
        codes[rank] = softmax_code(classes, rank, **(code_kwargs or {}))
    return codes[rank]


def _spectral_code_run(
    ds: xr.Dataset, lim: xr.Dataset, depth: int, grp, codes: dict, code_kwargs, gram
) -> dict:
    """One spectral run: its limit's KKT point, rank r and the convergence to the rank-r code."""
    classes = ds.sizes[D.MODE]
    lam_end = lim["lam_end"].values
    if int(lim["outcome"]) >= 0:  # a decided limit: the group's KKT point (on its support)
        p = limit_point(grp, lam_end, depth, lim["support"].values)
    else:  # undecided by the last horizon: KKT point from the late state
        p = max_margin_direction(lam_end, depth, group=grp)
    r = int(p.support.sum())
    cc = code_convergence(ds, rank=r, code=_best_code(codes, classes, r, code_kwargs), gram=gram)
    rho_star = cc.attrs["code_rho_star"]
    return {
        "rho": cc["code_rho"].values,
        "rho_ratio": cc["code_rho_ratio"].values,
        "gram_distance": cc["code_gram_distance"].values if gram else np.full(ds.sizes[D.TIME], np.nan),
        "lam": ds[D.LAM].values,
        "outcome_rank": r,
        "rho_star": rho_star,
        "limit_rho_ratio": _limit_rho(p.lam, r, grp) / rho_star,
        "kkt_residual": p.kkt_residual,
        "limit_gamma": p.normalised_margin,
    }


def _stack(rows: list, key: str, dtype=float) -> np.ndarray:
    """``rows[depth][seed][key]`` as one array with leading dims (depth, seed)."""
    return np.array([[run[key] for run in row] for row in rows], dtype=dtype)


def _spectral_study_dataset(rows: list, depths, seeds, times, classes: int, attrs: dict) -> xr.Dataset:
    """The dataset of :func:`code_convergence_study`."""
    dims2 = (D.DEPTH, D.SEED)
    dims3 = dims2 + (D.TIME,)
    variables = {  # long_name and units from the vocabulary (svflow._dims)
        "rho": (dims3, _stack(rows, "rho")),
        "rho_ratio": (dims3, _stack(rows, "rho_ratio")),
        "gram_distance": (dims3, _stack(rows, "gram_distance")),
        "lam": (dims3 + (D.MODE,), _stack(rows, "lam")),
        "outcome_rank": (dims2, _stack(rows, "outcome_rank", int)),
        "rho_star": (dims2, _stack(rows, "rho_star")),
        "limit_rho_ratio": (dims2, _stack(rows, "limit_rho_ratio")),
        "kkt_residual": (dims2, _stack(rows, "kkt_residual"), {"long_name": "KKT stationarity residual"}),
        "limit_gamma": (dims2, _stack(rows, "limit_gamma")),
    }
    coords = {
        D.DEPTH: depths,
        D.SEED: seeds,
        D.TIME: times,
        D.MODE: np.arange(classes),
        "factors": (D.DEPTH, np.array(depths) + 1, {}),
    }
    return grid_dataset(coords, variables, attrs)


@computes
def code_winner_table(classes=(4, 8, 16), factors=range(2, 9)) -> xr.Dataset:
    r"""Predicted winning equal-$\lambda$ Walsh code per (K, N) (:func:`svflow.code_table`).

    Returns:
        ``xarray.Dataset`` over (``table_classes``, ``factors``): ``win_size`` r,
        ``win_dmin`` d, ``win_rho`` = 2d/r, ``win_gamma``, ``win_ties``,
        ``win_name``, ``runner_up_ratio``; ``gamma_global`` (NaN where not
        computed: K > 8).
    """
    Ks = [int(k) for k in classes]
    Ns = [int(n) for n in factors]
    rows: dict[str, list] = {
        k: []
        for k in (
            "size",
            "dmin",
            "rho",
            "gamma",
            "ties",
            "name",
            "runner_up_ratio",
            "gamma_global",
        )
    }
    for K in Ks:
        t = code_table(K, Ns)
        for k in ("size", "dmin", "rho", "gamma", "ties", "name", "runner_up_ratio"):
            rows[k].append(t[k].values)
        rows["gamma_global"].append(
            t["gamma_global"].values if "gamma_global" in t else np.full(len(Ns), np.nan)
        )
    dims = ("table_classes", "factors")
    data = {
        f"win_{k}" if k in ("size", "dmin", "rho", "gamma", "ties", "name") else k: (
            dims,
            np.array(v) if k != "name" else D.text(v),
        )
        for k, v in rows.items()
    }
    return netcdf_safe(
        xr.Dataset(
            data,
            coords={"table_classes": Ks, "factors": Ns},
            attrs={
                "description": "predicted winner among equal-lambda Walsh codes, "
                "gamma = (2/K) d / (N r)^(N/2); gamma_global: optimum over all lambda >= 0"
            },
        )
    )


@computes
def random_start_code_study(
    classes: int = 8,
    depths=(1, 2, 3, 5),
    seeds=(0, 1),
    *,
    width: int = 32,
    scale: float = 0.5,
    eta: float = 0.1,
    t_end: float = 1e4,
    num_times: int = 25,
    gram: bool = True,
    code_kwargs: dict | None = None,
) -> xr.Dataset:
    r"""$\rho(t)/\rho^*(K, r)$ for random Gaussian starts of the full-parameter engine.

    Each run: :func:`svflow.random_model` (width, scale, key=seed), trained by
    full-batch gradient descent (:func:`svflow.train`, step ``eta``, time
    t = steps x eta) in segments ending on a log grid up to ``t_end``; the
    logits Z are read from the model after every segment. r = the rank of
    the $t \to \infty$ limit of the same start (the random-start route of
    :func:`svflow.outcome`: full-parameter flow in double-log time; K - 1 at
    NC); where that outcome is undecided, r = the numerical rank of the
    centred logits at ``t_end`` (rtol 0.1) and ``limit_outcome`` says so.
    r is held fixed over time; then :func:`svflow.studies.code_convergence`
    with those Z.

    Returns:
        ``xarray.Dataset`` with dims (depth, seed, time): ``rho``,
        ``rho_ratio``, ``gram_distance``, ``sigma``; (depth, seed):
        ``outcome_rank``, ``limit_outcome``, ``rho_star``.
    """
    check_classes(classes)
    depths = [int(d) for d in depths]
    seeds = [int(s) for s in seeds]
    steps_end = max(1, int(round(t_end / eta)))
    grid = np.unique(np.round(np.geomspace(1, steps_end, num_times - 1)).astype(np.int64))
    grid = np.concatenate([[0], grid])
    codes: dict = {}
    tic = _time.perf_counter()
    from .._full.model import random_model

    rows = []
    for depth in depths:
        starts = [random_model(classes, depth=depth, width=width, scale=scale, key=seed) for seed in seeds]
        limits = outcome(init=starts).outcome.values
        rows.append(
            [
                _random_code_run(
                    classes, depth, seed, width, scale, eta, grid, codes, code_kwargs, gram, int(lim)
                )
                for seed, lim in zip(seeds, limits)
            ]
        )
    attrs = {
        "title": "convergence of random starts (full engine) to softmax codes",
        "engine": "full",
        "classes": int(classes),
        "width": int(width),
        "scale": float(scale),
        "eta": float(eta),
        "t_end": float(grid[-1] * eta),
        "wall_time_s": _time.perf_counter() - tic,
    }
    return _random_study_dataset(rows, depths, seeds, grid * eta, classes, attrs)


def _random_study_dataset(rows: list, depths, seeds, times, classes: int, attrs: dict) -> xr.Dataset:
    """The dataset of :func:`random_start_code_study`."""
    dims2 = (D.DEPTH, D.SEED)
    dims3 = dims2 + (D.TIME,)
    variables = {  # long_name and units from the vocabulary (svflow._dims), but outcome_rank's own
        "rho": (dims3, _stack(rows, "rho")),
        "rho_ratio": (dims3, _stack(rows, "rho_ratio")),
        "gram_distance": (dims3, _stack(rows, "gram_distance")),
        "sigma": (
            dims3 + (D.SV,),
            _stack(rows, "sigma"),
            {"long_name": "singular values of the centred class-mean logits"},
        ),
        "outcome_rank": (
            dims2,
            _stack(rows, "outcome_rank", int),
            {"long_name": "code rank r: the limit rank (K - 1 at NC), else the rank at t_end"},
        ),
        "limit_outcome": (
            dims2,
            _stack(rows, "limit_outcome", int),
            {"long_name": "t -> infinity outcome: 0 = NC, r = rank of the limit, -1 = undecided"},
        ),
        "rho_star": (dims2, _stack(rows, "rho_star")),
    }
    coords = {D.DEPTH: depths, D.SEED: seeds, D.TIME: times, D.SV: np.arange(classes)}
    return grid_dataset(coords, variables, attrs)


def _random_code_run(
    classes: int, depth: int, seed: int, width, scale, eta, grid, codes, code_kwargs, gram, limit: int
) -> dict:
    """One random start trained by gradient descent: logits on the step grid and their code convergence."""
    from .._full.model import random_model
    from .._full.train import train

    m = random_model(classes, depth=depth, width=width, scale=scale, key=seed)
    Zs = [np.asarray(m.logits())]
    last = None
    for k0, k1 in zip(grid[:-1], grid[1:]):
        # times=[0, dt] records exactly at the segment's end (k1 - k0 steps)
        last, m = train(m, eta=eta, times=[0.0, float(k1 - k0) * eta], return_model=True, progress=False)
        Zs.append(np.asarray(m.logits()))
    assert last is not None  # grid holds step 0 and at least one later step
    Z = np.stack(Zs)
    T, K = len(grid), classes
    r = classes - 1 if limit == 0 else limit if limit > 0 else int(last["rank"].values[-1])
    fake = xr.Dataset(coords={D.TIME: grid * eta})
    cc = code_convergence(fake, rank=r, logits=Z, code=_best_code(codes, classes, r, code_kwargs), gram=gram)
    means = Z.reshape(T, K, K, Z.shape[-1] // K).mean(-1)
    P = np.eye(K) - 1.0 / K
    return {
        "rho": cc["code_rho"].values,
        "rho_ratio": cc["code_rho_ratio"].values,
        "gram_distance": cc["code_gram_distance"].values if gram else np.full(T, np.nan),
        "sigma": np.linalg.svd(P @ means @ P, compute_uv=False),
        "outcome_rank": r,
        "limit_outcome": limit,
        "rho_star": cc.attrs["code_rho_star"],
    }
