r"""The limit-map stage of the outcome pipeline compiled for the CPU (numba).

**One method, two backends.** :func:`svflow._outcome._limit_batch` hands a
batch of exact end states to the limit flow and decides them in one XLA
call; :func:`limit_batch` here runs the same steps, state by state, as
compiled loops. Setting (module docstrings of :mod:`svflow._limit` and
:mod:`svflow._outcome`): K classes, depth L, N = L + 1 factors, mean
cross-entropy without weight decay, $\lambda$ the balanced logits of a
spectral start (mode 0 set to 0), $C_{xj} = 1 - \cos\theta_{k_j}(x)$ the
group's table, margins $m = C\lambda/K$. For each state:

1. **late** (:func:`svflow._outcome.late_state`): finite, every margin
   $m_x > 0$ ($x \ne 0$) and off-target softmax mass
   $1 - g(0) = 1 - e^{-\ell}$, $\ell = \log(1 + \sum_{x \ne 0} e^{-m_x})$, at
   most ``late_mass``;
2. **hand-off** (:func:`svflow._outcome.handoff_state`): $u = |\lambda| /
   \min_{x \ne 0} m_x(|\lambda|)$ times $1 + \epsilon v$ (``tie_break``
   $\epsilon$, the fixed tie-breaker v); a state that is not late or whose u
   is not finite runs the dummy $u$ = hand-off of $(0, 1, \ldots, 1)$;
3. **limit map** (:func:`svflow._limit.relax`): ``steps`` times $u \mapsto
   \frac NK |u|^a \odot C_R^\top \hat e$, $a = 2 - 2/N$, $C_R$ the rows of
   :func:`svflow._limit.class_rows`, $G = \frac N{K^2} C_R\,\mathrm{diag}(|u|^a)
   C_R^\top$ and $\hat e = \arg\min_{e \ge 0} \frac12 e^\top G e - \mathbf 1^\top e$
   (:func:`_qp_nonneg`: :func:`svflow._limit.qp_nonneg`'s Lawson-Hanson
   active-set method with the ridge ``QP_RIDGE``, a Cholesky solve of
   $G_{PP} z_P = \mathbf 1$ afresh in every iteration with one refinement,
   stopping rule ``QP_ADD_TOL``, at most 3R + 5 iterations; ``solved`` when
   it stopped by its rule and meets the optimality conditions within
   ``QP_KKT_TOL``);
4. **decide** (:func:`svflow._outcome.decide`): rate ratios $\rho_j = u'_j/u_j$
   from one more map step at the end state scaled to smallest margin 1,
   support $|\rho_j - 1| \le$ ``support_tol``, frozen $\rho_j \le$
   ``frozen_rate``; decided when finite, nonzero, no mode moving, the end
   state's smallest margin within ``constraint_tol`` of 1 and the largest
   mode in the support, with a support of at least one mode, and every QP
   of the run and of the rates step solved; code 0 (NC) when the support
   is all K - 1 modes, else its size, -1 undecided.

The numbers agree with the XLA path up to rounding (the operations are the
same; XLA's order of the sums in the matrix products is its own):
tests/test_cpu_backend.py checks identical codes, supports and frozen sets
and limit states to 1e-10. Over 2 x 512 hand-off states of random starts
(K = 16, L = 5 and K = 8, L = 2; benchmarks/RESULTS.md, section 13.3)
every QP is solved in both backends, the decision fields are identical and
the limit states agree to 3e-14. (An earlier version kept $G_{PP}^{-1}$ by
rank-one bordering and Schur-complement updates; on the rank-deficient G of
states whose frozen modes decay to exact zeros it drifted, the active set
cycled to the cap, and 14 and 7 of those 512 states differed.) Compiled
once and cached on disk (numba ``cache=True``). The constants ``QP_RIDGE``,
``QP_ADD_TOL`` and ``QP_KKT_TOL`` of :mod:`svflow._limit` are arguments
(``qp_tols``), not globals: numba freezes a global read into its disk cache
and would not see an edit of another module.
"""

from __future__ import annotations

from typing import no_type_check

import numba
import numpy as np

__all__ = ["limit_batch"]

_jit = numba.njit(cache=True, nogil=True, error_model="numpy")


@_jit
@no_type_check  # no import-hook wrapper (jaxtyping's test hook) around a numba function
def _margins(lam, CT, m):
    r"""``m[x]`` $= \sum_j \lambda_j C_{xj} / K$ (dense, summed in order of j); ``CT`` $= C^\top$."""
    K = lam.shape[0]
    for x in range(K):
        m[x] = 0.0
    for j in range(K):
        lj = lam[j]
        for x in range(K):
            m[x] += lj * CT[j, x]
    for x in range(K):
        m[x] = m[x] / K


@_jit
@no_type_check
def _min_modes(m):
    r"""$\min_{x \ne 0} m_x$, NaN if any of them is NaN (as ``jnp.min``)."""
    mmin = np.inf
    for x in range(1, m.shape[0]):
        if m[x] != m[x]:
            return np.nan
        mmin = min(mmin, m[x])
    return mmin


@_jit
@no_type_check
def _handoff(lam, CT, out, m):
    r"""``out`` $= |\lambda|/\min_{x \ne 0} m_x(|\lambda|)$ with entry 0 set to 0
    (:func:`svflow._limit.handoff`); ``m``: scratch (K,)."""
    K = lam.shape[0]
    for j in range(K):
        out[j] = abs(lam[j])
    out[0] = 0.0
    _margins(out, CT, m)
    mmin = _min_modes(m)
    for j in range(K):
        out[j] = out[j] / mmin


@_jit
@no_type_check
def _chol_factor(GT, ip, m, L):
    r"""Cholesky factor ``L`` of $G_{PP}$, P the ``m`` indices ``ip[:m]`` (increasing):
    ``L[a, b]`` for positions a >= b; $G_{ij}$ read from ``GT[j, i]``, $i \ge j$ (the
    lower triangle, as :func:`jax.scipy.linalg.cho_factor` with ``lower=True``), each
    sum in index order."""
    for a in range(m):
        i = ip[a]
        for b in range(a + 1):
            s = GT[ip[b], i]
            for c in range(b):
                s -= L[a, c] * L[b, c]
            if a == b:
                L[a, a] = np.sqrt(s)
            else:
                L[a, b] = s / L[b, b]


@_jit
@no_type_check
def _chol_solve(ip, m, L, b, out, y):
    r"""``out`` $= G_{PP}^{-1} b$ on P (the ``m`` indices ``ip[:m]``; ``out`` untouched
    elsewhere) from the factor of :func:`_chol_factor`: the two triangular solves. Scratch
    ``y`` (n,), by position."""
    for a in range(m):
        s = b[ip[a]]
        for c in range(a):
            s -= L[a, c] * y[c]
        y[a] = s / L[a, a]
    for a in range(m - 1, -1, -1):
        s = y[a]
        for c in range(a + 1, m):
            s -= L[c, a] * out[ip[c]]
        out[ip[a]] = s / L[a, a]


@_jit
@no_type_check
def _qp_nonneg(GT, x, P, L, ip, z, t, g, w, xb, qp_tols, warm):
    r"""$x = \arg\min_{x \ge 0} \frac12 x^\top G x - \mathbf 1^\top x$ over all n entries, in place
    (:func:`svflow._limit.qp_nonneg` with every entry active: the same iterations, a
    Cholesky solve of $G_{PP} z_P = \mathbf 1$ afresh in each, one refinement, the same
    stopping rule ``QP_ADD_TOL``, cap 3n + 5 and check). Returns ``solved``: the loop
    stopped by its rule (not the cap) and x meets the optimality conditions of the ridged
    problem within ``QP_KKT_TOL`` ($m = G x \ge 1 - \mathrm{tol}$, $|m_i - 1| \le
    \mathrm{tol}$ where $x_i > 0$).

    ``GT`` (n, n) is $G^\top$ (row c of ``GT`` is column c of G); it is overwritten by
    $(G + \mu\,\mathrm{diag}|G|)^\top$ ($\mu$ = ``QP_RIDGE``). ``P`` (n,) bool ends as the
    positive set. Scratch: L (n, n), ip (n,) int, z, t, g, w, xb (n,). ``qp_tols`` (3,):
    ``(QP_RIDGE, QP_ADD_TOL, QP_KKT_TOL)``, passed in (not read as globals, which numba
    would freeze into its disk cache). ``warm``: the positive set starts as the ``P`` passed
    in (``qp_nonneg``'s ``start``: accepted when its $z_P > 0$, else the cold start, that
    first solve uncounted); otherwise it starts empty.
    """
    QP_RIDGE, QP_ADD_TOL, QP_KKT_TOL = qp_tols[0], qp_tols[1], qp_tols[2]
    n = GT.shape[0]
    max_iter = 3 * n + 5
    for a in range(n):
        GT[a, a] = GT[a, a] + QP_RIDGE * abs(GT[a, a])
        x[a] = 0.0
        if not warm:
            P[a] = False
    first = False
    for a in range(n):
        if P[a]:
            first = True
    it = 0
    done = False
    while (not done) and it < max_iter:
        # z_P = G_PP^-1 1 with one step of iterative refinement: z <- z + S^-1 (1_P - S z)
        m = 0
        for a in range(n):
            z[a] = 0.0
            if P[a]:
                ip[m] = a
                m += 1
        _chol_factor(GT, ip, m, L)
        for a in range(n):
            t[a] = 1.0 if P[a] else 0.0
        _chol_solve(ip, m, L, t, z, g)
        for a in range(n):
            w[a] = 0.0
        for ia in range(m):
            a = ip[ia]
            s = 0.0
            for ic in range(m):
                c = ip[ic]
                s += GT[c, a] * z[c]
            w[a] = t[a] - s
        _chol_solve(ip, m, L, w, xb, g)
        for ia in range(m):
            a = ip[ia]
            z[a] = z[a] + xb[a]
        if first:
            # the warm start: accepted when z_P > 0, else the cold start (uncounted)
            first = False
            cold = False
            for ia in range(m):
                if not (z[ip[ia]] > 0.0):
                    cold = True
            if cold:
                for a in range(n):
                    P[a] = False
                continue
        # the blocking index: the first argmin of x / (x - z) over P with z <= 0 (inf elsewhere)
        infeasible = False
        k = 0
        rmin = np.inf
        for a in range(n):
            if P[a] and z[a] <= 0.0:
                infeasible = True
                ra = x[a] / max(x[a] - z[a], 1e-300)
                if ra < rmin or (ra != ra and rmin == rmin):
                    rmin = ra
                    k = a
        if infeasible:
            # back-track to the boundary, drop the blocking index k
            alpha = min(max(rmin, 0.0), 1.0)
            for a in range(n):
                x[a] = 0.0 if a == k else x[a] + alpha * (z[a] - x[a])
            P[k] = False
        else:
            # accept z; add the most violated condition j = first argmax of 1 - (G z)_j off P,
            # or stop
            for a in range(n):
                x[a] = z[a]
            j = 0
            wbest = -np.inf
            grow = False
            for a in range(n):
                if not P[a]:
                    s = 0.0
                    for ic in range(m):
                        c = ip[ic]
                        s += GT[c, a] * z[c]
                    wa = 1.0 - s
                    if wa > QP_ADD_TOL:
                        grow = True
                        if wa > wbest:
                            wbest = wa
                            j = a
            if grow:
                P[j] = True
            else:
                done = True
        it += 1
    # the optimality check on m = G x (x is 0 off P)
    solved = done
    for a in range(n):
        s = 0.0
        for c in range(n):
            if x[c] != 0.0:
                s += GT[c, a] * x[c]
        if not (s >= 1.0 - QP_KKT_TOL and (x[a] == 0.0 or abs(s - 1.0) <= QP_KKT_TOL)):
            solved = False
    return solved


@_jit
@no_type_check
def _limit_step(u, Cr, CrT, N, out, D, A, GT, e, P, L, ip, z, t, g, w, xb, qp_tols, warm):
    r"""``out`` = one step of the limit map from ``u`` (:func:`svflow._limit.limit_step`):
    $\frac NK |u|^a \odot C_R^\top \hat e$, entry 0 set to 0; ``CrT`` $= C_R^\top$.
    $G_{xy} = \sum_j (\frac N{K^2} C_{xj} D_j) C_{yj}$, $D = |u|^a$, summed in order of j;
    scratch ``A`` (K, R). ``warm``: the QP starts from the positive set of ``e`` (the
    previous step's solution, :func:`svflow._limit.relax`), else cold. Returns the QP's
    ``solved`` flag (:func:`_qp_nonneg`)."""
    R, K = Cr.shape
    a = 2.0 - 2.0 / N
    for j in range(K):
        D[j] = abs(u[j]) ** a
    s = N / K**2
    for j in range(K):
        for x in range(R):
            A[j, x] = s * (CrT[j, x] * D[j])
    # GT[y, x] = G[x, y] = sum_j A[j, x] C[y, j] (terms with C[y, j] = 0 or D_j = 0 are exact
    # zeros: frozen modes decay to 0 within a few steps)
    for y in range(R):
        for x in range(R):
            GT[y, x] = 0.0
        for j in range(K):
            c = Cr[y, j]
            if c != 0.0 and D[j] != 0.0:
                for x in range(R):
                    GT[y, x] += A[j, x] * c
    if warm:
        for x in range(R):
            P[x] = e[x] > 0.0
    solved = _qp_nonneg(GT, e, P, L, ip, z, t, g, w, xb, qp_tols, warm)
    for j in range(K):
        out[j] = 0.0
    for x in range(R):
        ex = e[x]
        if ex != 0.0:
            for j in range(K):
                out[j] += ex * Cr[x, j]
    c = N / K
    for j in range(K):
        out[j] = (c * D[j]) * out[j]
    out[0] = 0.0
    return solved


@_jit
@no_type_check
def limit_batch(
    lam,
    C,
    Cr,
    tie,
    N,
    steps,
    tie_break,
    late_mass,
    support_tol,
    frozen_rate,
    constraint_tol,
    nc_code,
    undecided_code,
    qp_tols,
):
    r"""Hand-off, limit map and decision of every state in ``lam`` (B, K) (module docstring).

    ``C`` (K, K): the group's $1 - \cos$ table; ``Cr`` (R, K): its rows
    :func:`svflow._limit.class_rows`; ``tie`` (K,): the tie-breaker v; ``N``
    factors; ``steps`` limit steps. Returns ``(code (B,) int32, decided (B,),
    support (B, K), frozen (B, K), rate_ratio (B, K), ratio (B, K), late (B,),
    off_target_mass (B,), limit_state (B, K))``, the fields of
    :func:`svflow._outcome._limit_batch`. ``qp_tols`` (3,): ``(QP_RIDGE, QP_ADD_TOL,
    QP_KKT_TOL)`` of :mod:`svflow._limit`.
    """
    B, K = lam.shape
    R = Cr.shape[0]
    code = np.empty(B, np.int32)
    decided = np.zeros(B, np.bool_)
    support = np.zeros((B, K), np.bool_)
    frozen = np.zeros((B, K), np.bool_)
    rho = np.zeros((B, K))
    ratio = np.zeros((B, K))
    late = np.zeros(B, np.bool_)
    mass = np.zeros(B)
    lstate = np.zeros((B, K))
    lam_b = np.empty(K)
    m = np.empty(K)
    u = np.empty(K)
    v = np.empty(K)
    D = np.empty(K)
    G = np.empty((R, R))
    A = np.empty((K, R))
    CrT = np.ascontiguousarray(Cr.T)
    CT = np.ascontiguousarray(C.T)
    Lf = np.zeros((R, R))
    ip = np.zeros(R, np.int64)
    e = np.empty(R)
    P = np.zeros(R, np.bool_)
    z, t, g, w, xb = np.empty(R), np.empty(R), np.empty(R), np.empty(R), np.empty(R)
    dummy = np.ones(K)
    dummy[0] = 0.0
    u_dummy = np.empty(K)
    _handoff(dummy, CT, u_dummy, m)
    for b in range(B):
        # late state: finite, every margin > 0, off-target mass <= late_mass
        finite = True
        for j in range(K):
            lam_b[j] = lam[b, j]
        lam_b[0] = 0.0
        for j in range(K):
            if not np.isfinite(lam_b[j]):
                finite = False
            u[j] = abs(lam_b[j]) if (j > 0 and np.isfinite(lam_b[j])) else 0.0
        _margins(u, CT, m)
        mx = -np.inf
        for x in range(1, K):
            mx = max(mx, -m[x])
        mmin = _min_modes(m)
        acc = 0.0
        for x in range(1, K):
            acc += np.exp(-m[x] - mx)
        lse1 = mx + np.log(acc)
        lse = max(0.0, lse1) + np.log1p(np.exp(-abs(lse1)))
        mass_b = -np.expm1(-lse)
        mass[b] = mass_b
        late_b = finite and (mass_b <= late_mass) and (mmin > 0.0)
        late[b] = late_b
        # hand-off with the tie-breaker; the dummy where it cannot be handed off
        _handoff(lam_b, CT, u, m)
        ok = late_b
        for j in range(K):
            u[j] = u[j] * (1.0 + tie_break * tie[j])
            if not np.isfinite(u[j]):
                ok = False
        if not ok:
            for j in range(K):
                u[j] = u_dummy[j]
        # the limit map; solved: every QP of the run and of the rates step solved
        solved = True
        for k in range(steps):
            # each step's QP warm-started from the previous step's positive set
            if not _limit_step(u, Cr, CrT, N, v, D, A, G, e, P, Lf, ip, z, t, g, w, xb, qp_tols, k > 0):
                solved = False
            for j in range(K):
                u[j] = v[j]
        for j in range(K):
            lstate[b, j] = u[j]
        # decide
        fin = True
        top = -np.inf
        for j in range(K):
            if not np.isfinite(u[j]):
                fin = False
            lam_b[j] = abs(u[j]) if (j > 0 and np.isfinite(u[j])) else 0.0
            top = max(top, lam_b[j])
        _handoff(lam_b, CT, u, m)
        if not _limit_step(u, Cr, CrT, N, v, D, A, G, e, P, Lf, ip, z, t, g, w, xb, qp_tols, False):
            solved = False
        moving = False
        rs = 0
        for j in range(K):
            rj = v[j] / u[j] if u[j] > 0.0 else 0.0
            if j == 0:
                rj = 0.0
            rho[b, j] = rj
            sj = j > 0 and abs(rj - 1.0) <= support_tol
            fj = j > 0 and rj <= frozen_rate
            support[b, j] = sj
            frozen[b, j] = fj
            if j > 0 and not sj and not fj:
                moving = True
            if sj:
                rs += 1
        _margins(lam_b, CT, m)
        mmin = _min_modes(m)
        imax = 0
        for j in range(1, K):
            if lam_b[j] > lam_b[imax]:
                imax = j
        dec = fin and top > 0.0 and not moving and abs(mmin - 1.0) <= constraint_tol and support[b, imax]
        dec = dec and solved
        if dec and rs >= 1:
            code[b] = nc_code if rs == K - 1 else rs
        else:
            code[b] = undecided_code
        decided[b] = dec and rs >= 1
        scale = top if top > 0.0 else 1.0
        for j in range(K):
            ratio[b, j] = lam_b[j] / scale
    return code, decided, support, frozen, rho, ratio, late, mass, lstate
