r"""Starts for the reduced ODE: factor singular values s(0) in a spectral frame.

The frame is the real character basis of a finite abelian group of order K
(:func:`svflow.spectral_basis`; Walsh-Hadamard for K = 2^m by default, the
cyclic group otherwise). Under cross-entropy the two modes of a conjugate
pair (cos and sin of one frequency) must carry equal values.

A start is an (N, K) array $s_{l,i}(0)$ (N = depth + 1 factors, K classes),
signed, with $\lambda_i(0) = \prod_l s_{l,i}(0)$. A *balanced* start has
$|s_{l,i}|$ equal across $l$ (sign carried by the last factor); it is fully
described by $\lambda(0)$ and can use the $\lambda$-only fast path.
"""

from __future__ import annotations

import equinox as eqx
import jax.numpy as jnp
import numpy as np
from jaxtyping import Array, ArrayLike, Float

from ._checks import check_float, check_int
from ._fields import check_loss
from ._groups import Group, check_pairs, resolve_group, tie_pairs
from ._precision import computes

__all__ = [
    "Start",
    "spectral_init",
    "balanced_factors",
    "as_start",
    "init_array",
    "start_group",
    "check_depth",
    "check_growing",
]


def check_depth(depth: int) -> int:
    if check_int("depth", depth) < 1:
        raise ValueError(
            f"depth L is the number of weight matrices and must be an integer >= 1 "
            f"(depth 1 = features H and one classifier W_1: N = 2 factors); got {depth!r}."
        )
    return int(depth)


def balanced_factors(lam: Float[ArrayLike, " K"], factors: int) -> Float[Array, "N K"]:
    r"""Balanced factorisation: $|s_{l,i}| = |\lambda_i|^{1/N}$, sign on the last factor."""
    lam = jnp.asarray(lam)
    mag = jnp.abs(lam) ** (1.0 / factors)
    s = jnp.broadcast_to(mag, (factors,) + lam.shape)
    return s.at[-1].multiply(jnp.where(lam < 0, -1.0, 1.0))


class Start(eqx.Module):
    r"""Initial factor singular values $s(0)$, shape (N, K), in a spectral frame.

    Attributes:
        s0: signed factor singular values, shape (N, K).
        balanced: True when $|s_{l,i}|$ is equal across factors, so the reduced
            ODE may evolve $\lambda$ alone.
        description: human-readable provenance (stored in dataset attrs).
        group: the :class:`svflow.Group` whose character basis is the frame
            (``None``: the default for K, Walsh for K = 2^m, else cyclic).
    """

    s0: Float[Array, "N K"]
    balanced: bool = eqx.field(static=True, default=False)
    description: str = eqx.field(static=True, default="user s(0)")
    group: Group | None = eqx.field(static=True, default=None)

    def __check_init__(self):
        if self.s0.ndim != 2:
            raise ValueError(f"s0 must have shape (N, K); got shape {self.s0.shape}.")

    @property
    @computes
    def lam0(self) -> Float[Array, " K"]:
        return jnp.prod(self.s0, axis=0)

    @property
    def factors(self) -> int:
        return self.s0.shape[0]

    @property
    def classes(self) -> int:
        return self.s0.shape[1]


@computes
def spectral_init(
    classes: int,
    depth: int,
    scale: float = 1e-2,
    spread: float = 0.5,
    seed: int = 0,
    *,
    loss: str = "ce",
    group=None,
) -> Start:
    r"""Balanced spectral start with $\lambda_i(0) = \varepsilon u_i$, $u_i \sim U[1-\delta, 1+\delta]$.

    The K draws are made per mode in mode order; the sine mode of each
    conjugate pair then takes its cosine partner's value (pairs share one
    eigenvalue), so Walsh starts are unchanged by the group option.

    Args:
        classes: K >= 2.
        depth: L >= 1 weight matrices (N = L + 1 factors).
        scale: $\varepsilon > 0$, the initial size of the logit eigenvalues.
        spread: $\delta \in [0, 1)$; the figures use $u \in [0.5, 1.5]$, i.e. 0.5.
        seed: integer seed of numpy's default generator.
        loss: under cross-entropy mode 0 never moves and is set to 0; under the
            squared loss it is drawn like the others.
        group: a :class:`svflow.Group` (``svflow.Walsh(K)``, ``svflow.Cyclic(K)``,
            ``svflow.Product(...)``) or its spec (``"walsh"``, ``"cyclic"``, a
            tuple of cyclic orders); ``None``: Walsh for K = 2^m, else cyclic.
            See :func:`svflow.spectral_basis`.
    """
    grp = resolve_group(group, classes)
    check_depth(depth)
    check_loss(loss)
    scale = check_float("scale", scale, minimum=0.0, strict_min=True)
    spread = check_float("spread", spread, minimum=0.0)
    if spread >= 1:
        raise ValueError(f"spread must lie in [0, 1) so that every lambda_i(0) > 0; got {spread!r}.")
    seed = check_int("seed", seed, minimum=0)
    rng = np.random.default_rng(seed)
    u = rng.uniform(1 - spread, 1 + spread, size=classes)
    lam = tie_pairs(scale * u, grp)
    if loss == "ce":
        lam[0] = 0.0
    desc = f"spectral_init(scale={scale!r}, spread={spread!r}, seed={seed!r}, group={grp.label!r})"
    return Start(balanced_factors(jnp.asarray(lam), depth + 1), balanced=True, description=desc, group=grp)


def start_group(init, classes: int, group) -> Group:
    """The group of a run: ``group`` if given, else a ``Start``'s own group, else the default.

    Raises ``ValueError`` if ``group`` and the ``Start``'s group disagree.
    """
    own = init.group if isinstance(init, Start) else None
    if isinstance(init, Start) and init.classes != classes:
        raise ValueError(
            f"init is a Start with K = {init.classes} classes (s(0) of shape {tuple(init.s0.shape)}) "
            f"but classes={classes} was asked; pass classes={init.classes} or a start built for "
            f"K = {classes} (e.g. svflow.spectral_init({classes}, depth))."
        )
    if group is None:
        return own if own is not None else resolve_group(None, classes)
    grp = resolve_group(group, classes)
    if own is not None and own != grp:
        raise ValueError(
            f"group={grp.label!r} but init is a Start built for group "
            f"{own.label!r}; pass the same group to both (or "
            "leave group=None to use the Start's)."
        )
    return grp


def init_array(init) -> np.ndarray:
    """``init`` (lambda(0), s(0) or a rectangular batch of them) as a float array.

    Raises ``TypeError`` for complex values and ``ValueError`` naming the
    problem for ragged nesting or a list that mixes ``Start`` objects with arrays.
    """
    if isinstance(init, (list, tuple)) and any(isinstance(x, Start) for x in init):
        kinds = sorted({"Start" if isinstance(x, Start) else type(x).__name__ for x in init})
        raise ValueError(
            f"init mixes Start objects with other items ({', '.join(kinds)}): pass a list of "
            "Starts only (a batch), or one array of lambda(0) / s(0) values."
        )
    if init is None:
        raise TypeError("init is missing: pass lambda(0) (K,), s(0) (N, K), a Start or a batch of these.")
    try:
        complex_ = np.iscomplexobj(init)
    except ValueError:  # ragged nesting: numpy cannot build the array at all
        complex_ = False
    if complex_:
        raise TypeError("init must be real; got complex values (the imaginary part would be lost).")
    try:
        return np.asarray(init, dtype=float)
    except (TypeError, ValueError) as e:
        if isinstance(init, (list, tuple)) and ("inhomogeneous" in str(e) or "sequence" in str(e)):
            lengths = [len(x) if hasattr(x, "__len__") else "number" for x in init]
            raise ValueError(
                f"init is ragged: its items have different lengths ({lengths}). A batch of starts "
                "is one rectangular array of shape (B, K) (lambda(0)) or (B, N, K) (s(0)) with "
                "batch_dims=..., or a list of Starts."
            ) from None
        raise ValueError(f"init must be an array of numbers or a Start; got {init!r}.") from e


def check_growing(lam, balanced: bool, loss: str, name: str = "init") -> None:
    r"""Refuse a balanced cross-entropy start with some $\lambda_i(0) < 0$ ($i \ge 1$).

    Under cross-entropy $d\lambda_i/dt \propto |\lambda_i|^{2-2/N}(1 - \mu_i)$ with
    $1 - \mu_i > 0$: a negative eigenvalue of a balanced start moves up to 0 and
    stops there (it can never change sign), so such a start is no model of
    training (its loss stays at log K where every mode is negative).
    ``lam`` is (K,) or (B, K); mode 0 is ignored (it never changes the loss).
    """
    if loss != "ce" or not balanced:
        return
    lam = np.asarray(lam, dtype=float)
    neg = np.flatnonzero(np.any(lam.reshape(-1, lam.shape[-1])[:, 1:] < 0, axis=0)) + 1
    if neg.size:
        raise ValueError(
            f"{name}: balanced lambda(0) must be >= 0 for every mode i >= 1 under cross-entropy "
            f"(a negative lambda_i shrinks to 0 and never grows); modes {neg[:8].tolist()} are "
            "negative. Pass |lambda(0)| (svflow.spectral_init gives lambda_i(0) > 0), or "
            "unbalanced factors s(0) if a sign change is meant."
        )


def as_start(init, classes: int, depth: int, loss: str, group=None) -> Start:
    """Turn a user's ``init`` (lambda(0), s(0) or a ``Start``) into a ``Start``.

    The result carries the resolved group (:func:`start_group`). Under
    cross-entropy the paired modes of the group must agree (``ValueError``
    otherwise, naming the modes).
    """
    N = depth + 1
    grp = start_group(init, classes, group)
    if isinstance(init, Start):
        start = init
        if start.s0.shape != (N, classes):
            raise ValueError(
                f"init has shape {start.s0.shape} but classes={classes}, depth={depth} "
                f"need s(0) of shape (N, K) = ({N}, {classes})."
            )
    else:
        arr = init_array(init)
        if arr.shape == (classes,):
            lam = arr.copy()
            if loss == "ce":
                lam[0] = 0.0  # mode 0 shifts every logit equally: no effect on CE
                check_pairs(lam, grp, "init (lambda(0))")
            start = Start(
                balanced_factors(jnp.asarray(lam), N), balanced=True, description="user lambda(0), balanced"
            )
        elif arr.shape == (N, classes):
            start = Start(jnp.asarray(arr), balanced=False, description="user s(0)")
        else:
            raise ValueError(
                f"init must be lambda(0) of shape (K,) = ({classes},) or s(0) of shape "
                f"(N, K) = ({N}, {classes}) for classes={classes}, depth={depth} "
                f"(N = depth + 1 factors); got shape {arr.shape}."
            )
    if not np.all(np.isfinite(np.asarray(start.s0))):
        raise ValueError("init contains non-finite values (NaN or inf); pass finite numbers.")
    if not np.all(np.isfinite(np.asarray(start.lam0))):
        raise ValueError(
            "init's factors are finite but their product lambda(0) overflows (non-finite); pass smaller s(0)."
        )
    if loss == "ce":
        check_pairs(start.s0, grp, "init")
    if start.group != grp:
        start = Start(start.s0, balanced=start.balanced, description=start.description, group=grp)
    return start
