"""Spectral starts over finite abelian groups (any K).

Routes: the basis against a dense diagonalisation of circulant softmax
matrices; the reduced right-hand side against ``jax.grad`` of the explicit
matrix product; the saturated 1 - mu against 50-digit arithmetic (mpmath);
full-parameter gradient descent against the reduced ODE (first order in eta).
"""

import math
import time

import jax
import jax.numpy as jnp
import mpmath
import numpy as np
import pytest
import scipy.special

import svflow
from svflow._fields import rhs_factors
from svflow._groups import AUTO_DENSE_MAX_FFT, resolve_group, tie_pairs

from helpers import lam_rel_error

GROUPS = [
    (3, None),
    (5, None),
    (6, None),
    (8, "cyclic"),
    (8, "walsh"),
    (10, None),
    (12, None),
    (12, (3, 4)),
    (12, (2, 6)),
    (8, (2, 4)),
]


def _orthonormal(rng, d, k):
    q, _ = np.linalg.qr(rng.normal(size=(d, k)))
    return q


def _paired(rng, shape, grp):
    return tie_pairs(rng.uniform(0.3, 1.5, size=shape), grp)


@pytest.mark.parametrize("K,group", GROUPS)
def test_basis_orthonormal_and_diagonalises_circulant_softmax(K, group, rng):
    grp = resolve_group(group, K)
    U = svflow.spectral_basis(K, group)
    np.testing.assert_allclose(U.T @ U, np.eye(K), atol=1e-14)
    np.testing.assert_allclose(U[:, 0], 1 / np.sqrt(K), atol=1e-15)
    # a random symmetric function on the group, Z[c, y] = f(c - y), built directly
    digits = np.stack(np.unravel_index(np.arange(K), grp.orders), -1)
    orders = np.array(grp.orders)
    diff = np.ravel_multi_index(
        tuple(((digits[:, None, :] - digits[None, :, :]) % orders).transpose(2, 0, 1)), grp.orders
    )  # (c, y) -> index of c - y
    neg = np.ravel_multi_index(tuple((-digits % orders).T), grp.orders)
    f = rng.normal(size=K)
    f = f + f[neg]  # symmetric: f(x) = f(-x)
    Z = f[diff]
    P = scipy.special.softmax(Z, axis=0)
    for M in (Z, P):
        D = U.T @ M @ U
        np.testing.assert_allclose(D - np.diag(np.diag(D)), 0, atol=1e-13)
        # paired modes carry one eigenvalue
        d = np.diag(D)
        np.testing.assert_allclose(d, d[grp.partner], atol=1e-13)
    # the library's margins and softmax eigenvalues, both methods
    lam = np.diag(U.T @ Z @ U)
    mu = np.diag(U.T @ P @ U)
    for method in ("dense", "fast"):
        np.testing.assert_allclose(grp.margins(lam, method=method), Z[0, 0] - Z[:, 0], atol=1e-12)
        np.testing.assert_allclose(svflow.softmax_eigenvalues(lam, group, method=method), mu, atol=1e-13)
    if isinstance(grp, svflow.Walsh):
        np.testing.assert_allclose(U, np.asarray(svflow.Walsh(K).hadamard()) / np.sqrt(K))


def test_cyclic_mode_order_and_coordinates():
    g = resolve_group(None, 10)
    assert g == svflow.Cyclic(10) and resolve_group(None, 16) == svflow.Walsh(16)
    assert list(g.frequency) == ["0", "1", "1", "2", "2", "3", "3", "4", "4", "5"]
    assert list(g.mode_part) == ["real"] + ["cos", "sin"] * 4 + ["real"]
    assert list(g.pair) == [0, 1, 1, 2, 2, 3, 3, 4, 4, 5]
    U = svflow.spectral_basis(10)
    x = np.arange(10)
    np.testing.assert_allclose(U[:, 3], np.sqrt(2 / 10) * np.cos(2 * np.pi * 2 * x / 10), atol=1e-15)
    np.testing.assert_allclose(U[:, 4], np.sqrt(2 / 10) * np.sin(2 * np.pi * 2 * x / 10), atol=1e-15)
    np.testing.assert_allclose(U[:, 9], (-1.0) ** x / np.sqrt(10), atol=1e-15)


def _explicit_loss(factors, loss, wd):
    Z = factors[0]
    for W in factors[1:]:
        Z = W @ Z
    K = Z.shape[0]
    if loss == "ce":
        data = jnp.mean(jax.scipy.special.logsumexp(Z, axis=0) - jnp.diag(Z))
    else:
        data = jnp.sum((Z - jnp.eye(K)) ** 2) / (2 * K)
    return data + 0.5 * wd * sum(jnp.sum(W**2) for W in factors)


@pytest.mark.parametrize("K", [3, 5, 6, 10, 12])
@pytest.mark.parametrize("depth", [1, 3])
@pytest.mark.parametrize("loss,wd", [("ce", 0.0), ("ce", 0.05), ("squared", 0.02)])
def test_rhs_is_minus_gradient_of_explicit_product(K, depth, loss, wd, rng):
    d = K + 3
    N = depth + 1
    grp = resolve_group(None, K)
    s = _paired(rng, (N, K), grp) * tie_pairs(rng.choice([-1, 1], size=(N, K)), grp)
    U = svflow.spectral_basis(K)
    V = [_orthonormal(rng, d, K) for _ in range(depth)]
    frames_out, frames_in = V + [U], [U] + V
    factors = [frames_out[l] @ np.diag(s[l]) @ frames_in[l].T for l in range(N)]
    grads = jax.grad(_explicit_loss)([jnp.asarray(f) for f in factors], loss, wd)
    proj = np.stack([np.diag(frames_out[l].T @ (-np.asarray(grads[l])) @ frames_in[l]) for l in range(N)])
    for method in ("dense", "fast"):
        np.testing.assert_allclose(
            rhs_factors(0.0, jnp.asarray(s), loss, wd, grp, method), proj, rtol=1e-10, atol=1e-13
        )
    for l in range(N):
        G = frames_out[l].T @ np.asarray(grads[l]) @ frames_in[l]
        np.testing.assert_allclose(G - np.diag(np.diag(G)), 0, atol=1e-13)


def test_one_minus_mu_keeps_relative_accuracy_when_saturated():
    K = 10
    grp = resolve_group(None, K)
    lam = np.asarray(tie_pairs(np.linspace(60.0, 90.0, K), grp))
    lam[0] = 0.0
    mpmath.mp.dps = 50
    U = svflow.spectral_basis(K)
    x = np.arange(K)
    # f(x) = (1/K) sum_j lam_j cos(2 pi k_j x / K), in 50 digits
    ks = [int(v) for v in grp.frequency]
    f = [
        sum(mpmath.mpf(float(lam[j])) * mpmath.cos(2 * mpmath.pi * ks[j] * xx / K) for j in range(K)) / K
        for xx in x
    ]
    z = sum(mpmath.exp(fx - f[0]) for fx in f)
    g = [mpmath.exp(fx - f[0]) / z for fx in f]
    want = np.array(
        [float(sum(g[xx] * (1 - mpmath.cos(2 * mpmath.pi * ks[j] * xx / K)) for xx in x)) for j in range(K)]
    )
    got = np.asarray(grp.one_minus_mu(jnp.asarray(lam), method="dense"))
    assert want[1:].max() < 1e-20  # deep in saturation: 1 - mu would round to 0
    np.testing.assert_allclose(got, want, rtol=1e-12, atol=0)
    fast = np.asarray(grp.one_minus_mu(jnp.asarray(lam), method="fast"))
    # the fft route subtracts: relative loss about 1 / (1 - cos(2 pi / K)) ~ 10 here
    np.testing.assert_allclose(fast, want, rtol=1e-13 / (1 - math.cos(2 * math.pi / K)), atol=0)
    assert np.all(U[:, 0] > 0)


def test_simulate_any_K_default_group_and_pair_errors():
    start = svflow.spectral_init(10, 3, scale=1e-2, seed=1)
    assert start.group == svflow.Cyclic(10)
    lam0 = np.asarray(start.lam0)
    np.testing.assert_array_equal(lam0, lam0[start.group.partner])
    ds = svflow.simulate(10, 3, init=lam0, t_end=1e4, num_times=11)
    assert ds.attrs["group"] == "cyclic"
    assert list(ds["pair"].values) == [0, 1, 1, 2, 2, 3, 3, 4, 4, 5]
    np.testing.assert_allclose(ds.lam.values, ds.lam.values[:, start.group.partner], rtol=1e-12)
    bad = lam0.copy()
    bad[4] *= 1.1
    with pytest.raises(ValueError, match="modes 3 and 4"):
        svflow.simulate(10, 3, init=bad)
    # the squared loss has no such constraint: (Z - I)/K is diagonal in any basis
    svflow.simulate(10, 1, init=np.linspace(0.1, 0.5, 10), loss="squared", t_end=1.0, num_times=3)
    with pytest.raises(ValueError, match="group"):
        svflow.simulate(10, 3, init=lam0, group="walsh")
    with pytest.raises(ValueError, match="group"):
        svflow.simulate(8, 3, init=svflow.spectral_init(8, 3, group="cyclic"), group="walsh")
    with pytest.raises(ValueError, match="product"):
        svflow.spectral_init(12, 2, group=(2, 4))
    with pytest.raises(ValueError, match="group"):
        svflow.spectral_init(12, 2, group="dihedral")


@pytest.mark.parametrize(
    "K,group,depth,width", [(6, "cyclic", 2, 8), (8, "cyclic", 2, 10), (8, "walsh", 2, 10)]
)
def test_full_gd_matches_reduced_ode_to_first_order(K, group, depth, width):
    grp = resolve_group(group, K)
    lam0 = np.asarray(tie_pairs(np.linspace(1.1, 0.5, K), grp))
    lam0[0] = 0.0
    model = svflow.spectral_model(lam0, depth=depth, width=width, key=5, group=group)
    np.testing.assert_allclose(
        np.asarray(model.logits()),
        svflow.spectral_basis(K, group) @ np.diag(lam0) @ svflow.spectral_basis(K, group).T,
        atol=1e-13,
    )
    errs = []
    for eta in (0.04, 0.02):
        full = svflow.train(model, eta=eta, t_end=20.0, num_times=21)
        assert float(full.frame_drift.max()) < 1e-10
        red = svflow.simulate(
            K,
            depth,
            init=lam0,
            times=full.time.values,
            solver=svflow.Solver(rtol=1e-10, atol=1e-12),
            group=group,
        )
        errs.append(lam_rel_error(full, red))
    order = np.log2(errs[0] / errs[1])
    assert errs[1] < 0.02 and 0.85 < order < 1.15, (errs, order)
    assert full.lam.values[-1, 1:].max() > 3 * lam0.max()  # the run did move


def test_walsh_and_cyclic_flows_differ_at_K8():
    """Both bases are valid for K = 8 but give different dynamics (different codes)."""
    lam0 = np.array([0.0, 1.0, 1.0, 0.8, 0.8, 0.6, 0.6, 0.9]) * 0.05
    a = svflow.simulate(8, 3, init=lam0, t_end=1e3, num_times=5, group="walsh")
    b = svflow.simulate(8, 3, init=lam0, t_end=1e3, num_times=5, group="cyclic")
    assert np.max(np.abs(a.lam.values[-1] - b.lam.values[-1])) > 1e-3


@pytest.mark.slow
def test_fft_crossover():
    """Times dense vs fft transforms for cyclic groups (prints; the chosen
    crossover must not be far from the measured one)."""
    res = {}
    for K in (16, 32, 64, 128, 256, 512):
        lam = jnp.asarray(np.random.default_rng(0).uniform(0, 1, (256, K)))
        t = {}
        for method in ("dense", "fast"):
            fn = jax.jit(lambda x, m=method, g=svflow.Cyclic(K): g.one_minus_mu(x, method=m))
            fn(lam).block_until_ready()
            tic = time.perf_counter()
            for _ in range(20):
                fn(lam).block_until_ready()
            t[method] = (time.perf_counter() - tic) / 20
        res[K] = t
        print(K, t)
    assert res[512]["fast"] < res[512]["dense"]
    assert res[16]["dense"] < 2 * res[16]["fast"]
    assert AUTO_DENSE_MAX_FFT in (16, 32, 64, 128, 256)


# --------------------------------------------------------------------------- codes


@pytest.mark.parametrize("K", [5, 6, 7, 8, 10, 12])
def test_cyclic_codes_against_known_optimal_margins(K):
    """The K-gon is the frequency-1 pair with rho = 1 - cos(2 pi / K); no cyclic code
    beats the known optimal one-vs-rest margin of its rank (svflow.studies.exact_rho)."""
    sup = svflow.studies.supports(K, "cyclic")
    freqs = list(sup["frequencies"].values)
    gon = freqs.index("{1}")
    assert int(sup["size"][gon]) == 2
    assert float(sup["rho"][gon]) == pytest.approx(1 - math.cos(2 * math.pi / K), rel=1e-13)
    assert float(sup["rho"][gon]) == pytest.approx(svflow.studies.exact_rho(K, 2), rel=1e-13)
    for r, rho in zip(sup["size"].values, sup["rho"].values):
        best = svflow.studies.exact_rho(K, int(r))
        if best is not None:
            assert rho <= best + 1e-12
    # every support is a union of pairs
    g = resolve_group("cyclic", K)
    mask = sup["mask"].values
    np.testing.assert_array_equal(mask, mask[:, g.partner])


def test_group_code_table_on_walsh_group_equals_binary_code_table():
    """Two routes for K = 8 Walsh: integer minimum distances (popcount) against the
    cosine formula over the group's characters."""
    from svflow._analysis.asymptotics import _pair_code_table

    a = svflow.code_table(8, range(2, 10))
    b = _pair_code_table(svflow.Walsh(8), range(2, 10), None)  # the route of every other group
    np.testing.assert_allclose(b["gamma"], a["gamma"], rtol=1e-12)
    np.testing.assert_allclose(b["gamma_global"], a["gamma_global"], rtol=1e-9)
    np.testing.assert_array_equal(b["size"], a["size"])


@pytest.mark.parametrize("K", [6, 10])
def test_code_table_gamma_is_the_normalised_margin_of_the_code(K):
    ct = svflow.code_table(K, range(2, 9))
    assert ct.attrs["group"] == "cyclic"
    for N in ct["factors"].values:
        lam = ct["example"].sel(factors=N).values.astype(float)  # equal lambda on S
        # margins straight from the logits Z = U diag(lam) U^T
        U = svflow.spectral_basis(K)
        Z = U @ np.diag(lam) @ U.T
        gap = np.diag(Z)[None, :] - Z
        m = np.min(gap + np.diag(np.full(K, np.inf)))
        gamma = m / (N * np.sum(lam[1:] ** (2 / N))) ** (N / 2)
        assert float(ct["gamma"].sel(factors=N)) == pytest.approx(gamma, rel=1e-12)
        assert float(ct["gamma_global"].sel(factors=N)) >= gamma * (1 - 1e-9)
    # deep models pick the K-gon (rank 2), N = 2 the simplex (NC)
    assert str(ct["name"].sel(factors=2).values) == "simplex (NC)"
    assert str(ct["name"].sel(factors=8).values).startswith(f"{K}-gon")


@pytest.mark.slow
def test_deep_cyclic_run_converges_to_the_hexagon_kkt_point():
    """K = 6, L = 5 from a start led by the frequency-1 pair: the direction converges
    to the 6-gon, a KKT point of the tied max-margin problem, and stays there when
    the run is continued 100 times longer."""
    K, L = 6, 5
    lam0 = np.array([0.0, 1.0, 1.0, 0.5, 0.5, 0.5]) * 1e-2
    ds = svflow.simulate(K, L, init=lam0, times=[0.0, 1e8, 1e10], solver=svflow.Solver(rtol=1e-9, atol=1e-12))
    pts = [svflow.max_margin_direction(ds.lam.values[i], L, group="cyclic") for i in (1, 2)]
    ct = svflow.code_table(K, [L + 1])
    for p in pts:
        assert p.converged, (p.kkt_residual, p.infeasibility)
        assert p.normalised_margin == pytest.approx(float(ct["gamma"][0]), rel=1e-8)
        np.testing.assert_array_equal(p.support, [False, True, True, False, False, False])
    np.testing.assert_allclose(pts[0].direction, pts[1].direction, atol=1e-8)
    d = ds.lam.values[1:] / np.linalg.norm(ds.lam.values[1:], axis=-1, keepdims=True)
    np.testing.assert_allclose(d[-1], pts[1].direction, atol=1e-3)


def test_octagon_objective_equals_full_model_objective_and_beats_hypercube():
    """ce_code_loss of the regular octagon equals the objective of explicit balanced
    factors run through the full model, which is a critical point there; at K = 8,
    wd = 1e-3 the octagon wins at L = 5 and 8 (0.02917 vs 0.02956, 0.02621 vs 0.03015)."""
    from svflow.explicit import polygon_code

    K, wd = 8, 1e-3
    for L, poly_want, hyp_want in ((5, 0.02917, 0.02956), (8, 0.02621, 0.03015)):
        N = L + 1
        loss, beta = svflow.explicit.ce_code_loss(polygon_code(K), L, weight_decay=wd)
        hyp, _ = svflow.explicit.ce_code_loss(svflow.explicit.hypercube_code(K), L, weight_decay=wd)
        assert loss == pytest.approx(poly_want, abs=6e-6)
        assert hyp == pytest.approx(hyp_want, abs=6e-6)
        best = svflow.explicit.ce_codes(K, L, weight_decay=wd)
        assert best.category == "polygon" and best.loss == pytest.approx(loss, rel=1e-12)
        # explicit factors: Z = beta Z0 = P diag(c^N) Q^T, every factor with values c
        Z0 = polygon_code(K)
        P, sv, Qt = np.linalg.svd(Z0)
        P, sv, Qt = P[:, :2], sv[:2], Qt[:2]
        np.testing.assert_allclose(sv, K / 2, rtol=1e-12)
        c = (beta * sv) ** (1.0 / N)
        rng = np.random.default_rng(L)
        d = 5
        R = [np.linalg.qr(rng.normal(size=(d, 2)))[0] for _ in range(L)]
        outs, ins = R + [P], [Qt.T] + R
        factors = [outs[l] @ np.diag(c) @ ins[l].T for l in range(N)]
        model = svflow.model_from_arrays(factors, loss="ce", weight_decay=wd)
        np.testing.assert_allclose(np.asarray(model.logits()), beta * Z0, atol=1e-12)
        assert float(model.objective()) == pytest.approx(loss, rel=1e-10)
        assert svflow.explicit.ce_objective(beta * Z0, L, weight_decay=wd) == pytest.approx(loss, rel=1e-10)
        grads = model.gradient()
        gnorm = np.sqrt(sum(float(jnp.sum(gr**2)) for gr in grads))
        fnorm = np.sqrt(sum(np.sum(f**2) for f in factors))
        assert gnorm < 1e-6 * fnorm  # a critical point of the full objective
    # hypercube still wins at L = 4, blocks (pairs) at L = 2
    assert svflow.explicit.ce_codes(K, 4, weight_decay=wd).category == "hypercube"
    assert svflow.explicit.ce_codes(K, 2, weight_decay=wd).category == "pairs"


# --------------------------------------------------------------------------- basins


def test_basin_starts_tie_pairs_and_leaders_are_pair_closed():
    g = resolve_group(None, 10)
    lam = np.asarray(svflow.studies.basin_start("random", 10, 0.01, 0.5, seed=3, group=g))
    np.testing.assert_array_equal(lam, lam[g.partner])
    assert lam[0] == 0 and len(set(lam[1:].round(15))) == 5  # one draw per class
    lag = np.asarray(svflow.studies.basin_start("lag", 10, 0.01, 0.3, group=g))
    np.testing.assert_allclose(lag, [0, 0.01, 0.01] + [0.007] * 7, rtol=1e-13)
    with pytest.raises(ValueError, match="both modes"):
        svflow.studies.basin_map(10, [1], [1e-2], [0.1], leaders=(1,))


@pytest.mark.slow
def test_cyclic_basin_map_nc_at_two_factors_and_polygon_when_deep():
    """N = 2 reaches NC from every lag (the L1 max-margin problem is won by the
    simplex); at L = 5 a large lag behind the frequency-1 pair ends at rank 2,
    the hexagon that the code table predicts for N = 6."""
    ds = svflow.studies.basin_map(6, [1, 5], [1e-2], [0.01, 0.8])
    assert ds.attrs["group"] == "cyclic" and list(ds["pair"].values) == [0, 1, 1, 2, 2, 3]
    oc = ds["outcome"].sel(eps=1e-2)
    assert np.all(oc.sel(depth=1).values == 0)
    assert int(oc.sel(depth=5, delta=0.8)) == 2
    assert int(svflow.code_table(6, [6])["size"][0]) == 2
    end = ds["lam_end"].sel(depth=5, eps=1e-2, delta=0.8).values
    support = ds["support"].sel(depth=5, eps=1e-2, delta=0.8).values
    # the pair stays tied exactly, and the certified support is that pair alone
    assert end[1] == end[2] and list(support) == [False, True, True, False, False, False]
