"""t -> infinity outcomes: double-log clock, late-phase decision, KKT limits.

Routes: the log-domain field against the plain softmax field (where both are
finite) and the plain log clock; the K = 4 basin edge against the late-phase
separatrix q* = 2^(-N/(N-2)) found by bisection on a scipy LSODA integration
written here; decisions against the same starts continued ten times further
in tau; limits against the KKT conditions (NNLS residual) and closed forms.
"""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from scipy.integrate import solve_ivp

import svflow
from svflow._analysis.asymptotics import kkt_residual
from svflow._fields import CETauField, scaled_one_minus_mu
from svflow._integrate import Solver, solve
from svflow._outcome import Criterion, _stage
from svflow._simulate import ReducedField
from svflow._walsh import one_minus_mu
from svflow.studies._basins import basin_start

from helpers import wrong_type

jax.config.update("jax_enable_x64", True)


def test_log_domain_field_matches_plain_field():
    lam = jnp.asarray([0.0, 3.0, 2.5, 4.0, 1.0, 2.0, 3.5, 0.5])
    for tau in (0.5, 5.0, 30.0):
        np.testing.assert_allclose(
            scaled_one_minus_mu(lam, tau, svflow.Walsh(8)), np.exp(tau) * one_minus_mu(lam), rtol=1e-12
        )
    # t = e^10000: the plain field overflows, the log-domain one stays finite
    big = lam * 1e4
    r = np.asarray(scaled_one_minus_mu(big, 1e4 * 1.6, svflow.Walsh(8)))
    assert np.all(np.isfinite(r)) and r[0] == 0.0


def test_loglog_clock_matches_log_clock():
    lam0 = jnp.asarray([0.0, 1e-2, 8e-3, 5e-3])
    cfg = Solver(rtol=1e-10, atol=1e-13, max_steps=100_000)
    ts = jnp.asarray([0.0, 1e2, 1e5, 1e8])
    a, ra, _ = solve(ReducedField(jnp.asarray(0.0), "ce", 3, True), lam0, ts, None, cfg)
    b, rb, _ = solve(CETauField(3, True), lam0, ts, None, cfg, clock="loglog")
    c, rc, _ = solve(CETauField(3, True), lam0, jnp.log1p(ts), None, cfg, clock="loglog", grid="tau")
    np.testing.assert_allclose(b, a, rtol=1e-7, atol=1e-12)
    np.testing.assert_allclose(c, a, rtol=1e-7, atol=1e-12)
    # continuing from a saved state equals one run
    d, _, _ = solve(
        CETauField(3, True),
        b[2],
        jnp.log1p(ts[3:]),
        None,
        cfg,
        clock="loglog",
        grid="tau",
        start=jnp.log1p(ts[2]),
    )
    np.testing.assert_allclose(d[0], a[3], rtol=1e-7)


def test_reaches_t_exp_1e4_without_overflow():
    lam0 = jnp.asarray([0.0, 1e-2, 9e-3, 5e-3])
    cfg = Solver(rtol=1e-6, atol=1e-9, max_steps=100_000)
    ys, res, _ = solve(
        CETauField(4, True), lam0, jnp.asarray([0.0, 1e2, 1e4]), None, cfg, clock="loglog", grid="tau"
    )
    assert int(res._value) == 0 and np.all(np.isfinite(np.asarray(ys)))
    # late phase: the smallest margin grows like log t = tau (up to O(log tau))
    m = np.asarray(svflow.margins(ys[-1]))[1:]
    assert abs(m.min() / 1e4 - 1.0) < 0.01


# --- K = 4 lag family: the separatrix route


def _late_ratio(eps, delta, N, tau_a=30.0):
    """lambda_3 / lambda_1 at tau_a for lambda(0) = eps (0, 1, 1, 1 - delta) (scipy LSODA)."""

    def f(tau, y):
        m = np.array([(y[0] + y[2]) / 2, (y[1] + y[2]) / 2, (y[0] + y[1]) / 2])
        lse = np.logaddexp(0.0, np.logaddexp.reduce(-m))
        e = np.exp(tau - m - lse)
        r = 2 * np.array([e[0] + e[2], e[1] + e[2], e[0] + e[1]])  # (1+t)(1-mu_i)
        return (N / 4) * r * y ** (2 - 2 / N)

    sol = solve_ivp(f, (0, tau_a), eps * np.array([1, 1, 1 - delta]), method="LSODA", rtol=1e-10, atol=1e-14)
    return sol.y[2, -1] / sol.y[0, -1]


def _separatrix_edge(eps, N):
    qs = 2.0 ** (-N / (N - 2))
    lo, hi = 0.0, 0.99
    for _ in range(25):
        mid = 0.5 * (lo + hi)
        lo, hi = (mid, hi) if _late_ratio(eps, mid, N) > qs else (lo, mid)
    return 0.5 * (lo + hi)


def _check_edge(N, eps):
    edge = _separatrix_edge(eps, N)
    f = np.array([0.9, 0.95, 0.97, 1.03, 1.05, 1.1])
    ds = svflow.studies.basin_map(4, [N - 1], [eps], edge * f)
    oc = ds["outcome"].values.ravel()
    # NC at 0.9 x the edge, the square at 1.1 x; closer in: right or undecided, never wrong
    assert oc[0] == 0 and oc[-1] == 2
    assert np.all(np.isin(oc[1:3], (0, -1))) and np.all(np.isin(oc[3:5], (2, -1)))
    w = float(svflow.studies.basin_width(ds)["width"].values.ravel()[0])
    # within 5 % of the separatrix for every N (N = 3 leaves the saddle slowest, rate
    # (1 - 2/N) per unit of sigma: there the start at 0.97 x the edge may stay undecided)
    assert abs(w / edge - 1) <= 0.05 + 1e-9


def test_k4_outcome_either_side_of_separatrix():
    """NC at 0.9 x the separatrix edge, the square (rank 2) at 1.1 x (N = 4, eps = 0.1)."""
    edge = _separatrix_edge(0.1, 4)
    lam0 = 0.1 * np.array([[0.0, 1.0, 1.0, 1 - f * edge] for f in (0.9, 1.1)])
    ds = svflow.outcome(4, 3, init=lam0, batch_dims="start")
    np.testing.assert_array_equal(ds["outcome"].values, [0, 2])
    np.testing.assert_allclose(ds["limit"].values, [[0, 1, 1, 1], [0, 1, 1, 0]], atol=1e-9)


@pytest.mark.slow
@pytest.mark.parametrize("N,eps", [(3, 0.1), (3, 0.5), (4, 0.1), (4, 0.5), (5, 0.1), (6, 0.1), (5, 0.01)])
def test_k4_basin_edge_matches_separatrix_more(N, eps):
    _check_edge(N, eps)


# --- decisions survive ten times more tau


def _random_starts(K, B, seed):
    rng = np.random.default_rng(seed)
    eps = 10 ** rng.uniform(-3, -1, B)
    d = rng.uniform(0, 0.9, B)
    return np.asarray(
        jax.vmap(lambda e, dd, s: basin_start("random", K, e, dd, s))(
            jnp.asarray(eps), jnp.asarray(d), jnp.arange(B) + 1000 * seed
        )
    )


def _continue_ten_times(K, depth, B, seed, horizons=(1e2, 1e3)):
    ds = svflow.outcome(
        K, depth, init=_random_starts(K, B, seed), batch_dims="start", horizons=horizons, kkt=False
    )
    oc = ds["outcome"].values
    dec = np.flatnonzero(oc >= 0)
    assert dec.size >= 0.5 * B
    cfg = Solver(rtol=1e-6, atol=1e-9, max_steps=100_000)
    tau = ds["log_t_end"].values[dec]
    for t in np.unique(tau):
        idx = dec[tau == t]
        _, res, _, d = _stage(
            ds["lam_end"].values[idx],
            tau[tau == t],
            [10 * t],
            factors=depth + 1,
            balanced=True,
            config=cfg,
            criterion=Criterion(),
            group=svflow.Walsh(ds.sizes["mode"]),
        )
        assert np.all(np.asarray(res) == 0)
        d = {k: v[0] for k, v in d.items()}
        sup0 = ds["support"].values[idx]
        # no decided outcome changes: no support mode becomes frozen, every frozen
        # mode stays frozen, and a start decided again has the same support
        frozen1 = np.asarray(d["frozen"])
        assert not np.any(frozen1[sup0]), "a support mode became frozen"
        assert np.all(frozen1[~sup0 & (np.arange(K) > 0)]), "a frozen mode came back"
        again = np.asarray(d["decided"])
        np.testing.assert_array_equal(np.asarray(d["support"])[again], sup0[again])


@pytest.mark.slow
def test_decisions_hold_ten_times_further():
    _continue_ten_times(8, 3, 16, 0)


@pytest.mark.slow
@pytest.mark.parametrize("depth", [2, 3, 4])
def test_decisions_hold_ten_times_further_200(depth):
    _continue_ten_times(8, depth, 67, depth)


# --- limits and the KKT solver


def test_kkt_repro_late_state():
    """A late K = 4, depth-4 state whose smallest mode is tiny (SLSQP used to return NaN)."""
    lam = np.array([0.0, 0.2649, 49.3604, 49.3604])
    for p in (svflow.max_margin_direction(lam, 4), svflow.studies.kkt_point(lam, 4)):
        assert p.converged and p.kkt_residual < 1e-10
        # closed form: support {2, 3}, equal, scaled to min margin 1: lambda = (0, 0, 2, 2)
        np.testing.assert_allclose(p.lam, [0.0, 0.0, 2.0, 2.0], atol=1e-9)
    # the full trajectory from the start ends on the same support
    lam0 = np.array([0, 0.00818865556354166, 0.01134757464976566, 0.01073766059029507])
    ds = svflow.outcome(4, 4, init=lam0)
    assert int(ds["outcome"]) == 2
    np.testing.assert_array_equal(ds["support"].values, [False, False, True, True])
    assert float(ds["kkt_residual"]) < 1e-10


def test_unequal_limit_has_support_four():
    """Limit (1, .5, .5, .5) on four modes: support 4, not a 0.5 threshold."""
    K, depth = 8, 2
    target = np.array([0.0, 0.0, 0.5, 0.0, 0.5, 1.0, 0.5, 0.0])
    # independent route: the target is a KKT point of the max-margin problem
    res, _, _, sup = kkt_residual(target, depth + 1)
    assert res < 1e-12 and sup.sum() == 4
    rng = np.random.default_rng(3)
    lam0 = 1e-2 * (target + 0.05 * rng.uniform(size=(4, K)) * (target > 0) + 1e-3)
    ds = svflow.outcome(K, depth, init=lam0, batch_dims="start")
    np.testing.assert_array_equal(ds["outcome"].values, 4)
    np.testing.assert_array_equal(ds["support"].values, np.broadcast_to(target > 0, (4, K)))
    np.testing.assert_allclose(ds["limit"].values, np.broadcast_to(target, (4, K)), atol=1e-8)
    assert float(ds["kkt_residual"].max()) < 1e-10


def test_outcome_rejects_bad_input():
    lam0 = np.array([0.0, 1e-2, 1e-2, 1e-2])
    with pytest.raises(ValueError, match="classes"):
        svflow.outcome(1, 2, init=lam0[:1])
    with pytest.raises(ValueError, match="walsh"):
        svflow.outcome(6, 2, init=np.full(6, 1e-2), group="walsh")
    with pytest.raises(ValueError, match="depth"):
        svflow.outcome(4, 0, init=lam0)
    with pytest.raises(ValueError, match="init"):
        svflow.outcome(4, 2, init=np.ones(8))
    with pytest.raises(ValueError, match="horizons"):
        svflow.outcome(4, 2, init=lam0, horizons=(1e3, 1e2))
    with pytest.raises(ValueError, match="frozen_rate"):
        Criterion(frozen_rate=0.99)


def test_simulate_log_t_end_matches_t_end():
    lam0 = np.array([0.0, 1e-2, 9e-3, 6e-3])
    a = svflow.simulate(4, 2, init=lam0, t_end=1e8, num_times=5, solver=svflow.Solver(rtol=1e-10, atol=1e-13))
    b = svflow.simulate(
        4,
        2,
        init=lam0,
        log_t_end=float(np.log1p(1e8)),
        num_times=5,
        solver=svflow.Solver(rtol=1e-10, atol=1e-13),
    )
    np.testing.assert_allclose(b["lam"].values[-1], a["lam"].values[-1], rtol=1e-7)
    np.testing.assert_allclose(b["log_t"].values, np.log1p(b["time"].values))
    far = svflow.simulate(4, 2, init=lam0, log_t_end=1e3, num_times=5)
    assert np.isinf(far["time"].values[-1]) and far["log_t"].values[-1] == 1e3
    assert np.all(np.isfinite(far["lam"].values))
    with pytest.raises(ValueError, match="log_t_end"):
        svflow.simulate(4, 2, init=lam0, loss="squared", log_t_end=10.0)


def test_outcome_over_cyclic_group():
    """Z_6: depth 1 (N = 2) reaches NC; depth 5 from a start led by the frequency-1 pair
    ends on that pair (the hexagon, rank 2) with equal values (pairs share one eigenvalue)."""
    lam0 = 1e-2 * np.array([0.0, 1.0, 1.0, 0.1, 0.1, 0.1])
    nc = svflow.outcome(6, 1, init=lam0)
    assert int(nc["outcome"]) == 0 and nc.attrs["group"] == "cyclic"
    hexagon = svflow.outcome(6, 5, init=lam0)
    assert int(hexagon["outcome"]) == 2
    np.testing.assert_array_equal(hexagon["support"].values, [False, True, True, False, False, False])
    np.testing.assert_allclose(hexagon["limit"].values, [0, 1, 1, 0, 0, 0], atol=1e-6)
    # the same start through simulate's start handling: a Start object works too
    start = svflow.spectral_init(6, 5, scale=1e-2, spread=0.0, seed=0)
    assert int(svflow.outcome(6, 5, init=start)["outcome"]) == 0  # equal modes: the NC start


@pytest.mark.slow
def test_start_passing_a_saddle_is_decided_on_the_exact_flows_side():
    """K = 8, L = 3: a random start whose exact flow passes close to the fixed point
    (q, q, q, 1, 1, 1, 1) of the limit flow. From hand-offs at tau = 10 and 30 the limit
    map puts it at support {4, 5, 6, 7} (both alike, so persistence cannot object); the
    exact flow, integrated here by scipy's LSODA in sigma = log(1 + tau), keeps modes 1-3
    growing with the largest (their ratio rises from tau = 300 to 3000 instead of falling
    like 1/tau): the support is all 7 modes, which svflow.outcome reports."""
    from test_limit_flow import _exact_sigma_rate

    lam0 = np.array([0.0, 2.6169871709797e-3, 2.58906923416177e-3, 2.7037199227585e-3])
    lam0 = np.concatenate([lam0, [2.70785281103656e-3, 2.71540542433323e-3, 2.63955506197016e-3]])
    lam0 = np.concatenate([lam0, [2.70361471455246e-3]])
    ds = svflow.outcome(8, 3, init=lam0, kkt=False)
    assert int(ds["outcome"]) == 0 and ds["support"].values[1:].all()
    sol = solve_ivp(
        _exact_sigma_rate(8, 4),
        (0.0, np.log1p(3000.0)),
        lam0,
        method="LSODA",
        t_eval=np.log1p([300.0, 3000.0]),
        rtol=1e-10,
        atol=1e-14,
    )
    r = sol.y[1:4] / sol.y.max(axis=0)  # modes 1-3 over the largest, at tau = 300 and 3000
    assert np.all(r[:, 1] > r[:, 0]) and np.all(r[:, 0] > 0.5)


def test_outcome_continues_a_simulate_run_like_a_fresh_start():
    """outcome(init=simulate dataset) continues each run from its last state and tau; the
    independent route is the same starts resolved from t = 0: same decisions, same limits."""
    K, L = 4, 2
    lam0 = np.stack([np.asarray(basin_start("random", K, 1e-2, 0.9, s)) for s in range(4)])
    hz = (30.0, 100.0, 300.0)
    fresh = svflow.outcome(K, L, init=lam0, batch_dims="start", horizons=hz)
    run = svflow.simulate(K, L, init=lam0, batch_dims="start", t_end=1e6, num_times=3)
    cont = svflow.outcome(K, L, init=run, horizons=hz)
    assert cont["outcome"].dims == ("start",) and (cont["outcome"].values >= 0).all()
    np.testing.assert_array_equal(cont["outcome"].values, fresh["outcome"].values)
    np.testing.assert_array_equal(cont["support"].values, fresh["support"].values)
    np.testing.assert_array_equal(cont["log_t_end"].values, fresh["log_t_end"].values)
    np.testing.assert_allclose(cont["limit"].values, fresh["limit"].values, rtol=1e-6, atol=1e-9)
    # the continuation integrates only from tau = log(1 + 1e6), not again from t = 0
    assert (cont["num_steps"].values < fresh["num_steps"].values).all()
    assert "continued at tau" in cont.attrs["init"]


@pytest.mark.slow
def test_outcome_continues_an_unbalanced_simulate_run():
    """Unbalanced factors s(0): the factor flow is continued; same decision as from t = 0."""
    K, L, hz = 4, 2, (30.0, 100.0, 300.0)
    lam0 = np.asarray(basin_start("random", K, 1e-2, 0.9, 1))
    s0 = np.abs(np.stack([lam0 ** (1 / (L + 1)) * (1 + 0.1 * k) for k in range(L + 1)]))
    s0[:, 0] = 0.0
    one = svflow.simulate(K, L, init=s0, t_end=1e4, num_times=2)
    a = svflow.outcome(K, L, init=one, horizons=hz)
    b = svflow.outcome(K, L, init=s0, horizons=hz)
    assert int(a["outcome"]) == int(b["outcome"]) >= 0
    np.testing.assert_array_equal(a["support"].values, b["support"].values)
    np.testing.assert_allclose(a["limit"].values, b["limit"].values, rtol=1e-6, atol=1e-9)


def test_outcome_refuses_runs_it_cannot_continue():
    lam0 = np.asarray(basin_start("lag", 4, 1e-2, 0.3))
    sq = svflow.simulate(4, 2, init=lam0, loss="squared", t_end=10.0, num_times=2)
    with pytest.raises(ValueError, match="cross-entropy runs without weight decay"):
        svflow.outcome(4, 2, init=sq)
    ce = svflow.simulate(4, 2, init=lam0, t_end=10.0, num_times=2)
    with pytest.raises(ValueError, match="depth=2"):
        svflow.outcome(4, 3, init=ce)
    with pytest.raises(ValueError, match="beyond the last horizon"):
        svflow.outcome(4, 2, init=ce, horizons=(1.0, 2.0))
    with pytest.raises(TypeError, match=r"solver=svflow.Solver\(rtol=1e-05\)"):
        svflow.outcome(4, 2, init=ce, rtol=1e-5)
    with pytest.raises(TypeError, match=wrong_type("solver must be an svflow.Solver", "solver")):
        svflow.outcome(4, 2, init=ce, solver="tsit5")
