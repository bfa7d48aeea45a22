r"""Depth x width phase map from random starts.

(docs: theory/outcomes.md, 'Random starts: depth against width')

Each cell (classes K, depth L, width d) trains full-batch GD from several
seeded Gaussian starts (:func:`svflow.random_model`, fan-in scaling) and keeps
the outcome: the numerical rank of the centred class-mean logits, the
normalised margin $\gamma = \min\text{margin} / (\sum_l \|A_l\|_F^2)^{N/2}$ and
whether the run reached neural collapse (all K - 1 non-zero singular values
of the centred Z within ``nc_tol`` of each other).

:func:`phase_cell` is pure in the seeds' keys and static in (K, L, d, ...):
one compile per static setting, vmapped over seeds, so a sweep runner can
call it cell by cell or chunk by chunk.
"""

from __future__ import annotations

import sys
import time as _time
from collections.abc import Sequence
from functools import partial
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import xarray as xr

from .. import _dims as D
from .._checks import check_float, check_int
from .._dataset import grid_dataset
from .._full.model import random_model
from .._full.train import run_gd, step_grid
from .._metrics import RANK_RTOL, margin_from_logits, rank_from_sigma, sigma_from_logits
from .._precision import computes

__all__ = ["phase_cell", "phase_map", "PHASE_OUTPUTS", "FULL_SETTING", "QUICK_SETTING"]

# The settings of the depth x width phase map (keyword arguments of phase_map),
# shared by scenarios/phase_map.py and the figure ``phase_map`` so the two never
# drift apart. QUICK: minutes on 2 CPU cores; FULL: meant for a GPU.
QUICK_SETTING: dict[str, Any] = dict(
    classes=(8, 16),
    depths=(1, 3, 6),
    widths=(8, 32, 128),
    seeds=2,
    scale=1.0,
    eta=0.2,
    steps=2500,
)
FULL_SETTING: dict[str, Any] = dict(
    classes=(8, 16),
    depths=(1, 2, 3, 4, 5, 6),
    widths=(8, 16, 32, 64, 128, 256, 512),
    seeds=8,
    scale=1.0,
    eta=0.2,
    steps=20000,
)

PHASE_OUTPUTS = (
    "rank",
    "normalised_margin",
    "margin",
    "loss",
    "sv_ratio",
    "reached_nc",
    "diverged",
)
"""Final per-seed outputs of :func:`phase_cell` (besides the record trajectories)."""


def _light_record(model, rank_rtol):
    N = model.num_factors
    Z = model.logits()
    sigma = sigma_from_logits(Z)
    margin = margin_from_logits(Z)
    norm_sq = sum(jnp.sum(A**2) for A in model.factors)
    return dict(
        sigma=sigma,
        rank=rank_from_sigma(sigma, rank_rtol),
        loss=model.data_loss(),
        margin=margin,
        normalised_margin=margin / norm_sq ** (N / 2),
    )


@computes
@partial(
    jax.jit,
    static_argnames=(
        "classes",
        "depth",
        "width",
        "scale",
        "eta",
        "steps",
        "num_records",
        "loss",
        "activation",
        "rank_rtol",
        "nc_tol",
        "dtype",
    ),
)
def phase_cell(
    keys,
    *,
    classes: int,
    depth: int,
    width: int,
    scale: float,
    eta: float,
    steps: int,
    num_records: int = 17,
    loss: str = "ce",
    activation: str = "linear",
    rank_rtol: float = RANK_RTOL,
    nc_tol: float = 0.1,
    dtype=None,
) -> dict:
    r"""Train one (K, L, d) cell from every key in ``keys`` (vmapped).

    Args:
        keys: (S, 2) JAX keys (``jax.random.split(key, S)``), one per seed.
        classes, depth, width: K, L, d (static: one compile per setting).
        scale: init scale of :func:`svflow.random_model` (fan-in scaled Gaussian).
        eta, steps: GD step size and number of steps (t_end = steps x eta).
        num_records: size of the log-spaced record grid of ``rank``/``sv_ratio``.
        rank_rtol: numerical rank threshold (sigma_i > rank_rtol sigma_1).
        nc_tol: NC when $\sigma_{K-1} \ge (1 - \text{nc\_tol})\,\sigma_1$.

    Returns:
        dict of arrays with leading axis S: the final ``rank``,
        ``normalised_margin``, ``margin``, ``loss``, ``sv_ratio``
        ($\sigma_{K-1}/\sigma_1$), ``reached_nc``, ``diverged`` (loss non-finite
        at some step), ``sigma`` (S, K) final singular values, and the
        trajectories ``rank_t``, ``sv_ratio_t`` (S, R) on the grid ``record_steps``.
    """
    grid = step_grid(steps, num_records)
    counts = jnp.asarray(np.diff(grid, prepend=0))

    def one(key):
        m = random_model(
            classes,
            depth=depth,
            width=width,
            scale=scale,
            key=key,
            loss=loss,
            activation=activation,
            dtype=dtype,
        )

        m, recs, bad = run_gd(m, eta, counts, rank_rtol, _light_record)
        sig = recs["sigma"]
        ratio = sig[:, classes - 2] / sig[:, 0]
        final = {k: v[-1] for k, v in recs.items()}
        diverged = (bad >= 0) | ~jnp.isfinite(final["loss"])
        return dict(
            rank=final["rank"],
            normalised_margin=final["normalised_margin"],
            margin=final["margin"],
            loss=final["loss"],
            sv_ratio=ratio[-1],
            reached_nc=(ratio[-1] >= 1 - nc_tol) & ~diverged,
            diverged=diverged,
            sigma=final["sigma"],
            rank_t=recs["rank"],
            sv_ratio_t=ratio,
        )

    return jax.vmap(one)(keys)


@computes
def phase_map(
    classes: Sequence[int] = (8, 16),
    depths: Sequence[int] = (1, 2, 3, 4, 5, 6),
    widths: Sequence[int] = (8, 16, 32, 64, 128, 256, 512),
    *,
    seeds: int = 4,
    scale: float = 1.0,
    eta: float = 0.1,
    steps: int = 4000,
    num_records: int = 17,
    seed: int = 0,
    loss: str = "ce",
    rank_rtol: float = RANK_RTOL,
    nc_tol: float = 0.1,
    progress: bool = True,
) -> xr.Dataset:
    r"""Outcome of random-start GD over classes x depth x width x seed.

    Calls :func:`phase_cell` once per (K, L, d) cell (vmapped over ``seeds``
    keys split from ``seed``; the same keys for every cell). Returns a dataset
    with dims ``classes``, ``depth``, ``width``, ``seed`` (and ``record`` for
    the trajectories ``rank_t``, ``sv_ratio_t``; ``sv`` for ``sigma``, padded
    with NaN beyond K), the final outcomes of :data:`PHASE_OUTPUTS`, and attrs
    with every setting.
    """
    classes, depths, widths = list(classes), list(depths), list(widths)
    seeds = check_int("seeds (the number of seeds per cell)", seeds, minimum=1)
    seed = check_int("seed", seed, minimum=0)
    eta = check_float("eta", eta, minimum=0.0, strict_min=True)
    keys = jax.random.split(jax.random.PRNGKey(seed), seeds)
    grid = step_grid(steps, num_records)
    out = _empty_phase_outputs((len(classes), len(depths), len(widths), seeds), grid.size, max(classes))
    cells = [(a, b, c) for a in range(len(classes)) for b in range(len(depths)) for c in range(len(widths))]
    bar = None
    if progress:
        from tqdm import tqdm

        bar = tqdm(cells, desc="phase map", unit="cell", file=sys.stderr)
    tic = _time.perf_counter()
    for a, b, c in bar if bar is not None else cells:
        res = jax.device_get(
            phase_cell(
                keys,
                classes=classes[a],
                depth=depths[b],
                width=widths[c],
                scale=float(scale),
                eta=float(eta),
                steps=int(steps),
                num_records=int(num_records),
                loss=loss,
                rank_rtol=float(rank_rtol),
                nc_tol=float(nc_tol),
            )
        )
        for k in PHASE_OUTPUTS + ("rank_t", "sv_ratio_t"):
            out[k][a, b, c] = res[k]
        out["sigma"][a, b, c, :, : classes[a]] = res["sigma"]
    attrs = {
        "title": "svflow depth x width phase map (random starts, full GD)",
        "engine": "full",
        "init": "random_model (fan-in scaled Gaussian)",
        "scale": float(scale),
        "eta": float(eta),
        "steps": int(steps),
        "t_end": float(steps * eta),
        "base_seed": int(seed),
        "loss_name": loss,
        "activation": "linear",
        "rank_rtol": float(rank_rtol),
        "nc_tol": float(nc_tol),
        "samples_per_class": 1,
        "device": str(jax.devices()[0]),
        "wall_time_s": _time.perf_counter() - tic,
    }
    return _phase_dataset(out, classes, depths, widths, seeds, grid * float(eta), attrs)


def _empty_phase_outputs(shape: tuple, num_records: int, Kmax: int) -> dict:
    """Zeroed result arrays of a phase map over ``shape = (classes, depth, width, seed)``."""
    out = {
        k: np.zeros(shape, dtype=bool if k in ("reached_nc", "diverged") else float) for k in PHASE_OUTPUTS
    }
    out["rank_t"] = np.zeros(shape + (num_records,))
    out["sv_ratio_t"] = np.zeros(shape + (num_records,))
    out["sigma"] = np.full(shape + (Kmax,), np.nan)
    return out


def _phase_dataset(out: dict, classes, depths, widths, seeds: int, record_times, attrs: dict) -> xr.Dataset:
    """The :func:`phase_map` dataset from the filled arrays of :func:`_empty_phase_outputs`."""
    dims = (D.CLASSES, D.DEPTH, "width", D.SEED)
    # long_name and units from the vocabulary (svflow._dims): the values at the last step
    data: dict[str, tuple] = {k: (dims, out[k]) for k in PHASE_OUTPUTS}
    data["rank_t"] = (dims + ("record",), out["rank_t"])
    data["sv_ratio_t"] = (dims + ("record",), out["sv_ratio_t"])
    data["sigma"] = (
        dims + (D.SV,),
        out["sigma"],
        {"long_name": "final singular values of the centred logits (NaN beyond K)"},
    )
    coords = {
        D.CLASSES: np.asarray(classes),
        D.DEPTH: np.asarray(depths),
        "width": np.asarray(widths),
        D.SEED: np.arange(seeds),
        "record_time": ("record", record_times, {}),
    }
    return grid_dataset(coords, data, attrs)
