"""The limit flow (svflow._limit): the t = infinity dynamics of the late phase.

Routes: the quadratic programme against brute-force enumeration of its
supports; the limit flow against the exact double-log flow integrated by
scipy's LSODA over the same stretch of tau (they must agree to O(log tau / tau));
the limit map (the runs that decide outcomes) against the limit flow
integrated by diffrax at tight tolerances (same end points); the K = 4
separatrix q* = 2^(-N/(N-2)) of the late phase (closed form); fixed points
against the KKT conditions of the max-margin problem.
"""

from itertools import combinations

import diffrax
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from scipy.integrate import solve_ivp
from scipy.linalg import hadamard
from scipy.special import logsumexp

from svflow import Walsh, _limit
from svflow._limit import LimitField, qp_nonneg


# every start here is in the Walsh frame (K = 2^m): the group of the limit map
def handoff(lam):
    return _limit.handoff(lam, Walsh(lam.shape[-1]))


def relax(u, *, factors):
    return _limit.relax(u, factors=factors, group=Walsh(u.shape[-1]))


def limit_rates(u, factors):
    return _limit.limit_rates(u, factors, Walsh(u.shape[-1]))


def limit_step(u, factors):
    return _limit.limit_step(u, factors, Walsh(u.shape[-1]))


jax.config.update("jax_enable_x64", True)


def _brute_force_qp(G, active):
    """min 1/2 x'Gx - 1'x over x >= 0 supported on `active`, by trying every support."""
    best, value = np.zeros(len(G)), 0.0
    idx = np.flatnonzero(active)
    for r in range(1, idx.size + 1):
        for S in combinations(idx, r):
            S = list(S)
            if np.linalg.cond(G[np.ix_(S, S)]) > 1e10:  # a dependent support: never needed
                continue
            z = np.zeros(len(G))
            z[S] = np.linalg.solve(G[np.ix_(S, S)], np.ones(len(S)))
            v = 0.5 * z @ G @ z - z.sum()
            if np.all(z >= 0) and v < value:
                best, value = z, v
    return best, value


def test_qp_matches_brute_force():
    """The active-set solve reaches the brute-force optimum, also for singular G (rank n - 2,
    as in the limit map once frozen modes have vanished)."""
    rng = np.random.default_rng(0)
    for _ in range(60):
        n = 6
        if _ % 2:
            B = rng.normal(size=(n + 2, n)) * rng.uniform(0.1, 2.0, size=n)
        else:  # rank n - 2 with B >= 0, like G = C D C' (no e >= 0 with Ge = 0: bounded)
            B = np.abs(rng.normal(size=(n - 2, n)))
        G = B.T @ B
        active = rng.uniform(size=n) < 0.8
        x, solved = jax.jit(qp_nonneg)(jnp.asarray(G), jnp.asarray(active))
        x = np.asarray(x)
        assert bool(solved)
        _, value = _brute_force_qp(G, active)
        assert np.all(x >= 0) and np.all(x[~active] == 0)
        assert 0.5 * x @ G @ x - x.sum() <= value + 1e-10 * (1 + abs(value))


def test_qp_warm_start_reaches_the_brute_force_optimum():
    """A warm start from any guess of the positive set (all of it, a random one, the optimum's
    own support, none) reaches the brute-force optimum and the cold start's x: a guess whose
    z_P is not positive falls back to the cold start, a feasible one only shortens the path."""
    qp = jax.jit(qp_nonneg)
    rng = np.random.default_rng(1)
    for i in range(40):
        n = 6
        if i % 2:
            B = rng.normal(size=(n + 2, n)) * rng.uniform(0.1, 2.0, size=n)
        else:  # rank n - 2 with B >= 0 (bounded)
            B = np.abs(rng.normal(size=(n - 2, n)))
        G = B.T @ B
        active = rng.uniform(size=n) < 0.8
        best, value = _brute_force_qp(G, active)
        cold, _ = qp(jnp.asarray(G), jnp.asarray(active))
        guesses = (np.ones(n, bool), rng.uniform(size=n) < 0.5, best > 0, np.zeros(n, bool))
        for start in guesses:
            x, solved = qp(jnp.asarray(G), jnp.asarray(active), start=jnp.asarray(start))
            x = np.asarray(x)
            assert bool(solved)
            assert np.all(x >= 0) and np.all(x[~active] == 0)
            assert 0.5 * x @ G @ x - x.sum() <= value + 1e-10 * (1 + abs(value))
            # G x is unique (x itself is not where G is singular)
            np.testing.assert_allclose(G @ x, G @ np.asarray(cold), rtol=0, atol=1e-8)


@pytest.mark.parametrize("N", [3, 6])
def test_warm_started_limit_map_ends_where_cold_steps_end(N):
    """relax warm-starts each step's QP from the previous step's positive set; its end states
    are those of LIMIT_STEPS cold limit_step calls (the QP's answer is unique), to 1e-12."""
    K = 16
    rng = np.random.default_rng(N)
    u0 = handoff(jnp.asarray(rng.uniform(0.05, 1.0, (6, K)) ** 3))
    warm, ok = _limit.relax(u0, factors=N, group=Walsh(K), checked=True)
    assert np.all(np.asarray(ok))
    step = jax.jit(jax.vmap(lambda u: limit_step(u, N)))
    u = u0
    for _ in range(_limit.LIMIT_STEPS):
        u = step(u)
    scale = np.abs(np.asarray(u)).max(-1, keepdims=True)
    assert np.all(np.abs(np.asarray(warm) - np.asarray(u)) <= 1e-12 * scale)


def _flow(u0, N, span):
    """The limit flow du/ds = F(u) - u over s in [0, span], integrated by diffrax (tight)."""
    sol = diffrax.diffeqsolve(
        diffrax.ODETerm(LimitField(N)),
        diffrax.Tsit5(),
        0.0,
        span,
        1e-3,
        jnp.asarray(u0),
        stepsize_controller=diffrax.PIDController(rtol=1e-10, atol=1e-13),
        max_steps=100_000,
    )
    return np.asarray(sol.ys[-1])


def _exact_sigma_rate(K, N):
    """The exact balanced flow in sigma = log(1 + tau), written here in numpy (Walsh basis)."""
    C = 1.0 - hadamard(K).astype(float)
    a = 2.0 - 2.0 / N

    def rate(sig, lam):
        tau = np.expm1(sig)
        m = lam @ C.T / K
        neg = -m[1:]
        lse = np.logaddexp(0.0, logsumexp(neg))
        e = np.zeros(K)
        e[1:] = np.exp(tau + neg - lse)
        r = e @ C
        r[0] = 0.0
        return (1.0 + tau) * (N / K) * r * np.abs(lam) ** a

    return rate


@pytest.mark.parametrize(
    "N,lam0",
    [(3, [0.0, 1.0, 0.9, 0.5, 0.8, 0.3, 0.7, 0.6]), (5, [0.0, 1.0, 0.95, 0.2, 0.9, 0.25, 0.3, 0.85])],
)
def test_limit_flow_tracks_the_exact_flow(N, lam0):
    """From a late exact state at tau0, the exact flow to tau0 e^2 and the limit flow over
    s = 2 give the same direction, up to O(log tau0 / tau0), while the direction moves."""
    K = 8
    lam0 = np.asarray(lam0) * 1e-2
    rate = _exact_sigma_rate(K, N)
    errs = []
    for tau0 in (1e2, 1e3):
        s0 = solve_ivp(rate, (0, np.log1p(tau0)), lam0, method="LSODA", rtol=1e-11, atol=1e-14)
        lam_h = s0.y[:, -1]
        s1 = solve_ivp(
            rate, (np.log1p(tau0), np.log1p(tau0 * np.e**2)), lam_h, method="LSODA", rtol=1e-11, atol=1e-14
        )
        exact = s1.y[:, -1] / s1.y[:, -1].max()
        u = _flow(handoff(jnp.asarray(lam_h)), N, 2.0)
        lim = u / u.max()
        moved = np.abs(exact - lam_h / lam_h.max()).max()
        errs.append(np.abs(exact - lim).max())
        # the direction moves over the stretch, and the limit flow follows it
        assert errs[-1] < 0.1 * moved, (tau0, errs[-1], moved)
    assert errs[1] < errs[0] / 2 and max(errs) < 1e-2


@pytest.mark.parametrize("N", [3, 4, 5, 6])
def test_k4_separatrix_of_the_limit_flow(N):
    """K = 4, u = (0, 1, 1, q): NC above q* = 2^(-N/(N-2)), the square (rank 2) below."""
    qs = 2.0 ** (-N / (N - 2))
    for f, support in ((0.98, [False, True, True, False]), (1.02, [False, True, True, True])):
        u0 = handoff(jnp.asarray([0.0, 1.0, 1.0, f * qs]))
        u = relax(u0, factors=N)
        rho = np.asarray(limit_rates(u, N))
        np.testing.assert_array_equal(np.abs(rho - 1) < 1e-3, support)


def test_fixed_points_are_kkt_points():
    """At the end of a limit run, u^(2/N - 1) is proportional to C' e on the support with
    e >= 0 on the smallest margins (stationarity of min sum u^(2/N) s.t. margins >= 1)."""
    K, N = 8, 4
    C = 1.0 - hadamard(K)
    u0 = handoff(jnp.asarray([0.0, 1.0, 0.97, 0.2, 0.9, 0.25, 0.3, 0.95]))
    u = np.asarray(relax(u0, factors=N))
    m = u @ C.T / K
    sup = u / u.max() > 1e-6
    sup[0] = False
    tight = (np.arange(K) > 0) & (m < 1 + 1e-6)
    # multipliers by nonnegative least squares on the tight margins
    from scipy.optimize import nnls

    A = C[np.ix_(tight, sup)].T
    b = u[sup] ** (2.0 / N - 1.0)
    e, resid = nnls(A, b)
    assert resid <= 1e-6 * np.linalg.norm(b)
    assert abs(m[1:].min() - 1) < 1e-6


def test_limit_field_is_homogeneous_of_degree_zero_in_its_drive():
    """F(u) = du/ds + u does not change when u is scaled (the margins scale, the weights
    rescale): checked on the NC point and a random one with the active set kept."""
    f = LimitField(3)
    u = handoff(jnp.asarray([0.0, 1.0, 0.7, 0.4, 0.9, 0.2, 0.5, 0.6]))
    F = np.asarray(f(0.0, u) + u)
    # all margins of F(u) on the weighted classes are 1 (they move together)
    C = 1.0 - hadamard(8)
    mF = F @ C.T / 8
    m = np.asarray(u) @ C.T / 8
    # (to 1e-9: qp_nonneg solves with the ridge QP_RIDGE = 1e-10 diag(G))
    assert abs(mF[np.argmin(np.where(np.arange(8) > 0, m, np.inf))] - 1) < 1e-9
    nc = handoff(jnp.ones(8))
    np.testing.assert_allclose(np.asarray(f(0.0, nc))[1:], 0.0, atol=1e-9)


@pytest.mark.parametrize("N", [3, 5])
def test_limit_map_ends_where_the_limit_flow_ends(N):
    """The limit map (implicit-explicit Euler steps of size 1 in s) and the limit flow
    integrated at rtol 1e-10 over s = 60 reach the same fixed point from random K = 8
    hand-off states: the same support, and directions equal to 1e-6."""
    rng = np.random.default_rng(N)
    lam = np.concatenate([np.zeros((24, 1)), rng.uniform(0.3, 1.0, size=(24, 7))], axis=1)
    u0 = handoff(jnp.asarray(lam))
    maps = np.asarray(relax(u0, factors=N))
    for b in range(lam.shape[0]):
        flow = _flow(u0[b], N, 60.0)
        np.testing.assert_allclose(maps[b] / maps[b].max(), flow / flow.max(), atol=1e-6)


def test_limit_step_keeps_every_margin_at_least_one():
    """After a step of the limit map every margin is >= 1, with equality on the classes
    that carry weight (the margin constraint is implicit), from states whose margins
    were not yet equal."""
    C = 1.0 - hadamard(8)
    rng = np.random.default_rng(1)
    for _ in range(20):
        u = handoff(jnp.asarray(np.concatenate([[0.0], rng.uniform(0.1, 1.0, 7)])))
        v = np.asarray(limit_step(u, 4))
        m = v @ C.T / 8
        assert m[1:].min() == pytest.approx(1.0, abs=1e-10)
        assert np.all(m[1:] >= 1 - 1e-10)
