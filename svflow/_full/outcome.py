r"""Outcomes of random starts: the full-parameter flow followed in double-log time.

For a spectral start the $t \to \infty$ outcome is certified by the reduced
limit map (:func:`svflow.outcome`). A random start does not reduce, so
:func:`flow_outcome` follows every parameter (:func:`svflow.flow`, double-log
time $\sigma = \log(1 + \tau)$, $\tau = \log(1 + t)$) to a horizon
$\tau_{\rm end}$ and reads the limit direction of the centred logits off the
late **growth exponents** of their singular values $s_1 \ge s_2 \ge \dots$:

$$p_i = \frac{\Delta \log s_i}{\Delta \log \tau},\qquad
  e_i = \frac{\Delta \log q_i}{\Delta \log \tau} = p_i - p_1,\qquad q_i = s_i / s_1,$$

over the last two half-decades of $\tau$ (window A: $[\tau_{\rm end}/10,
\tau_{\rm end}/\sqrt{10}]$, window B: $[\tau_{\rm end}/\sqrt{10}, \tau_{\rm end}]$).
Homogeneity (Lyu & Li 2020) makes $s_1$ grow like $\tau$ ($p_1 \to 1$), the
modes of the limit's support keep a positive ratio ($e_i \to 0$), and the others
vanish in ratio ($q_i \to 0$). The rule, per mode $i \ge 2$ of the
$\min(K - 1, d)$ that can carry norm (rank Z is at most the smallest
dimension of any factor: the modes beyond a width-d bottleneck are 0 for
every t and count as off):

- **on** (in the support): $q_i \ge$ ``q_on`` and $e_i \ge -$``e_flat`` in
  window B (flat or rising: not on its way out);
- **off**: $q_i \le$ ``q_off`` and $e_i \le -$``e_decay`` in both windows; or
  **on the off-mode law**: $q_i <$ ``q_on``, falling in both windows
  ($e_i^A < 0$, $e_i^B \le -$``e_flat``) and the fall accelerating at least
  ``kappa`` times as fast as a mode outside the support must (below);
- anything else is undecided, and so is the start.

The off-mode law. In aligned, balanced factors (the reduced dynamics) a mode
of the centred logits with per-factor value $a_i$, $s_i = a_i^N$, obeys
$da_i/d\tau = a_i^{N-1} G_i$ with $G_i$ the drive along that mode; with
$s_1 \propto \tau$ and the relative drive $\rho_i = G_i / G_1$ this is
$e_i = \rho_i q_i^{a} - 1$, $a = (N - 2)/N$. If $\rho_i$ has settled (the
drive of the mode no longer rising), a falling mode accelerates:
$de_i/d\log\tau = a (1 + e_i) e_i < 0$, and $q_i \to 0$ (closed form:
$q_i^{-a} = \rho_i + (q_0^{-a} - \rho_i)(\tau/\tau_0)^a$). A mode on its way
to a positive limit instead needs $\rho_i$ to rise until $e_i = 0$, which
slows the fall. The off-mode test asks the measured change
$e_i^B - e_i^A$ over the half-decade to be at most ``kappa`` times the law's
$a (1 + \bar e_i)\bar e_i \log\sqrt{10}$ ($\bar e_i$ the mean of the two);
for N = 2 ($a = 0$) it asks the fall not to slow down.

Decided starts get ``outcome`` = the number r of modes on (0 when r = K - 1:
neural collapse). This is a finite-horizon rule: it does not prove the limit
(a mode falling at a steady power of $\tau$ could in principle turn round
later; the late phase of a random start is not known to be monotone); it
says the start looks settled on two consecutive half-decades of $\tau$, and
its thresholds were checked against independent integrations ten times
further (tests/test_flow_outcome.py, docs: theory/random-starts.md).

Starts still undecided after the last stage are handed to the **frame-free limit
map** (:func:`handoff_decision`, :func:`handoff_limit`, :func:`limit_map_step`): the
$\tau \to \infty$ limit of the balanced end-to-end dynamics, an implicit-explicit step
of size 1 in $\log\tau$ whose fixed points are the KKT points of the end-to-end
max-margin problem with the singular frames free (the spectral limit map of
:mod:`svflow._limit` is its special case). It decides only when the map from the
states at the last two horizons gives the same support, consistent with every mode
the exponent rule decided and with the present motion of the others; a mode it turns
off must already be at ratio <= ``q_off``. It is no certificate either (docs:
theory/random-starts.md, "The frame-free limit map").

A KKT residual of the limit point: with $\hat\theta = \theta/\gamma^{1/N}$
(smallest margin 1), the pairwise margins $q_{cj} = Z_{y_j j} - Z_{cj}$ and
their gradients, ``kkt_residual`` $= \min_{\lambda \ge 0}\|\hat\theta -
\sum\lambda_{cj}\nabla q_{cj}\| / \|\hat\theta\|$ (stationarity of
$\min\|\theta\|^2/2$ s.t. $q \ge 1$; non-negative least squares) and
``kkt_slackness`` $= \sum\lambda_{cj}(q_{cj} - 1)/\|\hat\theta\|^2$.
"""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import xarray as xr
from scipy.optimize import nnls

from .._checks import check_bool, check_int
from .._integrate import IntegrationError, Solver, check_solver
from .._precision import computes
from .flow import _as_models, flow
from .model import DeepUFM, forward

__all__ = ["flow_outcome", "kkt_residual", "is_models", "outcome_of_models"]


def _pair_margins(factors, activation: str, labels):
    Z = forward(factors, activation)
    K = Z.shape[0]
    correct = Z[labels, jnp.arange(Z.shape[1])]
    diffs = correct[None, :] - Z  # (K, M); the target rows are 0
    mask = jnp.arange(K)[:, None] != labels[None, :]
    return diffs[mask]


@computes
def kkt_residual(model: DeepUFM) -> tuple[float, float]:
    r"""``(stationarity, slackness)`` of ``model``'s parameters as a max-margin KKT point.

    Definition (docs: theory/random-starts.md): $\hat\theta = \theta/\gamma^{1/N}$, NNLS multipliers
    over the pairwise margins. Both are 0 at an exact KKT point of
    $\min\|\theta\|^2/2$ s.t. all margins $\ge 1$; ``(inf, inf)`` if the
    margin is not positive.
    """
    labels = jnp.repeat(jnp.arange(model.classes), model.samples_per_class)
    factors = tuple(jnp.asarray(A, float) for A in model.factors)
    gamma = float(jnp.min(_pair_margins(factors, model.activation, labels)))
    if not gamma > 0:
        return float("inf"), float("inf")
    c = gamma ** (-1.0 / len(factors))
    theta = tuple(c * A for A in factors)
    q = np.asarray(_pair_margins(theta, model.activation, labels))
    J = jax.jacrev(_pair_margins)(theta, model.activation, labels)
    Jm = np.concatenate([np.asarray(j).reshape(q.size, -1) for j in J], axis=1)
    v = np.concatenate([np.asarray(A).ravel() for A in theta])
    lam, res = nnls(Jm.T, v)
    norm2 = float(v @ v)
    return float(res / np.sqrt(norm2)), float(lam @ (q - 1.0) / norm2)


FLOW_HORIZONS = (1e3, 1e4)
r"""Default stages of the random-start outcome in $\tau = \log(1 + t)$: every
start to $10^3$; the starts still undecided there continue to $10^4$."""

Q_ON, Q_OFF, E_FLAT, E_DECAY = 0.2, 0.1, 0.1, 0.2
"""The rule's thresholds (module docstring; checked against independent runs)."""
KAPPA = 0.5
"""The off-mode law's factor (svflow 0.5; module docstring)."""
RULE_EXPONENTS = "growth exponents + off-mode law (svflow 0.5)"
RULE = "growth exponents + off-mode law + frame-free limit-map hand-off (svflow 0.5.1)"
"""Names the rule in the attrs (a cached phase-map cell decided by another rule is recomputed)."""


def _window_exponents(log_s, log_tau, lo, hi):
    a, b = np.argmin(np.abs(log_tau - lo)), np.argmin(np.abs(log_tau - hi))
    return (log_s[..., b, :] - log_s[..., a, :]) / (log_tau[b] - log_tau[a])


def _decide(sigma, taus, K: int, horizon: float, max_rank: int, factors: int):
    """The rule on the saves ``sigma`` (B, T, >= K - 1) at ``taus`` (T,) ending at ``horizon``.

    ``factors``: N = L + 1 (the off-mode law's $a = (N - 2)/N$). Modes
    ``i >= max_rank`` (the width bound: rank Z <= min(K - 1, d)) are zero for
    every t and count as off. Returns ``(outcome (B,), on (B, K - 1), q (B, K - 1),
    eB (B, K - 1), eA (B, K - 1), on-mask, off-mask)``, the masks per mode before the
    start-level decision."""
    s = sigma[:, :, : K - 1]  # the centred logits have rank <= K - 1
    with np.errstate(divide="ignore", invalid="ignore"):
        log_tau = np.log(taus)
        log_q = np.log(s / s[:, :, :1])
    top, half = np.log(horizon), 0.5 * np.log(10.0)
    eA = _window_exponents(log_q, log_tau, top - 2 * half, top - half)
    eB = _window_exponents(log_q, log_tau, top - half, top)
    q = np.exp(log_q[:, -1])
    a = (factors - 2) / factors
    e_mean = 0.5 * (eA + eB)
    law = a * (1.0 + e_mean) * e_mean * half  # the off-mode law's change of e over a half-decade
    with np.errstate(invalid="ignore"):
        on = (q >= Q_ON) & (eB >= -E_FLAT)
        off = (q <= Q_OFF) & (eA <= -E_DECAY) & (eB <= -E_DECAY)
        off |= (q < Q_ON) & (eA < 0) & (eB <= -E_FLAT) & (eB - eA <= KAPPA * law)
    on[:, 0] = True
    off[:, 0] = False
    on[:, max_rank:], off[:, max_rank:] = False, True
    decided = np.all(on | off, axis=1)
    rank = on.sum(axis=1)
    outcome = np.where(decided, np.where(rank == K - 1, 0, rank), -1)
    return outcome, on & decided[:, None], q, eB, eA, on, off


# ---------------------------------------------------------------------------------------------
# The frame-free limit map (svflow 0.5.x): the hand-off of a random start still undecided after
# the last stage (docs: theory/random-starts.md, "The frame-free limit map").

HANDOFF_STEPS = 60
"""Steps of the frame-free limit map from a hand-off state (each a step of 1 in s = log tau)."""
HANDOFF_TIE_BREAK = 1e-3
r"""Relative perturbation $1 + \epsilon v_i$ of the hand-off state's singular values (distinct v)."""
HANDOFF_SUPPORT_TOL, HANDOFF_FROZEN_RATE = 0.05, 0.8
"""A mode of the map's end state is in the support when its rate ratio is within 0.05 of 1,
frozen when it is at most 0.8 (the spectral criterion's values, :class:`svflow.Criterion`)."""
HANDOFF_VANISHED = 1e-3
r"""A mode whose ratio $s_i/s_1$ at the map's end is below this and did not grow in ratio
over the map's last :data:`HANDOFF_TREND_STEPS` steps has vanished (off). Off modes of the
exact flow sit at ratios $\sim 1/\tau$ at the hand-off; after the map's 60 steps (a factor
$e^{60}$ in $\tau$) what is left of them at $10^{-6}$-$10^{-4}$
is the not yet converged turning of the frames, not a mode."""
HANDOFF_TREND_STEPS = 10
"""A vanished mode may not have grown in ratio over the map's last this many steps."""
HANDOFF_MAX_IMBALANCE = 0.2
r"""Largest relative imbalance $\|A_{l+1}^\top A_{l+1} - A_l A_l^\top\|_F/\|A_l\|_F^2$ of a hand-off
state (the map is the limit of the balanced end-to-end dynamics)."""
HANDOFF_LATE_MASS = 1e-4
"""Largest off-target softmax mass $1 - p_y$ of a hand-off state (late: the softmax has
saturated; the spectral criterion's ``late_mass``)."""
HANDOFF_CONSTRAINT_TOL = 1e-6
"""The map's end state must have its smallest margin within this of 1."""


def _pair_index(K: int, n: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``(c, j, y_j)`` of every wrong-class pair: class c != y_j of sample column j (class-major)."""
    y = np.repeat(np.arange(K), n)
    c, j = np.nonzero(np.arange(K)[:, None] != y[None, :])
    return c, j, y[j]


def _phi(s_rows: np.ndarray, s_cols: np.ndarray, factors: int) -> np.ndarray:
    r"""$\Phi_{ab} = \sum_{k=1}^N s_a^{2(N-k)/N} s_b^{2(k-1)/N}$ ($0^0 = 1$): the end-to-end
    operator $X \mapsto \sum_k (ZZ^\top)^{(N-k)/N} X (Z^\top Z)^{(k-1)/N}$ in Z's singular frames."""
    N = factors
    out = np.zeros((s_rows.size, s_cols.size))
    for k in range(1, N + 1):
        pa, pb = 2.0 * (N - k) / N, 2.0 * (k - 1) / N
        ra = np.abs(s_rows) ** pa if pa > 0 else np.ones_like(s_rows)
        cb = np.abs(s_cols) ** pb if pb > 0 else np.ones_like(s_cols)
        out += ra[:, None] * cb[None, :]
    return out


def _least_distance(A: np.ndarray) -> np.ndarray:
    r"""$\arg\min \|x\|$ s.t. $A x \ge \mathbf 1$ (Lawson & Hanson 1974, ch. 23: NNLS on
    $[A^\top; \mathbf 1^\top] u \approx e_{n+1}$, $x = -r_{1:n}/r_{n+1}$ with r the residual)."""
    m, nvar = A.shape
    E = np.vstack([A.T, np.ones((1, m))])
    f = np.zeros(nvar + 1)
    f[-1] = 1.0
    u, _ = nnls(E, f, maxiter=50 * (nvar + m))
    r = E @ u - f
    if not abs(r[-1]) > 0:
        raise FloatingPointError("least-distance problem infeasible (no state with every margin >= 1)")
    return -r[:-1] / r[-1]


def pair_margins(Z: np.ndarray, n: int = 1) -> np.ndarray:
    r"""The margins $Z_{y_j j} - Z_{cj}$ of every wrong-class pair (c, j) of logits Z (K, K n)."""
    Z = np.asarray(Z, float)
    c, j, yj = _pair_index(Z.shape[0], n)
    return Z[yj, j] - Z[c, j]


@computes
def limit_map_step(Z: np.ndarray, factors: int, n: int = 1, max_rank: int | None = None) -> np.ndarray:
    r"""One step of the frame-free limit map from logits Z (K, K n), N = ``factors``:

    $$Z \mapsto \mathcal A_Z\Bigl(\sum_p \hat e_p \nabla m_p\Bigr),\qquad
      \hat e = \arg\min_{e \ge 0}\ \tfrac12 e^\top G e - \mathbf 1^\top e,\quad
      G_{pq} = \langle\nabla m_p, \mathcal A_Z(\nabla m_q)\rangle,$$

    $m_p(Z) = Z_{y_j j} - Z_{cj}$ the pair margins ($\nabla m_p = (e_{y_j} - e_c)e_j^\top$),
    $\mathcal A_Z(X) = \sum_{k=1}^N (ZZ^\top)^{(N-k)/N} X (Z^\top Z)^{(k-1)/N}$ the end-to-end
    operator of N balanced factors (Arora et al. 2018), applied in Z's singular frames
    ($U(\Phi \circ U^\top X V)V^\top$). Every margin of the result is >= 1, with equality where
    $\hat e_p > 0$; the map is homogeneous of degree 0 in Z. For Z diagonal in the
    spectral frames it is the spectral limit map (:func:`svflow._limit.limit_step`).
    ``max_rank``: keep the best approximation of that rank (a width-d bottleneck keeps
    rank Z <= d along the flow; a step of size 1 could raise it through the frame rotation).
    """
    Z = np.asarray(Z, float)
    K, M = Z.shape
    U, s, Vt = np.linalg.svd(Z)
    V = Vt.T
    sr, sc = np.zeros(K), np.zeros(M)
    sr[: s.size], sc[: s.size] = s, s
    Ph = _phi(sr, sc, factors)
    c, j, yj = _pair_index(K, n)
    B = ((U[yj] - U[c])[:, :, None] * V[j][:, None, :]).reshape(c.size, K * M)  # U^T grad m_p V
    root = np.sqrt(Ph.ravel())
    # With w = sqrt(Phi) o (U^T E V) the step is the least-distance problem
    # min ||w|| s.t. (B diag(sqrt Phi)) w >= 1 (the margins of the result), solved
    # exactly by Lawson-Hanson's LDP reduction to non-negative least squares.
    w = _least_distance(B * root[None, :])
    Zn = U @ (root * w).reshape(K, M) @ Vt
    if max_rank is not None and max_rank < min(K, M):
        U2, s2, Vt2 = np.linalg.svd(Zn, full_matrices=False)
        Zn = (U2[:, :max_rank] * s2[:max_rank]) @ Vt2[:max_rank]
        Zn = Zn / np.min(pair_margins(Zn, n))  # the truncation moved the margins by O(s_(d+1))
    return Zn


def _balance(factors) -> float:
    """Largest relative imbalance of neighbouring factors (0 for balanced ones)."""
    F = [np.asarray(A, float) for A in factors]
    return max(
        (
            float(np.linalg.norm(F[i + 1].T @ F[i + 1] - F[i] @ F[i].T) / np.sum(F[i] ** 2))
            for i in range(len(F) - 1)
        ),
        default=0.0,
    )


@computes
def handoff_limit(model: DeepUFM, steps: int = HANDOFF_STEPS) -> dict:
    r"""The frame-free limit map from a late random-start state ``model`` (docs: theory/random-starts.md).

    The centred logits (the class mean of every column removed: the margins do not
    see it), scaled to smallest margin 1, their singular values perturbed by
    $1 + \epsilon v_i$ (:data:`HANDOFF_TIE_BREAK`), then ``steps`` steps of
    :func:`limit_map_step`. At the end state the rate ratios $\rho_i =
    s_i(F(Z))/s_i(Z)$ sort the modes: support ($|\rho_i - 1| \le$ 0.05), frozen
    ($\rho_i \le$ 0.8, or vanished: $s_i/s_1 <$ :data:`HANDOFF_VANISHED`), else
    moving. Returns a dict: ``support``, ``frozen`` (K - 1,) bool, ``ratio`` (K - 1,)
    $s_i/s_1$ of the end state, ``rate`` (K - 1,), ``decided`` (late, balanced,
    on the margin constraint, no mode moving, the largest in the support),
    ``imbalance``, ``min_margin`` and ``late_mass`` (of the hand-off state, unscaled:
    largest off-target softmax mass, at most :data:`HANDOFF_LATE_MASS` for a decision),
    ``constraint`` (smallest margin of the end state).
    """
    K, n, N = model.classes, model.samples_per_class, model.num_factors
    Z = np.asarray(forward(tuple(model.factors), model.activation), float)
    Z = Z - Z.mean(axis=0, keepdims=True)
    m0 = float(np.min(pair_margins(Z, n)))
    imbalance = _balance(model.factors)
    # off-target softmax mass of the worst column, 1 - p_y, from the margins (log domain)
    with np.errstate(over="ignore"):
        c, j, _ = _pair_index(K, n)
        neg = np.full((K, Z.shape[1]), -np.inf)
        neg[c, j] = -pair_margins(Z, n)
        lse = np.logaddexp(0.0, np.logaddexp.reduce(neg, axis=0))
        late_mass = float(np.max(-np.expm1(-lse)))
    nan = np.full(K - 1, np.nan)
    out = dict(
        support=np.zeros(K - 1, bool),
        frozen=np.zeros(K - 1, bool),
        ratio=nan,
        rate=nan,
        decided=False,
        imbalance=imbalance,
        min_margin=m0,
        constraint=np.nan,
        late_mass=late_mass,
    )
    if not (np.all(np.isfinite(Z)) and m0 > 0):
        return out
    U, s, Vt = np.linalg.svd(Z / m0, full_matrices=False)
    q0 = np.zeros(K - 1)
    q0[: min(K - 1, s.size)] = (s / s[0])[: K - 1]
    v = 1.0 + HANDOFF_TIE_BREAK * np.linspace(1.0, -1.0, s.size)  # distinct, fixed
    Z = (U * (s * v)) @ Vt
    Z = Z / np.min(pair_margins(Z, n))
    max_rank = min(K - 1, *(min(np.shape(A)) for A in model.factors))
    s_back = None
    for k in range(int(steps)):
        Z = limit_map_step(Z, N, n, max_rank)
        if k == int(steps) - 1 - HANDOFF_TREND_STEPS:
            s_back = np.linalg.svd(Z, compute_uv=False)[: K - 1]
    Znext = limit_map_step(Z, N, n, max_rank)
    s_end = np.linalg.svd(Z, compute_uv=False)[: K - 1]
    s_next = np.linalg.svd(Znext, compute_uv=False)[: K - 1]
    ratio = s_end / s_end[0]
    with np.errstate(divide="ignore", invalid="ignore"):
        rate = s_next / s_end
        trend = (ratio / (s_back / s_back[0])) if s_back is not None else np.full(K - 1, np.inf)
    # vanished: below 1e-3 of the largest and not growing in ratio over the map's last
    # HANDOFF_TREND_STEPS steps, or at rounding level (what is left of an off mode at 1e-7 to 1e-4 is the
    # slowly converging turn of the frames); the modes beyond the width bound
    # (rank Z <= d) are 0 at every t
    vanished = (ratio < HANDOFF_VANISHED) & ((trend <= 1.0) | (ratio < 1e-9))
    vanished[max_rank:] = True
    with np.errstate(divide="ignore", invalid="ignore"):
        rate = np.where(vanished, 0.0, s_next / s_end)
    support = ~vanished & (np.abs(rate - 1.0) <= HANDOFF_SUPPORT_TOL)
    frozen = vanished | (rate <= HANDOFF_FROZEN_RATE)
    constraint = float(np.min(pair_margins(Z, n)))
    decided = bool(
        np.all(support | frozen)
        and support[0]
        and np.all(ratio[support] >= Q_OFF)  # an on mode below 0.1 could not be told from off
        and abs(constraint - 1.0) <= HANDOFF_CONSTRAINT_TOL
        and imbalance <= HANDOFF_MAX_IMBALANCE
        and late_mass <= HANDOFF_LATE_MASS
        and np.all(np.isfinite(s_end))
    )
    out.update(
        support=support,
        frozen=frozen & ~support,
        ratio=ratio,
        rate=rate,
        decided=decided,
        constraint=constraint,
    )
    return out


@computes
def handoff_decision(
    earlier: DeepUFM, last: DeepUFM, on_rule, off_rule, exponent
) -> tuple[int, np.ndarray, dict]:
    r"""The frame-free hand-off's decision for a start the exponent rule left undecided.

    ``earlier`` and ``last``: its states at two horizons (a decade of $\tau$ apart);
    ``on_rule``, ``off_rule`` (K - 1,): the modes the exponent rule called on / off at the
    last horizon, ``exponent`` (K - 1,): $e_i$ there (last half-decade). Decided (returns
    ``(code, support, info)``, code 0 = NC or r = support size) only when the map from
    both states decides (:func:`handoff_limit`) with the same support, that support
    keeps every mode the rule called on and none it called off, and every mode the
    rule left open moves now the way the map says it goes: one the map turns off is
    falling ($e_i < 0$) and already at most ``q_off`` = 0.1 (above it the map's "off"
    cannot be checked by a run ten times longer: such starts stay undecided); one the
    map turns on is not falling fast ($e_i > -$``e_flat``) unless its limit ratio is
    below its present one. Otherwise ``(-1, zeros, info)``.
    """
    K = last.classes
    a, b = handoff_limit(earlier), handoff_limit(last)
    on_rule, off_rule = np.asarray(on_rule, bool), np.asarray(off_rule, bool)
    e = np.asarray(exponent, float)
    info = dict(ratio=b["ratio"], earlier=a, last=b)
    none = (-1, np.zeros(K - 1, bool), info)
    if not (a["decided"] and b["decided"]) or not np.array_equal(a["support"], b["support"]):
        return none
    sup = b["support"]
    if np.any(on_rule & ~sup) or np.any(off_rule & sup):
        return none
    open_ = ~on_rule & ~off_rule
    q_now = last_ratios(last)
    with np.errstate(invalid="ignore"):
        # a mode the map turns off: at most q_off now and falling (between 0.1 and 0.2 a
        # mode the map turns off may still sit above 0.1 a decade later, where no run we
        # can afford can check it: K = 8, L = 3, d = 8, seed 2 fell from 0.188 to 0.176
        # over tau = 1e4 -> 1e5); a mode the map turns on: not falling fast, unless its
        # limit ratio is below its present one
        off_ok = ~(open_ & ~sup) | ((q_now <= Q_OFF) & (e < 0))
        on_ok = ~(open_ & sup) | (e > -E_FLAT) | (b["ratio"] < q_now)
    if not (np.all(off_ok) and np.all(on_ok)):
        return none
    r = int(sup.sum())
    return (0 if r == K - 1 else r), sup, info


@computes
def last_ratios(model: DeepUFM) -> np.ndarray:
    """$s_i/s_1$ (K - 1,) of the centred logits of ``model`` (svflow's convention, ``sigma``)."""
    from .._metrics import sigma_from_logits

    s = np.asarray(sigma_from_logits(forward(tuple(model.factors), model.activation)))[: model.classes - 1]
    return s / s[0]


def _check_horizons(horizons) -> tuple[float, ...]:
    try:
        hz = tuple(float(h) for h in np.atleast_1d(np.asarray(horizons, dtype=float)))
    except (TypeError, ValueError) as e:
        raise TypeError(f"horizons must be a sequence of numbers (tau values); got {horizons!r}.") from e
    if not hz or not all(np.isfinite(hz)) or hz[0] < 10.0:
        raise ValueError(f"horizons must be finite and start at tau >= 10; got {horizons!r}.")
    if any(b < 10.0 * a for a, b in zip(hz, hz[1:])):
        raise ValueError(
            "each horizon must be at least 10 times the previous one (a stage is decided on the "
            f"decade of tau it has just run, so stages may not overlap); got {horizons!r}."
        )
    return hz


def _continue(batch, pending, previous: float, h: float, settings: dict):
    """Continue the undecided starts ``batch`` (indices ``pending``) from tau = ``previous`` to ``h``.

    One batch call; if it fails (a start exhausts ``max_steps`` in the stiff late
    phase), each start alone, and a start whose own run fails is dropped: it stays
    undecided at ``previous``. Returns ``(pending kept, taus, sigma, num_steps, ends)``."""
    kw = dict(log_t_start=previous, log_t_end=h, num_times=21, **settings)
    try:
        ds, ends = flow(batch, **kw)
        return pending, ds.log_t.values, ds.sigma.values, np.atleast_1d(ds["num_steps"].values), ends
    except IntegrationError:
        pass
    keep, sig, n_steps, ends, taus = [], [], [], [], None
    for i, m in zip(pending, batch):
        try:
            ds, end = flow([m], **kw)
        except IntegrationError:
            continue
        keep.append(i)
        sig.append(ds.sigma.values[0])
        n_steps.append(int(ds["num_steps"].values[0]))
        ends.append(end[0])
        taus = ds.log_t.values
    if not keep:
        return np.zeros(0, dtype=int), None, None, None, []
    return np.asarray(keep), taus, np.stack(sig), np.asarray(n_steps), ends


def _check_snapshots(snapshot_times) -> np.ndarray:
    if snapshot_times is None:
        return np.zeros(0)
    ts = np.atleast_1d(np.asarray(snapshot_times, dtype=float))
    if ts.ndim != 1 or not np.all(np.isfinite(ts)) or np.any(ts <= 0) or np.any(np.diff(ts) <= 0):
        raise ValueError(
            "snapshot_times must be finite, > 0 and strictly increasing (gradient-flow time t); "
            f"got {snapshot_times!r}."
        )
    return ts


RANDOM_OUTCOME_SOLVER = Solver(rtol=1e-6, atol=1e-9, max_steps=100_000)
"""The default solver of the random-start outcome (the flow in double-log time)."""


@computes
def flow_outcome(
    model: DeepUFM | list[DeepUFM],
    *,
    horizons=FLOW_HORIZONS,
    snapshot_times=None,
    num_times: int = 81,
    solver: Solver = RANDOM_OUTCOME_SOLVER,
    kkt: bool = True,
    handoff: bool = True,
    progress: bool = False,
) -> xr.Dataset:
    r"""The $t \to \infty$ outcome of the full-parameter flow from a random start (or a list).

    The random-start route of :func:`svflow.outcome` (``init`` a
    :class:`DeepUFM` or a list). Follows :func:`svflow.flow` in double-log
    time to the first horizon (in $\tau = \log(1 + t)$) and decides each start
    from the growth exponents of its centred-logit singular values over the
    last decade of $\tau$ (rule and caveats: module docstring,
    docs/theory/random-starts.md). Starts undecided there continue from their
    state at that horizon (not from t = 0; ``flow(log_t_start=...)``) to the
    next horizon and are decided there by the same rule; a start whose
    continuation exhausts ``max_steps`` stays undecided at the previous
    horizon (``horizon`` says where it stopped). Cross-entropy without
    weight decay only.

    Args:
        model: a :class:`DeepUFM` or a list of them (equal shapes and settings).
        horizons: increasing $\tau$ stages, the first >= 10, each >= 10 x the
            previous (default ``(1e3, 1e4)``).
        snapshot_times: gradient-flow times t (below $e^{\text{horizons}[0]}$)
            at which the same flow's singular values and numerical rank are
            also reported (``snapshot_sigma``, ``snapshot_rank``): the finite-t
            picture beside the limit.
        num_times: saves of the first stage, log-spaced in $\tau$ from 0.1
            (a continuation saves 21 per decade).
        solver: the flow's :class:`svflow.Solver` (default
            :data:`RANDOM_OUTCOME_SOLVER`: rtol 1e-6, atol 1e-9, 100 000 steps).
        kkt: report the KKT residual of each final state (NaN when False).
        handoff: hand the starts still undecided after the last stage to the
            frame-free limit map (:func:`handoff_decision`; ``decided_by`` = 2).
            Default True, as in :func:`svflow.outcome` and the phase map. It is a
            heuristic, not a certificate (it assumes balance and the late phase;
            docs/theory/random-starts.md), checked against independent runs ten
            times longer (benchmarks/RESULTS.md, sections 14.1 and 14.2). False:
            the exponent rule alone (svflow 0.5.0).
        progress: print one line per stage (starts run, decided so far).

    Returns:
        Dataset over ``start`` (absent for one model): ``outcome`` (0 = NC,
        r = rank of the limit direction, -1 = undecided), ``support`` (start, sv)
        as int, ``limit`` (start, sv): $q_i = s_i/s_1$ at the horizon reached,
        ``exponent`` (start, sv): $e_i$ in the last half-decade (``exponent_early``:
        the half-decade before),
        ``kkt_residual`` and ``kkt_slackness``, ``horizon`` ($\tau$ reached:
        the stage that decided the start, or the last), ``num_steps`` (over all
        stages), ``decided_by`` (0 undecided, 1 the exponent rule, 2 the
        hand-off) and ``handoff_ratio`` (start, sv: the map's end ratios, NaN for
        starts not handed off); with ``snapshot_times`` also ``snapshot_sigma``
        (start, snapshot, sv) and ``snapshot_rank``; attrs: thresholds and settings.
    """
    models = _as_models(model)
    single = isinstance(model, DeepUFM)
    hz = _check_horizons(horizons)
    snaps = _check_snapshots(snapshot_times)
    num_times = check_int("num_times", num_times, minimum=11)
    solver = check_solver(solver)
    if snaps.size and np.log1p(snaps[-1]) >= hz[0]:
        raise ValueError(
            f"snapshot_times must lie before the first horizon t = e^{hz[0]:g}; got t = {snaps[-1]:g}."
        )
    kkt, handoff = check_bool("kkt", kkt), check_bool("handoff", handoff)
    progress = check_bool("progress", progress)
    B, K = len(models), models[0].classes
    settings = dict(
        solver=solver,
        return_model=True,
        factor_spectra=False,
    )
    outcome = np.full(B, -1)
    support = np.zeros((B, K - 1), dtype=int)
    limit = np.full((B, K - 1), np.nan)
    exponent = np.full((B, K - 1), np.nan)
    exponent_early = np.full((B, K - 1), np.nan)
    horizon = np.zeros(B)
    steps = np.zeros(B, dtype=int)
    snap_sigma = np.full((B, snaps.size, K - 1), np.nan)
    snap_rank = np.zeros((B, snaps.size), dtype=int)
    finals = list(models)
    stage_states: list[list[DeepUFM]] = [[] for _ in range(B)]  # the state at each horizon reached
    on_rule = np.zeros((B, K - 1), bool)
    off_rule = np.zeros((B, K - 1), bool)
    # rank Z <= the smallest dimension of any factor (a width-d bottleneck caps it at d)
    max_rank = min(K - 1, *(min(np.shape(A)) for A in models[0].factors))
    pending = np.arange(B)
    previous = 0.0
    rank_rtol = None
    for stage, h in enumerate(hz):
        batch = [finals[i] for i in pending]
        if stage == 0:
            grid = np.geomspace(min(0.1, h / 1e3), h, num_times - 1)
            grid = np.union1d(grid, np.log1p(snaps))
            ds, ends = flow(batch, log_times=grid, **settings)
            taus, sig, n_steps = ds.log_t.values, ds.sigma.values, np.atleast_1d(ds["num_steps"].values)
        else:
            pending, taus, sig, n_steps, ends = _continue(batch, pending, previous, h, settings)
            if pending.size == 0:  # every continuation failed: those starts stay undecided
                break
        if stage == 0 and snaps.size:
            at = np.searchsorted(taus, np.log1p(snaps))
            snap_sigma[:] = sig[:, at, : K - 1]
            snap_rank[:] = ds["rank"].values[:, at]
            rank_rtol = ds.attrs["rank_rtol"]
        code, on, q, eB, eA, on_raw, off_raw = _decide(sig, taus, K, h, max_rank, models[0].depth + 1)
        on_rule[pending], off_rule[pending] = on_raw, off_raw
        outcome[pending], support[pending] = code, on.astype(int)
        limit[pending], exponent[pending], horizon[pending] = q, eB, taus[-1]
        exponent_early[pending] = eA
        steps[pending] += n_steps
        for j, i in enumerate(pending):
            finals[i] = ends[j]
            stage_states[i].append(ends[j])
        pending = pending[code < 0]
        previous = h
        if progress:
            decided = int(np.sum(outcome >= 0))
            print(f"outcome: stage tau = {h:g}: {len(batch)} run, {decided} of {B} decided", flush=True)
        if pending.size == 0:
            break
    decided_by = np.where(outcome >= 0, 1, 0)
    handoff_ratio = np.full((B, K - 1), np.nan)
    if handoff:
        for i in np.nonzero(outcome < 0)[0]:
            states = stage_states[i]
            if len(states) < 2:  # one horizon reached: the earlier state a decade before it
                _, early = flow(models[i], log_t_end=float(horizon[i]) / 10, num_times=11, **settings)
                states = [early[0] if isinstance(early, list) else early] + states
            code_i, sup_i, info = handoff_decision(
                states[-2], states[-1], on_rule[i], off_rule[i], exponent[i]
            )
            handoff_ratio[i] = info["ratio"]
            if code_i >= 0:
                outcome[i], support[i], decided_by[i] = code_i, sup_i.astype(int), 2
        if progress:
            print(f"outcome: hand-off: {int(np.sum(decided_by == 2))} more decided", flush=True)
    kkt_values = np.array([kkt_residual(m) for m in finals]) if kkt else np.full((B, 2), np.nan)
    sv = np.arange(K - 1)
    data: dict[str, tuple] = {
        "outcome": (("start",), outcome, {"long_name": "0 = NC, r = rank of the limit, -1 = undecided"}),
        "support": (("start", "sv"), support, {"long_name": "mode in the limit's support"}),
        "limit": (("start", "sv"), limit, {"long_name": "s_i / s_1 of the centred logits at the horizon"}),
        "exponent": (
            ("start", "sv"),
            exponent,
            {"long_name": "d log(s_i/s_1) / d log tau, last half-decade"},
        ),
        "exponent_early": (
            ("start", "sv"),
            exponent_early,
            {"long_name": "d log(s_i/s_1) / d log tau, the half-decade before the last"},
        ),
        "kkt_residual": (("start",), kkt_values[:, 0], {"long_name": "max-margin KKT stationarity residual"}),
        "kkt_slackness": (
            ("start",),
            kkt_values[:, 1],
            {"long_name": "max-margin KKT complementary slackness"},
        ),
        "horizon": (("start",), horizon, {"long_name": "tau = log(1 + t) reached"}),
        "decided_by": (
            ("start",),
            decided_by,
            {"long_name": "0 = undecided, 1 = growth exponents, 2 = frame-free limit map (hand-off)"},
        ),
        "handoff_ratio": (
            ("start", "sv"),
            handoff_ratio,
            {"long_name": "s_i / s_1 at the end of the frame-free limit map (starts handed off)"},
        ),
        "num_steps": (("start",), steps, {"long_name": "solver step attempts, all stages"}),
    }
    coords: dict[str, Any] = {"sv": sv}
    if snaps.size:
        data["snapshot_sigma"] = (
            ("start", "snapshot", "sv"),
            snap_sigma,
            {"long_name": "singular values of the centred logits at snapshot_time"},
        )
        data["snapshot_rank"] = (
            ("start", "snapshot"),
            snap_rank,
            {"long_name": "numerical rank of the centred logits at snapshot_time"},
        )
        coords["snapshot_time"] = ("snapshot", snaps, {"long_name": "gradient-flow time t"})
    attrs = {
        "title": "svflow outcome of the full-parameter flow",
        "engine": "flow",
        "criterion": "late growth exponents of the centred-logit singular values in log tau",
        "classes": int(K),
        "depth": int(models[0].depth),
        "width": int(models[0].width),
        "horizons": np.asarray(hz),
        "q_on": Q_ON,
        "q_off": Q_OFF,
        "e_flat": E_FLAT,
        "e_decay": E_DECAY,
        "kappa": KAPPA,
        "rule": RULE if handoff else RULE_EXPONENTS,
        "handoff": int(handoff),
        "handoff_steps": HANDOFF_STEPS,
        **solver.as_attrs(),
        "init": "; ".join(m.description for m in models),
    }
    if rank_rtol is not None:
        attrs["rank_rtol"] = float(rank_rtol)
    out = xr.Dataset(data, coords=coords, attrs=attrs)
    return out.isel(start=0) if single else out


def is_models(init) -> bool:
    """True for a :class:`DeepUFM` or a non-empty list/tuple of them (the random-start route)."""
    if isinstance(init, DeepUFM):
        return True
    return isinstance(init, (list, tuple)) and bool(init) and all(isinstance(m, DeepUFM) for m in init)


def outcome_of_models(
    init,
    *,
    classes,
    depth,
    batch_dims,
    group,
    horizons,
    solver,
    criterion,
    kkt,
    progress,
) -> xr.Dataset:
    """:func:`svflow.outcome`'s arguments checked for a model ``init``, then :func:`flow_outcome`."""
    models = _as_models(init)
    m0 = models[0]
    for name, given, actual in (("classes", classes, m0.classes), ("depth", depth, m0.depth)):
        if given is not None and check_int(name, given, minimum=1) != actual:
            raise ValueError(
                f"{name}={given} does not match the model(s) in init ({name} {actual}); omit it "
                "(a DeepUFM carries its own K and L)."
            )
    for name, value in (("batch_dims", batch_dims), ("group", group), ("criterion", criterion)):
        if value is not None:
            raise ValueError(
                f"{name}= applies to spectral starts only; got {name}={value!r} with DeepUFM init. "
                "Random starts are decided by the growth-exponent rule and the frame-free limit-map "
                "hand-off (docs: theory/random-starts.md)."
            )
    return flow_outcome(
        init,
        horizons=FLOW_HORIZONS if horizons is None else horizons,
        solver=solver,
        kkt=kkt,
        progress=progress,
    )
