r"""diffrax set-up shared by every reduced run and batch.

Gradient flow under cross-entropy moves on a logarithmic clock (margins grow
like $\log t$), so svflow integrates in log-time $\tau = \log(1 + t)$:

$$\frac{dy}{d\tau} = (1 + t)\, f(t, y), \qquad t = e^\tau - 1.$$

Early on $\tau \approx t$; late, steps in $\tau$ are uniform, so the adaptive
controller takes large steps in $t$ without special tuning, and diffrax's
progress meter (linear in its own time variable) advances in $\log t$.

The ``clock`` option of :func:`solve` picks the integration variable:
``"log"`` ($\tau$, the default) or ``"loglog"`` ($\sigma = \log(1 + \tau)$,
$dy/d\sigma = (1 + \tau)\,dy/d\tau$), in which the late cross-entropy
dynamics (ratios of modes drifting like powers of $\log t$) are smooth on a
unit scale. A field that defines ``tau_rate(tau, y, args)`` (e.g.
:class:`svflow._fields.CETauField`) gives $dy/d\tau$ without ever forming
t, so save grids given in $\tau$ (``grid="tau"``) reach $t = e^{10^4}$ and
beyond; other fields are evaluated at $t = e^\tau - 1$ and are limited to
$\tau \lesssim 700$.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import diffrax
import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np

from ._checks import check_choice, check_float, check_int
from ._precision import computes

__all__ = [
    "SolverConfig",
    "log_times",
    "solve",
    "check_solution",
    "check_field_at_start",
    "IntegrationError",
]


class IntegrationError(RuntimeError):
    """The ODE integration failed; the message says what to change."""


@dataclass(frozen=True)
class SolverConfig:
    """Solver settings (recorded in dataset attrs)."""

    solver: str = "tsit5"
    rtol: float = 1e-8
    atol: float = 1e-10
    max_steps: int = 200_000

    def __post_init__(self):
        check_choice("solver", self.solver, sorted(_SOLVERS))
        # frozen: store the normalised values (Python float / int)
        object.__setattr__(self, "rtol", check_float("rtol", self.rtol, minimum=0.0, strict_min=True))
        object.__setattr__(self, "atol", check_float("atol", self.atol, minimum=0.0, strict_min=True))
        object.__setattr__(self, "max_steps", check_int("max_steps", self.max_steps, minimum=1))

    def as_attrs(self) -> dict:
        return {
            "solver": self.solver,
            "rtol": self.rtol,
            "atol": self.atol,
            "max_steps": int(self.max_steps),
            "time_variable": "tau = log(1 + t)",
        }


CLOCKS = ("log", "loglog")
"""Integration variables of :func:`solve`: tau = log(1 + t), sigma = log(1 + tau)."""

GRIDS = ("t", "tau")
"""Units of the save grid passed to :func:`solve`: gradient-flow time t or tau."""


def _tau_rate(field):
    """dy/dtau of ``field``: its own log-domain ``tau_rate`` if it has one."""
    rate = getattr(field, "tau_rate", None)
    if rate is not None:
        return rate

    def from_t(tau, y, args):
        scale = jnp.exp(tau)  # 1 + t
        return jax.tree.map(lambda d: scale * d, field(jnp.expm1(tau), y, args))

    return from_t


_SOLVERS = {
    "tsit5": diffrax.Tsit5,
    "dopri5": diffrax.Dopri5,
    "dopri8": diffrax.Dopri8,
    "kvaerno5": diffrax.Kvaerno5,
}


@computes
def log_times(t_end: float, num: int = 161, t_first: float | None = None) -> np.ndarray:
    """Save grid: 0 followed by ``num - 1`` log-spaced times up to ``t_end`` (``num = 2``: [0, t_end]).

    ``t_first`` defaults to min(0.1, t_end / 1e3) and must lie in (0, t_end].
    """
    t_end = check_float("t_end", t_end, minimum=0.0, strict_min=True)
    num = check_int("num", num, minimum=2)
    if t_first is None:
        t_first = min(0.1, t_end / 1e3)
    t_first = check_float("t_first", t_first, minimum=0.0, strict_min=True, maximum=t_end)
    if num == 2:  # np.logspace(a, b, 1) is [10**a]: the one save after 0 is t_end itself
        return np.array([0.0, t_end])
    return np.concatenate([[0.0], np.logspace(np.log10(t_first), np.log10(t_end), num - 1)])


def check_times(times) -> np.ndarray:
    if isinstance(times, (str, bytes)) or np.iscomplexobj(times):
        raise TypeError(f"times must be an array of real save times; got {times!r}.")
    try:
        ts = np.asarray(times, dtype=float)
    except (TypeError, ValueError) as e:
        raise TypeError(f"times must be an array of real save times; got {times!r}.") from e
    if ts.ndim != 1 or ts.size < 1:
        raise ValueError(f"times must be a 1-D array of save times; got shape {ts.shape}.")
    if not np.all(np.isfinite(ts)) or ts[0] < 0 or np.any(np.diff(ts) <= 0):
        raise ValueError("times must be finite, >= 0 and strictly increasing (gradient-flow time).")
    return ts


def check_field_at_start(field, y0, args=None) -> None:
    """Raise :class:`IntegrationError` if the vector field is non-finite at the start."""
    dy = field(0.0, y0, args)
    if not all(bool(np.all(np.isfinite(np.asarray(x)))) for x in jax.tree.leaves(dy)):
        raise IntegrationError(
            "the vector field is non-finite at the start (the gradient overflows): the "
            "run would blow up at once. Pass a smaller init."
        )


@eqx.filter_jit
def solve(
    field: Callable,
    y0,
    ts: jax.Array,
    args,
    config: SolverConfig,
    progress: bool = False,
    clock: str = "log",
    grid: str = "t",
    start=0.0,
):
    r"""Integrate $dy/dt = f(t, y)$, $f$ = ``field(t, y, args)``, from t = 0, saving at ``ts``.

    Runs in $\tau = \log(1+t)$ (``clock="log"``) or in $\sigma = \log(1+\tau)$
    (``clock="loglog"``); see the module docstring. ``ts`` are save times in
    units of ``grid``: ``"t"`` (gradient-flow time) or ``"tau"`` ($\log(1+t)$,
    needed beyond t ~ 1e308). ``start`` is the time of ``y0`` in the same units
    (default 0; every save time must be >= it), so a run can be continued from
    a saved state. Returns ``(ys, result, num_steps)`` and never
    throws inside the trace: check with :func:`check_solution`. Jit- and
    vmap-compatible (over ``y0`` and ``args``).
    """
    if clock not in CLOCKS:
        raise ValueError(f"clock must be one of {CLOCKS}; got {clock!r}.")
    if grid not in GRIDS:
        raise ValueError(f"grid must be one of {GRIDS}; got {grid!r}.")
    rate = _tau_rate(field)
    taus = jnp.log1p(ts) if grid == "t" else jnp.asarray(ts)
    tau0 = jnp.log1p(start) if grid == "t" else jnp.asarray(start, float)
    if clock == "log":
        us, u0, term = taus, tau0, rate
    else:
        us, u0 = jnp.log1p(taus), jnp.log1p(tau0)

        def term(sigma, y, args):
            tau = jnp.expm1(sigma)
            return jax.tree.map(lambda d: (1.0 + tau) * d, rate(tau, y, args))

    meter = diffrax.TqdmProgressMeter(refresh_steps=50) if progress else diffrax.NoProgressMeter()
    sol = diffrax.diffeqsolve(
        diffrax.ODETerm(term),
        _SOLVERS[config.solver](),
        t0=u0,
        t1=us[-1],
        dt0=None,
        y0=y0,
        args=args,
        saveat=diffrax.SaveAt(ts=us),
        stepsize_controller=diffrax.PIDController(
            rtol=config.rtol, atol=config.atol, dtmin=1e-13 * (us[-1] - u0)
        ),
        max_steps=config.max_steps,
        throw=False,
        progress_meter=meter,
    )
    return sol.ys, sol.result, sol.stats["num_steps"]


def check_solution(ys, result, num_steps, config: SolverConfig, t_end: float) -> None:
    """Raise :class:`IntegrationError` with advice if a solve failed or went non-finite.

    Works on single and vmapped solves (``result`` may be batched).
    """
    ok = np.asarray(result == diffrax.RESULTS.successful)
    finite = all(bool(np.all(np.isfinite(np.asarray(x)))) for x in jax.tree.leaves(ys))
    maxed = np.asarray(result == diffrax.RESULTS.max_steps_reached)
    if np.any(maxed):
        raise IntegrationError(
            f"the integration to t = {t_end:g} used all max_steps = {config.max_steps} "
            f"steps ({int(maxed.sum())} of {maxed.size} trajectories). Pass a larger "
            f"max_steps, loosen rtol/atol (now {config.rtol:g}/{config.atol:g}), or a "
            "shorter t_end. If the state was growing without bound (steps shrinking), "
            "the run blew up: use a smaller init scale."
        )
    if not np.all(ok):
        raise IntegrationError(
            f"the integration to t = {t_end:g} failed for {int((~ok).sum())} of {ok.size} "
            f"trajectories after up to {int(np.max(np.asarray(num_steps)))} steps: the "
            "step size collapsed, which usually means the state blew up or became "
            "non-finite. Use a smaller init scale or tighter rtol/atol (svflow's own "
            "functions already run in float64)."
        )
    if not finite:
        raise IntegrationError(
            f"the integration to t = {t_end:g} produced non-finite values (NaN/inf). "
            "Use a smaller init scale or weight decay, or tighter rtol/atol."
        )
