"""The dataset's derived variables, computed in numpy (svflow._simulate._outputs), against
independent routes: JAX's closed forms in the frame and the dense logit matrix Z = U diag(lam) U^T."""

import jax.numpy as jnp
import numpy as np
import pytest
import scipy.special

import svflow
from svflow._fields import data_loss
from svflow._metrics import margin_from_lam
from svflow._simulate import FINITE_BOUND, ReducedField, _finite_at_start, _outputs

pytestmark = pytest.mark.scoped_x64


def _tied(group, lam):
    """lam with the two modes of every conjugate pair equal (a cross-entropy start), lam_0 = 0."""
    lam = 0.5 * (lam + lam[..., group.partner])
    lam[..., 0] = 0.0
    return lam


GROUPS = [
    svflow.Walsh(8),  # dense table
    svflow.Cyclic(6),  # dense table, cos / sin pairs
    svflow.Product(2, 3, 3),  # mixed radix, dense
    svflow.Cyclic(300),  # beyond AUTO_DENSE_MAX_FFT: numpy's group FFT
    svflow.Walsh(512),  # FFT over (2,) * 9
]


@pytest.mark.parametrize("group", GROUPS, ids=lambda g: f"{g.label}{g.classes}")
@pytest.mark.parametrize("scale", [1e-3, 3.0, 60.0])
def test_ce_loss_and_margin_match_jax_closed_forms(group, scale):
    K = group.classes
    rng = np.random.default_rng(K)
    lam = _tied(group, scale * rng.uniform(-0.5, 1.5, (3, 4, K)))
    out = _outputs(lam.copy(), True, 4, "ce", 0.0, 1e-6, group, store_s=False)
    loss = np.asarray(data_loss(jnp.asarray(lam), "ce", group))
    margin = np.asarray(margin_from_lam(jnp.asarray(lam), group))
    np.testing.assert_allclose(out["loss"], loss, rtol=1e-12, atol=0)
    np.testing.assert_allclose(out["margin"], margin, rtol=0, atol=1e-13 * scale * 2)
    np.testing.assert_array_equal(out["lam"], lam)
    np.testing.assert_array_equal(out["objective"], out["loss"])


@pytest.mark.parametrize("group", GROUPS[:3], ids=lambda g: f"{g.label}{g.classes}")
def test_ce_loss_and_margin_match_dense_logits(group):
    """Loss = mean over columns of logsumexp(Z) - Z_yy, margin = min_y (Z_yy - max_{c != y} Z_cy)."""
    K = group.classes
    rng = np.random.default_rng(1)
    lam = _tied(group, rng.uniform(-1.0, 4.0, (6, K)))
    out = _outputs(lam.copy(), True, 3, "ce", 0.0, 1e-6, group, store_s=False)
    U = group.basis()
    for i in range(lam.shape[0]):
        Z = U @ np.diag(lam[i]) @ U.T
        ce = np.mean(scipy.special.logsumexp(Z, axis=0) - np.diag(Z))
        other = np.where(np.eye(K, dtype=bool), -np.inf, Z).max(axis=0)
        assert out["loss"][i] == pytest.approx(ce, rel=1e-12)
        assert out["margin"][i] == pytest.approx((np.diag(Z) - other).min(), abs=1e-12)


def test_unbalanced_squared_loss_objective():
    """Unbalanced s (B, T, N, K), squared loss and weight decay: lam = prod_l s_l, the loss
    sum_i (lam_i - 1)^2 / (2K), the objective adds wd/2 sum_l ||s_l||^2, margin as JAX's."""
    group = svflow.Cyclic(5)
    rng = np.random.default_rng(2)
    s = rng.uniform(0.2, 1.5, (2, 3, 4, 5))
    wd = 0.01
    out = _outputs(s.copy(), False, 4, "squared", wd, 1e-6, group)
    lam = np.prod(s, axis=-2)
    loss = np.sum((lam - 1.0) ** 2, axis=-1) / 10
    np.testing.assert_allclose(out["lam"], lam, rtol=1e-15)
    np.testing.assert_allclose(
        out["loss"], np.asarray(data_loss(jnp.asarray(lam), "squared", group)), rtol=1e-13
    )
    np.testing.assert_allclose(out["loss"], loss, rtol=1e-13)
    np.testing.assert_allclose(out["objective"], loss + 0.5 * wd * np.sum(s**2, axis=(-2, -1)), rtol=1e-13)
    np.testing.assert_allclose(
        out["margin"], np.asarray(margin_from_lam(jnp.asarray(lam), group)), atol=1e-14
    )
    np.testing.assert_array_equal(out["s"], s)


def test_simulate_dataset_matches_jax_routes():
    """A public batch (the CPU kernel's u-runs) against the JAX closed forms of the same lam."""
    K, depth = 16, 3
    rng = np.random.default_rng(3)
    lam0 = 10 ** rng.uniform(-3, -1, (5, 1)) * rng.uniform(0.5, 1.5, (5, K))
    ds = svflow.simulate(K, depth, init=lam0, batch_dims="start", t_end=1e6, num_times=11)
    group = svflow.Walsh(K)
    lam = ds["lam"].values
    np.testing.assert_allclose(
        ds["loss"].values, np.asarray(data_loss(jnp.asarray(lam), "ce", group)), rtol=1e-12
    )
    np.testing.assert_allclose(
        ds["margin"].values,
        np.asarray(margin_from_lam(jnp.asarray(lam), group)),
        atol=1e-13 * np.abs(lam).max(),
    )


def test_finite_bound_holds_where_the_field_is_not_evaluated():
    """Balanced cross-entropy starts at |lam| = FINITE_BOUND with wd = FINITE_BOUND skip the field's
    evaluation (svflow._simulate._field_finite); the compiled field is finite there."""
    K, N = 8, 4
    lam = np.full((2, K), FINITE_BOUND)
    lam[1, 1::2] = -FINITE_BOUND
    lam[:, 0] = 0.0
    for wd in (0.0, FINITE_BOUND):
        field = ReducedField(jnp.asarray(wd), "ce", N, True, group=svflow.Walsh(K))
        assert bool(_finite_at_start(field, jnp.asarray(lam)))


def test_start_beyond_the_bound_is_still_checked():
    """Beyond FINITE_BOUND the field is evaluated: an overflowing gradient is a clear error."""
    lam0 = np.full(8, 1e300)  # |lam|^(2 - 2/N) = 1e400 overflows (N = 3)
    lam0[0] = 0.0
    with pytest.raises(svflow.IntegrationError, match="non-finite at the start"):
        svflow.simulate(8, 2, init=lam0, t_end=1.0, num_times=3)


@pytest.mark.parametrize(
    "values",
    [
        np.arange(6.0).reshape(2, 3),
        np.array([[1, 2, 3], [4, 5, 6]], dtype=np.int32),
        np.array([[True, False, True], [False, False, True]]),
        svflow._dims.text([["a", "b/c", "0"], ["x", "", "z"]]),
        np.array([["a", "bb", "c"], ["d", "e", "f"]]),
    ],
    ids=["float", "int", "bool", "object str", "fixed str"],
)
def test_variable_equals_xarrays_own_conversion(values):
    """svflow._dataset.variable (xarray's fastpath for plain arrays) gives the Variable xarray's
    own conversion gives: same dims, dtype, values and attrs."""
    import xarray as xr

    from svflow._dataset import variable

    a = variable(("x", "y"), values, {"units": "1"})
    b = xr.Variable(("x", "y"), values, {"units": "1"})
    assert a.identical(b) and a.dtype == b.dtype and type(a.data) is type(b.data) is np.ndarray


def test_variable_leaves_datetimes_and_other_objects_to_xarray():
    """Datetime arrays and object arrays that are not all ``str`` take xarray's conversion
    (datetime64[D] becomes xarray's nanosecond precision, as without svflow)."""
    import xarray as xr

    from svflow._dataset import variable

    days = np.array(["2026-12-07", "2026-12-08"], dtype="datetime64[D]")
    assert variable("t", days).identical(xr.Variable("t", days))
    assert variable("t", days).dtype == xr.Variable("t", days).dtype
    mixed = np.array(["a", 1], dtype=object)
    assert variable("m", mixed).identical(xr.Variable("m", mixed))


def test_simulate_does_not_import_dask_array():
    """A fresh process with dask installed: ``simulate`` on a batch builds its dataset without
    importing ``dask.array`` (xarray's dask probe of every new Variable costs a fresh process
    about 0.1-0.3 s; benchmarks/RESULTS.md section 17)."""
    import subprocess
    import sys

    pytest.importorskip("dask")
    code = (
        "import sys, numpy as np, svflow\n"
        "lam = np.random.default_rng(0).uniform(0.1, 1.0, (3, 8))\n"
        "ds = svflow.simulate(8, 3, init=lam, batch_dims='start', t_end=10.0, num_times=5)\n"
        "assert ds.sizes['start'] == 3\n"
        "print('dask.array' in sys.modules)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip().splitlines()[-1] == "False"
