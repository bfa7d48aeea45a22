"""The compiled CPU backend of the batch engine (svflow._cpu.tsit5) against the JAX engine.

One method, two backends: on the same starts both take the same step attempts
and give the same saved states up to rounding; the kernel's end state also
meets an independent tight reference (scipy's DOP853 at rtol 1e-12 on the
balanced law written out here in numpy).
"""

import dataclasses

import jax.numpy as jnp
import numpy as np
import pytest

import svflow
from svflow._batch import solve_batch
from svflow._groups import resolve_group
from svflow._integrate import MAX_STEPS, IntegrationError, Solver, check_solution, log_times
from svflow._simulate import ReducedField

from helpers import walsh_ce_tau_law

CFG = Solver(rtol=1e-10, atol=1e-8)  # the u-variable run's tolerances (rtol + atol |u|), as simulate sets


def _starts(B, K, seed, group):
    """Positive balanced starts of the basin "random" family (pairs of a cyclic frame tied)."""
    rng = np.random.default_rng(seed)
    eps = 10 ** rng.uniform(-3, -1, B)
    delta = rng.uniform(0.1, 0.9, B)
    lam = eps[:, None] * (1 - delta[:, None] + 2 * delta[:, None] * rng.uniform(size=(B, K)))
    lam = 0.5 * (lam + lam[:, np.asarray(group.partner)])
    lam[:, 0] = 0.0
    return lam


def _both(field, u0, ts, cfg=CFG):
    a = solve_batch(field, u0, ts, dataclasses.replace(cfg, backend="numba"), lanes=4)
    b = solve_batch(field, u0, ts, dataclasses.replace(cfg, backend="jax"), lanes=4)
    assert (a.backend, b.backend) == ("numba", "jax")
    return a, b


@pytest.mark.parametrize(
    "K, depth, group, wd",
    [(8, 3, "walsh", 0.0), (6, 2, "cyclic", 0.0), (8, 3, "walsh", 1e-3)],
)
def test_numba_and_jax_engines_take_the_same_steps(K, depth, group, wd):
    grp = resolve_group(group, K)
    lam0 = _starts(9, K, 3, grp)  # 9 starts through 4 lanes: every lane refills
    u0 = np.log(np.where(np.arange(K) == 0, 1.0, lam0))
    field = ReducedField(jnp.asarray(wd), "ce", depth + 1, True, group=grp, variable="log")
    ts = log_times(1e6 if wd == 0 else 1e4, 9)
    a, b = _both(field, u0, ts)
    assert np.all(a.result == 0) and np.all(b.result == 0)
    np.testing.assert_array_equal(a.num_steps, b.num_steps)
    assert np.all(a.num_steps > 50)
    # the saved states, in lambda = exp(u) (mode 0 is a placeholder)
    la, lb = np.exp(a.ys[:, :, 1:]), np.exp(b.ys[:, :, 1:])
    np.testing.assert_allclose(la, lb, rtol=1e-10, atol=0)
    np.testing.assert_array_equal(a.ys[:, 0], u0)  # the first save is the start itself


def test_numba_kernel_against_dop853():
    # final lambda of the kernel within its tolerance of DOP853 (rtol 1e-12) on the balanced law
    # in lambda, written here: an independent route (other variable, other method, numpy)
    from scipy.integrate import solve_ivp

    K, depth, t_end = 8, 3, 1e8
    N = depth + 1
    lam0 = _starts(4, K, 7, svflow.Walsh(K))
    ds = svflow.simulate(
        K, depth, init=lam0, batch_dims="start", t_end=t_end, num_times=2, solver=Solver(backend="numba")
    )
    assert ds.attrs["log_variable_starts"] == 4 and ds.attrs["batch_backend"] == "numba"
    law = walsh_ce_tau_law(K, N)

    for b in range(4):
        ref = solve_ivp(law, (0, np.log1p(t_end)), lam0[b], method="DOP853", rtol=1e-12, atol=1e-15).y[:, -1]
        err = np.abs(ds["lam"].values[b, -1] - ref).max() / np.abs(ref).max()
        assert err < 1e-7, (b, err)


def test_backend_choice_and_coverage():
    K = 8
    lam0 = _starts(3, K, 1, svflow.Walsh(K))
    u0 = np.log(np.where(np.arange(K) == 0, 1.0, lam0))
    ts = log_times(1e4, 3)
    log_field = ReducedField(jnp.asarray(0.0), "ce", 4, True, variable="log")
    assert solve_batch(log_field, u0, ts, CFG).backend == "numba"  # auto, on a CPU
    # the kernel covers the u-variable law with Tsit5 only: forcing it elsewhere says so
    with pytest.raises(ValueError, match=r"backend='numba'\) covers"):
        solve_batch(ReducedField(jnp.asarray(0.0), "ce", 4, True), lam0, ts, Solver(backend="numba"))
    with pytest.raises(ValueError, match=r"backend='numba'\) covers"):
        solve_batch(log_field, u0, ts, Solver(method="dopri5", backend="numba"))
    assert solve_batch(log_field, u0, ts, Solver(method="dopri5")).backend == "jax"  # auto falls back
    with pytest.raises(ValueError, match="backend must be one of"):
        Solver(backend="cuda")
    assert Solver(backend="jax").as_attrs()["backend"] == "jax" and "backend" not in Solver().as_attrs()


def test_numba_max_steps_reports_like_jax():
    # a run cut by max_steps carries diffrax's code, so check_solution explains it as for JAX
    K = 8
    lam0 = _starts(3, K, 2, svflow.Walsh(K))
    u0 = np.log(np.where(np.arange(K) == 0, 1.0, lam0))
    field = ReducedField(jnp.asarray(0.0), "ce", 4, True, variable="log")
    cfg = dataclasses.replace(CFG, max_steps=20, backend="numba")
    a = solve_batch(field, u0, log_times(1e8, 3), cfg)
    assert np.all(a.result == MAX_STEPS)  # the JAX engine's code (svflow._integrate.MAX_STEPS)
    np.testing.assert_array_equal(a.num_steps, 20)
    with pytest.raises(IntegrationError, match="max_steps = 20"):
        check_solution(a.ys, a.result, a.num_steps, CFG, 1e8)


# --- the double-log clock of outcome / basin_map (clock "loglog": lambda in sigma = log(1 + tau))
OUTCOME_CFG = Solver(rtol=1e-6, atol=1e-9, max_steps=100_000, lanes=4)  # svflow.outcome's default, 4 lanes


@pytest.mark.parametrize("K, depth, group", [(8, 3, "walsh"), (6, 2, "cyclic")])
def test_outcome_numba_and_jax_take_the_same_steps(K, depth, group):
    from svflow._outcome import advance_batch

    grp = resolve_group(group, K)
    lam0 = _starts(9, K, 3, grp)  # 9 starts through 4 lanes: every lane refills
    run = {}
    for backend in ("numba", "jax"):
        cfg = dataclasses.replace(OUTCOME_CFG, backend=backend)
        ds = svflow.outcome(K, depth, init=lam0, batch_dims="start", group=group, solver=cfg)
        ys, res, steps = advance_batch(
            lam0, 0.0, [30.0, 100.0], factors=depth + 1, balanced=True, config=cfg, group=grp
        )
        run[backend] = ds, ys, res, steps
    (a, ya, ra, sa), (b, yb, rb, sb) = run["numba"], run["jax"]
    # the exact runs: same step attempts, states at both horizons equal up to rounding
    assert np.all(ra == 0) and np.all(rb == 0) and np.all(sa > 50)
    np.testing.assert_array_equal(sa, sb)
    np.testing.assert_allclose(ya[..., 1:], yb[..., 1:], rtol=1e-10, atol=0)
    # the whole outcome: same decisions, same steps, same end states
    assert np.all(a["outcome"].values >= 0)  # every start decided (a non-trivial comparison)
    np.testing.assert_array_equal(a["outcome"].values, b["outcome"].values)
    np.testing.assert_array_equal(a["support"].values, b["support"].values)
    np.testing.assert_array_equal(a["num_steps"].values, b["num_steps"].values)
    np.testing.assert_array_equal(a["log_t_end"].values, b["log_t_end"].values)
    np.testing.assert_allclose(a["lam_end"].values[:, 1:], b["lam_end"].values[:, 1:], rtol=1e-10, atol=0)


def test_loglog_kernel_against_dop853():
    # lambda at tau = 30 from the kernel on the double-log clock within its tolerance of DOP853
    # (rtol 1e-12) on the balanced law in tau, written here in numpy: other clock, method, code
    from scipy.integrate import solve_ivp

    from svflow._outcome import advance_batch

    K, depth, tau_end = 8, 3, 30.0
    N = depth + 1
    grp = svflow.Walsh(K)
    lam0 = _starts(3, K, 5, grp)
    cfg = Solver(rtol=1e-10, atol=1e-12, backend="numba")
    ys, res, _ = advance_batch(lam0, 0.0, tau_end, factors=N, balanced=True, config=cfg, group=grp)
    assert np.all(res == 0)
    law = walsh_ce_tau_law(K, N)

    for b in range(3):
        ref = solve_ivp(law, (0, tau_end), lam0[b], method="DOP853", rtol=1e-12, atol=1e-15).y[:, -1]
        err = np.abs(ys[0, b] - ref).max() / np.abs(ref).max()
        assert err < 1e-8, (b, err)


def test_loglog_backend_choice():
    from svflow._batch import _DoubleLogField, solve_routed
    from svflow._fields import CETauField

    K = 8
    grp = svflow.Walsh(K)
    lam0 = _starts(3, K, 1, grp)
    saves = np.log1p([0.0, 10.0])
    sol = solve_routed(_DoubleLogField(CETauField(4, True, grp)), lam0, saves, Solver())
    assert sol.backend == "numba"  # auto, on a CPU
    # the factor form is not in the kernel: auto runs JAX, backend='numba' says what it covers
    s0 = np.repeat(lam0[:, None, :] ** 0.25, 4, axis=1) + 0.1
    factor_field = _DoubleLogField(CETauField(4, False, grp))
    assert solve_routed(factor_field, s0, saves, Solver()).backend == "jax"
    with pytest.raises(ValueError, match=r"backend='numba'\) covers"):
        solve_routed(factor_field, s0, saves, Solver(backend="numba"))


# --- the limit map of outcome / basin_map (svflow._cpu.limit against _outcome._limit_batch in XLA)
LIMIT_FIELDS = ("code", "decided", "support", "frozen", "late")


def _limit_states(K, depth, group, seed=7):
    """Exact end states at tau = 30 and 100 of random starts, and hand-made ones: the NC state,
    a state with zero modes (the generator modes only), a near-tie of the NC state, a state that
    is not late (it runs the dummy) and a non-finite one."""
    from svflow._outcome import advance_batch

    grp = resolve_group(group, K)
    lam0 = _starts(6, K, seed, grp)
    cfg = Solver(rtol=1e-6, atol=1e-9, max_steps=100_000, backend="numba")
    ys, res, _ = advance_batch(
        lam0, 0.0, [30.0, 100.0], factors=depth + 1, balanced=True, config=cfg, group=grp
    )
    assert np.all(res == 0)
    nc = np.full(K, 60.0)
    gen = np.zeros(K)
    gen[list(grp.generator_modes())] = 400.0
    tie = nc.copy()
    tie[1] *= 1 + 1e-12
    nan = nc.copy()
    nan[2] = np.nan
    made = np.stack([nc, gen, tie, np.full(K, 1e-3), nan])
    made[:, 0] = 0.0
    return np.concatenate([ys.reshape(-1, K), made]), grp


# Every QP of the limit map is solved afresh per active-set iteration (Cholesky), so both
# backends follow the same path up to rounding, also on the rank-deficient G of states whose
# frozen modes have decayed to exact zeros (benchmarks/RESULTS.md, 13.3).
@pytest.mark.parametrize(
    "K, depth, group, seed",
    [(8, 2, "walsh", 1), (8, 5, "walsh", 7), (16, 5, "walsh", 0), (6, 2, "cyclic", 7), (6, 5, "cyclic", 7)],
)
def test_limit_map_numba_and_jax_agree(K, depth, group, seed):
    from svflow._outcome import Criterion, _limit_batch, _limit_batch_cpu, _padded

    y, grp = _limit_states(K, depth, group, seed)
    kw = dict(factors=depth + 1, balanced=True, criterion=Criterion(), group=grp)
    a = _limit_batch_cpu(y, **kw)
    b = _padded(_limit_batch, y, **kw)
    for f in LIMIT_FIELDS:
        np.testing.assert_array_equal(a[f], b[f], err_msg=f)
    n = len(y)
    assert a["late"][: n - 2].all() and not a["late"][n - 2 :].any()  # the last two run the dummy
    assert a["decided"][:-2].sum() >= n - 4  # decisions to compare (most states decide)
    scale = np.abs(b["limit_state"]).max(-1, keepdims=True)
    assert np.all(np.abs(a["limit_state"] - b["limit_state"]) <= 1e-10 * scale)
    np.testing.assert_allclose(a["rate_ratio"], b["rate_ratio"], rtol=0, atol=1e-7)
    np.testing.assert_allclose(a["ratio"], b["ratio"], rtol=0, atol=1e-8)
    np.testing.assert_allclose(a["off_target_mass"], b["off_target_mass"], rtol=1e-12, atol=0)
    # a state's fields do not depend on the other states of its batch (reused scratch)
    for i in (0, n - 5, n - 1):
        one = _limit_batch_cpu(y[i : i + 1], **kw)
        for f in a:
            np.testing.assert_array_equal(one[f][0], a[f][i], err_msg=f)


# The states of random starts (seed 0, 256 starts, tau = 30 and 100) whose decision fields
# differed between the backends when the QP kept G_PP^-1 by rank-one updates (it drifted on
# the rank-deficient G and cycled to the iteration cap): K = 16, L = 5 and K = 8, L = 2.
@pytest.mark.parametrize(
    "K, depth, starts",
    [
        (16, 5, [5, 56, 67, 76, 95, 103, 151, 163, 178, 197, 218, 233, 242]),
        (8, 2, [96, 137, 159, 174, 207, 232, 238]),
    ],
)
def test_limit_map_backends_agree_on_formerly_differing_states(K, depth, starts):
    from svflow._outcome import Criterion, _limit_batch, _limit_batch_cpu, _padded, advance_batch

    grp = resolve_group("walsh", K)
    lam0 = _starts(256, K, 0, grp)[starts]
    cfg = Solver(rtol=1e-6, atol=1e-9, max_steps=100_000, backend="numba")
    ys, res, _ = advance_batch(
        lam0, 0.0, [30.0, 100.0], factors=depth + 1, balanced=True, config=cfg, group=grp
    )
    assert np.all(res == 0)
    y = ys.reshape(-1, K)
    kw = dict(factors=depth + 1, balanced=True, criterion=Criterion(), group=grp)
    a = _limit_batch_cpu(y, **kw)
    b = _padded(_limit_batch, y, **kw)
    for f in LIMIT_FIELDS:
        np.testing.assert_array_equal(a[f], b[f], err_msg=f)
    assert a["decided"].all()  # every QP of each run solved, and each state decides
    scale = np.abs(b["limit_state"]).max(-1, keepdims=True)
    assert np.all(np.abs(a["limit_state"] - b["limit_state"]) <= 1e-10 * scale)


def test_numba_limit_qp_meets_its_kkt_conditions():
    # the compiled active-set QP (cold, and warm from wrong and right guesses of the positive
    # set) against the optimality conditions of min 1/2 e'Ge - 1'e, e >= 0,
    # checked in numpy (G + ridge): e >= 0, Ge >= 1 off the support, Ge = 1 on it; G of full
    # rank (condition numbers up to ~1e5) and rank-deficient (modes at exact zeros), and u' =
    # D C'e against the XLA solve (unique even where e is not)
    from svflow._cpu.limit import _qp_nonneg
    from svflow._limit import QP_ADD_TOL, QP_KKT_TOL, QP_RIDGE, class_rows, one_minus_cos, qp_nonneg

    rng = np.random.default_rng(3)
    for K, group in ((16, "walsh"), (6, "cyclic"), (12, "cyclic")):
        grp = resolve_group(group, K)
        C = one_minus_cos(grp)[class_rows(grp)]
        R = C.shape[0]
        for i in range(40):
            D = rng.uniform(0, 1, K) ** 4
            while i % 2:  # rank <= K / 2, every class keeps a positive margin (a bounded QP)
                D = rng.uniform(0, 1, K) ** 4
                D[rng.choice(np.arange(1, K), K // 2, replace=False)] = 0.0
                if np.all(C @ D > 0):
                    break
            D[0] = 0.0
            G = (C * D) @ C.T / K
            G = 0.5 * (G + G.T)
            GT = G.T.copy()
            e, P = np.empty(R), np.zeros(R, bool)
            scratch = [np.empty(R) for _ in range(5)]
            tols = np.array([QP_RIDGE, QP_ADD_TOL, QP_KKT_TOL])
            assert _qp_nonneg(GT, e, P, np.zeros((R, R)), np.zeros(R, np.int64), *scratch, tols, False)
            Gr = G + QP_RIDGE * np.diag(np.abs(np.diag(G)))
            m = Gr @ e
            assert np.all(e >= 0)
            np.testing.assert_allclose(m[e > 0], 1.0, atol=1e-9)
            assert np.all(m[e == 0] >= 1 - 1e-9)
            ex, ok = qp_nonneg(jnp.asarray(G), jnp.ones(R, bool))
            assert bool(ok)
            np.testing.assert_allclose(D * (e @ C), D * (np.asarray(ex) @ C), rtol=1e-7, atol=1e-12)
            # warm starts from wrong guesses (every class, a random set) and from the answer's
            # own support: the same KKT point, the same u' as the cold start
            for guess in (np.ones(R, bool), rng.uniform(size=R) < 0.5, e > 0):
                GT = G.T.copy()
                ew, Pw = np.empty(R), guess.copy()
                assert _qp_nonneg(GT, ew, Pw, np.zeros((R, R)), np.zeros(R, np.int64), *scratch, tols, True)
                m = Gr @ ew
                assert np.all(ew >= 0) and np.array_equal(Pw, ew > 0)
                np.testing.assert_allclose(m[ew > 0], 1.0, atol=1e-9)
                assert np.all(m[ew == 0] >= 1 - 1e-9)
                np.testing.assert_allclose(D * (ew @ C), D * (e @ C), rtol=1e-9, atol=1e-14)


def test_outcome_limit_map_backend_follows_the_solver():
    from svflow._outcome import limit_backend

    assert limit_backend(Solver()) == "numba"  # auto, on a CPU
    assert limit_backend(Solver(backend="numba")) == "numba"
    assert limit_backend(Solver(backend="jax")) == "jax"


def test_decision_does_not_depend_on_the_batch_numba():
    # on the compiled path (auto on a CPU): a start decides the same alone and in its batch
    K, depth = 8, 3
    lam = _starts(5, K, 11, svflow.Walsh(K))
    keys = ("outcome", "support", "log_t_end", "num_steps")

    def run(x):
        ds = svflow.outcome(K, depth, init=x, batch_dims="start", kkt=False)
        return {k: ds[k].values for k in keys}

    full = run(lam)
    assert np.all(full["outcome"] >= 0)
    rev = run(lam[::-1])
    for b in range(len(lam)):
        alone = run(lam[b : b + 1])
        for k in keys:
            np.testing.assert_array_equal(alone[k][0], full[k][b], err_msg=k)
            np.testing.assert_array_equal(rev[k][len(lam) - 1 - b], full[k][b], err_msg=k)


def test_basin_map_numba_and_jax_agree():
    # a small map, every stage on each backend (exact runs and limit map): same outcomes
    import dataclasses as dc

    from svflow.studies import basin_map
    from svflow.studies._basins import BASIN_SOLVER

    eps, delta = np.geomspace(1e-3, 1e-1, 4), np.linspace(0.1, 0.9, 4)
    maps = [
        basin_map(8, [3], eps, delta, family="random", solver=dc.replace(BASIN_SOLVER, backend=b))
        for b in ("numba", "jax")
    ]
    assert np.all(maps[0]["outcome"].values >= 0)
    for v in ("outcome", "support", "decided", "log_t_end"):
        np.testing.assert_array_equal(maps[0][v].values, maps[1][v].values, err_msg=v)
