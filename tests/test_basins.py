"""Basin maps (certified outcomes), the finite-horizon classifier and early-time repulsion."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import xarray as xr

import svflow
from svflow._analysis.classify import (
    CARRYING,
    FROZEN,
    MOVING,
    NC,
    UNDECIDED,
    OutcomeRule,
    classify_trajectory,
)
from svflow._integrate import Solver
from svflow._walsh import one_minus_mu
from svflow.studies._basins import basin_cells, basin_start, basin_width
from svflow.studies._repulsion import log_ratio_rate, one_minus_mu_series, repulsion

RULE = OutcomeRule()
_classify = jax.jit(classify_trajectory, static_argnums=2)


# --- classifier on closed-form trajectories (no ODE involved)


def _synthetic(times, profiles):
    """lambda(t) with lambda_0 = 0 and given per-mode profiles (callables of t)."""
    lam = np.zeros((times.size, len(profiles) + 1))
    for i, f in enumerate(profiles, start=1):
        lam[:, i] = f(times)
    return lam


def test_classifier_closed_forms():
    t = svflow.log_times(1e8, 161)
    L = lambda t: 1.0 + np.log1p(t)  # noqa: E731  margins grow like log t
    # NC: three modes growing together, ratios tending to 1 like 1/log t
    nc = _synthetic(t, [L, L, lambda t: L(t) - 1.0])
    # rank 2 (K = 4): two modes grow, one frozen at a constant
    r2 = _synthetic(t, [L, L, lambda t: 0.3 + 0 * t])
    # a mode whose ratio crosses 1/2 at t = 1e9 (logistic in log10 t): still moving
    mv = _synthetic(
        t,
        [L, L, lambda t: L(t) / (1 + np.exp(-(np.log10(np.maximum(t, 1e-300)) - 9.0)))],
    )
    out = [_classify(jnp.asarray(t), jnp.asarray(x), RULE) for x in (nc, r2, mv)]
    assert [int(o.code) for o in out] == [NC, 2, UNDECIDED]
    assert list(np.asarray(out[1].state[1:])) == [CARRYING, CARRYING, FROZEN]
    assert int(np.asarray(out[2].state[3])) == MOVING
    # before the plateau ends nothing is decided: a flat small start has not escaped
    flat = _synthetic(t, [lambda t: 1e-3 + 0 * t] * 3)
    assert int(_classify(jnp.asarray(t), jnp.asarray(flat), RULE).code) == UNDECIDED


def test_escape_time_closed_form():
    # K = 4, equal modes: every margin m_k = (2/K) * 2 lam = lam,
    # loss = log(1 + 3 exp(-lam));
    # it halves (log 4 -> log 2) at lam = log 3, i.e. at t = 2 on lam = log(1 + t)
    t = svflow.log_times(1e4, 161)
    lam = _synthetic(t, [lambda t: np.log1p(t)] * 3)
    expected = 2.0
    got = float(_classify(jnp.asarray(t), jnp.asarray(lam), RULE).escape_time)
    assert got == pytest.approx(expected, rel=1e-2)


def test_classify_dataset_with_extra_dim():
    t = svflow.log_times(1e8, 161)
    L = lambda t: 1.0 + np.log1p(t)  # noqa: E731
    runs = np.stack([_synthetic(t, [L, L, L]), _synthetic(t, [L, L, lambda t: 0.2 + 0 * t])])
    ds = xr.Dataset(
        {"lam": (("run", "time", "mode"), runs)},
        coords={"time": t, "mode": np.arange(4), "run": [10, 11]},
        attrs={"loss_name": "ce"},
    )
    c = svflow.studies.classify(ds)
    assert c["outcome"].dims == ("run",)
    assert list(c["outcome"].values) == [NC, 2]
    assert c["mode_state"].dims == ("run", "mode")


def test_basin_width_closed_form():
    oc = np.array([[0, 0, 2, 0], [0, 0, 0, 0], [-1, 0, 0, 0], [0, -1, 2, 2]])
    ds = xr.Dataset(
        {"outcome": (("eps", "delta"), oc)},
        coords={"eps": [1, 2, 3, 4], "delta": [0.0, 0.1, 0.2, 0.3]},
    )
    w = basin_width(ds)
    np.testing.assert_array_equal(w["width"].values, [0.1, 0.3, np.nan, 0.0])
    np.testing.assert_array_equal(w["edge_outcome"].values, [2, -2, -1, -1])


# --- basin maps


def test_two_factors_reach_nc_everywhere():
    """N = 2 (depth 1): every Hadamard start converges to NC (2512.04006)."""
    eps = np.array([1e-3, 1e-2, 1e-1])
    lag = svflow.studies.basin_map(8, [1], eps, [0.0, 0.2, 0.5, 0.7])
    rnd = svflow.studies.basin_map(8, [1], eps, [0.3, 0.6], family="random", seeds=[0, 1, 2])
    for ds in (lag, rnd):
        assert np.all(ds["outcome"].values == NC)
        # independent of the classifier: the final direction is close to equal modes
        lam = ds["lam_end"].values[..., 1:]
        assert np.all(lam.min(-1) / lam.max(-1) > 0.8)


def test_batch_equals_single_runs():
    """basin_cells (double-log clock, refill batch engine) = simulate in plain log time to t = e^20."""
    cfg = Solver(rtol=1e-9, atol=1e-12, max_steps=100_000)
    eps = np.asarray([1e-3, 1e-2, 1e-1])
    delta = np.asarray([0.1, 0.4, 0.6])
    seed = np.asarray([0, 1, 2])
    for family in ("lag",):
        out = basin_cells(eps, delta, seed, classes=4, depth=2, horizons=(20.0,), family=family, solver=cfg)
        np.testing.assert_array_equal(out["log_t_end"], 20.0)
        for b in range(3):
            lam0 = np.asarray(basin_start(family, 4, eps[b], delta[b], seed[b]))
            np.testing.assert_allclose(out["lam0"][b], lam0, rtol=1e-15)
            ds = svflow.simulate(
                4, 2, init=lam0, times=[0.0, np.expm1(20.0)], solver=svflow.Solver(rtol=1e-9, atol=1e-12)
            )
            np.testing.assert_allclose(out["lam_end"][b], ds["lam"].values[-1], rtol=1e-6, atol=1e-9)
    # the random family draws u in [1 - delta, 1 + delta]
    u = np.asarray(basin_start("random", 64, 1.0, 0.25, 7))[1:]
    assert u.min() >= 0.75 and u.max() <= 1.25 and u.std() > 0.1


def test_classifier_never_calls_moving_trajectory_decided():
    """Cut long runs at every save; a decided cut must not be contradicted later.

    "Decided" promises that no ratio crosses the threshold during the next
    ``horizon`` decades; the continued run (independent evidence) checks it.
    """
    K, t_long = 8, 1e8
    t = svflow.log_times(t_long, 161)
    theta, H = RULE.threshold, RULE.horizon
    cut = jax.jit(
        jax.vmap(
            lambda lam, i: classify_trajectory(jnp.asarray(t), lam, RULE, end=i),
            (None, 0),
        )
    )
    cases = [(4, 1e-2, 0.1), (2, 1e-2, 0.2), (1, 1e-1, 0.9)]
    lam0 = jnp.stack([basin_start("lag", K, e, g) for _, e, g in cases])
    n_undecided_moving = n_decided = 0
    for (depth, eps, lag), l0 in zip(cases, lam0):
        lam = svflow.simulate(
            K, depth, init=np.asarray(l0), times=t, solver=svflow.Solver(rtol=1e-8, atol=1e-10)
        )["lam"].values
        q = np.abs(lam[:, 1:]) / np.abs(lam[:, 1:]).max(-1, keepdims=True)
        ends = np.arange(20, t.size)
        out = cut(jnp.asarray(lam), jnp.asarray(ends))
        for n, i in enumerate(ends):
            ahead = (t >= t[i]) & (t <= t[i] * 10**H)
            side = q[ahead] >= theta
            crosses = bool(np.any(side != side[0]))
            if bool(out.decided[n]):
                n_decided += 1
                assert not crosses, (depth, eps, lag, t[i])
                # the rank it reports is the number of modes on the carrying side
                assert int(out.rank[n]) == int(side[0].sum())
            elif crosses:
                n_undecided_moving += 1
        # a deep run (N = 5) cut right at its escape: the lagging ratios still halve
        # within the next decade, so the cut must be undecided
        if (depth, eps, lag) == (4, 1e-2, 0.1):
            esc = float(classify_trajectory(jnp.asarray(t), jnp.asarray(lam), RULE).escape_time)
            i = int(np.searchsorted(t, esc))
            j = int(np.searchsorted(t, 10 * t[i]))
            assert np.max(np.abs(np.log(q[j] / q[i]))) > 0.5
            assert int(out.code[i - ends[0]]) == UNDECIDED
            assert (
                int(classify_trajectory(jnp.asarray(t[: i + 1]), jnp.asarray(lam[: i + 1]), RULE).code)
                == UNDECIDED
            )
    assert n_undecided_moving > 0 and n_decided > 0


# --- early-time repulsion


def test_mu_series_is_second_order():
    """The small-lambda expansion of mu against the exact softmax: error O(lam^3)."""
    rng = np.random.default_rng(3)
    u = rng.uniform(0.5, 1.5, 8)
    u[0] = 0.0
    errs = []
    for s in (1e-2, 2e-2):
        lam = jnp.asarray(s * u)
        errs.append(float(jnp.max(jnp.abs(one_minus_mu(lam) - one_minus_mu_series(lam, 2)))))
    assert errs[1] / errs[0] == pytest.approx(8.0, rel=0.05)


def test_repulsion_matches_second_order_prediction():
    ds = repulsion(8, [1, 2], eps=1e-3, lag=0.5, lam_cap=2e-2, num_times=101)
    for depth in (1, 2):
        x = ds.sel(depth=depth)
        small = x["lam_j"].values < 1e-2
        meas, pred = x["measured"].values[small], x["order2"].values[small]
        np.testing.assert_allclose(meas, pred, rtol=1e-4)
        sign = -1 if depth == 1 else 1  # N = 2 attraction, N = 3 repulsion
        assert np.all(np.sign(meas) == sign)
    # N = 2: the leading order vanishes; the first-order law is -(2/K^2)(lam_j - lam_k)
    x = ds.sel(depth=1)
    np.testing.assert_allclose(x["order0"].values, 0.0, atol=1e-15)
    np.testing.assert_allclose(x["order1"].values, -(2 / 64) * (x["lam_j"] - x["lam_k"]).values, rtol=1e-10)
    # the exact field and the series agree ever better as lambda -> 0
    lam = jnp.asarray(basin_start("lag", 8, 1e-4, 0.5))
    assert float(log_ratio_rate(lam, 4, 1, 3)) == pytest.approx(
        float(log_ratio_rate(lam, 4, 1, 3, order=2)), rel=1e-8
    )
