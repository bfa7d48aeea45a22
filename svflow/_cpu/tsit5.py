r"""The batch engine of :mod:`svflow._batch` compiled for the CPU (numba), for the balanced
cross-entropy law on its two clocks: $u = \log\lambda$ in $\tau$ (``simulate``) and
$\lambda$ in $\sigma = \log(1 + \tau)$ (``outcome`` and ``basin_map``).

**One method, two backends.** :func:`svflow._batch.solve_batch` runs a batch of
reduced trajectories either in its JAX refill loop (diffrax's ``Tsit5.step``
and ``PIDController.adapt_step_size`` vmapped over lanes) or here, where the
same loop is written out for the one law that dominates svflow's batches:

$$\frac{du_i}{d\tau} = e^\tau\Big(\frac NK (1 - \mu_i)\,e^{(1-2/N)u_i} - N\,wd\Big),
\qquad \frac{du_0}{d\tau} = 0,$$

$u = \log\lambda$ (entry 0 a placeholder), $\tau = \log(1 + t)$, N = L + 1
factors, $1 - \mu$ the softmax eigenvalues' complement of the group's frame
(:mod:`svflow._fields`, ``ReducedField(variable="log")``; clock :data:`LOG`),
and the law that :func:`svflow._outcome.advance_batch` integrates (clock
:data:`LOGLOG`, :class:`svflow._fields.CETauField` in double-log time)

$$\frac{d\lambda_i}{d\sigma} = e^\sigma\,\frac NK\,r_i\,|\lambda_i|^{2-2/N},\qquad
r_i = (1 + t)(1 - \mu_i)\ \text{in the log domain},\quad \tau = e^\sigma - 1.$$

Only the right-hand side differs between the clocks (:func:`_rhs`); the step
loop, controller, saves and queue are one. Every trajectory
takes the steps diffrax would take:

- Tsit5's tableau is read from ``diffrax.Tsit5.tableau``; stage increments
  $k_i = \Delta\tau\,f_i$, stage values $y_0 + \sum_j a_{ij} k_j$, the 7th
  stage at the step's end (first-same-as-last), the error estimate
  $\sum_j b^{err}_j k_j$, and diffrax's 5th-order dense interpolant for the saves;
- the controller is diffrax's ``PIDController(rtol, atol, dtmin)`` with its
  defaults (an I controller: factor $0.9\,\epsilon^{-1/5}$ clipped to
  [1, 10] after an accepted step and [0.2, 0.9] after a rejected one; error
  $\epsilon$ the RMS over all K components of
  $e/(\mathrm{atol} + \mathrm{rtol}\max(|y_0|, |y_1|))$; NaN errors count as
  infinite; ``dtmin`` forced), the first step ``dt0``, and the engine's
  clipping of the last step to the end of the save grid;
- starts are queued costliest first and refill a finished lane at once, as in
  the JAX engine.

The numbers agree with the JAX engine up to rounding (the operations are the
same, their order and the exponential's last bit are not): the step counts
are equal and the states agree to about 1e-13 (tests/test_cpu_backend.py).

**Layout and speed.** ``lanes`` trajectories are stepped together; every
array is (mode, lane), lanes contiguous, so each operation of the right-hand
side is one vector loop over lanes. The right-hand side costs two
exponentials per mode (the factor value $s = e^{u/N}$ and the softmax) and
two Walsh transforms (fast, butterflies; a dense character matrix for other
groups); the exponential is a vectorisable Cody-Waite reduction with a
degree-13 polynomial (about 1 ulp) instead of the scalar libm call.
Compiled once and cached on disk (numba ``cache=True``).
"""

from __future__ import annotations

import math
from typing import no_type_check

import diffrax
import numba
import numpy as np

__all__ = ["solve_log_ce", "LOG", "LOGLOG", "CLOCKS"]

LOG = 0
r"""Clock code: $u = \log\lambda$ in $\tau = \log(1 + t)$ (:func:`_rhs_log`, what ``simulate`` runs)."""
LOGLOG = 1
r"""Clock code: $\lambda$ in $\sigma = \log(1 + \tau)$ (:func:`_rhs_loglog`, what ``outcome`` runs)."""
CLOCKS = {"log": LOG, "loglog": LOGLOG}

_TAB = diffrax.Tsit5.tableau
assert bool(_TAB.ssal) and bool(_TAB.fsal) and len(_TAB.c) == 6
(A21,) = (float(x) for x in _TAB.a_lower[0])
A31, A32 = (float(x) for x in _TAB.a_lower[1])
A41, A42, A43 = (float(x) for x in _TAB.a_lower[2])
A51, A52, A53, A54 = (float(x) for x in _TAB.a_lower[3])
A61, A62, A63, A64, A65 = (float(x) for x in _TAB.a_lower[4])
A71, A72, A73, A74, A75, A76 = (float(x) for x in _TAB.a_lower[5])  # = b_sol (ssal)
E1, E2, E3, E4, E5, E6, E7 = (float(x) for x in _TAB.b_error)
C2, C3, C4, C5, C6, C7 = (float(x) for x in _TAB.c)
assert C6 == 1.0 and C7 == 1.0

# the PIDController's defaults (diffrax.PIDController(rtol, atol, dtmin))
_PID = diffrax.PIDController(rtol=1.0, atol=1.0)
SAFETY, FACTORMIN, FACTORMAX = float(_PID.safety), float(_PID.factormin), float(_PID.factormax)
assert (_PID.pcoeff, _PID.icoeff, _PID.dcoeff) == (0, 1, 0) and _PID.force_dtmin
_ERROR_ORDER = diffrax.Tsit5().error_order(diffrax.ODETerm(lambda t, y, args: y))  # 5: min(5, 4) + 1
assert isinstance(_ERROR_ORDER, int | float)
ERROR_EXPONENT = 1.0 / float(_ERROR_ORDER)  # icoeff / error order

# exp(x) = 2^n exp(r), x = n log 2 + r, |r| <= log(2)/2 (Cody-Waite)
_LOG2E = 1.4426950408889634
_LN2_HI = 6.93147180369123816490e-01
_LN2_LO = 1.90821492927058770002e-10
_MAGIC = 6755399441055744.0  # 1.5 * 2^52: x + MAGIC rounds x to an integer in the low bits
(P0, P1, P2, P3, P4, P5, P6, P7, P8, P9, P10, P11, P12, P13) = (1.0 / math.factorial(i) for i in range(14))
_EXP_LO, _EXP_HI = -708.0, 709.0

_jit = numba.njit(cache=True, fastmath={"contract"}, nogil=True)


@_jit
@no_type_check  # no import-hook wrapper (jaxtyping's test hook) around a numba function
def _vexp(x, out, fbuf):
    """``out[w] = exp(x[w])`` over a lane vector; ``fbuf``: scratch.

    ``x``, ``out`` and ``fbuf`` must be distinct arrays (overlapping ones make
    LLVM fall back to the scalar loop). Below -708 the result is 0 (exp
    underflows to subnormals there), above 709 inf.
    """
    n = x.shape[0]
    for w in range(n):
        v = min(max(x[w], _EXP_LO), _EXP_HI)
        k = v * _LOG2E + _MAGIC
        t = k - _MAGIC
        r = (v - t * _LN2_HI) - t * _LN2_LO
        p = P13
        p = p * r + P12
        p = p * r + P11
        p = p * r + P10
        p = p * r + P9
        p = p * r + P8
        p = p * r + P7
        p = p * r + P6
        p = p * r + P5
        p = p * r + P4
        p = p * r + P3
        p = p * r + P2
        p = p * r + P1
        p = p * r + P0
        fbuf[w] = k
        if x[w] < _EXP_LO:
            p = 0.0
        elif x[w] > _EXP_HI:
            p = np.inf
        elif x[w] != x[w]:
            p = np.nan
        out[w] = p
    bits = fbuf.view(np.int64)
    for w in range(n):
        bits[w] = (bits[w] + 1023) << 52  # the low bits of k hold n: 2^n as a float64
    scale = bits.view(np.float64)
    for w in range(n):
        out[w] = out[w] * scale[w]


@_jit
@no_type_check  # no import-hook wrapper (jaxtyping's test hook) around a numba function
def _fwht(X):
    """In place, along axis 0 of (K, W): X <- H X (Sylvester's Hadamard, K = 2^m)."""
    K, W = X.shape
    h = 1
    while h < K:
        for i in range(0, K, 2 * h):
            for j in range(i, i + h):
                for w in range(W):
                    a = X[j, w]
                    b = X[j + h, w]
                    X[j, w] = a + b
                    X[j + h, w] = a - b
        h *= 2


@_jit
@no_type_check  # no import-hook wrapper (jaxtyping's test hook) around a numba function
def _omc_neg_margins(lam, Z, omc):
    r"""``Z[x]`` = $-m_x = -\frac1K\sum_j \lambda_j (1 - \cos\theta_{xj})$ for x = 1..K-1 over
    the lanes, from ``lam`` (K, W) and the group's $1 - \cos$ table ``omc`` (row 0 untouched)."""
    K, W = lam.shape
    for x in range(1, K):
        for w in range(W):
            Z[x, w] = 0.0
        for j in range(K):
            c = omc[x, j]
            for w in range(W):
                Z[x, w] += lam[j, w] * c
        for w in range(W):
            Z[x, w] = -(Z[x, w] / K)


@_jit
@no_type_check  # no import-hook wrapper (jaxtyping's test hook) around a numba function
def _shifted_exps(src, dst, first, vW, wW, xW, fbuf):
    r"""Over rows ``first``..K-1 of ``src`` (K, W): ``vW`` = their largest entry per lane,
    ``dst`` rows = $e^{src_x - v}$ and ``wW`` = their sum (a softmax's shifted
    numerator and denominator); ``xW``, ``fbuf``: scratch."""
    K, W = src.shape
    for w in range(W):
        vW[w] = src[first, w]
    for x in range(first + 1, K):
        for w in range(W):
            vW[w] = max(vW[w], src[x, w])
    for w in range(W):
        wW[w] = 0.0
    for x in range(first, K):
        for w in range(W):
            xW[w] = src[x, w] - vW[w]
        _vexp(xW, dst[x], fbuf)
        for w in range(W):
            wW[w] += dst[x, w]


@_jit
@no_type_check  # no import-hook wrapper (jaxtyping's test hook) around a numba function
def _lse_neg_margins(Z, F, vW, wW, xW, fbuf):
    r"""``wW`` = $\log(1 + \sum_{x \ne 0} e^{Z_x})$ per lane from ``Z`` rows 1..K-1 ($= -m_x$),
    shifted by the largest. On return ``vW`` = $\max_x Z_x$ and ``F`` rows 1..K-1 =
    $e^{Z_x - v}$, which the callers reuse; ``xW``, ``fbuf``: scratch."""
    W = Z.shape[1]
    _shifted_exps(Z, F, 1, vW, wW, xW, fbuf)
    for w in range(W):
        a = vW[w] + math.log(wW[w])  # logsumexp of -m over x != 0
        wW[w] = max(a, 0.0) + math.log1p(math.exp(-abs(a)))  # logaddexp(0, a)


@_jit
@no_type_check  # no import-hook wrapper (jaxtyping's test hook) around a numba function
def _omc_rates(F, Z, omc):
    r"""``Z[j]`` = $\sum_{x \ne 0} e_x (1 - \cos\theta_{xj})$ for every j over the lanes: the
    off-target rates (:func:`svflow._groups.Group.off_target_rates`) of the weights
    $e_x$ in ``F`` rows 1..K-1, by the group's $1 - \cos$ table ``omc``."""
    K, W = F.shape
    for j in range(K):
        for w in range(W):
            Z[j, w] = 0.0
        for x in range(1, K):
            c = omc[x, j]
            for w in range(W):
                Z[j, w] += F[x, w] * c


@_jit
@no_type_check  # no import-hook wrapper (jaxtyping's test hook) around a numba function
def _rhs_log(tau, U, out, S, F, Z, vW, wW, xW, fbuf, N, wd, walsh, omc):
    r"""``out`` = du/dtau at (tau (W,), U (K, W)) for every lane (the ``"log"`` clock, module docstring).

    Scratch: S, F, Z (K, W); vW, wW, xW, fbuf (W,). ``walsh``: the fast Walsh
    transform (Sylvester frame, as :func:`svflow._walsh.ce_one_minus_mu`);
    otherwise ``omc`` (K, K) is the group's $1 - \cos\theta$ table
    (:meth:`svflow.Group.one_minus_mu`, dense).
    """
    K, W = U.shape
    inv_n = 1.0 / N
    inv_k = 1.0 / K  # exact for the Walsh group (K = 2^m)
    for k in range(1, K):
        for w in range(W):
            xW[w] = U[k, w] * inv_n
        _vexp(xW, S[k], fbuf)
    for w in range(W):
        S[0, w] = 0.0
    # lambda = s^N (entry 0: 0)
    for k in range(K):
        for w in range(W):
            F[k, w] = S[k, w]
        for _ in range(N - 1):
            for w in range(W):
                F[k, w] = F[k, w] * S[k, w]
    if walsh:
        # z = (f - f_0)/K with f = H lambda; p = softmax(z); 1 - mu = sum_{k != 0} p_k - (H p')
        _fwht(F)
        for k in range(K - 1, -1, -1):
            for w in range(W):
                F[k, w] = (F[k, w] - F[0, w]) * inv_k
        _shifted_exps(F, Z, 0, vW, wW, xW, fbuf)
        for w in range(W):
            vW[w] = 0.0
            Z[0, w] = 0.0
            wW[w] = 1.0 / wW[w]
        for k in range(1, K):
            for w in range(W):
                Z[k, w] = Z[k, w] * wW[w]
                vW[w] += Z[k, w]
        _fwht(Z)
        for k in range(K):
            for w in range(W):
                Z[k, w] = vW[w] - Z[k, w]
    else:
        # margins m = (lambda @ omc.T)/K; g' = exp(-m - log(1 + sum_{x != 0} e^{-m_x})); 1 - mu = g' @ omc
        _omc_neg_margins(F, Z, omc)
        _lse_neg_margins(Z, F, vW, wW, xW, fbuf)
        for w in range(W):
            wW[w] = math.exp(vW[w] - wW[w])
        for x in range(1, K):
            for w in range(W):
                F[x, w] = F[x, w] * wW[w]
        _omc_rates(F, Z, omc)
    _vexp(tau, vW, fbuf)
    scale = N / K
    for w in range(W):
        out[0, w] = 0.0
    for k in range(1, K):
        for w in range(W):
            wW[w] = 1.0
        for _ in range(N - 2):
            for w in range(W):
                wW[w] = wW[w] * S[k, w]
        for w in range(W):
            out[k, w] = vW[w] * (scale * Z[k, w] * wW[w] - N * wd)


@_jit
@no_type_check  # no import-hook wrapper (jaxtyping's test hook) around a numba function
def _rhs_loglog(sigma, L, out, S, F, Z, vW, wW, xW, fbuf, N, walsh, omc):
    r"""``out`` = dlambda/dsigma at (sigma (W,), L = lambda (K, W)) for every lane (the ``"loglog"`` clock).

    The operations of :class:`svflow._fields.CETauField` (balanced) through
    :class:`svflow._batch._DoubleLogField`: margins $m$, $lse = \log(1 +
    \sum_{x\ne0}e^{-m_x})$, weights $e_x = e^{\tau - m_x - lse}$ ($x \ne 0$,
    $\tau = e^\sigma - 1$), rates $r = $ ``off_target_rates(e)`` ($r_0 = 0$),
    and $e^\sigma\,(N/K)\,r_i\,|\lambda_i|^{2-2/N}$. Scratch as :func:`_rhs_log`.
    """
    K, W = L.shape
    inv_k = 1.0 / K
    # Z[x] = -m_x (x >= 1)
    if walsh:
        for k in range(K):
            for w in range(W):
                F[k, w] = L[k, w]
        _fwht(F)
        for k in range(1, K):
            for w in range(W):
                Z[k, w] = (F[k, w] - F[0, w]) * inv_k
    else:
        _omc_neg_margins(L, Z, omc)
    _lse_neg_margins(Z, F, vW, wW, xW, fbuf)
    for w in range(W):
        wW[w] = math.expm1(sigma[w]) - wW[w]  # tau - lse
    # e_x = exp(tau - m_x - lse) (x != 0), e_0 = 0, into F
    for w in range(W):
        F[0, w] = 0.0
    for x in range(1, K):
        for w in range(W):
            xW[w] = Z[x, w] + wW[w]
        _vexp(xW, F[x], fbuf)
    # r = off_target_rates(e), r_0 = 0, into Z
    if walsh:
        for w in range(W):
            vW[w] = 0.0
        for x in range(1, K):
            for w in range(W):
                vW[w] += F[x, w]
                Z[x, w] = F[x, w]
        for w in range(W):
            Z[0, w] = 0.0
        _fwht(Z)
        for k in range(K):
            for w in range(W):
                Z[k, w] = vW[w] - Z[k, w]
    else:
        _omc_rates(F, Z, omc)
    for w in range(W):
        Z[0, w] = 0.0
    _vexp(sigma, vW, fbuf)
    scale = N / K
    power = 2.0 - 2.0 / N
    for k in range(K):
        for w in range(W):
            out[k, w] = vW[w] * (scale * Z[k, w] * abs(L[k, w]) ** power)


@_jit
@no_type_check  # no import-hook wrapper (jaxtyping's test hook) around a numba function
def _rhs(t, Y, out, S, F, Z, vW, wW, xW, fbuf, N, wd, walsh, omc, clock):
    """The right-hand side of ``clock`` (:data:`LOG` or :data:`LOGLOG`) at (t (W,), Y (K, W))."""
    if clock == LOGLOG:
        _rhs_loglog(t, Y, out, S, F, Z, vW, wW, xW, fbuf, N, walsh, omc)
    else:
        _rhs_log(t, Y, out, S, F, Z, vW, wW, xW, fbuf, N, wd, walsh, omc)


@_jit
@no_type_check  # no import-hook wrapper (jaxtyping's test hook) around a numba function
def _dense(tprev, tnext, s, Y, Ks, w, out):
    """diffrax's Tsit5 interpolant of lane ``w`` at ``s`` in the step (tprev, tnext] into ``out`` (K,)."""
    if tprev == tnext:
        t = 0.0
    else:
        t = (s - tprev) / (tnext - tprev)
    b1 = (
        -1.0530884977290216
        * t
        * (t - 1.3299890189751412)
        * (t**2 - 1.4364028541716351 * t + 0.7139816917074209)
    )
    b2 = 0.1017 * t**2 * (t**2 - 2.1966568338249754 * t + 1.2949852507374631)
    b3 = 2.490627285651252793 * t**2 * (t**2 - 2.38535645472061657 * t + 1.57803468208092486)
    b4 = -16.54810288924490272 * (t - 1.21712927295533244) * (t - 0.61620406037800089) * t**2
    b5 = 47.37952196281928122 * (t - 1.203071208372362603) * (t - 0.658047292653547382) * t**2
    b6 = -34.87065786149660974 * (t - 1.2) * (t - 0.666666666666666667) * t**2
    b7 = 2.5 * (t - 1) * (t - 0.6) * t**2
    for k in range(Y.shape[0]):
        out[k] = Y[k, w] + (
            b1 * Ks[0, k, w]
            + b2 * Ks[1, k, w]
            + b3 * Ks[2, k, w]
            + b4 * Ks[3, k, w]
            + b5 * Ks[4, k, w]
            + b6 * Ks[5, k, w]
            + b7 * Ks[6, k, w]
        )


@_jit
@no_type_check  # no import-hook wrapper (jaxtyping's test hook) around a numba function
def _engine(
    y0s, order, saves, clock, N, wd, walsh, omc, rtol, atol, dt0, dtmin, t1_floor, max_steps, W, max_code
):
    """The refill loop (:func:`solve_log_ce`): returns (ys (B, T, K), result (B,), steps (B,))."""
    B, K = y0s.shape
    T = saves.shape[0]
    s0 = saves[0]
    s1 = saves[-1]
    ys = np.zeros((B, T, K))
    res_out = np.zeros(B, np.int64)
    steps_out = np.zeros(B, np.int64)
    # scratch of the right-hand side
    S = np.empty((K, W))
    F = np.empty((K, W))
    Z = np.empty((K, W))
    vW = np.empty(W)
    wW = np.empty(W)
    xW = np.empty(W)
    fbuf = np.empty(W)
    # the first derivative of every start (the solver's init), W at a time
    f0s = np.empty((B, K))
    Yb = np.empty((K, W))
    Fb = np.empty((K, W))
    tb = np.full(W, s0)
    for b0 in range(0, B, W):
        n = min(W, B - b0)
        for w in range(W):
            src = b0 + min(w, n - 1)
            for k in range(K):
                Yb[k, w] = y0s[src, k]
        _rhs(tb, Yb, Fb, S, F, Z, vW, wW, xW, fbuf, N, wd, walsh, omc, clock)
        for w in range(n):
            for k in range(K):
                f0s[b0 + w, k] = Fb[k, w]
    first = max(dt0, dtmin)
    # lane state
    Y = np.zeros((K, W))
    F1 = np.zeros((K, W))  # f at (tprev, Y): first same as last
    Ks = np.zeros((7, K, W))
    Yt = np.empty((K, W))
    Y1 = np.empty((K, W))
    tprev = np.full(W, s0)
    tnext = np.full(W, s0)
    dt = np.zeros(W)
    ti = np.empty(W)
    idx = np.full(W, -1)
    j = np.zeros(W, np.int64)
    steps = np.zeros(W, np.int64)
    at_min = np.zeros(W, np.bool_)
    keep = np.zeros(W, np.bool_)
    ss = np.zeros(W)
    bad = np.zeros(W, np.bool_)
    row = np.empty(K)
    nxt = 0
    for w in range(W):
        if nxt < B:
            b = order[nxt]
            nxt += 1
            idx[w] = b
            for k in range(K):
                Y[k, w] = y0s[b, k]
                F1[k, w] = f0s[b, k]
            tprev[w] = s0
            tnext[w] = min(s0 + first, s1)
    active = min(W, B)
    while active > 0:
        for w in range(W):
            dt[w] = tnext[w] - tprev[w]
        # stages 2..7 (stage 1: the stored derivative)
        for k in range(K):
            for w in range(W):
                Ks[0, k, w] = F1[k, w] * dt[w]
                Yt[k, w] = Y[k, w] + A21 * Ks[0, k, w]
        for w in range(W):
            ti[w] = tprev[w] + C2 * dt[w]
        _rhs(ti, Yt, Ks[1], S, F, Z, vW, wW, xW, fbuf, N, wd, walsh, omc, clock)
        for k in range(K):
            for w in range(W):
                Ks[1, k, w] *= dt[w]
                Yt[k, w] = Y[k, w] + (A31 * Ks[0, k, w] + A32 * Ks[1, k, w])
        for w in range(W):
            ti[w] = tprev[w] + C3 * dt[w]
        _rhs(ti, Yt, Ks[2], S, F, Z, vW, wW, xW, fbuf, N, wd, walsh, omc, clock)
        for k in range(K):
            for w in range(W):
                Ks[2, k, w] *= dt[w]
                Yt[k, w] = Y[k, w] + (A41 * Ks[0, k, w] + A42 * Ks[1, k, w] + A43 * Ks[2, k, w])
        for w in range(W):
            ti[w] = tprev[w] + C4 * dt[w]
        _rhs(ti, Yt, Ks[3], S, F, Z, vW, wW, xW, fbuf, N, wd, walsh, omc, clock)
        for k in range(K):
            for w in range(W):
                Ks[3, k, w] *= dt[w]
                Yt[k, w] = Y[k, w] + (
                    A51 * Ks[0, k, w] + A52 * Ks[1, k, w] + A53 * Ks[2, k, w] + A54 * Ks[3, k, w]
                )
        for w in range(W):
            ti[w] = tprev[w] + C5 * dt[w]
        _rhs(ti, Yt, Ks[4], S, F, Z, vW, wW, xW, fbuf, N, wd, walsh, omc, clock)
        for k in range(K):
            for w in range(W):
                Ks[4, k, w] *= dt[w]
                Yt[k, w] = Y[k, w] + (
                    A61 * Ks[0, k, w]
                    + A62 * Ks[1, k, w]
                    + A63 * Ks[2, k, w]
                    + A64 * Ks[3, k, w]
                    + A65 * Ks[4, k, w]
                )
        _rhs(tnext, Yt, Ks[5], S, F, Z, vW, wW, xW, fbuf, N, wd, walsh, omc, clock)  # c = 1: the step's end
        for k in range(K):
            for w in range(W):
                Ks[5, k, w] *= dt[w]
                Y1[k, w] = Y[k, w] + (
                    A71 * Ks[0, k, w]
                    + A72 * Ks[1, k, w]
                    + A73 * Ks[2, k, w]
                    + A74 * Ks[3, k, w]
                    + A75 * Ks[4, k, w]
                    + A76 * Ks[5, k, w]
                )
        # f(t1, y1): the next step's first stage
        _rhs(tnext, Y1, Yt, S, F, Z, vW, wW, xW, fbuf, N, wd, walsh, omc, clock)
        # error estimate and its RMS norm, scaled by atol + rtol max(|y0|, |y1|)
        for w in range(W):
            ss[w] = 0.0
            bad[w] = False
        for k in range(K):
            for w in range(W):
                Ks[6, k, w] = Yt[k, w] * dt[w]
                if Y1[k, w] != Y1[k, w]:
                    bad[w] = True
        for k in range(K):
            for w in range(W):
                e = (
                    E1 * Ks[0, k, w]
                    + E2 * Ks[1, k, w]
                    + E3 * Ks[2, k, w]
                    + E4 * Ks[3, k, w]
                    + E5 * Ks[4, k, w]
                    + E6 * Ks[5, k, w]
                    + E7 * Ks[6, k, w]
                )
                if e != e:
                    e = np.inf
                y1 = Y[k, w] if bad[w] else Y1[k, w]
                x = e / (atol + max(abs(Y[k, w]), abs(y1)) * rtol)
                ss[w] += x * x
        rootk = math.sqrt(K)
        for w in range(W):
            b = idx[w]
            if b < 0:
                continue
            scaled = math.sqrt(ss[w]) / rootk
            kp = (scaled < 1.0) or at_min[w]
            keep[w] = kp
            inv = 1.0 / scaled
            fmin = 1.0 if kp else FACTORMIN
            fmax = FACTORMAX if kp else SAFETY
            factor = min(max(SAFETY * inv**ERROR_EXPONENT, fmin), fmax)
            h = dt[w] * factor
            if at_min[w] and factor == 1.0:
                h = dtmin
            at_min[w] = h <= dtmin
            h = max(h, dtmin)
            tp = tnext[w] if kp else tprev[w]
            tn = tp + h
            tp = min(tp, s1)
            if tn > t1_floor:
                tn = s1 if kp else tp + 0.5 * (s1 - tp)
            if kp:
                # dense saves in the accepted step (tprev, tnext]
                while j[w] < T and saves[j[w]] <= tnext[w]:
                    _dense(tprev[w], tnext[w], saves[j[w]], Y, Ks, w, row)
                    for k in range(K):
                        ys[b, j[w], k] = row[k]
                    j[w] += 1
                for k in range(K):
                    Y[k, w] = Y1[k, w]
                    F1[k, w] = Yt[k, w]
            tprev[w] = tp
            tnext[w] = tn
            steps[w] += 1
            done_ok = tp >= s1
            res = 0
            if (not done_ok) and steps[w] >= max_steps:
                res = max_code
            if done_ok or res != 0:
                res_out[b] = res
                steps_out[b] = steps[w]
                # refill: the next start of the queue, or the lane idles
                if nxt < B:
                    b = order[nxt]
                    nxt += 1
                    idx[w] = b
                    for k in range(K):
                        Y[k, w] = y0s[b, k]
                        F1[k, w] = f0s[b, k]
                    tprev[w] = s0
                    tnext[w] = min(s0 + first, s1)
                    j[w] = 0
                    steps[w] = 0
                    at_min[w] = False
                else:
                    idx[w] = -1
                    active -= 1
    return ys, res_out, steps_out


def solve_log_ce(
    u0s: np.ndarray,
    saves: np.ndarray,
    order: np.ndarray,
    *,
    clock: str = "log",
    factors: int,
    weight_decay: float,
    walsh: bool,
    one_minus_cos: np.ndarray,
    rtol: float,
    atol: float,
    max_steps: int,
    dt0: float,
    dtmin: float,
    t1_floor: float,
    lanes: int,
    max_steps_code: int,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    r"""Integrate the balanced cross-entropy law in $u = \log\lambda$ from every start in ``u0s`` (B, K).

    ``saves``: increasing grid in $\tau$ (integration from ``saves[0]`` to
    ``saves[-1]``); ``order``: the queue (indices of ``u0s``, costliest
    first). Controller and clipping as :func:`svflow._batch.solve_many`
    (module docstring). Returns ``(ys (B, T, K) in u, result codes (B,), step
    attempts (B,))`` in the order of ``u0s``; result 0 is success,
    ``max_steps_code`` a trajectory that used all ``max_steps``.

    ``clock="loglog"``: the starts are $\lambda$ (B, K), ``saves`` a grid in
    $\sigma = \log(1 + \tau)$ and the law that of
    :class:`svflow._fields.CETauField` (balanced, no weight decay: pass
    ``weight_decay=0``); the returned states are $\lambda$.
    """
    if clock not in CLOCKS:
        raise ValueError(f"clock must be one of {sorted(CLOCKS)}; got {clock!r}.")
    if clock == "loglog" and weight_decay != 0.0:
        raise ValueError(f"the loglog clock's law has no weight decay; got weight_decay={weight_decay!r}.")
    u0s = np.ascontiguousarray(u0s, dtype=np.float64)
    omc = np.ascontiguousarray(one_minus_cos, dtype=np.float64)
    return _engine(
        u0s,
        np.ascontiguousarray(order, dtype=np.int64),
        np.ascontiguousarray(saves, dtype=np.float64),
        CLOCKS[clock],
        int(factors),
        float(weight_decay),
        bool(walsh),
        omc,
        float(rtol),
        float(atol),
        float(dt0),
        float(dtmin),
        float(t1_floor),
        int(max_steps),
        int(lanes),
        int(max_steps_code),
    )
