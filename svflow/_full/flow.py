r"""Gradient flow of all parameters of a :class:`DeepUFM`, for any horizon.

Gradient descent reaches $t = k\eta$ in k steps, so $t = 10^8$ is out of
reach. :func:`flow` integrates the gradient flow itself,

$$\frac{d\theta}{dt} = -\nabla_\theta\bigl(\text{loss}(Z(\theta)) + \text{penalty}(\theta)\bigr),$$

$\theta$ every parameter flattened into one vector, with diffrax: one start
by ``diffeqsolve`` and its records in one compiled call, a list of starts
through the batch engine of the reduced ODE (:func:`svflow._batch.solve_many`:
one compiled refill loop; the same steps and saves as ``diffeqsolve``), in
one of two clocks:

- **log time** $\tau = \log(1 + t)$ (``t_end`` / ``times``):
  $d\theta/d\tau = e^\tau(-\nabla\text{loss})$. Under cross-entropy the
  margins grow like $\log t$ and $e^\tau\nabla\text{loss}$ stays of order
  one, so an adaptive solver takes large steps late.
- **double-log time** $\sigma = \log(1 + \tau)$ (``log_t_end``, any horizon,
  cross-entropy without weight decay): $d\theta/d\sigma = (1 + \tau)e^\tau
  (-\nabla\text{loss})$, with the drive $e^\tau(\mathrm{softmax}(z) - e_y)$ of
  each column computed in the log domain: off-target entries
  $e^{\tau + z_c - \operatorname{logsumexp}(z)}$, the target entry minus
  their sum, so t is never formed (beyond $t \approx 10^{308}$ too). The drive
  is pulled back to the parameters through the logits with a VJP.

The core (:class:`GradientFlowField`, :func:`integrate_params`) is generic
over a parameter pytree and a logits function (any equinox model whose
output is the K x M logits of M labelled samples); :func:`flow` is its door
for deep UFMs and returns the dataset layout of :func:`svflow.train`.
"""

from __future__ import annotations

import dataclasses
import time as _time
from collections.abc import Callable

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import xarray as xr
from jax.scipy.special import logsumexp

from .. import _dims as D
from .._batch import solve_batch, solve_batch_loglog
from .._checks import check_bool, check_float, check_fraction, check_int
from .._dataset import build_dataset
from .._integrate import (
    SUCCESS,
    IntegrationError,
    Solver,
    check_solution,
    check_solver,
    check_times,
    result_code,
    solve,
    takes_solver,
)
from .._integrate import log_times as _log_time_grid
from .._metrics import RANK_RTOL
from .._precision import computes
from .._simulate import default_t_end
from .model import DeepUFM, forward
from .train import model_attrs, record, record_extras

__all__ = ["flow", "GradientFlowField", "integrate_params", "ce_drive", "flatten_params"]


def ce_drive(Z, labels, log_scale):
    r"""$e^{s}(\mathrm{softmax}(Z) - Y)/M$ column-wise, in the log domain.

    Off-target entries $e^{s + z_c - \operatorname{logsumexp}(z)}/M$, the target
    entry minus their sum: no cancellation in $1 - p_y$, and $e^s$ (e.g.
    $s = \tau$, $e^s = 1 + t$) is never formed on its own. ``labels`` (M,) int.
    """
    K, M = Z.shape
    onehot = jnp.arange(K)[:, None] == labels[None, :]
    lse = logsumexp(Z, axis=0, keepdims=True)
    off = jnp.where(onehot, 0.0, jnp.exp(log_scale + Z - lse))
    return (off - jnp.where(onehot, jnp.sum(off, axis=0, keepdims=True), 0.0)) / M


def _squared_drive(Z, labels, log_scale):
    K, M = Z.shape
    Y = (jnp.arange(K)[:, None] == labels[None, :]).astype(Z.dtype)
    return jnp.exp(log_scale) * (Z - Y) / M


class _Unravel(eqx.Module):
    """Flat vector -> parameter pytree (shapes and structure static)."""

    treedef: jax.tree_util.PyTreeDef = eqx.field(static=True)
    shapes: tuple = eqx.field(static=True)

    def __call__(self, y):
        leaves, i = [], 0
        for shape in self.shapes:
            n = int(np.prod(shape)) if shape else 1
            leaves.append(y[i : i + n].reshape(shape))
            i += n
        return jax.tree_util.tree_unflatten(self.treedef, leaves)


def flatten_params(params_list) -> tuple[np.ndarray, _Unravel]:
    """Stack B parameter pytrees of one structure into (B, P) float64 and the inverse map."""
    leaves0, treedef = jax.tree_util.tree_flatten(params_list[0])
    shapes = tuple(tuple(np.shape(x)) for x in leaves0)
    rows = []
    for p in params_list:
        leaves, td = jax.tree_util.tree_flatten(p)
        # jaxlib ships no type stub for PyTreeDef (mypy cannot see its __ne__)
        if td != treedef or tuple(tuple(np.shape(x)) for x in leaves) != shapes:  # type: ignore[operator]
            raise ValueError(
                "every start of a batch must have parameters of one structure and shape; got "
                f"{[np.shape(x) for x in leaves]} against {list(shapes)}."
            )
        rows.append(np.concatenate([np.asarray(x, dtype=float).ravel() for x in leaves]))
    return np.stack(rows), _Unravel(treedef, shapes)


class GradientFlowField(eqx.Module):
    r"""$d\theta/dt = -\nabla(\text{loss}(Z(\theta)) + \text{penalty}(\theta))$ on a flat $\theta$.

    ``logits(params) -> Z`` (K, M) with column j labelled ``labels[j]``;
    ``penalty(params) -> scalar`` or ``None``; ``loss`` ``"ce"`` or
    ``"squared"`` (mean over the M columns). ``__call__(t, y, args)`` is the
    rate in t; ``tau_rate(tau, y, args)`` $= e^\tau \times$ it, with the
    cross-entropy drive in the log domain (:func:`ce_drive`), valid for any
    $\tau$ when there is no penalty.
    """

    logits: Callable
    unravel: _Unravel
    labels: jax.Array | np.ndarray
    penalty: Callable | None = None
    loss: str = eqx.field(static=True, default="ce")

    def rate(self, y, log_scale):
        params = self.unravel(y)
        Z, pull = jax.vjp(self.logits, params)
        drive = ce_drive if self.loss == "ce" else _squared_drive
        (g,) = pull(drive(Z, self.labels, log_scale))
        if self.penalty is not None:
            gp = jax.grad(self.penalty)(params)
            g = jax.tree.map(lambda a, b: a + jnp.exp(log_scale) * b, g, gp)
        return -jnp.concatenate([jnp.ravel(x) for x in jax.tree.leaves(g)])

    def __call__(self, t, y, args=None):
        return self.rate(y, jnp.zeros((), y.dtype))

    def tau_rate(self, tau, y, args=None):
        return self.rate(y, tau)


def integrate_params(
    field: GradientFlowField,
    y0s: np.ndarray,
    ts: np.ndarray,
    taus: np.ndarray | None,
    config: Solver,
    *,
    lanes: int | None = None,
    progress: bool = False,
):
    r"""Integrate ``field`` from the flat starts ``y0s`` (B, P): ``(ys (B, T, P), num_steps, result, wall)``.

    ``taus`` given: double-log time, saving at $\tau$ = ``taus`` (from
    ``taus[0]``: 0, or the end of an earlier run being continued); else log
    time, saving at ``ts`` (from 0). Raises :class:`IntegrationError`
    with advice when a trajectory fails.
    """
    tic = _time.perf_counter()
    t_end = float(ts[-1])
    if progress:
        grid = "tau" if taus is not None else "t"
        clock = "loglog" if taus is not None else "log"
        ys, result, num_steps = solve(
            field,
            jnp.asarray(y0s[0]),
            jnp.asarray(taus if taus is not None else ts),
            None,
            config,
            True,
            clock=clock,
            grid=grid,
            start=float(taus[0]) if taus is not None else 0.0,
        )
        ys = np.asarray(jax.block_until_ready(ys))[None]
        check_solution(ys, result, num_steps, config, t_end)
        return ys, np.asarray([int(num_steps)]), np.asarray([SUCCESS]), _time.perf_counter() - tic
    if taus is not None:
        sol = solve_batch_loglog(field, y0s, taus, config, lanes=lanes)
        where = f"double-log run to tau = log(1 + t) = {taus[-1]:g}: "
    else:
        sol = solve_batch(field, y0s, ts, config, lanes=lanes)
        where = ""
    check_solution(sol.ys, sol.result, sol.num_steps, config, t_end, where)
    return sol.ys, sol.num_steps, sol.result, _time.perf_counter() - tic


class _UFMLogits(eqx.Module):
    activation: str = eqx.field(static=True)

    def __call__(self, factors):
        return forward(factors, self.activation)


class _UFMPenalty(eqx.Module):
    weight_decay: jax.Array | np.ndarray

    def __call__(self, factors):
        return 0.5 * sum(w * jnp.sum(A**2) for w, A in zip(self.weight_decay, factors))


def _as_models(model) -> list[DeepUFM]:
    """One DeepUFM or a non-empty list of DeepUFMs of one shape and setting."""
    if isinstance(model, DeepUFM):
        return [model]
    if not isinstance(model, (list, tuple)) or not model or not all(isinstance(m, DeepUFM) for m in model):
        raise TypeError(
            "model must be a DeepUFM (from spectral_model, random_model or model_from_arrays) "
            f"or a non-empty list of them; got {type(model).__name__}."
        )
    first = model[0]
    for i, m in enumerate(model):
        same = (
            m.classes == first.classes
            and m.samples_per_class == first.samples_per_class
            and m.activation == first.activation
            and m.loss == first.loss
            and [A.shape for A in m.factors] == [A.shape for A in first.factors]
            and np.array_equal(np.asarray(m.weight_decay), np.asarray(first.weight_decay))
        )
        if not same:
            raise ValueError(
                f"every model of a batch must share K, n, width, depth, activation, loss and "
                f"weight decay; model {i} differs from model 0. Run differing models in separate calls."
            )
    return list(model)


def _save_grid(model: DeepUFM, t_end, times, num_times: int, log_t_end, log_t_start=0.0, log_times=None):
    """``(ts, taus or None, drop_first)``: save times from the start (the start
    prepended when ``times`` / ``log_times`` begin later; ``drop_first`` says to
    drop it again); with ``log_t_start`` > 0 the double-log saves run from it
    (a continued run)."""
    wd = float(np.max(np.asarray(model.weight_decay)))
    log_t_start = check_float("log_t_start", log_t_start, minimum=0.0)
    loglog = log_t_end is not None or log_times is not None
    if log_t_start > 0 and not loglog:
        raise ValueError(
            f"log_t_start={log_t_start:g} continues a double-log run: pass log_t_end= (> log_t_start) "
            "or log_times= too."
        )
    if loglog and (model.loss != "ce" or wd != 0):
        raise ValueError(
            "log_t_end / log_times (double-log time, any horizon) need loss='ce' and no weight decay; "
            f"got loss={model.loss!r}, weight_decay={np.asarray(model.weight_decay).tolist()}. "
            "Pass t_end= (log time) instead."
        )
    if log_times is not None:
        if log_t_end is not None or times is not None or t_end is not None:
            raise ValueError("pass log_times= alone (it replaces log_t_end=, t_end= and times=).")
        taus = check_times(log_times)
        if taus[0] < log_t_start:
            raise ValueError(
                f"log_times must not start before log_t_start = {log_t_start:g}; "
                f"got log_times[0] = {taus[0]:g}."
            )
        drop_first = bool(taus[0] > log_t_start)
        if drop_first:
            taus = np.concatenate([[log_t_start], taus])
        with np.errstate(over="ignore"):
            return np.expm1(taus), taus, drop_first
    if log_t_end is not None:
        if times is not None or t_end is not None:
            raise ValueError("pass log_t_end= alone (it replaces t_end= and times=).")
        log_t_end = check_float("log_t_end", log_t_end, minimum=0.0, strict_min=True)
        if log_t_start > 0:
            if not log_t_end > log_t_start:
                raise ValueError(
                    f"log_t_end must exceed log_t_start; got log_t_end={log_t_end:g}, "
                    f"log_t_start={log_t_start:g}."
                )
            taus = np.geomspace(log_t_start, log_t_end, num_times)
            with np.errstate(over="ignore"):
                return np.expm1(taus), taus, False
        taus = np.concatenate([[0.0], np.geomspace(min(0.1, log_t_end / 1e3), log_t_end, num_times - 1)])
        with np.errstate(over="ignore"):
            return np.expm1(taus), taus, False
    if times is None:
        if t_end is None:
            t_end = default_t_end(wd)
        t_end = check_float("t_end", t_end, minimum=0.0, strict_min=True)
        return _log_time_grid(t_end, num_times), None, False
    if t_end is not None:
        raise ValueError("pass either t_end= or times=, not both (times sets the final time).")
    ts = check_times(times)
    if ts[0] > 0:
        return np.concatenate([[0.0], ts]), None, True
    return ts, None, False


@eqx.filter_jit
def _records(template: DeepUFM, unravel: _Unravel, ys, rank_rtol: float, factor_spectra: bool = True):
    """:func:`svflow._full.train.record` at every saved state: (B, T, ...) arrays.

    ``template`` holds the batch's models stacked along a leading axis (frames
    included, or ``None``)."""

    def one(m, y):
        return record(m.with_factors(unravel(y)), rank_rtol, factor_spectra)

    return jax.vmap(lambda m, yb: jax.vmap(lambda y: one(m, y))(yb))(template, ys)


@eqx.filter_jit
def _solve_and_record(field, y0, saves, start, config, clock, grid, progress, template, rank_rtol):
    """One start: :func:`svflow._integrate.solve` and the records (without the factor
    spectra, which :func:`factor_singular_values` adds on the host) in one compiled call.

    Returns ``(ys (T, P), result, num_steps, records (1, T, ...))``."""
    ys, result, num_steps = solve(
        field, y0, saves, None, config, progress, clock=clock, grid=grid, start=start
    )
    recs = _records(template, field.unravel, ys[None], rank_rtol, False)
    return ys, result_code(result), num_steps, recs


def _stack_models(models: list[DeepUFM]) -> DeepUFM:
    """The models as one module with stacked arrays (frames dropped unless all have them)."""
    frames_all = all(m.frames is not None for m in models)
    blank = [dataclasses.replace(m, description="", frames=m.frames if frames_all else None) for m in models]
    return jax.tree.map(lambda *xs: np.stack([np.asarray(x, dtype=float) for x in xs]), *blank)


FLOW_SOLVER = Solver(rtol=1e-8, atol=1e-10, max_steps=200_000)
"""Default solver of :func:`flow` (as :func:`svflow.simulate`'s)."""


GRAM_RTOL = 1e-10
"""Relative accuracy :func:`factor_singular_values` certifies for a singular value
it takes from the Gram matrix; a matrix whose bound is worse goes through the SVD."""


def factor_singular_values(ys: np.ndarray, shapes, keep: int) -> np.ndarray:
    r"""The ``keep`` largest singular values (decreasing, zero-padded) of every factor of every state.

    Per distinct factor shape (r, c), every state's factors of that shape are
    stacked to (R, n, r, c). Their singular values are the square roots of the
    eigenvalues of the smaller Gram matrix $G = A^\top A$ (or $A A^\top$),
    one batched :func:`numpy.linalg.eigvalsh` (LAPACK syevd, eigenvalues only:
    cheaper than the SVD for the small stacks of a flow's records). The Gram
    route loses accuracy on small singular values, so each matrix is
    certified: the computed $G$ and its eigenvalues are backward stable,
    $|\hat\lambda_i - s_i^2| \le c\,\epsilon\,\|A\|_F^2$ with
    $c = 2(r + c)$ (a generous first-order constant for the Gram product's
    $\gamma_{\max(r, c)}$ and the eigensolver's backward error), hence
    $|\hat s_i - s_i| / s_i \le c\,\epsilon\,\|A\|_F^2 / (2 \hat\lambda_i)$.
    A matrix is kept when this is at most :data:`GRAM_RTOL` (1e-10) for every
    kept singular value; every other matrix (graded, rank-deficient, zero) goes
    through :func:`numpy.linalg.svd` (``compute_uv=False``, LAPACK's gesdd), as
    before. So each value is gesdd's or within 1e-10 relative of the exact one
    (far below the flow's own rtol, 1e-8 by default).

    Args:
        ys: flat states (..., P): the factors' entries one after another, each
            factor C-order (as :func:`flatten_params` lays them out).
        shapes: the factors' shapes (r, c), in order; their sizes sum to P.
        keep: how many singular values to keep per factor (K for ``sigma_factor``).

    Returns:
        (..., N, keep) float64, N = ``len(shapes)``: singular values in
        decreasing order, entries past min(r, c) set to 0.

    Raises:
        ValueError: ``ys`` does not hold the given shapes, or is not finite.
        numpy.linalg.LinAlgError: LAPACK did not converge.
    """
    ys = np.asarray(ys, dtype=np.float64)
    shapes = [tuple(int(x) for x in s) for s in shapes]
    if any(len(s) != 2 or min(s) < 1 for s in shapes):
        raise ValueError(f"shapes must be matrix shapes (r, c) with r, c >= 1; got {shapes}.")
    sizes = [r * c for r, c in shapes]
    if ys.ndim < 1 or ys.shape[-1] != sum(sizes):
        raise ValueError(
            f"ys must end in P = {sum(sizes)} entries (the factors {shapes} one after another); "
            f"got shape {ys.shape}."
        )
    keep = int(keep)
    if keep < 1:
        raise ValueError(f"keep must be >= 1; got {keep}.")
    lead = ys.shape[:-1]
    flat = ys.reshape(-1, ys.shape[-1])
    if not np.all(np.isfinite(flat)):
        raise ValueError("ys holds non-finite entries (NaN or inf): no singular values of those factors.")
    offsets = np.concatenate([[0], np.cumsum(sizes)]).astype(int)
    out = np.zeros((flat.shape[0], len(shapes), keep))
    for shape in dict.fromkeys(shapes):
        which = [i for i, s in enumerate(shapes) if s == shape]
        # every state's factors of this shape: (states, n, r, c)
        stack = np.stack([flat[:, offsets[i] : offsets[i + 1]] for i in which], axis=1)
        stack = stack.reshape(flat.shape[0], len(which), *shape)
        out[:, which, : min(keep, *shape)] = _stack_singular_values(stack, keep)
    return out.reshape(lead + (len(shapes), keep))


def _stack_singular_values(stack: np.ndarray, keep: int) -> np.ndarray:
    """The ``min(keep, r, c)`` largest singular values of every (r, c) matrix of
    ``stack`` (..., r, c): the certified Gram route, gesdd where it is not certified."""
    r, c = stack.shape[-2:]
    k = min(keep, r, c)
    gram = stack.swapaxes(-1, -2) @ stack if c <= r else stack @ stack.swapaxes(-1, -2)
    lam = np.linalg.eigvalsh(gram)[..., ::-1][..., :k]  # decreasing
    frob = np.trace(gram, axis1=-2, axis2=-1)
    bound = 2.0 * (r + c) * np.finfo(np.float64).eps * frob
    ok = np.all(bound[..., None] <= 2.0 * GRAM_RTOL * lam, axis=-1)
    sv = np.sqrt(np.maximum(lam, 0.0))
    if not np.all(ok):
        sv[~ok] = np.linalg.svd(stack[~ok], compute_uv=False)[..., :k]
    return sv


@computes
@takes_solver
def flow(
    model: DeepUFM | list[DeepUFM],
    *,
    t_end: float | None = None,
    log_t_end: float | None = None,
    log_t_start: float = 0.0,
    log_times=None,
    times=None,
    num_times: int = 101,
    solver: Solver = FLOW_SOLVER,
    progress: bool = False,
    rank_rtol: float = RANK_RTOL,
    return_model: bool = False,
    factor_spectra: bool = True,
):
    r"""Gradient flow of every parameter of a :class:`DeepUFM` (or a batch), as a dataset.

    Integrates
    $\dot A_l = -\nabla_{A_l}(\text{loss} + \sum_l \tfrac{wd_l}{2}\|A_l\|_F^2)$
    for all factors $A_0 = H, A_1 = W_1, \ldots, A_L = W_L$ (depth L, N = L + 1
    factors, mean-reduced loss): the $\eta \to 0$ limit of :func:`svflow.train`
    at gradient-flow time $t = k\eta$. The solver (diffrax, adaptive
    ``PIDController(rtol, atol)``, float64) runs in log time
    $\tau = \log(1 + t)$, or with ``log_t_end`` in double-log time
    $\sigma = \log(1 + \tau)$ with the cross-entropy drive in the log domain
    (docs: theory/random-starts.md), so $t = 10^8$ costs tens to hundreds of
    steps where gradient descent needs $t/\eta$.

    A list of models (equal shapes, activation, loss and weight decay; e.g.
    several seeds of :func:`random_model`) runs as one compiled refill loop
    (:func:`svflow._batch.solve_many`) and adds a leading ``start`` dim.

    Args:
        model: a :class:`DeepUFM`, or a list of them.
        t_end: final time (default $10^8$, or $\min(10^8, 100/wd)$ with weight
            decay, as :func:`svflow.simulate`); ``num_times`` log-spaced saves.
        log_t_end: integrate to $\tau = \log(1 + t)$ = ``log_t_end`` instead (any
            horizon, e.g. 1e3 for $t = e^{1000}$; cross-entropy without weight
            decay only); saves log-spaced in $\tau$, coordinate ``log_t``.
        log_t_start: continue a double-log run: ``model`` is the state at
            $\tau$ = ``log_t_start`` (e.g. the final model of a run with
            ``log_t_end=log_t_start, return_model=True``), integrated from there
            to ``log_t_end`` (saves log-spaced from ``log_t_start``). Default 0:
            a fresh run from t = 0.
        log_times: explicit increasing save points in $\tau$ (double-log time;
            replaces ``log_t_end``, the last is the horizon; the run starts at
            ``log_t_start`` even when ``log_times[0]`` is later).
        times: explicit increasing save times $\ge 0$ (the start is t = 0 even
            when ``times[0] > 0``).
        num_times: number of saves (default 101, as :func:`svflow.train`).
        solver: a :class:`svflow.Solver` (default :data:`FLOW_SOLVER`: rtol 1e-8,
            atol 1e-10, 200 000 steps; methods ``"tsit5"``, ``"dopri5"``, ``"dopri8"``;
            ``lanes``: trajectories in flight at once, default 64 on a CPU).
        progress: a progress bar (one model only).
        rank_rtol: threshold of the numerical rank.
        return_model: also return the final model(s): ``(ds, model)`` or ``(ds, [models])``.
        factor_spectra: record ``sigma_factor``: the K largest singular values
            of every factor at every save, computed on the host after the run
            (:func:`factor_singular_values`: batched eigenvalues of the
            Gram matrices, certified to 1e-10 relative, LAPACK's SVD where
            not). ``False`` leaves it out: for a wide model (d >= 64) these
            cost more than the integration itself.

    Returns:
        The dataset layout of :func:`svflow.train` (``sigma``: singular values
        of the centred logits, ``sigma_factor``, ``loss``, ``objective``,
        ``margin``, ``rank``, ``norm_sq``, ``normalised_margin``; spectral
        starts also ``lam``, ``s``, ``frame_drift``) with ``engine="flow"``,
        the solver settings and ``num_steps`` / ``result`` (attrs for one
        model, variables over ``start`` for a list).

    Raises:
        TypeError, ValueError: bad input (the message names the fix).
        IntegrationError: the solver failed (the message says what to change).
    """
    models = _as_models(model)
    single = isinstance(model, DeepUFM)
    m0 = models[0]
    num_times = check_int("num_times", num_times, minimum=2)
    rank_rtol = check_fraction("rank_rtol", rank_rtol)
    config = check_solver(solver)
    if progress and not single:
        raise ValueError("progress=True shows one trajectory's progress: pass a single model.")
    ts, taus, drop_first = _save_grid(m0, t_end, times, num_times, log_t_end, log_t_start, log_times)
    y0s, unravel = flatten_params([m.factors for m in models])
    wd = np.asarray(m0.weight_decay, dtype=float)
    field = GradientFlowField(
        logits=_UFMLogits(m0.activation),
        unravel=unravel,
        labels=np.repeat(np.arange(m0.classes), m0.samples_per_class),
        penalty=_UFMPenalty(wd) if np.any(wd > 0) else None,
        loss=m0.loss,
    )
    factor_spectra = check_bool("factor_spectra", factor_spectra)
    template = _stack_models(models)
    if len(models) == 1:
        # one start: the solve and the records in one compiled call (diffrax's
        # diffeqsolve: the batch engine's refill loop gains nothing for one lane)
        tic = _time.perf_counter()
        out = _solve_and_record(
            field,
            y0s[0],
            taus if taus is not None else ts,
            np.asarray(taus[0] if taus is not None else 0.0),
            config,
            "loglog" if taus is not None else "log",
            "tau" if taus is not None else "t",
            bool(progress),
            template,
            float(rank_rtol),
        )
        ys, result, steps, recs = jax.device_get(out)
        ys, num_steps, result = ys[None], np.asarray([int(steps)]), np.asarray([int(result)])
        wall = _time.perf_counter() - tic
        where = f"double-log run to tau = log(1 + t) = {taus[-1]:g}: " if taus is not None else ""
        check_solution(ys, result, num_steps, config, float(ts[-1]), where)
    else:
        ys, num_steps, result, wall = integrate_params(field, y0s, ts, taus, config)
        recs = jax.device_get(_records(template, unravel, ys, float(rank_rtol), False))
    if drop_first:
        ys, ts = ys[:, 1:], ts[1:]
        recs = {k: v[:, 1:] for k, v in recs.items()}
    if not np.all(np.isfinite(recs["loss"])):
        raise IntegrationError("the flow produced a non-finite loss: use a smaller init scale.")
    if factor_spectra:
        recs["sigma_factor"] = factor_singular_values(ys, unravel.shapes, m0.classes)
    ds = _flow_dataset(m0, recs, ts, None if taus is None else taus[1:] if drop_first else taus, single)
    ds.attrs.update(config.as_attrs())
    ds.attrs["wall_time_s"] = wall
    ds.attrs["rank_rtol"] = float(rank_rtol)
    if taus is not None:
        ds.attrs.update(
            log_t_start=float(taus[0]),
            log_t_end=float(taus[-1]),
            time_variable="sigma = log(1 + tau), tau = log(1 + t)",
        )
    if single:
        ds.attrs.update(num_steps=int(num_steps[0]), result=int(result[0]), init=m0.description)
    else:
        ds["num_steps"] = (("start",), np.asarray(num_steps), D.attrs("num_steps"))
        ds["result"] = (("start",), np.asarray(result), D.attrs("result"))
        ds.attrs["init"] = "; ".join(m.description for m in models)
    if not return_model:
        return ds
    finals = [
        m.with_factors(tuple(jnp.asarray(A, m.dtype) for A in unravel(jnp.asarray(ys[b, -1]))))
        for b, m in enumerate(models)
    ]
    return ds, (finals[0] if single else finals)


def _flow_dataset(m0: DeepUFM, recs: dict, ts, taus, single: bool) -> xr.Dataset:
    """The train layout; a list of models adds a leading ``start`` dim."""
    out = dict(recs)
    extra = record_extras(out)
    attrs = {
        "title": "svflow full-parameter gradient flow",
        "engine": "flow",
        **model_attrs(m0),
        "t_end": float(ts[-1]),
        "dtype": "float64",
        "conventions": "depth L = number of weight matrices, N = L + 1 factors; "
        "t = gradient-flow time (eta -> 0 limit of t = steps x eta); mean-reduced loss; "
        "lam = diag(U^T Z U), U = the spectral start's frame",
    }
    first = {k: v[0] for k, v in out.items()}
    ds = build_dataset(ts, attrs=attrs, extra={k: (d, v[0], a) for k, (d, v, a) in extra.items()}, **first)
    if not single:
        variables = {}
        for name, var in ds.data_vars.items():
            value = extra[name][1] if name in extra else out[name]
            variables[name] = (("start",) + var.dims, np.asarray(value), var.attrs)
        ds = xr.Dataset(variables, coords=dict(ds.coords), attrs=ds.attrs)
    if taus is not None:
        ds = ds.assign_coords(log_t=(D.TIME, np.asarray(taus), D.attrs("log_t")))
    return ds
