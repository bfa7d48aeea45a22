"""The reduced ODE is the true gradient flow: checked against jax.grad of the
explicit matrix product, and against closed forms and conservation laws."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import scipy.linalg
import scipy.special

import svflow
from svflow._fields import rhs_balanced, rhs_factors


def _orthonormal(rng, d, k):
    q, _ = np.linalg.qr(rng.normal(size=(d, k)))
    return q


def _explicit_loss(factors, loss, wd):
    """Mean loss of Z = W_L ... W_1 H with one-hot Y = I, plus (wd/2) sum ||.||^2."""
    Z = factors[0]
    for W in factors[1:]:
        Z = W @ Z
    K = Z.shape[0]
    if loss == "ce":
        data = jnp.mean(jax.scipy.special.logsumexp(Z, axis=0) - jnp.diag(Z))
    else:
        data = jnp.sum((Z - jnp.eye(K)) ** 2) / (2 * K)
    return data + 0.5 * wd * sum(jnp.sum(W**2) for W in factors)


@pytest.mark.parametrize("loss", ["ce", "squared"])
@pytest.mark.parametrize("depth", [1, 3])
@pytest.mark.parametrize("wd", [0.0, 0.05])
def test_rhs_is_minus_gradient_of_explicit_product(loss, depth, wd, rng):
    K, d = 8, 11
    N = depth + 1
    s = rng.uniform(0.3, 1.5, size=(N, K)) * rng.choice([-1, 1], size=(N, K))
    U = scipy.linalg.hadamard(K) / np.sqrt(K)
    V = [_orthonormal(rng, d, K) for _ in range(depth)]
    # H = V_1 diag(s_0) U^T, W_l = V_{l+1} diag(s_l) V_l^T, W_L = U diag(s_L) V_L^T
    frames_out = V + [U]
    frames_in = [U] + V
    factors = [frames_out[l] @ np.diag(s[l]) @ frames_in[l].T for l in range(N)]
    grads = jax.grad(_explicit_loss)([jnp.asarray(f) for f in factors], loss, wd)
    # project -grad onto the frozen frames: ds_{l,i}/dt = u_out_i^T (-grad W_l) u_in_i
    proj = np.stack([np.diag(frames_out[l].T @ (-np.asarray(grads[l])) @ frames_in[l]) for l in range(N)])
    np.testing.assert_allclose(
        rhs_factors(0.0, jnp.asarray(s), loss, wd, svflow.Walsh(K)), proj, rtol=1e-10, atol=1e-13
    )
    # and the gradient has no component outside the frames
    for l in range(N):
        G = frames_out[l].T @ np.asarray(grads[l]) @ frames_in[l]
        np.testing.assert_allclose(G - np.diag(np.diag(G)), 0, atol=1e-13)


@pytest.mark.parametrize("loss", ["ce", "squared"])
def test_balanced_law_equals_factor_law_on_balanced_state(loss, rng):
    K, N = 8, 4
    lam = rng.uniform(0.1, 2, size=K) * rng.choice([-1, 1], size=K)
    s = svflow._start.balanced_factors(jnp.asarray(lam), N)
    ds = rhs_factors(0.0, s, loss, 0.02, svflow.Walsh(K))
    # d lam / dt = sum_l (prod_{j != l} s_j) ds_l/dt (chain rule)
    dlam = sum(jnp.prod(jnp.delete(s, l, axis=0), axis=0) * ds[l] for l in range(N))
    np.testing.assert_allclose(
        rhs_balanced(0.0, jnp.asarray(lam), loss, 0.02, N, svflow.Walsh(K)), dlam, rtol=1e-12, atol=1e-14
    )


def test_balanced_and_unbalanced_paths_agree():
    K, depth = 8, 3
    start = svflow.spectral_init(K, depth, scale=0.05, spread=0.5, seed=3)
    fast = svflow.simulate(K, depth, init=start, t_end=1e5, num_times=41)
    slow = svflow.simulate(K, depth, init=np.asarray(start.s0), t_end=1e5, num_times=41)
    assert fast.attrs["balanced_path"] and not slow.attrs["balanced_path"]
    np.testing.assert_allclose(fast.lam, slow.lam, rtol=1e-6, atol=1e-9)


def test_conservation_of_balancedness(rng):
    K, depth = 8, 3
    s0 = rng.uniform(0.05, 0.4, size=(depth + 1, K))
    ds = svflow.simulate(
        K, depth, init=s0, t_end=1e6, num_times=31, solver=svflow.Solver(rtol=1e-10, atol=1e-12)
    )
    s2 = ds.s.values**2
    for l in range(1, depth + 1):
        diff = s2[:, l] - s2[:, 0]
        ref = s2[0, l] - s2[0, 0]
        scale = np.maximum(np.abs(ref), s2[:, l].max(axis=0))
        # modes 1..K-1 move (mode 0 is frozen under CE)
        assert np.max(np.abs(diff - ref) / scale) < 1e-8
    assert ds.lam.values[-1, 1:].max() > 10 * ds.lam.values[0, 1:].max()  # it did move


def test_squared_loss_two_factors_logistic_closed_form():
    # N = 2 balanced: d lam/dt = 2 lam (1 - lam) / K  =>  logistic
    K = 4
    lam0 = np.array([0.01, 0.02, 0.05, 0.3])
    ts = np.linspace(0, 40, 81)
    ds = svflow.simulate(
        K, 1, init=lam0, loss="squared", times=ts, solver=svflow.Solver(rtol=1e-10, atol=1e-12)
    )
    want = 1 / (1 + (1 / lam0 - 1) * np.exp(-2 * ts[:, None] / K))
    np.testing.assert_allclose(ds.lam, want, rtol=1e-7)


@pytest.mark.parametrize("seed", [0, 1, 2, 3])
def test_two_factors_ce_reaches_neural_collapse(seed):
    # N = 2: every mode shares one exponential rate early and the ratios are
    # pulled back to 1 (docs: theory/reduced-ode.md, 'Early-time repulsion'); the
    # approach is logarithmic in t.
    K = 8
    start = svflow.spectral_init(K, 1, scale=1e-2, spread=0.5, seed=seed)
    ds = svflow.simulate(K, 1, init=start, t_end=1e8, num_times=17)
    lam = ds.lam.values[:, 1:]
    ratio = lam.min(axis=1) / lam.max(axis=1)
    assert np.all(np.diff(ratio[4:]) > 0)  # still closing in, monotonically
    assert ratio[-1] > 0.8
    assert (1 - ratio[-1]) < 0.35 * (1 - ratio[0])  # the gap to NC shrank 3x
    assert int(ds["rank"][-1]) == K - 1


@pytest.mark.parametrize("depth", [5, 6])
def test_deep_ce_ends_low_rank(depth):
    K = 8
    for seed in range(3):
        ds = svflow.simulate(K, depth, init=svflow.spectral_init(K, depth, 1e-2, 0.5, seed), t_end=1e8)
        lam = ds.lam.values[-1]
        assert np.sum(lam > 0.5 * lam.max()) < K - 1
