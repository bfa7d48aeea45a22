r"""Asymptotic outcomes of spectral starts: max-margin KKT points and Walsh codes.

Under cross-entropy without weight decay the norm diverges and, for these
homogeneous models, the direction converges to a KKT point of the max-margin
problem (Lyu & Li 2020; docs: theory/outcomes.md). For a balanced spectral
state ($|s_{l,i}| = |\lambda_i|^{1/N}$, N = depth + 1 factors) the parameter
norm is $\sum_l\|W_l\|_F^2 = N\sum_i|\lambda_i|^{2/N}$ and the problem reads

$$\min_{\lambda \ge 0}\ \sum_{i \ge 1}\lambda_i^{2/N}
  \quad\text{s.t.}\quad
  m_k(\lambda) = \frac{2}{K}\sum_{j:\ \mathrm{popcount}(j\&k)\ \mathrm{odd}}\lambda_j \ \ge 1,
  \quad k = 1, \dots, K-1 .$$

Mode 0 never enters a margin and is 0. Spectral starts with positive
$\lambda(0)$ stay positive, so $\lambda \ge 0$ throughout. The *normalised
margin* is $\gamma = \min_k m_k / (N\sum_i|\lambda_i|^{2/N})^{N/2}$ (scale
invariant; the quantity gradient flow maximises in direction).

An equal-$\lambda$ support S (|S| = r) is a binary linear $[r, m, d]$ code
(m = log2 K, d its minimum distance = $\min_k \#\{i \in S: \mathrm{popcount}(i\&k)\ \mathrm{odd}\}$);
it separates all classes iff d > 0, and

$$\gamma_S = \frac{2}{K}\,\frac{d}{(N r)^{N/2}} .$$

For N = 2 (an L1 problem) the simplex code $[K-1, m, K/2]$ (neural collapse)
wins; deeper networks favour shorter codes.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache
from itertools import combinations

import numpy as np
from scipy.optimize import least_squares, minimize, nnls

from .. import _dims as D
from .._checks import check_int
from .._dataset import netcdf_safe
from .._precision import computes
from .._walsh import check_classes

__all__ = [
    "margin_matrix",
    "normalised_margin",
    "walsh_supports",
    "code_table",
    "vertex_optimum",
    "MaxMarginPoint",
    "max_margin_direction",
    "kkt_residual",
    "kkt_point",
    "asymptotic_direction",
]


def _group_name(group, classes) -> str:
    """ "walsh" for the default group of a power-of-two K (or an explicit Walsh group)."""
    if group is None:
        K = int(classes) if isinstance(classes, (int, np.integer)) else 0
        return "walsh" if K >= 2 and not (K & (K - 1)) else "other"
    from .._groups import resolve_group

    return resolve_group(group, classes).name


@lru_cache(maxsize=16)
def _odd(K: int) -> np.ndarray:
    idx = np.arange(K)
    return (np.bitwise_count(idx[:, None] & idx[None, :]) % 2).astype(np.int64)


def margin_matrix(classes: int) -> np.ndarray:
    r"""$M_{ki} = (2/K)[\mathrm{popcount}(i\&k)\ \mathrm{odd}]$ for k, i = 1..K-1: $m = M\lambda_{1:}$."""
    check_classes(classes)
    return (2.0 / classes) * _odd(classes)[1:, 1:].astype(float)


def _as_lam(lam, K: int | None = None) -> np.ndarray:
    lam = np.asarray(lam, dtype=float)
    if lam.ndim != 1:
        raise ValueError(f"lam must be one state of shape (K,); got shape {lam.shape}.")
    check_classes(lam.shape[0])
    if K is not None and lam.shape[0] != K:
        raise ValueError(f"lam has K = {lam.shape[0]} modes; expected {K}.")
    if not np.all(np.isfinite(lam)):
        raise ValueError("lam contains NaN or inf; pass a finite state.")
    return lam


@computes
def normalised_margin(lam, factors: int) -> float:
    r"""$\gamma = \min_k m_k / (N\sum_{i\ge1}|\lambda_i|^{2/N})^{N/2}$ of a balanced spectral state."""
    return _normalised_margin(_as_lam(lam), check_int("factors N = depth + 1", factors, minimum=2))


def _normalised_margin(lam: np.ndarray, N: int) -> float:
    """:func:`normalised_margin` without the argument checks."""
    K = lam.shape[0]
    m = margin_matrix(K) @ lam[1:]
    norm = N * np.sum(np.abs(lam[1:]) ** (2.0 / N))
    if norm == 0:
        raise ValueError("lam is zero on every mode 1..K-1: the normalised margin is undefined.")
    return float(m.min() / norm ** (N / 2.0))


# --------------------------------------------------------------------------- Walsh supports


@computes
def walsh_supports(classes: int):
    r"""Every Walsh support $S \subseteq \{1, \dots, K-1\}$ that separates all classes.

    Vectorised over all $2^{K-1}$ subsets (32768 for K = 16). For each: the
    size r, the minimum distance d of the code $x \mapsto (h_i(x))_{i\in S}$,
    its one-vs-rest margin $\rho = 2d/r$ and the weight of every nonzero
    message k (the number of modes in S with popcount(i & k) odd; the code
    is injective iff all are > 0).

    Returns:
        ``xarray.Dataset`` over dim ``support`` with ``mask`` (support, mode),
        ``size``, ``dmin``, ``rho``, ``bits`` (subset as an integer over modes 1..K-1).
    """
    import xarray as xr

    m = check_classes(classes)
    K = classes
    if K > 32:
        raise ValueError(f"enumerating 2^(K-1) supports is limited to K <= 32; got K = {K}.")
    n = K - 1
    bits = np.arange(1, 2**n, dtype=np.int64)
    member = ((bits[:, None] >> np.arange(n)[None, :]) & 1).astype(np.int16)  # (B, n): mode i+1
    weights = member @ _odd(K)[1:, 1:].T.astype(np.int16)  # (B, k): messages 1..K-1
    dmin = weights.min(axis=1)
    ok = dmin > 0
    member, dmin, bits = member[ok], dmin[ok], bits[ok]
    size = member.sum(axis=1)
    mask = np.concatenate([np.zeros((len(bits), 1), bool), member.astype(bool)], axis=1)
    return netcdf_safe(
        xr.Dataset(
            {
                "mask": (("support", "mode"), mask, {"long_name": "mode i in S"}),
                "size": (
                    "support",
                    size.astype(np.int64),
                    {"long_name": "code length r = |S|"},
                ),
                "dmin": (
                    "support",
                    dmin.astype(np.int64),
                    {"long_name": "minimum distance d"},
                ),
                "rho": (
                    "support",
                    2.0 * dmin / size,
                    {"long_name": "one-vs-rest margin 2d/r"},
                ),
                "bits": (
                    "support",
                    bits,
                    {"long_name": "S as a bit set over modes 1..K-1"},
                ),
            },
            coords={"mode": np.arange(K)},
            attrs={"classes": K, "m": m},
        )
    )


def _code_name(K: int, r: int, d: int) -> str:
    m = K.bit_length() - 1
    if r == K - 1 and d == K // 2:
        return f"simplex [{r},{m},{d}] (NC)"
    if r == m and d == 1:
        return f"hypercube [{r},{m},{d}]"
    if r == m + 1 and d == 2:
        return f"even-weight [{r},{m},{d}]"
    return f"[{r},{m},{d}]"


@computes
def code_table(classes: int, factors=range(2, 9), *, global_check: bool | None = None, group=None):
    r"""Predicted winning equal-$\lambda$ Walsh code per depth, ranked by $\gamma_S$.

    ``group`` other than the Walsh group (``"cyclic"``, a tuple of orders, or
    the default for K not a power of two) hands over to
    :func:`svflow._analysis.group_codes.group_code_table` (supports are unions of
    conjugate pairs; same layout).

    For each N: the support(s) maximising $\gamma_S = (2/K)\,d/(N r)^{N/2}$ over
    all separating supports (only the largest d per size r can win). With
    ``global_check`` (default for K <= 8) also the global optimum of the
    max-margin problem over all $\lambda \ge 0$ (:func:`vertex_optimum`), which
    tells whether unequal $\lambda$ beat every equal-$\lambda$ code.

    Returns:
        ``xarray.Dataset`` over ``factors`` (N) with ``depth`` (= N - 1),
        ``size``, ``dmin``, ``rho``, ``gamma``, ``ties`` (number of supports
        attaining the best $\gamma$), ``runner_up_ratio`` (second-best size's
        $\gamma$ / best), ``name``, ``example`` (factors, mode) mask; over
        ``size`` the best d per length (``dmax_by_size``, ``count_by_size``);
        optionally ``gamma_global`` and ``global_support_size``.
    """
    import xarray as xr

    if _group_name(group, classes) != "walsh":
        from .group_codes import group_code_table

        return group_code_table(classes, factors, group=group, global_check=global_check)
    K = classes
    sup = walsh_supports(K)
    Ns = np.array([check_int("factors N = depth + 1", int(N), minimum=2) for N in factors])
    if Ns.size == 0:
        raise ValueError("factors must list at least one N >= 2.")
    size, dmin = sup["size"].values, sup["dmin"].values
    sizes = np.arange(1, K)
    dmax = np.array([dmin[size == r].max() if np.any(size == r) else 0 for r in sizes])
    count = np.array([np.sum((size == r) & (dmin == dmax[i])) for i, r in enumerate(sizes)])
    rows = [_walsh_winner(K, int(N), sizes, dmax, count, sup) for N in Ns]
    data = _code_table_vars(Ns, rows, dmax, count)
    if global_check is None:
        global_check = K <= 8
    if global_check:
        data.update(_global_optimum_vars(K, Ns))
    return netcdf_safe(
        xr.Dataset(
            data,
            coords={"factors": Ns, D.MODE: np.arange(K), "size_r": sizes},
            attrs={
                "classes": K,
                "description": "predicted winning Walsh code per depth (equal lambda on the support)",
            },
        )
    )


def _walsh_winner(K: int, N: int, sizes, dmax, count, sup) -> dict:
    r"""The equal-$\lambda$ Walsh code of largest $\gamma_S = (2/K)\,d/(N r)^{N/2}$ for N factors."""
    size, dmin = sup["size"].values, sup["dmin"].values
    g = np.where(dmax > 0, (2.0 / K) * dmax / (N * sizes) ** (N / 2.0), -np.inf)
    order = np.argsort(-g)
    i = int(order[0])
    r, d = int(sizes[i]), int(dmax[i])
    best = g[i]
    tied_sizes = sizes[np.isclose(g, best, rtol=1e-12, atol=0)]
    second = g[order[1]] if np.isfinite(g[order[1]]) else 0.0
    return {
        "size": r,
        "dmin": d,
        "rho": 2.0 * d / r,
        "gamma": best,
        "ties": int(sum(count[sizes == s][0] for s in tied_sizes)),
        "runner": second / best,
        "name": _code_name(K, r, d) + ("" if len(tied_sizes) == 1 else " (tie)"),
        "example": sup["mask"].values[np.flatnonzero((size == r) & (dmin == d))[0]],
    }


def _code_table_vars(Ns, rows: list, dmax, count) -> dict:
    """The variables of :func:`code_table` from the winners ``rows`` (one per N)."""

    def per_n(key, long_name):
        return ("factors", np.array([row[key] for row in rows]), {"long_name": long_name})

    return {
        "depth": ("factors", Ns - 1, {"long_name": "depth L = N - 1"}),
        "size": per_n("size", "winning code length r"),
        "dmin": per_n("dmin", "winning code minimum distance"),
        "rho": per_n("rho", "one-vs-rest margin 2d/r"),
        "gamma": per_n("gamma", "normalised margin (2/K) d/(N r)^(N/2)"),
        "ties": per_n("ties", "supports attaining the best gamma"),
        "runner_up_ratio": per_n("runner", "gamma of the best other length / winner's gamma"),
        "name": ("factors", D.text([row["name"] for row in rows])),
        "example": (
            ("factors", D.MODE),
            np.array([row["example"] for row in rows]),
            {"long_name": "a winning support"},
        ),
        "dmax_by_size": ("size_r", dmax, {"long_name": "largest minimum distance of a length-r support"}),
        "count_by_size": ("size_r", count, {"long_name": "supports of length r attaining it"}),
    }


def _global_optimum_vars(K: int, Ns) -> dict:
    """``gamma_global`` and ``global_support_size``: the optimum over all lambda >= 0 per N."""
    gg, gs = [], []
    for N in Ns:
        lam, gam = vertex_optimum(K, int(N))
        gg.append(gam)
        gs.append(int(np.sum(lam[1:] > 1e-9 * lam.max())))
    return {
        "gamma_global": (
            "factors",
            np.array(gg),
            {"long_name": "global max normalised margin over lambda >= 0 (vertex enumeration)"},
        ),
        "global_support_size": ("factors", np.array(gs)),
    }


@lru_cache(maxsize=4)
def _vertices(K: int) -> np.ndarray:
    """All vertices of {lam >= 0, M lam >= 1} over modes 1..K-1 (exact enumeration)."""
    n = K - 1
    A = np.vstack([margin_matrix(K), np.eye(n)])
    b = np.concatenate([np.ones(n), np.zeros(n)])
    combos = np.array(list(combinations(range(2 * n), n)))
    As = A[combos]
    bs = b[combos]
    det = np.linalg.det(As)
    ok = np.abs(det) > 1e-9
    sol = np.linalg.solve(As[ok], bs[ok][..., None])[..., 0]
    feas = np.all(sol @ A.T >= b - 1e-9, axis=1)
    V = np.round(sol[feas], 12)
    return np.unique(V, axis=0)


def vertex_optimum(classes: int, factors: int) -> tuple[np.ndarray, float]:
    r"""Global optimum of the max-margin problem over all $\lambda \ge 0$ by vertex enumeration.

    $\sum_i\lambda_i^{2/N}$ is concave and nondecreasing on $\lambda \ge 0$
    (N >= 2), so its minimum over the polyhedron $\{\lambda\ge0,\ M\lambda\ge1\}$
    sits at a vertex; all $\binom{2(K-1)}{K-1}$ candidate vertices are solved
    (K <= 8: 3432 systems of size 7). Returns ($\lambda^*$ (K,), $\gamma^*$).
    """
    check_classes(classes)
    N = check_int("factors N = depth + 1", factors, minimum=2)
    if classes > 8:
        raise ValueError(f"vertex enumeration is limited to K <= 8; got K = {classes}.")
    V = _vertices(classes)
    cost = np.sum(V ** (2.0 / N), axis=1)
    i = int(np.argmin(cost))
    lam = np.concatenate([[0.0], V[i]])
    return lam, _normalised_margin(lam, N)


# --------------------------------------------------------------------------- KKT solver


@dataclass(frozen=True)
class MaxMarginPoint:
    r"""A KKT point of $\min\sum_i\lambda_i^{2/N}$ s.t. $m_k \ge 1$ (scaled so $\min_k m_k = 1$).

    Attributes:
        lam: (K,) the point ($\lambda_0 = 0$).
        direction: lam / ||lam||.
        factors: N.
        normalised_margin: $\gamma$ at the point.
        kkt_residual: relative stationarity residual (:func:`kkt_residual`).
        multipliers: (K,) NNLS multipliers $\nu_k$ of the active margins (0 elsewhere).
        active: (K,) bool, margins with $m_k \le 1 + \mathrm{tol}$.
        support: (K,) bool, modes with $\lambda_i > \mathrm{tol}\,\max\lambda$.
        infeasibility: $\max(0, 1 - \min_k m_k)$.
        converged: KKT residual < 1e-6 and infeasibility < 1e-9.
        message: the optimiser's message.
    """

    lam: np.ndarray
    direction: np.ndarray
    factors: int
    normalised_margin: float
    kkt_residual: float
    multipliers: np.ndarray
    active: np.ndarray
    support: np.ndarray
    infeasibility: float
    converged: bool
    message: str


def kkt_residual(lam, factors: int, *, tol: float = 1e-6) -> tuple[float, np.ndarray, np.ndarray, np.ndarray]:
    r"""Stationarity residual of the max-margin problem at $\lambda$ (scaled to $\min m = 1$).

    On the support P ($\lambda_i > \mathrm{tol}\cdot\max\lambda$) stationarity reads
    $\tfrac{2}{N}\lambda_i^{2/N-1} = \sum_{k\in A}\nu_k M_{ki}$ with $\nu \ge 0$
    on the active margins A ($m_k \le 1 + \mathrm{tol}$); $\nu$ comes from NNLS
    and the residual is $\|g_P - M_{A,P}^\top\nu\| / \|g_P\|$. Modes off the
    support are stationary in the factor parameterisation (the margins'
    gradients vanish there for balanced factors), so they add nothing.

    Returns:
        (residual, multipliers (K,), active (K,), support (K,)).
    """
    return _kkt_residual(_as_lam(lam), check_int("factors N = depth + 1", factors, minimum=2), tol)


def _kkt_residual(lam: np.ndarray, N: int, tol: float) -> tuple[float, np.ndarray, np.ndarray, np.ndarray]:
    """:func:`kkt_residual` without the argument checks."""
    K = lam.shape[0]
    M = margin_matrix(K)
    l = np.maximum(lam[1:], 0.0)
    m = M @ l
    if m.min() <= 0:
        raise ValueError("lam does not separate every class (some margin <= 0): no KKT point to test.")
    l = l / m.min()
    m = M @ l
    A = m <= 1 + tol
    P = l > tol * l.max()
    g = (2.0 / N) * l[P] ** (2.0 / N - 1)
    B = M[np.ix_(A, P)].T
    nu, _ = nnls(B, g, maxiter=50 * B.shape[1] + 50)
    res = float(np.linalg.norm(B @ nu - g) / np.linalg.norm(g))
    mult = np.zeros(K)
    mult[1:][A] = nu
    act = np.zeros(K, bool)
    act[1:] = A
    sup = np.zeros(K, bool)
    sup[1:] = P
    return res, mult, act, sup


def _point(out: np.ndarray, N: int, tol: float, message: str) -> MaxMarginPoint:
    M = margin_matrix(out.shape[0])
    out = out / (M @ out[1:]).min()
    kres, mult, act, sup = _kkt_residual(out, N, tol)
    infeas = float(max(0.0, 1.0 - (M @ out[1:]).min()))
    return MaxMarginPoint(
        lam=out,
        direction=out / np.linalg.norm(out),
        factors=N,
        normalised_margin=_normalised_margin(out, N),
        kkt_residual=kres,
        multipliers=mult,
        active=act,
        support=sup,
        infeasibility=infeas,
        converged=bool(kres < 1e-6 and infeas < 1e-9),
        message=message,
    )


def kkt_point(
    lam, depth: int, *, support=None, tol: float = 1e-6, active_tol: float = 0.05, maxiter: int = 200
) -> MaxMarginPoint:
    r"""The KKT point of the max-margin problem on a given support, polished from ``lam``.

    With support S (default: modes with $\lambda_i \ge 10^{-2}\max\lambda$)
    and the active margins A (those within ``active_tol`` of the smallest, relative),
    the KKT conditions of $\min\sum_i\lambda_i^{2/N}$ s.t. $m_k \ge 1$ restricted
    to $\lambda_i = 0$ off S are the square system

    $$\tfrac{2}{N}\lambda_i^{2/N-1} = \sum_{k\in A}\nu_k M_{ki}\ (i \in S),\qquad
      \sum_{i\in S} M_{ki}\lambda_i = 1\ (k \in A),$$

    solved in the variables $(\log\lambda_S, \nu_A)$ by bounded least squares
    (``scipy.optimize.least_squares``, $\nu \ge 0$) from the state, with $\nu$
    started from NNLS. Unlike a general-purpose constrained optimiser this
    never leaves the positive orthant of the support (no NaN from
    $\lambda^{2/N-1}$ at 0) and needs no line search. The returned point's
    ``kkt_residual`` (:func:`kkt_residual`) says how far it is from a KKT point.

    Args:
        lam: (K,) a late state of the trajectory (every margin > 0).
        depth: L >= 1 (N = L + 1 factors).
        support: (K,) bool mask of the support (mode 0 ignored), e.g. the
            support decided by :func:`svflow.outcome`.
        tol, active_tol, maxiter: KKT test tolerance, activity window, iterations.
    """
    lam = _as_lam(lam)
    if isinstance(depth, bool) or not isinstance(depth, (int, np.integer)) or depth < 1:
        raise ValueError(f"depth L must be an integer >= 1; got {depth!r}.")
    return _kkt_point(lam, int(depth) + 1, support, tol, active_tol, maxiter)


def _kkt_point(
    lam: np.ndarray, N: int, support=None, tol: float = 1e-6, active_tol: float = 0.05, maxiter: int = 200
) -> MaxMarginPoint:
    """:func:`kkt_point` without the argument checks (N = depth + 1 factors)."""
    K = lam.shape[0]
    M = margin_matrix(K)
    S, lS = _kkt_support(lam, M, support)
    MS = M[:, S]
    ls, message = _restricted_optimum(lS[S], MS, N, maxiter)
    cands = [ls]
    polished = _polish_kkt(ls, MS, N, active_tol, maxiter)
    if polished is not None:
        cands.insert(0, polished)
    best = None
    for c in cands:
        out = np.zeros(K)
        out[1:][S] = c
        if not np.all(np.isfinite(out)) or (M @ out[1:]).min() <= 0:
            continue
        pt = _point(out, N, tol, message)
        if best is None or pt.kkt_residual < best.kkt_residual:
            best = pt
    if best is None:
        out = np.zeros(K)
        out[1:][S] = lS[S]
        best = _point(out, N, tol, message)
    return best


def _kkt_support(lam: np.ndarray, M: np.ndarray, support) -> tuple[np.ndarray, np.ndarray]:
    """The support S (modes 1..K-1) and ``lam`` restricted to it, scaled to smallest margin 1."""
    K = lam.shape[0]
    l = np.maximum(lam[1:], 0.0)
    if (M @ l).min() <= 0:
        raise ValueError(
            "lam does not separate every class yet (some margin <= 0); pass a later state "
            "of the trajectory (after the loss has dropped)."
        )
    if support is None:
        S = l >= 1e-2 * l.max()
    else:
        S = np.asarray(support, bool)
        if S.shape != (K,):
            raise ValueError(f"support must be a (K,) = ({K},) bool mask; got shape {S.shape}.")
        S = S[1:] & (l > 0)
    lS = np.where(S, l, 0.0)
    m = M @ lS
    if m.min() <= 0:
        raise ValueError("the support does not separate every class (some margin is 0 on it).")
    return S, lS / m.min()


def _restricted_optimum(l0: np.ndarray, MS: np.ndarray, N: int, maxiter: int) -> tuple[np.ndarray, str]:
    """Stage 1: the problem restricted to the support, by SLSQP in x = log(lambda_S) (never at 0)."""
    x0 = np.log(l0)
    sl = minimize(
        lambda x: float(np.sum(np.exp(2.0 * x / N))),
        x0,
        jac=lambda x: (2.0 / N) * np.exp(2.0 * x / N),
        method="SLSQP",
        constraints=[
            dict(type="ineq", fun=lambda x: MS @ np.exp(x) - 1.0, jac=lambda x: MS * np.exp(x)[None, :])
        ],
        options=dict(maxiter=maxiter, ftol=1e-16),
    )
    xs = sl.x if np.all(np.isfinite(sl.x)) and (MS @ np.exp(sl.x)).min() > 0 else x0
    ls = np.exp(xs)
    return ls / (MS @ ls).min(), str(sl.message)


def _polish_kkt(ls: np.ndarray, MS: np.ndarray, N: int, active_tol: float, maxiter: int):
    """Stage 2: bounded least squares on the KKT system of the active set at ``ls`` (None if non-finite)."""
    r = ls.shape[0]
    A = (MS @ ls) <= 1.0 + active_tol * 1e-3
    MA = MS[A]
    g0 = (2.0 / N) * ls ** (2.0 / N - 1)
    nu0, _ = nnls(MA.T, g0)
    a = int(A.sum())

    def resid(x):
        lv = np.exp(x[:r])
        nu = x[r:]
        with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
            g = (2.0 / N) * lv ** (2.0 / N - 1)
            out = np.concatenate([(g - MA.T @ nu) / g, MA @ lv - 1.0])
        return np.where(np.isfinite(out), out, 1e6)

    lo = np.concatenate([np.full(r, -np.inf), np.zeros(a)])
    sol = least_squares(
        resid,
        np.concatenate([np.log(ls), nu0]),
        bounds=(lo, np.full(r + a, np.inf)),
        xtol=1e-15,
        ftol=1e-15,
        gtol=1e-15,
        max_nfev=maxiter * (r + a),
    )
    return np.exp(sol.x[:r]) if np.all(np.isfinite(sol.x)) else None


@computes
def max_margin_direction(
    lam,
    depth: int,
    *,
    tol: float = 1e-6,
    maxiter: int = 2000,
    group=None,
) -> MaxMarginPoint:
    r"""The limiting direction of a spectral trajectory: a KKT point near the state ``lam``.

    Solves $\min_{s \ge 0}\sum_i s_i^2$ s.t. $M s^N \ge 1$ (the factor form of the
    max-margin problem, $\lambda = s^N$, smooth for N >= 2) with SLSQP,
    starting from the current direction scaled to $\min_k m_k = 1$. The
    problem is non-convex for N >= 3 with one local solution per basin, so
    the answer is the KKT point the local solver reaches from this state:
    start from a late state of the trajectory.

    Args:
        lam: (K,) current state (all margins > 0; negative entries are clipped to 0).
        depth: L >= 1 (N = L + 1 factors).
        tol: activity / support threshold of the KKT test.
        maxiter: SLSQP iterations.
        group: the character basis of ``lam``; a non-Walsh group (paired modes
            tied) is solved by :func:`svflow._analysis.group_codes.group_max_margin_direction`.
    """
    if _group_name(group, np.shape(lam)[-1] if np.ndim(lam) else 0) != "walsh":
        from .group_codes import group_max_margin_direction

        return group_max_margin_direction(lam, depth, group=group, tol=tol, maxiter=maxiter)
    lam = _as_lam(lam)
    depth = check_int("depth L", depth, minimum=1)
    N = int(depth) + 1
    K = lam.shape[0]
    M = margin_matrix(K)
    l = np.maximum(lam[1:], 0.0)
    m0 = M @ l
    if m0.min() <= 0:
        raise ValueError(
            "lam does not separate every class yet (some margin <= 0); pass a later state "
            "of the trajectory (after the loss has dropped)."
        )
    s0 = (l / m0.min()) ** (1.0 / N)
    res = minimize(
        lambda s: float(np.sum(s * s)),
        s0,
        jac=lambda s: 2 * s,
        method="SLSQP",
        bounds=[(0.0, None)] * (K - 1),
        constraints=[
            dict(
                type="ineq",
                fun=lambda s: M @ (s**N) - 1.0,
                jac=lambda s: M * (N * s ** (N - 1))[None, :],
            )
        ],
        options=dict(maxiter=maxiter, ftol=1e-16),
    )
    s = res.x
    best = None
    if np.all(np.isfinite(s)):
        out = np.concatenate([[0.0], np.maximum(s, 0.0) ** N])
        if (M @ out[1:]).min() > 0:
            best = _point(out, N, tol, str(res.message))
    if best is None or not best.converged:
        # SLSQP can return NaN or stop short on late states whose small modes
        # are tiny; polish on the support read from the state (or SLSQP's answer)
        src = lam if best is None else best.lam
        try:
            alt = kkt_point(src, depth, tol=tol)
        except ValueError:
            alt = None
        if alt is not None and (best is None or alt.kkt_residual < best.kkt_residual):
            best = alt
    if best is None:
        raise ValueError(
            "no KKT point found from this state (SLSQP returned a non-finite point and the "
            "support polish failed); pass a later state of the trajectory."
        )
    return best


@computes
def asymptotic_direction(ds, *, time=None, **kwargs) -> MaxMarginPoint:
    """:func:`max_margin_direction` from a trajectory dataset's ``lam`` at ``time`` (default last)."""
    if "lam" not in ds:
        raise ValueError("the dataset has no 'lam' (Walsh-frame eigenvalues): spectral runs only.")
    depth = int(ds.attrs.get("depth", 0))
    if depth < 1:
        raise ValueError("the dataset's attrs lack 'depth'; call max_margin_direction(lam, depth).")
    lam = ds["lam"].isel(time=-1) if time is None else ds["lam"].sel(time=time, method="nearest")
    kwargs.setdefault("group", ds.attrs.get("group"))
    return max_margin_direction(np.asarray(lam.values), depth, **kwargs)
