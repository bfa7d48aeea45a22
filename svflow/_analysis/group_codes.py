r"""Codes and max-margin directions of spectral starts over any finite abelian group.

In the real character basis of a group G of order K (:mod:`svflow._groups`)
the eigenvalues of a conjugate pair are tied, so a state is a vector
$\nu_p \ge 0$ over the nontrivial conjugate classes p (multiplicity
$w_p = 2$ for a cos/sin pair, 1 for a real character). The margin of class y
over $y + x$ is

$$m_x(\nu) = \frac1K\sum_p w_p\,\nu_p\,(1 - \cos\theta_p(x)),\qquad x \ne 0,$$

the parameter norm of a balanced state is $N\sum_p w_p\nu_p^{2/N}$ and the
max-margin problem reads $\min_{\nu\ge0}\sum_p w_p\nu_p^{2/N}$ s.t.
$m_x \ge 1$ (Lyu & Li 2020; N = depth + 1 factors).

An equal-$\lambda$ support S (a union of conjugate classes, $r = \sum_{p\in S} w_p$
modes) has "distance"
$d_S = \min_{x\ne0}\tfrac12\sum_{j\in S}(1 - \cos\theta_j(x))$ (for the Walsh
group the integer minimum distance of the binary code), one-vs-rest margin
$\rho_S = 2d_S/r$ and normalised margin $\gamma_S = \frac2K\,d_S/(N r)^{N/2}$.
The regular K-gon (the pair of a frequency coprime to K in $\mathbb Z_K$, rank
2) has $d = 1 - \cos(2\pi/K)$ and $\rho = 1 - \cos(2\pi/K)$.
"""

from __future__ import annotations

import math
from functools import lru_cache
from itertools import combinations

import numpy as np
from scipy.optimize import minimize, nnls

from .. import _dims as D
from .._groups import Group, resolve_group

__all__ = [
    "pair_margin_matrix",
    "group_supports",
    "group_code_table",
    "group_vertex_optimum",
    "group_max_margin_direction",
    "group_normalised_margin",
]


@lru_cache(maxsize=32)
def _pairs(group: Group):
    """(first mode of each nontrivial class, multiplicity, M (K-1, P))."""
    K = group.classes
    first = np.array([j for j in range(1, K) if group.mode_part[j] != "sin"])
    w = np.where(group.mode_part[first] == "cos", 2.0, 1.0)
    omc = group._tables["one_minus_cos"][1:, :][:, first]  # (x, p)
    return first, w, omc * w[None, :] / K


def pair_margin_matrix(classes: int, group=None) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    r"""$(M, w, \text{modes})$: margins $m = M\nu$ over x = 1..K-1 for pair values $\nu$.

    ``modes[p]`` is the first mode of class p (its cos mode), ``w[p]`` its
    multiplicity. For the Walsh group $M_{xi} = (2/K)[\mathrm{popcount}(i\& x)$ odd$]$.
    """
    g = resolve_group(group, classes)
    first, w, M = _pairs(g)
    return M.copy(), w.copy(), first.copy()


def _to_pairs(lam, g: Group) -> np.ndarray:
    lam = np.asarray(lam, dtype=float)
    if lam.shape != (g.classes,):
        raise ValueError(f"lam must have shape (K,) = ({g.classes},); got {lam.shape}.")
    if not np.all(np.isfinite(lam)):
        raise ValueError("lam contains NaN or inf; pass a finite state.")
    first, _, _ = _pairs(g)
    return 0.5 * (lam + lam[g.partner])[first]


def _to_modes(nu, g: Group) -> np.ndarray:
    first, _, _ = _pairs(g)
    out = np.zeros(g.classes)
    out[first] = nu
    return out[np.where(g.mode_part == "sin", g.partner, np.arange(g.classes))]


def group_normalised_margin(lam, factors: int, group=None) -> float:
    r"""$\gamma = \min_x m_x / (N\sum_{i\ge1}|\lambda_i|^{2/N})^{N/2}$ (pairs averaged)."""
    lam = np.asarray(lam, dtype=float)
    g = resolve_group(group, lam.shape[-1])
    N = int(factors)
    _, w, M = _pairs(g)
    nu = _to_pairs(lam, g)
    norm = N * np.sum(w * np.abs(nu) ** (2.0 / N))
    if norm == 0:
        raise ValueError("lam is zero on every mode 1..K-1: the normalised margin is undefined.")
    return float((M @ nu).min() / norm ** (N / 2.0))


def group_supports(classes: int, group=None):
    r"""Every union S of nontrivial conjugate classes that separates all classes.

    Returns an ``xarray.Dataset`` over dim ``support`` with ``mask``
    (support, mode), ``size`` r (modes), ``dmin`` ($d_S$, real),
    ``rho`` ($2d_S/r$), ``frequencies`` (text: the characters of S).
    Enumerates $2^P - 1$ subsets of the P nontrivial classes (P <= 20).
    """
    import xarray as xr

    g = resolve_group(group, classes)
    K = g.classes
    first, w, M = _pairs(g)
    P = first.size
    if P > 20:
        raise ValueError(f"enumerating 2^P supports is limited to P <= 20 classes; got P = {P}.")
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
        mask[:, g.partner[j]] = member[:, p]
    freqs = np.array(["{" + ",".join(g.frequency[first[member[b]]]) + "}" for b in range(member.shape[0])])
    return xr.Dataset(
        {
            "mask": (("support", "mode"), mask, {"long_name": "mode i in S"}),
            "size": ("support", size, {"long_name": "code length r = |S| (modes)"}),
            "dmin": ("support", dmin, {"long_name": "d_S = min_x (1/2) sum_{j in S} (1 - cos theta_j(x))"}),
            "rho": ("support", 2.0 * dmin / size, {"long_name": "one-vs-rest margin 2 d_S / r"}),
            "frequencies": ("support", freqs, {"long_name": "characters in S"}),
        },
        coords={"mode": np.arange(K)},
        attrs={"classes": K, "group": g.label},
    )


def _code_name(g: Group, mask: np.ndarray, r: int, d: float) -> str:
    K = g.classes
    first, _, _ = _pairs(g)
    if r == K - 1:
        return "simplex (NC)"
    sel = [j for j in first if mask[j]]
    if g.name == "cyclic" and len(sel) == 1 and g.mode_part[sel[0]] == "cos":
        k = int(g.frequency[sel[0]])
        if math.gcd(k, K) == 1:
            return f"{K}-gon" + ("" if k == 1 else f" (frequency {k})")
    return "{" + ",".join(g.frequency[j] for j in sel) + "}" + f" r={r} rho={2 * d / r:.4g}"


@lru_cache(maxsize=8)
def _vertices(group: Group) -> tuple[np.ndarray, np.ndarray]:
    """Vertices of {nu >= 0, M nu >= 1} (distinct margin rows; exact enumeration)."""
    _, w, M = _pairs(group)
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


def group_vertex_optimum(classes: int, factors: int, group=None) -> tuple[np.ndarray, float]:
    r"""Global optimum of the max-margin problem over tied pairs $\nu \ge 0$.

    The cost $\sum_p w_p\nu_p^{2/N}$ is concave and nondecreasing, so the
    minimum over the polyhedron sits at a vertex; all vertices are enumerated
    (limited to at most 8 nontrivial classes). Returns ($\lambda^*$ (K,), $\gamma^*$).
    """
    g = resolve_group(group, classes)
    N = int(factors)
    if _pairs(g)[0].size > 8:
        raise ValueError(
            f"vertex enumeration is limited to 8 conjugate classes; {g.label} "
            f"with K = {classes} has {_pairs(g)[0].size}."
        )
    V, w = _vertices(g)
    cost = np.sum(w[None, :] * V ** (2.0 / N), axis=1)
    i = int(np.argmin(cost))
    lam = _to_modes(V[i], g)
    return lam, group_normalised_margin(lam, N, g)


def group_code_table(classes: int, factors=range(2, 9), *, group=None, global_check: bool | None = None):
    r"""Predicted winning equal-$\lambda$ code per depth over the group's supports.

    Same layout as :func:`svflow.code_table` (``size``, ``dmin``, ``rho``,
    ``gamma``, ``ties``, ``runner_up_ratio``, ``name``, ``example``), ranked by
    $\gamma_S = (2/K)\,d_S/(N r)^{N/2}$ over all separating unions of
    conjugate classes (:func:`group_supports`); ``global_check`` (default: at
    most 8 classes) adds the vertex-enumeration optimum over all tied
    $\nu \ge 0$ (``gamma_global``, ``global_support_size``).
    """
    import xarray as xr

    g = resolve_group(group, classes)
    K = g.classes
    sup = group_supports(K, g)
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
            _code_name(g, mask[i], int(size[i]), float(dmin[i])) + ("" if tied.sum() == 1 else " (tie)")
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
        global_check = _pairs(g)[0].size <= 8
    if global_check:
        gg, gs = [], []
        for N in Ns:
            lam, gam = group_vertex_optimum(K, int(N), g)
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


def group_max_margin_direction(lam, depth: int, *, group=None, tol: float = 1e-6, maxiter: int = 2000):
    r"""A KKT point of the tied max-margin problem near the state ``lam`` (any group).

    Solves $\min_{s\ge0}\sum_p w_p s_p^2$ s.t. $M s^N \ge 1$ ($\nu = s^N$) with
    SLSQP from the current direction (scaled to $\min_x m_x = 1$) and tests
    stationarity with NNLS multipliers. Returns a
    :class:`svflow.MaxMarginPoint` (``lam`` over modes, pairs equal;
    ``multipliers`` and ``active`` over group elements x, entry 0 unused).
    """
    from .asymptotics import MaxMarginPoint

    lam = np.asarray(lam, dtype=float)
    g = resolve_group(group, lam.shape[-1])
    if isinstance(depth, bool) or not isinstance(depth, (int, np.integer)) or depth < 1:
        raise ValueError(f"depth L must be an integer >= 1; got {depth!r}.")
    N = int(depth) + 1
    _, w, M = _pairs(g)
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
    first = _pairs(g)[0]
    support = np.zeros(g.classes, bool)
    support[first[sup]] = True
    support = support | support[g.partner]
    return MaxMarginPoint(
        lam=lam_out,
        direction=lam_out / np.linalg.norm(lam_out),
        factors=N,
        normalised_margin=group_normalised_margin(lam_out, N, g),
        kkt_residual=kres,
        multipliers=np.concatenate([[0.0], mult]),
        active=np.concatenate([[False], act]),
        support=support,
        infeasibility=infeas,
        converged=bool(kres < 1e-6 and infeas < 1e-9),
        message=str(res.message),
    )
