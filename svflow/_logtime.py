r"""The reduced cross-entropy flow written in log time, for any horizon.

Gradient-flow time t is a poor variable late in training: the margins grow
like $\log t$ and the direction converges like a power of $1/\log t$. svflow
therefore integrates in $\tau = \log(1 + t)$ (the ``"log"`` clock) or in
$\sigma = \log(1 + \tau)$ (the ``"loglog"`` clock). To reach horizons such as
$t = e^{10^4}$ the right-hand side must not form t: with $f = H\lambda/K$ the
Walsh-frame logits (:mod:`svflow._walsh`) and $g = \mathrm{softmax}(f)$,

$$(1 + t)(1 - \mu_i) = 2\sum_{c:\,H_{ic} < 0} e^{\tau + f_c - \operatorname{logsumexp}(f)}
   = \sum_{c \ne 0} e_c - (H e)_i,\qquad e_c = e^{\tau + \log g_c}\ (c \ne 0),$$

(the class offset c = 0 never enters: $H_{i0} = 1$), and every exponent stays
of order one because $\log g_c \approx -m_c \approx -\tau$ late. Hence, for
cross-entropy without weight decay (mean loss, n = 1, $G_i = (\mu_i - 1)/K$),

$$\frac{d\lambda_i}{d\tau} = \frac{N}{K}\,r_i\,|\lambda_i|^{2-2/N},\qquad
  \frac{ds_{l,i}}{d\tau} = \frac{r_i}{K}\prod_{j\ne l}s_{j,i},\qquad
  r_i = (1+t)(1-\mu_i),$$

(balanced and factor forms; depth L weight matrices, N = L + 1 factors) and
$dy/d\sigma = (1 + \tau)\,dy/d\tau$ with $\tau = e^\sigma - 1$.
"""

from __future__ import annotations

import equinox as eqx
import jax.numpy as jnp
from jax.scipy.special import logsumexp
from jaxtyping import Array, Float

from ._groups import Group, _group_of, group_margins
from ._walsh import walsh_transform

__all__ = ["scaled_one_minus_mu", "CETauField"]


def scaled_one_minus_mu(lam: Float[Array, "... K"], tau, group=None) -> Float[Array, "... K"]:
    r"""$r_i = (1 + t)(1 - \mu_i)$ at $t = e^\tau - 1$, in the log domain (never forms t).

    $r_i = \sum_{c\ne0} e_c - (He)_i$ with $e_c = \exp(\tau - m_c - \log(1 +
    \sum_{k\ne0} e^{-m_k}))$, $m$ the margins; entry 0 is exactly 0. Equals
    $e^\tau$ times :func:`svflow._walsh.one_minus_mu` wherever that is finite.

    Over another group (``group``, :func:`svflow.spectral_basis`) the same
    off-target weights $e_x$ of the group elements $x \ne 0$ give
    $r_j = \sum_x e_x (1 - \cos\theta_{k_j}(x))$, every term nonnegative.
    """
    lam = jnp.asarray(lam)
    K = lam.shape[-1]
    g = _group_of(group, K)
    m = group_margins(lam, g)
    mask = jnp.arange(K) != 0
    neg = jnp.where(mask, -m, -jnp.inf)
    lse = jnp.logaddexp(0.0, logsumexp(neg, axis=-1))
    e = jnp.where(mask, jnp.exp(jnp.asarray(tau)[..., None] + neg - lse[..., None]), 0.0)
    if g.name == "walsh":
        out = jnp.sum(e, axis=-1, keepdims=True) - walsh_transform(e)
    else:
        out = e @ jnp.asarray(g._tables["one_minus_cos"], dtype=e.dtype)
    return out.at[..., 0].set(0.0)


class CETauField(eqx.Module):
    r"""Reduced cross-entropy flow (no weight decay) as a field in $\tau = \log(1+t)$.

    ``tau_rate(tau, y, args)`` is $dy/d\tau$ computed in the log domain (any
    $\tau$); ``__call__(t, y, args)`` is $dy/dt$ (finite t only), so the field
    also works on the plain clock. ``balanced=True``: y is $\lambda$ (K,) and
    the balanced law is used; otherwise y is $s$ (N, K).
    """

    factors: int = eqx.field(static=True)
    balanced: bool = eqx.field(static=True)
    group: Group | None = eqx.field(static=True, default=None)

    def tau_rate(self, tau, y, args=None):
        N = self.factors
        if self.balanced:
            K = y.shape[-1]
            r = scaled_one_minus_mu(y, tau, self.group)
            return (N / K) * r * jnp.abs(y) ** (2.0 - 2.0 / N)
        K = y.shape[-1]
        lam = jnp.prod(y, axis=0)
        r = scaled_one_minus_mu(lam, tau, self.group)
        ones = jnp.ones_like(y[:1])
        prefix = jnp.cumprod(jnp.concatenate([ones, y[:-1]], axis=0), axis=0)
        suffix = jnp.cumprod(jnp.concatenate([ones, y[:0:-1]], axis=0), axis=0)[::-1]
        return (r / K)[None, :] * prefix * suffix

    def __call__(self, t, y, args=None):
        tau = jnp.log1p(t)
        return jnp.exp(-tau) * self.tau_rate(tau, y, args)
