"""Public API behaviour: dataset layout, storage, errors."""

import math

import numpy as np
import pytest

import svflow

from helpers import walsh_ce_tau_law

# svflow's own calls compute in float64 even with JAX in float32 mode: these tests
# also pass with SVFLOW_TEST_X64=0 (python -m pytest -m scoped_x64)
pytestmark = pytest.mark.scoped_x64


def test_dataset_layout_and_derived_quantities():
    K, depth = 8, 2
    ds = svflow.simulate(K, depth, init=svflow.spectral_init(K, depth), t_end=1e3, num_times=21)
    assert dict(ds.sizes) == {"time": 21, "mode": K, "sv": K}
    assert ds.time.values[0] == 0 and math.isclose(ds.time.values[-1], 1e3)
    assert "s" not in ds  # a balanced run stores lam; its factors on request
    np.testing.assert_allclose(ds.lam, svflow.factor_values(ds).prod("factor"), rtol=1e-12)
    # margin/loss from a dense Z (independent of the Walsh closed forms)
    import scipy.linalg
    import scipy.special

    U = scipy.linalg.hadamard(K) / np.sqrt(K)
    for i in [0, 10, -1]:
        Z = U @ np.diag(ds.lam.values[i]) @ U.T
        other = np.where(np.eye(K, dtype=bool), -np.inf, Z).max(axis=0)
        assert math.isclose(float(ds.margin[i]), (np.diag(Z) - other).min(), abs_tol=1e-12)
        ce = np.mean(scipy.special.logsumexp(Z, axis=0) - np.diag(Z))
        assert math.isclose(float(ds.loss[i]), ce, rel_tol=1e-10)
        Zc = Z - Z.mean(axis=1, keepdims=True)
        np.testing.assert_allclose(ds.sigma.values[i], np.linalg.svd(Zc, compute_uv=False), atol=1e-12)
    for key in [
        "classes",
        "depth",
        "factors",
        "loss_name",
        "rtol",
        "svflow_version",
        "jax_version",
        "diffrax_version",
        "created",
        "num_steps",
        "init",
    ]:
        assert key in ds.attrs
    assert ds.attrs["factors"] == depth + 1


def test_save_load_roundtrip(tmp_path):
    ds = svflow.simulate(4, 1, init=[0.0, 0.1, 0.2, 0.3], t_end=10.0, num_times=11)
    path = svflow.save(ds, tmp_path / "sub" / "run.nc")
    assert svflow.load(path).identical(ds)  # svflow's own attrs are netCDF-safe as built
    # attrs a user adds that netCDF cannot hold are stored the CF way
    ds.attrs["extra_dict"] = {"a": 1, "b": [1, 2]}
    ds.attrs["flag"] = True
    ds.attrs["nothing"] = None
    back = svflow.load(svflow.save(ds, path))
    assert back.attrs["flag"] == 1 and back.attrs["nothing"] == "none"
    assert back.attrs["extra_dict_a"] == 1
    np.testing.assert_array_equal(back.attrs["extra_dict_b"], [1, 2])
    assert back.drop_attrs().identical(ds.drop_attrs())
    assert not list((tmp_path / "sub").glob("*.tmp"))


def test_explicit_times_and_lambda0_ignored_under_ce():
    ts = [0.0, 1.0, 5.0, 50.0]
    a = svflow.simulate(4, 2, init=[5.0, 0.1, 0.2, 0.3], times=ts)
    b = svflow.simulate(4, 2, init=[0.0, 0.1, 0.2, 0.3], times=ts)
    np.testing.assert_array_equal(a.time, ts)
    np.testing.assert_allclose(a.lam, b.lam)
    assert np.all(a.lam.values[:, 0] == 0)


@pytest.mark.parametrize(
    "kwargs, match",
    [
        (dict(classes=6, depth=2, init=np.ones(6), group="walsh"), "power of two"),
        (dict(classes=8, depth=0, init=np.ones(8)), "depth"),
        (dict(classes=8, depth=2, init=np.ones(8), t_end=-1.0), "t_end"),
        (dict(classes=8, depth=2, init=np.ones(7)), "shape"),
        (dict(classes=8, depth=2, init=np.ones((2, 8))), "shape"),
        (dict(classes=8, depth=2, init=np.array([0, 1, np.nan, 1, 1, 1, 1, 1.0])), "non-finite"),
        (dict(classes=8, depth=2, init=np.ones(8), loss="hinge"), "loss"),
        (dict(classes=8, depth=2, init=np.ones(8), weight_decay=-0.1), "weight_decay"),
        (dict(classes=8, depth=2, init=np.ones(8), times=[0.0, 2.0, 1.0]), "increasing"),
    ],
)
def test_bad_input(kwargs, match):
    with pytest.raises(ValueError, match=match):
        svflow.simulate(**kwargs)


def test_step_budget_exhausted_is_a_clear_error():
    with pytest.raises(svflow.IntegrationError, match="max_steps"):
        svflow.simulate(8, 3, init=svflow.spectral_init(8, 3), t_end=1e8, solver=svflow.Solver(max_steps=5))


def test_overflow_is_a_clear_error_not_nans():
    # lambda(0) = 1e300 is finite, but its gradient G * s overflows at once
    with pytest.raises(svflow.IntegrationError, match="non-finite|blew up"):
        svflow.simulate(4, 1, init=np.full((2, 4), 1e150), loss="squared", t_end=10.0)
    with pytest.raises(ValueError, match="overflows"):
        svflow.simulate(4, 3, init=np.full((4, 4), 1e120), loss="squared", t_end=10.0)


def test_balanced_factors_on_request_and_end_state_only():
    K, depth = 8, 3
    # start 0 has a negative and a zero mode (runs in lambda), start 1 is positive (runs in log lambda)
    lam0 = np.array([[0, 0.02, -0.01, 0.05, 0.03, 0, 0.04, 0.01], [0, 0.1, 0.05, 0.02, 0.01, 0.03, 0.2, 0.1]])
    kw = dict(init=lam0, batch_dims="start", t_end=1e5, num_times=41)
    lean = svflow.simulate(K, depth, **kw)
    full = svflow.simulate(K, depth, store_s=True, **kw)
    assert "s" not in lean and full["s"].dims == ("start", "time", "factor", "mode")
    for name in ("lam", "sigma", "loss", "objective", "margin", "rank"):
        np.testing.assert_array_equal(lean[name].values, full[name].values)
    xr_s = svflow.factor_values(lean)
    np.testing.assert_array_equal(xr_s.values, full["s"].values)
    # balanced factors: equal magnitudes, the sign of lambda on the last factor, product lambda
    s = full["s"].values
    np.testing.assert_allclose(np.abs(s), np.abs(s[:, :, :1]).repeat(depth + 1, axis=2), rtol=0)
    np.testing.assert_allclose(np.prod(s, axis=2), full["lam"].values, rtol=1e-13, atol=1e-300)
    # sigma and rank from the dense centred logits (an independent route)
    U = np.asarray(svflow.spectral_basis(K))
    Z = U @ np.diag(full["lam"].values[1, -1]) @ U.T
    Zc = Z - Z.mean(axis=0, keepdims=True)
    np.testing.assert_allclose(full["sigma"].values[1, -1], np.linalg.svd(Zc, compute_uv=False), atol=1e-12)
    # end state only: the same steps, so the same final state as the 41-save run
    end = svflow.simulate(K, depth, init=lam0, batch_dims="start", t_end=1e5, num_times=2)
    np.testing.assert_array_equal(end.time.values, [0.0, 1e5])
    np.testing.assert_array_equal(end["num_steps"].values, lean["num_steps"].values)
    np.testing.assert_allclose(end["lam"].values[:, -1], lean["lam"].values[:, -1], rtol=1e-14, atol=1e-300)
    # an unbalanced run integrates s itself: it is always stored
    s0 = np.abs(lam0[1]) ** (1 / 4) * np.ones((depth + 1, 1))
    assert "s" in svflow.simulate(K, depth, init=s0, t_end=1e3, num_times=3)
    with pytest.raises(ValueError, match="store_s"):
        svflow.simulate(K, depth, init=s0, t_end=1e3, num_times=3, store_s=False)
    with pytest.raises(TypeError, match="store_s"):
        svflow.simulate(K, depth, init=lam0[1], t_end=1e3, num_times=3, store_s="yes")


def test_log_variable_run_against_lambda_run_and_dop853():
    # balanced CE without weight decay runs in u = log(lambda); checked against the same law in
    # lambda (svflow's engine) and against scipy's DOP853 at rtol 1e-12 on the law written here
    import jax.numpy as jnp
    from scipy.integrate import solve_ivp

    from svflow._batch import solve_batch
    from svflow._integrate import Solver
    from svflow._simulate import ReducedField

    K, depth, t_end = 8, 3, 1e6
    N = depth + 1
    rng = np.random.default_rng(5)
    lam0 = rng.uniform(0.005, 0.1, size=(3, K))
    lam0[:, 0] = 0.0
    lam0[2, 3] = 0.0  # a zero mode: this start runs in lambda and the mode stays exactly 0
    lam0[2, 5] = -0.02  # a negative mode stays negative
    ds = svflow.simulate(K, depth, init=lam0, batch_dims="start", t_end=t_end, num_times=5)
    assert ds.attrs["log_variable_starts"] == 2
    lam_run = solve_batch(
        ReducedField(jnp.asarray(0.0), "ce", N, True),
        lam0,
        ds.time.values,
        Solver(rtol=1e-8, atol=1e-10),
    )
    law = walsh_ce_tau_law(K, N)

    for b in range(3):
        ref = solve_ivp(law, (0, np.log1p(t_end)), lam0[b], method="DOP853", rtol=1e-12, atol=1e-15).y[:, -1]
        scale = np.abs(ref).max()
        err_ds = np.abs(ds["lam"].values[b, -1] - ref).max() / scale
        err_lam = np.abs(lam_run.ys[b, -1] - ref).max() / scale
        assert err_ds < 1e-7 and err_lam < 1e-6, (b, err_ds, err_lam)
    assert ds["lam"].values[2, -1, 3] == 0.0 and ds["lam"].values[2, -1, 5] < 0
    np.testing.assert_array_equal(ds["lam"].values[2], lam_run.ys[2])  # the lambda start: the same run
    np.testing.assert_array_equal(ds["lam"].values[:, :, 0], 0.0)


def test_log_variable_field_is_the_balanced_law():
    # u' = lambda'/lambda for the Walsh and a cyclic frame, with and without weight decay
    import jax.numpy as jnp

    from svflow._fields import rhs_balanced
    from svflow._groups import resolve_group
    from svflow._simulate import ReducedField

    rng = np.random.default_rng(2)
    for K, group in ((8, "walsh"), (6, "cyclic")):
        grp = resolve_group(group, K)
        lam = rng.uniform(0.05, 3.0, size=K)
        lam[0] = 0.0
        for wd in (0.0, 0.03):
            f = ReducedField(jnp.asarray(wd), "ce", 4, True, group=grp, variable="log")
            du = np.asarray(f(0.0, jnp.asarray(np.log(np.where(np.arange(K) == 0, 1.0, lam)))))
            dlam = np.asarray(rhs_balanced(0.0, jnp.asarray(lam), "ce", wd, 4, group=grp))
            assert du[0] == 0.0
            np.testing.assert_allclose(du[1:] * lam[1:], dlam[1:], rtol=1e-12, atol=1e-15)
