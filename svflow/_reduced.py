r"""Vector fields of the reduced singular-value ODE (docs: theory/reduced-ode.md).

Under a spectral start (Walsh-Hadamard for K = 2^m, or the real character
basis of any finite abelian group of order K, :mod:`svflow._groups`) the factors are
$H = V_1 \operatorname{diag}(s_0) U^\top$, $W_l = V_{l+1}\operatorname{diag}(s_l)V_l^\top$,
$W_L = U \operatorname{diag}(s_L) V_L^\top$ and the logits are
$Z = U\operatorname{diag}(\lambda)U^\top$ with $\lambda_i = \prod_l s_{l,i}$.
Gradient flow of the mean loss (plus $\tfrac{wd}{2}\sum_l \|W_l\|_F^2$) keeps the
frames fixed and moves only the singular values:

$$\frac{ds_{l,i}}{dt} = -G_i \prod_{j\ne l} s_{j,i} - wd\, s_{l,i},\qquad
G_i = \partial\,\mathrm{loss}/\partial\lambda_i,$$

with $G_i = (\mu_i - 1)/K$ for cross-entropy ($n = 1$) and
$G_i = (\lambda_i - 1)/K$ for the squared loss with $Y = I$. Depth $L$ is the
number of weight matrices; there are $N = L + 1$ factors.

On a balanced start ($|s_{l,i}|$ equal across $l$) $\lambda$ evolves alone:
$$\frac{d\lambda_i}{dt} = -N G_i |\lambda_i|^{2 - 2/N} - N\,wd\,\lambda_i.$$
"""

from __future__ import annotations

import jax.numpy as jnp
from jaxtyping import Array, Float

from ._groups import group_ce_loss, group_one_minus_mu

__all__ = ["LOSSES", "loss_grad", "data_loss", "rhs_factors", "rhs_balanced", "check_loss"]

LOSSES = ("ce", "squared")


def check_loss(loss: str) -> str:
    if loss not in LOSSES:
        raise ValueError(
            f"loss must be 'ce' (cross-entropy) or 'squared' (squared loss, target Y = I); got {loss!r}."
        )
    return loss


def loss_grad(
    lam: Float[Array, "... K"], loss: str, method: str = "auto", group=None
) -> Float[Array, "... K"]:
    r"""$G = \partial\,\mathrm{loss}/\partial\lambda$ (mean loss, n = 1).

    Cross-entropy: $G_i = (\mu_i - 1)/K$ (so $G_0 = 0$); squared loss:
    $G_i = (\lambda_i - 1)/K$. ``group``: the character basis (``None``: Walsh
    for K = 2^m, else cyclic; see :mod:`svflow._groups`).
    """
    K = lam.shape[-1]
    if loss == "ce":
        return -group_one_minus_mu(lam, group, method=method) / K
    if loss == "squared":
        return (lam - 1.0) / K
    raise ValueError(check_loss(loss))


def data_loss(lam: Float[Array, "... K"], loss: str, method: str = "auto", group=None) -> Float[Array, "..."]:
    r"""Mean data loss of $Z = U\operatorname{diag}(\lambda)U^\top$: cross-entropy
    $\log(1+\sum_{k\ne0}e^{-m_k})$, or squared $\sum_i(\lambda_i-1)^2/(2K)$."""
    if loss == "ce":
        return group_ce_loss(lam, group, method=method)
    K = lam.shape[-1]
    return jnp.sum((lam - 1.0) ** 2, axis=-1) / (2 * K)


def _prod_except(s: Float[Array, "N K"]) -> Float[Array, "N K"]:
    r"""$\prod_{j \ne l} s_{j,i}$ for every l, without division (prefix x suffix)."""
    ones = jnp.ones_like(s[:1])
    prefix = jnp.cumprod(jnp.concatenate([ones, s[:-1]], axis=0), axis=0)
    suffix = jnp.cumprod(jnp.concatenate([ones, s[:0:-1]], axis=0), axis=0)[::-1]
    return prefix * suffix


def rhs_factors(
    t,
    s: Float[Array, "N K"],
    loss: str,
    weight_decay: float,
    method: str = "auto",
    group=None,
) -> Float[Array, "N K"]:
    r"""$ds_{l,i}/dt = -G_i\prod_{j\ne l}s_{j,i} - wd\,s_{l,i}$ for the (N, K) state."""
    lam = jnp.prod(s, axis=0)
    G = loss_grad(lam, loss, method, group)
    return -G[None, :] * _prod_except(s) - weight_decay * s


def rhs_balanced(
    t,
    lam: Float[Array, " K"],
    loss: str,
    weight_decay: float,
    factors: int,
    method: str = "auto",
    group=None,
) -> Float[Array, " K"]:
    r"""$d\lambda_i/dt = -N G_i|\lambda_i|^{2-2/N} - N\,wd\,\lambda_i$ (balanced start)."""
    N = factors
    G = loss_grad(lam, loss, method, group)
    return -N * G * jnp.abs(lam) ** (2.0 - 2.0 / N) - N * weight_decay * lam
