r"""Finite abelian groups: real character bases and fast transforms for any K.

The reduced dynamics of a spectral start rest on one fact: an orthonormal
basis $U$ that diagonalises every matrix $Z_{cy} = f(c - y)$ over a finite
abelian group $G$ of order K (classes are the group elements). Then the
column softmax of such a Z is again of that form, $P_{cy} = g(c - y)$ with
$g = \mathrm{softmax}(f)$, and for symmetric $f$ ($f(x) = f(-x)$) the
cross-entropy gradient $(P - I)/K$ is diagonal in the same basis, so gradient
flow keeps the frames and moves only the eigenvalues.

Groups ($G = \mathbb Z_{n_1}\times\cdots\times\mathbb Z_{n_r}$, element
$x = (x_1, \ldots, x_r)$ stored as the mixed-radix index
$\sum_i x_i\prod_{j>i}n_j$, C order; characters $k$ indexed the same way):

- ``"walsh"``: $(\mathbb Z_2)^m$, K = 2^m. Every character is real and the
  basis is Sylvester's Hadamard matrix over $\sqrt K$ (mode i = character i).
- ``"cyclic"``: $\mathbb Z_K$.
- a tuple of cyclic orders, e.g. ``(2, 4)`` for $\mathbb Z_2\times\mathbb Z_4$.

Default: ``"walsh"`` when K is a power of two, else ``"cyclic"``.

Real character basis. With the phase $\varphi_k(x) = \sum_i k_i x_i/n_i$ and
$\theta_k(x) = 2\pi\varphi_k(x)$, the columns (the dataset ``mode`` axis, in
order) run over the characters k in index order, skipping the conjugate
$-k$ of a character already met:

- a real character ($2k = 0$: the constant, the Nyquist frequency $K/2$ of an
  even cyclic group, every Walsh character): one column $\cos\theta_k/\sqrt K$;
- a conjugate pair $\{k, -k\}$: two adjacent columns
  $\sqrt{2/K}\cos\theta_k$ and $\sqrt{2/K}\sin\theta_k$.

For $\mathbb Z_K$ that is: the constant, $(\cos, \sin)$ of frequencies
$1, \ldots, \lfloor (K-1)/2\rfloor$, then the Nyquist column when K is even.

Eigenvalues. $Z = U\operatorname{diag}(\lambda)U^\top$ is of the form
$f(c - y)$ exactly when the two modes of every pair carry the same
eigenvalue $\nu$; then
$f(x) = \frac1K\sum_j \lambda_j\cos\theta_{k_j}(x)$ (sum over all modes; the
sine columns enter through their pair's shared value) and the softmax
eigenvalue of mode j is $\mu_j = \sum_x g(x)\cos\theta_{k_j}(x)$ (real
because g is symmetric). The functions below read $\lambda$ through that
formula, which equals the pair-averaged state; the callers that start a flow
insist that pairs agree (:func:`check_pairs`).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from functools import cached_property, lru_cache

import jax.numpy as jnp
import numpy as np
from jaxtyping import Array, ArrayLike, Float

from . import _walsh
from ._checks import check_int
from ._dims import text as _text
from ._precision import computes

__all__ = [
    "GROUPS",
    "AUTO_DENSE_MAX_FFT",
    "Group",
    "resolve_group",
    "spectral_basis",
    "group_margins",
    "group_one_minus_mu",
    "group_ce_loss",
    "group_softmax_eigenvalues",
    "check_pairs",
    "tie_pairs",
]

GROUPS = ("walsh", "cyclic")

AUTO_DENSE_MAX_FFT = 256
"""Largest K for which ``method="auto"`` uses the dense character matrix for
non-Walsh groups (cyclic and product); ``jnp.fft`` from there on. Measured on a
shared 2-core CPU, float64, :func:`group_one_minus_mu` under ``jit`` on a batch
of 256 states (ms per call, dense / fft): K = 16: 0.36 / 0.77, 64: 0.25 / 1.6,
128: 1.1 / 1.9, 256: 1.6 / 4.0, 512: 10.7 / 4.5 (the timing test
``tests/test_groups.py::test_fft_crossover``, marked slow, prints them)."""


def _is_power_of_two(K: int) -> bool:
    return K >= 2 and not (K & (K - 1))


@dataclass(frozen=True)
class Group:
    r"""A finite abelian group $\mathbb Z_{n_1}\times\cdots\times\mathbb Z_{n_r}$.

    Hashable (a static argument under ``jit``). Build it with
    :func:`resolve_group`.

    Attributes:
        name: ``"walsh"`` ($(\mathbb Z_2)^m$), ``"cyclic"`` ($\mathbb Z_K$) or
            ``"product"``.
        orders: the cyclic orders $(n_1, \ldots, n_r)$.
    """

    name: str
    orders: tuple[int, ...]

    @property
    def classes(self) -> int:
        """K, the order of the group."""
        return math.prod(self.orders)

    @property
    def label(self) -> str:
        """Short text label: ``"walsh"``, ``"cyclic"`` or ``"Z2xZ4"``-style."""
        if self.name in GROUPS:
            return self.name
        return "x".join(f"Z{n}" for n in self.orders)

    @property
    def spec(self):
        """The user-facing spec that :func:`resolve_group` turns back into this group."""
        return self.name if self.name in GROUPS else tuple(self.orders)

    @cached_property
    def _tables(self) -> dict:
        return _group_tables(self.orders)

    @property
    def mode_char(self) -> np.ndarray:
        """(K,) character index k of every mode (the cosine member for a pair)."""
        return self._tables["mode_char"]

    @property
    def mode_part(self) -> np.ndarray:
        """(K,) ``"real"``, ``"cos"`` or ``"sin"`` per mode."""
        return self._tables["mode_part"]

    @property
    def pair(self) -> np.ndarray:
        """(K,) conjugate-class index per mode: the two modes of a pair share it."""
        return self._tables["pair"]

    @property
    def char_mode(self) -> np.ndarray:
        """(K,) for every character k, the mode carrying its eigenvalue (cos or real)."""
        return self._tables["char_mode"]

    @property
    def frequency(self) -> np.ndarray:
        """(K,) text label of each mode's character (``"3"``, ``"(1,2)"``)."""
        return self._tables["frequency"]

    @property
    def partner(self) -> np.ndarray:
        """(K,) the other mode of the pair (the mode itself for a real character)."""
        return self._tables["partner"]

    def mode_coords(self) -> dict:
        """Dataset coordinates on the ``mode`` dim: ``mode`` (index), ``frequency``,
        ``pair``, ``part``."""
        return {
            "mode": (
                "mode",
                np.arange(self.classes),
                {"long_name": f"mode index: column of svflow.spectral_basis(K, {self.spec!r})"},
            ),
            "frequency": (
                "mode",
                _text(self.frequency),
                {"long_name": f"character (frequency) of the mode, group {self.label}"},
            ),
            "pair": (
                "mode",
                self.pair.astype(np.int64),
                {"long_name": "conjugate pair index (cos and sin of one frequency share it)"},
            ),
            "part": (
                "mode",
                _text(self.mode_part),
                {"long_name": "real character, or cos / sin member of a pair"},
            ),
        }

    def __repr__(self) -> str:
        return f"Group({self.label}, orders={self.orders})"


def _phase_num(orders: tuple[int, ...]) -> tuple[np.ndarray, int]:
    r"""Integer numerators: $\varphi_k(x) = \mathrm{num}[x, k] / \mathrm{lcm}$ (mod 1)."""
    K = math.prod(orders)
    lcm = math.lcm(*orders)
    idx = np.arange(K)
    digits = np.stack(np.unravel_index(idx, orders), axis=-1)  # (K, r)
    w = np.array([lcm // n for n in orders], dtype=np.int64)
    num = np.einsum("xi,ki,i->xk", digits, digits, w) % lcm
    return num, lcm


@lru_cache(maxsize=64)
def _group_tables(orders: tuple[int, ...]) -> dict:
    K = math.prod(orders)
    digits = np.stack(np.unravel_index(np.arange(K), orders), axis=-1)
    neg = np.ravel_multi_index(tuple((-digits % np.array(orders)).T), orders)
    mode_char: list[int] = []
    mode_part, pair, partner = [], [], []
    char_mode = np.zeros(K, np.int64)
    seen = np.zeros(K, bool)
    p = 0
    for k in range(K):
        if seen[k]:
            continue
        seen[k] = seen[neg[k]] = True
        j = len(mode_char)
        if neg[k] == k:
            mode_char.append(k)
            mode_part.append("real")
            pair.append(p)
            partner.append(j)
            char_mode[k] = j
        else:
            mode_char += [k, k]
            mode_part += ["cos", "sin"]
            pair += [p, p]
            partner += [j + 1, j]
            char_mode[k] = char_mode[neg[k]] = j
        p += 1
    if len(orders) == 1:
        freq = [str(int(digits[k, 0])) for k in mode_char]
    else:
        freq = ["(" + ",".join(str(int(v)) for v in digits[k]) + ")" for k in mode_char]
    num, lcm = _phase_num(orders)
    mc = np.asarray(mode_char)
    theta_num = num[:, mc]  # (x, mode)
    theta = 2.0 * np.pi * theta_num / lcm
    cos = np.cos(theta)
    # exact signs / zeros where the angle is a multiple of pi/2
    cos = np.where(theta_num == 0, 1.0, cos)
    cos = np.where(2 * theta_num == lcm, -1.0, cos)
    cos = np.where(4 * theta_num % (2 * lcm) == lcm, 0.0, cos) if lcm % 4 == 0 else cos
    sin = np.sin(theta)
    sin = np.where((2 * theta_num) % lcm == 0, 0.0, sin)
    one_minus_cos = 2.0 * np.sin(0.5 * theta) ** 2  # no cancellation near theta = 0
    part = np.asarray(mode_part)
    scale = np.where(part == "real", 1.0 / math.sqrt(K), math.sqrt(2.0 / K))
    basis = np.where((part == "sin")[None, :], sin, cos) * scale[None, :]
    return dict(
        mode_char=mc,
        mode_part=part,
        pair=np.asarray(pair),
        partner=np.asarray(partner),
        char_mode=char_mode,
        frequency=np.asarray(freq),
        cos=cos,  # (x, mode): cos theta_{k_j}(x)
        one_minus_cos=one_minus_cos,
        basis=basis,
    )


def resolve_group(group, classes: int) -> Group:
    r"""Turn a group spec into a :class:`Group` of order ``classes``.

    Args:
        group: ``None`` (``"walsh"`` if K is a power of two, else ``"cyclic"``),
            ``"walsh"``, ``"cyclic"``, a tuple of cyclic orders $n_i \ge 2$ whose
            product is K, or its label such as ``"Z2xZ6"`` as stored in dataset
            attrs (a one-entry tuple is the cyclic group, all-2 tuples
            the Walsh group), or a :class:`Group`.
        classes: K >= 2.

    Raises:
        TypeError: K not an integer.
        ValueError: K < 2, an unknown name, a power-of-two requirement not met,
            or orders whose product is not K (the message names ``group``).
    """
    K = check_int("classes", classes, minimum=2)
    if isinstance(group, Group):
        if group.classes != K:
            raise ValueError(
                f"group {group.label} has order {group.classes} but classes = {K}; pass a group of order K."
            )
        return group
    if group is None:
        group = "walsh" if _is_power_of_two(K) else "cyclic"
    if isinstance(group, str):
        if group == "walsh":
            if not _is_power_of_two(K):
                lo = 2 ** max(1, math.floor(math.log2(K)))
                raise ValueError(
                    f"group='walsh' ((Z_2)^m) needs classes K a power of two; got K = {K} "
                    f"(nearest: {lo}, {2 * lo}). Use group='cyclic' (Z_K) or a tuple of "
                    "cyclic orders for any K."
                )
            return Group("walsh", (2,) * (K.bit_length() - 1))
        if group == "cyclic":
            return Group("cyclic", (K,))
        if group.startswith("Z") and all(p[1:].isdigit() and p.startswith("Z") for p in group.split("x")):
            return resolve_group(tuple(int(p[1:]) for p in group.split("x")), K)
        raise ValueError(
            f"group must be 'walsh', 'cyclic', a tuple of cyclic orders (e.g. (2, 4)) or None; got {group!r}."
        )
    try:
        orders = tuple(int(n) for n in group)
        ok = all(float(n) == int(n) for n in group) and not any(isinstance(n, bool) for n in group)
    except (TypeError, ValueError):
        raise ValueError(
            f"group must be 'walsh', 'cyclic', a tuple of cyclic orders (e.g. (2, 4)) or None; got {group!r}."
        ) from None
    if not ok or not orders or any(n < 2 for n in orders):
        raise ValueError(f"group orders must be integers >= 2; got {group!r}.")
    if math.prod(orders) != K:
        raise ValueError(f"group orders {orders} have product {math.prod(orders)}, not classes K = {K}.")
    if all(n == 2 for n in orders):
        return Group("walsh", orders)
    if len(orders) == 1:
        return Group("cyclic", orders)
    return Group("product", orders)


def _group_of(group, K: int) -> Group:
    return group if isinstance(group, Group) and group.classes == K else resolve_group(group, K)


def spectral_basis(classes: int, group=None) -> Float[np.ndarray, "K K"]:
    r"""The (K, K) orthonormal real character basis U of a finite abelian group of order K.

    The basis, its mode order and pairs are derived on the documentation page
    *Spectral starts* (``docs/theory/spectral.md``, "Beyond K = 2^m").

    Column j is dataset mode j. Row x is class x (group element x). For
    ``"walsh"`` it is Sylvester's Hadamard matrix over $\sqrt K$. Every
    matrix $Z_{cy} = f(c - y)$ with symmetric f is $U\operatorname{diag}(\lambda)U^\top$.
    """
    g = resolve_group(group, classes)
    if g.name == "walsh":
        return np.asarray(_walsh.hadamard(g.classes, dtype=np.float64)) / math.sqrt(g.classes)
    return g._tables["basis"].copy()


def _check_method(method: str) -> str:
    if method not in ("auto", "fast", "dense"):
        raise ValueError(f"method must be 'fast', 'dense' or 'auto'; got {method!r}.")
    return method


def _fft_method(method: str, K: int) -> str:
    _check_method(method)
    if method == "auto":
        return "dense" if K <= AUTO_DENSE_MAX_FFT else "fast"
    return method


def _fftn_last(x: Array, orders: tuple[int, ...], inverse: bool = False) -> Array:
    """Group Fourier transform along the last axis (mixed-radix index, C order)."""
    batch = x.shape[:-1]
    y = x.reshape(batch + orders)
    axes = tuple(range(len(batch), len(batch) + len(orders)))
    y = jnp.fft.ifftn(y, axes=axes) if inverse else jnp.fft.fftn(y, axes=axes)
    return y.reshape(batch + (x.shape[-1],))


def group_margins(
    lam: Float[ArrayLike, "... K"], group=None, *, method: str = "auto"
) -> Float[Array, "... K"]:
    r"""Margins $m(x) = f(0) - f(x) = \frac1K\sum_j\lambda_j(1 - \cos\theta_{k_j}(x))$.

    $m(x)$ is the margin of class y over class $y + x$, the same for every y.
    Entry 0 is 0. For ``"walsh"`` it is :func:`svflow.margins`.
    """
    lam = jnp.asarray(lam)
    K = lam.shape[-1]
    g = _group_of(group, K)
    if g.name == "walsh":
        return _walsh.margins(lam, method=method)
    if _fft_method(method, K) == "dense":
        omc = jnp.asarray(g._tables["one_minus_cos"], dtype=lam.dtype)
        return lam @ omc.T / K
    lam_bar = 0.5 * (lam + lam[..., g.partner])
    lam_hat = lam_bar[..., g.char_mode]
    f = jnp.real(
        _fftn_last(lam_hat.astype(jnp.result_type(lam.dtype, jnp.complex64)), g.orders, inverse=True)
    )
    return f[..., :1] - f


def group_one_minus_mu(
    lam: Float[ArrayLike, "... K"], group=None, *, method: str = "auto"
) -> Float[Array, "... K"]:
    r"""$1 - \mu_j$ for the softmax eigenvalues $\mu_j = \sum_x g(x)\cos\theta_{k_j}(x)$.

    Computed from the off-target probabilities $g'$ ($g'(0) = 0$) as
    $\sum_x g'(x)(1 - \cos\theta_{k_j}(x))$, with $1 - \cos\theta = 2\sin^2(\theta/2)$
    (``"dense"``: every term nonnegative, full relative accuracy when the softmax
    saturates), or as $\sum_x g'(x) - \mathrm{Re}\,\hat g'(k_j)$ through
    ``jnp.fft`` (``"fast"``, $O(K\log K)$; the subtraction loses a factor
    about $1/(1 - \cos(2\pi/n))$ of relative accuracy on the lowest
    frequencies). Entry 0 is exactly 0. For ``"walsh"`` this is the Walsh path.
    """
    lam = jnp.asarray(lam)
    K = lam.shape[-1]
    g = _group_of(group, K)
    if g.name == "walsh":
        return _walsh.one_minus_mu(lam, method=method)
    gp, _ = _walsh._off_probs(group_margins(lam, g, method=method))
    if _fft_method(method, K) == "dense":
        out = gp @ jnp.asarray(g._tables["one_minus_cos"], dtype=gp.dtype)
    else:
        ghat = jnp.real(_fftn_last(gp.astype(jnp.result_type(gp.dtype, jnp.complex64)), g.orders))
        out = jnp.sum(gp, axis=-1, keepdims=True) - ghat[..., g.mode_char]
    return out.at[..., 0].set(0.0)


def group_ce_loss(lam: Float[ArrayLike, "... K"], group=None, *, method: str = "auto") -> Float[Array, "..."]:
    r"""Mean cross-entropy $\log(1 + \sum_{x\ne0}e^{-m(x)})$ of $Z = U\operatorname{diag}(\lambda)U^\top$."""
    lam = jnp.asarray(lam)
    _, lse = _walsh._off_probs(group_margins(lam, group, method=method))
    return lse


@computes
def group_softmax_eigenvalues(
    lam: Float[ArrayLike, "... K"], group=None, *, method: str = "auto"
) -> Float[Array, "... K"]:
    r"""$\mu_j = \sum_x \mathrm{softmax}(f)(x)\cos\theta_{k_j}(x)$, the eigenvalues of the
    column softmax of $Z = U\operatorname{diag}(\lambda)U^\top$ ($\mu_0 = 1$)."""
    return 1.0 - group_one_minus_mu(lam, group, method=method)


def check_pairs(values, group: Group, name: str = "init", *, rtol: float = 1e-10) -> None:
    r"""Raise if the two modes of a conjugate pair carry different values.

    ``values`` has the mode axis last ($\lambda$ (K,) or $s$ (N, K)). Under
    cross-entropy the paired modes must agree: otherwise the logits are not of
    the form $f(c - y)$, the softmax is not diagonal in the basis and the
    frames would move, so the reduced ODE would not be the gradient flow.
    """
    v = np.asarray(values, dtype=float)
    part = group.mode_part
    cos_modes = np.flatnonzero(part == "cos")
    if cos_modes.size == 0:
        return
    a, b = v[..., cos_modes], v[..., cos_modes + 1]
    tol = rtol * max(1.0, float(np.max(np.abs(v))) if v.size else 1.0)
    bad = np.flatnonzero(np.any(np.abs(a - b) > tol, axis=tuple(range(v.ndim - 1))))
    if bad.size:
        j = int(cos_modes[bad[0]])
        raise ValueError(
            f"{name}: under cross-entropy the two modes of a conjugate pair (cos and sin of "
            f"one frequency) must carry equal values, but modes {j} and {j + 1} (frequency "
            f"{group.frequency[j]} of group {group.label}) differ "
            f"({a[..., bad[0]].ravel()[:3]} vs {b[..., bad[0]].ravel()[:3]}). "
            "Give both modes the same value (svflow.spectral_basis(K, group) lists the "
            "modes; the dataset coordinate 'pair' marks pairs)."
        )


def tie_pairs(values, group: Group):
    """Copy each pair's cosine-mode value onto its sine mode (mode axis last)."""
    idx = np.arange(group.classes)
    src = np.where(group.mode_part == "sin", group.partner, idx)
    if isinstance(values, np.ndarray):
        return values[..., src]
    return jnp.asarray(values)[..., src]
