r"""Explicit low-rank bias of the deep linear UFM with cross-entropy and weight decay:
closed forms and code constructions.

(docs: theory/explicit-bias.md)

**Deep linear UFM, cross-entropy, weight decay wd on every factor**
(arXiv:2410.23169; docs: theory/explicit-bias.md, 'Deep linear UFM with
cross-entropy and weight decay'): minimising the penalty over factorisations of $Z$ gives
$\mathrm{CE}(Z) + \tfrac{wd}{2}N\sum_i\sigma_i(Z)^{2/N}$. Block codes
$Z = \bigoplus_b s_b(I_{k_b} - \mathbf 1\mathbf 1^\top/k_b)$ ($k_b - 1$ singular
values $s_b$, times $\sqrt n$ for n samples per class) give a loss separable
over blocks, a class in a block of size k having
$$\mathrm{CE}_k(s) = \log\big(1 + (k-1)e^{-s} + (K-k)e^{-s(1-1/k)}\big).$$
DNC is the single block $k = K$ ($s = \alpha$); the 2 x 2 block competitor
$\beta\begin{pmatrix}1&-1\\-1&1\end{pmatrix}$ is $k = 2$, $s = 2\beta$ (odd K: one
block of 3). :func:`ce_blocks` chooses the best partition.

Block codes are not the end of the story. The hypercube
code (:func:`hypercube_code`; for $K = 2^m$ the Walsh code on the modes
$\{2^b\}$, rank $\log_2 K$) has the lowest loss of these candidates for deep
models and many K (e.g. K = 8, L = 5, wd = 1e-3: 0.02956 against 0.03208
for the pairs and 0.04426 for DNC), and the reduced ODE with weight decay
reaches it from spectral starts. The rank-2 regular polygon
(:func:`polygon_code`, class y at angle $2\pi y/K$,
$Z_0 = \cos(\theta_x - \theta_y)$, the K-gon code of the cyclic group) does
better still for deep models: K = 8, wd = 1e-3: 0.02917 against 0.02956 at
L = 5, 0.02621 against 0.03015 at L = 8. :func:`ce_codes` compares all of them.
"""

from __future__ import annotations

import math
from functools import partial

import jax
import jax.numpy as jnp
import numpy as np
from jaxtyping import ArrayLike, Float, Real

from .._checks import check_int
from .._precision import computes
from ._shared import BlockChoice, _check_classes, _check_decay, _check_depth, _check_samples, _partition_dp

__all__ = [
    "ce_block_loss",
    "ce_dnc_loss",
    "ce_pair_loss",
    "ce_blocks",
    "ce_objective",
    "hypercube_code",
    "polygon_code",
    "ce_code_loss",
    "ce_codes",
]


def _ce_block_terms(s, k, K, factors: int, wd, samples):
    s = jnp.asarray(s, dtype=float)
    k = jnp.asarray(k, dtype=float)
    K = jnp.asarray(K, dtype=float)
    terms = jnp.stack(
        [
            jnp.zeros_like(s),
            jnp.log(k - 1.0) - s,  # -inf for k = 1
            jnp.log(K - k) - s * (1.0 - 1.0 / k),  # -inf for k = K
        ]
    )
    ce = jax.nn.logsumexp(terms, axis=0)
    pen = 0.5 * wd * factors * (k - 1.0) * (jnp.sqrt(samples) * s) ** (2.0 / factors)
    return (k / K) * ce + pen


def _golden_min(fun, lo, hi, iters: int = 90):
    g = (math.sqrt(5.0) - 1.0) / 2.0

    def body(_, st):
        a, b = st
        x1 = b - g * (b - a)
        x2 = a + g * (b - a)
        left = fun(x1) < fun(x2)
        return jnp.where(left, a, x1), jnp.where(left, x2, b)

    a, b = jax.lax.fori_loop(0, iters, body, (lo, hi))
    return 0.5 * (a + b)


_S_GRID = np.concatenate([[0.0], np.geomspace(1e-6, 1e3, 4000)])


@partial(jax.jit, static_argnums=2)
@partial(jax.vmap, in_axes=(0, None, None, None, None))
def _ce_block_min(k, K, factors: int, wd, samples):
    fun = lambda s: _ce_block_terms(s, k, K, factors, wd, samples)  # noqa: E731
    grid = jnp.asarray(_S_GRID)
    vals = fun(grid)
    i = jnp.argmin(vals)
    lo = grid[jnp.maximum(i - 1, 0)]
    hi = grid[jnp.minimum(i + 1, grid.size - 1)]
    s = _golden_min(fun, lo, hi)
    v = fun(s)
    better = v < vals[i]
    return jnp.where(better, v, vals[i]), jnp.where(better, s, grid[i])


def _ce_block_table(K: int, depth: int, wd: float, samples: int) -> tuple[np.ndarray, np.ndarray]:
    """Values and minimisers of :func:`ce_block_loss` for every k = 1..K (one compiled
    call)."""
    size = 64 * (-(-K // 64))  # pad to a multiple of 64: one compilation per depth
    ks = jnp.minimum(jnp.arange(1, size + 1, dtype=float), float(K))
    v, s = _ce_block_min(ks, float(K), depth + 1, wd, float(samples))
    return np.asarray(v)[:K], np.asarray(s)[:K]


@computes
def ce_block_loss(
    k: int, classes: int, depth: int, *, weight_decay: float, samples: int = 1
) -> tuple[float, float]:
    r"""Best contribution of one block $s(I_k - \mathbf 1\mathbf 1^\top/k)$ of a K-class
    block code: $\min_{s\ge0}\ \tfrac kK\mathrm{CE}_k(s) + \tfrac{wd}2N(k-1)(\sqrt n
    s)^{2/N}$.
    Grid (s = 0 and 4000 log-spaced points in [1e-6, 1e3]) then golden section.
    Returns (value, s)."""
    K = _check_classes(classes)
    depth = _check_depth(depth)
    wd = _check_decay(weight_decay, "weight_decay")
    k = check_int("k (block size)", k, minimum=1, maximum=K)
    v, s = _ce_block_table(K, depth, wd, _check_samples(samples))
    return float(v[k - 1]), float(s[k - 1])


@computes
def ce_dnc_loss(classes: int, depth: int, *, weight_decay: float, samples: int = 1) -> tuple[float, float]:
    r"""DNC of the deep linear CE model with weight decay: $Z = \alpha(I - \mathbf
    1\mathbf 1^\top/K)$,
    $\min_\alpha \log(1 + (K-1)e^{-\alpha}) + \tfrac{wd}2(L+1)(K-1)(\sqrt
    n\alpha)^{2/(L+1)}$.
    Returns (loss, alpha)."""
    return ce_block_loss(classes, classes, depth, weight_decay=weight_decay, samples=samples)


@computes
def ce_pair_loss(classes: int, depth: int, *, weight_decay: float, samples: int = 1) -> tuple[float, float]:
    r"""The 2 x 2 block competitor $Z =
    \beta\,\mathrm{blockdiag}\begin{pmatrix}1&-1\\-1&1\end{pmatrix}$
    (K even; odd K adds one simplex block of 3 classes). Per pair
    $\mathrm{CE} = \log(1 + e^{-2\beta} + (K-2)e^{-\beta})$, singular value $2\beta$.
    Returns (loss, beta)."""
    K = _check_classes(classes)
    if K < 4 and K != 2:
        raise ValueError(f"the 2 x 2 block competitor needs K = 2 or K >= 4 classes; got {K}.")
    npair = K // 2 if K % 2 == 0 else (K - 3) // 2
    v2, s2 = ce_block_loss(2, K, depth, weight_decay=weight_decay, samples=samples)
    total = npair * v2
    if K % 2:
        total += ce_block_loss(3, K, depth, weight_decay=weight_decay, samples=samples)[0]
    return float(total), s2 / 2.0


@computes
def ce_blocks(
    classes: int,
    depth: int,
    *,
    weight_decay: float,
    samples: int = 1,
    tol: float = 1e-12,
) -> BlockChoice:
    r"""Best block code $\bigoplus_b s_b(I_{k_b} - \mathbf 1\mathbf 1^\top/k_b)$ of the
    deep
    linear CE model with weight decay (dynamic programming over block sizes).

    Categories: ``"zero"`` (Z = 0, loss log K, is as good), ``"DNC"`` (single
    block, within ``tol``), ``"pairs"`` (2 x 2 blocks, plus one 3-block for odd
    K), ``"other"`` (any other partition)."""
    K = _check_classes(classes)
    depth = _check_depth(depth)
    wd = _check_decay(weight_decay, "weight_decay")
    vals, _ = _ce_block_table(K, depth, wd, _check_samples(samples))
    cost = {k: float(vals[k - 1]) for k in range(1, K + 1)}
    loss, parts = _partition_dp(K, list(range(1, K + 1)), cost)
    dnc = cost[K]
    pairs = sorted([2] * (K // 2) if K % 2 == 0 else [3] + [2] * ((K - 3) // 2), reverse=True)
    if abs(loss - math.log(K)) <= tol and abs(dnc - math.log(K)) <= tol:
        return BlockChoice(float(loss), (K,), "zero")
    if dnc <= loss + tol:
        return BlockChoice(float(dnc), (K,), "DNC")
    pair_loss = sum(cost[k] for k in pairs) if K >= 4 else math.inf
    if pair_loss <= loss + tol:
        return BlockChoice(float(pair_loss), tuple(pairs), "pairs")
    return BlockChoice(float(loss), tuple(parts), "other")


@computes
def ce_objective(Z: Real[ArrayLike, "K Kn"], depth: int, *, weight_decay: float) -> float:
    r"""$\mathrm{CE}(Z) + \tfrac{wd}2(L+1)\sum_i\sigma_i(Z)^{2/(L+1)}$ for logits Z of
    shape (K, K n),
    columns class-major: the deep linear UFM objective at its best factorisation of Z.
    Singular values below ``max(K, Kn) * eps * sigma_max`` count as zero."""
    Z = np.asarray(Z, dtype=float)
    K, M = Z.shape
    n = M // K
    y = np.repeat(np.arange(K), n)
    lse = np.log(np.sum(np.exp(Z - Z.max(axis=0)), axis=0)) + Z.max(axis=0)
    ce = np.mean(lse - Z[y, np.arange(M)])
    N = _check_depth(depth) + 1
    sv = np.linalg.svd(Z, compute_uv=False)
    # round-off singular values of a rank-deficient Z (about eps * sigma_max) would
    # add eps^(2/N), far above eps, for deep models: treat them as zero
    sv = np.where(sv > max(Z.shape) * np.finfo(float).eps * sv.max(initial=0.0), sv, 0.0)
    return float(ce + 0.5 * _check_decay(weight_decay, "weight_decay") * N * np.sum(sv ** (2.0 / N)))


# --- general fixed-direction codes of the CE model (e.g. the hypercube)


@computes
def hypercube_code(classes: int) -> Float[np.ndarray, "K K"]:
    r"""Logit direction of the hypercube code: class y at the vertex $v_y\in\{\pm1\}^m$
    given by the bits of y ($m = \lceil\log_2 K\rceil$), $Z_0 = V^\top V$ ($K\times K$,
    rank m). For $K = 2^m$ it is the Walsh code on the modes $\{2^b\}$ (rank $\log_2 K$;
    docs: theory/spectral.md, 'Low-rank solutions are hypercube codes')."""
    K = _check_classes(classes)
    m = max(1, math.ceil(math.log2(K)))
    V = np.array([[1.0 - 2.0 * ((y >> b) & 1) for y in range(K)] for b in range(m)])
    return V.T @ V


def polygon_code(classes: int, frequency: int = 1) -> Float[np.ndarray, "K K"]:
    r"""Logit direction of the regular K-gon: class y at the unit vector of angle
    $\theta_y = 2\pi k y/K$, $Z_0[x, y] = \cos(\theta_x - \theta_y)$ (K x K, rank 2 for
    K >= 3, singular values K/2, K/2). With k coprime to K it separates every class
    with one-vs-rest margin $\rho = 1 - \cos(2\pi/K)$; it is the cyclic-group code on
    the pair of frequency k (:func:`svflow.spectral_basis` with ``group="cyclic"``)."""
    K = _check_classes(classes, 3)
    if (
        isinstance(frequency, bool)
        or not isinstance(frequency, (int, np.integer))
        or not 1 <= frequency < K
        or math.gcd(int(frequency), K) != 1
    ):
        raise ValueError(
            f"frequency must be an integer in [1, K) coprime to K = {K} (else classes "
            f"coincide); got {frequency!r}."
        )
    theta = 2.0 * np.pi * int(frequency) * np.arange(K) / K
    return np.cos(theta[:, None] - theta[None, :])


@computes
def ce_code_loss(
    direction: Real[ArrayLike, "K K"], depth: int, *, weight_decay: float, samples: int = 1
) -> tuple[float, float]:
    r"""$\min_{\beta\ge0}\ \mathrm{CE}(\beta Z_0) +
    \tfrac{wd}2N\beta^{2/N}\sum_i\sigma_i(\sqrt n Z_0)^{2/N}$
    for a fixed class-mean logit direction $Z_0$ (K x K, column y = class y).
    Grid (0 and 3000 log-spaced points in [1e-6, 1e3]) then golden section
    (numpy). Returns (loss, beta)."""
    Z0 = np.asarray(direction, dtype=float)
    if Z0.ndim != 2 or Z0.shape[0] != Z0.shape[1]:
        raise ValueError(f"direction must be a square (K, K) logit matrix; got shape {Z0.shape}.")
    K = _check_classes(Z0.shape[0])
    N = _check_depth(depth) + 1
    wd = _check_decay(weight_decay, "weight_decay")
    n = _check_samples(samples)
    sv = np.linalg.svd(Z0, compute_uv=False)
    sv = sv[sv > K * np.finfo(float).eps * sv.max(initial=0.0)]
    pen = 0.5 * wd * N * np.sum((math.sqrt(n) * sv) ** (2.0 / N))
    gap = Z0 - np.diag(Z0)[None, :]  # z_c - z_y, column y

    def fun(b):
        b = np.atleast_1d(b)[:, None, None]
        x = b * gap[None]
        mx = x.max(axis=1, keepdims=True)
        ce = (np.log(np.exp(x - mx).sum(axis=1)) + mx[:, 0]).mean(axis=-1)
        return ce + pen * np.atleast_1d(b)[:, 0, 0] ** (2.0 / N)

    grid = np.concatenate([[0.0], np.geomspace(1e-6, 1e3, 3000)])
    vals = np.concatenate([fun(g) for g in np.array_split(grid, 30)])
    i = int(np.argmin(vals))
    a, b = grid[max(i - 1, 0)], grid[min(i + 1, grid.size - 1)]
    g = (math.sqrt(5.0) - 1.0) / 2.0
    for _ in range(90):
        x1, x2 = b - g * (b - a), a + g * (b - a)
        if fun(x1)[0] < fun(x2)[0]:
            b = x2
        else:
            a = x1
    x = 0.5 * (a + b)
    v = float(fun(x)[0])
    return (v, float(x)) if v < vals[i] else (float(vals[i]), float(grid[i]))


@computes
def ce_codes(
    classes: int,
    depth: int,
    *,
    weight_decay: float,
    samples: int = 1,
    tol: float = 1e-12,
) -> BlockChoice:
    r"""Best of the CE candidates: block codes (:func:`ce_blocks`: DNC, pairs, other
    partitions), the hypercube code (:func:`hypercube_code`, K >= 3) and the regular
    K-gon (:func:`polygon_code`, rank 2, K >= 5; for K = 3, 4 it is the simplex /
    the pairs' span and adds nothing).
    Categories: ``"zero"``, ``"DNC"``, ``"pairs"``, ``"other"`` (blocks),
    ``"hypercube"`` or ``"polygon"`` (blocks ``("polygon:K",)``)."""
    blocks = ce_blocks(classes, depth, weight_decay=weight_decay, samples=samples, tol=tol)
    if classes < 3:
        return blocks
    hyp, _ = ce_code_loss(hypercube_code(classes), depth, weight_decay=weight_decay, samples=samples)
    best = blocks
    if hyp < best.loss - tol:
        m = max(1, math.ceil(math.log2(classes)))
        best = BlockChoice(float(hyp), (f"hypercube:{m}",), "hypercube")
    if classes >= 5:
        poly, _ = ce_code_loss(polygon_code(classes), depth, weight_decay=weight_decay, samples=samples)
        if poly < best.loss - tol:
            best = BlockChoice(float(poly), (f"polygon:{classes}",), "polygon")
    return best
