"""The real-data study: metrics against hand computations, training, input checks.

- NC1 of a collapsed set is 0; of a two-class set with known spreads it is the
  hand-computed a^2 / 2 (and, in two dimensions, a diagonal sum).
- The class-mean rank of features built from a rank-r matrix is r.
- The normalised margin is invariant under scaling all weights (homogeneity
  of degree M), while the margin scales as c^M.
- Adam (full batch and mini-batch) reaches 100 % training accuracy on a
  separable toy set; a mini-batch of all n samples follows the full-batch run.
- The gradient flow of the whole network (the flow engine's generic core)
  reaches 100 % training accuracy on the toy set, lowers the loss
  monotonically and conserves the balancedness of consecutive linear head
  layers, W_{l+1}^T W_{l+1} - W_l W_l^T (a conservation law of the flow).
- ``(X, y)`` validation rejects each bad input with a message naming it.
"""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import svflow
from svflow._metrics import rank_from_sigma
from svflow.studies import (
    HeadNet,
    class_mean_sigma,
    feature_metrics,
    nc1,
    prepare_data,
    train_adam,
    train_flow,
)


def _blobs(K=3, n_per=20, D=4, sep=6.0, seed=0):
    """K well-separated Gaussian blobs (linearly separable by construction)."""
    rng = np.random.default_rng(seed)
    centres = sep * np.eye(D)[:K]
    X = np.concatenate([centres[c] + 0.3 * rng.standard_normal((n_per, D)) for c in range(K)])
    y = np.repeat(np.arange(K), n_per)
    return X, y


def test_nc1_collapsed_set_is_zero():
    rng = np.random.default_rng(1)
    K, q, n_per = 4, 6, 5
    means = rng.standard_normal((K, q))
    F = np.repeat(means, n_per, axis=0)  # every sample on its class mean
    y = np.repeat(np.arange(K), n_per)
    assert float(nc1(F, y, K)) == pytest.approx(0.0, abs=1e-20)


def test_nc1_two_classes_by_hand():
    # 1-D: class 0 at -1 +- a, class 1 at +1 +- a. Sigma_W = a^2, Sigma_B = 1 (means +-1,
    # centre 0), so NC1 = tr(Sigma_W Sigma_B^+) / K = a^2 / 2.
    a = 0.3
    F = np.array([[-1 - a], [-1 + a], [1 - a], [1 + a]])
    y = np.array([0, 0, 1, 1])
    assert float(nc1(F, y, 2)) == pytest.approx(a**2 / 2, rel=1e-12)
    # 2-D: means (+-1, 0), spreads a along x and b along y. Sigma_B = diag(1, 0), so
    # its pseudo-inverse drops the y direction: NC1 = a^2 / 2 whatever b.
    b = 0.7
    F2 = np.array([[-1 - a, b], [-1 + a, -b], [1 - a, b], [1 + a, -b]])
    assert float(nc1(F2, y, 2)) == pytest.approx(a**2 / 2, rel=1e-12)


@pytest.mark.parametrize("r", [1, 3, 5])
def test_rank_of_constructed_rank_r_features(r):
    rng = np.random.default_rng(r)
    K, q, n_per = 6, 12, 4
    # class means U diag(s) V^T with orthonormal U (q x r) and V (K x r), V orthogonal to the
    # all-ones vector, so centring leaves them unchanged: singular values s, rank r
    U = np.linalg.qr(rng.standard_normal((q, r)))[0]
    Q = np.linalg.qr(np.concatenate([np.ones((K, 1)), rng.standard_normal((K, r))], axis=1))[0]
    V = Q[:, 1 : r + 1]
    s = np.linspace(2.0, 1.0, r)
    means = (U @ np.diag(s) @ V.T).T  # (K, q)
    noise = rng.standard_normal((K, n_per // 2, q))
    F = np.concatenate([means[c] + np.concatenate([noise[c], -noise[c]]) for c in range(K)])  # exact means
    y = np.repeat(np.arange(K), n_per)
    sigma = class_mean_sigma(F, y, K)
    assert sigma.shape == (K,)
    assert int(rank_from_sigma(sigma)) == r
    np.testing.assert_allclose(np.asarray(sigma)[:r], s, rtol=1e-12)
    np.testing.assert_allclose(np.asarray(sigma)[r:], 0.0, atol=1e-12)


def test_normalised_margin_is_scale_invariant():
    X, y = _blobs()
    data = prepare_data(X, y, test_fraction=0.25)
    m = HeadNet.init(jax.random.PRNGKey(0), 4, 3, hidden=(8,), depth=3, width=5)
    c = 1.7
    mc = jax.tree.map(lambda a: c * a, m)
    args = (data["X_train"], data["y_train"], data["X_test"], data["y_test"])
    r, rc = feature_metrics(m, *args, classes=3), feature_metrics(mc, *args, classes=3)
    assert m.degree == 4
    np.testing.assert_allclose(rc["margin"], c**4 * r["margin"], rtol=1e-12)
    np.testing.assert_allclose(rc["normalised_margin"], r["normalised_margin"], rtol=1e-12)
    # the accuracies and class-mean ranks do not change under positive scaling either
    for k in ("train_acc", "rank_in", "rank_out"):
        assert float(rc[k]) == float(r[k])


def test_adam_reaches_full_train_accuracy_on_separable_toy_set():
    X, y = _blobs()
    data = prepare_data(X, y, test_fraction=0.25)
    m = HeadNet.init(jax.random.PRNGKey(3), 4, 3, hidden=(8,), depth=2, width=6)
    _, full = train_adam(m, data, learning_rate=1e-2, steps=300, num_records=4)
    assert float(full["train_acc"][-1]) == 1.0
    assert float(full["loss"][-1]) < 0.05 * float(full["loss"][0])
    # mini-batches of 10 of the 45 training samples get there too
    _, mini = train_adam(
        m, data, learning_rate=1e-2, steps=300, batch_size=10, num_records=4, key=jax.random.PRNGKey(1)
    )
    assert float(mini["train_acc"][-1]) == 1.0
    # a "mini-batch" of all n samples is the full batch (in another order): the same run
    n = len(data["y_train"])
    _, same = train_adam(m, data, learning_rate=1e-2, steps=300, batch_size=n, num_records=4)
    np.testing.assert_allclose(same["loss"], full["loss"], rtol=1e-8)


def test_flow_reaches_full_train_accuracy_and_conserves_balancedness():
    X, y = _blobs()
    data = prepare_data(X, y, test_fraction=0.25)
    m = HeadNet.init(jax.random.PRNGKey(3), 4, 3, hidden=(8,), depth=3, width=5)
    m1, recs, stats = train_flow(
        m, data, t_end=100.0, num_records=6, solver=svflow.Solver(rtol=1e-9, atol=1e-11, max_steps=100_000)
    )
    assert float(recs["train_acc"][-1]) == 1.0
    loss = np.asarray(recs["loss"])
    assert np.all(np.diff(loss) < 0)  # gradient flow lowers the loss
    assert stats["t"][-1] == 100.0 and stats["num_steps"] > 0
    for l in range(2):
        W0a, W0b = np.asarray(m.head[l]), np.asarray(m.head[l + 1])
        W1a, W1b = np.asarray(m1.head[l]), np.asarray(m1.head[l + 1])
        before = W0b.T @ W0b - W0a @ W0a.T
        after = W1b.T @ W1b - W1a @ W1a.T
        grown = np.linalg.norm(W1a) ** 2 - np.linalg.norm(W0a) ** 2  # the weights did move
        assert grown > 1.0
        np.testing.assert_allclose(after, before, atol=1e-5 * grown)


def test_float32_training_keeps_float32_weights():
    X, y = _blobs()
    data = prepare_data(X, y, test_fraction=0.25)
    m = HeadNet.init(jax.random.PRNGKey(0), 4, 3, hidden=(8,), depth=2, width=6, dtype=jnp.float32)
    m2, recs = train_adam(m, data, steps=5, num_records=2)
    assert all(a.dtype == jnp.float32 for a in jax.tree.leaves(m2))
    assert recs["loss"].dtype == jnp.float64  # records are float64


def test_digits_default_split():
    d = svflow.studies.digits_data()
    assert d["classes"] == 10
    assert d["X_train"].shape == (1347, 64) and d["X_test"].shape == (450, 64)
    np.testing.assert_allclose(d["X_train"].mean(axis=0), 0.0, atol=1e-12)
    assert np.all(np.bincount(d["y_train"]) > 100)


X0, Y0 = _blobs()


@pytest.mark.parametrize(
    "X, y, exc, words",
    [
        (X0, Y0 + 1, ValueError, "no sample"),  # labels 1..3: class 0 missing
        (X0, np.where(Y0 == 1, 2, Y0), ValueError, "no sample"),  # a class with no sample
        (X0, Y0 - 1, ValueError, "0..K-1"),  # negative labels
        (X0, Y0 + 0.5, ValueError, "integers"),  # non-integer labels
        (X0, Y0.astype(str), ValueError, "integers"),  # string labels
        (X0, np.zeros_like(Y0), ValueError, "at least 2 classes"),
        (np.where(np.arange(X0.size).reshape(X0.shape) == 7, np.nan, X0), Y0, ValueError, "NaN"),
        (np.where(np.arange(X0.size).reshape(X0.shape) == 7, np.inf, X0), Y0, ValueError, "inf"),
        (X0[:-1], Y0, ValueError, "must match"),  # mismatched lengths
        (X0[:, 0], Y0, ValueError, "2-D"),  # 1-D features
        (X0.reshape(len(X0), 2, 2), Y0, ValueError, "2-D"),  # images not flattened
        (X0, Y0[:, None], ValueError, "1-D"),
        (X0.astype(str), Y0, TypeError, "real numbers"),
    ],
)
def test_bad_xy_rejected(X, y, exc, words):
    with pytest.raises(exc, match=words):
        prepare_data(X, y)


def test_bad_test_set_rejected():
    with pytest.raises(ValueError, match="0..2"):
        prepare_data(X0, Y0, X0, Y0 + 1)
    with pytest.raises(ValueError, match="features"):
        prepare_data(X0, Y0, X0[:, :3], Y0)
    with pytest.raises(ValueError, match="both"):
        prepare_data(X0, Y0, X0)
    with pytest.raises(ValueError, match="both X and y"):
        svflow.studies.realdata_study(X0)
    with pytest.raises(ValueError, match="optimizer"):
        svflow.studies.realdata_study(X0, Y0, optimizer="sgd")
    with pytest.raises(ValueError, match="float64"):
        svflow.studies.realdata_study(X0, Y0, optimizer="flow", dtype="float32")


@pytest.mark.slow
def test_study_on_user_data_resumes(tmp_path):
    X, y = _blobs()
    kw = dict(depths=(1, 2), widths=(4,), seeds=2, hidden=(8,), steps=100, learning_rate=1e-2, num_records=3)
    ds = svflow.studies.realdata_study(X, y, store=tmp_path / "s.zarr", **kw)
    assert ds["train_acc"].isel(time=-1).min() == 1.0
    assert set(ds.sizes) == {"depth", "width", "seed", "time", "sv"}
    again = svflow.studies.realdata_study(X, y, store=tmp_path / "s.zarr", **kw)  # read back, not recomputed
    np.testing.assert_array_equal(again["loss"].values, ds["loss"].values)
    fl = svflow.studies.realdata_study(X, y, optimizer="flow", t_end=100.0, **kw)
    assert fl["train_acc"].isel(time=-1).min() == 1.0
    assert int(fl["result"].max()) == 0 and float(fl["time"][-1]) == 100.0
