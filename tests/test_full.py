"""Full-parameter engine: model, starts, GD, cross-check with the reduced ODE."""

import jax.numpy as jnp
import numpy as np
import pytest
import xarray as xr

import svflow
from svflow._full.train import DivergenceError

from helpers import LAM0, lam_rel_error, small_model

K, L, D = 8, 3, 16
T_END = 20.0


@pytest.fixture(scope="module")
def crosscheck():
    """Full GD at eta and eta/2 against the reduced ODE at the same times."""
    model = svflow.spectral_model(LAM0, depth=L, width=D, key=7, dtype=jnp.float64)
    fulls = {eta: svflow.train(model, eta=eta, t_end=T_END, num_times=31) for eta in (0.04, 0.02)}
    union = np.unique(np.concatenate([f.time.values for f in fulls.values()]))
    reduced = svflow.simulate(
        K, L, init=LAM0, times=union, solver=svflow.Solver(rtol=1e-10, atol=1e-12), store_s=True
    )
    return {eta: (f, reduced.sel(time=f.time.values, method="nearest")) for eta, f in fulls.items()}


def test_spectral_start_is_the_reduced_start():
    """Z(0) = U diag(lambda) U^T and balanced factor spectra (docs: theory/spectral.md)."""
    model = svflow.spectral_model(LAM0, depth=L, width=D, key=3)
    U = np.asarray(svflow.Walsh(K).hadamard()) / np.sqrt(K)
    Z = np.asarray(model.logits())
    np.testing.assert_allclose(Z, U @ np.diag(LAM0) @ U.T, atol=1e-13)
    # every factor has the balanced singular values |lambda_i|^(1/N) in its top K
    for A in model.factors:
        sv = np.linalg.svd(np.asarray(A), compute_uv=False)[:K]
        np.testing.assert_allclose(np.sort(sv), np.sort(np.abs(LAM0) ** (1 / (L + 1))), atol=1e-13)
    # unbalanced s(0) is taken as given
    s0 = np.random.default_rng(0).uniform(0.5, 1.5, size=(L + 1, K))
    m2 = svflow.spectral_model(s0, depth=L, width=D, key=1)
    np.testing.assert_allclose(np.asarray(m2.logits()), U @ np.diag(s0.prod(0)) @ U.T, atol=1e-12)


def test_full_gd_matches_reduced_ode_to_first_order(crosscheck):
    e1 = lam_rel_error(*crosscheck[0.04])
    e2 = lam_rel_error(*crosscheck[0.02])
    # svflow.compare gives the same numbers
    cmp = svflow.compare(crosscheck[0.02][1], crosscheck[0.02][0])
    assert not cmp.attrs["interpolated"]
    assert abs(float(cmp.max_rel_error) - e2) < 1e-12
    assert float(cmp.s_rel_error.max()) < 2 * e2
    order = np.log2(e1 / e2)
    assert e2 < 0.02, (e1, e2)
    assert 0.85 < order < 1.15, (e1, e2, order)
    # the whole dynamics is non-trivial: lambda grows several-fold over the horizon
    full = crosscheck[0.02][0]
    assert full.lam.values[-1, 1:].max() > 5 * LAM0.max()


def test_compare_interpolates_a_finer_reduced_run(crosscheck):
    """A dense reduced run, interpolated in log(1 + t), gives nearly the same error."""
    full = crosscheck[0.02][0]
    dense = svflow.simulate(
        K, L, init=LAM0, t_end=T_END, num_times=801, solver=svflow.Solver(rtol=1e-10, atol=1e-12)
    )
    cmp = svflow.compare(dense, full)
    assert cmp.attrs["interpolated"]
    exact = lam_rel_error(*crosscheck[0.02])
    assert abs(float(cmp.max_rel_error) - exact) < 0.1 * exact
    with pytest.raises(ValueError, match="lam"):
        svflow.compare(dense, full.drop_vars("lam"))


def test_frames_do_not_drift(crosscheck):
    for full, _ in crosscheck.values():
        assert float(full.frame_drift.max()) < 1e-10
        # balancedness: the flow conserves s_l^2 - s_0^2 (= 0 here); GD drifts by
        # O(eta^2) per step, so O(eta) over the run
        s2 = full.s.values**2
        imbalance = np.abs(s2 - s2[:, :1]).max() / s2.max()
        assert imbalance < 0.05 * full.attrs["eta"], imbalance


def test_weight_decay_squared_loss_matches_reduced():
    """Squared loss + weight decay: the reduced ODE (with -wd s) is GD's flow."""
    lam0 = np.linspace(0.2, 0.9, K)
    model = svflow.spectral_model(lam0, depth=2, width=K, key=2, loss="squared", weight_decay=0.02)
    full = svflow.train(model, eta=0.01, t_end=10.0, num_times=21)
    reduced = svflow.simulate(
        K,
        2,
        init=lam0,
        loss="squared",
        weight_decay=0.02,
        times=full.time.values,
        solver=svflow.Solver(rtol=1e-10, atol=1e-12),
    )
    assert lam_rel_error(full, reduced) < 5e-3
    np.testing.assert_allclose(full.objective.values, reduced.objective.values, rtol=5e-3)


@pytest.mark.parametrize(
    "activation,loss,wd",
    [
        ("linear", "ce", 0.0),
        ("relu", "ce", (0.01, 0.02, 0.03)),
        ("relu", "squared", 0.05),
        ("linear", "squared", 0.0),
    ],
)
def test_gradient_matches_finite_differences(activation, loss, wd):
    model = svflow.random_model(
        4,
        depth=2,
        width=5,
        scale=1.5,
        key=11,
        samples_per_class=2,
        activation=activation,
        loss=loss,
        weight_decay=wd,
    )
    g = model.gradient()
    rng = np.random.default_rng(5)
    for _ in range(3):
        v = tuple(jnp.asarray(rng.standard_normal(A.shape)) for A in model.factors)
        h = 1e-6
        plus = model.objective(tuple(A + h * dA for A, dA in zip(model.factors, v)))
        minus = model.objective(tuple(A - h * dA for A, dA in zip(model.factors, v)))
        fd = float(plus - minus) / (2 * h)
        ad = float(sum(jnp.sum(gA * dA) for gA, dA in zip(g, v)))
        assert abs(fd - ad) < 1e-7 * max(1.0, abs(ad)), (fd, ad)


def test_losses_against_direct_formulas(rng):
    """Mean CE and squared loss computed column by column in numpy."""
    H = rng.standard_normal((6, 4 * 3))
    W = rng.standard_normal((4, 6))
    m = svflow.model_from_arrays([H, W], loss="ce")
    Z = W @ H
    y = np.repeat(np.arange(4), 3)
    ce = np.mean([np.log(np.exp(Z[:, j]).sum()) - Z[y[j], j] for j in range(12)])
    assert abs(float(m.data_loss()) - ce) < 1e-12
    sq = svflow.model_from_arrays([H, W], loss="squared", weight_decay=(0.1, 0.2))
    Y = np.eye(4)[:, y]
    want = 0.5 * np.sum((Z - Y) ** 2) / 12 + 0.05 * np.sum(H**2) + 0.1 * np.sum(W**2)
    assert abs(float(sq.objective()) - want) < 1e-10


def test_relu_is_between_weight_layers_only(rng):
    H = rng.standard_normal((5, 4))
    W1, W2 = rng.standard_normal((5, 5)), rng.standard_normal((4, 5))
    m = svflow.model_from_arrays([H, W1, W2], activation="relu")
    np.testing.assert_allclose(np.asarray(m.logits()), W2 @ np.maximum(W1 @ H, 0), atol=1e-12)
    assert np.any(np.asarray(m.logits()) < 0)  # no ReLU on the output


def test_random_start_two_factors_reaches_neural_collapse():
    """N = 2, CE, random start: the non-zero singular values of centred Z equalise."""
    model = svflow.random_model(4, depth=1, width=32, scale=1.0, key=3)
    ds = svflow.train(model, eta=1.0, t_end=3000.0, num_times=21)
    sig = ds.sigma.values[-1]
    nz = sig[sig > 1e-8 * sig[0]]
    assert nz.size == 3  # rank K - 1
    assert nz.max() / nz.min() < 1.1, nz
    assert ds["rank"].values[-1] == 3
    assert ds.loss.values[-1] < 1e-3


def test_float32_runs_and_is_recorded():
    model = small_model(scale=1.0)
    ds = svflow.train(model, eta=0.1, steps=50, num_times=6, dtype=jnp.float32)
    assert ds.attrs["dtype"] == "float32"
    assert ds.attrs["engine"] == "full"
    assert ds.attrs["steps"] == 50 and ds.attrs["eta"] == 0.1
    np.testing.assert_allclose(ds.time.values, ds.step.values * 0.1)
    ds64 = svflow.train(model, eta=0.1, steps=50, num_times=6)
    np.testing.assert_allclose(ds.loss.values, ds64.loss.values, rtol=1e-4)


def test_divergence_names_the_step():
    model = small_model(scale=3.0, loss="squared")
    with pytest.raises(DivergenceError, match=r"step \d+.*smaller step size"):
        svflow.train(model, eta=50.0, steps=2000, num_times=5)


def test_bad_input():
    with pytest.raises(ValueError, match="width d >= K"):
        svflow.spectral_model(LAM0, depth=2, width=4)
    model = svflow.random_model(4, depth=1, width=8)
    for eta in (0.0, -0.1, float("nan")):
        with pytest.raises(ValueError, match="eta"):
            svflow.train(model, eta=eta, steps=10)
    with pytest.raises(ValueError, match="exactly one"):
        svflow.train(model, eta=0.1)
    with pytest.raises(ValueError, match="factor shapes"):
        svflow.model_from_arrays([np.ones((5, 4)), np.ones((6, 6)), np.ones((4, 6))])
    with pytest.raises(ValueError, match="columns"):
        svflow.model_from_arrays([np.ones((5, 7)), np.ones((4, 5))])
    with pytest.raises(ValueError, match="s\\(0\\) of shape"):
        svflow.spectral_model(np.ones((2, 8)), depth=3, width=16)
    with pytest.raises(ValueError, match="weight_decay"):
        svflow.random_model(4, depth=2, width=8, weight_decay=(0.1, 0.1))
    with pytest.raises(ValueError, match="activation"):
        small_model(activation="tanh")
    with pytest.raises(ValueError, match="power of two"):
        svflow.spectral_model(np.ones(6), depth=2, width=8, group="walsh")


@pytest.mark.slow
def test_phase_map_is_the_outcome_and_the_flow_seed_by_seed(tmp_path):
    """Each cell of the map: the random-start outcome of svflow.outcome on the same starts,
    and the snapshot is svflow.flow's rank at t (log-time clock, an independent grid);
    a checkpointed map resumes without recomputing and gives the same numbers."""
    kw = dict(seeds=(3, 4), snapshot_time=50.0, horizons=(10.0,), progress=False)
    ds = svflow.studies.phase_map((4,), (1, 2), (5,), checkpoint=tmp_path, **kw)
    assert dict(ds["outcome"].sizes) == {"classes": 1, "depth": 2, "width": 1, "seed": 2}
    assert ds["limit"].sizes["sv"] == 3 and ds.seed.values.tolist() == [3, 4]
    for L in (1, 2):
        models = [svflow.random_model(4, depth=L, width=5, key=s) for s in (3, 4)]
        out = svflow.outcome(init=models, horizons=(10.0,))
        cell = ds.sel(classes=4, depth=L, width=5)
        np.testing.assert_array_equal(cell["outcome"].values, out.outcome.values)
        ref = svflow.flow(models, times=[50.0])
        np.testing.assert_array_equal(cell["snapshot_rank"].values, ref["rank"].values[:, 0])
        sig = ref.sigma.values[:, 0]
        np.testing.assert_allclose(cell["snapshot_sv_ratio"].values, sig[:, 2] / sig[:, 0], rtol=1e-4)
    assert len(list(tmp_path.glob("cell_*.nc"))) == 2
    again = svflow.studies.phase_map((4,), (1, 2), (5,), checkpoint=tmp_path, **kw)
    np.testing.assert_array_equal(again["cpu_time_s"].values, ds["cpu_time_s"].values)  # reused
    np.testing.assert_array_equal(again["limit"].values, ds["limit"].values)
    # a cell decided by another outcome rule is recomputed, not reused
    path = tmp_path / "cell_K4_L1_d5.nc"
    stale = xr.load_dataset(path)
    stale.attrs["rule"] = "an earlier rule"
    stale.to_netcdf(path)
    svflow.studies.phase_map((4,), (1, 2), (5,), checkpoint=tmp_path, **kw)
    assert xr.load_dataset(path).attrs["rule"] == ds.attrs["rule"]
    # the message is svflow's or, under the test session's runtime type checker, jaxtyping's
    with pytest.raises(TypeError, match="(?i)sequence"):
        svflow.studies.phase_map((4,), (1,), (5,), seeds=2)


def test_step_grid_always_ends_at_the_last_step():
    from svflow._full.train import step_grid

    assert list(step_grid(1000, 2)) == [0, 1000]
    g = step_grid(12345, 7)
    assert g[0] == 0 and g[-1] == 12345 and len(g) == 7 and all(np.diff(g) > 0)
