r"""Asymptotic outcomes of spectral starts: max-margin KKT points and codes, for any group.

Under cross-entropy without weight decay the norm diverges and, for these
homogeneous models, the direction converges to a KKT point of the max-margin
problem (Lyu & Li 2020; docs: theory/outcomes.md). In the real character
basis of a group G of order K (:class:`svflow.Group`) the eigenvalues of a
conjugate pair are tied, so a state is a vector $\nu_p \ge 0$ over the
nontrivial conjugate classes p (multiplicity $w_p = 2$ for a cos/sin pair, 1
for a real character). For a balanced state ($|s_{l,i}| = |\lambda_i|^{1/N}$,
N = depth + 1 factors) the parameter norm is $N\sum_p w_p\nu_p^{2/N}$ and the
problem reads

$$\min_{\nu\ge0}\ \sum_p w_p\nu_p^{2/N}\quad\text{s.t.}\quad
  m_x(\nu) = \frac1K\sum_p w_p\,\nu_p\,(1 - \cos\theta_p(x)) \ge 1,\qquad x \ne 0,$$

with the group's margin matrix $M$ (:meth:`svflow.Group.margin_matrix`). For the
Walsh group every character is real and
$m_k = \frac{2}{K}\sum_{j:\ \mathrm{popcount}(j\&k)\ \mathrm{odd}}\lambda_j$.
Mode 0 never enters a margin and is 0. The *normalised margin* is
$\gamma = \min_x m_x / (N\sum_i|\lambda_i|^{2/N})^{N/2}$ (scale invariant;
the quantity gradient flow maximises in direction).

An equal-$\lambda$ support S (a union of conjugate classes, $r$ modes;
:meth:`svflow.Group.supports`) has "distance"
$d_S = \min_{x\ne0}\tfrac12\sum_{j\in S}(1 - \cos\theta_j(x))$, one-vs-rest
margin $\rho_S = 2d_S/r$ and

$$\gamma_S = \frac{2}{K}\,\frac{d_S}{(N r)^{N/2}} .$$

For the Walsh group S is a binary linear $[r, m, d]$ code (m = log2 K, d its
minimum distance); for N = 2 (an L1 problem) the simplex code
$[K-1, m, K/2]$ (neural collapse) wins and deeper networks favour shorter
codes. The regular K-gon of $\mathbb Z_K$ (the pair of a frequency coprime to
K, rank 2) has $d = \rho = 1 - \cos(2\pi/K)$.

One algorithm per group kind: the functions below resolve the group once and
dispatch on its class (``functools.singledispatch``): the generic route works
over tied pairs for every group; the Walsh group registers its own (binary
codes ranked per length, SLSQP over all modes with a support polish). A new
group inherits the generic route.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache, singledispatch
from itertools import combinations

import numpy as np
from scipy.optimize import least_squares, minimize, nnls

from .. import _dims as D
from .._checks import check_int
from .._dataset import netcdf_safe
from .._groups import Group, Walsh, resolve_group
from .._precision import computes
from .._walsh import check_classes

__all__ = [
    "MaxMarginPoint",
    "normalised_margin",
    "code_table",
    "supports",
    "vertex_optimum",
    "max_margin_direction",
    "kkt_residual",
    "kkt_point",
    "limit_point",
    "asymptotic_direction",
]


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


def _check_factors(factors) -> int:
    return check_int("factors N = depth + 1", factors, minimum=2)


# --------------------------------------------------------------------------- the Walsh group


def margin_matrix(classes: int) -> np.ndarray:
    r"""The Walsh group's $M_{ki} = (2/K)[\mathrm{popcount}(i\&k)\ \mathrm{odd}]$ (k, i = 1..K-1).

    The margins are $m = M\lambda_{1:}$.
    """
    return Walsh(classes).margin_matrix()


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


def _walsh_normalised_margin(lam: np.ndarray, N: int) -> float:
    r"""$\gamma$ of a balanced state in the Walsh frame (margin matrix of parities); ``lam``
    and ``N`` already checked (the public routes check them once)."""
    K = lam.shape[0]
    m = margin_matrix(K) @ lam[1:]
    norm = N * np.sum(np.abs(lam[1:]) ** (2.0 / N))
    if norm == 0:
        raise ValueError("lam is zero on every mode 1..K-1: the normalised margin is undefined.")
    return float(m.min() / norm ** (N / 2.0))


def _walsh_code_table(g: Walsh, factors, global_check):
    """The code table of the Walsh group: binary codes ranked per length (module docstring)."""
    import xarray as xr

    K = g.classes
    sup = g.supports()
    Ns = np.array([_check_factors(int(N)) for N in factors])
    if Ns.size == 0:
        raise ValueError("factors must list at least one N >= 2.")
    size, dmin = sup["size"].values, sup["dmin"].values
    sizes = np.arange(1, K)
    dmax = np.array([dmin[size == r].max() if np.any(size == r) else 0 for r in sizes])
    count = np.array([np.sum((size == r) & (dmin == dmax[i])) for i, r in enumerate(sizes)])
    rows = [_walsh_winner(g, int(N), sizes, dmax, count, sup) for N in Ns]
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


def _walsh_winner(g: Walsh, N: int, sizes, dmax, count, sup) -> dict:
    r"""The equal-$\lambda$ Walsh code of largest $\gamma_S = (2/K)\,d/(N r)^{N/2}$ for N factors."""
    K = g.classes
    size, dmin = sup["size"].values, sup["dmin"].values
    gam = np.where(dmax > 0, (2.0 / K) * dmax / (N * sizes) ** (N / 2.0), -np.inf)
    order = np.argsort(-gam)
    i = int(order[0])
    r, d = int(sizes[i]), int(dmax[i])
    best = gam[i]
    tied_sizes = sizes[np.isclose(gam, best, rtol=1e-12, atol=0)]
    second = gam[order[1]] if np.isfinite(gam[order[1]]) else 0.0
    example = sup["mask"].values[np.flatnonzero((size == r) & (dmin == d))[0]]
    return {
        "size": r,
        "dmin": d,
        "rho": 2.0 * d / r,
        "gamma": best,
        "ties": int(sum(count[sizes == s][0] for s in tied_sizes)),
        "runner": second / best,
        "name": g.code_name(example, r, d) + ("" if len(tied_sizes) == 1 else " (tie)"),
        "example": example,
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


def _walsh_vertex_optimum(g: Walsh, factors: int) -> tuple[np.ndarray, float]:
    r"""Global optimum of the max-margin problem over all $\lambda \ge 0$ by vertex enumeration.

    $\sum_i\lambda_i^{2/N}$ is concave and nondecreasing on $\lambda \ge 0$
    (N >= 2), so its minimum over the polyhedron $\{\lambda\ge0,\ M\lambda\ge1\}$
    sits at a vertex; all $\binom{2(K-1)}{K-1}$ candidate vertices are solved
    (K <= 8: 3432 systems of size 7). Returns ($\lambda^*$ (K,), $\gamma^*$).
    """
    classes = g.classes
    N = _check_factors(factors)
    if classes > 8:
        raise ValueError(f"vertex enumeration is limited to K <= 8; got K = {classes}.")
    V = _vertices(classes)
    cost = np.sum(V ** (2.0 / N), axis=1)
    i = int(np.argmin(cost))
    lam = np.concatenate([[0.0], V[i]])
    return lam, _walsh_normalised_margin(lam, N)


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
        normalised_margin=_walsh_normalised_margin(out, N),
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


def _walsh_max_margin(g: Walsh, lam, depth: int, tol: float, maxiter: int) -> MaxMarginPoint:
    """:func:`max_margin_direction` in the Walsh frame: SLSQP over all modes, then a support polish."""
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


# --------------------------------------------------------------------------- any group, over tied pairs


def _to_pairs(lam, g: Group) -> np.ndarray:
    lam = np.asarray(lam, dtype=float)
    if lam.shape != (g.classes,):
        raise ValueError(f"lam must have shape (K,) = ({g.classes},); got {lam.shape}.")
    if not np.all(np.isfinite(lam)):
        raise ValueError("lam contains NaN or inf; pass a finite state.")
    first, _ = g.pair_modes()
    return 0.5 * (lam + lam[g.partner])[first]


def _to_modes(nu, g: Group) -> np.ndarray:
    first, _ = g.pair_modes()
    out = np.zeros(g.classes)
    out[first] = nu
    return out[np.where(g.mode_part == "sin", g.partner, np.arange(g.classes))]


def _pair_normalised_margin(g: Group, lam, factors: int) -> float:
    r"""$\gamma = \min_x m_x / (N\sum_{i\ge1}|\lambda_i|^{2/N})^{N/2}$ over tied pairs (pairs averaged)."""
    N = _check_factors(factors)
    _, w = g.pair_modes()
    M = g.margin_matrix()
    nu = _to_pairs(lam, g)
    norm = N * np.sum(w * np.abs(nu) ** (2.0 / N))
    if norm == 0:
        raise ValueError("lam is zero on every mode 1..K-1: the normalised margin is undefined.")
    return float((M @ nu).min() / norm ** (N / 2.0))


@lru_cache(maxsize=8)
def _pair_vertices(group: Group) -> tuple[np.ndarray, np.ndarray]:
    """Vertices of {nu >= 0, M nu >= 1} (distinct margin rows; exact enumeration)."""
    _, w = group.pair_modes()
    M = group.margin_matrix()
    M = np.unique(np.round(M, 14), axis=0)
    P = M.shape[1]
    A = np.vstack([M, np.eye(P)])
    b = np.concatenate([np.ones(M.shape[0]), np.zeros(P)])
    combos = np.array(list(combinations(range(A.shape[0]), P)))
    As, bs = A[combos], b[combos]
    det = np.linalg.det(As)
    ok = np.abs(det) > 1e-9
    sol = np.linalg.solve(As[ok], bs[ok][..., None])[..., 0]
    feas = np.all(sol @ A.T >= b - 1e-9, axis=1)
    return np.unique(np.round(sol[feas], 12), axis=0), w


def _pair_vertex_optimum(g: Group, factors: int) -> tuple[np.ndarray, float]:
    r"""Global optimum of the max-margin problem over tied pairs $\nu \ge 0$.

    The cost $\sum_p w_p\nu_p^{2/N}$ is concave and nondecreasing, so the
    minimum over the polyhedron sits at a vertex; all vertices are enumerated
    (limited to at most 8 nontrivial classes). Returns ($\lambda^*$ (K,), $\gamma^*$).
    """
    N = _check_factors(factors)
    P = g.pair_modes()[0].size
    if P > 8:
        raise ValueError(
            f"vertex enumeration is limited to 8 conjugate classes; {g.label} with K = {g.classes} has {P}."
        )
    V, w = _pair_vertices(g)
    cost = np.sum(w[None, :] * V ** (2.0 / N), axis=1)
    i = int(np.argmin(cost))
    lam = _to_modes(V[i], g)
    return lam, _pair_normalised_margin(g, lam, N)


def _pair_code_table(g: Group, factors, global_check):
    r"""Predicted winning equal-$\lambda$ code per depth over the group's supports.

    Same layout as :func:`svflow.code_table` (``size``, ``dmin``, ``rho``,
    ``gamma``, ``ties``, ``runner_up_ratio``, ``name``, ``example``), ranked by
    $\gamma_S = (2/K)\,d_S/(N r)^{N/2}$ over all separating unions of
    conjugate classes (:meth:`svflow.Group.supports`); ``global_check`` (default: at
    most 8 classes) adds the vertex-enumeration optimum over all tied
    $\nu \ge 0$ (``gamma_global``, ``global_support_size``).
    """
    import xarray as xr

    K = g.classes
    sup = g.supports()
    Ns = np.array([int(N) for N in factors])
    if Ns.size == 0 or np.any(Ns < 2):
        raise ValueError(f"factors must list N = depth + 1 >= 2; got {list(factors)}.")
    size, dmin, mask = sup["size"].values, sup["dmin"].values, sup["mask"].values
    rows: dict[str, list] = {
        k: [] for k in ("size", "dmin", "rho", "gamma", "ties", "runner", "name", "example")
    }
    for N in Ns:
        gam = (2.0 / K) * dmin / (N * size) ** (N / 2.0)
        order = np.argsort(-gam, kind="stable")
        i = int(order[0])
        best = gam[i]
        tied = np.isclose(gam, best, rtol=1e-12, atol=0)
        other = gam[~tied]
        rows["size"].append(int(size[i]))
        rows["dmin"].append(float(dmin[i]))
        rows["rho"].append(2.0 * dmin[i] / size[i])
        rows["gamma"].append(best)
        rows["ties"].append(int(tied.sum()))
        rows["runner"].append(float(other.max() / best) if other.size else 0.0)
        rows["name"].append(
            g.code_name(mask[i], int(size[i]), float(dmin[i])) + ("" if tied.sum() == 1 else " (tie)")
        )
        rows["example"].append(mask[i])
    data = {
        "depth": ("factors", Ns - 1, {"long_name": "depth L = N - 1"}),
        "size": ("factors", np.array(rows["size"]), {"long_name": "winning code length r"}),
        "dmin": ("factors", np.array(rows["dmin"]), {"long_name": "winning code's d_S"}),
        "rho": ("factors", np.array(rows["rho"]), {"long_name": "one-vs-rest margin 2 d_S / r"}),
        "gamma": (
            "factors",
            np.array(rows["gamma"]),
            {"long_name": "normalised margin (2/K) d_S/(N r)^(N/2)"},
        ),
        "ties": ("factors", np.array(rows["ties"]), {"long_name": "supports attaining the best gamma"}),
        "runner_up_ratio": (
            "factors",
            np.array(rows["runner"]),
            {"long_name": "gamma of the best non-tied support / winner's gamma"},
        ),
        "name": ("factors", D.text(rows["name"])),
        "example": (("factors", "mode"), np.array(rows["example"]), {"long_name": "a winning support"}),
    }
    if global_check is None:
        global_check = g.pair_modes()[0].size <= 8
    if global_check:
        gg, gs = [], []
        for N in Ns:
            lam, gam = _pair_vertex_optimum(g, int(N))
            gg.append(gam)
            gs.append(int(np.sum(lam[1:] > 1e-9 * lam.max())))
        data["gamma_global"] = (
            "factors",
            np.array(gg),
            {"long_name": "global max normalised margin over tied lambda >= 0"},
        )
        data["global_support_size"] = ("factors", np.array(gs))
    return xr.Dataset(
        data,
        coords={"factors": Ns, "mode": np.arange(K)},
        attrs={
            "classes": K,
            "group": g.label,
            "description": "predicted winning code per depth (equal lambda on a union of conjugate classes)",
        },
    )


def _kkt(nu: np.ndarray, N: int, M: np.ndarray, w: np.ndarray, tol: float):
    m = M @ nu
    A = m <= 1 + tol
    P = nu > tol * nu.max()
    grad = (2.0 / N) * w[P] * nu[P] ** (2.0 / N - 1)
    B = M[np.ix_(A, P)].T
    mult, _ = nnls(B, grad, maxiter=50 * max(B.shape[1], 1) + 50)
    res = float(np.linalg.norm(B @ mult - grad) / np.linalg.norm(grad))
    full = np.zeros(M.shape[0])
    full[A] = mult
    return res, full, A, P


def _pair_max_margin(g: Group, lam, depth: int, tol: float, maxiter: int) -> MaxMarginPoint:
    r"""A KKT point of the tied max-margin problem near the state ``lam`` (any group).

    Solves $\min_{s\ge0}\sum_p w_p s_p^2$ s.t. $M s^N \ge 1$ ($\nu = s^N$) with
    SLSQP from the current direction (scaled to $\min_x m_x = 1$) and tests
    stationarity with NNLS multipliers. Returns a
    :class:`svflow.MaxMarginPoint` (``lam`` over modes, pairs equal;
    ``multipliers`` and ``active`` over group elements x, entry 0 unused).
    """
    if isinstance(depth, bool) or not isinstance(depth, (int, np.integer)) or depth < 1:
        raise ValueError(f"depth L must be an integer >= 1; got {depth!r}.")
    N = int(depth) + 1
    _, w = g.pair_modes()
    M = g.margin_matrix()
    nu = np.maximum(_to_pairs(lam, g), 0.0)
    m0 = M @ nu
    if m0.min() <= 0:
        raise ValueError(
            "lam does not separate every class yet (some margin <= 0); pass a later state "
            "of the trajectory (after the loss has dropped)."
        )
    s0 = (nu / m0.min()) ** (1.0 / N)
    res = minimize(
        lambda s: float(np.sum(w * s * s)),
        s0,
        jac=lambda s: 2 * w * s,
        method="SLSQP",
        bounds=[(0.0, None)] * s0.size,
        constraints=[
            dict(type="ineq", fun=lambda s: M @ (s**N) - 1.0, jac=lambda s: M * (N * s ** (N - 1))[None, :])
        ],
        options=dict(maxiter=maxiter, ftol=1e-16),
    )
    x = np.maximum(np.nan_to_num(res.x, nan=0.0), 0.0)
    if not np.any(M @ (x**N) > 0):
        x = s0  # the optimiser failed outright: report the start, not converged
    out = x**N
    out = out / (M @ out).min()
    kres, mult, act, sup = _kkt(out, N, M, w, tol)
    lam_out = _to_modes(out, g)
    infeas = float(max(0.0, 1.0 - (M @ out).min()))
    first = g.pair_modes()[0]
    support = np.zeros(g.classes, bool)
    support[first[sup]] = True
    support = support | support[g.partner]
    return MaxMarginPoint(
        lam=lam_out,
        direction=lam_out / np.linalg.norm(lam_out),
        factors=N,
        normalised_margin=_pair_normalised_margin(g, lam_out, N),
        kkt_residual=kres,
        multipliers=np.concatenate([[0.0], mult]),
        active=np.concatenate([[False], act]),
        support=support,
        infeasibility=infeas,
        converged=bool(kres < 1e-6 and infeas < 1e-9),
        message=str(res.message),
    )


# --------------------------------------------------------------------------- one entry per task


@singledispatch
def _normalised_margin(g: Group, lam, factors: int) -> float:
    return _pair_normalised_margin(g, lam, factors)


@_normalised_margin.register
def _(g: Walsh, lam, factors: int) -> float:
    return _walsh_normalised_margin(_as_lam(lam), _check_factors(factors))


@singledispatch
def _code_table(g: Group, factors, global_check):
    return _pair_code_table(g, factors, global_check)


_code_table.register(Walsh, _walsh_code_table)


@singledispatch
def _vertex_optimum(g: Group, factors: int) -> tuple[np.ndarray, float]:
    return _pair_vertex_optimum(g, factors)


_vertex_optimum.register(Walsh, _walsh_vertex_optimum)


@singledispatch
def _max_margin(g: Group, lam, depth: int, tol: float, maxiter: int) -> MaxMarginPoint:
    return _pair_max_margin(g, np.asarray(lam, dtype=float), depth, tol, maxiter)


_max_margin.register(Walsh, _walsh_max_margin)


@singledispatch
def limit_point(group: Group, lam, depth: int, support) -> MaxMarginPoint:
    r"""The KKT point of a decided limit: the max-margin direction near the late state ``lam``.

    The Walsh group polishes the KKT system on the decided ``support``
    (:func:`kkt_point`); other groups solve the tied problem from the state
    (:func:`max_margin_direction`, default tolerances). ``group`` is a resolved
    :class:`svflow.Group` (internal: the engines call it per decided start).
    """
    return _pair_max_margin(group, np.asarray(lam, dtype=float), depth, 1e-6, 2000)


@limit_point.register
def _(group: Walsh, lam, depth: int, support) -> MaxMarginPoint:
    return _kkt_point(np.asarray(lam, dtype=float), depth + 1, support)  # the engine checked depth


def _one_state(lam) -> np.ndarray:
    lam = np.asarray(lam, dtype=float)
    if lam.ndim != 1:
        raise ValueError(f"lam must be one state of shape (K,); got shape {lam.shape}.")
    return lam


@computes
def normalised_margin(lam, factors: int, *, group=None) -> float:
    r"""$\gamma = \min_x m_x / (N\sum_{i\ge1}|\lambda_i|^{2/N})^{N/2}$ of a balanced spectral state.

    ``factors``: N = depth + 1 >= 2. ``group``: the frame of ``lam`` (a
    :class:`svflow.Group` or its spec; ``None``: Walsh for K = 2^m, else cyclic);
    the two modes of a pair enter through their average.
    """
    lam = _one_state(lam)
    return _normalised_margin(resolve_group(group, lam.shape[0]), lam, factors)


@computes
def code_table(classes: int, factors=range(2, 9), *, global_check: bool | None = None, group=None):
    r"""Predicted winning equal-$\lambda$ code per depth, ranked by $\gamma_S$.

    For each N (``factors``, N = depth + 1): the support(s) maximising
    $\gamma_S = (2/K)\,d_S/(N r)^{N/2}$ over all separating supports of the
    group (:meth:`svflow.Group.supports`: unions of conjugate classes). With
    ``global_check`` (default: K <= 8 for the Walsh group, at most 8 conjugate
    classes otherwise) also the global optimum of the max-margin problem over
    all $\lambda \ge 0$ (:func:`vertex_optimum`), which tells whether unequal
    $\lambda$ beat every equal-$\lambda$ code.

    ``group``: a :class:`svflow.Group` or its spec (``None``: Walsh for K = 2^m,
    else cyclic).

    Returns:
        ``xarray.Dataset`` over ``factors`` (N) with ``depth`` (= N - 1),
        ``size``, ``dmin``, ``rho``, ``gamma``, ``ties`` (number of supports
        attaining the best $\gamma$), ``runner_up_ratio`` (second-best
        $\gamma$ / best), ``name``, ``example`` (factors, mode) mask;
        optionally ``gamma_global`` and ``global_support_size``. The Walsh
        group ranks binary codes per length and adds, over ``size_r``, the
        best d per length (``dmax_by_size``, ``count_by_size``).
    """
    return _code_table(resolve_group(group, classes), factors, global_check)


@computes
def supports(classes: int, group=None):
    r"""Every equal-$\lambda$ support S of the group's frame that separates all classes.

    S is a union of nontrivial conjugate classes; its "distance"
    $d_S = \min_{x\ne0}\tfrac12\sum_{j\in S}(1 - \cos\theta_j(x))$ is, for the
    Walsh group, the minimum distance d of the binary code $x \mapsto (h_i(x))_{i\in S}$,
    and $\rho_S = 2d_S/r$ its one-vs-rest margin. ``group``: a
    :class:`svflow.Group` or its spec (``None``: Walsh for K = 2^m, else cyclic);
    the same as ``group.supports()``.

    Returns:
        ``xarray.Dataset`` over dim ``support`` with ``mask`` (support, mode),
        ``size`` r, ``dmin`` $d_S$ and ``rho``; the Walsh group adds ``bits``
        (S as an integer over modes 1..K-1, enumerated over all $2^{K-1}$
        subsets, K <= 32), other groups ``frequencies`` (the characters of S,
        $2^P - 1$ unions of the P nontrivial classes, P <= 20).
    """
    return resolve_group(group, classes).supports()


def vertex_optimum(classes: int, factors: int, *, group=None) -> tuple[np.ndarray, float]:
    r"""Global optimum of the max-margin problem over all (tied) $\lambda \ge 0$ by vertex enumeration.

    The cost $\sum_p w_p\nu_p^{2/N}$ is concave and nondecreasing on
    $\nu \ge 0$ (N >= 2), so its minimum over the polyhedron
    $\{\nu\ge0,\ M\nu\ge1\}$ sits at a vertex; all candidate vertices are
    solved (the Walsh group: K <= 8; others: at most 8 conjugate classes).
    Returns ($\lambda^*$ (K,), $\gamma^*$).
    """
    return _vertex_optimum(resolve_group(group, classes), factors)


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

    Solves $\min_{s \ge 0}\sum_p w_p s_p^2$ s.t. $M s^N \ge 1$ (the factor form of the
    max-margin problem over tied pairs, $\nu = s^N$, smooth for N >= 2) with
    SLSQP, starting from the current direction scaled to $\min_x m_x = 1$. The
    problem is non-convex for N >= 3 with one local solution per basin, so
    the answer is the KKT point the local solver reaches from this state:
    start from a late state of the trajectory. The Walsh group polishes a
    point that SLSQP leaves short of stationarity on its support
    (:func:`svflow.studies.kkt_point`).

    Args:
        lam: (K,) current state (all margins > 0; negative entries are clipped to 0).
        depth: L >= 1 (N = L + 1 factors).
        tol: activity / support threshold of the KKT test.
        maxiter: SLSQP iterations.
        group: the frame of ``lam`` (a :class:`svflow.Group` or its spec;
            ``None``: Walsh for K = 2^m, else cyclic).

    Returns:
        A :class:`MaxMarginPoint` (``lam`` over modes, pairs equal;
        ``multipliers`` and ``active`` over group elements x, entry 0 unused).
    """
    lam = _one_state(lam)
    return _max_margin(resolve_group(group, lam.shape[0]), lam, depth, tol, maxiter)


@computes
def asymptotic_direction(ds, *, time=None, **kwargs) -> MaxMarginPoint:
    """:func:`max_margin_direction` from a trajectory dataset's ``lam`` at ``time`` (default last)."""
    if "lam" not in ds:
        raise ValueError("the dataset has no 'lam' (spectral-frame eigenvalues): spectral runs only.")
    depth = int(ds.attrs.get("depth", 0))
    if depth < 1:
        raise ValueError("the dataset's attrs lack 'depth'; call max_margin_direction(lam, depth).")
    lam = ds["lam"].isel(time=-1) if time is None else ds["lam"].sel(time=time, method="nearest")
    kwargs.setdefault("group", ds.attrs.get("group"))
    return max_margin_direction(np.asarray(lam.values), depth, **kwargs)
