"""An independent long integration of the balanced cross-entropy flow (a test route).

Written from the equations alone (no svflow code): K classes, the character
basis of Z_K (modes 0; cos, sin of frequency 1; ...; K/2 if K is even) or of
(Z_2)^m (Walsh), depth L (N = L + 1 factors), mean cross-entropy. With
tau = log(1 + t), sigma = log(1 + tau) and y = log lambda (modes i >= 1),

    dy_j/dsigma = (1 + tau) (N/K) lambda_j^(1 - 2/N) sum_{x != 0} C_xj exp(tau - m_x - l),

C_xj = 1 - cos theta_j(x), margins m = C lambda / K, l = log(1 + sum_x e^(-m_x)),
all exponents of order one late on (t never formed). scipy's Radau runs it
to tau = 1e10 (t = e^(1e10)); the outcome is read from the growth of each
mode between tau = 1e9 and 1e10 relative to the largest one: about 1 on
the support, about 0 for frozen modes (N >= 3).
"""

import numpy as np
from scipy.integrate import solve_ivp


def one_minus_cos(K: int, walsh: bool) -> np.ndarray:
    """C (K, K): row x class offset, column j mode."""
    x = np.arange(K)
    if walsh:
        par = np.array([[bin(a & b).count("1") % 2 for b in x] for a in x])
        return 1.0 - (-1.0) ** par
    freq = [0]
    for f in range(1, (K - 1) // 2 + 1):
        freq += [f, f]
    if K % 2 == 0:
        freq.append(K // 2)
    return 1.0 - np.cos(2 * np.pi * np.outer(x, np.asarray(freq)) / K)


def long_outcome(lam0, depth: int, walsh: bool, tau_end: float = 1e10, rtol: float = 1e-9):
    """(code, support (K,) bool, growth (K,)) of the start lambda(0) (K,), entry 0 ignored.

    code: 0 = NC (support every mode i >= 1), r = support size, -2 = some mode
    neither grows with the largest one nor is frozen by tau_end (no truth)."""
    lam0 = np.asarray(lam0, float)
    K = lam0.size
    N = depth + 1
    C = one_minus_cos(K, walsh)[1:, 1:]

    b = 1 - 2 / N

    def parts(sig, y):
        tau = np.expm1(sig)
        lam = np.exp(y)
        m = C @ lam / K
        lse = np.logaddexp(0.0, np.logaddexp.reduce(-m))
        return tau, lam, np.exp(tau - m - lse), np.exp(-m - lse)

    def f(sig, y):
        tau, lam, e, _ = parts(sig, y)
        return (1 + tau) * (N / K) * lam**b * (C.T @ e)

    def jac(sig, y):
        tau, lam, e, p = parts(sig, y)
        M = C * lam[None, :] / K  # dm/dy
        de = e[:, None] * (-M + (p @ M)[None, :])
        inner = b * np.diag(C.T @ e) + C.T @ de
        return (1 + tau) * (N / K) * lam[:, None] ** b * inner

    s1, s2 = np.log1p(tau_end / 10), np.log1p(tau_end)
    with np.errstate(over="ignore", invalid="ignore"):
        sol = solve_ivp(
            f, (0.0, s2), np.log(lam0[1:]), method="Radau", jac=jac, t_eval=[s1, s2], rtol=rtol, atol=1e-10
        )
    if sol.status != 0:
        raise RuntimeError(sol.message)
    dy = sol.y[:, 1] - sol.y[:, 0]
    growth = np.concatenate([[0.0], dy / dy[np.argmax(sol.y[:, 1])]])
    support = growth > 0.9
    support[0] = False
    frozen = growth < 0.1
    r = int(support.sum())
    if np.any(~support[1:] & ~frozen[1:]):
        return -2, support, growth
    return (0 if r == K - 1 else r), support, growth
