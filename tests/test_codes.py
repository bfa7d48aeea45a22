"""Softmax codes: exact margins, optimiser, cache, Gram distance, convergence measure."""

import math

import numpy as np
import pytest
from scipy.optimize import minimize

import svflow
from svflow._analysis import codes as C
from svflow._dataset import build_dataset


def polygon(K):
    a = 2 * np.pi * np.arange(K) / K
    return np.stack([np.cos(a), np.sin(a)], axis=1)


def simplex(K):
    E = np.eye(K) - 1.0 / K
    return E / np.linalg.norm(E, axis=1, keepdims=True)  # in R^K, rank K - 1


def hull_distance_primal(p, Q):
    """Independent route: min ||p - Q^T a|| over the probability simplex (SLSQP)."""
    m = Q.shape[0]
    res = minimize(
        lambda a: np.sum((p - a @ Q) ** 2),
        np.full(m, 1.0 / m),
        jac=lambda a: -2 * Q @ (p - a @ Q),
        method="SLSQP",
        bounds=[(0, 1)] * m,
        constraints=[dict(type="eq", fun=lambda a: a.sum() - 1, jac=lambda a: np.ones(m))],
        options=dict(ftol=1e-16, maxiter=1000),
    )
    return math.sqrt(max(res.fun, 0.0))


def test_exact_margin_closed_forms():
    for K in (3, 5, 8):
        assert svflow.studies.one_vs_rest_margin(polygon(K)) == pytest.approx(
            1 - math.cos(2 * math.pi / K), abs=1e-12
        )
    for K in (3, 4, 7):
        assert svflow.studies.one_vs_rest_margin(simplex(K)) == pytest.approx(K / (K - 1), abs=1e-12)
    cross = np.vstack([np.eye(3), -np.eye(3)])
    assert svflow.studies.one_vs_rest_margin(cross) == pytest.approx(1.0, abs=1e-12)
    assert svflow.studies.one_vs_rest_margin(cross[:5]) == pytest.approx(1.0, abs=1e-12)
    # a vector inside the hull of the others has margin 0
    V = np.array([[1.0, 0.0], [-1.0, 0.0], [0.0, 1.0], [0.0, -1.0], [0.3, 0.3]])
    assert svflow.studies.one_vs_rest_margin(V, normalise=False) == 0.0


def test_exact_margin_matches_primal_qp(rng):
    for K, r in ((6, 3), (9, 4)):
        V = rng.normal(size=(K, r))
        V /= np.linalg.norm(V, axis=1, keepdims=True)
        rho, d = svflow.studies.one_vs_rest_margin(V, per_class=True)
        primal = [hull_distance_primal(V[y], np.delete(V, y, 0)) for y in range(K)]
        np.testing.assert_allclose(d, primal, atol=2e-6)
        assert rho == pytest.approx(min(primal), abs=2e-6)


def test_walsh_code_margin_is_2d_over_r():
    # equal-lambda Walsh support = binary linear code; rho = 2 d_min / r (docs: theory/outcomes.md)
    K = 8
    H = np.asarray(svflow.Walsh(K).hadamard())
    for S, d in (((1, 2, 4), 1), ((1, 2, 4, 7), 2), (tuple(range(1, 8)), 4)):
        V = H[list(S)].T / math.sqrt(len(S))  # class x at (h_i(x))_{i in S}
        assert svflow.studies.one_vs_rest_margin(V) == pytest.approx(2 * d / len(S), abs=1e-12)


def test_exact_rho_table():
    assert svflow.studies.exact_rho(6, 2) == pytest.approx(0.5)
    assert svflow.studies.exact_rho(4, 3) == pytest.approx(4 / 3)
    assert svflow.studies.exact_rho(7, 4) == 1.0
    assert svflow.studies.exact_rho(8, 3) is None
    with pytest.raises(ValueError, match="rank"):
        svflow.studies.exact_rho(4, 0)


@pytest.mark.parametrize(
    "K, r, construct",
    [(5, 2, True), (4, 3, False), (5, 3, True)],
    ids=["pentagon", "simplex-optimised", "cross-polytope"],
)
def test_optimiser_recovers_known_optima(K, r, construct, tmp_path):
    code = svflow.studies.softmax_code(
        K, r, starts=8, steps=1000, polish=2, cache_dir=tmp_path, construct=construct
    )
    exact = {2: 1 - math.cos(2 * math.pi / K)}.get(r, K / (K - 1) if K <= r + 1 else 1.0)
    assert code.rho == pytest.approx(exact, abs=1e-9)
    np.testing.assert_allclose(np.linalg.norm(code.vectors, axis=1), 1.0, atol=1e-12)
    np.testing.assert_allclose(np.diag(code.gram), 1.0, atol=1e-12)


def test_cache_roundtrip(tmp_path, monkeypatch):
    monkeypatch.setenv("SVFLOW_CACHE_DIR", str(tmp_path))
    a = svflow.studies.softmax_code(6, 2, starts=4, steps=300, polish=1)
    assert a.source == "optimised"
    assert len(list((tmp_path / "codes").glob("*.npz"))) == 1
    b = svflow.studies.softmax_code(6, 2, starts=4, steps=300, polish=1)
    assert b.source == "cache"
    np.testing.assert_array_equal(a.vectors, b.vectors)
    c = svflow.studies.softmax_code(6, 2, starts=4, steps=300, polish=1, seed=1)
    assert c.source == "optimised"  # other settings: other cache entry


def test_gram_distance_rotation_relabelling(rng):
    V = rng.normal(size=(7, 3))
    V /= np.linalg.norm(V, axis=1, keepdims=True)
    Q, _ = np.linalg.qr(rng.normal(size=(3, 3)))
    p = rng.permutation(7)
    W = (V @ Q)[p]
    d, perm = svflow.studies.gram_distance(W @ W.T, V @ V.T)
    assert d < 1e-12
    np.testing.assert_array_equal(perm, p)
    # the heuristic (forced) finds the same exact optimum as exhaustive search
    Wn = W + 0.01 * rng.normal(size=W.shape)
    Wn /= np.linalg.norm(Wn, axis=1, keepdims=True)
    ex, _ = svflow.studies.gram_distance(Wn @ Wn.T, V @ V.T)
    he, _ = svflow.studies.gram_distance(Wn @ Wn.T, V @ V.T, exhaustive_max=0)
    assert he == pytest.approx(ex, rel=1e-12)
    # two unrelated 16-point codes are far apart, a relabelled copy is at 0
    P16 = polygon(16)
    q = rng.permutation(16)
    assert svflow.studies.gram_distance(P16[q] @ P16[q].T, P16 @ P16.T)[0] < 1e-12


def fake_dataset(lams, rank):
    lams = np.asarray(lams, float)
    T = lams.shape[0]
    return build_dataset(np.arange(T, dtype=float), attrs={}, lam=lams, rank=np.full(T, rank))


def test_convergence_measure_on_exact_codes(tmp_path):
    K = 8
    nc = np.r_[0.0, np.ones(K - 1)] * 3.0
    cube = np.zeros(K)
    cube[[1, 2, 4]] = 5.0
    cc = svflow.studies.code_convergence(fake_dataset([nc, 2 * nc], K - 1))
    np.testing.assert_allclose(cc["code_rho_ratio"].values, 1.0, atol=1e-12)
    np.testing.assert_allclose(cc["code_gram_distance"].values, 0.0, atol=1e-12)
    cc3 = svflow.studies.code_convergence(
        fake_dataset([cube], 3),
        code_kwargs=dict(starts=8, steps=1000, polish=2, cache_dir=tmp_path),
    )
    assert cc3["code_rho"].values[0] == pytest.approx(2 / 3, abs=1e-12)  # hypercube: 2 d / r
    assert cc3.attrs["code_rho_star"] > 2 / 3  # 8 points in R^3 beat the cube
    assert cc3["code_rho_ratio"].values[0] < 1


def test_class_embedding_uses_class_means(rng):
    K, n = 4, 3
    Zbar = rng.normal(size=(K, K))
    Z = np.repeat(Zbar, n, axis=1) + 0.0
    noise = rng.normal(size=(K, K, n))
    noise -= noise.mean(axis=-1, keepdims=True)  # zero-mean within each class
    Zn = Z + noise.reshape(K, K * n)
    E1 = svflow.studies.class_embedding(Zbar, 2)
    E2 = svflow.studies.class_embedding(Zn, 2)
    np.testing.assert_allclose(np.abs(E1 @ E1.T), np.abs(E2 @ E2.T), atol=1e-12)
    with pytest.raises(ValueError, match="logits"):
        svflow.studies.class_embedding(rng.normal(size=(4, 5)), 2)


def test_margin_certified_on_degenerate_symmetric_sets(rng):
    # embedding of an equal-lambda [4,3,2] Walsh code with round-off-sized other modes:
    # a rotated cross-polytope in R^4, where a bare NNLS solve can stop early
    lam = np.array([0.0, 1.5e-59, 9.4e-62, 1.8e-61, 2.0, 2.0, 2.0, 2.0])
    U = np.asarray(svflow.Walsh(8).hadamard()) / np.sqrt(8)
    E = svflow.studies.class_embedding(U @ np.diag(lam) @ U.T, 4)
    assert svflow.studies.one_vs_rest_margin(E) == pytest.approx(1.0, abs=1e-12)
    # Wolfe's min-norm point (the fallback) agrees with the LDP route on random sets
    for _ in range(3):
        V = rng.normal(size=(9, 4))
        V /= np.linalg.norm(V, axis=1, keepdims=True)
        for y in range(9):
            d_ldp = C._hull_distance(V[y], np.delete(V, y, 0))[0]
            d_wolfe = C._wolfe(V[y] - np.delete(V, y, 0))[0]
            assert d_ldp == pytest.approx(d_wolfe, abs=1e-12)
