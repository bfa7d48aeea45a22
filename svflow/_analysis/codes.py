r"""Softmax codes: K unit vectors in $\mathbb{R}^r$ with the largest one-vs-rest margin.

Definition (Jiang et al., arXiv 2310.05351; docs: theory/outcomes.md, 'Softmax codes'). For unit
vectors $v_1, \dots, v_K \in \mathbb{R}^r$ the *one-vs-rest margin* is the
smallest Euclidean distance (not squared) from one vector to the convex hull
of the others,

$$\rho(v) = \min_y \operatorname{dist}\bigl(v_y, \operatorname{conv}\{v_j : j \ne y\}\bigr)
          = \min_y \max_{\|w\| \le 1} \min_{j \ne y} \langle w, v_y - v_j\rangle ,$$

(0 when some $v_y$ lies in the hull of the others). The second form is the
margin of a hard-margin one-vs-rest classifier through the origin and is the
one optimised here. A *softmax code* of shape (K, r) maximises $\rho$ over unit
vectors; $\rho^*(K, r)$ is its value. With this (unsquared) distance the known
optima come out as stated:

- r = 2, regular K-gon: $\rho^* = 1 - \cos(2\pi/K)$ (K >= 3);
- K <= r + 1, regular simplex: $\rho^* = K/(K-1)$ (neural collapse);
- r + 1 < K <= 2r, subsets of the cross-polytope $\{\pm e_i\}$: $\rho^* = 1$.

An equal-$\lambda$ Walsh support of size r (a binary linear $[r, m, d]$ code)
gives $\rho = 2d/r$ in this convention (the simplex code $[K-1, m, K/2]$ gives
$K/(K-1)$).

Numerics: :func:`one_vs_rest_margin` is exact (Lawson-Hanson least-distance
programming through one NNLS per class, finite active-set method, ~1e-15).
:func:`softmax_code` maximises a log-sum-exp softmin surrogate of
$\min_{y, j\ne y}\langle w_y, v_y - v_j\rangle$ jointly over the vectors $v$ and
the classifier directions $w$ (both normalised) with Adam and an annealed
temperature, for many seeded starts at once (one ``jit(vmap(...))``), then
polishes the best few with SLSQP on the epigraph form
$\max t$ s.t. $\langle w_y, v_y - v_j\rangle \ge t$, $\|v_y\| = 1$, $\|w_y\| \le 1$,
and keeps the best by the exact margin. Results are cached on disk (npz).
"""

from __future__ import annotations

import hashlib
import json
import math
import os
from dataclasses import dataclass, field
from functools import lru_cache
from itertools import permutations
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
from jaxtyping import ArrayLike, Float, Real
from scipy.optimize import linear_sum_assignment, minimize, nnls

from .. import _dims as D
from .._checks import check_int
from .._dataset import netcdf_safe
from .._precision import computes

__all__ = [
    "SoftmaxCode",
    "one_vs_rest_margin",
    "exact_rho",
    "softmax_code",
    "code_from_vectors",
    "gram_distance",
    "codes_cache_dir",
    "class_embedding",
    "code_convergence",
]

_CACHE_ENV = "SVFLOW_CACHE_DIR"
_CACHE_VERSION = 1


# --------------------------------------------------------------------------- margin


def _check_vectors(vectors) -> np.ndarray:
    V = np.asarray(vectors, dtype=float)
    if V.ndim != 2 or V.shape[0] < 2 or V.shape[1] < 1:
        raise ValueError(
            f"vectors must have shape (K, r) with K >= 2 classes and r >= 1 dimensions; got shape {V.shape}."
        )
    if not np.all(np.isfinite(V)):
        raise ValueError("vectors contain NaN or inf; pass finite class vectors.")
    return V


def _hull_distance(p: np.ndarray, Q: np.ndarray) -> tuple[float, np.ndarray]:
    r"""Distance from p to conv(rows of Q) and the unit direction w achieving it.

    Least-distance programming (Lawson & Hanson, ch. 23): the smallest w with
    $\langle w, p - q_j\rangle \ge 1$ for all j has $\|w\| = 1/\operatorname{dist}$;
    it is read off the residual of NNLS on $E = [G^\top; \mathbf 1^\top]$,
    $f = e_{r+1}$, $G_j = p - q_j$. A zero residual means p is in the hull.
    The answer is certified: $1/\|w\|$ (w feasible) is a lower bound and the
    hull point with weights $u/\sum u$ an upper bound; if they differ by more
    than 1e-10 (NNLS can stop early on degenerate, highly symmetric sets),
    Wolfe's min-norm-point algorithm is used instead.
    """
    m, r = Q.shape
    G = p[None, :] - Q
    E = np.vstack([G.T, np.ones((1, m))])
    f = np.zeros(r + 1)
    f[-1] = 1.0
    try:
        u, _ = nnls(E, f, maxiter=100 * (m + r + 1))
    except RuntimeError:
        u = np.zeros(m)
    res = E @ u - f
    if np.all(np.isfinite(res)) and u.sum() > 0:
        upper = float(np.linalg.norm(u @ G / u.sum()))
        if abs(res[-1]) > 1e-14:
            w = -res[:r] / res[-1]
            nw = float(np.linalg.norm(w))
            if nw > 0 and np.min(G @ w) >= 1 - 1e-10 and upper - 1.0 / nw <= 1e-10 * max(1.0, upper):
                return 1.0 / nw, w / nw
        elif upper <= 1e-12:
            return 0.0, np.zeros(r)
    return _wolfe(G)


def _wolfe(X: np.ndarray, tol: float = 1e-12, max_iter: int = 1000) -> tuple[float, np.ndarray]:
    """Wolfe's min-norm point of conv(rows of X): (norm, unit direction) (finite active set)."""
    scale = max(1.0, float(np.max(np.sum(X * X, axis=1))))
    j = int(np.argmin(np.sum(X * X, axis=1)))
    S = [j]
    lam = np.array([1.0])
    x = X[j].copy()
    for _ in range(max_iter):
        j = int(np.argmin(X @ x))
        if x @ x - X[j] @ x <= tol * scale or j in S:
            break
        S.append(j)
        lam = np.append(lam, 0.0)
        for _ in range(max_iter):
            XS = X[S]
            k = len(S)
            A = np.zeros((k + 1, k + 1))
            A[:k, :k] = XS @ XS.T
            A[:k, k] = A[k, :k] = 1.0
            b = np.zeros(k + 1)
            b[k] = 1.0
            alpha = np.linalg.lstsq(A, b, rcond=None)[0][:k]
            if np.all(alpha > tol):
                lam = alpha
                break
            neg = alpha <= tol
            theta = np.min(lam[neg] / np.maximum(lam[neg] - alpha[neg], 1e-300))
            theta = min(max(theta, 0.0), 1.0)
            lam = theta * alpha + (1 - theta) * lam
            keep = lam > tol
            S = [s for s, k_ in zip(S, keep) if k_]
            lam = lam[keep] / lam[keep].sum()
        x = lam @ X[S]
    d = float(np.linalg.norm(x))
    if d <= 1e-12 * np.sqrt(scale):
        return 0.0, np.zeros(X.shape[1])
    return d, x / d


@computes
def one_vs_rest_margin(vectors: Real[ArrayLike, "K r"], *, normalise: bool = True, per_class: bool = False):
    r"""Exact one-vs-rest margin
    $\rho = \min_y \operatorname{dist}(v_y, \operatorname{conv}\{v_j\}_{j\ne y})$.

    Args:
        vectors: (K, r) class vectors (rows).
        normalise: scale every row to unit length first (the definition of a
            code uses unit vectors). A zero row raises ``ValueError``.
        per_class: also return the K distances.

    Returns:
        $\rho$ (float), or ``(rho, distances)`` with ``per_class=True``.
    """
    V = _check_vectors(vectors)
    if normalise:
        nrm = np.linalg.norm(V, axis=1)
        if np.any(nrm == 0):
            raise ValueError(
                f"class vector(s) {np.flatnonzero(nrm == 0).tolist()} are zero and cannot "
                "be normalised; pass non-zero class vectors (or normalise=False)."
            )
        V = V / nrm[:, None]
    K = V.shape[0]
    d = np.array([_hull_distance(V[y], np.delete(V, y, axis=0))[0] for y in range(K)])
    rho = float(d.min())
    return (rho, d) if per_class else rho


# --------------------------------------------------------------------------- exact optima


@computes
def exact_rho(classes: int, rank: int) -> float | None:
    r"""Known optimal one-vs-rest margin $\rho^*(K, r)$, or None where none is known.

    r = 1 (K = 2: $\pm 1$, $\rho = 2$); K <= r + 1: simplex $K/(K-1)$;
    r = 2: regular K-gon $1 - \cos(2\pi/K)$; r + 1 < K <= 2r: cross-polytope
    subsets, 1. Other (K, r): None (use :func:`softmax_code`).
    """
    K, r = _check_kr(classes, rank)
    if K <= r + 1:
        return K / (K - 1)
    if r == 1:
        return None  # K >= 3 collinear unit vectors: one lies in the hull, rho = 0
    if r == 2:
        return 1.0 - math.cos(2.0 * math.pi / K)
    if K <= 2 * r:
        return 1.0
    return None


def _check_kr(classes, rank) -> tuple[int, int]:
    return check_int("classes", classes, minimum=2), check_int("rank", rank, minimum=1)


# --------------------------------------------------------------------------- results


@dataclass(frozen=True)
class SoftmaxCode:
    r"""A code: K unit vectors in $\mathbb{R}^r$ and its exact one-vs-rest margin.

    Attributes:
        vectors: (K, r) unit class vectors (rows).
        rho: exact one-vs-rest margin of ``vectors``.
        exact: known optimum $\rho^*(K, r)$ (:func:`exact_rho`) or None.
        settings: the optimiser settings that produced it (cache key).
        source: ``"optimised"``, ``"cache"`` or ``"given"``.
    """

    vectors: np.ndarray
    rho: float
    exact: float | None = None
    settings: dict = field(default_factory=dict)
    source: str = "given"

    @property
    def classes(self) -> int:
        return int(self.vectors.shape[0])

    @property
    def rank(self) -> int:
        return int(self.vectors.shape[1])

    @property
    def gram(self) -> np.ndarray:
        """Gram matrix $G = V V^\\top$ (K, K), rotation invariant, unit diagonal."""
        return self.vectors @ self.vectors.T


def code_from_vectors(vectors: Real[ArrayLike, "K r"]) -> SoftmaxCode:
    """Wrap given class vectors (normalised) as a :class:`SoftmaxCode`."""
    V = _check_vectors(vectors)
    V = V / np.linalg.norm(V, axis=1, keepdims=True)
    K, r = V.shape
    return SoftmaxCode(V, one_vs_rest_margin(V), exact_rho(K, r) if K >= 2 else None)


# --------------------------------------------------------------------------- optimiser


def _adam_batch(K: int, r: int, starts: int, steps: int, seed: int) -> np.ndarray:
    """Adam ascent on the softmin surrogate for ``starts`` seeded starts (one jit+vmap)."""
    mask = ~np.eye(K, dtype=bool)

    def surrogate(params, T):
        X, Wr = params
        v = X / jnp.linalg.norm(X, axis=1, keepdims=True)
        w = Wr / jnp.linalg.norm(Wr, axis=1, keepdims=True)
        s = jnp.sum(w[:, None, :] * (v[:, None, :] - v[None, :, :]), axis=-1)
        s = jnp.where(mask, s, jnp.inf)
        return T * jax.nn.logsumexp(-s.ravel() / T)  # = -softmin_T(s): minimise

    grad = jax.grad(surrogate)
    Ts = jnp.geomspace(0.1, 1e-4, steps)
    lrs = jnp.geomspace(3e-2, 1e-4, steps)
    b1, b2 = 0.9, 0.999

    def run(key):
        k1, k2 = jax.random.split(key)
        X = jax.random.normal(k1, (K, r))
        Wr = X + 0.1 * jax.random.normal(k2, (K, r))
        p = (X, Wr)
        zeros = jax.tree.map(jnp.zeros_like, p)

        def body(carry, i):
            p, m, v = carry
            g = grad(p, Ts[i])
            m = jax.tree.map(lambda a, b: b1 * a + (1 - b1) * b, m, g)
            v = jax.tree.map(lambda a, b: b2 * a + (1 - b2) * b * b, v, g)
            c1, c2 = 1 - b1 ** (i + 1.0), 1 - b2 ** (i + 1.0)
            p = jax.tree.map(
                lambda a, mm, vv: a - lrs[i] * (mm / c1) / (jnp.sqrt(vv / c2) + 1e-12),
                p,
                m,
                v,
            )
            return (p, m, v), None

        (p, _, _), _ = jax.lax.scan(body, (p, zeros, zeros), jnp.arange(steps))
        X = p[0]
        return X / jnp.linalg.norm(X, axis=1, keepdims=True)

    keys = jax.random.split(jax.random.PRNGKey(seed), starts)
    out = jax.jit(jax.vmap(run))(keys)
    return np.asarray(out, dtype=float)


def _polish(V: np.ndarray, maxiter: int = 500) -> np.ndarray:
    r"""SLSQP on $\max t$ s.t. $\langle w_y, v_y - v_j\rangle \ge t$, $\|v_y\|^2 = 1$, $\|w_y\|^2 \le 1$."""
    K, r = V.shape
    W = np.array([_hull_distance(V[y], np.delete(V, y, axis=0))[1] for y in range(K)])
    W = np.where(np.linalg.norm(W, axis=1, keepdims=True) > 0, W, V)
    iy, ij = np.nonzero(~np.eye(K, dtype=bool))
    M, n = len(iy), K * r
    rows = np.arange(M)

    def unpack(x):
        return x[:n].reshape(K, r), x[n : 2 * n].reshape(K, r), x[-1]

    def c_margin(x):
        V, W, t = unpack(x)
        return np.sum(W[iy] * (V[iy] - V[ij]), axis=1) - t

    def j_margin(x):
        V, W, _ = unpack(x)
        J = np.zeros((M, 2 * n + 1))
        for d in range(r):
            J[rows, iy * r + d] += W[iy, d]
            J[rows, ij * r + d] -= W[iy, d]
            J[rows, n + iy * r + d] = V[iy, d] - V[ij, d]
        J[:, -1] = -1.0
        return J

    def c_v(x):
        V, _, _ = unpack(x)
        return np.sum(V * V, axis=1) - 1.0

    def j_v(x):
        V, _, _ = unpack(x)
        J = np.zeros((K, 2 * n + 1))
        for d in range(r):
            J[np.arange(K), np.arange(K) * r + d] = 2 * V[:, d]
        return J

    def c_w(x):
        _, W, _ = unpack(x)
        return 1.0 - np.sum(W * W, axis=1)

    def j_w(x):
        _, W, _ = unpack(x)
        J = np.zeros((K, 2 * n + 1))
        for d in range(r):
            J[np.arange(K), n + np.arange(K) * r + d] = -2 * W[:, d]
        return J

    x0 = np.concatenate([V.ravel(), W.ravel(), [0.0]])
    x0[-1] = c_margin(x0).min()
    e = np.zeros(2 * n + 1)
    e[-1] = -1.0
    res = minimize(
        lambda x: -x[-1],
        x0,
        jac=lambda x: e,
        method="SLSQP",
        constraints=[
            dict(type="ineq", fun=c_margin, jac=j_margin),
            dict(type="eq", fun=c_v, jac=j_v),
            dict(type="ineq", fun=c_w, jac=j_w),
        ],
        options=dict(maxiter=maxiter, ftol=1e-15),
    )
    Vn = unpack(res.x)[0]
    nrm = np.linalg.norm(Vn, axis=1, keepdims=True)
    if not np.all(np.isfinite(Vn)) or np.any(nrm == 0):
        return V
    return Vn / nrm


def codes_cache_dir(cache_dir=None) -> Path:
    """Directory of the code cache: ``cache_dir``, else ``$SVFLOW_CACHE_DIR/codes``,
    else ``$XDG_CACHE_HOME/svflow/codes`` (default ``~/.cache/svflow/codes``)."""
    if cache_dir is not None:
        return Path(cache_dir)
    env = os.environ.get(_CACHE_ENV)
    if env:
        return Path(env) / "codes"
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(base) / "svflow" / "codes"


@computes
def softmax_code(
    classes: int,
    rank: int,
    *,
    starts: int = 64,
    steps: int = 3000,
    seed: int = 0,
    polish: int = 4,
    cache: bool = True,
    cache_dir=None,
    construct: bool = True,
) -> SoftmaxCode:
    r"""The best softmax code found for (K, r): maximise $\rho$ over K unit vectors in $\mathbb{R}^r$.

    ``starts`` seeded random starts run as one vmapped, jit-compiled Adam
    ascent of the softmin surrogate (temperature annealed 0.1 -> 1e-4); the
    ``polish`` best (by exact margin) are refined by SLSQP; the best exact
    margin is kept. Where :func:`exact_rho` knows the optimum the result
    reaches it to ~1e-12 in tests.

    Args:
        classes: K >= 2.
        rank: r >= 1.
        starts, steps, seed, polish: optimiser settings (part of the cache key).
        cache: read/write the on-disk cache (npz files; see :func:`codes_cache_dir`).
        cache_dir: override the cache directory.
        construct: build the regular simplex directly when K <= r + 1 (False
            runs the optimiser there too, e.g. to test it).

    Returns:
        A :class:`SoftmaxCode`.
    """
    K, r = _check_kr(classes, rank)
    if r > K - 1:
        raise ValueError(
            f"rank must be <= K - 1 = {K - 1}: K centred class vectors span at most K - 1 "
            f"dimensions (the regular simplex); got rank={r}."
        )
    starts = check_int("starts", starts, minimum=1)
    steps = check_int("steps", steps, minimum=1)
    polish = check_int("polish", polish, minimum=0)
    seed = check_int("seed", seed, minimum=0)
    settings = dict(classes=K, rank=r, starts=starts, steps=steps, seed=seed, polish=polish)
    settings.update(construct=bool(construct), version=_CACHE_VERSION)
    exact = exact_rho(K, r)
    key = hashlib.sha1(json.dumps(settings, sort_keys=True).encode()).hexdigest()[:12]
    path = codes_cache_dir(cache_dir) / f"code_K{K}_r{r}_{key}.npz"
    V = _read_cached_code(path, settings) if cache else None
    if V is not None:
        return SoftmaxCode(V, one_vs_rest_margin(V), exact, settings, "cache")
    scored = [(one_vs_rest_margin(V), V) for V in _code_candidates(K, r, settings)]
    rho, V = max(scored, key=lambda t: t[0])
    V = V / np.linalg.norm(V, axis=1, keepdims=True)
    if cache:
        _write_cached_code(path, V, rho, settings)
    return SoftmaxCode(V, float(rho), exact, settings, "optimised")


def _read_cached_code(path: Path, settings: dict) -> np.ndarray | None:
    """The vectors of a cached code with exactly these ``settings``; None if absent or unreadable."""
    if not path.exists():
        return None
    K, r = settings["classes"], settings["rank"]
    try:
        with np.load(path, allow_pickle=False) as f:
            stored = json.loads(str(f["settings"]))
            V = np.asarray(f["vectors"], float)
        if stored == settings and V.shape == (K, r):
            return V
    except (OSError, ValueError, KeyError):
        pass  # unreadable cache entry: recompute and overwrite
    return None


def _write_cached_code(path: Path, V: np.ndarray, rho, settings: dict) -> None:
    """Store a code atomically; a read-only cache location must not break the computation."""
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(f".{os.getpid()}.tmp.npz")
        np.savez(tmp, vectors=V, rho=rho, settings=json.dumps(settings, sort_keys=True))
        os.replace(tmp, path)
    except OSError:
        pass


def _code_candidates(K: int, r: int, settings: dict) -> list[np.ndarray]:
    """Candidate codes: the construction (r = 1, K = 2, or a regular simplex), else the optimiser's best."""
    if r == 1 or K == 2:
        V = np.zeros((K, r))
        V[:, 0] = 1.0
        V[1::2, 0] = -1.0  # K = 2: +-e1; K >= 3 on a line: every margin is 0 anyway
        return [V]
    if K <= r + 1 and settings["construct"]:
        # regular simplex in the first K-1 coordinates
        E = np.eye(K) - 1.0 / K
        w, Q = np.linalg.eigh(E)
        S = Q[:, w > 0.5] * np.sqrt(K / (K - 1))
        V = np.zeros((K, r))
        V[:, : K - 1] = S
        return [V]
    # many seeded starts, then polish the best few
    polish = settings["polish"]
    Vs = _adam_batch(K, r, settings["starts"], settings["steps"], settings["seed"])
    rhos = np.array([one_vs_rest_margin(V) for V in Vs])
    order = np.argsort(-rhos)
    cands = [Vs[i] for i in order[: max(1, polish)]]
    return cands + [_polish(V) for V in cands] if polish else cands


# --------------------------------------------------------------------------- Gram distance


@lru_cache(maxsize=8)
def _all_perms(K: int) -> tuple[np.ndarray, np.ndarray]:
    P = np.array(list(permutations(range(K))), dtype=np.int32)
    idx = (P[:, :, None] * K + P[:, None, :]).reshape(len(P), K * K)
    return P, idx


def _perm_cost(G: np.ndarray, R: np.ndarray, p: np.ndarray) -> float:
    return float(np.sum((G - R[np.ix_(p, p)]) ** 2))


@computes
def gram_distance(
    gram: Real[ArrayLike, "K K"],
    reference: Real[ArrayLike, "K K"],
    *,
    exhaustive_max: int = 8,
    restarts: int = 32,
) -> tuple[float, np.ndarray]:
    r"""Distance between two codes modulo rotation and relabelling of classes.

    $$d(G, G^*) = \min_{\pi} \Bigl(\frac{1}{K(K-1)}\sum_{x \ne y}
      (G_{xy} - G^*_{\pi(x)\pi(y)})^2\Bigr)^{1/2},$$

    the root-mean-square difference of the off-diagonal cosines (Gram
    matrices of unit vectors are rotation invariant, so only relabellings
    $\pi$ remain). Exhaustive over all $K!$ permutations for
    ``K <= exhaustive_max``; otherwise a heuristic upper bound: factor both
    Gram matrices into vectors, alternate orthogonal Procrustes (rotation) and
    Hungarian assignment (labels) from ``restarts`` random rotations, keep the
    best, then descend by 2-swaps of labels.

    Returns:
        ``(distance, perm)`` with ``perm[x]`` the reference label of class x.
    """
    G = np.asarray(gram, float)
    R = np.asarray(reference, float)
    if G.ndim != 2 or G.shape[0] != G.shape[1] or G.shape != R.shape:
        raise ValueError(
            f"gram and reference must be square matrices of one shape; got {G.shape} and {R.shape}."
        )
    exhaustive_max = check_int("exhaustive_max", exhaustive_max, minimum=0)
    restarts = check_int("restarts", restarts, minimum=1)
    K = G.shape[0]
    norm = K * (K - 1)
    if K <= exhaustive_max:
        P, idx = _all_perms(K)
        # sum (G - R_p)^2 = sum G^2 + sum R^2 - 2 <G, R_p>; maximise the inner product
        inner = R.ravel()[idx] @ G.ravel()
        i = int(np.argmax(inner))
        best = _perm_cost(G, R, P[i])  # recomputed directly: no cancellation
        return math.sqrt(max(best, 0.0) / norm), P[i].copy()
    # --- heuristic: rotation/assignment alternation from random rotations, then 2-swap
    A, B = _gram_vectors(G), _gram_vectors(R)
    d = max(A.shape[1], B.shape[1])
    A = np.pad(A, ((0, 0), (0, d - A.shape[1])))
    B = np.pad(B, ((0, 0), (0, d - B.shape[1])))
    rng = np.random.default_rng(0)
    best, bestp = np.inf, np.arange(K)
    for trial in range(restarts):
        Q = np.eye(d) if trial == 0 else np.linalg.qr(rng.normal(size=(d, d)))[0]
        p = np.full(K, -1)  # no assignment yet: the first one never matches
        for _ in range(50):
            cost = -(A @ Q) @ B.T  # squared distance up to constants
            _, q = linear_sum_assignment(cost)
            if np.array_equal(p, q):
                break
            p = q
            U, _, Vt = np.linalg.svd(A.T @ B[p])  # orthogonal Procrustes: A Q ~ B[p]
            Q = U @ Vt
        c = _perm_cost(G, R, p)
        if c < best:
            best, bestp = c, p
    p, c = bestp.copy(), best
    improved = True
    while improved:
        improved = False
        for a in range(K - 1):
            for b in range(a + 1, K):
                q = p.copy()
                q[a], q[b] = q[b], q[a]
                cq = _perm_cost(G, R, q)
                if cq < c - 1e-15:
                    p, c, improved = q, cq, True
    return math.sqrt(max(c, 0.0) / norm), p


def _gram_vectors(G: np.ndarray, rtol: float = 1e-9) -> np.ndarray:
    """Rows V with V V^T = G (positive part of G), keeping eigenvalues > rtol * max."""
    w, Q = np.linalg.eigh((G + G.T) / 2)
    keep = w > rtol * max(w.max(), 0.0)
    keep |= np.arange(len(w)) == len(w) - 1
    return Q[:, keep] * np.sqrt(np.maximum(w[keep], 0.0))


# --------------------------------------------------------------------------- trajectories


@computes
def class_embedding(logits: Real[ArrayLike, "K Kn"], rank: int) -> Float[np.ndarray, "K r"]:
    r"""Unit class vectors in $\mathbb{R}^r$ from the top-r SVD of the centred class-mean logits.

    ``logits`` Z has shape (K, K n), columns class-major (column $c n + j$ is
    sample j of class c). With $\bar Z$ the (K, K) class means (column y =
    class y) and $P = I - \mathbf 1\mathbf 1^\top/K$, the centred matrix
    $C = P\bar Z P$ removes the per-column logit shift (which the softmax
    ignores) and the mean over classes. With $C = A S B^\top$, class y is
    embedded at $(S_r B_r^\top)_{:,y}$, normalised. For the reduced ODE,
    $Z = U\operatorname{diag}(\lambda)U^\top$, $U = H/\sqrt K$.
    """
    Z = np.asarray(logits, float)
    if Z.ndim != 2 or Z.shape[1] % Z.shape[0]:
        raise ValueError(f"logits must have shape (K, K n) (classes x samples); got {Z.shape}.")
    K = Z.shape[0]
    rank = check_int("rank", rank, minimum=1, maximum=K)
    n = Z.shape[1] // K
    Zb = Z.reshape(K, K, n).mean(axis=-1)
    P = np.eye(K) - 1.0 / K
    C = P @ Zb @ P
    _, S, Bt = np.linalg.svd(C)
    E = (S[:rank, None] * Bt[:rank]).T  # (K, r)
    nrm = np.linalg.norm(E, axis=1, keepdims=True)
    return E / np.where(nrm > 0, nrm, 1.0)


def _logits_over_time(ds, logits) -> np.ndarray:
    if logits is not None:
        Z = np.asarray(logits, float)
    elif "logits" in ds:
        Z = np.asarray(ds["logits"].values, float)
    elif "lam" in ds:
        lam = np.asarray(ds["lam"].values, float)
        K = lam.shape[-1]
        from .._groups import spectral_basis

        # the dataset's own frame (attr "group"; default Walsh for K = 2^m, else cyclic)
        U = spectral_basis(K, ds.attrs.get("group"))
        Z = np.einsum("ik,tk,jk->tij", U, lam, U)
    else:
        raise ValueError(
            "code_convergence needs the logits: the dataset has no 'lam' (Walsh-frame "
            "eigenvalues) or 'logits' variable; pass logits=Z with shape (time, K, K n)."
        )
    if Z.ndim != 3 or Z.shape[0] != ds.sizes["time"]:
        raise ValueError(
            f"logits must have shape (time, K, K n) with time = {ds.sizes['time']}; got {Z.shape}."
        )
    return Z


@computes
def code_convergence(
    ds,
    *,
    rank: int | None = None,
    logits=None,
    code: SoftmaxCode | None = None,
    gram: bool = True,
    exhaustive_max: int = 8,
    code_kwargs: dict | None = None,
):
    r"""How close the class geometry of a trajectory is to the best softmax code of its rank.

    At every saved time: embed the classes in $\mathbb{R}^r$ (:func:`class_embedding`
    of Z; Z from ``logits``, the dataset's ``logits`` variable, or
    $U\operatorname{diag}(\lambda)U^\top$ from ``lam``), compute the exact
    one-vs-rest margin $\rho(t)$, the ratio $\rho(t)/\rho^*(K, r)$, and the
    Gram distance (:func:`gram_distance`) to the best code found.

    Args:
        ds: a trajectory dataset (either engine).
        rank: r; default the dataset's numerical ``rank`` at the last time
            (the rank of the outcome), held fixed over time.
        logits: optional (time, K, K n) logits (full engine, random starts).
        code: the reference code; default :func:`softmax_code` (K, r) with
            ``code_kwargs``; where :func:`exact_rho` knows $\rho^*$ it is used.
        gram: compute the Gram distance (costs ~0.1 s per time for K = 8).

    Returns:
        ``xarray.Dataset`` over ``time`` with ``code_rho``, ``code_rho_ratio``
        and (``gram=True``) ``code_gram_distance``; attrs ``code_rank``,
        ``code_rho_star``.
    """
    import xarray as xr

    Z = _logits_over_time(ds, logits)
    K, r, code = _reference_code(ds, Z.shape[1], rank, code, code_kwargs)
    rho_star = code.exact if code.exact is not None else code.rho
    rho, dist = _code_curves(Z, r, code, gram, exhaustive_max)
    data = {
        "code_rho": (
            D.TIME,
            rho,
            {"long_name": "one-vs-rest margin of the rank-r class embedding", "units": "1"},
        ),
        "code_rho_ratio": (D.TIME, rho / rho_star, {"long_name": "rho / rho*(K, r)", "units": "1"}),
    }
    if gram:
        data["code_gram_distance"] = (
            D.TIME,
            dist,
            {
                "long_name": "RMS off-diagonal Gram difference to the best code, min over relabellings",
                "units": "1",
            },
        )
    attrs = {
        "code_classes": K,
        "code_rank": r,
        "code_rho_star": float(rho_star),
        "code_rho_star_exact": code.exact is not None,
        "code_rho_found": float(code.rho),
    }
    return netcdf_safe(xr.Dataset(data, coords={D.TIME: ds[D.TIME]}, attrs=attrs))


def _reference_code(ds, K: int, rank, code, code_kwargs) -> tuple[int, int, SoftmaxCode]:
    """``(K, r, code)``: the rank (default: the dataset's last ``rank``) and the (K, r) code checked."""
    if rank is None:
        if "rank" in ds:
            rank = int(np.asarray(ds["rank"].values)[-1])
        else:
            raise ValueError("the dataset has no 'rank' variable; pass rank=r.")
    K, r = _check_kr(K, int(rank))
    if r > K - 1:
        raise ValueError(f"rank must be <= K - 1 = {K - 1} (centred logits); got {r}.")
    if code is None:
        code = softmax_code(K, r, **(code_kwargs or {}))
    if code.vectors.shape != (K, r):
        raise ValueError(f"code has shape {code.vectors.shape}; expected (K, r) = ({K}, {r}).")
    return K, r, code


def _code_curves(Z: np.ndarray, r: int, code: SoftmaxCode, gram: bool, exhaustive_max: int):
    """Per time: the one-vs-rest margin of the rank-r embedding and (``gram``) its Gram distance."""
    T = Z.shape[0]
    rho = np.zeros(T)
    dist = np.full(T, np.nan)
    for t in range(T):
        E = class_embedding(Z[t], r)
        if np.any(np.linalg.norm(E, axis=1) < 0.5):  # a class at the origin: no geometry yet
            rho[t] = 0.0
        else:
            rho[t] = one_vs_rest_margin(E, normalise=False)
        if gram:
            dist[t] = gram_distance(E @ E.T, code.gram, exhaustive_max=exhaustive_max)[0]
    return rho, dist
