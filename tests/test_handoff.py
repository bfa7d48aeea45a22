"""The frame-free limit-map hand-off of random starts (svflow/_full/outcome.py).

Each check is an independent route: the spectral limit map of svflow._limit (the
special case of diagonal logits in the spectral frames), closed forms of the
least-distance problem, the exponent rule's own decisions, and longer runs of the
exact flow."""

import jax.numpy as jnp
import numpy as np
import pytest
from scipy.optimize import minimize

import svflow
from svflow._full.outcome import (
    _least_distance,
    flow_outcome,
    handoff_limit,
    limit_map_step,
    pair_margins,
)
from svflow._groups import resolve_group
from svflow._limit import limit_step, one_minus_cos


def _walsh(K):
    x = np.arange(K)
    par = np.array([[bin(a & b).count("1") % 2 for b in x] for a in x])
    return (-1.0) ** par / np.sqrt(K)


@pytest.mark.parametrize("factors", [2, 3, 5])
def test_limit_map_step_is_the_spectral_limit_map_on_spectral_logits(factors):
    """Z = F diag(u) F^T in the Walsh frames F of K = 8 (the spectral starts' frames): three
    steps of the frame-free map stay diagonal in F and equal svflow._limit.limit_step's u."""
    K = 8
    group = resolve_group(None, K)
    F = _walsh(K)
    H = np.sqrt(K) * F  # +-1 characters; C = 1 - H is the spectral route's margin matrix
    assert np.allclose(one_minus_cos(group), 1 - H)
    u = np.abs(np.random.default_rng(factors).normal(size=K))
    u[0] = 0.0
    Z = F @ np.diag(u) @ F.T
    for _ in range(3):
        u = np.asarray(limit_step(jnp.asarray(u), factors, group))
        Z = limit_map_step(Z, factors)
        np.testing.assert_allclose(F.T @ Z @ F, np.diag(u), atol=1e-8 * u.max())


def test_limit_map_step_lands_on_the_margin_constraint():
    """Every margin of a step's result is >= 1, the smallest = 1 (complementarity), and the
    map is homogeneous of degree 0 (a scaled input gives the same output)."""
    rng = np.random.default_rng(0)
    Z = rng.normal(size=(6, 6)) + 3 * np.eye(6)
    Z = Z - Z.mean(axis=0)
    out = limit_map_step(Z, 3)
    m = pair_margins(out)
    assert m.min() == pytest.approx(1.0, abs=1e-9) and np.all(m >= 1 - 1e-9)
    np.testing.assert_allclose(limit_map_step(7.0 * Z, 3), out, atol=1e-9)


def test_least_distance_against_closed_forms_and_a_second_solver():
    """min ||x|| s.t. A x >= 1: one constraint a gives a/|a|^2; orthogonal rows add up;
    a random problem agrees with scipy's SLSQP."""
    a = np.array([[3.0, 4.0]])
    np.testing.assert_allclose(_least_distance(a), [3 / 25, 4 / 25], atol=1e-12)
    A = np.array([[2.0, 0.0, 0.0], [0.0, 0.0, 4.0]])
    np.testing.assert_allclose(_least_distance(A), [0.5, 0.0, 0.25], atol=1e-12)
    rng = np.random.default_rng(1)
    A = rng.normal(size=(12, 5)) + 1.0
    x = _least_distance(A)
    ref = minimize(
        lambda v: v @ v,
        np.ones(5),
        jac=lambda v: 2 * v,
        constraints=[{"type": "ineq", "fun": lambda v: A @ v - 1, "jac": lambda v: A}],
        method="SLSQP",
        options={"ftol": 1e-14, "maxiter": 500},
    )
    assert np.all(A @ x >= 1 - 1e-10)
    np.testing.assert_allclose(x, ref.x, atol=1e-6)
    with pytest.raises(FloatingPointError, match="infeasible"):
        _least_distance(np.zeros((2, 3)))  # 0 >= 1 has no solution


def test_the_handoff_leaves_every_decided_start_as_it_was():
    """flow_outcome with and without the hand-off: every start the exponent rule decides
    (decided_by = 1) has the same outcome, support and horizon; only undecided ones may
    change (decided_by = 2)."""
    models = [svflow.random_model(4, depth=2, width=6, key=k) for k in range(6)]
    a = flow_outcome(models, horizons=(30.0,), kkt=False, handoff=True)
    b = flow_outcome(models, horizons=(30.0,), kkt=False, handoff=False)
    by_rule = a.decided_by.values == 1
    assert by_rule.any()
    np.testing.assert_array_equal(by_rule, b.outcome.values >= 0)
    for name in ("outcome", "support", "horizon", "limit"):
        np.testing.assert_array_equal(a[name].values[by_rule], b[name].values[by_rule])
    assert np.all(b.decided_by.values[~by_rule] == 0) and b.attrs["rule"] != a.attrs["rule"]
    # the public route (svflow.outcome with a list of models) hands off by default
    c = svflow.outcome(init=models, horizons=(30.0,), kkt=False)
    assert c.attrs["handoff"] == 1 and c.attrs["rule"] == a.attrs["rule"]
    for name in ("outcome", "support", "decided_by"):
        np.testing.assert_array_equal(c[name].values, a[name].values)


def test_a_state_that_is_not_late_is_never_decided():
    """At t = 0 (margins of either sign) the hand-off declines: not late."""
    h = handoff_limit(svflow.random_model(6, depth=2, width=8, key=0))
    assert not h["decided"]
