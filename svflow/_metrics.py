r"""Per-time quantities shared by both engines (pure functions on arrays).

All of them take the time axis first and work batched over leading axes.
"""

from __future__ import annotations

import jax.numpy as jnp
import numpy as np
from jaxtyping import Array, Float

from ._groups import Group

__all__ = [
    "RANK_RTOL",
    "RANK_ATOL",
    "sigma_from_lam",
    "rank_from_sigma",
    "margin_from_lam",
    "margin_from_logits",
    "sigma_from_logits",
]

RANK_RTOL = 0.1
"""Default relative threshold of the numerical rank: sigma_i > RANK_RTOL * sigma_max."""

RANK_ATOL = 1e-8
"""Absolute floor of the numerical rank: singular values <= RANK_ATOL count as zero,
so logits that weight decay shrinks to nothing have rank 0, not K - 1."""


def sigma_from_lam(lam: Float[Array, "... K"]) -> Float[Array, "... K"]:
    r"""Singular values of the centred logits $Z(I - \mathbf{1}\mathbf{1}^\top/K)$, decreasing.

    Centring removes mode 0, so they are $|\lambda_i|$ for $i \ge 1$ and a 0.
    """
    mags = jnp.abs(lam).at[..., 0].set(0.0)
    return -jnp.sort(-mags, axis=-1)


def sigma_from_logits(Z: Float[Array, "... K M"], classes_per_column=None) -> Float[Array, "... K"]:
    r"""Singular values (decreasing) of the centred class-mean logits.

    ``Z`` has shape (..., K, K n) with columns ordered class-major
    (column $c n + j$ is sample $j$ of class $c$); class means are taken, then
    the mean over classes is subtracted from every column.
    """
    K, M = Z.shape[-2], Z.shape[-1]
    n = M // K
    means = Z.reshape(Z.shape[:-1] + (K, n)).mean(axis=-1)
    centred = means - means.mean(axis=-1, keepdims=True)
    return jnp.linalg.svd(centred, compute_uv=False)


def rank_from_sigma(sigma: Float[Array | np.ndarray, "... K"], rtol: float = RANK_RTOL) -> Array:
    r"""Numerical rank: the number of singular values with
    $\sigma_i > \max(\text{rtol}\,\sigma_{\max}, \text{RANK\_ATOL})$, RANK_ATOL = 1e-8."""
    top = sigma.max(axis=-1, keepdims=True)
    return jnp.sum((sigma > rtol * top) & (sigma > RANK_ATOL), axis=-1)


def margin_from_lam(lam: Float[Array, "... K"], group: Group) -> Float[Array, "..."]:
    r"""Smallest margin $\min_{k \ne 0} m_k = \min_y (Z_{yy} - \max_{c\ne y} Z_{cy})$
    (``group``: the character basis of ``lam``, default Walsh for K = 2^m, else cyclic)."""
    return group.margins(lam)[..., 1:].min(axis=-1)


def margin_from_logits(Z: Float[Array, "... K M"]) -> Float[Array, "..."]:
    r"""$\min_{\text{columns}}\,(Z_{y,\text{col}} - \max_{c \ne y} Z_{c,\text{col}})$,
    columns class-major (column $c n + j$ belongs to class $c$)."""
    K, M = Z.shape[-2], Z.shape[-1]
    n = M // K
    y = jnp.repeat(jnp.arange(K), n)
    onehot = jnp.arange(K)[:, None] == y[None, :]
    correct = jnp.sum(jnp.where(onehot, Z, 0.0), axis=-2)
    other = jnp.max(jnp.where(onehot, -jnp.inf, Z), axis=-2)
    return jnp.min(correct - other, axis=-1)
