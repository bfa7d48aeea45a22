r"""The full-parameter deep UFM as an equinox module, and its starts.

Model (docs: theory/models.md, 'The deep unconstrained features model'): K
classes, n samples per class, width d, depth L (L weight matrices, N = L + 1
factors), no biases:

$$Z = W_L\,\sigma(W_{L-1}\cdots\sigma(W_1 H)) \in \mathbb{R}^{K\times Kn},$$

$H \in \mathbb{R}^{d\times Kn}$ (free features),
$W_1..W_{L-1}\in\mathbb{R}^{d\times d}$,
$W_L \in \mathbb{R}^{K\times d}$; $\sigma$ is the identity (``"linear"``) or
ReLU after $W_1..W_{L-1}$ (``"relu"``; none on H, none on the output).
Columns are class-major: column $c n + j$ is sample $j$ of class $c$.
With ReLU, the squared loss and weight decay this is the L-DUFM of Súkeník,
Lampert & Mondelli (2024), whose runs, closed forms and polish live in
:mod:`svflow.explicit`. :func:`layers` is the one forward pass (every layer
kept); :func:`forward` is its output.

Losses (mean over the Kn samples): cross-entropy
$\frac{1}{Kn}\sum_{\text{col}}(\operatorname{logsumexp}(z) - z_y)$ or squared
$\|Z - Y\|_F^2/(2Kn)$ with one-hot Y. The objective adds weight decay
$\sum_{l=0}^{N-1}\tfrac{wd_l}{2}\|A_l\|_F^2$ over the factors
$A_0 = H, A_1 = W_1, \ldots, A_L = W_L$ (one wd for all, or one per factor).

Starts: :func:`spectral_model` (Walsh-Hadamard; the product equals the reduced
ODE's start, docs: theory/spectral.md, 'Factors in the frame'),
:func:`random_model` (Gaussian, fan-in scaled) and :func:`model_from_arrays`
(any user matrices).
"""

from __future__ import annotations

from collections.abc import Sequence

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
from jax.scipy.special import logsumexp
from jaxtyping import Array, ArrayLike, Float

from .._checks import check_float, check_int
from .._fields import check_loss
from .._groups import spectral_basis
from .._precision import computes
from .._start import Start, as_start, check_depth, start_group

__all__ = [
    "ACTIVATIONS",
    "DeepUFM",
    "spectral_model",
    "random_model",
    "model_from_arrays",
    "forward",
    "layers",
    "mean_loss",
]

ACTIVATIONS = ("linear", "relu")


def _check_activation(activation: str) -> str:
    if activation not in ACTIVATIONS:
        raise ValueError(
            f"activation must be 'linear' (deep linear UFM) or 'relu' (ReLU after "
            f"W_1..W_(L-1)); got {activation!r}."
        )
    return activation


def _check_positive_int(name: str, value, minimum: int = 1) -> int:
    return check_int(name, value, minimum=minimum)


def _as_key(key) -> Array:
    """An int seed or a JAX PRNG key -> a JAX PRNG key."""
    if isinstance(key, (bool, np.bool_, float, str)):
        check_int("key", key)  # raises TypeError naming key
    if isinstance(key, (int, np.integer)):
        return jax.random.PRNGKey(check_int("key", key, minimum=0))
    try:
        arr = jnp.asarray(key)
    except TypeError as e:
        raise ValueError(f"key must be an int seed or a jax.random key; got {key!r}.") from e
    if jnp.issubdtype(arr.dtype, jax.dtypes.prng_key) or arr.shape == (2,):
        return arr
    raise ValueError(f"key must be an int seed or a jax.random key; got {key!r}.")


def _check_dtype(dtype):
    """``None`` (float64) or a real float dtype svflow trains in: float32 or float64."""
    if dtype is None:
        return jnp.dtype(jnp.float64)
    try:
        dt = jnp.dtype(dtype)
    except TypeError as e:
        raise TypeError(f"dtype must be float32 or float64; got {dtype!r}.") from e
    if dt.name not in ("float32", "float64"):
        raise ValueError(f"dtype must be float32 or float64; got {dt.name!r}.")
    return dt


def _key_name(key) -> str:
    return str(int(key)) if isinstance(key, (int, np.integer)) else "array"


def _weight_decay(weight_decay, factors: int, dtype) -> Array:
    wd = np.asarray(weight_decay, dtype=float)
    if wd.ndim == 0:
        wd = np.full(factors, float(wd))
    if wd.shape != (factors,):
        raise ValueError(
            f"weight_decay must be one number or one per factor (N = depth + 1 = "
            f"{factors} numbers, order H, W_1, ..., W_L); got shape {wd.shape}."
        )
    if not np.all(np.isfinite(wd)) or np.any(wd < 0):
        raise ValueError(f"weight_decay must be finite and >= 0; got {wd.tolist()}.")
    return jnp.asarray(wd, dtype=dtype)


def layers(factors: Sequence[ArrayLike], activation: str = "linear") -> tuple[list[str], list[Array]]:
    r"""The forward pass, every layer kept: ``(names, matrices)``.

    For the factors $(H, W_1, \ldots, W_L)$ (matrices, numpy or JAX) the
    representations are $X_0 = H$ (name ``"H"``), for $l = 1 .. L-1$ the
    pre-activation $P_l = W_l X_{l-1}$ (``"pre<l>"``) and the post-activation
    $X_l = \sigma(P_l)$ (``"post<l>"``; $\sigma$ the identity for ``"linear"``,
    ReLU for ``"relu"``), and the logits $Z = W_L X_{L-1}$ (``"Z"``): 2L
    matrices, each (d or K, K n). :func:`forward` is its last matrix. Pure,
    jit- and vmap-able.
    """
    x = jnp.asarray(factors[0])
    names, mats = ["H"], [x]
    L = len(factors) - 1
    for l, W in enumerate(factors[1:], start=1):
        x = jnp.asarray(W) @ x
        if l < L:
            names.append(f"pre{l}")
            mats.append(x)
            if activation == "relu":
                x = jax.nn.relu(x)
            names.append(f"post{l}")
            mats.append(x)
    names.append("Z")
    mats.append(x)
    return names, mats


def forward(factors: Sequence[ArrayLike], activation: str = "linear") -> Array:
    r"""Logits $Z = W_L\sigma(W_{L-1}\cdots\sigma(W_1 H))$ of (H, W_1, ..., W_L): the
    last representation of :func:`layers` (the one forward pass)."""
    return layers(factors, activation)[1][-1]


def mean_loss(Z: Float[Array, "K M"], loss: str) -> Float[Array, ""]:
    r"""Mean data loss over the $M = Kn$ class-major columns of $Z$.

    Cross-entropy $\frac1M\sum_{\text{col}}(\operatorname{logsumexp}(z)-z_y)$;
    squared $\|Z-Y\|_F^2/(2M)$, Y one-hot.
    """
    K, M = Z.shape
    y = jnp.repeat(jnp.arange(K), M // K)
    onehot = (jnp.arange(K)[:, None] == y[None, :]).astype(Z.dtype)
    if loss == "ce":
        return jnp.mean(logsumexp(Z, axis=0) - jnp.sum(onehot * Z, axis=0))
    return 0.5 * jnp.sum((Z - onehot) ** 2) / M


class DeepUFM(eqx.Module):
    r"""A deep unconstrained features model with every matrix a free parameter.

    Attributes:
        factors: $(H, W_1, \ldots, W_L)$; H is (d, K n), $W_l$ (d, d) for
            l < L, $W_L$ (K, d). These are the trained parameters.
        weight_decay: (N,) weight decay per factor (same order as ``factors``).
        frames: for spectral starts $(U, V_1, \ldots, V_L, U)$ with which
            $s_l = \operatorname{diag}(F_{l+1}^\top A_l F_l)$; ``None`` otherwise.
        classes: K.
        samples_per_class: n.
        activation: ``"linear"`` or ``"relu"``.
        loss: ``"ce"`` or ``"squared"``.
        description: how the start was made (stored in dataset attrs).
    """

    factors: tuple[Array, ...]
    weight_decay: Float[Array, " N"]
    frames: tuple[Array, ...] | None
    classes: int = eqx.field(static=True)
    samples_per_class: int = eqx.field(static=True, default=1)
    activation: str = eqx.field(static=True, default="linear")
    loss: str = eqx.field(static=True, default="ce")
    description: str = eqx.field(static=True, default="user arrays")

    def __check_init__(self):
        _check_factor_shapes(self.factors, self.classes, self.samples_per_class)
        _check_activation(self.activation)
        check_loss(self.loss)
        if self.weight_decay.shape != (len(self.factors),):
            raise ValueError(
                f"weight_decay must have shape (N,) = ({len(self.factors)},); got {self.weight_decay.shape}."
            )

    # --- sizes
    @property
    def depth(self) -> int:
        """L, the number of weight matrices."""
        return len(self.factors) - 1

    @property
    def num_factors(self) -> int:
        """N = L + 1."""
        return len(self.factors)

    @property
    def width(self) -> int:
        """d, the feature / hidden width."""
        return self.factors[0].shape[0]

    @property
    def dtype(self):
        return self.factors[0].dtype

    # --- maths
    @computes
    def logits(self, factors=None) -> Float[Array, "K M"]:
        """Z of the current (or the given) factors."""
        return forward(self.factors if factors is None else factors, self.activation)

    @computes
    def representations(self, factors=None) -> tuple[list[str], list[Array]]:
        """Every layer's representation of the current (or the given) factors:
        ``(names, matrices)`` of :func:`layers` (H, pre1, post1, ..., Z)."""
        return layers(self.factors if factors is None else factors, self.activation)

    @computes
    def data_loss(self, factors=None) -> Float[Array, ""]:
        """Mean data loss (cross-entropy or squared) of Z."""
        return mean_loss(self.logits(factors), self.loss)

    @computes
    def penalty(self, factors=None) -> Float[Array, ""]:
        r"""$\sum_l \tfrac{wd_l}{2}\|A_l\|_F^2$."""
        fs = self.factors if factors is None else factors
        return 0.5 * sum(w * jnp.sum(A**2) for w, A in zip(self.weight_decay, fs))

    @computes
    def objective(self, factors=None) -> Float[Array, ""]:
        """Data loss + weight-decay penalty: what gradient descent minimises."""
        return self.data_loss(factors) + self.penalty(factors)

    @computes
    def gradient(self, factors=None) -> tuple[Array, ...]:
        """Gradient of :meth:`objective` with respect to every factor."""
        return jax.grad(self.objective)(self.factors if factors is None else factors)

    def with_factors(self, factors) -> "DeepUFM":
        return eqx.tree_at(lambda m: m.factors, self, tuple(factors))

    def astype(self, dtype) -> "DeepUFM":
        """The same model with every floating array cast to ``dtype``."""

        def cast(x):
            return x.astype(dtype) if eqx.is_inexact_array(x) else x

        return jax.tree.map(cast, self)


def _check_factor_shapes(factors, classes: int, n: int) -> None:
    if not isinstance(factors, (tuple, list)) or len(factors) < 2:
        raise ValueError(
            "factors must be a sequence (H, W_1, ..., W_L) of at least two matrices "
            f"(depth L >= 1); got {type(factors).__name__} of length "
            f"{len(factors) if hasattr(factors, '__len__') else '?'}."
        )
    shapes = [tuple(np.shape(A)) for A in factors]
    if any(len(s) != 2 for s in shapes):
        raise ValueError(f"every factor must be a matrix; got shapes {shapes}.")
    L = len(factors) - 1
    d = shapes[0][0]
    want = [(d, classes * n)] + [(d, d)] * (L - 1) + [(classes, d)]
    if shapes != want:
        raise ValueError(
            f"factor shapes {shapes} do not fit K = {classes} classes, n = {n} samples "
            f"per class, width d = {d}, depth L = {L}: expected "
            f"H (d, K n) = {want[0]}, "
            f"W_1..W_(L-1) (d, d) = {(d, d)}, W_L (K, d) = {(classes, d)}."
        )


@computes
def model_from_arrays(
    factors: Sequence[ArrayLike],
    *,
    activation: str = "linear",
    loss: str = "ce",
    weight_decay=0.0,
    dtype=None,
) -> DeepUFM:
    r"""A :class:`DeepUFM` from user matrices $(H, W_1, \ldots, W_L)$.

    K is read from $W_L$ (K, d) and n from H (d, K n); shapes are checked.
    """
    if not isinstance(factors, (tuple, list)) or len(factors) < 2:
        raise ValueError(
            "factors must be a list (H, W_1, ..., W_L) of at least two matrices; got "
            f"{type(factors).__name__}."
        )
    dtype = _check_dtype(dtype)
    if any(np.iscomplexobj(A) for A in factors):
        raise TypeError("factors must be real matrices; got complex values.")
    arrs = [jnp.asarray(A, dtype=dtype) for A in factors]
    if arrs[-1].ndim != 2 or arrs[0].ndim != 2:
        raise ValueError(f"every factor must be a matrix; got shapes {[a.shape for a in arrs]}.")
    K = arrs[-1].shape[0]
    M = arrs[0].shape[1]
    if K < 2 or M % K:
        raise ValueError(
            f"H has {M} columns but W_L has K = {K} rows: H must be (d, K n) with n "
            "samples per class, columns class-major."
        )
    for A in arrs:
        if not bool(jnp.all(jnp.isfinite(A))):
            raise ValueError("factors contain non-finite values (NaN or inf); pass finite numbers.")
    return DeepUFM(
        tuple(arrs),
        _weight_decay(weight_decay, len(arrs), arrs[0].dtype),
        None,
        K,
        M // K,
        _check_activation(activation),
        check_loss(loss),
        "user arrays",
    )


def _orthonormal_frame(key, width: int, classes: int, dtype) -> Array:
    """A random (d, K) matrix with orthonormal columns (QR of a Gaussian)."""
    G = jax.random.normal(key, (width, classes), dtype=dtype)
    Q, R = jnp.linalg.qr(G)
    return Q * jnp.sign(jnp.diag(R))[None, :]


@computes
def spectral_model(
    init,
    *,
    depth: int,
    width: int,
    key=0,
    activation: str = "linear",
    loss: str = "ce",
    weight_decay=0.0,
    dtype=None,
    group=None,
) -> DeepUFM:
    r"""Spectral start with random orthonormal frames.

    With U the group's real character basis (:func:`svflow.spectral_basis`;
    $U = H_K/\sqrt K$ for the Walsh group) and seeded $V_1..V_L \in \mathbb{R}^{d\times K}$
    (orthonormal columns):
    $H = V_1\operatorname{diag}(s_0)U^\top$,
    $W_l = V_{l+1}\operatorname{diag}(s_l)V_l^\top$,
    $W_L = U\operatorname{diag}(s_L)V_L^\top$, so
    $Z = U\operatorname{diag}(\lambda)U^\top$, $\lambda_i = \prod_l s_{l,i}$:
    exactly the start of :func:`svflow.simulate` with the same ``init``.

    Args:
        init: $\lambda(0)$ (K,) (balanced; $\lambda_0 := 0$ under cross-entropy),
            $s(0)$ (N, K), or a :class:`svflow.Start`.
        depth: L >= 1 weight matrices.
        width: d >= K.
        key: int seed or JAX key for the frames.
        activation, loss, weight_decay, dtype: see :class:`DeepUFM`.
        group: ``"walsh"``, ``"cyclic"``, a tuple of cyclic orders or ``None``
            (a :class:`svflow.Start`'s group, else Walsh for K = 2^m, else cyclic).
    """
    check_depth(depth)
    width = _check_positive_int("width", width)
    _check_activation(activation)
    check_loss(loss)
    if isinstance(init, Start):
        classes = init.classes
    else:
        shape = np.shape(init)
        if len(shape) not in (1, 2):
            raise ValueError(
                f"init must be lambda(0) of shape (K,) or s(0) of shape (N, K); got shape {shape}."
            )
        classes = shape[-1]
    grp = start_group(init, classes, group)
    if width < classes:
        raise ValueError(
            f"a spectral start needs width d >= K (each V_l is d x K with orthonormal "
            f"columns); got width={width}, classes={classes}. Pass width >= {classes}."
        )
    start = as_start(init, classes, depth, loss, grp)
    dtype = _check_dtype(dtype)
    s0 = jnp.asarray(start.s0, dtype=dtype)
    U = jnp.asarray(spectral_basis(classes, grp), dtype=dtype)
    keys = jax.random.split(_as_key(key), depth)
    V = [_orthonormal_frame(k, width, classes, dtype) for k in keys]
    frames = (U, *V, U)
    factors = tuple(frames[l + 1] @ jnp.diag(s0[l]) @ frames[l].T for l in range(depth + 1))
    return DeepUFM(
        factors,
        _weight_decay(weight_decay, depth + 1, dtype),
        frames,
        classes,
        1,
        activation,
        loss,
        f"spectral_model({start.description}, width={width}, key={_key_name(key)}, group={grp.label!r})",
    )


@computes
def random_model(
    classes: int,
    *,
    depth: int,
    width: int,
    scale: float = 1.0,
    key=0,
    samples_per_class: int = 1,
    activation: str = "linear",
    loss: str = "ce",
    weight_decay=0.0,
    dtype=None,
) -> DeepUFM:
    r"""Gaussian start with fan-in scaling.

    Every weight $W_l$ (out, in) has i.i.d. entries
    $\mathcal N(0, \text{scale}^2/\text{in})$ (in = d); the features H (d, K n) have
    entries $\mathcal N(0, \text{scale}^2/d)$, so each
    feature column has squared norm about $\text{scale}^2$. ``classes`` need not be a
    power of two here.
    """
    classes = _check_positive_int("classes", classes, 2)
    check_depth(depth)
    width = _check_positive_int("width", width)
    n = _check_positive_int("samples_per_class", samples_per_class)
    _check_activation(activation)
    check_loss(loss)
    scale = check_float("scale", scale, minimum=0.0, strict_min=True)
    dtype = _check_dtype(dtype)
    shapes = [(width, classes * n)] + [(width, width)] * (depth - 1) + [(classes, width)]
    keys = jax.random.split(_as_key(key), depth + 1)
    factors = tuple(
        (jax.random.normal(k, s, dtype=dtype) * (scale / np.sqrt(width))).astype(dtype)
        for k, s in zip(keys, shapes)
    )
    return DeepUFM(
        factors,
        _weight_decay(weight_decay, depth + 1, dtype),
        None,
        classes,
        n,
        activation,
        loss,
        f"random_model(scale={scale!r}, key={_key_name(key)})",
    )
