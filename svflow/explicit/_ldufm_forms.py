r"""Explicit low-rank bias of the ReLU L-DUFM: closed forms and explicit constructions.

(docs: theory/explicit-bias.md)

**L-DUFM** (Súkeník, Lampert & Mondelli, arXiv:2405.14468). K classes, n samples
per class, depth L = number of weight matrices, N = L + 1 factors
$F_0 = H, F_1 = W_1, \dots, F_L = W_L$, ReLU $\sigma$ after $W_1 .. W_{L-1}$:

$$\mathcal L = \frac{1}{2Kn}\|W_L\sigma(W_{L-1}\cdots\sigma(W_1H)) - Y\|_F^2
 + \frac{\lambda_H}{2}\|H\|_F^2 + \sum_{l=1}^L\frac{\lambda_l}{2}\|W_l\|_F^2 .$$

*Scale optimisation* (docs: theory/explicit-bias.md, 'Scale optimisation and
the DNC loss'). Fix unit-scale factors $F_j$ with $Z(F) = \text{target}$ and
scale them by $c_j > 0$ (ReLU is positively homogeneous, so the network output
scales by $q = \prod_j c_j$). With $a_j = \|F_j\|_F^2$ ($a_0 = n\|H_{\rm class}\|_F^2$)
AM-GM gives

$$\min_{\prod c_j = q}\ \sum_j \frac{\lambda_j}{2}c_j^2 a_j
 = \frac N2\Big(\prod_j\lambda_j a_j\Big)^{1/N} q^{2/N},$$

attained when every factor pays the same penalty $\lambda_j c_j^2 a_j$
("balanced"; with unequal $\lambda_j$ the scales $c_j$ differ). Writing
$\Lambda = (n\lambda_H\prod_l\lambda_l)^{1/N}$ and $\rho = (\prod_j a_j)^{1/N}/K$
(class-mean norms, $n$ taken out), a construction with $Z = qI$ has loss

$$\min_{q\ge 0}\ \tfrac12(1-q)^2 + \tfrac{K N}{2}\,\rho\,\Lambda\,q^{2/N}
 = f(\rho K\Lambda),\qquad f(c) = \min_{q\ge0}\tfrac12(1-q)^2 + \tfrac N2 c\,q^{2/N}.$$

DNC (orthogonal class means in every layer, $Z = qI$) has $\rho = 1$:
$L_{\rm DNC} = f(K\Lambda)$. The 1-D problem is non-convex for $N > 2$ ($q^{2/N}$ is
concave with infinite slope at 0): $q = 0$ (loss 1/2) is always a local minimum
and the other candidate is the larger root of $(1-q)q^{1-2/N} = c$; both are
compared (:func:`scale_loss`).

**SRG construction** (docs: theory/explicit-bias.md, 'The SRG construction') for
$K = \binom r2$: classes = edges of $K_r$, $B$ the
$r\times K$ vertex-edge incidence matrix, $J - B^\top B$ (entries $-1$ on the
diagonal, 0 for edges sharing a vertex, 1 for disjoint edges), whose ReLU is
the Kneser graph adjacency $A'$ of KG(r, 2), invertible for $r \ge 4$.
Factors (unit scale), for $L \ge 3$:
$(H, W_1)$ = balanced square-root factorisation of $B$ ($B = USV^\top$,
$H = S^{1/2}V^\top$, $W_1 = US^{1/2}$, so $\|H\|^2 = \|W_1\|^2 = \|B\|_*$),
$W_2 = \dots = W_{L-2} = I_r$, $W_{L-1} = \tfrac12 J_{K\times r} - B^\top$ (the
unique $W$ with $WB = J - B^\top B$, using $\mathbf 1^\top B = 2\cdot\mathbf 1^\top$;
$\|W_{L-1}\|^2 = Kr/4$) and $W_L = A'^{-1}$. Then $Z = I$ and
$$\rho^{L+1} = \frac{\|B\|_*^2\, r^{L-2}\,\|A'^{-1}\|_F^2}{4K^L},\qquad
\|B\|_* = \sqrt{2(r-1)} + (r-1)\sqrt{r-2}$$
(the formula is confirmed by building the matrices). For $L = 2$ there is
no room for the $(H, W_1)$ pair in front of the rank-$r$ layer: the formula
above is then *not realisable*. The construction used for $L = 2$ factors the
pre-activation $P = J - B^\top B$ (rank $r$) directly, $(H, W_1)$ = balanced
square-root factorisation of $P$, $W_2 = A'^{-1}$:
$\rho^3 = \|P\|_*^2\|A'^{-1}\|_F^2/K^3$ with
$\|P\|_* = |K - 2r + 2| + (r-1)(r-2)$ (eigenvalues of $J - 2I - A_{T(r)}$).
$\|A'^{-1}\|_F^2 = \big(\tfrac{2}{(r-2)(r-3)}\big)^2 + \tfrac{r-1}{(r-3)^2} +
\tfrac{r(r-3)}2$
(eigenvalues of $A'$: $(r-2)(r-3)/2$, $3-r$ (mult. $r-1$), $1$ (mult. $r(r-3)/2$)).

The construction at its best common scale is *not* a stationary point of the
L-DUFM: full-parameter GD started there (K = 10, L = 4, width 30, lr 0.5)
descends a little further at unchanged ranks (r and K), e.g. from 0.08114 to
0.08100 at all lambdas 0.004 and from 0.3174 to 0.3146 at 0.016. So $L_{\rm SRG}$
is an upper bound on the best low-rank loss, not its value.

Classes beyond $\binom r2$ go into separate block(s) of a block-diagonal
network. The loss is separable over blocks (block-diagonal factors can be
scaled block by block), each class costing $f(\rho_b K\Lambda)/K$ where
$\rho_b$ is its block's $\rho$ (1 for DNC blocks): :func:`relu_blocks`
chooses the best partition by dynamic programming.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from functools import partial
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from .._checks import check_int
from .._full.model import forward
from .._precision import computes
from ._shared import BlockChoice, _check_classes, _check_decay, _check_depth, _check_samples, _partition_dp

__all__ = [
    "ldufm_decay",
    "scale_loss",
    "dnc_loss",
    "SRGMatrices",
    "srg_matrices",
    "srg_factors",
    "dnc_factors",
    "srg_rho",
    "construction_rho",
    "relu_forward",
    "construction_loss",
    "balanced_scales",
    "srg_loss",
    "relu_blocks",
    "network_objective",
    "factor_decays",
]


def factor_decays(depth: int, lam_H: float, lam_W) -> np.ndarray:
    r"""The N = L + 1 weight decays $(\lambda_H, \lambda_1, \dots, \lambda_L)$.

    ``lam_W`` is one number (every layer) or a sequence of L numbers.
    """
    depth = _check_depth(depth)
    lh = _check_decay(lam_H, "lam_H")
    lw = np.atleast_1d(np.asarray(lam_W, dtype=float))
    if lw.ndim != 1 or lw.size not in (1, depth):
        raise ValueError(f"lam_W must be one number or a sequence of L = {depth} numbers; got {lam_W!r}.")
    lw = np.broadcast_to(lw, (depth,))
    for i, v in enumerate(lw):
        _check_decay(v, f"lam_W[{i}]")
    return np.concatenate([[lh], lw]).astype(float)


@computes
def ldufm_decay(depth: int, *, lam_H: float, lam_W, samples: int = 1) -> float:
    r"""$\Lambda = (n\lambda_H\prod_{l=1}^L\lambda_l)^{1/(L+1)}$."""
    lams = factor_decays(depth, lam_H, lam_W)
    n = _check_samples(samples)
    return float(np.exp((np.log(n) + np.sum(np.log(lams))) / lams.size)) if np.all(lams > 0) else 0.0


# --- the 1-D scale problem of the squared loss


@computes
@partial(jax.jit, static_argnums=1)
def scale_loss(c, factors: int):
    r"""$f(c) = \min_{q\ge0}\ \tfrac12(1-q)^2 + \tfrac N2\,c\,q^{2/N}$ and its
    minimiser.

    Stationary points solve $h(q) = (1-q)\,q^{1-2/N} = c$. For $N \ge 3$, $h$ rises
    from 0 to its maximum at $q_* = (N-2)/(2N-2)$ and falls to 0 at $q = 1$; the
    local minimum is the root in $[q_*, 1]$, found by bisection (70 halvings:
    float64 exact), and compared with $q = 0$ (value 1/2). For $N = 2$ the
    problem is convex: $q = \max(1 - c, 0)$. Vectorised over ``c`` (jit, vmap).

    Returns:
        (loss, q)
    """
    c = jnp.asarray(c, dtype=float)
    N = factors
    a = 1.0 - 2.0 / N
    qstar = a / (1.0 + a)
    h = lambda q: (1.0 - q) * q**a  # noqa: E731

    def body(_, lohi):
        lo, hi = lohi
        mid = 0.5 * (lo + hi)
        go_right = h(mid) > c  # h decreasing on [q*, 1]: root lies right of mid
        return jnp.where(go_right, mid, lo), jnp.where(go_right, hi, mid)

    lo0 = jnp.full_like(c, qstar)
    hi0 = jnp.ones_like(c)
    lo, hi = jax.lax.fori_loop(0, 70, body, (lo0, hi0))
    q = 0.5 * (lo + hi)
    q = jnp.where(h(jnp.asarray(qstar)) >= c, q, 0.0)
    val = 0.5 * (1.0 - q) ** 2 + 0.5 * N * c * q ** (2.0 / N)
    take_zero = val >= 0.5
    return jnp.where(take_zero, 0.5, val), jnp.where(take_zero, 0.0, q)


@computes
def dnc_loss(classes: int, depth: int, *, lam_H: float, lam_W, samples: int = 1) -> float:
    r"""Best deep-neural-collapse loss of the L-DUFM (docs: theory/explicit-bias.md),

    $L_{\rm DNC} = \min_{q\ge0}\tfrac12(1-q)^2 + \tfrac{K(L+1)}2\Lambda q^{2/(L+1)}$,
    $\Lambda = (n\lambda_H\prod_l\lambda_l)^{1/(L+1)}$.
    """
    K = _check_classes(classes)
    lam = ldufm_decay(depth, lam_H=lam_H, lam_W=lam_W, samples=samples)
    return float(scale_loss(K * lam, depth + 1)[0])


# --- explicit matrices


class SRGMatrices(NamedTuple):
    """Matrices of the SRG construction for K = C(r, 2) classes (edges of K_r)."""

    incidence: np.ndarray  # B, (r, K): B[v, e] = 1 iff v is an end of edge e
    pre: np.ndarray  # J - B^T B, (K, K): -1 diagonal, 0 for adjacent edges, 1 for disjoint
    kneser: np.ndarray  # A' = relu(J - B^T B), adjacency of KG(r, 2)
    kneser_inv: np.ndarray  # A'^{-1}
    edges: list  # edge e = (u, v), u < v, in lexicographic order


def _check_r(r) -> int:
    if check_int("r", r) < 4:
        raise ValueError(
            "the SRG construction needs r >= 4 graph vertices (K = C(r, 2) >= 6 "
            "classes; the Kneser adjacency of KG(r, 2) is singular for r = 3 and "
            f"empty for r < 3); got r={r!r}."
        )
    return int(r)


@computes
def srg_matrices(r: int) -> SRGMatrices:
    """Build B, J - B^T B, the Kneser adjacency A' and its inverse for K = C(r, 2) (r >=
    4)."""
    r = _check_r(r)
    edges = [(u, v) for u in range(r) for v in range(u + 1, r)]
    K = len(edges)
    B = np.zeros((r, K))
    for e, (u, v) in enumerate(edges):
        B[u, e] = B[v, e] = 1.0
    pre = np.ones((K, K)) - B.T @ B
    kneser = np.maximum(pre, 0.0)
    return SRGMatrices(B, pre, kneser, np.linalg.inv(kneser), edges)


def _sqrt_factor(M: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Balanced factorisation M = W H with ||W||_F^2 = ||H||_F^2 = ||M||_*
    (rank-trimmed)."""
    U, s, Vt = np.linalg.svd(M, full_matrices=False)
    keep = s > s[0] * 1e-12
    U, s, Vt = U[:, keep], s[keep], Vt[keep]
    return U * np.sqrt(s), np.sqrt(s)[:, None] * Vt


@computes
def srg_factors(r: int, depth: int) -> list[np.ndarray]:
    r"""Unit-scale factors $[H, W_1, \dots, W_L]$ of the SRG network (class means, n =
    1).

    Running :func:`relu_forward` on them gives $Z = I_K$; the layers after
    $W_1 .. W_{L-2}$ carry $B$ (rank r), the layer after $W_{L-1}$ carries the
    Kneser adjacency $A'$ (rank K). $L = 2$ and the construction are described on
    the documentation page *Explicit low-rank bias* (``docs/theory/explicit-bias.md``).
    """
    depth = _check_depth(depth, 2)
    m = srg_matrices(r)
    B, K = m.incidence, m.incidence.shape[1]
    if depth == 2:
        W1, H = _sqrt_factor(m.pre)
        return [H, W1, m.kneser_inv]
    W1, H = _sqrt_factor(B)
    mids = [np.eye(r) for _ in range(depth - 3)]
    W_pre = 0.5 * np.ones((K, r)) - B.T
    return [H, W1, *mids, W_pre, m.kneser_inv]


@computes
def dnc_factors(classes: int, depth: int, width: int | None = None, seed: int = 0) -> list[np.ndarray]:
    r"""Unit-scale DNC factors of width d: $H$ = random orthonormal class means,
    $W_1$ maps them onto distinct coordinate axes (non-negative, so ReLU passes),
    $W_2 .. W_{L-1}$ permute axes, $W_L$ reads them out: $Z = I_K$, every
    $\|F_j\|_F^2 = K$, so $\rho = 1$."""
    K = _check_classes(classes)
    depth = _check_depth(depth)
    d = K if width is None else check_int("width", width, minimum=1)
    seed = check_int("seed", seed, minimum=0)
    if d < K:
        raise ValueError(f"DNC needs width >= K = {K}; got width={width!r}.")
    rng = np.random.default_rng(seed)
    V0 = np.linalg.qr(rng.standard_normal((d, K)))[0]
    axes = [np.eye(d)[:, rng.permutation(d)[:K]] for _ in range(depth)]  # (d, K) 0/1 columns
    fs = [V0, axes[0] @ V0.T]
    for l in range(1, depth - 1):
        fs.append(axes[l] @ axes[l - 1].T)
    fs.append(axes[depth - 2].T if depth >= 2 else V0.T)
    if depth == 1:
        fs = [V0, V0.T]
    return fs


@computes
def relu_forward(factors: Sequence) -> jnp.ndarray:
    r"""$Z = W_L\,\sigma(W_{L-1}\cdots\sigma(W_1 H))$ with $\sigma = \mathrm{ReLU}$ (none on H,
    none on Z): the forward pass of the full-parameter model
    (:func:`svflow.DeepUFM` with ``activation="relu"``), here of any matrices."""
    return forward(factors, "relu")


@computes
def construction_rho(factors: Sequence) -> float:
    r"""$\rho = (\prod_j\|F_j\|_F^2)^{1/N}/K$ of unit-scale class-mean factors with $Z =
    I_K$."""
    K = np.asarray(factors[-1]).shape[0]
    logs = [np.log(np.sum(np.asarray(F) ** 2)) for F in factors]
    return float(np.exp(np.mean(logs)) / K)


@computes
def srg_rho(r: int, depth: int) -> float:
    r"""Closed-form $\rho$ of the SRG construction (documentation page *Explicit low-rank bias*).

    $L \ge 3$: $\rho^{L+1} = \|B\|_*^2 r^{L-2}\|A'^{-1}\|_F^2/(4K^L)$;
    $L = 2$: $\rho^3 = \|J - B^\top B\|_*^2\|A'^{-1}\|_F^2/K^3$.
    """
    r = _check_r(r)
    depth = _check_depth(depth, 2)
    K = r * (r - 1) // 2
    ainv2 = (2.0 / ((r - 2) * (r - 3))) ** 2 + (r - 1) / (r - 3) ** 2 + r * (r - 3) / 2
    if depth == 2:
        pnuc = abs(K - 2 * r + 2) + (r - 1) * (r - 2)
        return float((pnuc**2 * ainv2 / K**3) ** (1 / 3))
    bnuc = math.sqrt(2 * (r - 1)) + (r - 1) * math.sqrt(r - 2)
    logr = (
        2 * math.log(bnuc) + (depth - 2) * math.log(r) + math.log(ainv2) - math.log(4) - depth * math.log(K)
    )
    return float(math.exp(logr / (depth + 1)))


@computes
def balanced_scales(factors: Sequence, q: float, *, lam_H: float, lam_W, samples: int = 1) -> np.ndarray:
    r"""Per-factor scales $c_j$ with $\prod_j c_j = q$ minimising
    $\sum_j\frac{\lambda_j}2c_j^2a_j$:
    $c_j = \sqrt{P/(\lambda_j a_j)}$, $P = q^{2/N}(\prod_j\lambda_j a_j)^{1/N}$ (all
    $\lambda_j > 0$)."""
    lams = factor_decays(len(factors) - 1, lam_H, lam_W)
    if np.any(lams <= 0):
        raise ValueError(f"balanced_scales needs every weight decay > 0; got {lams.tolist()}.")
    a = np.array([np.sum(np.asarray(F) ** 2) for F in factors])
    a[0] *= _check_samples(samples)
    N = len(factors)
    P = q ** (2.0 / N) * np.exp(np.mean(np.log(lams * a)))
    return np.sqrt(P / (lams * a))


@computes
def network_objective(factors: Sequence, *, lam_H: float, lam_W, samples: int = 1, targets=None) -> float:
    r"""L-DUFM objective of class-mean factors (H replicated n times per class):
    run the ReLU network, $\frac1{2K}\|Z - Y\|_F^2 + \frac{n\lambda_H}2\|H\|^2 +
    \sum_l\frac{\lambda_l}2\|W_l\|^2$."""
    lams = factor_decays(len(factors) - 1, lam_H, lam_W)
    n = _check_samples(samples)
    Z = np.asarray(relu_forward(factors))
    K = Z.shape[1]
    Y = np.eye(K) if targets is None else np.asarray(targets)
    data = 0.5 * np.sum((Z - Y) ** 2) / K
    pen = [0.5 * lam * np.sum(np.asarray(F) ** 2) for lam, F in zip(lams, factors)]
    pen[0] *= n
    return float(data + np.sum(pen))


@computes
def construction_loss(factors: Sequence, *, lam_H: float, lam_W, samples: int = 1) -> tuple[float, float]:
    r"""Loss of an explicit construction at its best scale, by running the network.

    For each common scale q the factors are rescaled by :func:`balanced_scales`,
    the ReLU network is run (:func:`relu_forward`) and the objective is
    evaluated from the rescaled matrices (:func:`network_objective`); q is then
    optimised by a grid over [0, 1.5] and bounded Brent refinement (q = 0
    included). Returns (loss, q).
    """
    from scipy.optimize import minimize_scalar

    def obj(q):
        if q <= 0:
            return network_objective(
                [0 * np.asarray(F) for F in factors],
                lam_H=lam_H,
                lam_W=lam_W,
                samples=samples,
            )
        c = balanced_scales(factors, q, lam_H=lam_H, lam_W=lam_W, samples=samples)
        return network_objective(
            [cj * np.asarray(F) for cj, F in zip(c, factors)],
            lam_H=lam_H,
            lam_W=lam_W,
            samples=samples,
        )

    grid = np.linspace(0, 1.5, 301)
    vals = np.array([obj(q) for q in grid])
    i = int(np.argmin(vals))
    best_q, best = grid[i], vals[i]
    lo, hi = grid[max(i - 1, 0)], grid[min(i + 1, len(grid) - 1)]
    if hi > lo:
        res = minimize_scalar(obj, bounds=(lo, hi), method="bounded", options={"xatol": 1e-13})
        if res.fun < best:
            best_q, best = float(res.x), float(res.fun)
    return float(best), float(best_q)


@computes
def srg_loss(
    classes: int,
    depth: int,
    *,
    lam_H: float,
    lam_W,
    samples: int = 1,
    r: int | None = None,
) -> float:
    r"""Loss of one SRG block with $\binom r2$ classes plus a DNC block for the rest
    (closed form): $\tfrac{K_1}{K}f(\rho_r K\Lambda) + \tfrac{K-K_1}{K}f(K\Lambda)$.

    ``r`` defaults to the largest r with $\binom r2 \le K$ (needs K >= 6).
    """
    K = _check_classes(classes)
    depth = _check_depth(depth, 2)
    if r is None:
        r = int((1 + math.isqrt(1 + 8 * K)) // 2)
        while r * (r - 1) // 2 > K:
            r -= 1
    r = _check_r(r)
    K1 = r * (r - 1) // 2
    if K1 > K:
        raise ValueError(f"an SRG block with r={r} needs C(r, 2) = {K1} <= K = {K} classes.")
    lam = ldufm_decay(depth, lam_H=lam_H, lam_W=lam_W, samples=samples)
    N = depth + 1
    f_srg = float(scale_loss(srg_rho(r, depth) * K * lam, N)[0])
    f_dnc = float(scale_loss(K * lam, N)[0])
    return (K1 * f_srg + (K - K1) * f_dnc) / K


@computes
def relu_blocks(
    classes: int,
    depth: int,
    *,
    lam_H: float,
    lam_W,
    samples: int = 1,
    tol: float = 1e-12,
) -> BlockChoice:
    r"""Best block-diagonal L-DUFM construction from DNC and SRG blocks (closed forms).

    A class costs $f(K\Lambda)/K$ in the DNC block and $f(\rho_r K\Lambda)/K$ in an
    SRG block of $\binom r2$ classes; the best partition of K classes is found by
    dynamic programming. Categories: ``"zero"`` (the trivial point q = 0 is as
    good as anything), ``"DNC"`` (DNC within ``tol`` of the best), ``"SRG"``
    (one SRG block holding every class), ``"SRG+DNC"`` (one SRG block and a DNC
    block), ``"multi-SRG"`` (several SRG blocks, maybe with a DNC block).
    """
    K = _check_classes(classes)
    depth = _check_depth(depth, 2)
    lam = ldufm_decay(depth, lam_H=lam_H, lam_W=lam_W, samples=samples)
    N = depth + 1
    f_dnc = float(scale_loss(K * lam, N)[0])
    cost = {1: f_dnc / K}
    sizes = [1]
    rs = {}
    r = 4
    while r * (r - 1) // 2 <= K:
        k = r * (r - 1) // 2
        cost[k] = k * float(scale_loss(srg_rho(r, depth) * K * lam, N)[0]) / K
        sizes.append(k)
        rs[k] = r
        r += 1
    loss, parts = _partition_dp(K, sizes, cost)
    srg = [rs[k] for k in parts if k != 1]
    ndnc = sum(1 for k in parts if k == 1)
    blocks = tuple(srg) + ((f"dnc:{ndnc}",) if ndnc else ())
    if abs(f_dnc - 0.5) <= tol and abs(loss - 0.5) <= tol:
        cat = "zero"
    elif f_dnc <= loss + tol:
        cat, blocks = "DNC", (f"dnc:{K}",)
    elif len(srg) == 1:
        cat = "SRG" if ndnc == 0 else "SRG+DNC"
    else:
        cat = "multi-SRG"
    return BlockChoice(float(min(loss, f_dnc)), blocks, cat)
