r"""Certified $t \to \infty$ outcomes of spectral starts under cross-entropy.

Setting: the reduced flow of a Walsh-Hadamard start (K = 2^m classes, depth L
weight matrices, N = L + 1 factors, mean cross-entropy, n = 1, no weight
decay, gradient-flow time t = steps x step size). The logits
$\lambda_i = \prod_l s_{l,i}$ grow without bound and their direction
converges to a KKT point of the max-margin problem (Lyu & Li 2020), but only
at a rate set by powers of $\log t$: a ratio $\lambda_i/\max\lambda$ read at
t = 1e8 is not the outcome. This module integrates in double-log time
$\sigma = \log(1 + \tau)$, $\tau = \log(1 + t)$ (right-hand side in the log
domain, :mod:`svflow._logtime`, so t never materialises) and decides the
outcome from the **late-phase rates**, which can be evaluated exactly at any
state.

**Late-phase rates.** Once the softmax saturates, $(1+t)(1-\mu_i) = 2\sum_c
O_{ic}\,\nu_c$ with $O_{ic} = [H_{ic} < 0]$ and $\nu_c \approx e^{\tau - m_c}$
($m_c$ the margins), and the balanced law gives the growth exponent of each
mode in double-log time,

$$p_i = \frac{d\log\lambda_i}{d\sigma} = (1+\tau)\,\frac{N}{K}\,
   \lambda_i^{1-2/N}\,w_i, \qquad w_i = (1+t)(1-\mu_i) .$$

Let $i^\star$ be the largest mode and $\rho_i = p_i/p_{i^\star}$. The ratio
$q_i = \lambda_i/\lambda_{i^\star}$ obeys $d\log q_i/d\sigma = p_{i^\star}
(\rho_i - 1)$: it rises iff $\rho_i > 1$.

**Support modes.** Modes with $\rho_i = 1$ grow at a common rate. This is
exactly KKT stationarity of $\min\sum_i\lambda_i^{2/N}$ s.t. $m_k \ge 1$ on
the support, with multipliers proportional to $\nu$:
$\lambda_i^{2/N-1} \propto \sum_k O_{ki}\nu_k$ $\Leftrightarrow$
$\lambda_i^{1-2/N}w_i$ equal across the support (complementary slackness
holds to $O(e^{-\Delta m})$, since $\nu_k$ of a margin $\Delta m \sim \tau$
above the smallest is exponentially small).

**Frozen modes.** For a mode off the support, $\rho_i \propto
q_i^{1-2/N}\,(w_i/w_{i^\star})$. If the weights $\nu$ do not change (the support
direction has converged), $\rho_i < 1$ makes $q_i$ fall, which lowers $\rho_i$
further (N > 2): the mode is frozen for good; its ratio falls like
$e^{-(1-\rho)\sigma}$, i.e. like $1/\tau$ once $\rho_i \to 0$, and its
limit ratio is 0. To cross back it would need $w_i/w_{i^\star}$ to grow by the
factor $1/\rho_i$. The weights still move only through (a) the support modes'
residual drift, bounded by the support tolerance, and (b) the shrinking
contribution of frozen modes to the margins. So a mode counts as frozen when
$\rho_i \le \rho_\mathrm{frozen}$ (default 0.8, i.e. a 25 % safety factor
on $w_i/w_{i^\star}$, four times the support tolerance 0.05).
Example, K = 4 with $\lambda_1 = \lambda_2 = a$ leading and $\lambda_3 = qa$:
$\nu_3$ is negligible, $\nu_1 = \nu_2$, and $\rho_3 = 2q^{1-2/N}$ exactly, so
the late separatrix is $q^\star = 2^{-N/(N-2)}$ (above: NC; below: the
square code, rank 2).

**Stability.** A common growth rate is not enough: the K = 4 separatrix
point $(1, 1, q^\star)$ is itself a KKT point (a saddle). The support's
configuration must also be stable under the late flow: with $u = \log\lambda$
and the ratio field $F_i = p_i - p_{i^\star}$ ($i$ in the support, $i \ne
i^\star$), every eigenvalue of $\partial F/\partial u$ must have real part
$\le$ ``stability_tol`` $\cdot\,p_{i^\star}$. (At the K = 4 saddle the
unstable eigenvalue is $(1 - 2/N)\,p_{i^\star}$; margin-equalising directions
are strongly stable, with eigenvalues of order $-\tau$.)

**Decision.** At a horizon $\tau$ the start is *decided* when the state is
finite, separates every class, is in the late phase (off-target softmax mass
$1 - g(0) \le$ ``late_mass``), every mode $i \ge 1$ is either a support mode
($|\rho_i - 1| \le$ ``support_tol``) or frozen ($\rho_i \le$
``frozen_rate``), the support is stable, and the same support and frozen
sets were found at the previous horizon (a factor >= 3 earlier in $\tau$:
this persistence check catches modes that still pass through the support
band on their way down, as the weights $\nu$ settle). Then the outcome is the support
size r (0 = NC when r = K - 1, all modes carry the norm); otherwise the run is
continued to the next horizon, and after the last it is undecided (-1).
The decision does not depend on a threshold on the ratios themselves: a
support mode may have a small limit ratio (K = 8 limits such as
(1, .5, .5, .5, 0, 0, 0) have support 4).

**Limit.** The limiting direction is the KKT point of the max-margin problem
restricted to the decided support, polished from the final state by
:func:`svflow._analysis.asymptotics.kkt_point`; ``kkt_residual`` is its relative
stationarity residual.

**Cost.** In double-log time the slow (ratio) dynamics are smooth, but the
active margins stay locked together by a fast relaxation whose rate grows like
$\tau$, so an explicit solver needs about $\tau$ steps per unit of $\tau$
late on (roughly 150 steps to $\tau = 100$, 4000 to $10^4$; diffrax's implicit
Kvaerno solvers were slower still). Hence the staged horizons: every start
runs to the first, only the undecided ones go further.

**Unbalanced starts** ($s(0)$ given): the factor flow is integrated; the
differences $s_{l,i}^2 - s_{l',i}^2$ are conserved while $s$ diverges on the
support, so the late phase is balanced and the rates above, evaluated at
$\lambda = \prod_l s_l$, apply.
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

from .. import _dims as D
from .._checks import check_choice, check_float, check_fraction, check_int
from .._dataset import grid_dataset
from .._groups import _group_of, group_margins
from .._integrate import SolverConfig, solve
from .._logtime import CETauField, scaled_one_minus_mu
from .._precision import float64
from .._simulate import _as_starts
from .._start import start_group

__all__ = [
    "NC",
    "UNDECIDED",
    "DEFAULT_HORIZONS",
    "Criterion",
    "late_rates",
    "decide",
    "advance",
    "resolve",
    "outcome",
]

NC = 0
"""Outcome code of neural collapse (the limit's support is all K - 1 modes)."""
UNDECIDED = -1
"""Outcome code of a start not decided by the last horizon."""

DEFAULT_HORIZONS = (30.0, 1e2, 300.0, 1e3, 3e3, 1e4)
r"""Horizons in $\tau = \log(1 + t)$ at which undecided starts are tested
(t = e^30, ..., e^10000); each is reached only by the starts still undecided."""


@dataclass(frozen=True)
class Criterion:
    r"""Tolerances of the decision (module docstring).

    Attributes:
        support_tol: $|\rho_i - 1|$ below which mode i grows with the largest one.
        frozen_rate: $\rho_i$ at or below which mode i is frozen (< 1 - support_tol).
        stability_tol: largest allowed real part of the support's ratio-flow
            eigenvalues, in units of $p_{i^\star}$.
        late_mass: largest off-target softmax mass $1 - g(0)$ of a late state.
    """

    support_tol: float = 0.05
    frozen_rate: float = 0.8
    stability_tol: float = 0.05
    late_mass: float = 1e-4

    def __post_init__(self):
        check_fraction("support_tol", self.support_tol)
        check_fraction("frozen_rate", self.frozen_rate)
        if self.frozen_rate >= 1 - self.support_tol:
            raise ValueError(
                f"frozen_rate must be < 1 - support_tol = {1 - self.support_tol}; got {self.frozen_rate}."
            )
        check_float("stability_tol", self.stability_tol, minimum=0.0)
        check_fraction("late_mass", self.late_mass)

    def as_attrs(self) -> dict:
        return {
            "criterion_support_tol": float(self.support_tol),
            "criterion_frozen_rate": float(self.frozen_rate),
            "criterion_stability_tol": float(self.stability_tol),
            "criterion_late_mass": float(self.late_mass),
        }


def late_rates(lam, tau, factors: int, group=None):
    r"""$p_i = d\log\lambda_i/d\sigma = (1+\tau)(N/K)\,(1+t)(1-\mu_i)\,|\lambda_i|^{1-2/N}$.

    Balanced law, in double-log time; evaluated in the log domain (any tau).
    Entry 0 is 0. Pure and vmappable.
    """
    lam = jnp.asarray(lam)
    K = lam.shape[-1]
    r = scaled_one_minus_mu(lam, tau, group)
    return (1.0 + tau) * (factors / K) * r * jnp.abs(lam) ** (1.0 - 2.0 / factors)


def _host_largest_real_eigenvalue(m: np.ndarray, dtype: np.dtype) -> np.ndarray:
    return np.max(np.linalg.eigvals(np.asarray(m, dtype=np.float64)).real, axis=-1).astype(dtype)


def _largest_real_eigenvalue(m):
    """Largest real part of the eigenvalues of a small square (non-symmetric) matrix.

    XLA has a non-symmetric eigensolver on CPU only: on a CPU backend this is
    ``jnp.linalg.eigvals``; on an accelerator the small matrix goes to the host
    (``jax.pure_callback`` with numpy). Vmappable.
    """
    if jax.default_backend() == "cpu":
        return jnp.max(jnp.real(jnp.linalg.eigvals(m)), axis=-1)
    return jax.pure_callback(
        partial(_host_largest_real_eigenvalue, dtype=np.dtype(m.dtype)),
        jax.ShapeDtypeStruct(m.shape[:-2], m.dtype),
        m,
        vmap_method="expand_dims",
    )


def decide(lam, tau, factors: int, criterion: Criterion = Criterion(), group=None) -> dict:
    r"""Decide the outcome of the late state ``lam`` (K,) at $\tau$ (module docstring).

    Returns a dict of arrays: ``code`` (0 NC, r support size, -1 undecided),
    ``decided``, ``support`` (K,) bool, ``frozen`` (K,) bool, ``rate_ratio``
    $\rho$ (K,), ``ratio`` $|\lambda_i|/\max|\lambda|$ (K,), ``instability``
    (largest real eigenvalue of the support's ratio flow / $p_{i^\star}$),
    ``late`` (bool), ``off_target_mass``. Pure and vmappable.
    """
    lam = jnp.asarray(lam)
    K = lam.shape[-1]
    modes = jnp.arange(K) > 0
    mag = jnp.where(modes, jnp.abs(lam), 0.0)
    finite = jnp.all(jnp.isfinite(lam))
    mag = jnp.where(jnp.isfinite(mag), mag, 0.0)
    ref = jnp.argmax(mag)
    top = mag[ref]
    p = late_rates(mag, tau, factors, group)
    pref = p[ref]
    safe = jnp.where(pref > 0, pref, 1.0)
    rho = jnp.where(modes, p / safe, 0.0)
    support = modes & (jnp.abs(rho - 1.0) <= criterion.support_tol)
    frozen = modes & (rho <= criterion.frozen_rate)
    moving = modes & ~support & ~frozen

    # stability of the support's ratio flow, in u = log(lambda). Over a group with
    # conjugate pairs the two modes of a pair carry one eigenvalue (the flow keeps
    # them equal), so perturbations tie them: each pair is one variable, held by
    # its first mode.
    g = _group_of(group, K)
    rep = np.minimum(np.arange(K), np.asarray(g.partner))
    u = jnp.log(jnp.where(mag > 0, mag, 1.0))
    jac = jax.jacfwd(lambda v: late_rates(jnp.where(modes, jnp.exp(v[rep]), 0.0), tau, factors, group))(u)
    jf = jac - jac[ref][None, :]
    inner = support & (jnp.arange(K) != ref) & jnp.asarray(rep == np.arange(K))
    jf = jnp.where(inner[:, None] & inner[None, :], jf, 0.0)
    instability = _largest_real_eigenvalue(jf) / safe
    stable = instability <= criterion.stability_tol

    m = group_margins(mag, g)
    neg = jnp.where(modes, -m, -jnp.inf)
    lse = jnp.logaddexp(0.0, logsumexp(neg))
    mass = -jnp.expm1(-lse)
    late = (mass <= criterion.late_mass) & (jnp.min(jnp.where(modes, m, jnp.inf)) > 0)

    decided = finite & (top > 0) & (pref > 0) & late & ~jnp.any(moving) & stable
    r = jnp.sum(support)
    code = jnp.where(decided, jnp.where(r == K - 1, NC, r), UNDECIDED)
    return dict(
        code=code.astype(jnp.int32),
        decided=decided,
        support=support,
        frozen=frozen,
        rate_ratio=rho,
        ratio=mag / jnp.where(top > 0, top, 1.0),
        instability=instability,
        late=late,
        off_target_mass=mass,
    )


def advance(y, tau0, tau1, *, factors: int, balanced: bool, config: SolverConfig, group=None):
    r"""Integrate one start from $\tau_0$ to $\tau_1$ in double-log time.

    ``y`` is $\lambda$ (K,) (``balanced``) or $s$ (N, K). Returns
    ``(y(tau1), diffrax result code, number of steps)``. Pure and vmappable
    over ``(y, tau0, tau1)``.
    """
    field = CETauField(factors, balanced, group)
    ys, result, steps = solve(
        field,
        y,
        jnp.reshape(tau1, (1,)),
        None,
        config,
        clock="loglog",
        grid="tau",
        start=tau0,
    )
    return ys[0], result._value, steps


def _lam_of(y, balanced: bool):
    return y if balanced else jnp.prod(y, axis=-2)


@partial(jax.jit, static_argnames=("factors", "balanced", "criterion", "group"))
def _decide_batch(y, res, tau1, *, factors, balanced, criterion, group=None):
    """vmapped :func:`decide` of a batch of states at ``tau1`` (failed solves undecided)."""

    def one(y, r):
        lam = _lam_of(y, balanced).at[0].set(0.0)
        d = decide(lam, tau1, factors, criterion, group)
        d["code"] = jnp.where(r == 0, d["code"], UNDECIDED)
        d["decided"] = d["decided"] & (r == 0)
        return d

    return jax.vmap(one)(y, res)


def advance_batch(y, tau0, tau1: float, *, factors: int, balanced: bool, config: SolverConfig, group=None):
    r"""Integrate a batch of states from their $\tau_0$ (B,) to ``tau1`` in double-log time.

    Runs through svflow's batch engine (:func:`svflow._batch.solve_many`, the
    refill loop behind :func:`svflow.simulate`): starts sharing a $\tau_0$ go
    together, finished lanes take the next start. Returns numpy
    ``(y(tau1), diffrax result code, steps)``, each of leading size B.
    """
    from .._batch import _DoubleLogField, solve_many

    y = np.asarray(y, dtype=float)
    tau0 = np.broadcast_to(np.asarray(tau0, dtype=float), (y.shape[0],))
    y1 = np.empty_like(y)
    res = np.zeros(y.shape[0], np.int64)
    steps = np.zeros(y.shape[0], np.int64)
    field = _DoubleLogField(CETauField(factors, balanced, group))
    for t0 in np.unique(tau0):
        sel = np.flatnonzero(tau0 == t0)
        sol = solve_many(
            field,
            y[sel],
            np.log1p([float(t0), float(tau1)]),
            solver=config.solver,
            rtol=config.rtol,
            atol=config.atol,
            max_steps=config.max_steps,
        )
        y1[sel] = sol.ys[:, -1]
        res[sel] = sol.result
        steps[sel] = sol.num_steps
    return y1, res, steps


def _stage(y, tau0, tau1, *, factors, balanced, config, criterion, group=None):
    """:func:`advance_batch` then :func:`decide` on every member (numpy in, numpy out)."""
    y1, res, steps = advance_batch(
        y, tau0, float(tau1), factors=factors, balanced=balanced, config=config, group=group
    )
    n = _bucket(y1.shape[0])
    pad = np.concatenate([np.arange(y1.shape[0]), np.zeros(n - y1.shape[0], int)])
    d = _decide_batch(
        jnp.asarray(y1[pad]),
        jnp.asarray(res[pad]),
        jnp.asarray(float(tau1)),
        factors=factors,
        balanced=balanced,
        criterion=criterion,
        group=group,
    )
    k = y1.shape[0]
    return y1, res, steps, {f: np.asarray(v)[:k] for f, v in d.items()}


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
    "instability",
    "late",
    "off_target_mass",
)


def resolve(
    y,
    tau,
    state: dict | None = None,
    *,
    factors: int,
    balanced: bool = True,
    horizons=DEFAULT_HORIZONS,
    config: SolverConfig = SolverConfig(rtol=1e-6, atol=1e-9, max_steps=100_000),
    criterion: Criterion = Criterion(),
    group=None,
) -> dict:
    r"""Continue a batch of starts through ``horizons`` until each is decided.

    ``y``: (B, K) $\lambda$ or (B, N, K) $s$ at times ``tau`` (B,). ``state``:
    an earlier result of this function (or of a first stage with the same
    keys) whose decided members are kept as they are. At each horizon only the
    still-undecided members that have not failed run, as one vmapped batch
    (padded to a power of two). Returns numpy arrays: ``y``, ``tau`` (horizon
    reached), ``solver_result`` (0 = success), ``num_steps`` (summed over
    stages) and the fields of :func:`decide`.
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
            "instability": np.full(B, np.nan),
            "late": np.zeros(B, bool),
            "off_target_mass": np.full(B, np.nan),
            "solver_result": np.zeros(B, np.int64),
            "num_steps": np.zeros(B, np.int64),
        }
    else:
        st = {k: np.array(v) for k, v in state.items() if k not in ("y", "tau")}
    for h in horizons:
        todo = np.flatnonzero(~st["decided"] & (st["solver_result"] == 0) & (tau < h))
        if todo.size == 0:
            continue
        y1, res, steps, d = _stage(
            y[todo],
            tau[todo],
            float(h),
            factors=factors,
            balanced=balanced,
            config=config,
            criterion=criterion,
            group=group,
        )
        k = todo.size
        had = ~np.isnan(st["rate_ratio"][todo, 0])
        same = np.all(d["support"] == st["support"][todo], axis=-1) & np.all(
            d["frozen"] == st["frozen"][todo], axis=-1
        )
        d["decided"] = d["decided"] & had & same
        d["code"] = np.where(d["decided"], d["code"], UNDECIDED).astype(np.int32)
        y[todo] = np.asarray(y1)[:k]
        tau[todo] = h
        st["solver_result"][todo] = np.asarray(res)[:k]
        st["num_steps"][todo] += np.asarray(steps)[:k]
        for f in _FIELDS:
            st[f][todo] = d[f]
    return {"y": y, "tau": tau, **st}


def _limits(lam_end: np.ndarray, support: np.ndarray, decided: np.ndarray, depth: int, group):
    """KKT polish of every decided limit: (limit (B, K), kkt_residual (B,)).

    Walsh group: :func:`svflow.kkt_point` on the decided support; other groups:
    :func:`svflow.max_margin_direction` over tied pairs from the late state."""
    from .asymptotics import kkt_point, max_margin_direction

    B, K = lam_end.shape
    limit = np.full((B, K), np.nan)
    res = np.full(B, np.nan)
    for b in np.flatnonzero(decided):
        if group.name == "walsh":
            pt = kkt_point(lam_end[b], depth, support=support[b])
        else:
            pt = max_margin_direction(lam_end[b], depth, group=group)
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


@float64
def outcome(
    classes: int,
    depth: int,
    *,
    init,
    batch_dims=None,
    group=None,
    horizons=DEFAULT_HORIZONS,
    rtol: float = 1e-6,
    atol: float = 1e-9,
    max_steps: int = 100_000,
    solver: str = "tsit5",
    criterion: Criterion | None = None,
    kkt: bool = True,
) -> xr.Dataset:
    r"""The $t \to \infty$ outcome of spectral starts (cross-entropy, no weight decay).

    Each start runs in double-log time $\sigma = \log(1 + \log(1 + t))$ to
    the first of ``horizons`` (in $\tau = \log(1 + t)$) at which the
    late-phase criterion of this module decides it (module docstring: every
    mode grows with the largest one or is frozen for good, and the support
    is a stable KKT configuration); undecided starts go on to the next
    horizon, decided ones stop there.

    Args:
        classes: K = 2^m.
        depth: L >= 1 weight matrices (N = L + 1 factors).
        init: one start or a batch, exactly as for :func:`svflow.simulate`:
            balanced $\lambda(0)$ (K,), factors $s(0)$ (N, K), a
            :class:`svflow.Start`, an array with leading dims named by
            ``batch_dims``, a DataArray with a ``mode`` dim (and ``factor``
            for s(0)) whose other dims are batch dims, or a list of ``Start``.
            The batch runs together. Mode 0 is set to 0 (it never changes the
            cross-entropy).
        batch_dims: names of the leading batch dims of an array ``init``.
        group: the character basis (``"walsh"``, ``"cyclic"``, a tuple of
            cyclic orders; default: a ``Start``'s own, else Walsh for K = 2^m
            and cyclic otherwise).
        horizons: increasing $\tau$ values (t = e^tau - 1), e.g. (1e2, 1e3, 1e4, 1e5).
        rtol, atol, max_steps, solver: diffrax settings of each stage.
        criterion: :class:`Criterion` tolerances.
        kkt: polish each decided limit into a KKT point and report its residual.

    Returns:
        ``xarray.Dataset`` with the batch dims (if any) and ``mode``:
        ``outcome`` (0 = NC, r = support size, -1 = undecided), ``support``
        (mode, bool), ``limit`` (mode; limiting direction $\lambda/\max\lambda$,
        NaN if undecided), ``kkt_residual``, ``ratio`` and ``rate_ratio`` at
        the horizon reached, ``instability``, ``log_t_end`` ($\tau$ reached),
        ``lam_end`` (state there), ``num_steps``, ``solver_result`` (0 =
        success); settings in attrs.
    """
    grp = start_group(init, classes, group)
    depth = check_int("depth", depth, minimum=1)
    check_choice("solver", solver, ("tsit5", "dopri5", "dopri8", "kvaerno5"))
    rtol = check_float("rtol", rtol, minimum=0.0, strict_min=True)
    atol = check_float("atol", atol, minimum=0.0, strict_min=True)
    max_steps = check_int("max_steps", max_steps, minimum=1)
    hz = check_horizons(horizons)
    criterion = Criterion() if criterion is None else criterion
    if not isinstance(criterion, Criterion):
        raise TypeError(f"criterion must be a Criterion; got {type(criterion).__name__}.")
    flat, balanced, description, bd, user_coords, batch = _as_starts(
        init, classes, depth, "ce", batch_dims, grp
    )
    config = SolverConfig(solver=solver, rtol=rtol, atol=atol, max_steps=max_steps)
    st, wall = _run_outcome(flat, depth, balanced, hz, config, criterion, grp, kkt)
    run = dict(classes=classes, depth=depth, balanced=balanced, init=description, horizons=hz)
    run.update(config=config, criterion=criterion, group=grp, wall_time_s=wall)
    return _outcome_dataset(st, bd, batch, user_coords, run)


def _run_outcome(
    flat, depth: int, balanced: bool, hz, config, criterion, grp, kkt: bool
) -> tuple[dict, float]:
    """Resolve every start through the horizons; add ``lam_end``, ``limit`` and ``kkt_residual``."""
    tic = _time.perf_counter()
    st = resolve(
        flat,
        0.0,
        factors=depth + 1,
        balanced=balanced,
        horizons=tuple(hz),
        config=config,
        criterion=criterion,
        group=grp,
    )
    wall = _time.perf_counter() - tic
    st["lam_end"] = st["y"] if balanced else np.prod(st["y"], axis=-2)
    if kkt:
        st["limit"], st["kkt_residual"] = _limits(st["lam_end"], st["support"], st["decided"], depth, grp)
    else:
        st["limit"] = np.where(st["decided"][:, None], np.where(st["support"], st["ratio"], 0.0), np.nan)
        st["kkt_residual"] = np.full(flat.shape[0], np.nan)
    return st, wall


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

    def var(dims, key, long_name, **extra):
        return (dims, st[key].reshape(batch + st[key].shape[1:]), {"long_name": long_name, **extra})

    codes = "0 = NC (support = all K - 1 modes), r = size of the limit's support, -1 = undecided"
    variables = {
        "outcome": var(bd, "code", "t -> infinity outcome", description=codes),
        "support": var(md, "support", "mode in the limit's support"),
        "limit": var(md, "limit", "limiting direction lambda / max lambda (KKT point on the support)"),
        "kkt_residual": var(bd, "kkt_residual", "relative KKT stationarity residual of the limit"),
        "ratio": var(md, "ratio", "|lambda_i| / max |lambda| at the horizon reached"),
        "rate_ratio": var(
            md, "rate_ratio", "rho_i = (d log lambda_i / d sigma) / (that of the largest mode)"
        ),
        "instability": var(bd, "instability", "largest real eigenvalue of the support's ratio flow / rate"),
        "log_t_end": var(bd, "tau", "horizon reached, tau = log(1 + t)"),
        "lam_end": var(md, "lam_end", "lambda at the horizon reached"),
        "num_steps": var(bd, "num_steps", "solver steps (all stages)"),
        "solver_result": var(bd, "solver_result", "diffrax result code (0 = success)"),
    }
    coords = {d: (c.dims, c.values, c.attrs) for d, c in user_coords.items()}
    return grid_dataset({**coords, **grp.mode_coords()}, variables, attrs)
