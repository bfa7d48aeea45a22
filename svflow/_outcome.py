r"""Certified $t \to \infty$ outcomes of spectral starts under cross-entropy.

Setting: the reduced flow of a spectral start (K classes, character basis of
a finite abelian group, depth L weight matrices, N = L + 1 factors, mean
cross-entropy, n = 1, no weight decay, gradient-flow time t = steps x step
size). The logits $\lambda_i = \prod_l s_{l,i}$ grow without bound and their
direction converges to a KKT point of the max-margin problem (Lyu & Li 2020),
but only at a rate set by powers of $\log t$: a ratio $\lambda_i/\max\lambda$
read at t = 1e8 is not the outcome (docs: theory/certification.md).

**Method.** Each start is integrated exactly in double-log time $\sigma =
\log(1 + \tau)$, $\tau = \log(1 + t)$ (right-hand side in the log domain,
:mod:`svflow._fields`, so t never materialises) to a hand-off horizon
$\tau_h$. If the state is late (finite, every margin positive, off-target
softmax mass $\le$ ``late_mass``), it is handed to the **limit flow**
(:mod:`svflow._limit`): the $\tau \to \infty$ limit of the late
dynamics in $u = \lambda/\tau$ and $s = \log\tau$, an autonomous, non-stiff
ODE whose fixed points are the KKT points. The hand-off state $u =
\lambda/\min_x m_x(\lambda)$ is multiplied by $1 + \epsilon v$ (``tie_break``
$\epsilon$, a fixed vector v with distinct entries, tied in conjugate pairs)
so that a fixed point with an unstable direction is left, and the limit
flow is followed for :data:`~svflow._limit.LIMIT_STEPS` steps of
its *limit map* (implicit-explicit Euler steps of size 1 in s, the
fixed-point iteration of the KKT map; same fixed points as the flow). At its
end state the rate ratios
$\rho_j = 1 + (du_j/ds)/u_j$ ($d\log\lambda_j/d\sigma$ over that of the largest
mode) sort the modes: support ($|\rho_j - 1| \le$ ``support_tol``), frozen
($\rho_j \le$ ``frozen_rate``), or moving (not decided).

**Decision.** A start is decided at horizon $\tau_h$ when the state is late,
no mode is moving at the end of the limit run, and the limit run from the
previous horizon (a factor 3 earlier) gave the same support and frozen
sets (the hand-off error is of relative order $\log\tau_h/\tau_h$; a start
whose side of a basin edge depends on it is caught here). The outcome is the
support size r (0 = NC when r = K - 1). A limit-map end state off its margin
constraint (smallest margin not within 1e-6 of 1), with an empty support,
without its largest mode in the support, or from a run with a QP that was not
solved (:func:`svflow._limit.qp_nonneg`'s flag) is never decided, and before
returning :func:`outcome` checks the fields of every decided start against
each other (:func:`consistent`; docs: theory/certification.md, "False neural
collapse"). Otherwise the start goes on to the
next horizon, and after the last it is undecided (-1). The decision puts no
threshold on the ratios themselves: K = 8 limits such as (1, .5, .5, .5, 0,
0, 0) have support 4.

Example, K = 4 with $u = (0, 1, 1, q)$: the third margin is inactive, the
two others carry equal weight and $\rho_3 = 2q^{1-2/N}$, so the late
separatrix is $q^\star = 2^{-N/(N-2)}$ (above: NC; below: the square code,
rank 2); $(1, 1, q^\star)$ is a saddle with unstable eigenvalue $1 - 2/N$.

**Limit.** The limiting direction is the KKT point of the max-margin problem
restricted to the decided support, polished from the end of the limit run by
:func:`svflow._analysis.asymptotics.kkt_point`; ``kkt_residual`` is its
relative stationarity residual.

**Cost.** The exact flow is stiff late on (its margins lock together at a
rate $\propto \tau$ in $\sigma$: an explicit solver needs about $\tau$ steps
per unit of $\sigma$), so it stops early: the first two hand-offs (tau = 30
and 100) come from one run of about 115-170 solver steps (rtol 1e-5 to 1e-6,
K = 8). Hand-offs at tau = 10 and 30 cost a third less but decided 3 of 3000
random K = 8 starts on the wrong side of a saddle, the same side from both
(benchmarks/RESULTS.md, section 7). The limit map costs the same at every s:
one small complementarity problem per step, 24 steps per run, the runs of a
batch vectorised together.

**Unbalanced starts** ($s(0)$ given): the factor flow is integrated; the
differences $s_{l,i}^2 - s_{l',i}^2$ are conserved while $s$ diverges on the
support, so the late phase is balanced and the hand-off uses $\lambda =
\prod_l s_l$.
"""

from __future__ import annotations

import time as _time
from dataclasses import dataclass
from functools import partial

import jax
import jax.numpy as jnp
import numpy as np
import xarray as xr
from jax.scipy.special import logsumexp

from . import _dims as D
from ._checks import check_bool, check_fraction, check_int
from ._dataset import grid_dataset
from ._fields import CETauField
from ._groups import Group, resolve_group, tie_pairs
from ._integrate import SUCCESS, Solver, check_solution, check_solver, result_code, solve, takes_solver
from ._limit import (
    LIMIT_STEPS,
    QP_ADD_TOL,
    QP_KKT_TOL,
    QP_RIDGE,
    class_rows,
    handoff,
    limit_rates,
    one_minus_cos,
    relax,
)
from ._precision import computes
from ._simulate import _as_starts
from ._start import check_growing, start_group

__all__ = [
    "NC",
    "UNDECIDED",
    "DEFAULT_HORIZONS",
    "Criterion",
    "decide",
    "advance",
    "resolve",
    "outcome",
]

NC = 0
"""Outcome code of neural collapse (the limit's support is all K - 1 modes)."""
UNDECIDED = -1
"""Outcome code of a start not decided by the last horizon."""

CONSTRAINT_TOL = 1e-6
r"""Largest $|\min_x m_x(u) - 1|$ of a limit-map end state that :func:`decide` accepts
(the map's margins are exactly $\ge 1$ with equality on the active classes; a
state off this constraint had an inaccurate complementarity solve)."""

DEFAULT_HORIZONS = (30.0, 1e2, 300.0, 1e3, 3e3, 1e4)
r"""Horizons in $\tau = \log(1 + t)$ at which undecided starts are tested
(t = e^30, ..., e^10000); each is reached only by the starts still undecided."""

OUTCOME_SOLVER = Solver(rtol=1e-6, atol=1e-9, max_steps=100_000)
"""Default solver of :func:`outcome`: a decision depends on the hand-off states
only to relative order log(tau) / tau, far above these tolerances, and rtol and
atol may not exceed :data:`LOOSEST_RTOL`."""


@dataclass(frozen=True)
class Criterion:
    r"""Tolerances of the decision (documentation page *Certifying outcomes*).

    The criterion is derived in ``docs/theory/certification.md``.

    Attributes:
        support_tol: $|\rho_i - 1|$ below which mode i grows with the largest one.
        frozen_rate: $\rho_i$ at or below which mode i is frozen (< 1 - support_tol).
        tie_break: relative size of the tie-breaking perturbation of the
            hand-off state (decisions are those of generic
            starts; a fixed point with an unstable direction is left).
        late_mass: largest off-target softmax mass $1 - g(0)$ of a late state.
    """

    support_tol: float = 0.05
    frozen_rate: float = 0.8
    tie_break: float = 1e-3
    late_mass: float = 1e-4

    def __post_init__(self):
        check_fraction("support_tol", self.support_tol)
        check_fraction("frozen_rate", self.frozen_rate)
        if self.frozen_rate >= 1 - self.support_tol:
            raise ValueError(
                f"frozen_rate must be < 1 - support_tol = {1 - self.support_tol}; got {self.frozen_rate}."
            )
        check_fraction("tie_break", self.tie_break)
        check_fraction("late_mass", self.late_mass)

    def as_attrs(self) -> dict:
        return {
            "criterion_support_tol": float(self.support_tol),
            "criterion_frozen_rate": float(self.frozen_rate),
            "criterion_tie_break": float(self.tie_break),
            "criterion_late_mass": float(self.late_mass),
        }


def late_state(lam, criterion: Criterion, group: Group) -> dict:
    r"""Is the exact state ``lam`` (K,) late? ``late``: finite, every margin > 0 and
    off-target softmax mass $1 - g(0) \le$ ``criterion.late_mass``;
    ``off_target_mass``. Pure and vmappable."""
    lam = jnp.asarray(lam)
    K = lam.shape[-1]
    modes = jnp.arange(K) > 0
    mag = jnp.where(modes & jnp.isfinite(lam), jnp.abs(lam), 0.0)
    m = group.margins(mag)
    neg = jnp.where(modes, -m, -jnp.inf)
    lse = jnp.logaddexp(0.0, logsumexp(neg))
    mass = -jnp.expm1(-lse)
    late = (
        jnp.all(jnp.isfinite(lam))
        & (mass <= criterion.late_mass)
        & (jnp.min(jnp.where(modes, m, jnp.inf)) > 0)
    )
    return dict(late=late, off_target_mass=mass)


def decide(u, factors: int, criterion: Criterion, group: Group, solved=True) -> dict:
    r"""Decide from the end state ``u`` (K,) of a limit-flow run (module docstring).

    ``solved``: every QP of the run that gave ``u`` was solved (:func:`svflow._limit.relax`
    with ``checked``); the rates step's QP must be solved too. Otherwise the state is
    undecided: a decision is never read off an unsolved QP.

    Returns a dict of arrays: ``code`` (0 NC, r support size, -1 undecided),
    ``decided``, ``support`` (K,) bool, ``frozen`` (K,) bool, ``rate_ratio``
    $\rho$ (K,) and ``ratio`` $u_i/\max u$ (K,). Pure and vmappable.
    """
    u = jnp.asarray(u)
    K = u.shape[-1]
    modes = jnp.arange(K) > 0
    finite = jnp.all(jnp.isfinite(u))
    u = jnp.where(modes & jnp.isfinite(u), jnp.abs(u), 0.0)
    top = jnp.max(u)
    rho, rates_solved = limit_rates(u, factors, group, checked=True)
    support = modes & (jnp.abs(rho - 1.0) <= criterion.support_tol)
    frozen = modes & (rho <= criterion.frozen_rate)
    moving = modes & ~support & ~frozen

    # the map's end state must sit on its margin constraint (smallest margin 1: the
    # complementarity problem was solved), and the largest mode must be in the support
    # (it grows with itself): otherwise the state is undecided, never "all frozen"
    mmin = jnp.min(jnp.where(modes, group.margins(u), jnp.inf))
    on_constraint = jnp.abs(mmin - 1.0) <= CONSTRAINT_TOL
    lead = support[jnp.argmax(u)]
    decided = finite & (top > 0) & ~jnp.any(moving) & on_constraint & lead & solved & rates_solved
    r = jnp.sum(support)
    code = jnp.where(decided & (r >= 1), jnp.where(r == K - 1, NC, r), UNDECIDED)
    decided = decided & (r >= 1)
    return dict(
        code=code.astype(jnp.int32),
        decided=decided,
        support=support,
        frozen=frozen,
        rate_ratio=rho,
        ratio=u / jnp.where(top > 0, top, 1.0),
    )


def advance(y, tau0, taus, *, factors: int, balanced: bool, config: Solver, group: Group):
    r"""Integrate one start from $\tau_0$ through the horizons ``taus`` in double-log time.

    ``y`` is $\lambda$ (K,) (``balanced``) or $s$ (N, K); ``taus`` a horizon or an
    increasing sequence (H,) above $\tau_0$, all read from one run (dense
    output, the steps :func:`advance_batch` takes). Returns ``(y at each
    horizon (H, ...), diffrax result code, number of steps)``. Pure and
    vmappable over ``(y, tau0)``.
    """
    field = CETauField(factors, balanced, group)
    ys, result, steps = solve(
        field,
        y,
        jnp.atleast_1d(jnp.asarray(taus, dtype=jnp.result_type(float))),
        None,
        config,
        clock="loglog",
        grid="tau",
        start=tau0,
    )
    return ys, result_code(result), steps


def _lam_of(y, balanced: bool):
    return y if balanced else jnp.prod(y, axis=-2)


def _tie_breaker(group: Group) -> np.ndarray:
    """A fixed vector in [-1, 1] (K,) with distinct entries, equal within conjugate pairs."""
    v = np.sin(1.0 + 2.718281828 * np.arange(group.classes) ** 1.5)
    return np.asarray(tie_pairs(v, group))


def handoff_state(lam, criterion: Criterion, group: Group):
    r"""The limit flow's start from the exact state ``lam`` (K,): :func:`handoff`
    times $1 + \epsilon v$ (``criterion.tie_break`` $\epsilon$, v from
    :func:`_tie_breaker`). Pure and vmappable."""
    return handoff(lam, group) * (1.0 + criterion.tie_break * _tie_breaker(group))


@partial(jax.jit, static_argnames=("factors", "balanced", "criterion", "group"))
def _limit_batch(y, *, factors, balanced, criterion, group):
    """Hand-off of a batch of exact states (:func:`late_state`, :func:`handoff_state`),
    the limit map (:func:`svflow._limit.relax`) and :func:`decide`, in one
    compiled call. Returns the fields of :func:`decide` with ``late``,
    ``off_target_mass`` and ``limit_state`` (the end of the limit run)."""

    def hand(y):
        lam = _lam_of(y, balanced).at[0].set(0.0)
        d = late_state(lam, criterion, group)
        u = handoff_state(lam, criterion, group)
        ok = d["late"] & jnp.all(jnp.isfinite(u))
        # a state that cannot be handed off runs a harmless dummy (it stays undecided)
        return d, jnp.where(ok, u, handoff(jnp.ones_like(lam), group))

    late, u0 = jax.vmap(hand)(y)
    u1, solved = relax(u0, factors=factors, group=group, checked=True)
    d = jax.vmap(lambda v, ok: decide(v, factors, criterion, group, ok))(u1, solved)
    return {**d, **late, "limit_state": u1}


_LIMIT_TABLES: dict = {}


def _limit_tables(group: Group) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    r"""The group's data of the compiled limit map, built once per group (keyed on its class
    and orders): $1 - \cos$ table C (K, K), its rows :func:`svflow._limit.class_rows` (R, K)
    and the tie-breaker (K,)."""
    key = (type(group), tuple(group.orders))
    if key not in _LIMIT_TABLES:
        C = np.ascontiguousarray(one_minus_cos(group), dtype=float)
        rows = np.ascontiguousarray(C[class_rows(group)])
        tables = (C, rows, np.asarray(_tie_breaker(group), dtype=float))
        for a in tables:
            a.setflags(write=False)
        _LIMIT_TABLES[key] = tables
    return _LIMIT_TABLES[key]


def _limit_batch_cpu(y, *, factors, balanced, criterion, group):
    """:func:`_limit_batch` compiled for the CPU (:func:`svflow._cpu.limit.limit_batch`, the same
    steps as numba loops, state by state; no padding): numpy in, numpy dict out."""
    from ._cpu.limit import limit_batch

    y = np.asarray(y, dtype=float)
    lam = np.ascontiguousarray(y if balanced else np.prod(y, axis=-2))
    out = limit_batch(
        lam,
        *_limit_tables(group),
        int(factors),
        int(LIMIT_STEPS),
        float(criterion.tie_break),
        float(criterion.late_mass),
        float(criterion.support_tol),
        float(criterion.frozen_rate),
        float(CONSTRAINT_TOL),
        int(NC),
        int(UNDECIDED),
        np.array([QP_RIDGE, QP_ADD_TOL, QP_KKT_TOL], dtype=float),
    )
    return dict(zip(_FIELDS, out))


def limit_backend(config: Solver) -> str:
    """Which backend runs the limit map of the outcome pipeline (:func:`_stage`) under ``config``:
    ``"numba"`` (:func:`_limit_batch_cpu`) where ``config.backend`` is ``"numba"``, or ``"auto"``
    and JAX runs on a CPU (as the exact runs, :func:`svflow._batch.solve_routed`); else ``"jax"``
    (:func:`_limit_batch`). The compiled map covers every group, K and depth."""
    if config.backend == "numba" or (config.backend == "auto" and jax.default_backend() == "cpu"):
        return "numba"
    return "jax"


def _padded(fn, x, **kw):
    """``fn`` on ``x`` padded to a power of two (few compiles as batches shrink); numpy dict out."""
    k = x.shape[0]
    pad = np.concatenate([np.arange(k), np.zeros(_bucket(k) - k, int)])
    return {f: np.asarray(v)[:k] for f, v in fn(jnp.asarray(x[pad]), **kw).items()}


def advance_batch(y, tau0, taus, *, factors: int, balanced: bool, config: Solver, group: Group):
    r"""Integrate a batch of states from their $\tau_0$ (B,) through the horizons ``taus``.

    Runs through svflow's batch engine (:func:`svflow._batch.solve_routed`, the
    refill loop behind :func:`svflow.simulate`, compiled for the CPU where
    ``config.backend`` allows it, :mod:`svflow._cpu.tsit5`): starts sharing a $\tau_0$ go
    together, finished lanes take the next start; the states at every
    horizon come from one run (dense output). ``taus``: a horizon or an
    increasing sequence (H,), each above every $\tau_0$. Returns numpy
    ``(y at each horizon (H, B, ...), diffrax result code (B,), steps (B,))``.
    """
    from ._batch import _DoubleLogField, solve_routed

    y = np.asarray(y, dtype=float)
    taus = np.atleast_1d(np.asarray(taus, dtype=float))
    tau0 = np.broadcast_to(np.asarray(tau0, dtype=float), (y.shape[0],))
    ys = np.empty((taus.size,) + y.shape)
    res = np.zeros(y.shape[0], np.int64)
    steps = np.zeros(y.shape[0], np.int64)
    field = _DoubleLogField(CETauField(factors, balanced, group))
    for t0 in np.unique(tau0):
        sel = np.flatnonzero(tau0 == t0)
        sol = solve_routed(field, y[sel], np.log1p(np.concatenate([[t0], taus])), config)
        ys[:, sel] = np.moveaxis(sol.ys[:, 1:], 1, 0)
        res[sel] = sol.result
        steps[sel] = sol.num_steps
    return ys, res, steps


def _stage(y, tau0, taus, *, factors, balanced, config, criterion, group):
    """Horizons ``taus`` (H,) in one go: :func:`advance_batch` through them, then at
    each the hand-off, the limit map (:func:`svflow._limit.relax`) and
    :func:`decide`, all horizons in one batch (numpy in, numpy out). The limit-map
    stage runs on the backend :func:`limit_backend` picks from ``config`` (the compiled
    :func:`_limit_batch_cpu` on a CPU under ``"auto"``, else :func:`_limit_batch` in
    XLA): one method, the same numbers up to rounding.

    Returns ``(y at each horizon (H, B, ...), result (B,), steps (B,), fields)``,
    each field with a leading axis H; ``result`` is the exact run's diffrax code;
    ``steps`` counts the exact steps and the limit map's."""
    taus = np.atleast_1d(np.asarray(taus, dtype=float))
    H, B = taus.size, np.shape(y)[0]
    ys, res, steps = advance_batch(
        y, tau0, taus, factors=factors, balanced=balanced, config=config, group=group
    )
    flat = ys.reshape((H * B,) + ys.shape[2:])
    kw = dict(factors=factors, balanced=balanced, criterion=criterion, group=group)
    if limit_backend(config) == "numba":
        d = _limit_batch_cpu(flat, **kw)
    else:
        d = _padded(_limit_batch, flat, **kw)
    d["decided"] = d["decided"] & np.tile(res == SUCCESS, H) & d["late"]
    d["code"] = np.where(d["decided"], d["code"], UNDECIDED).astype(np.int32)
    d = {k: v.reshape((H, B) + v.shape[1:]) for k, v in d.items()}
    return ys, res, steps + H * LIMIT_STEPS, d


def _bucket(n: int) -> int:
    """Batch sizes are padded to powers of two (few compiles as the batch shrinks)."""
    return 1 << max(0, int(np.ceil(np.log2(max(n, 1)))))


_FIELDS = (
    "code",
    "decided",
    "support",
    "frozen",
    "rate_ratio",
    "ratio",
    "late",
    "off_target_mass",
    "limit_state",
)


def resolve(
    y,
    tau,
    state: dict | None = None,
    *,
    factors: int,
    balanced: bool = True,
    horizons=DEFAULT_HORIZONS,
    config: Solver = OUTCOME_SOLVER,
    criterion: Criterion = Criterion(),
    group: Group,
    progress: bool = False,
) -> dict:
    r"""Continue a batch of starts through ``horizons`` until each is decided.

    ``y``: (B, K) $\lambda$ or (B, N, K) $s$ at times ``tau`` (B,). ``state``:
    an earlier result of this function (or of a first stage with the same
    keys) whose decided members are kept as they are. At each horizon only the
    still-undecided members that have not failed run, as one batch (padded to
    a power of two); members with no earlier limit run (undecidable at their
    first horizon) run their first two horizons in one stage. Returns numpy arrays: ``y``, ``tau`` (horizon
    reached), ``solver_result`` (0 = success), ``num_steps`` (summed over
    stages) and the fields of :func:`decide`. A member whose integration fails
    keeps the state and ``tau`` of the last horizon it reached. ``progress``: a
    tqdm bar over the horizons.
    """
    y = np.array(y, dtype=float)
    B = y.shape[0]
    K = y.shape[-1]
    tau = np.broadcast_to(np.asarray(tau, dtype=float), (B,)).copy()
    if state is None:
        st = {
            "code": np.full(B, UNDECIDED, np.int32),
            "decided": np.zeros(B, bool),
            "support": np.zeros((B, K), bool),
            "frozen": np.zeros((B, K), bool),
            "rate_ratio": np.full((B, K), np.nan),
            "ratio": np.full((B, K), np.nan),
            "late": np.zeros(B, bool),
            "off_target_mass": np.full(B, np.nan),
            "limit_state": np.full((B, K), np.nan),
            "solver_result": np.zeros(B, np.int64),
            "num_steps": np.zeros(B, np.int64),
        }
    else:
        st = {k: np.array(v) for k, v in state.items() if k not in ("y", "tau")}
    hz = [float(h) for h in horizons]
    bar = None
    if progress:
        from tqdm import tqdm

        bar = tqdm(total=len(hz), desc="outcome", unit="horizon")
    for i in range(len(hz)):
        if bar is not None:
            bar.set_postfix_str(f"tau={hz[i]:g}, {int((~st['decided']).sum())} undecided")
            bar.update(1)
        todo = np.flatnonzero(~st["decided"] & (st["solver_result"] == SUCCESS) & (tau < hz[i]))
        # a start with no earlier limit run cannot be decided at this horizon (nothing
        # to compare with), so it runs the next one in the same stage; the stages a
        # start runs depend on the start alone, never on the others in its batch
        fresh = np.isnan(st["rate_ratio"][todo, 0])
        for part, taus in ((todo[fresh], hz[i : i + 2]), (todo[~fresh], hz[i : i + 1])):
            if part.size:
                _resolve_stage(y, tau, st, part, taus, factors, balanced, config, criterion, group)
    if bar is not None:
        bar.close()
    return {"y": y, "tau": tau, **st}


def _resolve_stage(y, tau, st, todo, taus, factors, balanced, config, criterion, group) -> None:
    """One stage of :func:`resolve` for the members ``todo`` through ``taus``, in place."""
    ys, res, steps, ds = _stage(
        y[todo],
        tau[todo],
        taus,
        factors=factors,
        balanced=balanced,
        config=config,
        criterion=criterion,
        group=group,
    )
    st["solver_result"][todo] = res
    st["num_steps"][todo] += steps
    for n, h in enumerate(taus):
        d = {k: v[n] for k, v in ds.items()}
        had = ~np.isnan(st["rate_ratio"][todo, 0])
        same = np.all(d["support"] == st["support"][todo], axis=-1) & np.all(
            d["frozen"] == st["frozen"][todo], axis=-1
        )
        d["decided"] = d["decided"] & had & same
        d["code"] = np.where(d["decided"], d["code"], UNDECIDED).astype(np.int32)
        ok = todo[res == SUCCESS]  # a failed run reached none of these horizons
        y[ok] = ys[n][res == SUCCESS]
        tau[ok] = h
        for f in _FIELDS:
            st[f][todo] = d[f]


def _limits(lam_end: np.ndarray, support: np.ndarray, decided: np.ndarray, depth: int, group: Group):
    """KKT polish of every decided limit: (limit (B, K), kkt_residual (B,)).

    The group's KKT point of the max-margin problem (``limit_point``): for the
    Walsh group :func:`svflow.studies.kkt_point` on the decided support, for
    other groups :func:`svflow.max_margin_direction` over tied pairs from the late state."""
    from ._analysis.asymptotics import limit_point

    B, K = lam_end.shape
    limit = np.full((B, K), np.nan)
    res = np.full(B, np.nan)
    for b in np.flatnonzero(decided):
        pt = limit_point(group, lam_end[b], depth, support[b])
        limit[b] = pt.lam / pt.lam.max()
        res[b] = pt.kkt_residual
    return limit, res


def check_horizons(horizons) -> np.ndarray:
    """``horizons`` as an increasing 1-D float array of positive, finite $\\tau = \\log(1 + t)$ values."""
    hz = np.atleast_1d(np.asarray(horizons, dtype=float))
    if (
        hz.ndim != 1
        or hz.size < 1
        or not np.all(np.isfinite(hz))
        or np.any(hz <= 0)
        or np.any(np.diff(hz) <= 0)
    ):
        raise ValueError(
            f"horizons must be increasing positive values of tau = log(1 + t); got {horizons!r}."
        )
    return hz


MAX_CLASSES = 1024
"""Largest K :func:`outcome` accepts: its wall time grows with K (about 9 s at
K = 64, 33 s at 256, 86 s at 1024 on a 2-core machine, benchmarks/RESULTS.md)
and at K = 4096 compiling the (K, K) tables of the group did not finish."""

LOOSEST_RTOL = 1e-3
"""Largest rtol (and atol) :func:`outcome` and :func:`svflow.studies.basin_map`
accept: the decision compares limit runs from two horizons, and hand-off states
off by more than this can change the side of a basin edge (rtol = 1 gave another
decided outcome on a K = 8 start)."""


TIGHTEST_RTOL = 1e-13
"""Smallest rtol accepted (float64 holds about 16 digits)."""


def check_tolerances(solver: Solver) -> Solver:
    """``solver`` with rtol and atol in (0, :data:`LOOSEST_RTOL`] and rtol >= :data:`TIGHTEST_RTOL`;
    a clear error otherwise."""
    if solver.rtol < TIGHTEST_RTOL:
        raise ValueError(
            f"rtol = {solver.rtol:g} is below what float64 can hold (the solver would stall); pass "
            f"svflow.Solver(rtol=...) with rtol >= {TIGHTEST_RTOL:g} (default 1e-6)."
        )
    for name, v in (("rtol", solver.rtol), ("atol", solver.atol)):
        if v > LOOSEST_RTOL:
            raise ValueError(
                f"{name} = {v:g} is too loose to certify an outcome (the decision needs the "
                f"states at two horizons to {LOOSEST_RTOL:g} or better); pass svflow.Solver({name}=...) "
                f"with {name} <= {LOOSEST_RTOL:g} (default rtol 1e-6, atol 1e-9)."
            )
    return solver


def check_horizon_list(horizons) -> tuple[float, ...]:
    """The horizons a run decides at: ``horizons`` checked, and a single horizon h
    preceded by the check horizon min(30, h / 3) (a decision compares two limit runs;
    :func:`svflow.studies.basin_map` does the same)."""
    hz = check_horizons(horizons)
    if hz.size == 1:
        hz = np.array([min(30.0, hz[0] / 3), hz[0]])
    return tuple(float(h) for h in hz)


def _check_outcome_failures(st: dict, config: Solver, classes: int, depth: int, hz) -> None:
    """Raise :class:`svflow.IntegrationError` (with advice) if an exact run failed."""
    res = np.asarray(st["solver_result"])
    y = np.asarray(st["y"]).reshape(res.size, -1)
    bad = (res != SUCCESS) | ~np.all(np.isfinite(y), axis=-1)
    if not np.any(bad):
        return
    b = int(np.flatnonzero(bad)[0])
    where = (
        f"outcome, classes={classes}, depth={depth} (the first failed start, {b}, reached tau = "
        f"log(1 + t) = {st['tau'][b]:g}; diffrax result {int(res[b])}): "
    )
    advice = {
        "max_steps": "The exact flow is stiff late on (about tau steps per unit of log tau), so pass "
        "a larger max_steps (about 10 x the last horizon) or shorter horizons (the default stops at "
        "tau = 1e4); a start with huge lambda(0) (far beyond 10) also exhausts them: rescale it.",
        "failed": f"The solver could not keep its step (rtol/atol {config.rtol:g}/{config.atol:g}): "
        "use rtol in [1e-10, 1e-3] and initial scales lambda(0) of order 1e-3 to 10.",
    }
    to = f"the horizons tau = {list(hz)}"
    check_solution(y, res, st["num_steps"], config, to, where, advice)


@computes
@takes_solver
def outcome(
    classes: int | None = None,
    depth: int | None = None,
    *,
    init,
    batch_dims=None,
    group=None,
    horizons=None,
    solver: Solver = OUTCOME_SOLVER,
    criterion: Criterion | None = None,
    kkt: bool = True,
    progress: bool = False,
) -> xr.Dataset:
    r"""The $t \to \infty$ outcome of spectral or random starts (cross-entropy, no weight decay).

    **Random starts.** ``init`` a :class:`svflow.DeepUFM` or a list of them
    (``classes``, ``depth`` may be omitted; if given they must match): the
    full-parameter flow in double-log time, decided by the late growth
    exponents of the centred-logit singular values at the stages ``horizons``
    (default ``(1e3, 1e4)``) and the off-mode law of the aligned reduced
    dynamics; a start still undecided after the last stage is handed to the
    frame-free limit map (``decided_by`` = 2; docs: theory/random-starts.md; a
    finite-horizon rule, not a certificate). Returns a dataset over ``start``
    (absent for one model) and ``sv``: ``outcome``, ``support``, ``limit``,
    ``exponent``, ``exponent_early``, ``kkt_residual``, ``kkt_slackness``,
    ``horizon``, ``num_steps``, ``decided_by``, ``handoff_ratio``
    (:func:`svflow._full.outcome.flow_outcome`).
    ``batch_dims``, ``group`` and ``criterion`` do not apply to it.

    **Spectral starts** (everything below):

    Each start runs in double-log time $\sigma = \log(1 + \log(1 + t))$ to
    the first of ``horizons`` (in $\tau = \log(1 + t)$) at which the
    late-phase criterion decides it (``docs/theory/certification.md``: every
    mode grows with the largest one or is frozen for good, and the support
    is a stable KKT configuration); undecided starts go on to the next
    horizon, decided ones stop there. What a start's decision depends on is
    that start alone (never the other starts of its batch), and before
    returning the fields of each decided start are checked against each other
    (:func:`consistent`); a start that fails the check is undecided.

    Args:
        classes: K >= 2 (any K; at most :data:`MAX_CLASSES` = 1024).
        depth: L >= 1 weight matrices (N = L + 1 factors).
        init: one start or a batch, exactly as for :func:`svflow.simulate`:
            balanced $\lambda(0)$ (K,), factors $s(0)$ (N, K), a
            :class:`svflow.Start`, an array with leading dims named by
            ``batch_dims``, a DataArray with a ``mode`` dim (and ``factor``
            for s(0)) whose other dims are batch dims, or a list of ``Start``.
            The batch runs together. Mode 0 is set to 0 (it never changes the
            cross-entropy); a balanced start needs $\lambda_i(0) \ge 0$ for
            $i \ge 1$ (a negative eigenvalue shrinks to 0 and never grows).
            Or a :func:`svflow.simulate` dataset (cross-entropy, no weight
            decay, same K and depth): its runs are continued from their last
            state and $\tau = \log(1 + t)$ instead of being integrated again
            from t = 0 (its batch dims and group are kept; ``num_steps``
            counts the continuation only; every horizon below that $\tau$ is
            skipped, and the first one reached is a check).
        batch_dims: name(s) of the leading batch dims of an array ``init``
            (a string or a sequence of strings).
        group: the character basis (``"walsh"``, ``"cyclic"``, a tuple of
            cyclic orders; default: a ``Start``'s own, else Walsh for K = 2^m
            and cyclic otherwise).
        horizons: increasing $\tau$ values (t = e^tau - 1), e.g. (1e2, 1e3, 1e4);
            default :data:`DEFAULT_HORIZONS`.
            A decision compares the limit runs of two horizons, so the first
            horizon of several never decides; a single horizon h is preceded by
            a check at min(30, h / 3), as in :func:`svflow.studies.basin_map`.
        solver: a :class:`svflow.Solver` for each stage (default
            :data:`OUTCOME_SOLVER`: rtol 1e-6, atol 1e-9, 100 000 steps, Tsit5,
            for both routes; for spectral starts rtol and atol at most 1e-3:
            looser states cannot certify a side of a basin edge).
        criterion: :class:`Criterion` tolerances.
        kkt: polish each decided limit into a KKT point and report its residual.
        progress: a tqdm bar over the horizons.

    Returns:
        ``xarray.Dataset`` with the batch dims (if any) and ``mode``:
        ``outcome`` (0 = NC, r = support size, -1 = undecided), ``support``
        (mode, bool; all False if undecided), ``limit`` (mode; limiting
        direction $\lambda/\max\lambda$, NaN if undecided), ``kkt_residual``,
        ``ratio`` and ``rate_ratio`` at the horizon reached, ``log_t_end``
        ($\tau$ reached), ``lam_end`` (state there), ``num_steps``,
        ``solver_result`` (0 = success); settings in attrs.

    Raises:
        ValueError, TypeError: bad arguments (with what to pass).
        IntegrationError: an exact run failed (too few max_steps for the
            horizons, tolerances the solver cannot keep, overflowing starts).
    """
    from ._full import outcome as _full_outcome  # the random-start route (imports svflow.flow)

    if _full_outcome.is_models(init):
        return _full_outcome.outcome_of_models(
            init,
            classes=classes,
            depth=depth,
            batch_dims=batch_dims,
            group=group,
            horizons=horizons,
            solver=solver,
            criterion=criterion,
            kkt=kkt,
            progress=progress,
        )
    if classes is None or depth is None:
        raise TypeError("outcome of spectral starts needs classes= and depth= (K and L) beside init=.")
    horizons = DEFAULT_HORIZONS if horizons is None else horizons
    classes = check_int("classes", classes, minimum=2)
    if classes > MAX_CLASSES:
        raise ValueError(
            f"classes = {classes}: outcome supports K <= {MAX_CLASSES} (its cost grows with K: "
            "about 86 s at K = 1024, and compiling the K x K group tables of K = 4096 did not "
            "finish); split the question or use svflow.simulate for one trajectory."
        )
    depth = check_int("depth", depth, minimum=1)
    continued = isinstance(init, xr.Dataset)
    grp = _run_group(init, classes, group) if continued else start_group(init, classes, group)
    config = check_tolerances(check_solver(solver))
    hz = check_horizon_list(horizons)
    kkt, progress = check_bool("kkt", kkt), check_bool("progress", progress)
    if batch_dims is not None and not isinstance(batch_dims, str):
        if not isinstance(batch_dims, (list, tuple)) or not all(isinstance(d, str) for d in batch_dims):
            raise TypeError(
                "batch_dims must be a dim name (str) or a sequence of dim names, one per leading "
                f"batch axis of init; got {batch_dims!r}."
            )
    criterion = Criterion() if criterion is None else criterion
    if not isinstance(criterion, Criterion):
        raise TypeError(f"criterion must be a Criterion; got {type(criterion).__name__}.")
    if continued:
        if batch_dims is not None:
            raise ValueError("batch_dims is only for plain arrays: a simulate dataset names its own dims.")
        flat, tau0, balanced, description, bd, user_coords, batch = _continue_from(init, classes, depth)
    else:
        flat, balanced, description, bd, user_coords, batch = _as_starts(
            init, classes, depth, "ce", batch_dims, grp
        )
        tau0 = 0.0
    check_growing(flat, balanced, "ce")  # simulate follows such a start; outcome has nothing to certify
    if np.any(np.asarray(tau0) >= hz[-1]):
        raise ValueError(
            f"init is a simulate run that already reached tau = log(1 + t) = {np.max(tau0):g}, at or "
            f"beyond the last horizon {hz[-1]:g}; pass later horizons."
        )
    st, wall = staged_outcome(
        flat,
        tau0,
        depth=depth,
        balanced=balanced,
        horizons=hz,
        config=config,
        criterion=criterion,
        group=grp,
        limit="kkt" if kkt else "ratio",
        progress=bool(progress),
    )
    _check_outcome_failures(st, config, classes, depth, hz)
    run = dict(classes=classes, depth=depth, balanced=balanced, init=description, horizons=hz)
    run.update(config=config, criterion=criterion, group=grp, wall_time_s=wall)
    return _outcome_dataset(st, bd, batch, user_coords, run)


def _run_group(ds: xr.Dataset, classes: int, group):
    """The group of a :func:`svflow.simulate` dataset (its ``group`` attr); ``group``, if
    given, must be the same."""
    own = resolve_group(ds.attrs.get("group"), classes)
    if group is not None and resolve_group(group, classes) != own:
        raise ValueError(
            f"group={resolve_group(group, classes).label!r} but init is a simulate run in group "
            f"{own.label!r}; pass the same group (or leave group=None)."
        )
    return own


def _continue_from(ds: xr.Dataset, classes: int, depth: int) -> tuple:
    r"""The last state and $\tau$ of a :func:`svflow.simulate` dataset, as starts of :func:`outcome`.

    Returns ``(y (B, K) or (B, N, K), tau (B,), balanced, description, batch dims,
    batch coords, batch shape)``; the run must be a reduced cross-entropy run without
    weight decay of the same K and depth.
    """
    a = ds.attrs
    if a.get("engine") != "reduced" or D.TIME not in ds.dims:
        raise TypeError(
            "init as a Dataset must be a svflow.simulate run (engine 'reduced' with a time dim); "
            f"got a dataset with attrs engine={a.get('engine')!r} and dims {dict(ds.sizes)}."
        )
    if a.get("loss_name") != "ce" or float(a.get("weight_decay", 0.0)) != 0.0:
        raise ValueError(
            "outcome continues cross-entropy runs without weight decay; init is a simulate run with "
            f"loss {a.get('loss_name')!r} and weight_decay {a.get('weight_decay')!r}."
        )
    if int(a.get("classes", -1)) != classes or int(a.get("depth", -1)) != depth:
        raise ValueError(
            f"init is a simulate run with classes={a.get('classes')}, depth={a.get('depth')}; "
            f"outcome was asked for classes={classes}, depth={depth}: pass the run's own."
        )
    balanced = "s" not in ds or bool(a.get("balanced_path", True))
    var = ds["lam"] if balanced else ds["s"]
    state_dims = (D.MODE,) if balanced else (D.FACTOR, D.MODE)
    bd = tuple(d for d in var.dims if d not in state_dims + (D.TIME,))
    last = var.isel({D.TIME: -1}).transpose(*bd, *state_dims)
    tau = ds["log_t"] if "log_t" in ds.coords else np.log1p(ds[D.TIME])
    batch = last.shape[: len(bd)]
    y = np.asarray(last.values, dtype=float).reshape((-1,) + last.shape[len(bd) :])
    if not np.all(np.isfinite(y)):
        raise ValueError("init: the simulate run's last state is not finite; nothing to continue.")
    tau_end = float(np.asarray(tau)[-1])
    coords = {d: ds.coords[d] for d in bd if d in ds.coords}
    desc = f"continued at tau = log(1 + t) = {tau_end:g} from simulate({a.get('init', '')})"
    return y, np.full(y.shape[0], tau_end), balanced, desc, bd, coords, batch


LIMITS = ("kkt", "ratio", "none")
"""What :func:`staged_outcome` reports as a decided start's limit."""


def staged_outcome(
    y,
    tau,
    *,
    depth: int,
    balanced: bool,
    horizons,
    config: Solver,
    criterion: Criterion,
    group,
    limit: str = "kkt",
    progress: bool = False,
) -> tuple[dict, float]:
    r"""The staged outcome decision of a batch of starts: the one pipeline behind
    :func:`outcome`, :func:`svflow.studies.basin_map` and its sweep cells.

    ``y``: (B, K) $\lambda$ or (B, N, K) $s$ at $	au$ = ``tau`` (a scalar or
    (B,): 0 for a start, the end of a :func:`svflow.simulate` run to continue
    it). Every start is resolved through ``horizons`` (:func:`resolve`: the
    first horizon it reaches is a check, each later one decides if the limit
    run agrees with the previous one), then the fields of every decided start
    are checked against each other (:func:`consistent`). ``limit``: ``"kkt"``
    polishes each decided limit into a KKT point (``limit``,
    ``kkt_residual``), ``"ratio"`` reports $\lambda/\max\lambda$ on the
    support, ``"none"`` adds no limit (then an undecided start keeps the
    support and frozen sets of its last limit run, as basin maps report them;
    otherwise an undecided start claims no support). Arguments are not
    checked here (the entry points check them once). Returns ``(fields,
    wall time of the exact stages in s)``: the fields of :func:`resolve` and
    ``lam_end`` (numpy).
    """
    tic = _time.perf_counter()
    st = resolve(
        y,
        tau,
        factors=depth + 1,
        balanced=balanced,
        horizons=tuple(horizons),
        config=config,
        criterion=criterion,
        group=group,
        progress=progress,
    )
    wall = _time.perf_counter() - tic
    st["lam_end"] = st["y"] if balanced else np.prod(st["y"], axis=-2)
    if limit == "none":
        _undecide(st, ~consistent(st, criterion))
        return st, wall
    if limit == "kkt":
        st["limit"], st["kkt_residual"] = _limits(
            st["limit_state"], st["support"], st["decided"], depth, group
        )
    else:
        st["limit"] = np.where(st["decided"][:, None], np.where(st["support"], st["ratio"], 0.0), np.nan)
        st["kkt_residual"] = np.full(st["code"].shape[0], np.nan)
    # an undecided start claims no support (its last limit run is in rate_ratio)
    _undecide(st, ~consistent(st, criterion) | ~st["decided"])
    return st, wall


LIMIT_FLOOR = 1e-3
"""Entries of a decided ``limit`` (largest 1) must be above this on the support and
below it off the support (:func:`consistent`)."""


def consistent(st: dict, criterion: Criterion) -> np.ndarray:
    r"""Do the fields of each decided start agree with each other? (B,) bool.

    Checked: the support is not empty and holds the largest mode of the limit
    state; the code is NC exactly when the support is every mode $i \ge 1$ and
    the support size otherwise; $|\rho_i - 1| \le$ ``support_tol`` on the
    support and $\rho_i \le$ ``frozen_rate`` off it; ``limit`` is finite,
    above :data:`LIMIT_FLOOR` on the support and below it off it. Undecided
    starts pass (they claim nothing).
    """
    sup = np.asarray(st["support"], bool)
    B, K = sup.shape
    modes = np.arange(K) > 0
    r = sup.sum(-1)
    code = np.where(r == K - 1, NC, r)
    rho = np.nan_to_num(np.asarray(st["rate_ratio"], float), nan=-np.inf)
    # without a polished limit (basin maps) the limit state's ratios stand in for it
    lim = np.where(sup, 1.0, 0.0) if "limit" not in st else st["limit"]
    lim = np.nan_to_num(np.asarray(lim, float), nan=-np.inf)
    top = np.argmax(np.nan_to_num(np.asarray(st["limit_state"], float), nan=-np.inf), axis=-1)
    ok = (
        (r >= 1)
        & sup[np.arange(B), top]
        & ~sup[:, 0]
        & (st["code"] == code)
        & np.all(~sup | (np.abs(rho - 1.0) <= criterion.support_tol), axis=-1)
        & np.all(~modes | sup | (rho <= criterion.frozen_rate), axis=-1)
        & np.all(np.isfinite(lim), axis=-1)
        & np.all(~sup | (lim > LIMIT_FLOOR), axis=-1)
        & np.all(sup | (np.abs(lim) <= LIMIT_FLOOR), axis=-1)
    )
    return ok | ~np.asarray(st["decided"], bool)


def _undecide(st: dict, bad: np.ndarray) -> None:
    """Mark the starts ``bad`` undecided, in place: code -1, empty support, no limit."""
    st["decided"] = st["decided"] & ~bad
    st["code"] = np.where(bad, UNDECIDED, st["code"]).astype(np.int32)
    st["support"] = st["support"] & ~bad[:, None]
    st["frozen"] = st["frozen"] & ~bad[:, None]
    if "limit" in st:
        st["limit"] = np.where(bad[:, None], np.nan, st["limit"])
        st["kkt_residual"] = np.where(bad, np.nan, st["kkt_residual"])


def _outcome_dataset(st: dict, bd: tuple, batch: tuple, user_coords: dict, run: dict) -> xr.Dataset:
    """The dataset of :func:`outcome`: per-start results ``st`` reshaped to the batch dims ``bd``."""
    grp, config = run["group"], run["config"]
    attrs = {
        "title": "svflow t -> infinity outcomes",
        "classes": int(run["classes"]),
        "depth": int(run["depth"]),
        "factors": int(run["depth"] + 1),
        "loss_name": "ce",
        "weight_decay": 0.0,
        "init_kind": "lam" if run["balanced"] else "s",
        "init": run["init"],
        "group": grp.label,
        "horizons_tau": [float(h) for h in run["horizons"]],
        "time_variable": "sigma = log(1 + tau), tau = log(1 + t)",
        **config.as_attrs(),
        **run["criterion"].as_attrs(),
        "wall_time_s": run["wall_time_s"],
        "conventions": "depth L = number of weight matrices, N = L + 1 factors; "
        "t = steps x step size; mean-reduced loss; lambda_i = prod_l s_{l,i}",
    }
    md = bd + (D.MODE,)

    def var(dims, key, **attrs):  # long_name and units from the vocabulary (svflow._dims)
        return (dims, st[key].reshape(batch + st[key].shape[1:]), attrs)

    codes = "0 = NC (support = all K - 1 modes), r = size of the limit's support, -1 = undecided"
    variables = {
        "outcome": var(bd, "code", description=codes),
        "support": var(md, "support"),
        "limit": var(md, "limit"),
        "kkt_residual": var(bd, "kkt_residual"),
        "ratio": var(md, "ratio", long_name="|lambda_i| / max |lambda| at the horizon reached"),
        "rate_ratio": var(md, "rate_ratio"),
        "log_t_end": var(bd, "tau"),
        "lam_end": var(md, "lam_end"),
        "num_steps": var(bd, "num_steps", long_name="solver steps (all stages)"),
        "solver_result": var(bd, "solver_result"),
    }
    coords = {d: (c.dims, c.values, c.attrs) for d, c in user_coords.items()}
    return grid_dataset({**coords, **grp.mode_coords()}, variables, attrs)
