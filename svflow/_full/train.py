r"""Full-batch gradient descent on a :class:`DeepUFM`, logged as a dataset.

Each step is $A_l \leftarrow A_l - \eta\,\partial_{A_l}(\text{loss} + \text{penalty})$
for every factor; after k steps the gradient-flow time is $t = k\eta$
(the difference to the flow is $O(\eta)$; docs: theory/models.md, 'Time'). Steps run in
compiled loops (``jax.lax.fori_loop`` between log-spaced record steps,
``jax.lax.scan`` over records in :func:`run_gd`), on whatever JAX device holds
the model, in the model's dtype.
"""

from __future__ import annotations

import dataclasses
import math
import sys
import time as _time

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np

from .. import _dims as D
from .._checks import check_float, check_fraction, check_int
from .._dataset import build_dataset
from .._integrate import check_times
from .._metrics import RANK_RTOL, margin_from_logits, rank_from_sigma, sigma_from_logits
from .._precision import computes
from .model import DeepUFM, _check_dtype

__all__ = ["DivergenceError", "train", "run_gd", "record", "step_grid", "advance"]


class DivergenceError(FloatingPointError):
    """Gradient descent produced a non-finite loss; the message names the step."""


def step_grid(steps: int, num: int = 101) -> np.ndarray:
    """Record steps: 0, then about ``num - 1`` log-spaced integers up to ``steps``."""
    steps = check_int("steps", steps, minimum=1)
    num = check_int("num_times", num, minimum=2)
    grid = np.unique(np.round(np.logspace(0, np.log10(steps), num - 1)).astype(np.int64))
    grid[-1] = steps  # the last record is always the final step (num = 2 included)
    return np.concatenate([[0], np.unique(grid)])


def _objective(factors, model: DeepUFM):
    return model.objective(factors)


def advance(model: DeepUFM, eta, start, count):
    r"""``count`` gradient-descent steps (dynamic, so one compile serves all counts).

    Returns ``(model, first_bad)``: ``first_bad`` is the global index
    ``start + i`` of the first step whose objective was non-finite, or -1.
    Pure, jit- and vmap-able.
    """
    eta = jnp.asarray(eta, model.dtype)

    def body(i, carry):
        factors, bad = carry
        obj, g = jax.value_and_grad(_objective)(factors, model)
        bad = jnp.where((bad < 0) & ~jnp.isfinite(obj), start + i, bad)
        factors = tuple(A - eta * gA for A, gA in zip(factors, g))
        return factors, bad

    start = jnp.asarray(start)
    init = (model.factors, jnp.full((), -1, start.dtype))
    factors, bad = jax.lax.fori_loop(0, count, body, init)
    return model.with_factors(factors), bad


def record(model: DeepUFM, rank_rtol: float = RANK_RTOL, factor_spectra: bool = True) -> dict:
    r"""Every per-time quantity of the common layout for the current factors.

    ``sigma``: singular values of the centred class-mean logits (K);
    ``sigma_factor`` (N, K): the K largest singular values of every factor
    (zero-padded); ``norm_sq`` (N,): $\|A_l\|_F^2$; ``normalised_margin``:
    margin / $(\sum_l\|A_l\|_F^2)^{N/2}$ (docs: theory/outcomes.md, 'The max-margin
    characterisation'). ``factor_spectra=False`` leaves out ``sigma_factor``
    (a full SVD of every factor: the dominant cost of a record of a wide model).
    Spectral starts add ``lam`` = diag($U^\top Z U$),
    ``s`` (N, K) = diag($F_{l+1}^\top A_l F_l$) and ``frame_drift`` =
    $\|\text{offdiag}(U^\top Z U)\|_F$.
    """
    K, N = model.classes, model.num_factors
    Z = model.logits()
    sigma = sigma_from_logits(Z)
    dl = model.data_loss()
    svs = []
    for A in model.factors if factor_spectra else ():
        sv = jnp.linalg.svd(A, compute_uv=False)[:K]
        svs.append(jnp.pad(sv, (0, K - sv.shape[0])))
    norm_sq = jnp.stack([jnp.sum(A**2) for A in model.factors])
    margin = margin_from_logits(Z)
    out = dict(
        sigma=sigma,
        loss=dl,
        objective=dl + model.penalty(),
        margin=margin,
        rank=rank_from_sigma(sigma, rank_rtol),
        norm_sq=norm_sq,
        normalised_margin=margin / jnp.sum(norm_sq) ** (N / 2),
    )
    if factor_spectra:
        out["sigma_factor"] = jnp.stack(svs)
    if model.frames is not None:
        F = model.frames
        M = F[0].T @ Z @ F[0]
        out["lam"] = jnp.diag(M)
        out["frame_drift"] = jnp.sqrt(jnp.sum((M - jnp.diag(jnp.diag(M))) ** 2))
        out["s"] = jnp.stack([jnp.diag(F[l + 1].T @ A @ F[l]) for l, A in enumerate(model.factors)])
    return out


def run_gd(model: DeepUFM, eta, counts, rank_rtol: float = RANK_RTOL, record_fn=None):
    r"""Pure GD driver: ``jax.lax.scan`` over record segments.

    ``counts`` (R,) int: steps to take before each of R records (a 0 records
    the current state). ``record_fn(model, rank_rtol) -> dict`` defaults to
    :func:`record`. Returns ``(final_model, records, first_bad)`` with
    ``records`` a dict of arrays with leading axis R and ``first_bad`` the
    first step with a non-finite objective (-1 if none). jit- and vmap-able
    (vmap over models built from different keys; ``counts`` shared).
    """
    record_fn = record if record_fn is None else record_fn
    counts = jnp.asarray(counts)

    def seg(carry, count):
        m, bad, done = carry
        m, b = advance(m, eta, done, count)
        bad = jnp.where(bad < 0, b, bad)
        return (m, bad, done + count), record_fn(m, rank_rtol)

    zero = jnp.zeros((), counts.dtype)
    (m, bad, _), recs = jax.lax.scan(seg, (model, zero - 1, zero), counts)
    return m, recs, bad


_advance_jit = eqx.filter_jit(advance)
_record_jit = eqx.filter_jit(record)


@computes
def train(
    model: DeepUFM,
    *,
    eta: float,
    steps: int | None = None,
    t_end: float | None = None,
    times=None,
    num_times: int = 101,
    dtype=None,
    chunk_steps: int = 20_000,
    progress: bool | None = None,
    rank_rtol: float = RANK_RTOL,
    return_model: bool = False,
):
    r"""Full-batch gradient descent on ``model``, recorded as an ``xarray.Dataset``.

    $A_l \leftarrow A_l - \eta\nabla_{A_l}
    (\text{loss} + \sum_l\tfrac{wd_l}{2}\|A_l\|_F^2)$;
    time $t = k\eta$ after k steps (gradient-flow time, as in :func:`svflow.simulate`).

    Give exactly one of ``steps``, ``t_end`` (a whole number of steps,
    t_end = steps x eta: other values raise, they are never rounded) or
    ``times`` (strictly increasing times >= 0, each a whole number of steps
    k eta). Gradient descent always starts at step 0; the dataset holds
    exactly the record times, so step 0 is in it only when ``times[0] == 0``
    (as in :func:`svflow.simulate`). The default
    record grid is step 0 and ``num_times - 1`` log-spaced steps (101 records
    rather than simulate's 161: every record of a full run costs K SVDs).

    Args:
        model: a :class:`DeepUFM` (e.g. from :func:`spectral_model`).
        eta: step size > 0.
        dtype: cast the model first (``jnp.float32`` or ``jnp.float64``);
            default: keep the model's dtype.
        chunk_steps: the longest compiled call between progress updates (>= 1).
        progress: tqdm bar over steps; default: on for runs over 10^5 steps.
        rank_rtol: threshold of the numerical rank.
        return_model: also return the trained model: ``(ds, model)``.

    Returns:
        The common dataset layout (``sigma``, ``sigma_factor``, ``loss``,
        ``objective``, ``margin``, ``rank``; spectral starts also ``lam``, ``s``,
        ``frame_drift``; extras ``norm_sq``, ``normalised_margin``), attrs with
        ``engine="full"``, every parameter, eta, steps, dtype and device.

    Raises:
        ValueError: bad arguments.
        DivergenceError: the loss became non-finite (names the step).
    """
    if not isinstance(model, DeepUFM):
        raise TypeError(
            f"model must be a DeepUFM (from spectral_model, random_model or "
            f"model_from_arrays); got {type(model).__name__}."
        )
    eta = check_float("eta", eta, minimum=0.0, strict_min=True)
    chunk_steps = check_int("chunk_steps", chunk_steps, minimum=1)
    rank_rtol = check_fraction("rank_rtol", rank_rtol)
    grid = _record_steps(eta, steps, t_end, times, num_times)
    if dtype is not None:
        model = model.astype(_check_dtype(dtype))
    if progress is None:
        progress = int(grid[-1]) > 100_000
    m, records, wall = _run_records(model, grid, eta, chunk_steps, rank_rtol, progress)
    ds = _train_dataset(model, m, grid, eta, records, rank_rtol, wall)
    if return_model:
        return ds, dataclasses.replace(m, description=model.description)
    return ds


def _record_steps(eta: float, steps, t_end, times, num_times: int) -> np.ndarray:
    """The steps k to record at (time t = k eta), from exactly one of steps, t_end, times."""
    given = [x is not None for x in (steps, t_end, times)]
    if sum(given) != 1:
        raise ValueError("pass exactly one of steps=, t_end= (time = steps x eta) or times=.")
    if times is not None:
        ts = check_times(times)
        k = ts / eta
        grid = np.round(k).astype(np.int64)
        off = np.abs(k - grid) > 1e-6 * np.maximum(1.0, k)
        if np.any(off):
            t = ts[np.argmax(off)]
            raise ValueError(
                f"times must be whole numbers of steps k eta (t = k eta, eta = {eta:g}); "
                f"got t = {t:g} = {t / eta:g} eta. Pass times = eta * steps."
            )
        return grid
    if t_end is not None:
        t_end = check_float("t_end", t_end, minimum=0.0, strict_min=True)
        k = t_end / eta
        steps = int(round(k))
        if steps < 1 or abs(k - steps) > 1e-6 * max(1.0, k):
            lo, hi = max(1, math.floor(k)), max(1, math.floor(k)) + 1
            raise ValueError(
                f"t_end = {t_end:g} is {k:g} steps of eta = {eta:g}; gradient descent takes whole "
                f"steps (t = k eta): pass t_end = {lo * eta:g} or {hi * eta:g} ({lo} or {hi} steps), "
                "or steps=."
            )
    return step_grid(steps, num_times)


def _run_records(model: DeepUFM, grid, eta: float, chunk_steps: int, rank_rtol: float, progress: bool):
    """Step ``model`` through the record steps ``grid``: (trained model, records, wall s).

    Runs compiled chunks of at most ``chunk_steps`` steps; raises
    :class:`DivergenceError` at the first non-finite step or record.
    """
    records: list[dict] = []
    # The description (it names the seed) is static: blank it so that new starts
    # and step sizes (passed as an array) reuse one compiled step loop.
    m = dataclasses.replace(model, description="")
    eta_arr = jnp.asarray(eta, model.dtype)
    done = 0
    bar = None
    if progress:
        from tqdm import tqdm

        bar = tqdm(total=int(grid[-1]), desc="full GD", unit="step", file=sys.stderr)
    tic = _time.perf_counter()
    try:
        for target in grid:
            while done < target:
                n = int(min(target - done, chunk_steps))
                m, bad = _advance_jit(m, eta_arr, jnp.asarray(done), jnp.asarray(n))
                bad = int(bad)
                if bad >= 0:
                    _diverged(bad, eta)
                done += n
                if bar is not None:
                    bar.update(n)
            rec = jax.device_get(_record_jit(m, rank_rtol))
            if not np.isfinite(rec["loss"]):
                _diverged(done, eta)
            records.append(rec)
    finally:
        if bar is not None:
            bar.close()
    return m, records, _time.perf_counter() - tic


def record_extras(out: dict) -> dict:
    """Pop ``norm_sq`` and ``normalised_margin`` from stacked records (time axis before
    any batch axis is fine: dims are prefixed by the caller) as ``extra`` entries."""
    return {
        "norm_sq": ((D.TIME, D.FACTOR), out.pop("norm_sq"), D.attrs("norm_sq")),
        "normalised_margin": ((D.TIME,), out.pop("normalised_margin"), D.attrs("normalised_margin")),
    }


def model_attrs(model: DeepUFM) -> dict:
    """The attrs every full-parameter dataset carries: the model's settings."""
    return {
        "classes": int(model.classes),
        "depth": int(model.depth),
        "factors": int(model.num_factors),
        "width": int(model.width),
        "samples_per_class": int(model.samples_per_class),
        "activation": model.activation,
        "loss_name": model.loss,
        "weight_decay": [float(w) for w in np.asarray(model.weight_decay)],
        "init": model.description,
        "spectral": model.frames is not None,
    }


def _train_dataset(
    model: DeepUFM, m: DeepUFM, grid, eta: float, records: list, rank_rtol: float, wall: float
):
    """The common dataset layout of a :func:`train` run (records at steps ``grid``)."""
    out = {k: np.stack([r[k] for r in records]) for k in records[0]}
    extra = record_extras(out)
    extra["step"] = ((D.TIME,), grid)
    device = next(iter(m.factors[0].devices()))
    total = int(grid[-1])
    attrs = {
        "title": "svflow full-parameter gradient descent",
        "engine": "full",
        **model_attrs(model),
        "eta": eta,
        "steps": total,
        "t_end": total * eta,
        "dtype": str(model.dtype),
        "device": str(device),
        "device_kind": getattr(device, "device_kind", str(device.platform)),
        "rank_rtol": float(rank_rtol),
        "wall_time_s": wall,
        "conventions": "depth L = number of weight matrices, N = L + 1 factors; "
        "t = steps x eta; mean-reduced loss; lam = diag(U^T Z U), "
        "U = the spectral start's frame, svflow.spectral_basis(K, group)",
    }
    return build_dataset(grid * eta, attrs=attrs, extra=extra, **out)


def _diverged(step: int, eta: float):
    raise DivergenceError(
        f"gradient descent diverged: the loss became non-finite at step {step} "
        f"(t = {step * eta:g}) with eta = {eta:g}. Use a smaller step size "
        f"(e.g. eta = {eta / 4:g}), a smaller init scale, or dtype=jnp.float64."
    )
