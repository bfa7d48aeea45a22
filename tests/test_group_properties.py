"""Property tests of the group classes (hypothesis): each property is checked
against a route that does not use the method under test.

- the basis is orthogonal and the transform is sqrt(K) times it (its own
  inverse up to the factor K for the Walsh group, where H is symmetric);
- margins and softmax eigenvalues from the group's methods (dense and fast
  routes) equal those of the logit matrix Z = U diag(lambda) U^T built from the
  basis, and the margin matrix gives the same margins from the pair values;
- a product of Walsh factors, computed through the generic character tables,
  is the Walsh group of the product order (Sylvester's matrix, same margins,
  supports and code table);
- specs, labels and group objects resolve to equal, hashable groups.
"""

from __future__ import annotations

import numpy as np
import pytest
import scipy.linalg
import scipy.special
from hypothesis import given, settings
from hypothesis import strategies as st

import svflow
from svflow._groups import resolve_group, tie_pairs

GROUPS = [
    svflow.Walsh(2),
    svflow.Walsh(4),
    svflow.Walsh(8),
    svflow.Walsh(16),
    svflow.Cyclic(3),
    svflow.Cyclic(6),
    svflow.Cyclic(7),
    svflow.Cyclic(8),
    svflow.Product(2, 4),
    svflow.Product(3, 3),
    svflow.Product(2, 2, 3),
]

SETTINGS = settings(max_examples=30, deadline=None, derandomize=True)


def _state(group, values):
    """A state lambda of the group's frame: pairs tied, mode 0 zero."""
    lam = tie_pairs(np.resize(np.asarray(values, float), group.classes), group)
    lam[0] = 0.0
    return lam


values = st.lists(st.floats(-3.0, 3.0, allow_nan=False), min_size=16, max_size=16)


@SETTINGS
@given(group=st.sampled_from(GROUPS), x=values)
def test_basis_is_orthogonal_and_the_transform_is_its_scaled_adjoint(group, x):
    K = group.classes
    U = group.basis()
    np.testing.assert_allclose(U.T @ U, np.eye(K), atol=1e-13)
    v = np.resize(np.asarray(x, float), K)
    y = np.asarray(group.transform(v))
    np.testing.assert_allclose(y, np.sqrt(K) * (U.T @ v), atol=1e-12)
    np.testing.assert_allclose(np.linalg.norm(y), np.sqrt(K) * np.linalg.norm(v), rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(U @ y / np.sqrt(K), v, atol=1e-12)  # back through the basis


@SETTINGS
@given(m=st.integers(1, 6), x=values, method=st.sampled_from(["fast", "dense", "auto"]))
def test_walsh_transform_is_its_own_inverse_up_to_K(m, x, method):
    K = 2**m
    g = svflow.Walsh(K)
    v = np.resize(np.asarray(x, float), K)
    twice = np.asarray(g.transform(g.transform(v, method=method), method=method))
    np.testing.assert_allclose(twice, K * v, atol=1e-11)
    np.testing.assert_array_equal(np.asarray(g.hadamard()), scipy.linalg.hadamard(K))


@SETTINGS
@given(group=st.sampled_from(GROUPS), x=values, method=st.sampled_from(["fast", "dense"]))
def test_margins_and_softmax_eigenvalues_equal_the_logit_matrix_route(group, x, method):
    K = group.classes
    lam = _state(group, x)
    U = group.basis()
    Z = U @ np.diag(lam) @ U.T  # Z[c, y] = f(c - y): column 0 is f
    want_m = Z[0, 0] - Z[:, 0]
    want_mu = np.diag(U.T @ scipy.special.softmax(Z, axis=0) @ U)
    np.testing.assert_allclose(group.margins(lam, method=method), want_m, atol=1e-12)
    np.testing.assert_allclose(
        svflow.margins(lam, group, method=method), want_m, atol=1e-12
    )  # the function resolves the same object
    np.testing.assert_allclose(group.softmax_eigenvalues(lam, method=method), want_mu, atol=1e-12)
    # the margin matrix acts on the pair values (first mode of each conjugate class)
    first, w = group.pair_modes()
    np.testing.assert_allclose(group.margin_matrix() @ lam[first], want_m[1:], atol=1e-12)
    assert np.all(w[group.mode_part[first] == "cos"] == 2) and np.all(
        w[group.mode_part[first] == "real"] == 1
    )
    assert K == len(first) + np.sum(w == 2) + 1


@pytest.mark.parametrize("factors", [(2, 2), (2, 2, 2), (2, 2, 2, 2)])
def test_product_of_walsh_factors_is_the_walsh_group(factors):
    K = int(np.prod(factors))
    p = svflow.Product(*(svflow.Walsh(n) for n in factors))
    w = svflow.Walsh(K)
    assert p.orders == w.orders and p != w  # the same group, computed by another class
    np.testing.assert_allclose(p.basis(), w.basis(), atol=1e-15)
    rng = np.random.default_rng(K)
    lam = rng.uniform(0.1, 2.0, (3, K))
    for method in ("dense", "fast"):
        np.testing.assert_allclose(p.margins(lam, method=method), w.margins(lam, method=method), atol=1e-13)
        np.testing.assert_allclose(
            p.softmax_eigenvalues(lam, method=method), w.softmax_eigenvalues(lam, method=method), atol=1e-13
        )
    np.testing.assert_allclose(p.margin_matrix(), w.margin_matrix(), atol=1e-15)
    sp, sw = p.supports(), w.supports()
    np.testing.assert_array_equal(sp["mask"], sw["mask"])
    np.testing.assert_allclose(sp["dmin"], sw["dmin"], rtol=1e-13)
    a = svflow.code_table(K, range(2, 7), group=p)  # the generic route over pairs
    b = svflow.code_table(K, range(2, 7), group=w)  # binary codes ranked per length
    np.testing.assert_allclose(a["gamma"], b["gamma"], rtol=1e-12)
    np.testing.assert_array_equal(a["size"], b["size"])


@SETTINGS
@given(group=st.sampled_from(GROUPS))
def test_specs_and_labels_resolve_to_the_same_group(group):
    K = group.classes
    assert resolve_group(group, K) is group
    assert resolve_group(group.spec, K) == group and resolve_group(group.label, K) == group
    assert hash(resolve_group(group.spec, K)) == hash(group)
    assert resolve_group(None, K) == (svflow.Walsh(K) if K & (K - 1) == 0 else svflow.Cyclic(K))
    with pytest.raises(ValueError, match="order"):
        resolve_group(group, K + 1)


def test_bad_groups_and_states_are_refused():
    with pytest.raises(ValueError, match="integers >= 2"):
        svflow.Product(2, 1)
    with pytest.raises(ValueError, match="at least one"):
        svflow.Product()
    with pytest.raises(ValueError, match="power of two"):
        svflow.Walsh(6)
    for g in (svflow.Walsh(8), svflow.Cyclic(8)):  # a state of another K is refused, never recast
        with pytest.raises(ValueError, match="last axis of length 8"):
            g.margins(np.ones(4))
        with pytest.raises(ValueError, match="last axis of length 8"):
            g.softmax_eigenvalues(np.ones((2, 16)))
