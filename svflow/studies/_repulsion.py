r"""Early-time repulsion (N >= 3) and attraction (N = 2) of the Walsh modes.

Balanced cross-entropy flow, N = depth + 1 factors (docs: theory/reduced-ode.md,
'The balanced law'):

$$\frac{d}{dt}\log\lambda_i = \frac{N}{K}(1-\mu_i)\,\lambda_i^{1-2/N}, \qquad
\frac{d}{dt}\log\frac{\lambda_j}{\lambda_k} = \frac{N}{K}\Big[(1-\mu_j)\lambda_j^{1-2/N}
- (1-\mu_k)\lambda_k^{1-2/N}\Big].$$

For small $\lambda$ the softmax eigenvalues expand as (docs:
theory/reduced-ode.md, 'Early-time repulsion')

$$\mu_i = \frac{\lambda_i}{K}
+ \frac{1}{2K^2}\sum_a \lambda_a\lambda_{a\oplus i} + O(\lambda^3)
\qquad (i \ne 0).$$

Order 0 ($1-\mu \approx 1$) gives the leading-order law
$(N/K)(\lambda_j^{1-2/N} - \lambda_k^{1-2/N})$: repulsion for $N \ge 3$ (the
larger mode runs away), exactly zero for $N = 2$, where the order-1 term
$-(2/K^2)(\lambda_j - \lambda_k)$ pulls the ratio back to 1 (attraction).
Order 2 adds the quadratic term. :func:`repulsion` measures the rate along a
trajectory by finite differences and lays it over these predictions.
"""

from __future__ import annotations

import jax.numpy as jnp
import numpy as np
import xarray as xr
from jaxtyping import Array, ArrayLike, Float

from .. import _dims as D
from .._checks import check_int
from .._dataset import grid_dataset
from .._integrate import Solver, check_solver, takes_solver
from .._precision import computes
from .._simulate import simulate
from .._start import check_depth
from .._walsh import check_classes, one_minus_mu

__all__ = ["one_minus_mu_series", "log_ratio_rate", "repulsion", "early_horizon"]


def one_minus_mu_series(lam: Float[ArrayLike, "... K"], order: int) -> Float[Array, "... K"]:
    r"""$1 - \mu_i$ to ``order`` 0, 1 or 2 in $\lambda$ (entry 0 set to 0)."""
    if order not in (0, 1, 2):
        raise ValueError(f"order must be 0, 1 or 2; got {order!r}.")
    lam = jnp.asarray(lam)
    K = lam.shape[-1]
    out = jnp.ones_like(lam)
    if order >= 1:
        out = out - lam / K
    if order >= 2:
        idx = np.arange(K)[:, None] ^ np.arange(K)[None, :]  # idx[i, a] = a xor i
        conv = jnp.sum(lam[..., None, :] * lam[..., idx], axis=-1)  # sum_a lam_a lam_{a xor i}
        out = out - conv / (2 * K**2)
    return out.at[..., 0].set(0.0)


@computes
def log_ratio_rate(
    lam: Float[ArrayLike, "... K"], factors: int, j: int, k: int, order: int | None = None
) -> Float[Array, "..."]:
    r"""$\frac{d}{dt}\log(\lambda_j/\lambda_k)$, balanced CE flow, N = ``factors``.

    ``order=None`` uses the exact $1-\mu$ (the vector field itself); 0, 1, 2 the
    series of :func:`one_minus_mu_series`. Needs $\lambda_j, \lambda_k > 0$.
    """
    lam = jnp.asarray(lam)
    K = lam.shape[-1]
    factors = check_int("factors", factors, minimum=2)
    j = check_int("j", j, minimum=0, maximum=K - 1)
    k = check_int("k", k, minimum=0, maximum=K - 1)
    if order is not None:
        order = check_int("order", order, minimum=0)
    omm = one_minus_mu(lam) if order is None else one_minus_mu_series(lam, order)
    p = 1.0 - 2.0 / factors
    g = omm * jnp.abs(lam) ** p
    return (factors / K) * (g[..., j] - g[..., k])


def early_horizon(classes: int, factors: int, lam_start: float, lam_cap: float) -> float:
    r"""Time $\dot\lambda = (N/K)\lambda^{2-2/N}$ takes from lam_start to lam_cap.

    $N = 2$: $(K/2)\log(\lambda_\mathrm{cap}/\lambda_0)$; $N \ge 3$:
    $\frac{K}{N-2}(\lambda_0^{-(1-2/N)} - \lambda_\mathrm{cap}^{-(1-2/N)})$ (the
    leading-order law; the true flow is slower, since $1-\mu < 1$).
    """
    if factors == 2:
        return 0.5 * classes * np.log(lam_cap / lam_start)
    p = 1.0 - 2.0 / factors
    return classes / (factors - 2) * (lam_start ** (-p) - lam_cap ** (-p))


REPULSION_SOLVER = Solver(rtol=1e-12, atol=1e-16)
"""Default solver of :func:`repulsion`: the finite differences of the saved run
must be far more accurate than the series they test."""


@computes
@takes_solver
def repulsion(
    classes: int,
    depths,
    *,
    eps: float = 1e-3,
    lag: float = 0.5,
    pair: tuple[int, int] = (1, 3),
    lam_cap: float = 0.5,
    num_times: int = 401,
    solver: Solver = REPULSION_SOLVER,
) -> xr.Dataset:
    r"""Measure $\frac{d}{dt}\log(\lambda_j/\lambda_k)$ early on, with predictions.

    Start: $\lambda_i(0) = \varepsilon$ for the weight-one modes $1, 2, 4, \dots$
    and $\varepsilon(1 - \text{lag})$ for the others (the ``"lag"`` basin family);
    ``pair = (j, k)``: by default a leading and a lagging mode. For each depth the
    run is saved on a uniform grid (step h) up to the time the leading-order law
    takes to bring $\varepsilon$ to ``lam_cap`` (:func:`early_horizon`), and
    the rate is measured by fourth-order central finite differences of
    $\log(\lambda_j/\lambda_k)$ (error $O(h^4)$); the two samples at each end
    serve only as stencil support and are not returned. ``solver``: the
    :class:`svflow.Solver` of the runs (default :data:`REPULSION_SOLVER`:
    rtol 1e-12, atol 1e-16).

    Returns:
        Dataset with dims (depth, sample): ``time``, ``lam_j``, ``lam_k``,
        ``measured`` (finite differences), ``field`` (exact vector field),
        ``order0``, ``order1``, ``order2`` (predictions with $1-\mu$ expanded to
        that order, evaluated on the trajectory), and attrs.
    """
    check_classes(classes)
    solver = check_solver(solver)
    depths = [check_depth(d) for d in np.atleast_1d(depths).tolist()]
    j, k = _check_repulsion_args(classes, pair, eps, lag, lam_cap, num_times)
    m = classes.bit_length() - 1
    lam0 = np.full(classes, eps * (1.0 - lag))
    lam0[[1 << b for b in range(m)]] = eps
    lam0[0] = 0.0
    rows: dict[str, list] = {name: [] for name in _REPULSION_VARS}
    for depth in depths:
        cols = _measure_rates(classes, depth, lam0, j, k, lam_cap=lam_cap, num_times=num_times, solver=solver)
        for name, v in cols.items():
            rows[name].append(v)
    dims = (D.DEPTH, "sample")
    long_names = dict(zip(_REPULSION_VARS, _repulsion_long_names(j, k)))
    variables = {n: (dims, np.stack(v), {"long_name": long_names[n]}) for n, v in rows.items()}
    coords = {
        D.DEPTH: np.asarray(depths),
        "factors": (D.DEPTH, np.asarray(depths) + 1, {}),
        "sample": np.arange(num_times),
    }
    attrs = {
        "title": "svflow early-time repulsion of Walsh modes",
        "classes": int(classes),
        "loss_name": "ce",
        "eps": float(eps),
        "lag": float(lag),
        "pair": [j, k],
        "lam0": lam0.tolist(),
        "lam_cap": float(lam_cap),
        **solver.as_attrs(),
        "conventions": "depth L = number of weight matrices, N = L + 1 factors; "
        "balanced start; t = steps x step size; time grid uniform up to "
        "early_horizon(K, N, eps, lam_cap)",
    }
    return grid_dataset(coords, variables, attrs)


_REPULSION_VARS = (D.TIME, "lam_j", "lam_k", "measured", "field", "order0", "order1", "order2")


def _repulsion_long_names(j: int, k: int) -> list[str]:
    """Long names of :data:`_REPULSION_VARS`, in that order."""
    return [
        "gradient-flow time t",
        f"lambda_{j}",
        f"lambda_{k}",
        f"d/dt log(lambda_{j}/lambda_{k}) by 4th-order central finite differences",
        "same rate from the exact vector field",
        "prediction (N/K)(lam_j^(1-2/N) - lam_k^(1-2/N)) (1 - mu = 1)",
        "prediction with 1 - mu_i = 1 - lam_i/K",
        "prediction with 1 - mu_i = 1 - lam_i/K - sum_a lam_a lam_(a xor i)/(2K^2)",
    ]


def _check_repulsion_args(classes: int, pair, eps, lag, lam_cap, num_times) -> tuple[int, int]:
    """Check the arguments of :func:`repulsion`; return the mode pair (j, k)."""
    j, k = (int(pair[0]), int(pair[1]))
    if not (0 < j < classes and 0 < k < classes and j != k):
        raise ValueError(f"pair must be two distinct Walsh modes in 1..{classes - 1}; got {pair!r}.")
    if not (np.isfinite(eps) and 0 < eps < lam_cap):
        raise ValueError(f"eps must satisfy 0 < eps < lam_cap = {lam_cap}; got {eps!r}.")
    if not (0 < lag < 1):
        raise ValueError(f"lag must lie in (0, 1) (relative lag of the non-leading modes); got {lag!r}.")
    if num_times < 5:
        raise ValueError(f"num_times must be >= 5 for finite differences; got {num_times}.")
    return j, k


def _measure_rates(classes, depth, lam0, j, k, *, lam_cap, num_times, solver) -> dict:
    r"""One depth's row of :data:`_REPULSION_VARS` (``num_times`` samples each).

    The run is saved on a uniform grid of step h up to :func:`early_horizon`;
    the rate of $\log(\lambda_j/\lambda_k)$ is taken by fourth-order central
    differences, so the two samples at each end serve only as stencil support.
    """
    N = depth + 1
    t_stop = early_horizon(classes, N, float(lam0[1:].max()), lam_cap)
    h = t_stop / (num_times + 3)
    ts = h * np.arange(num_times + 4)  # samples 2 .. num_times + 1 are kept
    lam_all = simulate(classes, depth, init=lam0, times=ts, solver=solver)[D.LAM].values
    logr = np.log(lam_all[:, j] / lam_all[:, k])
    # fourth-order central differences: error O(h^4), far below the series' error
    rate = (-logr[4:] + 8 * logr[3:-1] - 8 * logr[1:-3] + logr[:-4]) / (12 * h)
    lam = lam_all[2:-2]
    row = {
        D.TIME: ts[2:-2],
        "lam_j": lam[:, j],
        "lam_k": lam[:, k],
        "measured": rate,
        "field": np.asarray(log_ratio_rate(jnp.asarray(lam), N, j, k)),
    }
    for o in (0, 1, 2):
        row[f"order{o}"] = np.asarray(log_ratio_rate(jnp.asarray(lam), N, j, k, order=o))
    return row
