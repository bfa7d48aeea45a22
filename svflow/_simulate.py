"""``svflow.simulate``: the reduced singular-value ODE as an xarray dataset."""

from __future__ import annotations

import time as _time

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import xarray as xr
from jaxtyping import Array, Float

from ._dataset import build_dataset
from ._integrate import (
    SolverConfig,
    check_field_at_start,
    check_solution,
    check_times,
    log_times,
    solve,
)
from ._logtime import CETauField
from ._metrics import RANK_RTOL, margin_from_lam, rank_from_sigma, sigma_from_lam
from ._reduced import check_loss, data_loss, rhs_balanced, rhs_factors
from ._start import Start, as_start, balanced_factors, check_depth
from ._walsh import check_classes

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
        if self.balanced:
            return rhs_balanced(t, y, self.loss, self.weight_decay, self.factors, self.method)
        return rhs_factors(t, y, self.loss, self.weight_decay, self.method)


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
    """Per-time quantities from the solver's states, compiled once per setting."""
    s = jax.vmap(lambda l: balanced_factors(l, factors))(ys) if balanced else ys
    return reduced_outputs(s, loss, weight_decay, rank_rtol)


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
    log_t_end: float | None = None,
) -> xr.Dataset:
    r"""Integrate the reduced singular-value ODE from a Walsh-Hadamard start.

    Gradient flow of the mean loss of the deep UFM with K classes, depth L
    (L weight matrices, N = L + 1 factors), n = 1, from
    $H = V_1\operatorname{diag}(s_0)U^\top$, ...,
    $W_L = U\operatorname{diag}(s_L)V_L^\top$ (MODEL.md sections 2-3):

    $$\frac{ds_{l,i}}{dt} = -G_i \prod_{j\ne l}s_{j,i} - wd\,s_{l,i},$$

    $G_i = (\mu_i - 1)/K$ (cross-entropy) or $(\lambda_i - 1)/K$ (squared loss,
    Y = I). Time is gradient-flow time t (= steps x step size of gradient
    descent). Balanced starts use the $\lambda$-only law
    $\dot\lambda_i = -N G_i|\lambda_i|^{2-2/N} - N\,wd\,\lambda_i$.

    Args:
        classes: K, a power of two.
        depth: L >= 1 weight matrices.
        init: $\lambda(0)$ of shape (K,) (balanced start; $\lambda_0$ is set to 0
            under cross-entropy), $s(0)$ of shape (N, K) (any start), or a
            :class:`Start` such as :func:`spectral_init`'s result.
        loss: ``"ce"`` or ``"squared"``.
        weight_decay: $wd \ge 0$ on every factor.
        t_end: final time (used when ``times`` is None); up to 1e8 and beyond.
        times: explicit increasing save times (>= 0); default: 0 and
            ``num_times - 1`` log-spaced times up to ``t_end``.
        rtol, atol, max_steps, solver: diffrax settings (PID controller).
        progress: show a progress bar (it advances in log(1 + t)).
        rank_rtol: threshold of the numerical rank.
        log_t_end: reach any horizon: integrate to $\tau = \log(1 + t)$ =
            ``log_t_end`` (e.g. 1e4, t = e^10000) in double-log time with the
            log-domain field (:mod:`svflow._logtime`; cross-entropy without
            weight decay only), saving ``num_times`` times log-spaced in
            $\tau$. Overrides ``t_end``/``times``. The dataset then has the
            coordinate ``log_t`` ($\tau$) along ``time``; ``time`` itself is
            inf beyond t ~ 1e308.

    Returns:
        An ``xarray.Dataset`` with dims ``time``, ``mode``, ``factor``, ``sv``
        (see :mod:`svflow._dataset`), attrs with every parameter and provenance.

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
    taus = None
    if log_t_end is not None:
        if loss != "ce" or weight_decay != 0:
            raise ValueError(
                "log_t_end (double-log time, any horizon) needs loss='ce' and "
                f"weight_decay=0; got loss={loss!r}, weight_decay={weight_decay!r}."
            )
        if not np.isfinite(log_t_end) or log_t_end <= 0:
            raise ValueError(f"log_t_end must be a positive finite tau = log(1 + t); got "
                             f"{log_t_end!r}.")
        taus = np.concatenate([[0.0], np.geomspace(min(0.1, log_t_end / 1e3), log_t_end,
                                                   num_times - 1)])
        with np.errstate(over="ignore"):
            ts = np.expm1(taus)
    elif times is None:
        ts = log_times(t_end, num_times)
    else:
        ts = check_times(times)
    t_end = float(ts[-1])
    config = SolverConfig(solver=solver, rtol=rtol, atol=atol, max_steps=max_steps)
    start: Start = as_start(init, classes, depth, loss)
    N = depth + 1
    if not jax.config.jax_enable_x64:
        raise ValueError(
            "svflow's reduced ODE needs float64: call "
            "jax.config.update('jax_enable_x64', True) before creating arrays "
            "(importing svflow does this unless SVFLOW_NO_X64=1 is set)."
        )

    # --- integrate
    field = ReducedField(jnp.asarray(weight_decay, float), loss, N, start.balanced)
    y0 = start.lam0 if start.balanced else start.s0
    if loss == "ce" and start.balanced:
        y0 = y0.at[0].set(0.0)
    check_field_at_start(field, y0)
    tic = _time.perf_counter()
    if taus is None:
        ys, result, num_steps = solve(field, y0, jnp.asarray(ts), None, config, progress)
    else:
        ys, result, num_steps = solve(CETauField(N, start.balanced), y0, jnp.asarray(taus),
                                      None, config, progress, clock="loglog", grid="tau")
    ys = jax.block_until_ready(ys)
    wall = _time.perf_counter() - tic
    check_solution(ys, result, num_steps, config, t_end)

    # --- build dataset
    out = _outputs(ys, start.balanced, N, loss, jnp.asarray(weight_decay, float), rank_rtol)
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
        "init": start.description,
        "balanced_path": bool(start.balanced),
        "rank_rtol": float(rank_rtol),
        **config.as_attrs(),
        "num_steps": int(num_steps),
        "wall_time_s": wall,
        "conventions": "depth L = number of weight matrices, N = L + 1 factors; "
        "t = steps x step size; mean-reduced loss; lambda_i = prod_l s_{l,i}",
    }
    ds = build_dataset(ts, attrs=attrs, **{k: np.asarray(v) for k, v in out.items()})
    if taus is not None:
        ds = ds.assign_coords(log_t=("time", taus, {"long_name": "tau = log(1 + t)"}))
        ds.attrs.update(log_t_end=float(log_t_end),
                        time_variable="sigma = log(1 + tau), tau = log(1 + t)")
    return ds
