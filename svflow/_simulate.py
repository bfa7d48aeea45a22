"""``svflow.simulate``: the reduced singular-value ODE as an xarray dataset.

One start or a batch of starts: a batch runs through the refill engine of
:mod:`svflow._batch` (all starts in one compiled loop) and keeps its leading
dims as dataset dims.
"""

from __future__ import annotations

import time as _time

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import xarray as xr
from jaxtyping import Array, Float

from . import _dims as D
from ._batch import check_batch, solve_batch
from ._dataset import build_dataset
from ._integrate import (
    IntegrationError,
    SolverConfig,
    check_solution,
    check_times,
    log_times,
    solve,
)
from ._metrics import RANK_RTOL, margin_from_lam, rank_from_sigma, sigma_from_lam
from ._precision import float64
from ._reduced import check_loss, data_loss, rhs_balanced, rhs_factors
from ._start import Start, as_start, balanced_factors, check_depth
from ._walsh import check_classes, walsh_transform

__all__ = ["simulate", "ReducedField", "reduced_outputs"]


class ReducedField(eqx.Module):
    r"""Vector field of the reduced ODE, ``field(t, y, args)``.

    ``balanced=True``: y is $\lambda$ (K,); otherwise y is $s$ (N, K).
    ``weight_decay`` is an array leaf, so a sweep over it compiles once.
    """

    weight_decay: Float[Array, ""]
    loss: str = eqx.field(static=True)
    factors: int = eqx.field(static=True)
    balanced: bool = eqx.field(static=True)
    method: str = eqx.field(static=True, default="auto")

    def __call__(self, t, y, args=None):
        if self.balanced and self.loss == "ce":
            return _rhs_ce_balanced(y, self.weight_decay, self.factors, self.method)
        if self.balanced:
            return rhs_balanced(t, y, self.loss, self.weight_decay, self.factors, self.method)
        return rhs_factors(t, y, self.loss, self.weight_decay, self.method)


def _rhs_ce_balanced(lam, weight_decay, factors: int, method: str = "auto"):
    r"""Balanced cross-entropy law $\dot\lambda_i = (N/K)(1-\mu_i)|\lambda_i|^{2-2/N} - N\,wd\,\lambda_i$.

    The same law as :func:`svflow._reduced.rhs_balanced` with one exponential
    per mode (this is the inner loop of every batch): with $f = H\lambda$ and
    $z_k = (f_k - f_0)/K = -m_k$ ($z_0 = 0$), the softmax $p = e^{z}/\sum e^{z}$
    gives the off-target probabilities $p_k$, $k \ne 0$, directly, and
    $1 - \mu = \sum_{k\ne0}p_k - H p'$ ($p'_0 = 0$) without the cancellation
    of $1 - p_0$. ``method`` picks the Walsh transform (as in
    :func:`svflow.walsh_transform`).
    """
    K = lam.shape[-1]
    f = walsh_transform(lam, method=method)
    z = (f - f[..., :1]) / K
    e = jnp.exp(z - jnp.max(z, axis=-1, keepdims=True))
    p = (e / jnp.sum(e, axis=-1, keepdims=True)).at[..., 0].set(0.0)
    omm = (jnp.sum(p, axis=-1, keepdims=True) - walsh_transform(p, method=method)).at[..., 0].set(0.0)
    N = factors
    return (N / K) * omm * jnp.abs(lam) ** (2.0 - 2.0 / N) - N * weight_decay * lam


def reduced_outputs(
    s: Float[Array, "T N K"], loss: str, weight_decay: float, rank_rtol: float = RANK_RTOL
) -> dict:
    """Every per-time quantity of the common layout from a factor trajectory s."""
    lam = jnp.prod(s, axis=-2)
    sigma = sigma_from_lam(lam)
    dl = data_loss(lam, loss)
    return dict(
        lam=lam,
        s=s,
        sigma=sigma,
        loss=dl,
        objective=dl + 0.5 * weight_decay * jnp.sum(s**2, axis=(-2, -1)),
        margin=margin_from_lam(lam),
        rank=rank_from_sigma(sigma, rank_rtol),
    )


@eqx.filter_jit
def _outputs(ys, balanced: bool, factors: int, loss: str, weight_decay, rank_rtol: float) -> dict:
    """Per-time quantities from the solver's states (B, T, ...), compiled once per setting."""

    def one(y):
        s = jax.vmap(lambda l: balanced_factors(l, factors))(y) if balanced else y
        return reduced_outputs(s, loss, weight_decay, rank_rtol)

    return jax.vmap(one)(ys)


def _as_starts(init, classes: int, depth: int, loss: str, batch_dims) -> tuple:
    """Split ``init`` into starts: (list of :class:`Start`, batch dim names, batch coords)."""
    N = depth + 1
    if isinstance(init, xr.DataArray):
        state_dims = tuple(d for d in init.dims if d in (D.FACTOR, D.MODE))
        if state_dims not in ((D.MODE,), (D.FACTOR, D.MODE)):
            raise ValueError(
                f"init as a DataArray needs a {D.MODE!r} dim (lambda(0)) or {D.FACTOR!r} and "
                f"{D.MODE!r} dims (s(0)) as its last dims; got dims {init.dims}."
            )
        dims = tuple(d for d in init.dims if d not in state_dims)
        if batch_dims is not None:
            raise ValueError("batch_dims is only for plain arrays: a DataArray names its own dims.")
        arr = np.asarray(init.transpose(*dims, *state_dims).values, dtype=float)
        coords = {d: init.coords[d] for d in dims if d in init.coords}
        flat = arr.reshape((-1,) + arr.shape[len(dims):])
        return [as_start(a, classes, depth, loss) for a in flat], dims, coords, arr.shape[: len(dims)]
    if isinstance(init, (list, tuple)) and init and all(isinstance(x, Start) for x in init):
        dims = ("start",) if batch_dims is None else tuple(batch_dims)
        if len(dims) != 1:
            raise ValueError(f"a list of Start objects has one batch dim; got batch_dims={batch_dims!r}.")
        return [as_start(x, classes, depth, loss) for x in init], dims, {}, (len(init),)
    if batch_dims is None or isinstance(init, Start):
        if batch_dims is not None:
            raise ValueError("batch_dims needs an array of starts, not a single Start.")
        return [as_start(init, classes, depth, loss)], (), {}, ()
    if isinstance(batch_dims, str):
        batch_dims = (batch_dims,)
    dims = tuple(batch_dims)
    if not dims or len(set(dims)) != len(dims) or not all(isinstance(d, str) for d in dims):
        raise ValueError(f"batch_dims must be distinct dim names (strings); got {batch_dims!r}.")
    try:
        arr = np.asarray(init, dtype=float)
    except (TypeError, ValueError) as e:
        raise ValueError(f"init must be an array of numbers; got {init!r}.") from e
    nb = len(dims)
    if arr.ndim < nb + 1:
        raise ValueError(
            f"init has shape {arr.shape}: too few axes for batch_dims={dims} followed by "
            f"lambda(0) (K,) or s(0) (N, K) = ({N}, {classes})."
        )
    batch = arr.shape[:nb]
    if 0 in batch:
        raise ValueError(f"init's batch dims {dims} must be non-empty; got shape {arr.shape}.")
    flat = arr.reshape((-1,) + arr.shape[nb:])
    return [as_start(a, classes, depth, loss) for a in flat], dims, {}, batch


@float64
def simulate(
    classes: int,
    depth: int,
    *,
    init,
    loss: str = "ce",
    weight_decay: float = 0.0,
    t_end: float = 1e8,
    times=None,
    num_times: int = 161,
    rtol: float = 1e-8,
    atol: float = 1e-10,
    max_steps: int = 200_000,
    solver: str = "tsit5",
    progress: bool = False,
    rank_rtol: float = RANK_RTOL,
    batch_dims=None,
    lanes: int | None = None,
) -> xr.Dataset:
    r"""Integrate the reduced singular-value ODE from one or many Walsh-Hadamard starts.

    Gradient flow of the mean loss of the deep UFM with K classes, depth L
    (L weight matrices, N = L + 1 factors), n = 1, from
    $H = V_1\operatorname{diag}(s_0)U^\top$, ...,
    $W_L = U\operatorname{diag}(s_L)V_L^\top$:

    $$\frac{ds_{l,i}}{dt} = -G_i \prod_{j\ne l}s_{j,i} - wd\,s_{l,i},$$

    $G_i = (\mu_i - 1)/K$ (cross-entropy) or $(\lambda_i - 1)/K$ (squared loss,
    Y = I). Time is gradient-flow time t (= steps x step size of gradient
    descent). Balanced starts use the $\lambda$-only law
    $\dot\lambda_i = -N G_i|\lambda_i|^{2-2/N} - N\,wd\,\lambda_i$.
    The solver (diffrax, PID step-size control) runs in $\tau = \log(1 + t)$.

    **Many starts.** ``init`` may hold a batch of starts: an array whose
    leading dims are named by ``batch_dims`` (e.g. shape (B, K) with
    ``batch_dims="start"``), an ``xarray.DataArray`` with a ``mode`` dim (and
    a ``factor`` dim for s(0)) whose other dims are batch dims (their coords
    are kept), or a list of :class:`Start`. All starts run through one
    compiled refill loop (:func:`svflow._batch.solve_many`: finished
    trajectories hand their lane to the next start); each trajectory is
    integrated exactly as it would be alone (up to the last bits). The batch
    dims lead every variable of the dataset. All starts of a batch are
    balanced, or all are not.

    Args:
        classes: K, a power of two.
        depth: L >= 1 weight matrices.
        init: $\lambda(0)$ of shape (K,) (balanced start; $\lambda_0$ is set to 0
            under cross-entropy), $s(0)$ of shape (N, K) (any start), a
            :class:`Start` such as :func:`spectral_init`'s result, or a batch
            of these (above).
        loss: ``"ce"`` or ``"squared"``.
        weight_decay: $wd \ge 0$ on every factor.
        t_end: final time (used when ``times`` is None); up to 1e8 and beyond.
        times: explicit increasing save times (>= 0, starting at 0); default: 0 and
            ``num_times - 1`` log-spaced times up to ``t_end``.
        rtol, atol, max_steps, solver: diffrax settings (PID controller).
        progress: show a progress bar (single start only; it advances in log(1 + t)).
        rank_rtol: threshold of the numerical rank.
        batch_dims: names of the leading batch dims of an array ``init``
            (a string for one dim); None: ``init`` is one start.
        lanes: trajectories in flight at once in a batch (default 128).

    Returns:
        An ``xarray.Dataset`` with dims ``time``, ``mode``, ``factor``, ``sv``
        (see :mod:`svflow._dataset`), preceded by the batch dims if any
        (then ``num_steps`` is a variable over them); attrs with every
        parameter and provenance.

    Raises:
        ValueError: bad input (K not a power of two, depth < 1, bad shapes, ...).
        IntegrationError: the solver failed (message says what to change).
    """
    # --- check arguments
    check_classes(classes)
    check_depth(depth)
    check_loss(loss)
    if not np.isfinite(weight_decay) or weight_decay < 0:
        raise ValueError(f"weight_decay must be a finite number >= 0; got {weight_decay!r}.")
    if times is None:
        ts = log_times(t_end, num_times)
    else:
        ts = check_times(times)
    t_end = float(ts[-1])
    config = SolverConfig(solver=solver, rtol=rtol, atol=atol, max_steps=max_steps)
    starts, dims, coords, batch = _as_starts(init, classes, depth, loss, batch_dims)
    balanced = {s.balanced for s in starts}
    if len(balanced) != 1:
        raise ValueError(
            "init mixes balanced and unbalanced starts; run them in two batches "
            "(the balanced ones integrate lambda alone)."
        )
    balanced = balanced.pop()
    if progress and dims:
        raise ValueError("progress=True shows one trajectory's progress: pass a single start.")
    N = depth + 1

    # --- integrate
    field = ReducedField(jnp.asarray(weight_decay, float), loss, N, balanced)
    y0s = np.stack([np.asarray(s.lam0 if balanced else s.s0) for s in starts])
    if loss == "ce" and balanced:
        y0s[:, 0] = 0.0
    dy = np.asarray(jax.vmap(lambda y: field(0.0, y, None))(jnp.asarray(y0s)))
    if not np.all(np.isfinite(dy)):
        raise IntegrationError(
            "the vector field is non-finite at the start (the gradient overflows): the "
            "run would blow up at once. Pass a smaller init."
        )
    tic = _time.perf_counter()
    if progress:
        ys, result, num_steps = solve(field, jnp.asarray(y0s[0]), jnp.asarray(ts), None, config, True)
        ys = np.asarray(jax.block_until_ready(ys))[None]
        check_solution(ys, result, num_steps, config, t_end)
        num_steps = np.asarray([int(num_steps)])
    else:
        sol = solve_batch(field, y0s, ts, config, lanes=lanes)
        check_batch(sol, config, t_end)
        ys, num_steps = sol.ys, sol.num_steps
    wall = _time.perf_counter() - tic

    # --- build dataset
    out = _outputs(jnp.asarray(ys), balanced, N, loss, jnp.asarray(weight_decay, float), rank_rtol)
    out = {k: np.asarray(v) for k, v in out.items()}
    attrs = {
        "title": "svflow reduced singular-value ODE",
        "engine": "reduced",
        "classes": int(classes),
        "depth": int(depth),
        "factors": int(N),
        "samples_per_class": 1,
        "loss_name": loss,
        "weight_decay": float(weight_decay),
        "t_end": t_end,
        "init": starts[0].description if not dims else f"batch of {len(starts)} starts over {list(dims)}",
        "balanced_path": bool(balanced),
        "rank_rtol": float(rank_rtol),
        **config.as_attrs(),
        "num_steps": int(np.sum(num_steps)),
        "wall_time_s": wall,
        "conventions": "depth L = number of weight matrices, N = L + 1 factors; "
        "t = steps x step size; mean-reduced loss; lambda_i = prod_l s_{l,i}",
    }
    ds = build_dataset(ts, attrs=attrs, **{k: v[0] for k, v in out.items()})
    if not dims:
        return ds
    variables = {
        name: (dims + var.dims, out[name].reshape(batch + out[name].shape[1:]), var.attrs)
        for name, var in ds.data_vars.items()
    }
    variables["num_steps"] = (
        dims,
        num_steps.reshape(batch),
        {"long_name": "solver step attempts (accepted + rejected)"},
    )
    attrs["num_steps"] = int(np.sum(num_steps))
    return xr.Dataset(variables, coords={**dict(ds.coords), **coords}, attrs=ds.attrs)
