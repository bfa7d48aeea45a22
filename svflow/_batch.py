r"""One engine for many trajectories: a refill loop over diffrax's step API.

Under a plain ``jax.vmap`` of ``diffeqsolve`` every member of a batch is
stepped (masked) until the *slowest* one ends; for basin maps (K = 16, L = 5,
t = 1e8) the step counts of different starts differ by 3x, so half the work is
wasted. :func:`solve_many` instead keeps ``lanes`` trajectories in flight in
ONE compiled ``lax.while_loop``:

1. every lane has its own time, step size, solver state (Tsit5's FSAL stage)
   and PID-controller state, and takes one step attempt per iteration
   (``solver.step`` + ``controller.adapt_step_size`` of diffrax, vmapped over
   the lanes);
2. a lane whose trajectory reached the end of the save grid (or failed) hands
   its statistics back and at once takes the next start from the queue
   (*refill*), so no lane idles while starts are waiting;
3. starts are queued by decreasing expected cost (``cost``; longest first, so
   the last lanes to finish hold short trajectories: the tail is short);
4. the queue is cut into equal-shaped chunks from a memory budget
   ``max_bytes`` (each chunk holds its saved trajectories on the device), and
   chunk shapes are rounded up to powers of two with the padding never run,
   so a few compiled shapes cover every batch size.

Every trajectory is integrated exactly as by ``diffrax.diffeqsolve`` with the
same solver, ``PIDController(rtol, atol, dtmin)`` and ``SaveAt(ts=saves)``:
same initial step, same accepted steps, same dense-output saves. Lanes and
order change which trajectories share an iteration, never the numbers of any
one (up to the last bits, where XLA vectorises a batched operation
differently from a single one).

**Interface** (generic over the vector field and the integration variable):
the caller passes ``field(s, y, args)``, the derivative $dy/ds$ *already
expressed in the integration variable* $s$, and an increasing save grid in
$s$; integration runs from ``saves[0]`` to ``saves[-1]``. svflow's reduced
runs use $s = \tau = \log(1 + t)$ (:func:`log_time_field`,
:func:`solve_batch`); any other clock (e.g. a double-log time) only has to
supply its own field and grid.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, replace

import diffrax
import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np

from ._integrate import MAX_STEPS, SUCCESS, Solver, check_times, result_code

__all__ = [
    "BatchSolution",
    "solve_many",
    "solve_batch",
    "solve_routed",
    "log_time_field",
    "chunk_size_for",
    "DEFAULT_MAX_BYTES",
    "DEFAULT_LANES",
    "default_lanes",
]

DEFAULT_MAX_BYTES = 1 << 28
"""Default memory budget of one chunk's saved trajectories (256 MiB): a 1e5-start
basin batch (K = 16, 161 saves) then peaks at about 2.6 GiB of resident memory
instead of 3.4 GiB with 1 GiB chunks, while each chunk still holds thousands
of starts, so the lanes' drain at the end of a chunk costs ~1 %."""

DEFAULT_LANES = 64
"""Default lanes in flight on a CPU (trajectories stepped together per loop
iteration): past ~64 the per-lane cost of an iteration stops falling on one
core (benchmarks/RESULTS.md)."""

ACCELERATOR_LANES = 8192
"""Default lanes on a GPU/TPU, where one iteration over thousands of lanes
costs about as much as over a few."""


def default_lanes() -> int:
    """Lanes in flight by default: :data:`DEFAULT_LANES` on a CPU, :data:`ACCELERATOR_LANES` otherwise."""
    return DEFAULT_LANES if jax.default_backend() == "cpu" else ACCELERATOR_LANES


_SOLVERS = {
    "tsit5": diffrax.Tsit5,
    "dopri5": diffrax.Dopri5,
    "dopri8": diffrax.Dopri8,
}


@dataclass(frozen=True)
class BatchSolution:
    """Result of :func:`solve_many`, in the order of the starts given.

    Attributes:
        ys: saved states, shape (B, T, *state shape) (numpy).
        result: diffrax result code per trajectory (int, 0 = success), shape (B,).
        num_steps: step attempts per trajectory (accepted + rejected), shape (B,).
        lanes: trajectories in flight per iteration.
        chunk_size: starts per compiled call (before padding).
        num_chunks: number of compiled calls.
        backend: ``"jax"`` (the refill loop here) or ``"numba"`` (the compiled
            CPU kernel, :mod:`svflow._cpu.tsit5`).
    """

    ys: np.ndarray
    result: np.ndarray
    num_steps: np.ndarray
    lanes: int
    chunk_size: int
    num_chunks: int
    backend: str = "jax"


def chunk_size_for(state_shape: tuple, num_times: int, max_bytes: int | float, itemsize: int = 8) -> int:
    """Largest number of starts whose saved trajectories (plus a host copy) fit in ``max_bytes``."""
    size = int(np.prod(state_shape)) if state_shape else 1
    per_start = itemsize * size * (2 * num_times + 8)
    return max(1, int(max_bytes // per_start))


def _next_pow2(n: int) -> int:
    return 1 << max(0, int(n) - 1).bit_length()


def _clip_to_end(tprev, tnext, t1, t1_floor, keep):
    # as diffrax: a step ending within ~100 ulp of t1 is stretched to t1 exactly
    clip = tnext > t1_floor
    return jnp.where(clip, jnp.where(keep, t1, tprev + 0.5 * (t1 - tprev)), tnext)


def _lane_starter(terms, solver, controller, y0s, num_real, args, s0, s1, dt0, order):
    """``start(idx)``: fresh lane states for the starts ``idx`` (idx >= num_real: idle lanes).

    The initial step sizes and solver states of every start are computed once
    here (a few RHS calls each) and gathered per refill.
    """
    B = y0s.shape[0]

    def init_one(y0):
        tnext, cstate = controller.init(terms, s0, s1, y0, dt0, args, solver.func, order)
        tnext = jnp.minimum(tnext, s1)
        return tnext, cstate, solver.init(terms, s0, tnext, y0, args)

    init_all = jax.vmap(init_one)(y0s)

    def start(idx):
        safe = jnp.minimum(idx, B - 1)
        tnext, cstate, sstate = jax.tree.map(lambda a: a[safe], init_all)
        return dict(
            idx=jnp.where(idx < num_real, idx, B),
            tprev=jnp.full(idx.shape, s0),
            tnext=tnext,
            y=y0s[safe],
            sstate=sstate,
            cstate=cstate,
            j=jnp.zeros(idx.shape, jnp.int32),
            steps=jnp.zeros(idx.shape, jnp.int32),
            res=jnp.full(idx.shape, SUCCESS, jnp.int32),
        )

    return start


def _stepper(terms, solver, controller, args, s1, t1_floor, order):
    """``step_one(tprev, tnext, y, sstate, cstate)``: one adaptive step of one lane.

    Returns ``(keep, tprev', tnext', y', sstate', cstate', dense, result)``; a
    rejected step (``keep`` false) leaves ``y`` and the solver state as they
    were, NaN error estimates count as infinite (the step is rejected), and
    the next step never passes the last save time ``s1``.
    """

    def step_one(tprev, tnext, y, sstate, cstate):
        y1, yerr, dense, sstate1, sres = solver.step(terms, tprev, tnext, y, args, sstate, False)
        yerr = jax.tree.map(lambda x: jnp.where(jnp.isnan(x), jnp.inf, x), yerr)
        keep, tp, tn, _, cstate1, cres = controller.adapt_step_size(
            tprev, tnext, y, y1, args, yerr, order, cstate
        )
        tp = jnp.minimum(tp, s1)
        tn = _clip_to_end(tp, tn, s1, t1_floor, keep)
        y1 = jnp.where(keep, y1, y)
        sstate1 = jax.tree.map(lambda a, b: jnp.where(keep, a, b), sstate1, sstate)
        sres = jnp.where(keep, result_code(sres), SUCCESS)
        res = jnp.where(sres != SUCCESS, sres, result_code(cres))
        return keep, tp, tn, y1, sstate1, cstate1, dense, res

    return step_one


def _save_dense(solver, saves, lane, keep, dense, ys):
    """Write every save time inside each lane's accepted step (tprev, tnext] into ``ys``.

    Values come from the solver's dense output; ``lane["j"]`` is each lane's
    next save index. Returns ``(updated j, ys)``; row ``B`` of ``ys`` is the
    sink of idle lanes and masked writes.
    """
    B, T = ys.shape[0] - 1, saves.shape[0]

    def interp(tprev, tnext, dense, s):
        return solver.interpolation_cls(t0=tprev, t1=tnext, **dense).evaluate(s)

    def save_cond(c):
        j, _ = c
        jc = jnp.minimum(j, T - 1)
        return jnp.any(keep & (j < T) & (saves[jc] <= lane["tnext"]))

    def save_body(c):
        j, ys = c
        jc = jnp.minimum(j, T - 1)
        m = keep & (j < T) & (saves[jc] <= lane["tnext"])
        val = jax.vmap(interp)(lane["tprev"], lane["tnext"], dense, saves[jc])
        ys = ys.at[jnp.where(m, lane["idx"], B), jc].set(val)
        return j + m.astype(j.dtype), ys

    return jax.lax.while_loop(save_cond, save_body, (lane["j"], ys))


def _refill(lane, nxt, done, start, B: int):
    """Finished lanes (``done``) take the next starts of the queue, from index ``nxt``."""
    W = done.shape[0]
    rank = jnp.cumsum(done) - 1
    new_idx = jnp.where(done, nxt + rank, B)
    fresh = start(new_idx)

    def sel(a, b):
        return jnp.where(done.reshape((W,) + (1,) * (a.ndim - 1)), a, b)

    lane = jax.tree.map(sel, fresh, lane)
    return lane, nxt + jnp.sum(done)


@eqx.filter_jit
def _engine(field, y0s, num_real, saves, args, solver, controller, lanes: int, max_steps: int, dt0: float):
    """Refill loop over ``y0s`` (padded chunk; only the first ``num_real`` run).

    ``lanes`` trajectories are stepped together per iteration; a lane whose
    start reaches the last save time (or fails) writes its result code and
    step count and takes the next start of the queue (:func:`_refill`).
    Returns ``(ys (B, T, ...), result codes (B,), steps (B,))``.
    """
    B = y0s.shape[0]
    T = saves.shape[0]
    W = lanes
    terms = diffrax.ODETerm(field)
    s0, s1 = saves[0], saves[-1]
    t1_floor = s1
    for _ in range(100):
        t1_floor = eqx.internal.prevbefore(t1_floor)
    order = solver.error_order(terms)
    start = _lane_starter(terms, solver, controller, y0s, num_real, args, s0, s1, dt0, order)
    step_one = _stepper(terms, solver, controller, args, s1, t1_floor, order)

    def cond(carry):
        return jnp.any(carry[0]["idx"] < B)

    def body(carry):
        lane, nxt, ys, res_out, steps_out = carry
        active = lane["idx"] < B
        keep, tp, tn, y1, ss1, cs1, dense, res = jax.vmap(step_one)(
            lane["tprev"], lane["tnext"], lane["y"], lane["sstate"], lane["cstate"]
        )
        keep = keep & active
        j, ys = _save_dense(solver, saves, lane, keep, dense, ys)
        steps = lane["steps"] + 1
        res = jnp.where(lane["res"] != SUCCESS, lane["res"], res)
        done_ok = tp >= s1
        res = jnp.where(~done_ok & (res == SUCCESS) & (steps >= max_steps), MAX_STEPS, res)
        done = active & (done_ok | (res != SUCCESS))
        lane = dict(
            idx=lane["idx"], tprev=tp, tnext=tn, y=y1, sstate=ss1, cstate=cs1, j=j, steps=steps, res=res
        )
        out_idx = jnp.where(done, lane["idx"], B)
        res_out = res_out.at[out_idx].set(res)
        steps_out = steps_out.at[out_idx].set(steps)
        lane, nxt = jax.lax.cond(
            jnp.any(done), lambda a: _refill(*a, done, start, B), lambda a: a, (lane, nxt)
        )
        return lane, nxt, ys, res_out, steps_out

    ys = jnp.zeros((B + 1, T) + y0s.shape[1:], y0s.dtype)
    res_out = jnp.full((B + 1,), SUCCESS, jnp.int32)
    steps_out = jnp.zeros((B + 1,), jnp.int32)
    carry = (start(jnp.arange(W)), jnp.asarray(W), ys, res_out, steps_out)
    _, _, ys, res_out, steps_out = jax.lax.while_loop(cond, body, carry)
    return ys[:B], res_out[:B], steps_out[:B]


def solve_many(
    field: Callable,
    y0s,
    saves,
    *,
    args=None,
    solver: str = "tsit5",
    rtol: float = 1e-8,
    atol: float = 1e-10,
    max_steps: int = 200_000,
    dtmin: float | None = None,
    dt0: float = 0.01,
    cost=None,
    lanes: int | None = None,
    max_bytes: int | float = DEFAULT_MAX_BYTES,
) -> BatchSolution:
    r"""Integrate $dy/ds$ = ``field(s, y, args)`` from every start in ``y0s``, saving at ``saves``.

    The integration variable $s$ is whatever ``field`` and ``saves`` use
    (module docstring): each trajectory runs from ``saves[0]`` to
    ``saves[-1]`` with diffrax's ``solver`` and
    ``PIDController(rtol, atol, dtmin)``, exactly as ``diffeqsolve`` would.

    Args:
        field: vector field in the integration variable (jit-traceable; an
            ``equinox.Module`` is hashed by value, so equal fields share a compile).
        y0s: starts, array of shape (B, *state shape).
        saves: increasing save grid in $s$ (the first entry is the start time).
        args: passed to ``field`` (shared by every start).
        solver: ``"tsit5"``, ``"dopri5"`` or ``"dopri8"``.
        rtol, atol: tolerances of the PID controller.
        max_steps: step attempts allowed per trajectory.
        dtmin: smallest step in $s$ (default ``1e-13 * |saves[-1]|``).
        dt0: first step in $s$. The default 0.01 is what ``diffeqsolve`` uses
            with ``dt0=None`` (its initial-step heuristic only applies to a bare
            ``ODETerm``, and ``diffeqsolve`` wraps its terms); the controller
            adapts it from the first step on.
        cost: expected cost per start (B,) (larger = more steps); the queue
            runs the costliest first. Default: the given order.
        lanes: trajectories in flight (default :func:`default_lanes`, at most B).
        max_bytes: device memory budget of one chunk's saved trajectories.

    Returns:
        :class:`BatchSolution` in the order of ``y0s``. Nothing is checked:
        use :func:`svflow._integrate.check_solution`.
    """
    y0s, saves = _check_solve_args(y0s, saves, solver, rtol, atol, max_steps, max_bytes)
    B, state = y0s.shape[0], y0s.shape[1:]
    order = _queue_order(cost, B)
    chunk, n_chunks, padded, W = _chunking(B, state, saves.size, max_bytes, lanes)
    dtmin = 1e-13 * abs(saves[-1]) if dtmin is None else float(dtmin)
    dt0 = float(dt0)
    if not (dt0 > 0):
        raise ValueError(f"dt0 must be a positive first step; got {dt0!r}.")
    ctrl = diffrax.PIDController(rtol=rtol, atol=atol, dtmin=dtmin)
    solv = _SOLVERS[solver]()
    saves_j = jnp.asarray(saves)
    ys = np.empty((B, saves.size) + state, dtype=float)
    res = np.empty(B, dtype=np.int64)
    steps = np.empty(B, dtype=np.int64)
    max_steps = int(max_steps)

    def run(block, n, saves_j):
        return _engine(field, block, n, saves_j, args, solv, ctrl, W, max_steps, dt0)

    for c in range(n_chunks):
        idx = order[c * chunk : (c + 1) * chunk]
        n = idx.size
        block = np.concatenate([y0s[idx], np.repeat(y0s[idx[-1:]], padded - n, axis=0)])
        out_ys, out_res, out_steps = run(jnp.asarray(block), jnp.asarray(n, jnp.int32), saves_j)
        ys[idx] = np.asarray(out_ys)[:n]
        res[idx] = np.asarray(out_res)[:n]
        steps[idx] = np.asarray(out_steps)[:n]
    return BatchSolution(ys=ys, result=res, num_steps=steps, lanes=W, chunk_size=chunk, num_chunks=n_chunks)


def _check_solve_args(y0s, saves, solver, rtol, atol, max_steps, max_bytes):
    """Check the arguments of :func:`solve_many`; return ``y0s`` and ``saves`` as float arrays."""
    y0s = np.asarray(y0s, dtype=float)
    if y0s.ndim < 2 or y0s.shape[0] < 1:
        raise ValueError(
            f"y0s must hold B >= 1 starts along its first axis, shape (B, *state); got shape {y0s.shape}."
        )
    saves = np.asarray(saves, dtype=float)
    if saves.ndim != 1 or saves.size < 2 or not np.all(np.isfinite(saves)) or np.any(np.diff(saves) <= 0):
        raise ValueError("saves must be a 1-D, finite, strictly increasing grid of >= 2 points.")
    if solver not in _SOLVERS:
        raise ValueError(f"solver must be one of {sorted(_SOLVERS)}; got {solver!r}.")
    if not (rtol > 0 and atol > 0):
        raise ValueError(f"rtol and atol must be positive; got {rtol}, {atol}.")
    if int(max_steps) < 1:
        raise ValueError(f"max_steps must be a positive integer; got {max_steps!r}.")
    if not (max_bytes > 0):
        raise ValueError(f"max_bytes must be a positive number of bytes; got {max_bytes!r}.")
    return y0s, saves


def _queue_order(cost, B: int) -> np.ndarray:
    """The order the queue runs the B starts in: costliest first, or as given (``cost=None``)."""
    if cost is None:
        return np.arange(B)
    cost = np.asarray(cost, dtype=float)
    if cost.shape != (B,):
        raise ValueError(f"cost must have shape (B,) = ({B},); got shape {cost.shape}.")
    return np.argsort(-cost, kind="stable")


def _chunking(B: int, state: tuple, num_saves: int, max_bytes: int | float, lanes):
    """``(chunk, n_chunks, padded, lanes)``: balanced chunks within ``max_bytes`` of saves.

    A single chunk is padded to the next power of two (fewer compiled shapes
    across calls) when the memory budget allows; the lanes in flight are at
    most the chunk size (default :func:`default_lanes`).
    """
    chunk = int(min(B, chunk_size_for(state, num_saves, max_bytes)))
    if lanes is None:
        lanes = default_lanes()
    elif int(lanes) < 1:
        raise ValueError(f"lanes must be a positive integer or None; got {lanes!r}.")
    n_chunks = math.ceil(B / chunk)
    chunk = math.ceil(B / n_chunks)  # balanced chunks
    padded = min(_next_pow2(chunk), chunk_size_for(state, num_saves, max_bytes)) if n_chunks == 1 else chunk
    padded = max(padded, chunk)
    return chunk, n_chunks, padded, int(min(int(lanes), chunk))


class _LogTimeField(eqx.Module):
    field: Callable

    def cpu_kernel_law(self, classes: int) -> dict | None:
        """The CPU kernel's law of this clock (:func:`_cpu_law`): the field's own, which is in tau."""
        rule = getattr(self.field, "cpu_kernel_law", None)
        return rule(classes) if rule is not None else None

    def __call__(self, tau, y, args):
        scale = jnp.exp(tau)  # 1 + t
        return jax.tree.map(lambda d: scale * d, self.field(jnp.expm1(tau), y, args))


def log_time_field(field: Callable) -> Callable:
    r"""A gradient-flow-time field in $\tau = \log(1+t)$: $dy/d\tau = (1 + t)\,f(t, y)$, $t = e^\tau - 1$."""
    return _LogTimeField(field)


class _DoubleLogField(eqx.Module):
    field: Callable

    def cpu_kernel_law(self, classes: int) -> dict | None:
        """The CPU kernel's law of this clock (:func:`_cpu_law`): the field's ``loglog_kernel_law``."""
        rule = getattr(self.field, "loglog_kernel_law", None)
        return rule(classes) if rule is not None else None

    def __call__(self, sigma, y, args):
        # dy/dsigma = (1 + tau) dy/dtau with tau = e^sigma - 1; the field's own
        # log-domain tau_rate never forms t (svflow._fields)
        return jax.tree.map(lambda d: jnp.exp(sigma) * d, self.field.tau_rate(jnp.expm1(sigma), y, args))


def solve_batch_loglog(
    field: Callable,
    y0s,
    taus,
    config: Solver = Solver(),
    *,
    args=None,
    cost=None,
    lanes: int | None = None,
    max_bytes: int | float = DEFAULT_MAX_BYTES,
) -> BatchSolution:
    r"""Like :func:`solve_batch` in double-log time $\sigma = \log(1 + \tau)$, saving at ``taus``.

    ``field`` must define ``tau_rate(tau, y, args)`` ($dy/d\tau$ in the log
    domain, e.g. :class:`svflow._fields.CETauField`), so any horizon
    $\tau$ is reached without forming $t = e^\tau - 1$. ``taus`` start at
    the start's $\tau$: 0 for a fresh run, the end of an earlier run to continue it.
    """
    taus = np.asarray(taus, dtype=float)
    if taus.ndim != 1 or taus[0] < 0.0 or np.any(np.diff(taus) <= 0) or not np.all(np.isfinite(taus)):
        raise ValueError("taus must be finite, strictly increasing and start at a tau >= 0.")
    return _solve_configured(
        _DoubleLogField(field), y0s, np.log1p(taus), config, args, cost, lanes, max_bytes
    )


def _solve_configured(field_s, y0s, saves, config: Solver, args, cost, lanes, max_bytes):
    r""":func:`solve_many` with ``config``'s settings; ``cost`` defaults to $-\log\|y_0\|$
    (under cross-entropy small starts spend longer crossing their blow-up: more steps)."""
    y0s = np.asarray(y0s, dtype=float)
    if cost is None and y0s.ndim >= 2:
        cost = -np.log(np.linalg.norm(y0s.reshape(y0s.shape[0], -1), axis=1) + 1e-300)
    return solve_routed(field_s, y0s, saves, config, args=args, cost=cost, lanes=lanes, max_bytes=max_bytes)


def solve_routed(
    field_s: Callable,
    y0s,
    saves,
    config: Solver = Solver(),
    *,
    args=None,
    cost=None,
    lanes: int | None = None,
    max_bytes: int | float = DEFAULT_MAX_BYTES,
) -> BatchSolution:
    r""":func:`solve_many` of ``field_s`` (a field in the integration variable) with ``config``'s settings,
    on the backend ``config.backend`` picks (:func:`_cpu_law`).

    The compiled CPU kernel runs the same method (same steps, same saves) where
    ``field_s.cpu_kernel_law(K)`` covers the run; the JAX engine runs the rest.
    """
    law = _cpu_law(field_s, y0s, config)
    if law is not None:
        return _solve_cpu(law, y0s, saves, config, cost, lanes)
    return solve_many(
        field_s,
        y0s,
        saves,
        args=args,
        solver=config.method,
        rtol=config.rtol,
        atol=config.atol,
        max_steps=config.max_steps,
        cost=cost,
        lanes=config.lanes if lanes is None else lanes,
        max_bytes=max_bytes,
    )


def solve_batch(
    field: Callable,
    y0s,
    ts,
    config: Solver = Solver(),
    *,
    args=None,
    cost=None,
    lanes: int | None = None,
    max_bytes: int | float = DEFAULT_MAX_BYTES,
) -> BatchSolution:
    r"""Integrate $dy/dt$ = ``field(t, y, args)`` (gradient-flow time) from every start, saving at ``ts``.

    Runs :func:`solve_many` in $\tau = \log(1 + t)$ with the settings of
    ``config``, exactly as :func:`svflow._integrate.solve` integrates one
    start. ``cost`` defaults to $-\log\|y_0\|$ (under cross-entropy small
    starts spend longer crossing their blow-up: more steps).

    Every trajectory starts at t = 0; ``ts`` need not contain 0. The saved
    states are those at ``ts`` exactly (``ys`` has ``len(ts)`` times): the
    start is saved only when ``ts[0] == 0``.
    """
    ts = check_times(ts)
    if ts[-1] == 0.0:
        raise ValueError(
            "times must hold a save time after t = 0 (every run starts at t = 0 and "
            f"ends at times[-1]); got times = {ts.tolist()}."
        )
    lead = 1 if ts[0] > 0.0 else 0  # integrate from t = 0, then drop that save
    grid = np.concatenate([[0.0], ts]) if lead else ts
    sol = _solve_configured(log_time_field(field), y0s, np.log1p(grid), config, args, cost, lanes, max_bytes)
    return replace(sol, ys=sol.ys[:, lead:]) if lead else sol


def _cpu_law(field, y0s, config: Solver) -> dict | None:
    """The law of the compiled CPU kernel for this run, or None: the JAX engine runs it.

    ``field`` is the field in the integration variable (:func:`log_time_field`,
    the double-log clock of :func:`solve_batch_loglog`); ``config.backend``:
    ``"auto"`` takes the kernel where it covers the run
    (``field.cpu_kernel_law(K)`` is not None, Tsit5) and JAX runs on a CPU;
    ``"numba"`` insists on it; ``"jax"`` never takes it.
    """
    if config.backend == "jax":
        return None
    y0s = np.asarray(y0s)
    rule = getattr(field, "cpu_kernel_law", None)
    law = rule(y0s.shape[-1]) if rule is not None and y0s.ndim == 2 and config.method == "tsit5" else None
    if config.backend == "numba":
        if law is None:
            raise ValueError(
                "Solver(backend='numba') covers Tsit5 on the balanced cross-entropy law in "
                "u = log(lambda) (balanced starts with every mode positive) and on the balanced "
                "cross-entropy law in double-log time without weight decay (outcome, basin_map); "
                f"Walsh groups, other groups up to K = 256; this run is not one (method={config.method!r}, "
                f"field {type(getattr(field, 'field', field)).__name__}). Pass backend='auto' or 'jax'."
            )
        return law
    return law if jax.default_backend() == "cpu" else None


def _solve_cpu(law: dict, y0s, saves, config: Solver, cost, lanes) -> BatchSolution:
    """:func:`solve_many`'s run (same controller, first step, clipping, queue) in the CPU kernel."""
    from ._cpu.tsit5 import solve_log_ce

    y0s, saves = _check_solve_args(y0s, saves, config.method, config.rtol, config.atol, config.max_steps, 1)
    B = y0s.shape[0]
    if cost is None:
        cost = -np.log(np.linalg.norm(y0s, axis=1) + 1e-300)
    order = _queue_order(cost, B)
    lanes = config.lanes if lanes is None else lanes
    if lanes is None:
        lanes = DEFAULT_LANES
    elif int(lanes) < 1:
        raise ValueError(f"lanes must be a positive integer or None; got {lanes!r}.")
    W = int(min(int(lanes), B))
    t1_floor = float(saves[-1])
    for _ in range(100):  # as diffrax: a step ending within ~100 ulp of the end is stretched to it
        t1_floor = float(np.nextafter(t1_floor, -np.inf))
    ys, res, steps = solve_log_ce(
        y0s,
        saves,
        order,
        **law,
        rtol=config.rtol,
        atol=config.atol,
        max_steps=config.max_steps,
        dt0=0.01,
        dtmin=1e-13 * abs(saves[-1]),
        t1_floor=t1_floor,
        lanes=W,
        max_steps_code=MAX_STEPS,
    )
    return BatchSolution(
        ys=ys, result=res, num_steps=steps, lanes=W, chunk_size=B, num_chunks=1, backend="numba"
    )
