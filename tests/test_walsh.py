"""Walsh-Hadamard bases: checked against dense matrices built from scratch."""

import itertools

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import scipy.linalg

from svflow import Walsh, margins, softmax_eigenvalues
from svflow._walsh import ce_loss, one_minus_mu


def hadamard(K):
    return Walsh(K).hadamard()


def walsh_transform(x, method="auto"):
    return Walsh(x.shape[-1]).transform(x, method=method)


@pytest.mark.parametrize("K", [2, 4, 8, 16, 64])
def test_hadamard_is_sylvester(K):
    H = np.asarray(hadamard(K))
    np.testing.assert_array_equal(H, scipy.linalg.hadamard(K))  # independent build
    np.testing.assert_allclose(H @ H, K * np.eye(K))


@pytest.mark.parametrize("K", [2, 8, 32, 128])
@pytest.mark.parametrize("method", ["fast", "dense", "auto"])
def test_transform_plain_jit_vmap_grad(K, method, rng):
    x = rng.normal(size=(3, K))
    H = scipy.linalg.hadamard(K)
    want = x @ H.T
    f = lambda v: walsh_transform(v, method=method)  # noqa: E731
    np.testing.assert_allclose(f(x), want, rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(jax.jit(f)(x), want, rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(jax.vmap(f)(x), want, rtol=1e-12, atol=1e-12)
    # the transform is linear: d/dx sum(w * Hx) = H^T w
    w = rng.normal(size=K)
    g = jax.grad(lambda v: jnp.sum(w * f(v)))(x[0])
    np.testing.assert_allclose(g, H.T @ w, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("K", [3, 6, 12, 0, 1])
def test_bad_classes(K):
    with pytest.raises(ValueError, match="power of two"):
        hadamard(K)


def _dense_logits(lam):
    K = lam.shape[0]
    U = scipy.linalg.hadamard(K) / np.sqrt(K)
    return U, U @ np.diag(lam) @ U.T


@pytest.mark.parametrize("K", [4, 8, 16])
@pytest.mark.parametrize("scale", [0.3, 3.0, 30.0])
def test_mu_equals_dense_softmax_eigenvalues(K, scale, rng):
    lam = scale * rng.normal(size=K)
    U, Z = _dense_logits(lam)
    S = scipy.special.softmax(Z, axis=0)  # column softmax
    M = U.T @ S @ U
    # the softmax is diagonal in the same frame ...
    np.testing.assert_allclose(M - np.diag(np.diag(M)), 0, atol=1e-12)
    # ... with eigenvalues mu = H softmax(H lam / K)
    np.testing.assert_allclose(softmax_eigenvalues(lam), np.diag(M), rtol=1e-10, atol=1e-12)
    assert abs(float(softmax_eigenvalues(lam)[0]) - 1) < 1e-12


@pytest.mark.parametrize("K", [4, 8])
def test_margins_closed_form_and_dense(K, rng):
    lam = rng.normal(size=K)
    U, Z = _dense_logits(lam)
    m = np.asarray(margins(lam))
    for y, c in itertools.product(range(K), repeat=2):
        assert abs((Z[y, y] - Z[c, y]) - m[y ^ c]) < 1e-12
    # m_k = (2/K) sum_{j: popcount(j & k) odd} lam_j
    for k in range(K):
        odd = [j for j in range(K) if bin(j & k).count("1") % 2]
        assert abs(m[k] - 2 / K * lam[odd].sum()) < 1e-12


@pytest.mark.parametrize("scale", [0.1, 5.0, 60.0])
def test_ce_loss_and_saturated_accuracy(scale, rng):
    K = 8
    lam = scale * (1 + rng.uniform(size=K))
    _, Z = _dense_logits(lam)
    # log(1 + sum_{c != y} exp(Z[c, y] - Z[y, y])), averaged over y: no cancellation
    gaps = Z - np.diag(Z)[None, :]
    want = np.mean(np.log1p(np.where(np.eye(K, dtype=bool), 0, np.exp(gaps)).sum(axis=0)))
    np.testing.assert_allclose(ce_loss(lam), want, rtol=1e-9, atol=1e-300)
    # 1 - mu_j = 2 P_g(popcount(j & x) odd), computed with every term positive
    f = scipy.linalg.hadamard(K) @ lam / K
    g = scipy.special.softmax(f)
    odd = np.array([[bin(j & x).count("1") % 2 for x in range(K)] for j in range(K)])
    np.testing.assert_allclose(one_minus_mu(lam), 2 * odd @ g, rtol=1e-9, atol=1e-300)
