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

from ._asymptotics import code_table, kkt_point, max_margin_direction
from ._codes import (
    class_embedding,
    code_convergence,
    exact_rho,
    one_vs_rest_margin,
    softmax_code,
)
from ._dataset import netcdf_safe, provenance
from ._groups import resolve_group, spectral_basis
from ._outcome import outcome
from ._precision import float64
from ._simulate import simulate
from ._start import spectral_init
from ._walsh import check_classes

__all__ = ["code_convergence_study", "code_winner_table", "random_start_code_study"]


def _limit_rho(lam: np.ndarray, rank: int, group=None) -> float:
    K = lam.shape[0]
    U = spectral_basis(K, group)
    E = class_embedding(U @ np.diag(lam) @ U.T, rank)
    return one_vs_rest_margin(E, normalise=False)


@float64
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
    spread, seed)`` to ``t_end`` (all seeds of a depth in one batch); r = support size of the KKT point of the
    final state; :func:`svflow.studies.code_convergence` with that r.

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
    shape = (len(depths), len(seeds))
    out = {k: None for k in ("rho", "rho_ratio", "gram_distance", "lam")}
    per = {
        k: np.zeros(shape)
        for k in (
            "outcome_rank",
            "limit_rho_ratio",
            "kkt_residual",
            "limit_gamma",
            "rho_star",
        )
    }
    times = None
    codes = {}
    for a, depth in enumerate(depths):
        starts = [spectral_init(classes, depth, scale, spread, seed, group=grp) for seed in seeds]
        runs = simulate(classes, depth, init=starts, t_end=t_end, num_times=num_times)  # one batch
        lims = outcome(classes, depth, init=starts, kkt=False)  # t -> infinity, one batch
        for b in range(len(seeds)):
            ds = runs.isel(start=b)
            lim = lims.isel(start=b)
            lam_end = lim["lam_end"].values
            if int(lim["outcome"]) >= 0 and grp.name == "walsh":
                p = kkt_point(lam_end, depth, support=lim["support"].values)
            else:  # undecided by the last horizon, or another group: KKT point from the late state
                p = max_margin_direction(lam_end, depth, group=grp)
            r = int(p.support.sum())
            if r not in codes:
                codes[r] = softmax_code(classes, r, **(code_kwargs or {}))
            cc = code_convergence(ds, rank=r, code=codes[r], gram=gram)
            if times is None:
                times = ds["time"].values
                T = len(times)
                for k in ("rho", "rho_ratio", "gram_distance"):
                    out[k] = np.full(shape + (T,), np.nan)
                out["lam"] = np.zeros(shape + (T, classes))
            out["rho"][a, b] = cc["code_rho"].values
            out["rho_ratio"][a, b] = cc["code_rho_ratio"].values
            if gram:
                out["gram_distance"][a, b] = cc["code_gram_distance"].values
            out["lam"][a, b] = ds["lam"].values
            rho_star = cc.attrs["code_rho_star"]
            per["outcome_rank"][a, b] = r
            per["rho_star"][a, b] = rho_star
            per["limit_rho_ratio"][a, b] = _limit_rho(p.lam, r, grp) / rho_star
            per["kkt_residual"][a, b] = p.kkt_residual
            per["limit_gamma"][a, b] = p.normalised_margin
    dims3 = ("depth", "seed", "time")
    data = {
        "rho": (
            dims3,
            out["rho"],
            {"long_name": "one-vs-rest margin of the rank-r class embedding"},
        ),
        "rho_ratio": (dims3, out["rho_ratio"], {"long_name": "rho / rho*(K, r)"}),
        "gram_distance": (
            dims3,
            out["gram_distance"],
            {"long_name": "RMS Gram difference to the best code (min over relabellings)"},
        ),
        "lam": (
            dims3 + ("mode",),
            out["lam"],
            {"long_name": "logit eigenvalue in the Walsh frame"},
        ),
        "outcome_rank": (
            ("depth", "seed"),
            per["outcome_rank"].astype(int),
            {"long_name": "support size of the t -> infinity limit (svflow.outcome)"},
        ),
        "rho_star": (
            ("depth", "seed"),
            per["rho_star"],
            {"long_name": "rho*(K, r) (exact or best found)"},
        ),
        "limit_rho_ratio": (
            ("depth", "seed"),
            per["limit_rho_ratio"],
            {"long_name": "rho / rho* at the limiting (KKT) direction"},
        ),
        "kkt_residual": (
            ("depth", "seed"),
            per["kkt_residual"],
            {"long_name": "KKT stationarity residual"},
        ),
        "limit_gamma": (
            ("depth", "seed"),
            per["limit_gamma"],
            {"long_name": "normalised margin of the KKT point"},
        ),
    }
    coords = {
        "depth": depths,
        "seed": seeds,
        "time": times,
        "mode": np.arange(classes),
        "factors": ("depth", np.array(depths) + 1),
    }
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
        **provenance(),
    }
    return netcdf_safe(xr.Dataset(data, coords=coords, attrs=attrs))


@float64
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
    rows = {
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
            np.array(v) if k != "name" else np.array(v).astype(str),
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


@float64
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
    logits Z are read from the model after every segment. r = numerical rank
    of the centred logits at ``t_end`` (``rank`` of the dataset, rtol 0.1),
    held fixed over time; then :func:`svflow.studies.code_convergence` with those Z.

    Returns:
        ``xarray.Dataset`` with dims (depth, seed, time): ``rho``,
        ``rho_ratio``, ``gram_distance``, ``sigma``; (depth, seed):
        ``outcome_rank``, ``rho_star``.
    """
    from ._full import random_model
    from ._train import train

    check_classes(classes)
    depths = [int(d) for d in depths]
    seeds = [int(s) for s in seeds]
    steps_end = max(1, int(round(t_end / eta)))
    grid = np.unique(np.round(np.geomspace(1, steps_end, num_times - 1)).astype(np.int64))
    grid = np.concatenate([[0], grid])
    T = len(grid)
    shape = (len(depths), len(seeds))
    rho = np.full(shape + (T,), np.nan)
    ratio = np.full(shape + (T,), np.nan)
    dist = np.full(shape + (T,), np.nan)
    sig = np.zeros(shape + (T, classes))
    rank = np.zeros(shape, int)
    rho_star = np.zeros(shape)
    codes = {}
    tic = _time.perf_counter()
    for a, depth in enumerate(depths):
        for b, seed in enumerate(seeds):
            m = random_model(classes, depth=depth, width=width, scale=scale, key=seed)
            Zs = [np.asarray(m.logits())]
            last = None
            for k0, k1 in zip(grid[:-1], grid[1:]):
                # times=[0, dt] records exactly at the segment's end (k1 - k0 steps)
                last, m = train(
                    m,
                    eta=eta,
                    times=[0.0, float(k1 - k0) * eta],
                    return_model=True,
                    progress=False,
                )
                Zs.append(np.asarray(m.logits()))
            Z = np.stack(Zs)
            r = int(last["rank"].values[-1])
            if r not in codes:
                codes[r] = softmax_code(classes, r, **(code_kwargs or {}))
            times = grid * eta
            fake = xr.Dataset(coords={"time": times})
            cc = code_convergence(fake, rank=r, logits=Z, code=codes[r], gram=gram)
            rho[a, b] = cc["code_rho"].values
            ratio[a, b] = cc["code_rho_ratio"].values
            if gram:
                dist[a, b] = cc["code_gram_distance"].values
            K = classes
            n = Z.shape[-1] // K
            means = Z.reshape(T, K, K, n).mean(-1)
            P = np.eye(K) - 1.0 / K
            sig[a, b] = np.linalg.svd(P @ means @ P, compute_uv=False)
            rank[a, b] = r
            rho_star[a, b] = cc.attrs["code_rho_star"]
    dims3 = ("depth", "seed", "time")
    data = {
        "rho": (
            dims3,
            rho,
            {"long_name": "one-vs-rest margin of the rank-r class embedding"},
        ),
        "rho_ratio": (dims3, ratio, {"long_name": "rho / rho*(K, r)"}),
        "gram_distance": (
            dims3,
            dist,
            {"long_name": "RMS Gram difference to the best code"},
        ),
        "sigma": (
            dims3 + ("sv",),
            sig,
            {"long_name": "singular values of the centred class-mean logits"},
        ),
        "outcome_rank": (
            ("depth", "seed"),
            rank,
            {"long_name": "numerical rank (rtol 0.1) at t_end"},
        ),
        "rho_star": (("depth", "seed"), rho_star, {"long_name": "rho*(K, r)"}),
    }
    attrs = {
        "title": "convergence of random starts (full engine) to softmax codes",
        "engine": "full",
        "classes": int(classes),
        "width": int(width),
        "scale": float(scale),
        "eta": float(eta),
        "t_end": float(grid[-1] * eta),
        "wall_time_s": _time.perf_counter() - tic,
        **provenance(),
    }
    return netcdf_safe(
        xr.Dataset(
            data,
            coords={
                "depth": depths,
                "seed": seeds,
                "time": grid * eta,
                "sv": np.arange(classes),
            },
            attrs=attrs,
        )
    )
