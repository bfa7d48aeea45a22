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

import functools
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
    "Solver",
    "SUCCESS",
    "MAX_STEPS",
    "check_solver",
    "takes_solver",
    "log_times",
    "solve",
    "check_solution",
    "result_code",
    "check_field_at_start",
    "IntegrationError",
]


class IntegrationError(RuntimeError):
    """The ODE integration failed; the message says what to change."""


SUCCESS = int(diffrax.RESULTS.successful._value)  # type: ignore[attr-defined]
"""diffrax's result code of a successful solve (the only place svflow reads ``RESULTS``)."""
MAX_STEPS = int(diffrax.RESULTS.max_steps_reached._value)  # type: ignore[attr-defined]
"""diffrax's result code of a solve that used all its ``max_steps``."""

METHODS = ("tsit5", "dopri5", "dopri8", "kvaerno5")
"""Runge-Kutta methods a :class:`Solver` names (the batch engine runs the explicit three)."""

BACKENDS = ("auto", "jax", "numba")
"""Backends of the batch engine a :class:`Solver` names (:func:`svflow._batch.solve_batch`)."""


@dataclass(frozen=True)
class Solver:
    r"""The ODE solver settings of every svflow integration, in one object.

    As diffrax's ``PIDController`` or dynamiqs' ``Options``: each entry point
    takes ``solver=svflow.Solver(...)`` and states its own default once (a
    module constant: :data:`svflow._simulate.SIMULATE_SOLVER`,
    :data:`svflow._outcome.OUTCOME_SOLVER`, ...); the settings go into the
    dataset's attrs (:meth:`as_attrs`).

    Attributes:
        rtol, atol: tolerances of the adaptive step-size controller
            (``diffrax.PIDController``): the local error of each component y
            is held below $\mathrm{atol} + \mathrm{rtol}\,|y|$.
        max_steps: step attempts allowed per trajectory.
        method: ``"tsit5"`` (default), ``"dopri5"``, ``"dopri8"`` or
            ``"kvaerno5"`` (implicit; single solves only).
        lanes: trajectories in flight at once in the batch engine (default
            None: 64 on a CPU, 8192 on an accelerator); scheduling only, it
            changes no number beyond the last bits.
        backend: the batch engine's backend: ``"auto"`` (default: the
            compiled CPU kernel (numba, cached on disk) where it covers the
            run and JAX runs on a CPU, else the JAX engine), ``"jax"`` (always
            the JAX engine) or ``"numba"`` (the CPU kernel; a ``ValueError``
            where it does not cover the run). Both run the same method and
            controller and take the same steps; the CPU kernel covers Tsit5
            on the balanced cross-entropy law in $u = \log\lambda$ (what
            :func:`svflow.simulate` integrates for balanced starts with every
            mode positive) and on the balanced cross-entropy law in double-log
            time (what :func:`svflow.outcome` and
            :func:`svflow.studies.basin_map` integrate), Walsh groups of any
            order and other groups up to K = 256. The same choice runs the
            limit map of :func:`svflow.outcome` and
            :func:`svflow.studies.basin_map` (``svflow._cpu.limit``, every
            group) compiled or in XLA.

    Frozen and hashable (it is a static argument of compiled functions).
    """

    rtol: float = 1e-8
    atol: float = 1e-10
    max_steps: int = 200_000
    method: str = "tsit5"
    lanes: int | None = None
    backend: str = "auto"

    def __post_init__(self):
        check_choice("method", self.method, METHODS)
        check_choice("backend", self.backend, BACKENDS)
        # frozen: store the normalised values (Python float / int)
        object.__setattr__(self, "rtol", check_float("rtol", self.rtol, minimum=0.0, strict_min=True))
        object.__setattr__(self, "atol", check_float("atol", self.atol, minimum=0.0, strict_min=True))
        object.__setattr__(self, "max_steps", check_int("max_steps", self.max_steps, minimum=1))
        if self.lanes is not None:
            object.__setattr__(self, "lanes", check_int("lanes", self.lanes, minimum=1))

    def as_attrs(self) -> dict:
        """The settings as netCDF-safe dataset attrs (``lanes`` and ``backend`` only when set)."""
        attrs = {
            "solver": self.method,
            "rtol": self.rtol,
            "atol": self.atol,
            "max_steps": int(self.max_steps),
            "time_variable": "tau = log(1 + t)",
        }
        if self.lanes is not None:
            attrs["lanes"] = int(self.lanes)
        if self.backend != "auto":
            attrs["backend"] = self.backend
        return attrs


OLD_SOLVER_KEYWORDS = ("rtol", "atol", "max_steps", "lanes")
"""Keywords that svflow 0.3 replaced by ``solver=svflow.Solver(...)``."""


def check_solver(solver) -> Solver:
    """``solver`` must be a :class:`Solver`; a clear ``TypeError`` otherwise."""
    if not isinstance(solver, Solver):
        raise TypeError(
            f"solver must be an svflow.Solver, e.g. solver=svflow.Solver(rtol=1e-6, "
            f"method='tsit5'); got {solver!r} ({type(solver).__name__})."
        )
    return solver


def takes_solver(fn):
    """Decorate an entry point with ``solver=``: the keywords it replaced raise a ``TypeError``
    that says what to pass instead."""

    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        old = [k for k in OLD_SOLVER_KEYWORDS if k in kwargs]
        if old:
            settings = ", ".join(f"{k}={kwargs[k]!r}" for k in old)
            raise TypeError(
                f"{fn.__name__}() takes its solver settings as one object: use "
                f"solver=svflow.Solver({settings}) instead of {', '.join(old)}=."
            )
        return fn(*args, **kwargs)

    return wrapper


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
    config: Solver,
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
        _SOLVERS[config.method](),
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


def result_code(result):
    """The integer code of a (possibly traced, possibly batched) ``diffrax.RESULTS``:
    :data:`SUCCESS`, :data:`MAX_STEPS` or another failure."""
    return result._value


def check_solution(
    ys,
    result,
    num_steps,
    config: Solver,
    t_end,
    where: str = "",
    advice: dict | None = None,
) -> None:
    """Raise :class:`IntegrationError` with advice if a solve failed or went non-finite.

    The one failure checker of svflow: every engine compares its result codes
    (diffrax ``RESULTS`` or their integer codes, one per trajectory, batched
    or not; leading axis of every leaf of ``ys``) with :data:`SUCCESS`.
    ``t_end``: where the run was going (a number: gradient-flow time t; a
    string: as written, e.g. ``"tau = log(1 + t) = 100"``); ``where``
    prefixes every message; ``advice`` replaces the default advice of the
    ``"max_steps"`` and ``"failed"`` cases.
    """
    advice = advice or {}
    res = np.asarray(result_code(result) if hasattr(result, "_value") else result)
    size = res.size
    res = res.reshape(size)
    finite = np.ones(size, bool)
    for leaf in jax.tree.leaves(ys):
        finite &= np.all(np.isfinite(np.asarray(leaf).reshape(size, -1)), axis=-1)
    to = f"t = {t_end:g}" if not isinstance(t_end, str) else t_end
    maxed = res == MAX_STEPS
    failed = res != SUCCESS
    if np.any(maxed):
        raise IntegrationError(
            f"{where}the integration to {to} used all max_steps = {config.max_steps} steps "
            f"({int(maxed.sum())} of {size} trajectories). "
            + advice.get(
                "max_steps",
                f"Pass a larger max_steps, loosen rtol/atol (now {config.rtol:g}/{config.atol:g}), "
                "or a shorter t_end. If the state was growing without bound (steps shrinking), "
                "the run blew up: use a smaller init scale.",
            )
        )
    if np.any(failed):
        raise IntegrationError(
            f"{where}the integration to {to} failed for {int(failed.sum())} of {size} "
            f"trajectories after up to {int(np.max(np.asarray(num_steps)))} steps: the step size "
            "collapsed, which usually means the state blew up or became non-finite. "
            + advice.get(
                "failed",
                "Use a smaller init scale or tighter rtol/atol (svflow's own functions already "
                "run in float64).",
            )
        )
    if not np.all(finite):
        raise IntegrationError(
            f"{where}the integration to {to} produced non-finite values (NaN/inf) in "
            f"{int((~finite).sum())} of {size} trajectories. Use a smaller init scale or weight "
            "decay, or tighter rtol/atol."
        )
