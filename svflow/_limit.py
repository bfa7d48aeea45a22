r"""The limit flow: the late cross-entropy dynamics at $t = \infty$, as an autonomous ODE.

Setting: the reduced flow of a spectral start (K classes, character basis of
a finite abelian group, depth L, N = L + 1 factors, mean cross-entropy, no
weight decay). With $\tau = \log(1+t)$ the balanced law is (svflow._fields)

$$\frac{d\lambda_j}{d\tau} = \frac NK\,|\lambda_j|^{a}\sum_{x\ne0} e_x\,C_{xj},
\qquad e_x = e^{\tau - m_x - \ell},\qquad a = 2 - \frac2N,$$

with $C_{xj} = 1 - \cos\theta_{k_j}(x)$, margins $m = C\lambda/K$ and $\ell =
\log(1 + \sum_x e^{-m_x})$. Late on the margins grow like $\tau$. Write
$\lambda = \tau u$ and $s = \log\tau$ (double-log time): then

$$\frac{du}{ds} = \frac NK\,|u|^{a}\odot C^\top\tilde e - u,\qquad
  \tilde e_x = \tau^{a}e_x = \exp\big(a\log\tau + \tau(1 - m_x(u)) - \ell\big).$$

As $\tau \to \infty$ the weights $\tilde e$ stay of order one only on the
classes whose normalised margin $m_x(u)$ is the smallest (= 1, the
*active* classes), and there they are set by the margins moving together:
$dm/ds = G\tilde e - m$ with $G = \frac{N}{K^2}\,C\,\mathrm{diag}(|u|^a)\,C^\top$.
A class whose margin would rise above the others drops out ($\tilde e_x \to
0$ exponentially in $\tau$), one whose margin would fall below gains weight.
In the limit this is the linear complementarity problem

$$\tilde e \ge 0,\quad (G\tilde e)_x \ge 1,\quad \tilde e_x\big((G\tilde e)_x - 1\big) = 0
  \quad (x \text{ active}),\qquad \tilde e_x = 0 \quad (x \text{ inactive}),$$

i.e. $\tilde e = \arg\min_{e \ge 0}\ \tfrac12 e^\top G e - \mathbf 1^\top e$ on
the active classes (:func:`qp_nonneg`). The **limit flow** is

$$\frac{du}{ds} = F(u) - u,\qquad F(u) = \frac NK\,|u|^{a}\odot C^\top\tilde e(u),$$

an autonomous ODE on $\{u : \min_x m_x(u) = 1\}$: $F$ is homogeneous of degree 0
in $u$, so the direction dynamics no longer depends on $\tau$. The exact flow
written in $u$ is this flow plus terms of relative order $\log\tau/\tau$, and
it is stiff (the margins lock together at a rate $\propto \tau$ in $s$); the
limit flow is not, so an explicit solver follows it to $s = \infty$ at a cost
that does not grow with $\tau$.

**Fixed points are the KKT points.** $F(u) = u$ says $u_j^{2/N-1} \propto
(C^\top\tilde e)_j$ on the support with multipliers $\tilde e \ge 0$ on the
active margins: stationarity of $\min\sum_j\lambda_j^{2/N}$ s.t. $m_x \ge 1$.
Off the support a mode decays: $du_j/ds \approx -u_j$ for $N > 2$ (its ratio
falls like $1/\tau$).

**Rates.** $\rho_j = d\log\lambda_j/d\sigma$ over that of the largest mode
$= 1 + (du_j/ds)/u_j$ at a fixed point: 1 on the support, 0 for frozen modes
($N > 2$), $N\,u_j^{1-2/N}(C^\top\tilde e)_j/K < 1$ for N = 2.

**Hand-off.** A late exact state $\lambda$ at horizon $\tau_h$ enters the
limit flow as $u = \lambda / \min_x m_x(\lambda)$ (smallest margin 1); the
other margins are within $O(\log\tau_h/\tau_h)$ and relax onto the active set
along the limit flow.

**Active set.** Classes with $m_x(u) \le 1 + \delta$ ($\delta = 10^{-9}$) are
active; on them $dm_x/ds = 1 - m_x$, so active margins stay at 1 and a margin
arriving from above joins when it reaches $1 + \delta$.

**The limit map** (what the outcome runs iterate, :func:`relax`). Every
right-hand side of the flow solves the complementarity problem, and an
adaptive Runge-Kutta solver spends six of them per step and many steps at
the kinks where the active set changes. The runs therefore take
implicit-explicit Euler steps of size $h$ in $s$ (Moreau's time stepping for
complementarity systems): explicit in the drive, implicit in the margin
constraint,

$$u' = (1-h)\,u + h\,\frac NK |u|^a \odot C^\top\hat e,\qquad
  \hat e \ge 0,\quad m(u') = (1-h)\,m(u) + hG\hat e \ge 1,\quad
  \hat e_x\,(m_x(u') - 1) = 0 \ \text{for every class } x,$$

so no active-set threshold is needed (a class whose margin stays above 1
gets no weight), and as $h \to 0$ this is the flow. svflow uses $h = 1$
(:func:`limit_step`): $u' = \frac NK|u|^a \odot C^\top\hat e$ with $\hat e =
\arg\min_{e \ge 0} \tfrac12 e^\top G e - \mathbf 1^\top e$ over all classes, the
fixed-point iteration of the KKT map, one complementarity problem per step.
Its fixed points are exactly the flow's ($u = F(u) \iff m(u) = G\hat e \ge 1$,
complementary to $\hat e \ge 0$: the KKT conditions); a flow eigenvalue $\mu$
at a fixed point becomes the multiplier $1 + \mu$, so a saddle stays a saddle
(left within :data:`LIMIT_STEPS` steps from a $10^{-3}$ perturbation when
$\mu \ge 1/3$), a frozen mode shrinks like $u_j' \propto u_j^{a}$ (for N = 2
by the factor $\rho_j < 1$) and, on the
K = 4 line $u = (0, 1, 1, q)$, the map is monotone in $q$ with the same
separatrix $q^\star$. Checked against the flow integrated at rtol 1e-10
(same end points to 1e-6, tests/test_limit_flow.py) and on 3000 random
K = 8 starts (benchmarks/RESULTS.md, section 7).
"""

from __future__ import annotations

import equinox as eqx
import jax
import jax.numpy as jnp
import jax.scipy.linalg
import numpy as np
from jaxtyping import Array, Bool, Float

from ._groups import Group, resolve_group

__all__ = [
    "ACTIVE_TOL",
    "LIMIT_STEPS",
    "QP_ADD_TOL",
    "QP_KKT_TOL",
    "qp_nonneg",
    "LimitField",
    "one_minus_cos",
    "handoff",
    "limit_rates",
    "limit_step",
    "relax",
]

ACTIVE_TOL = 1e-9
r"""$\delta$: classes with normalised margin $m_x(u) \le 1 + \delta$ are active."""

LIMIT_STEPS = 24
r"""Steps of the limit map in one run (:func:`relax`): a factor $e^{24}$ in $\tau$. A
saddle with flow eigenvalue $\mu$ multiplies a deviation by $1 + \mu$ per step, so
a tie-breaking perturbation of $10^{-3}$ (``Criterion.tie_break``) grows to O(1)
within the run for $\mu \ge 1/3$ (the K = 4 saddle has $\mu = 1 - 2/N \ge 1/3$)."""

QP_RIDGE = 1e-10
r"""Relative ridge $\mu$: :func:`qp_nonneg` solves with $G + \mu\,\mathrm{diag}(G)$."""

QP_ADD_TOL = 1e-12
r"""Stopping rule of :func:`qp_nonneg`: an index joins the positive set while its violation
$1 - (Gx)_i$ exceeds this (margins are normalised to 1)."""

QP_KKT_TOL = 1e-8
r"""Tolerance of the optimality check of :func:`qp_nonneg`: with $m = (G + \mu\,\mathrm{diag}(G))x$,
a solve counts as solved when $m_i \ge 1 - \mathrm{tol}$ on every allowed index and $|m_i - 1| \le
\mathrm{tol}$ where $x_i > 0$ (margins are normalised to 1, so the tolerance is absolute)."""

LIMIT_CHUNK = 64
"""Starts per vectorised block of a batch :func:`relax` (``jax.lax.map``
``batch_size``): each step's active-set loop runs as many iterations as the
slowest start of its block, so blocks much larger than this waste work and
smaller ones pay per-operation overheads (64: 2.7x faster than one block of
1000, K = 8)."""


def one_minus_cos(group: Group) -> np.ndarray:
    r"""$C_{xj} = 1 - \cos\theta_{k_j}(x)$ (K, K): row x class offset, column j mode."""
    return np.asarray(group.one_minus_cos, dtype=float)


def class_rows(group: Group) -> np.ndarray:
    r"""One class of each set of classes with equal rows of $C$ (classes $x$ and $-x$:
    $\cos\theta_k(-x) = \cos\theta_k(x)$), class 0 left out.

    Their margins are equal for every $u$, so the complementarity problem has
    only their summed weight as a variable; keeping both makes $G$ singular
    (two equal rows), which the active-set solver cannot invert. Every
    quantity the limit flow needs ($G\tilde e$, $C^\top\tilde e$) depends on
    the weights through these sums only, so the problem is solved over the
    representatives (one row each): exact, and $G$ loses its duplicated rows.
    """
    C = one_minus_cos(group)
    K = group.classes
    keep: list[int] = []
    for x in range(1, K):
        if not any(np.allclose(C[x], C[y], rtol=0.0, atol=1e-12) for y in keep):
            keep.append(x)
    return np.asarray(keep, dtype=int)


def _reduced_c(group: Group, dtype) -> Array:
    """Rows :func:`class_rows` of $C$, shape (R, K)."""
    return jnp.asarray(one_minus_cos(group)[class_rows(group)], dtype=dtype)


def qp_nonneg(
    G: Float[Array, "n n"],
    active: Bool[Array, " n"],
    max_iter: int | None = None,
    *,
    start: Bool[Array, " n"] | None = None,
):
    r"""$\arg\min_{x \ge 0}\ \tfrac12 x^\top G x - \mathbf 1^\top x$ with $x = 0$ off ``active``.

    G symmetric positive semi-definite; it is solved with $G + \mu\,\mathrm{diag}(G)$, $\mu$ =
    :data:`QP_RIDGE` (a rank-deficient G, e.g. of one conjugate pair or of
    modes decayed to exact zeros, has singular blocks $G_{PP}$). The
    Lawson-Hanson active-set method (the NNLS algorithm, written for this
    quadratic): grow the positive set P by the most violated optimality
    condition $1 - (Gx)_i > $ :data:`QP_ADD_TOL`, take $z_P = G_{PP}^{-1}\mathbf
    1$, and step back to the boundary (dropping the blocking index) while some
    $z_i \le 0$. Each iteration solves $G_{PP} z_P = \mathbf 1$ afresh (Cholesky
    factor of $G_{PP}$, lower triangle, identity off P; one step of iterative
    refinement): on the ill-conditioned $G_{PP}$ of the late limit map
    (condition up to ~1e10) an inverse kept up to date by rank-one updates
    drifted, and the path then cycled to the iteration cap with a wrong x.
    Exact after finitely many steps (at most ``max_iter``, default 3n + 5).

    ``start`` (n,) bool, optional: a guess of the positive set (the limit map passes the
    previous step's, :func:`relax`). Before the loop, $G_{PP} z_P = \mathbf 1$ is solved on
    P = ``start`` & ``active`` (the same solve as the loop's); if every $z_P > 0$ the loop
    starts from $x = z$ with that P (a feasible point; its first iteration accepts z and
    grows P as usual), else (some $z_i \le 0$, or a failed solve) from the cold start
    (P empty, x = 0). The rest (back-track, stopping rule, check) is unchanged, so the
    answer is the minimiser of the ridged problem, unique where the ridge makes G positive
    definite (every diagonal entry positive; elsewhere $Gx$ is unique); only the path
    differs, and a good guess saves most of the iterations of growing P from empty. The
    compiled CPU twin (``svflow._cpu.limit._qp_nonneg``) warm-starts the same way, with the
    same iteration count.

    Returns ``(x (n,), solved)``. ``solved`` is True when the loop stopped by
    its rule (no violated condition left), not by ``max_iter``, and x meets the
    optimality conditions of the ridged problem within :data:`QP_KKT_TOL`:
    $m = (G + \mu\,\mathrm{diag}\,G)x \ge 1 - \mathrm{tol}$ on ``active`` and
    $|m_i - 1| \le \mathrm{tol}$ where $x_i > 0$. The limit map makes a state
    whose run has an unsolved QP undecided (:func:`svflow._outcome.decide`).
    Pure, jit- and vmappable.
    """
    n = G.shape[-1]
    max_iter = 3 * n + 5 if max_iter is None else int(max_iter)
    eye = jnp.eye(n, dtype=G.dtype)
    idx = jnp.arange(n)
    # ridge: G_PP stays positive definite when G is rank-deficient (one conjugate pair
    # carrying the state makes G rank one); it moves the margins G x by at most
    # QP_RIDGE relative to 1 (the active set of a rank-deficient G is the same)
    G = G + QP_RIDGE * jnp.diag(jnp.abs(jnp.diagonal(G)))

    def cond(c):
        return (~c[3]) & (c[2] < max_iter)

    def solve(P):
        # z_P = G_PP^-1 1 (S = G on P x P, identity elsewhere), one step of refinement
        b = P.astype(G.dtype)
        S = jnp.where(P[:, None] & P[None, :], G, eye)
        cf = jax.scipy.linalg.cho_factor(S, lower=True)
        z = jax.scipy.linalg.cho_solve(cf, b)
        return jnp.where(P, z + jax.scipy.linalg.cho_solve(cf, b - S @ z), 0.0)

    def body(c):
        x, P, it, _ = c
        z = solve(P)
        bad = P & (z <= 0)
        infeasible = jnp.any(bad)
        # back-track: move to the boundary of the feasible set, drop the blocking index k
        ratio = jnp.where(bad, x / jnp.maximum(x - z, 1e-300), jnp.inf)
        k = jnp.argmin(ratio)
        alpha = jnp.clip(ratio[k], 0.0, 1.0)
        xb = jnp.where(idx == k, 0.0, x + alpha * (z - x))
        # or accept z and add the most violated condition j, or stop
        w = 1.0 - G @ z
        cand = active & ~P & (w > QP_ADD_TOL)
        j = jnp.argmax(jnp.where(cand, w, -jnp.inf))
        grow = jnp.any(cand)
        done = ~infeasible & ~grow
        P = jnp.where(infeasible, P.at[k].set(False), P.at[j].set(P[j] | grow))
        return jnp.where(infeasible, xb, z), P, it + 1, done

    x0, P0 = jnp.zeros(n, G.dtype), jnp.zeros(n, bool)
    if start is not None:
        # the warm start: P = start & active when its z_P > 0 (finite), else the cold start
        Pw = jnp.asarray(start, bool) & active
        zw = solve(Pw)
        ok = jnp.all(~Pw | (zw > 0))
        x0, P0 = jnp.where(ok, zw, x0), Pw & ok
    init = (x0, P0, jnp.asarray(0), jnp.asarray(False))
    x, _, _, done = jax.lax.while_loop(cond, body, init)
    # solved: the loop stopped by its rule (not the cap) and x meets the optimality
    # conditions of the ridged problem within QP_KKT_TOL
    m = G @ x
    kkt = (m >= 1.0 - QP_KKT_TOL) & ((x == 0) | (jnp.abs(m - 1.0) <= QP_KKT_TOL))
    return x, done & jnp.all(~active | kkt)


class LimitField(eqx.Module):
    r"""$du/ds = F(u) - u$ (module docstring) for $u$ (K,) with entry 0 = 0; time $s = \log\tau$."""

    factors: int = eqx.field(static=True)
    group: Group | None = eqx.field(static=True, default=None)

    def __call__(self, s, u, args=None):
        K = u.shape[-1]
        N = self.factors
        C = _reduced_c(resolve_group(self.group, K), u.dtype)  # None (built by hand): K's default
        D = jnp.abs(u) ** (2.0 - 2.0 / N)
        m = u @ C.T / K
        active = m <= 1.0 + ACTIVE_TOL
        G = (N / K**2) * (C * D[None, :]) @ C.T
        e, _ = qp_nonneg(G, active)
        du = (N / K) * D * (e @ C) - u
        return du.at[..., 0].set(0.0)


def handoff(lam: Float[Array, "... K"], group: Group) -> Float[Array, "... K"]:
    r"""$u = \lambda/\min_{x \ne 0} m_x(\lambda)$ with entry 0 set to 0 (smallest margin 1)."""
    lam = jnp.asarray(lam)
    K = lam.shape[-1]
    C = jnp.asarray(one_minus_cos(group), dtype=lam.dtype)
    lam = jnp.abs(lam).at[..., 0].set(0.0)
    m = lam @ C.T / K
    mmin = jnp.min(jnp.where(jnp.arange(K) != 0, m, jnp.inf), axis=-1, keepdims=True)
    return lam / mmin


def limit_rates(u: Float[Array, " K"], factors: int, group: Group, *, checked: bool = False):
    r"""$\rho_j = u'_j/u_j$, $u'$ one step of the limit map from $u$ (0 where $u_j = 0$, and for entry 0).

    At a fixed point this is $1 + (du_j/ds)/u_j$ of the limit flow: 1 on the
    support, $N u_j^{1-2/N}(C^\top\tilde e)_j/K$ off it (0 in the limit for
    $N > 2$). ``u`` is first scaled to smallest margin 1 ($\rho$ is homogeneous
    of degree $-1$). The rates are read from the map itself, with no active-set
    threshold: a state whose margins sit $10^{-8}$ off 1 (a rounding error of
    the complementarity solve) keeps the multipliers of its active classes
    instead of losing them all (which read every mode as frozen).
    Returns $\rho$ (K,), or with ``checked`` the pair ($\rho$, solved) (:func:`limit_step`).
    """
    u = handoff(u, group)
    du, solved = limit_step(u, factors, group, checked=True)
    safe = jnp.where(u > 0, u, 1.0)
    rho = jnp.where(u > 0, du / safe, 0.0).at[..., 0].set(0.0)
    return (rho, solved) if checked else rho


def limit_step(
    u: Float[Array, " K"],
    factors: int,
    group: Group,
    *,
    checked: bool = False,
    start: Bool[Array, " R"] | None = None,
):
    r"""One step of the limit map (module docstring): $u \mapsto \frac NK |u|^a \odot C^\top\hat e$,
    $\hat e = \arg\min_{e \ge 0} \tfrac12 e^\top G e - \mathbf 1^\top e$ over every class.

    The implicit-explicit Euler step of size 1 in $s$ of the limit flow
    (explicit in the drive, implicit in the margin constraint): every margin
    of the result is $\ge 1$, with equality where $\hat e > 0$. Returns $u'$ (K,), or with
    ``checked`` the pair ($u'$, solved): solved is :func:`qp_nonneg`'s flag (the
    QP met its stopping rule and its optimality conditions within :data:`QP_KKT_TOL`).
    $u'$ depends on $\hat e$ only through $C^\top\hat e$, which is unique even
    where $\hat e$ is not (G rank-deficient), so a solved step is well defined.
    ``start`` (R,) bool, R = len(:func:`class_rows`): a guess of the QP's positive set
    (:func:`qp_nonneg`'s warm start; :func:`relax` passes the previous step's). Pure, vmappable.
    """
    out, solved, _ = _limit_step_qp(u, factors, group, start)
    return (out, solved) if checked else out


def _limit_step_qp(u, factors: int, group: Group, start):
    """:func:`limit_step` returning ``(u', solved, positive set of the QP's solution)``."""
    K = u.shape[-1]
    N = factors
    C = _reduced_c(group, u.dtype)
    D = jnp.abs(u) ** (2.0 - 2.0 / N)
    G = (N / K**2) * (C * D[None, :]) @ C.T
    e, solved = qp_nonneg(G, jnp.ones(C.shape[0], bool), start=start)
    out = ((N / K) * D * (e @ C)).at[..., 0].set(0.0)
    return out, solved, e > 0


def relax(
    u: Float[Array, "*batch K"],
    *,
    factors: int,
    steps: int = LIMIT_STEPS,
    group: Group,
    checked: bool = False,
):
    r"""Iterate :func:`limit_step` ``steps`` times from ``u`` (K,) or a batch (..., K).

    A batch runs in vectorised blocks of :data:`LIMIT_CHUNK` starts
    (``jax.lax.map``); a single start (e.g. under the caller's ``vmap``) runs
    alone. Returns the end states (same shape); a non-finite start gives a
    non-finite end. With ``checked``: the pair (end states, solved), solved
    (``*batch``) True where every step's QP was solved (:func:`limit_step`).
    Each step's QP is warm-started from the previous step's positive set
    (:func:`qp_nonneg`'s ``start``; the first step's is empty, the cold start): the QP's
    answer is the same unique minimiser, only the active-set path is shorter, so the end
    states are those of ``steps`` cold :func:`limit_step` calls up to rounding.
    Pure and jittable (``factors``, ``steps``, ``group``, ``checked`` static).
    """
    u = jnp.asarray(u)
    R = len(class_rows(group))

    def step(_, c):
        v, ok, P = _limit_step_qp(c[0], factors, group, c[2])
        return v, c[1] & ok, P

    def run(u0):
        init = (u0, jnp.asarray(True), jnp.zeros(R, bool))
        end, ok, _ = jax.lax.fori_loop(0, int(steps), step, init)
        return end, ok

    if u.ndim == 1:
        end, solved = run(u)
    else:
        flat = u.reshape(-1, u.shape[-1])
        end, solved = jax.lax.map(run, flat, batch_size=min(LIMIT_CHUNK, flat.shape[0]))
        end, solved = end.reshape(u.shape), solved.reshape(u.shape[:-1])
    return (end, solved) if checked else end
