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

Cross-entropy in log time
-------------------------

The reduced cross-entropy flow written in log time, for any horizon.

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
import numpy as np
from jax.scipy.special import logsumexp
from jaxtyping import Array, Float

from ._groups import AUTO_DENSE_MAX_FFT, Group, Walsh, resolve_group

__all__ = [
    "LOSSES",
    "loss_grad",
    "data_loss",
    "rhs_factors",
    "rhs_balanced",
    "check_loss",
    "scaled_one_minus_mu",
    "CETauField",
]


# --- vector fields in time t
LOSSES = ("ce", "squared")


def check_loss(loss: str) -> str:
    if loss not in LOSSES:
        raise ValueError(
            f"loss must be 'ce' (cross-entropy) or 'squared' (squared loss, target Y = I); got {loss!r}."
        )
    return loss


def loss_grad(lam: Float[Array, "... K"], loss: str, method: str, group: Group) -> Float[Array, "... K"]:
    r"""$G = \partial\,\mathrm{loss}/\partial\lambda$ (mean loss, n = 1).

    Cross-entropy: $G_i = (\mu_i - 1)/K$ (so $G_0 = 0$); squared loss:
    $G_i = (\lambda_i - 1)/K$. ``group``: the :class:`svflow.Group` of the frame.
    """
    K = lam.shape[-1]
    if loss == "ce":
        return -group.one_minus_mu(lam, method=method) / K
    if loss == "squared":
        return (lam - 1.0) / K
    raise ValueError(check_loss(loss))


def data_loss(
    lam: Float[Array, "... K"], loss: str, group: Group, method: str = "auto"
) -> Float[Array, "..."]:
    r"""Mean data loss of $Z = U\operatorname{diag}(\lambda)U^\top$: cross-entropy
    $\log(1+\sum_{k\ne0}e^{-m_k})$, or squared $\sum_i(\lambda_i-1)^2/(2K)$."""
    if loss == "ce":
        return group.ce_loss(lam, method=method)
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
    weight_decay: float | Float[Array, ""],
    group: Group,
    method: str = "auto",
) -> Float[Array, "N K"]:
    r"""$ds_{l,i}/dt = -G_i\prod_{j\ne l}s_{j,i} - wd\,s_{l,i}$ for the (N, K) state."""
    lam = jnp.prod(s, axis=0)
    G = loss_grad(lam, loss, method, group)
    return -G[None, :] * _prod_except(s) - weight_decay * s


def rhs_balanced(
    t,
    lam: Float[Array, " K"],
    loss: str,
    weight_decay: float | Float[Array, ""],
    factors: int,
    group: Group,
    method: str = "auto",
) -> Float[Array, " K"]:
    r"""$d\lambda_i/dt = -N G_i|\lambda_i|^{2-2/N} - N\,wd\,\lambda_i$ (balanced start)."""
    N = factors
    G = loss_grad(lam, loss, method, group)
    return -N * G * jnp.abs(lam) ** (2.0 - 2.0 / N) - N * weight_decay * lam


# --- cross-entropy in log time
def scaled_one_minus_mu(lam: Float[Array, "... K"], tau, group: Group) -> Float[Array, "... K"]:
    r"""$r_i = (1 + t)(1 - \mu_i)$ at $t = e^\tau - 1$, in the log domain (never forms t).

    $r_i = \sum_{c\ne0} e_c - (He)_i$ (Walsh group) with $e_c = \exp(\tau - m_c - \log(1 +
    \sum_{k\ne0} e^{-m_k}))$, $m$ the margins; entry 0 is exactly 0. Equals
    $e^\tau$ times ``group.one_minus_mu(lam)`` wherever that is finite.

    Over any group the same off-target weights $e_x$ of the group elements
    $x \ne 0$ give $r_j = \sum_x e_x (1 - \cos\theta_{k_j}(x))$
    (:meth:`svflow.Group.off_target_rates`).
    """
    lam = jnp.asarray(lam)
    K = lam.shape[-1]
    m = group.margins(lam)
    mask = jnp.arange(K) != 0
    neg = jnp.where(mask, -m, -jnp.inf)
    lse = jnp.logaddexp(0.0, logsumexp(neg, axis=-1))
    e = jnp.where(mask, jnp.exp(jnp.asarray(tau)[..., None] + neg - lse[..., None]), 0.0)
    return group.off_target_rates(e).at[..., 0].set(0.0)


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

    def _group(self, K: int) -> Group:
        """The field's group; ``None`` (a field built by hand) means the default group of K."""
        return resolve_group(self.group, K)

    def loglog_kernel_law(self, classes: int) -> dict | None:
        r"""The field in double-log time as the compiled CPU kernel takes it, or None.

        :mod:`svflow._cpu.tsit5` (clock ``"loglog"``) covers the balanced field
        for the Walsh group of any order and any other group up to K =
        ``AUTO_DENSE_MAX_FFT`` (where :meth:`svflow.Group.margins` uses the
        dense $1 - \cos\theta$ table); the factor form runs on the JAX engine.
        """
        if not self.balanced:
            return None
        group = self._group(classes)
        walsh = isinstance(group, Walsh)
        if not walsh and classes > AUTO_DENSE_MAX_FFT:
            return None
        return dict(
            clock="loglog",
            factors=int(self.factors),
            weight_decay=0.0,
            walsh=walsh,
            one_minus_cos=np.zeros((1, 1)) if walsh else np.asarray(group.one_minus_cos, float),
        )

    def tau_rate(self, tau, y, args=None):
        N = self.factors
        if self.balanced:
            K = y.shape[-1]
            r = scaled_one_minus_mu(y, tau, self._group(K))
            return (N / K) * r * jnp.abs(y) ** (2.0 - 2.0 / N)
        K = y.shape[-1]
        lam = jnp.prod(y, axis=0)
        r = scaled_one_minus_mu(lam, tau, self._group(K))
        ones = jnp.ones_like(y[:1])
        prefix = jnp.cumprod(jnp.concatenate([ones, y[:-1]], axis=0), axis=0)
        suffix = jnp.cumprod(jnp.concatenate([ones, y[:0:-1]], axis=0), axis=0)[::-1]
        return (r / K)[None, :] * prefix * suffix

    def __call__(self, t, y, args=None):
        tau = jnp.log1p(t)
        return jnp.exp(-tau) * self.tau_rate(tau, y, args)
