r"""Finite abelian groups: the frames of spectral starts, one class per group.

The reduced dynamics of a spectral start rest on one fact: an orthonormal
basis $U$ that diagonalises every matrix $Z_{cy} = f(c - y)$ over a finite
abelian group $G$ of order K (classes are the group elements). Then the
column softmax of such a Z is again of that form, $P_{cy} = g(c - y)$ with
$g = \mathrm{softmax}(f)$, and for symmetric $f$ ($f(x) = f(-x)$) the
cross-entropy gradient $(P - I)/K$ is diagonal in the same basis, so gradient
flow keeps the frames and moves only the eigenvalues.

A group is an object: :class:`Group` is the abstract class (an
``equinox.Module``, hashable, a static argument under ``jit``), and each
concrete group is one subclass, as diffrax's solvers subclass
``AbstractSolver``. The engines never ask which group they have: they call
its methods (transform, margins, $1 - \mu$, supports, margin matrix).

- :class:`Walsh`: $(\mathbb Z_2)^m$, K = 2^m. Every character is real and the
  basis is Sylvester's Hadamard matrix over $\sqrt K$ (mode i = character i);
  its methods use the Walsh-Hadamard transform (:mod:`svflow._walsh`).
- :class:`Cyclic`: $\mathbb Z_K$.
- :class:`Product`: $\mathbb Z_{n_1}\times\cdots\times\mathbb Z_{n_r}$, e.g.
  ``Product(2, 4)``.

Element $x = (x_1, \ldots, x_r)$ is stored as the mixed-radix index
$\sum_i x_i\prod_{j>i}n_j$ (C order); characters $k$ are indexed the same way.
Public functions take ``group=`` as a :class:`Group` or, for backward
compatibility, ``"walsh"``, ``"cyclic"``, a tuple of cyclic orders, a label
such as ``"Z2xZ4"`` or ``None`` (the default: Walsh when K is a power of two,
else cyclic); they resolve it once (:func:`resolve_group`) and pass the object on.

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
because g is symmetric). The methods below read $\lambda$ through that
formula, which equals the pair-averaged state; the callers that start a flow
insist that pairs agree (:func:`check_pairs`).
"""

from __future__ import annotations

import abc
import math
from functools import lru_cache

import equinox as eqx
import jax.numpy as jnp
import numpy as np
from jaxtyping import Array, ArrayLike, Float

from . import _dims as D
from . import _walsh
from ._checks import check_int
from ._dataset import netcdf_safe
from ._precision import computes

__all__ = [
    "AUTO_DENSE_MAX_FFT",
    "Group",
    "Walsh",
    "Cyclic",
    "Product",
    "resolve_group",
    "spectral_basis",
    "margins",
    "softmax_eigenvalues",
    "check_pairs",
    "tie_pairs",
]

AUTO_DENSE_MAX_FFT = 256
"""Largest K for which ``method="auto"`` uses the dense character matrix for
non-Walsh groups (cyclic and product); ``jnp.fft`` from there on. Measured on a
shared 2-core CPU, float64, :meth:`Group.one_minus_mu` under ``jit`` on a batch
of 256 states (ms per call, dense / fft): K = 16: 0.36 / 0.77, 64: 0.25 / 1.6,
128: 1.1 / 1.9, 256: 1.6 / 4.0, 512: 10.7 / 4.5 (the timing test
``tests/test_groups.py::test_fft_crossover``, marked slow, prints them)."""

MAX_SUPPORT_CLASSES = 20
"""Largest number P of nontrivial conjugate classes whose $2^P - 1$ unions
:meth:`Group.supports` enumerates (the Walsh group: K <= 32, its own limit)."""


def _is_power_of_two(K: int) -> bool:
    return K >= 2 and not (K & (K - 1))


class Group(eqx.Module):
    r"""A finite abelian group $\mathbb Z_{n_1}\times\cdots\times\mathbb Z_{n_r}$ (abstract).

    The concrete groups are :class:`Walsh`, :class:`Cyclic` and
    :class:`Product`; a new group is one more subclass. The generic methods
    work from the group's character tables (dense, or ``jnp.fft`` for large
    K); a subclass overrides them where it has a faster or exact route
    (the Walsh group: the Walsh-Hadamard transform). Groups compare equal
    when they are the same class with the same orders, and hash, so they
    serve as static arguments under ``jit``.

    Attributes:
        orders: the cyclic orders $(n_1, \ldots, n_r)$.
    """

    orders: tuple[int, ...] = eqx.field(static=True)

    # --- identity
    @property
    def classes(self) -> int:
        """K, the order of the group."""
        return math.prod(self.orders)

    @property
    @abc.abstractmethod
    def label(self) -> str:
        """Short text label stored in dataset attrs: ``"walsh"``, ``"cyclic"`` or ``"Z2xZ4"``-style."""

    @property
    @abc.abstractmethod
    def spec(self):
        """The spec that :func:`resolve_group` turns back into this group (``"walsh"``, ``"cyclic"``
        or the tuple of orders)."""

    # --- character tables
    @property
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

    @property
    def one_minus_cos(self) -> np.ndarray:
        r"""(K, K) $1 - \cos\theta_{k_j}(x)$ over group elements x (rows) and modes j (columns)."""
        return self._tables["one_minus_cos"]

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
                D.text(self.frequency),
                {"long_name": f"character (frequency) of the mode, group {self.label}"},
            ),
            "pair": (
                "mode",
                self.pair.astype(np.int64),
                {"long_name": "conjugate pair index (cos and sin of one frequency share it)"},
            ),
            "part": (
                "mode",
                D.text(self.mode_part),
                {"long_name": "real character, or cos / sin member of a pair"},
            ),
        }

    def _state(self, x) -> Array:
        """``x`` as an array whose last axis has length K (a clear error otherwise)."""
        x = jnp.asarray(x)
        if x.ndim == 0 or x.shape[-1] != self.classes:
            raise ValueError(
                f"{type(self).__name__} group of order K = {self.classes} needs an array with a "
                f"last axis of length {self.classes} (the modes); got shape {x.shape}."
            )
        return x

    # --- the transform
    def basis(self) -> Float[np.ndarray, "K K"]:
        r"""The (K, K) orthonormal real character basis U: column j is mode j, row x is class x.

        Every matrix $Z_{cy} = f(c - y)$ with symmetric f is
        $U\operatorname{diag}(\lambda)U^\top$.
        """
        return self._tables["basis"].copy()

    @computes
    def transform(self, x: Float[ArrayLike, "... K"]) -> Float[Array, "... K"]:
        r"""Unnormalised character transform along the last axis: $y = \sqrt K\,U^\top x$.

        $\|y\| = \sqrt K\,\|x\|$; for the Walsh group $\sqrt K U = H$ is
        symmetric and the transform is its own inverse up to the factor K.
        """
        x = self._state(x)
        U = jnp.asarray(self._tables["basis"], dtype=x.dtype)
        return math.sqrt(self.classes) * (x @ U)

    # --- closed forms in the frame
    @computes
    def margins(self, lam: Float[ArrayLike, "... K"], *, method: str = "auto") -> Float[Array, "... K"]:
        r"""Margins $m(x) = f(0) - f(x) = \frac1K\sum_j\lambda_j(1 - \cos\theta_{k_j}(x))$.

        $m(x)$ is the margin of class y over class $y + x$, the same for every y.
        Entry 0 is 0. ``method``: ``"dense"`` (character table), ``"fast"``
        (``jnp.fft``) or ``"auto"`` (dense up to K = ``AUTO_DENSE_MAX_FFT``).
        """
        lam = self._state(lam)
        K = lam.shape[-1]
        if _fft_method(method, K) == "dense":
            omc = jnp.asarray(self.one_minus_cos, dtype=lam.dtype)
            return lam @ omc.T / K
        lam_bar = 0.5 * (lam + lam[..., self.partner])
        lam_hat = lam_bar[..., self.char_mode]
        f = jnp.real(
            _fftn_last(lam_hat.astype(jnp.result_type(lam.dtype, jnp.complex64)), self.orders, inverse=True)
        )
        return f[..., :1] - f

    @computes
    def one_minus_mu(self, lam: Float[ArrayLike, "... K"], *, method: str = "auto") -> Float[Array, "... K"]:
        r"""$1 - \mu_j$ for the softmax eigenvalues $\mu_j = \sum_x g(x)\cos\theta_{k_j}(x)$.

        Computed from the off-target probabilities $g'$ ($g'(0) = 0$) as
        $\sum_x g'(x)(1 - \cos\theta_{k_j}(x))$, with $1 - \cos\theta = 2\sin^2(\theta/2)$
        (``"dense"``: every term nonnegative, full relative accuracy when the softmax
        saturates), or as $\sum_x g'(x) - \mathrm{Re}\,\hat g'(k_j)$ through
        ``jnp.fft`` (``"fast"``, $O(K\log K)$; the subtraction loses a factor
        about $1/(1 - \cos(2\pi/n))$ of relative accuracy on the lowest
        frequencies). Entry 0 is exactly 0.
        """
        lam = self._state(lam)
        K = lam.shape[-1]
        gp, _ = _walsh._off_probs(self.margins(lam, method=method))
        if _fft_method(method, K) == "dense":
            out = gp @ jnp.asarray(self.one_minus_cos, dtype=gp.dtype)
        else:
            ghat = jnp.real(_fftn_last(gp.astype(jnp.result_type(gp.dtype, jnp.complex64)), self.orders))
            out = jnp.sum(gp, axis=-1, keepdims=True) - ghat[..., self.mode_char]
        return out.at[..., 0].set(0.0)

    def ce_one_minus_mu(
        self, lam: Float[ArrayLike, "... K"], *, method: str = "auto"
    ) -> Float[Array, "... K"]:
        r"""$1 - \mu$ as the balanced cross-entropy field evaluates it (the inner loop of every batch).

        The same quantity as :meth:`one_minus_mu`; a group may override it
        with a cheaper route of equal accuracy (the Walsh group: one
        exponential per mode).
        """
        return self.one_minus_mu(lam, method=method)

    def off_target_rates(self, e: Float[Array, "... K"]) -> Float[Array, "... K"]:
        r"""$r_j = \sum_x e_x(1 - \cos\theta_{k_j}(x))$ from weights $e_x$ of the elements ($e_0 = 0$)."""
        return e @ jnp.asarray(self.one_minus_cos, dtype=e.dtype)

    @computes
    def ce_loss(self, lam: Float[ArrayLike, "... K"], *, method: str = "auto") -> Float[Array, "..."]:
        r"""Mean cross-entropy $\log(1 + \sum_{x\ne0}e^{-m(x)})$ of the logits
        $Z = U\operatorname{diag}(\lambda)U^\top$."""
        _, lse = _walsh._off_probs(self.margins(lam, method=method))
        return lse

    def softmax_eigenvalues(
        self, lam: Float[ArrayLike, "... K"], *, method: str = "auto"
    ) -> Float[Array, "... K"]:
        r"""$\mu_j = \sum_x \mathrm{softmax}(f)(x)\cos\theta_{k_j}(x)$, the eigenvalues of the
        column softmax of $Z = U\operatorname{diag}(\lambda)U^\top$ ($\mu_0 = 1$)."""
        return 1.0 - self.one_minus_mu(lam, method=method)

    # --- margins over tied pairs, supports and codes
    def pair_modes(self) -> tuple[np.ndarray, np.ndarray]:
        r"""(first mode of each nontrivial conjugate class p, its multiplicity $w_p$).

        $w_p$ = 2 for a cos / sin pair, 1 for a real character.
        """
        first, w, _ = _pair_tables(self)
        return first.copy(), w.copy()

    def margin_matrix(self) -> np.ndarray:
        r"""$M$ (K - 1, P): the margins $m_x = \sum_p M_{xp}\nu_p$ (x = 1..K-1) of pair values $\nu$.

        $M_{xp} = w_p(1 - \cos\theta_p(x))/K$; for the Walsh group
        $M_{xi} = (2/K)[\mathrm{popcount}(i\,\&\,x)\ \mathrm{odd}]$.
        """
        return _pair_tables(self)[2].copy(order="K")  # the table's memory layout: the same BLAS sums

    def supports(self):
        r"""Every union S of nontrivial conjugate classes that separates all classes.

        An equal-$\lambda$ support S ($r = \sum_{p\in S}w_p$ modes) has
        "distance" $d_S = \min_{x\ne0}\tfrac12\sum_{j\in S}(1 - \cos\theta_j(x))$
        and one-vs-rest margin $\rho_S = 2d_S/r$. Enumerates $2^P - 1$ subsets of
        the P nontrivial classes (P <= ``MAX_SUPPORT_CLASSES`` = 20).

        Returns:
            ``xarray.Dataset`` over dim ``support`` with ``mask`` (support, mode),
            ``size`` r (modes), ``dmin`` ($d_S$), ``rho`` ($2d_S/r$),
            ``frequencies`` (text: the characters of S).
        """
        import xarray as xr

        K = self.classes
        first, w, M = _pair_tables(self)
        P = first.size
        if P > MAX_SUPPORT_CLASSES:
            raise ValueError(
                f"enumerating 2^P supports is limited to P <= {MAX_SUPPORT_CLASSES} classes; got P = {P}."
            )
        bits = np.arange(1, 2**P, dtype=np.int64)
        member = ((bits[:, None] >> np.arange(P)[None, :]) & 1).astype(float)  # (B, P)
        # d_S = min_x (K/2) sum_p member * M[x, p]
        dist = (K / 2.0) * (member @ M.T)  # (B, x)
        dmin = dist.min(axis=1)
        ok = dmin > 1e-12
        member, dmin = member[ok].astype(bool), dmin[ok]
        size = (member * w[None, :]).sum(axis=1).astype(np.int64)
        mask = np.zeros((member.shape[0], K), bool)
        for p, j in enumerate(first):
            mask[:, j] = member[:, p]
            mask[:, self.partner[j]] = member[:, p]
        freqs = np.array(
            ["{" + ",".join(self.frequency[first[member[b]]]) + "}" for b in range(member.shape[0])]
        )
        return xr.Dataset(
            {
                "mask": (("support", "mode"), mask, {"long_name": "mode i in S"}),
                "size": ("support", size, {"long_name": "code length r = |S| (modes)"}),
                "dmin": (
                    "support",
                    dmin,
                    {"long_name": "d_S = min_x (1/2) sum_{j in S} (1 - cos theta_j(x))"},
                ),
                "rho": ("support", 2.0 * dmin / size, {"long_name": "one-vs-rest margin 2 d_S / r"}),
                "frequencies": ("support", freqs, {"long_name": "characters in S"}),
            },
            coords={"mode": np.arange(K)},
            attrs={"classes": K, "group": self.label},
        )

    def generator_modes(self) -> tuple[int, ...]:
        r"""The modes of the lowest nontrivial character (mode 1 and its pair partner: the
        K-gon of $\mathbb Z_K$); the leading modes of the basin maps' ``lag`` family."""
        return (1, int(self.partner[1]))

    def code_name(self, mask: np.ndarray, r: int, d: float) -> str:
        """A text name of the equal-lambda code on support ``mask`` (r modes, distance d)."""
        if r == self.classes - 1:
            return "simplex (NC)"
        sel = [j for j in _pair_tables(self)[0] if mask[j]]
        return "{" + ",".join(self.frequency[j] for j in sel) + "}" + f" r={r} rho={2 * d / r:.4g}"


class Walsh(Group):
    r"""The Walsh group $(\mathbb Z_2)^m$ of order K = 2^m: the Walsh-Hadamard frame.

    Every character is real; the basis is Sylvester's Hadamard matrix
    $H_{ix} = (-1)^{\mathrm{popcount}(i\,\&\,x)}$ over $\sqrt K$ and the
    transform is the fast Walsh-Hadamard transform ($O(K\log K)$
    butterflies, or one dense product for K <= 64). ``Walsh(8)``.
    """

    def __init__(self, classes: int):
        m = _walsh.check_classes(classes)
        self.orders = (2,) * m

    @property
    def label(self) -> str:
        return "walsh"

    @property
    def spec(self):
        return "walsh"

    @computes
    def hadamard(self, dtype=None) -> Float[Array, "K K"]:
        r"""Sylvester's Hadamard matrix $H_{ix} = (-1)^{\mathrm{popcount}(i \& x)}$.

        Entries $\pm1$ (not normalised): $HH = KI$.
        """
        return _walsh.hadamard(self.classes, dtype=dtype)

    def basis(self) -> Float[np.ndarray, "K K"]:
        return np.asarray(_walsh.hadamard(self.classes, dtype=np.float64)) / math.sqrt(self.classes)

    @computes
    def transform(self, x: Float[ArrayLike, "... K"], *, method: str = "auto") -> Float[Array, "... K"]:
        r"""Unnormalised Walsh-Hadamard transform along the last axis: $y = H x$ (twice: $K x$).

        ``method``: ``"fast"`` (butterflies, $O(K \log K)$), ``"dense"`` (matrix
        product, $O(K^2)$) or ``"auto"`` (dense for K <= 64, fast otherwise).
        Jit-, vmap- and grad-compatible.
        """
        return _walsh.walsh_transform(self._state(x), method=method)

    @computes
    def margins(self, lam: Float[ArrayLike, "... K"], *, method: str = "auto") -> Float[Array, "... K"]:
        r"""Margins $m_k = f(0) - f(k)$ with $f = H\lambda/K$:
        $m_k = (2/K)\sum_{j:\,\mathrm{popcount}(j\&k)\ \mathrm{odd}} \lambda_j$ (entry 0 is 0)."""
        return _walsh.margins(self._state(lam), method=method)

    @computes
    def one_minus_mu(self, lam: Float[ArrayLike, "... K"], *, method: str = "auto") -> Float[Array, "... K"]:
        r"""$1 - \mu = \sum_{x\ne0} g(x) - (Hg')$ with $g'$ the off-target probabilities (entry 0 is 0)."""
        return _walsh.one_minus_mu(self._state(lam), method=method)

    def ce_one_minus_mu(
        self, lam: Float[ArrayLike, "... K"], *, method: str = "auto"
    ) -> Float[Array, "... K"]:
        return _walsh.ce_one_minus_mu(self._state(lam), method)

    def off_target_rates(self, e: Float[Array, "... K"]) -> Float[Array, "... K"]:
        return jnp.sum(e, axis=-1, keepdims=True) - _walsh.walsh_transform(e)

    def margin_matrix(self) -> np.ndarray:
        return (2.0 / self.classes) * _walsh.parity(self.classes)[1:, 1:].astype(float)

    def supports(self):
        r"""Every Walsh support $S \subseteq \{1, \dots, K-1\}$ that separates all classes.

        Vectorised over all $2^{K-1}$ subsets (32768 for K = 16; K <= 32). For each:
        the size r, the minimum distance d of the binary code
        $x \mapsto (h_i(x))_{i\in S}$, its one-vs-rest margin $\rho = 2d/r$ and
        its bits (the code is injective iff every nonzero message k has weight > 0).

        Returns:
            ``xarray.Dataset`` over dim ``support`` with ``mask`` (support, mode),
            ``size``, ``dmin``, ``rho``, ``bits`` (subset as an integer over modes 1..K-1).
        """
        import xarray as xr

        K = self.classes
        if K > 32:
            raise ValueError(f"enumerating 2^(K-1) supports is limited to K <= 32; got K = {K}.")
        n = K - 1
        bits = np.arange(1, 2**n, dtype=np.int64)
        member = ((bits[:, None] >> np.arange(n)[None, :]) & 1).astype(np.int16)  # (B, n): mode i+1
        weights = member @ _walsh.parity(K)[1:, 1:].T.astype(np.int16)  # (B, k): messages 1..K-1
        dmin = weights.min(axis=1)
        ok = dmin > 0
        member, dmin, bits = member[ok], dmin[ok], bits[ok]
        size = member.sum(axis=1)
        mask = np.concatenate([np.zeros((len(bits), 1), bool), member.astype(bool)], axis=1)
        return netcdf_safe(
            xr.Dataset(
                {
                    "mask": (("support", "mode"), mask, {"long_name": "mode i in S"}),
                    "size": ("support", size.astype(np.int64), {"long_name": "code length r = |S|"}),
                    "dmin": ("support", dmin.astype(np.int64), {"long_name": "minimum distance d"}),
                    "rho": ("support", 2.0 * dmin / size, {"long_name": "one-vs-rest margin 2d/r"}),
                    "bits": ("support", bits, {"long_name": "S as a bit set over modes 1..K-1"}),
                },
                coords={"mode": np.arange(K)},
                attrs={"classes": K, "m": len(self.orders)},
            )
        )

    def generator_modes(self) -> tuple[int, ...]:
        """The weight-one modes 1, 2, 4, ..., K/2 (the characters of the m generators: the hypercube code)."""
        return tuple(1 << b for b in range(len(self.orders)))

    def code_name(self, mask: np.ndarray, r: int, d: float) -> str:
        """``simplex [r,m,d] (NC)``, ``hypercube [m,m,1]``, ``even-weight [m+1,m,2]`` or ``[r,m,d]``."""
        K, m, d = self.classes, len(self.orders), int(d)
        if r == K - 1 and d == K // 2:
            return f"simplex [{r},{m},{d}] (NC)"
        if r == m and d == 1:
            return f"hypercube [{r},{m},{d}]"
        if r == m + 1 and d == 2:
            return f"even-weight [{r},{m},{d}]"
        return f"[{r},{m},{d}]"


class Cyclic(Group):
    r"""The cyclic group $\mathbb Z_K$: the real Fourier basis (cos / sin pairs of each frequency).

    ``Cyclic(6)``.
    """

    def __init__(self, classes: int):
        self.orders = (check_int("classes", classes, minimum=2),)

    @property
    def label(self) -> str:
        return "cyclic"

    @property
    def spec(self):
        return "cyclic"

    def code_name(self, mask: np.ndarray, r: int, d: float) -> str:
        """As :meth:`Group.code_name`; the pair of one frequency k coprime to K is the ``K-gon``."""
        K = self.classes
        sel = [j for j in _pair_tables(self)[0] if mask[j]]
        if r != K - 1 and len(sel) == 1 and self.mode_part[sel[0]] == "cos":
            k = int(self.frequency[sel[0]])
            if math.gcd(k, K) == 1:
                return f"{K}-gon" + ("" if k == 1 else f" (frequency {k})")
        return super().code_name(mask, r, d)


class Product(Group):
    r"""A product $\mathbb Z_{n_1}\times\cdots\times\mathbb Z_{n_r}$ of cyclic groups.

    ``Product(2, 4)`` or ``Product(Cyclic(2), Cyclic(4))`` (a factor that is a
    group contributes its orders). ``Product(2, 2, 2)`` is the Walsh group's
    element and character order computed through the generic tables (the
    same frame as ``Walsh(8)``).
    """

    def __init__(self, *factors):
        orders: list[int] = []
        for f in factors:
            if isinstance(f, Group):
                orders += f.orders
            elif isinstance(f, (bool, np.bool_)) or not isinstance(f, (int, np.integer)) or f < 2:
                raise ValueError(
                    f"Product takes cyclic orders (integers >= 2) or groups; got {f!r} in {factors!r}."
                )
            else:
                orders.append(int(f))
        if not orders:
            raise ValueError("Product needs at least one factor, e.g. Product(2, 4).")
        self.orders = tuple(orders)

    @property
    def label(self) -> str:
        return "x".join(f"Z{n}" for n in self.orders)

    @property
    def spec(self):
        return tuple(self.orders)


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
    r"""Turn a group spec into a :class:`Group` of order ``classes`` (once, at a public boundary).

    Args:
        group: a :class:`Group` of order K; ``None`` (:class:`Walsh` if K is a
            power of two, else :class:`Cyclic`); ``"walsh"``; ``"cyclic"``; a
            tuple of cyclic orders $n_i \ge 2$ whose product is K (all 2: the
            Walsh group; one entry: the cyclic group; else a :class:`Product`);
            or its label such as ``"Z2xZ6"`` as stored in dataset attrs.
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
        return Walsh(K) if _is_power_of_two(K) else Cyclic(K)
    if isinstance(group, str):
        if group == "walsh":
            if not _is_power_of_two(K):
                lo = 2 ** max(1, math.floor(math.log2(K)))
                raise ValueError(
                    f"group='walsh' ((Z_2)^m) needs classes K a power of two; got K = {K} "
                    f"(nearest: {lo}, {2 * lo}). Use group='cyclic' (Z_K) or a tuple of "
                    "cyclic orders for any K."
                )
            return Walsh(K)
        if group == "cyclic":
            return Cyclic(K)
        if group.startswith("Z") and all(p[1:].isdigit() and p.startswith("Z") for p in group.split("x")):
            return resolve_group(tuple(int(p[1:]) for p in group.split("x")), K)
        raise ValueError(
            f"group must be a svflow.Group (Walsh, Cyclic, Product), 'walsh', 'cyclic', a tuple of "
            f"cyclic orders (e.g. (2, 4)) or None; got {group!r}."
        )
    try:
        orders = tuple(int(n) for n in group)
        ok = all(float(n) == int(n) for n in group) and not any(isinstance(n, bool) for n in group)
    except (TypeError, ValueError):
        raise ValueError(
            f"group must be a svflow.Group (Walsh, Cyclic, Product), 'walsh', 'cyclic', a tuple of "
            f"cyclic orders (e.g. (2, 4)) or None; got {group!r}."
        ) from None
    if not ok or not orders or any(n < 2 for n in orders):
        raise ValueError(f"group orders must be integers >= 2; got {group!r}.")
    if math.prod(orders) != K:
        raise ValueError(f"group orders {orders} have product {math.prod(orders)}, not classes K = {K}.")
    if all(n == 2 for n in orders):
        return Walsh(K)
    if len(orders) == 1:
        return Cyclic(K)
    return Product(*orders)


def spectral_basis(classes: int, group=None) -> Float[np.ndarray, "K K"]:
    r"""The (K, K) orthonormal real character basis U of a finite abelian group of order K.

    The basis, its mode order and pairs are derived on the documentation page
    *Spectral starts* (``docs/theory/spectral.md``, "Beyond K = 2^m").

    Column j is dataset mode j. Row x is class x (group element x). For the
    Walsh group it is Sylvester's Hadamard matrix over $\sqrt K$. Every
    matrix $Z_{cy} = f(c - y)$ with symmetric f is $U\operatorname{diag}(\lambda)U^\top$.
    ``group``: a :class:`Group` or its spec (``None``: Walsh for K = 2^m, else
    cyclic); the same as ``group.basis()``.
    """
    return resolve_group(group, classes).basis()


def _state_group(lam, group) -> tuple[Array, Group]:
    lam = jnp.asarray(lam)
    if lam.ndim == 0:
        raise ValueError("lam needs a last axis of length K (the modes); got a scalar.")
    return lam, resolve_group(group, lam.shape[-1])


@computes
def margins(lam: Float[ArrayLike, "... K"], group=None, *, method: str = "auto") -> Float[Array, "... K"]:
    r"""Margins $m(x) = f(0) - f(x) = \frac1K\sum_j\lambda_j(1 - \cos\theta_{k_j}(x))$ of the state ``lam``.

    $m(x)$ is the margin of class y over class $y + x$ (the same for every y)
    of the logits $Z = U\operatorname{diag}(\lambda)U^\top$; entry 0 is 0. For
    the Walsh group $m_k = (2/K)\sum_{j:\,\mathrm{popcount}(j\&k)\ \mathrm{odd}}\lambda_j$
    (docs: theory/spectral.md). ``group``: the frame of ``lam`` (a
    :class:`Group` or its spec; ``None``: Walsh for K = 2^m, else cyclic).
    The same as ``group.margins(lam)``.
    """
    lam, g = _state_group(lam, group)
    return g.margins(lam, method=method)


@computes
def softmax_eigenvalues(
    lam: Float[ArrayLike, "... K"], group=None, *, method: str = "auto"
) -> Float[Array, "... K"]:
    r"""Eigenvalues $\mu_j = \sum_x \mathrm{softmax}(f)(x)\cos\theta_{k_j}(x)$ of the column
    softmax of $Z = U\operatorname{diag}(\lambda)U^\top$ in the same frame ($\mu_0 = 1$).

    For the Walsh group $\mu = H\,\mathrm{softmax}(H\lambda/K)$. ``group``: as in
    :func:`margins`. The same as ``group.softmax_eigenvalues(lam)``.
    """
    lam, g = _state_group(lam, group)
    return g.softmax_eigenvalues(lam, method=method)


@lru_cache(maxsize=32)
def _pair_tables(group: Group):
    """(first mode of each nontrivial class, multiplicity, M (K-1, P))."""
    K = group.classes
    first = np.array([j for j in range(1, K) if group.mode_part[j] != "sin"])
    w = np.where(group.mode_part[first] == "cos", 2.0, 1.0)
    omc = group.one_minus_cos[1:, :][:, first]  # (x, p)
    return first, w, omc * w[None, :] / K


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
