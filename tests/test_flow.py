"""svflow.flow: the full-parameter gradient flow, each check an independent route."""

import jax.numpy as jnp
import numpy as np
import pytest

import svflow

from helpers import LAM0, small_model

K, L, D = 8, 3, 16


def _imbalance(factors):
    """A_{l+1}^T A_{l+1} - A_l A_l^T for l = 0..L-1 (d x d each)."""
    A = [np.asarray(x) for x in factors]
    return [A[l + 1].T @ A[l + 1] - A[l] @ A[l].T for l in range(len(A) - 1)]


def _assert_conserved(model, end, ds):
    scale = float(ds.norm_sq.values[-1].max())
    assert scale > 1.3 * float(ds.norm_sq.values[0].max())  # the factors grew
    drift = max(np.abs(c1 - c0).max() for c0, c1 in zip(_imbalance(model.factors), _imbalance(end.factors)))
    # gradient descent (eta = 0.05) breaks it by O(eta^2) a step: ~1e-3 here
    assert drift < 1e-7 * scale, (drift, scale)


def test_flow_is_the_small_step_limit_of_gradient_descent():
    """|train(eta) - flow| = O(eta): the fitted order over eta = 0.04, 0.02, 0.01 is 1."""
    model = svflow.random_model(K, depth=L, width=D, key=1)
    times = np.array([1.0, 2.0, 4.0, 8.0, 12.0])  # saves after the start: t = 0 is implied
    fl = svflow.flow(model, times=times, solver=svflow.Solver(rtol=1e-10, atol=1e-12))
    np.testing.assert_array_equal(fl.time.values, times)
    etas = np.array([0.04, 0.02, 0.01])
    errs = []
    for eta in etas:
        gd = svflow.train(model, eta=eta, times=times)
        errs.append(np.max(np.abs(gd.sigma.values - fl.sigma.values)) / fl.sigma.values.max())
    order = np.polyfit(np.log(etas), np.log(errs), 1)[0]
    assert 0.9 < order < 1.1, (errs, order)
    assert errs[-1] < 5e-3, errs
    # the dynamics is not trivial over the window: the loss falls several-fold
    assert fl.loss.values[-1] < 0.2 * fl.loss.values[0]


def test_flow_from_a_spectral_start_is_the_reduced_ode():
    """Spectral start: diag(U^T Z U) follows simulate's lambda to the solver tolerance."""
    model = svflow.spectral_model(LAM0, depth=L, width=D, key=7)
    fl = svflow.flow(model, t_end=50.0, num_times=21, solver=svflow.Solver(rtol=1e-10, atol=1e-12))
    red = svflow.simulate(K, L, init=LAM0, times=fl.time.values, solver=svflow.Solver(rtol=1e-10, atol=1e-12))
    err = np.abs(fl.lam.values - red.lam.values).max() / np.abs(red.lam.values).max()
    assert err < 1e-7, err
    assert float(fl.frame_drift.max()) < 1e-8
    assert red.lam.values[-1, 1:].max() > 5 * LAM0.max()  # lambda grows several-fold


def test_balancedness_is_conserved_by_the_flow():
    """Without weight decay A_{l+1}^T A_{l+1} - A_l A_l^T is a constant of gradient flow
    (the double-log clock: test_double_log_run_matches_log_time_and_continues); with a
    uniform weight decay wd it decays exactly like e^{-2 wd t}."""
    model = svflow.random_model(4, depth=3, width=6, scale=1.5, key=3)
    ds, end = svflow.flow(
        model, t_end=1e4, num_times=5, solver=svflow.Solver(rtol=1e-10, atol=1e-12), return_model=True
    )
    _assert_conserved(model, end, ds)
    wd = 0.05
    decayed = small_model(width=6, scale=1.5, key=4, weight_decay=wd)
    ds, end = svflow.flow(
        decayed, t_end=20.0, num_times=5, solver=svflow.Solver(rtol=1e-10, atol=1e-12), return_model=True
    )
    for c0, c1 in zip(_imbalance(decayed.factors), _imbalance(end.factors)):
        np.testing.assert_allclose(c1, c0 * np.exp(-2 * wd * 20.0), atol=1e-8)
    assert ds.objective.values[-1] > ds.loss.values[-1]


@pytest.mark.slow
def test_double_log_run_matches_log_time_and_continues():
    """The double-log clock (log-domain drive) agrees with the log clock where both
    reach, conserves balancedness, and continuing it 10x further in tau changes no
    final rank."""
    models = [svflow.random_model(4, depth=3, width=8, key=k) for k in (0, 1)]
    short, ends = svflow.flow(
        models, log_t_end=30.0, num_times=31, solver=svflow.Solver(rtol=1e-10, atol=1e-12), return_model=True
    )
    for b in range(2):
        _assert_conserved(models[b], ends[b], short.isel(start=b))
    tau = short.log_t.values
    keep = tau <= 20.0
    plain = svflow.flow(models, times=np.expm1(tau[keep]), solver=svflow.Solver(rtol=1e-10, atol=1e-12))
    err = np.abs(plain.sigma.values - short.sigma.values[:, keep]).max() / short.sigma.values.max()
    assert err < 1e-6, err
    long = svflow.flow(models, log_t_end=300.0, num_times=11)
    np.testing.assert_array_equal(long["rank"].values[:, -1], short["rank"].values[:, -1])
    assert list(long["rank"].values[:, -1]) == [2, 3]
    assert np.all(long.result.values == 0) and long.num_steps.dims == ("start",)
    assert long.log_t.values[-1] == 300.0 and np.isclose(long.time.values[-1], np.expm1(300.0))


def test_a_continued_double_log_run_is_the_direct_run():
    """flow(end of a run to tau = 30, log_t_start=30, log_t_end=300) is the run to 300
    from t = 0 (to the solver tolerance), in a batch and with progress=True (one start);
    log_times saves at exactly the given tau."""
    models = [svflow.random_model(4, depth=2, width=6, key=k) for k in (3, 4)]
    tol = dict(solver=svflow.Solver(rtol=1e-10, atol=1e-12))
    direct = svflow.flow(models, log_times=[3.0, 30.0, 300.0], **tol)
    np.testing.assert_array_equal(direct.log_t.values, [3.0, 30.0, 300.0])
    _, mid = svflow.flow(models, log_t_end=30.0, num_times=5, return_model=True, **tol)
    cont = svflow.flow(mid, log_t_start=30.0, log_t_end=300.0, num_times=5, **tol)
    assert cont.log_t.values[0] == 30.0 and cont.log_t.values[-1] == 300.0
    scale = direct.sigma.values[:, -1].max()
    err = np.abs(cont.sigma.values[:, -1] - direct.sigma.values[:, -1]).max() / scale
    assert err < 1e-6, err
    # the logits grew ~10x from tau = 30 to 300 (s_1 ~ tau): the continuation moved
    assert direct.sigma.values[0, -1, 0] > 5 * direct.sigma.values[0, 1, 0]
    one = svflow.flow(mid[1], log_t_start=30.0, log_t_end=300.0, num_times=5, progress=True, **tol)
    np.testing.assert_allclose(one.sigma.values, cont.sigma.values[1], rtol=1e-6, atol=1e-12)
    np.testing.assert_allclose(one.log_t.values, cont.log_t.values)


def test_a_batch_is_the_same_as_single_runs():
    models = [small_model(key=k, scale=s) for k, s in ((0, 1.0), (5, 0.5))]
    batch = svflow.flow(models, t_end=100.0, num_times=11)
    assert batch.sigma.dims == ("start", "time", "sv")
    for b, m in enumerate(models):
        one = svflow.flow(m, t_end=100.0, num_times=11)
        np.testing.assert_allclose(batch.sigma.values[b], one.sigma.values, rtol=1e-9, atol=1e-12)
        np.testing.assert_allclose(
            batch.sigma_factor.values[b], one.sigma_factor.values, rtol=1e-9, atol=1e-12
        )
        assert int(batch.num_steps.values[b]) == one.attrs["num_steps"]


def _numpy_factor_spectra(factors, K):
    out = np.zeros((len(factors), K))
    for l, A in enumerate(factors):
        sv = np.linalg.svd(np.asarray(A, dtype=float), compute_uv=False)[:K]
        out[l, : sv.size] = sv
    return out


@pytest.mark.parametrize("batch", [False, True])
def test_sigma_factor_is_numpys_svd_of_the_returned_factors(batch):
    """The recorded factor spectra against numpy's SVD of the returned final
    factors (the model, not the flat state), for one start (the fused route) and a batch."""
    model = svflow.random_model(K, depth=L, width=D, key=4)
    given = [model, svflow.random_model(K, depth=L, width=D, key=5)] if batch else model
    ds, end = svflow.flow(given, t_end=1e3, num_times=5, return_model=True)
    ends = end if batch else [end]
    got = ds.sigma_factor.values if batch else ds.sigma_factor.values[None]
    assert got.shape == (len(ends), 5, L + 1, K)
    for b, m in enumerate(ends):
        want = _numpy_factor_spectra(m.factors, K)
        np.testing.assert_allclose(got[b, -1], want, rtol=0, atol=1e-13 * want.max())
    start = _numpy_factor_spectra(model.factors, K)  # the first record is the start
    np.testing.assert_allclose(got[0, 0], start, rtol=0, atol=1e-14 * start.max())


def test_factor_singular_values_match_numpy_on_hard_matrices():
    """The flat-state unpacking, the grouping by shape and the zero padding:
    tall, wide, square (one shape twice, apart in the order), graded
    (1 .. 1e-12), rank-deficient, zero and large matrices packed into one state
    vector, against numpy's SVD of each matrix on its own to 1e-14 of the
    largest; a signed permutation of diag(1 .. 1e-12) exactly to 1e-14 relative."""
    from svflow._full.flow import factor_singular_values

    rng = np.random.default_rng(0)
    graded = rng.standard_normal((12, 12)) @ np.diag(np.logspace(0, -12, 12))
    # a signed permutation of diag(1 .. 1e-12): its singular values exactly
    perm = np.diag(np.logspace(0, -12, 12))[rng.permutation(12)][:, rng.permutation(12)]
    clean_graded = perm * rng.choice([-1.0, 1.0], size=(12, 12))
    mats = [
        rng.standard_normal((16, 8)),
        rng.standard_normal((8, 16)),
        rng.standard_normal((16, 16)),
        graded,
        clean_graded,
        np.outer(rng.standard_normal(10), rng.standard_normal(7)),  # rank 1
        np.zeros((5, 3)),
        rng.standard_normal((1, 6)),
        rng.standard_normal((130, 140)),
        rng.standard_normal((140, 130)),
        rng.standard_normal((16, 8)),  # the first one's shape again, apart from it
    ]
    shapes = [A.shape for A in mats]
    keep = 140
    ys = np.concatenate([A.ravel() for A in mats])
    stacked = np.stack([ys, 2.0 * ys])  # a leading axis, every value doubled
    got = factor_singular_values(stacked, shapes, keep)
    assert got.shape == (2, len(mats), keep)
    np.testing.assert_allclose(got[1], 2.0 * got[0], rtol=1e-14, atol=0)
    for l, A in enumerate(mats):
        want = np.linalg.svd(A, compute_uv=False)
        k = want.size
        # the Gram route's certified 1e-10 relative, or gesdd's own value
        np.testing.assert_allclose(got[0, l, :k], want, rtol=1e-10, atol=1e-14 * max(want.max(), 1) * k)
        assert np.all(got[0, l, k:] == 0)
        assert np.all(np.diff(got[0, l, :k]) <= 0)
    np.testing.assert_allclose(got[0, 4, :12], np.logspace(0, -12, 12), rtol=1e-14)
    # fewer kept than min(r, c): the largest ones
    np.testing.assert_allclose(factor_singular_values(ys, shapes, 3), got[0, :, :3], rtol=1e-10, atol=0)


def test_factor_singular_values_gram_route_is_certified():
    """Matrices with known singular values (Q1 diag(s) Q2^T, Q's from QR of
    Gaussians): the certified Gram route holds 1e-10 relative (in fact about 1e-14) on well-conditioned
    ones and is used there (fewer SVD calls than matrices); a graded one (1 ..
    1e-7), whose Gram eigenvalues lose about 3e-4 of the smallest, goes to the SVD
    and keeps its smallest singular value to 1e-8 relative."""
    from svflow._full import flow as F

    rng = np.random.default_rng(3)

    def known(r, c, s):
        q1, _ = np.linalg.qr(rng.standard_normal((r, r)))
        q2, _ = np.linalg.qr(rng.standard_normal((c, c)))
        return q1[:, : len(s)] @ np.diag(s) @ q2[:, : len(s)].T

    well = [np.sort(rng.uniform(0.2, 3.0, 8))[::-1] for _ in range(20)]
    graded = np.logspace(0, -7, 8)
    mats = np.stack([known(16, 16, s) for s in well] + [known(16, 16, graded)])
    calls = []
    real_svd = np.linalg.svd

    def counting_svd(a, *args, **kw):
        calls.append(np.shape(a)[:-2])
        return real_svd(a, *args, **kw)

    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(F.np.linalg, "svd", counting_svd)
        got = F._stack_singular_values(mats, 8)
    assert calls == [(1,)]  # only the graded matrix went through the SVD
    np.testing.assert_allclose(got[:20], np.stack(well), rtol=1e-13, atol=0)
    np.testing.assert_allclose(got[20], graded, rtol=1e-8, atol=0)
    # the Gram route alone would have lost the graded matrix's smallest value
    lam = np.linalg.eigvalsh(mats[20].T @ mats[20])[::-1][:8]
    assert abs(np.sqrt(abs(lam[-1])) - graded[-1]) > 1e-5 * graded[-1]


def test_factor_singular_values_bad_input():
    from svflow._full.flow import factor_singular_values

    with pytest.raises(ValueError, match="P = 12"):
        factor_singular_values(np.ones(10), [(3, 4)], 3)
    with pytest.raises(ValueError, match="matrix shapes"):
        factor_singular_values(np.ones(4), [(4,)], 3)
    with pytest.raises(ValueError, match="keep"):
        factor_singular_values(np.ones(12), [(3, 4)], 0)
    with pytest.raises(ValueError, match="non-finite"):
        factor_singular_values(np.full(12, np.nan), [(3, 4)], 3)


def test_float32_model_flows_in_float64():
    model = small_model(key=2, dtype=jnp.float32)
    ds, end = svflow.flow(model, t_end=10.0, num_times=3, return_model=True)
    assert ds.attrs["dtype"] == "float64" and ds.attrs["engine"] == "flow"
    assert model.dtype == jnp.float32 and end.dtype == jnp.float32


def test_bad_input():
    model = small_model()
    with pytest.raises(TypeError, match="DeepUFM"):
        svflow.flow(np.ones((4, 4)), t_end=1.0)
    with pytest.raises(TypeError, match="DeepUFM"):
        svflow.flow([], t_end=1.0)
    with pytest.raises(ValueError, match="share"):
        svflow.flow([model, small_model(width=9)], t_end=1.0)
    with pytest.raises(ValueError, match="log_t_end"):
        svflow.flow(small_model(loss="squared"), log_t_end=10.0)
    with pytest.raises(ValueError, match="log_t_end"):
        svflow.flow(small_model(weight_decay=0.01), log_t_end=10.0)
    with pytest.raises(ValueError, match="alone"):
        svflow.flow(model, log_t_end=10.0, t_end=5.0)
    with pytest.raises(ValueError, match="not both"):
        svflow.flow(model, t_end=5.0, times=[1.0, 5.0])
    with pytest.raises(ValueError, match="increasing"):
        svflow.flow(model, times=[2.0, 1.0])
    with pytest.raises(ValueError, match="t_end"):
        svflow.flow(model, t_end=-1.0)
    with pytest.raises(ValueError, match="progress"):
        svflow.flow([model, model], t_end=1.0, progress=True)
    with pytest.raises(ValueError, match="log_t_end"):
        svflow.flow(model, log_t_start=10.0, t_end=5.0)
    with pytest.raises(ValueError, match="exceed"):
        svflow.flow(model, log_t_start=10.0, log_t_end=5.0)
    with pytest.raises(ValueError, match="log_t_start"):
        svflow.flow(model, log_t_start=10.0, log_times=[5.0, 20.0])
    with pytest.raises(ValueError, match="alone"):
        svflow.flow(model, log_times=[5.0, 20.0], log_t_end=30.0)


def test_progress_bar_runs_the_same_flow(capsys):
    """progress=True integrates with diffeqsolve (one start): the same trajectory."""
    model = svflow.random_model(4, depth=1, width=6, key=9)
    plain = svflow.flow(model, t_end=50.0, num_times=6)
    shown = svflow.flow(model, t_end=50.0, num_times=6, progress=True)
    np.testing.assert_allclose(shown.sigma.values, plain.sigma.values, rtol=1e-6, atol=1e-12)
    assert "%" in capsys.readouterr().err  # tqdm wrote a bar
