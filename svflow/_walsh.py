r"""Walsh-Hadamard kernels: the transform and closed forms of :class:`svflow.Walsh`.

The Walsh group's methods (:mod:`svflow._groups`) call these functions; they
are not public on their own.

Conventions (docs: theory/spectral.md, 'The Walsh-Hadamard frame'): K = 2^m
classes; Sylvester's Hadamard matrix
$H_{ix} = (-1)^{\mathrm{popcount}(i \,\&\, x)}$ (symmetric, $H H = K I$, first
row and column all ones); $U = H / \sqrt{K}$ is orthogonal. A logit matrix
$Z = U \operatorname{diag}(\lambda) U^\top$ has $Z_{xy} = f(x \oplus y)$ with
$f = H\lambda / K$.
"""

from __future__ import annotations

import math
from functools import lru_cache

import jax.numpy as jnp
import numpy as np
from jax.scipy.special import logsumexp
from jaxtyping import Array, ArrayLike, Float

from ._checks import check_int
from ._precision import computes

AUTO_DENSE_MAX = 64
"""Largest K for which ``method="auto"`` uses the dense matrix (measured on a
2-core AMD EPYC, float64, in whole reduced-ODE solves, single and vmapped:
dense is 7-17 % faster at K = 32, 64; from K = 128 on the butterflies win
single solves (1.2-1.7x) and tie in vmapped batches;
see benchmarks/RESULTS.md, item 3)."""

__all__ = [
    "AUTO_DENSE_MAX",
    "check_classes",
    "hadamard",
    "walsh_transform",
    "margins",
    "ce_loss",
    "one_minus_mu",
    "ce_one_minus_mu",
    "parity",
]


def check_classes(classes: int) -> int:
    """Return m = log2(classes), or raise ``ValueError`` if K is not 2^m >= 2."""
    classes = check_int("classes", classes)
    if classes < 2 or classes & (classes - 1):
        lo = 2 ** max(1, math.floor(math.log2(max(classes, 1))))
        raise ValueError(
            f"classes must be a power of two >= 2 for a Walsh-Hadamard start "
            f"(allowed: 2, 4, 8, 16, 32, ...); got K = {classes}. "
            f"The nearest allowed values are {lo} and {2 * lo}."
        )
    return classes.bit_length() - 1


@computes
def hadamard(classes: int, dtype=None) -> Float[Array, "K K"]:
    r"""Sylvester's Hadamard matrix $H_{ix} = (-1)^{\mathrm{popcount}(i \& x)}$.

    Entries are $\pm 1$ (not normalised): $H H = K I$.
    """
    check_classes(classes)
    idx = np.arange(classes)
    bits = np.bitwise_count(idx[:, None] & idx[None, :]).astype(np.int64)
    return jnp.asarray(1 - 2 * (bits % 2), dtype=dtype or jnp.result_type(float))


def _fwht(x: Array) -> Array:
    """Fast transform along the last axis: O(K log K) butterflies."""
    K = x.shape[-1]
    m = K.bit_length() - 1
    batch = x.shape[:-1]
    y = x.reshape(batch + (2,) * m)
    nb = len(batch)
    for ax in range(nb, nb + m):
        a = jnp.take(y, 0, axis=ax)
        b = jnp.take(y, 1, axis=ax)
        y = jnp.stack([a + b, a - b], axis=ax)
    return y.reshape(x.shape)


@computes
def walsh_transform(x: Float[ArrayLike, "... K"], *, method: str = "auto") -> Float[Array, "... K"]:
    r"""Unnormalised Walsh-Hadamard transform along the last axis: $y = H x$.

    Args:
        x: array whose last axis has length K = 2^m.
        method: ``"fast"`` (butterflies, $O(K \log K)$), ``"dense"`` (matrix
            product, $O(K^2)$) or ``"auto"`` (dense for K <= ``AUTO_DENSE_MAX``
            = 64, where one small matmul beats m separate passes on CPU, fast
            otherwise).

    Jit-, vmap- and grad-compatible. Applying it twice gives ``K * x``.
    """
    x = jnp.asarray(x)
    if x.ndim == 0:
        raise ValueError("walsh_transform needs an array with a last axis of length K = 2^m.")
    K = x.shape[-1]
    check_classes(K)
    if method == "auto":
        method = "dense" if K <= AUTO_DENSE_MAX else "fast"
    if method == "fast":
        return _fwht(x)
    if method == "dense":
        return x @ hadamard(K, dtype=x.dtype)  # H is symmetric
    raise ValueError(f"method must be 'fast', 'dense' or 'auto'; got {method!r}.")


@computes
def margins(lam: Float[ArrayLike, "... K"], *, method: str = "auto") -> Float[Array, "... K"]:
    r"""Margins $m_k = f(0) - f(k)$ with $f = H\lambda/K$.

    $m_k$ is the margin of class $y$ over class $y \oplus k$ (the same for every
    $y$); $m_k = (2/K)\sum_{j:\,\mathrm{popcount}(j\&k)\ \mathrm{odd}} \lambda_j$.
    Entry 0 is 0 by definition (docs: theory/spectral.md, 'Closed forms in the
    frame').
    """
    lam = jnp.asarray(lam)
    f = walsh_transform(lam, method=method) / lam.shape[-1]
    return f[..., :1] - f


def _off_probs(m: Array) -> tuple[Array, Array]:
    """Return (g', log-normaliser): g'(k) = softmax prob of class offset k != 0.

    g'(0) is set to 0; every term is computed as exp(-m_k)/(1 + sum exp(-m)),
    without the cancellation of 1 - g(0).
    """
    K = m.shape[-1]
    mask = jnp.arange(K) != 0
    neg = jnp.where(mask, -m, -jnp.inf)
    # log(1 + sum_{k != 0} exp(-m_k)), stable for margins of either sign
    lse = jnp.logaddexp(0.0, logsumexp(neg, axis=-1))
    gp = jnp.where(mask, jnp.exp(neg - lse[..., None]), 0.0)
    return gp, lse


def ce_loss(lam: Float[ArrayLike, "... K"], *, method: str = "auto") -> Float[Array, "..."]:
    r"""Mean cross-entropy of $Z = U\operatorname{diag}(\lambda)U^\top$ with n = 1:
    $\log(1 + \sum_{k \ne 0} e^{-m_k})$ (accurate for tiny losses)."""
    _, lse = _off_probs(margins(lam, method=method))
    return lse


def one_minus_mu(lam: Float[ArrayLike, "... K"], *, method: str = "auto") -> Float[Array, "... K"]:
    r"""$1 - \mu_j$ for the softmax eigenvalues $\mu = H g$, $g = \mathrm{softmax}(f)$.

    Computed as $\sum_{x\ne 0} g(x) - (H g')_j$ with $g'$ the off-target
    probabilities, which keeps full relative accuracy when the softmax saturates
    ($1 - \mu \sim 1/t$ late in training). Entry 0 is exactly 0.
    """
    lam = jnp.asarray(lam)
    gp, _ = _off_probs(margins(lam, method=method))
    out = jnp.sum(gp, axis=-1, keepdims=True) - walsh_transform(gp, method=method)
    return out.at[..., 0].set(0.0)


def ce_one_minus_mu(lam, method: str = "auto"):
    r"""$1 - \mu$ of the Walsh frame with one exponential per mode (entry 0 is 0).

    With $f = H\lambda$ and $z_k = (f_k - f_0)/K = -m_k$ ($z_0 = 0$), the
    softmax $p = e^{z}/\sum e^{z}$ gives the off-target probabilities $p_k$,
    $k \ne 0$, directly, and $1 - \mu = \sum_{k\ne0}p_k - H p'$ ($p'_0 = 0$)
    without the cancellation of $1 - p_0$. ``method`` picks the Walsh
    transform (as in :func:`walsh_transform`). The inner loop of every balanced
    cross-entropy batch.
    """
    K = lam.shape[-1]
    f = walsh_transform(lam, method=method)
    z = (f - f[..., :1]) / K
    e = jnp.exp(z - jnp.max(z, axis=-1, keepdims=True))
    p = (e / jnp.sum(e, axis=-1, keepdims=True)).at[..., 0].set(0.0)
    return (jnp.sum(p, axis=-1, keepdims=True) - walsh_transform(p, method=method)).at[..., 0].set(0.0)


@lru_cache(maxsize=16)
def parity(K: int) -> np.ndarray:
    r"""(K, K) integer matrix $[\mathrm{popcount}(i\,\&\,k)\ \mathrm{odd}]$: $H = 1 - 2\,\mathrm{parity}$."""
    idx = np.arange(K)
    return (np.bitwise_count(idx[:, None] & idx[None, :]) % 2).astype(np.int64)
