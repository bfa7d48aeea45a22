"""Explicit low-rank bias: closed forms against explicitly built networks."""

import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from scipy.optimize import minimize, minimize_scalar

import svflow

# --- the 1-D scale problem


@pytest.mark.parametrize("N", [2, 3, 5, 9])
@pytest.mark.parametrize("c", [1e-4, 0.05, 0.2, 0.6, 2.0])
def test_scale_loss_against_dense_grid(N, c):
    q = np.linspace(0.0, 1.2, 1_200_001)
    brute = np.min(0.5 * (1 - q) ** 2 + 0.5 * N * c * q ** (2.0 / N))
    val, qopt = svflow.explicit.scale_loss(c, N)
    assert float(val) <= brute + 1e-15
    assert abs(float(val) - brute) < 1e-11
    # the minimiser is stationary (interior) or zero
    if float(qopt) > 0:
        assert abs((1 - qopt) - c * qopt ** (2.0 / N - 1)) < 1e-9


# --- SRG construction built as matrices


@pytest.mark.parametrize("r", [4, 5, 7])
def test_srg_matrices_structure(r):
    m = svflow.explicit.srg_matrices(r)
    K = r * (r - 1) // 2
    B = m.incidence
    assert B.shape == (r, K) and np.all(B.sum(axis=0) == 2)
    # Kneser adjacency: 1 exactly for disjoint edges
    for a, (u, v) in enumerate(m.edges):
        for b, (x, y) in enumerate(m.edges):
            assert m.kneser[a, b] == float(len({u, v} & {x, y}) == 0)
    np.testing.assert_allclose(m.kneser @ m.kneser_inv, np.eye(K), atol=1e-12)
    # ||B||_* closed form (docs: theory/explicit-bias.md, 'The SRG construction')
    nuc = np.linalg.svd(B, compute_uv=False).sum()
    assert abs(nuc - (math.sqrt(2 * (r - 1)) + (r - 1) * math.sqrt(r - 2))) < 1e-12


@pytest.mark.parametrize("r", [4, 5, 6])
@pytest.mark.parametrize("L", [2, 3, 4, 6])
def test_srg_network_outputs_identity_and_rank(r, L):
    fs = svflow.explicit.srg_factors(r, L)
    K = r * (r - 1) // 2
    np.testing.assert_allclose(np.asarray(svflow.explicit.relu_forward(fs)), np.eye(K), atol=1e-12)
    if L >= 3:  # the layers after W_1 .. W_{L-2} carry rank r, the one after W_{L-1} rank K
        x = fs[0]
        for l, W in enumerate(fs[1:-1], start=1):
            x = np.maximum(W @ x, 0)
            assert np.linalg.matrix_rank(x) == (K if l == L - 1 else r)


CASES = [
    # r, L, lam_H, lam_W, n
    (4, 4, 0.004, 0.004, 1),
    (5, 3, 0.004, 0.004, 1),
    (5, 4, 0.01, [0.002, 0.004, 0.008, 0.001], 3),
    (6, 5, 0.003, [0.001, 0.02, 0.005, 0.004, 0.01], 2),
    (7, 3, 1e-3, [3e-3, 5e-4, 2e-3], 5),
    (4, 2, 0.004, [0.01, 0.001], 1),
]


@pytest.mark.parametrize("r,L,lam_H,lam_W,n", CASES)
def test_srg_network_loss_equals_rho_closed_form(r, L, lam_H, lam_W, n):
    """Run the ReLU network on the built matrices, optimise the scale: equals the rho
    formula."""
    K = r * (r - 1) // 2
    net, q_net = svflow.explicit.construction_loss(
        svflow.explicit.srg_factors(r, L), lam_H=lam_H, lam_W=lam_W, samples=n
    )
    lams = np.concatenate([[lam_H], np.broadcast_to(lam_W, (L,))])
    Lam = (n * np.prod(lams)) ** (1.0 / (L + 1))
    closed = float(svflow.explicit.scale_loss(svflow.explicit.srg_rho(r, L) * K * Lam, L + 1)[0])
    assert abs(net - closed) < 1e-9
    # the closed-form rho, L >= 3
    if L >= 3:
        bn = math.sqrt(2 * (r - 1)) + (r - 1) * math.sqrt(r - 2)
        ainv = np.linalg.inv(svflow.explicit.srg_matrices(r).kneser)
        rho = (bn**2 * r ** (L - 2) * np.sum(ainv**2) / (4 * K**L)) ** (1 / (L + 1))
        assert abs(rho - svflow.explicit.srg_rho(r, L)) < 1e-12


def test_per_layer_scales_brute_force_unequal_lambdas():
    """Free per-layer scales (scipy over log c_j) reach the balanced closed form."""
    r, L, lam_H, lam_W, n = 5, 4, 0.01, [0.002, 0.004, 0.008, 0.001], 2
    fs = svflow.explicit.srg_factors(r, L)

    def obj(logc):
        return svflow.explicit.network_objective(
            [np.exp(c) * F for c, F in zip(logc, fs)],
            lam_H=lam_H,
            lam_W=lam_W,
            samples=n,
        )

    _, q = svflow.explicit.construction_loss(fs, lam_H=lam_H, lam_W=lam_W, samples=n)
    x0 = np.log(svflow.explicit.balanced_scales(fs, q, lam_H=lam_H, lam_W=lam_W, samples=n)) + 0.3 * np.sin(
        np.arange(L + 1)
    )
    res = minimize(obj, x0, method="BFGS", options={"gtol": 1e-12, "maxiter": 10_000})
    K = 10
    Lam = (n * lam_H * np.prod(lam_W)) ** (1 / (L + 1))
    closed = float(svflow.explicit.scale_loss(svflow.explicit.srg_rho(r, L) * K * Lam, L + 1)[0])
    assert abs(res.fun - closed) < 1e-10
    # at the optimum every factor pays the same penalty
    lams = np.array([lam_H * n, *lam_W])
    pen = lams * np.exp(2 * res.x) * np.array([np.sum(F**2) for F in fs])
    np.testing.assert_allclose(pen, pen.mean(), rtol=1e-4)


def test_rho_below_one_exactly_on_seed_thresholds():
    for r in range(4, 13):
        for L in range(3, 9):
            expected = (L == 3 and r >= 5) or (L >= 4 and r >= 4)  # K >= 10 / K >= 6
            rho_m = svflow.explicit.construction_rho(svflow.explicit.srg_factors(r, L))
            assert abs(rho_m - svflow.explicit.srg_rho(r, L)) < 1e-12
            assert (rho_m < 1) == expected, (r, L, rho_m)


# --- DNC


@pytest.mark.parametrize(
    "K,L,lam_H,lam_W,n",
    [
        (10, 4, 0.004, 0.004, 1),
        (6, 3, 0.02, [0.001, 0.01, 0.004], 4),
        (3, 2, 0.05, 0.03, 1),
    ],
)
def test_dnc_loss_equals_built_network_at_its_optimum(K, L, lam_H, lam_W, n):
    fs = svflow.explicit.dnc_factors(K, L, width=K + 5, seed=3)
    np.testing.assert_allclose(np.asarray(svflow.explicit.relu_forward(fs)), np.eye(K), atol=1e-12)

    def obj(logc):
        return svflow.explicit.network_objective(
            [np.exp(c) * F for c, F in zip(logc, fs)],
            lam_H=lam_H,
            lam_W=lam_W,
            samples=n,
        )

    best = min(
        minimize(obj, np.full(L + 1, x), method="BFGS", options={"gtol": 1e-12}).fun for x in (-0.5, 0.0, 0.3)
    )
    best = min(best, 0.5)  # the zero network
    assert abs(svflow.explicit.dnc_loss(K, L, lam_H=lam_H, lam_W=lam_W, samples=n) - best) < 1e-10


def test_dnc_zero_branch():
    # huge decay: the trivial point q = 0 wins (loss 1/2) for N >= 3
    assert svflow.explicit.dnc_loss(10, 4, lam_H=0.5, lam_W=0.5) == 0.5
    assert svflow.explicit.dnc_loss(10, 4, lam_H=0.0, lam_W=0.1) == 0.0


def test_gd_from_small_random_start_k2_reaches_dnc():
    """Plain jax full-batch GD on the L-DUFM (ReLU, squared loss, weight decay), K =
    2."""
    K, L, d, lam, lr, steps = 2, 3, 6, 0.005, 0.5, 40_000
    keys = jax.random.split(jax.random.PRNGKey(7), L + 1)
    params = [0.3 * jax.random.normal(keys[0], (d, K))]
    params += [0.3 * jax.random.normal(k, (d, d)) for k in keys[1:-1]]
    params += [0.3 * jax.random.normal(keys[-1], (K, d))]

    def objective(ps):
        Z = svflow.explicit.relu_forward(ps)
        return 0.5 * jnp.sum((Z - jnp.eye(K)) ** 2) / K + 0.5 * lam * sum(jnp.sum(p**2) for p in ps)

    grad = jax.jit(jax.value_and_grad(objective))

    @jax.jit
    def run(ps):
        def step(ps, _):
            v, g = grad(ps)
            return [p - lr * gp for p, gp in zip(ps, g)], v

        return jax.lax.scan(step, ps, None, length=steps)

    params, vals = run(params)
    final = float(objective(params))
    target = svflow.explicit.dnc_loss(K, L, lam_H=lam, lam_W=lam)
    assert target - 1e-12 < final < target + 1e-6, (
        final,
        target,
    )  # GD never beats the minimum
    Z = np.asarray(svflow.explicit.relu_forward(params))
    q = float(svflow.explicit.scale_loss(K * lam, L + 1)[1])
    np.testing.assert_allclose(Z, q * np.eye(K), atol=1e-3)


# --- deep linear cross-entropy model with weight decay


@pytest.mark.parametrize("K,L,wd,n", [(4, 3, 1e-3, 1), (10, 2, 1e-2, 1), (8, 5, 1e-4, 3)])
def test_ce_dnc_and_pairs_from_built_logits(K, L, wd, n):
    """Independent route: build Z (K x Kn), evaluate CE + balanced penalty from its SVD,
    and check the balanced factorisation's Frobenius penalty equals (wd/2) N sum
    sigma^(2/N)."""
    N = L + 1
    ones = np.ones((1, n))

    def dnc(a):
        return np.kron(a * (np.eye(K) - np.ones((K, K)) / K), ones)

    def pairs(b):
        blk = np.kron(np.eye(K // 2), b * np.array([[1.0, -1.0], [-1.0, 1.0]]))
        return np.kron(blk, ones)

    for build, fn in ((dnc, svflow.explicit.ce_dnc_loss), (pairs, svflow.explicit.ce_pair_loss)):
        val, x = fn(K, L, weight_decay=wd, samples=n)
        res = minimize_scalar(
            lambda a: svflow.explicit.ce_objective(build(a), L, weight_decay=wd),
            bounds=(1e-3, 60),
            method="bounded",
            options={"xatol": 1e-12},
        )
        assert abs(val - min(res.fun, math.log(K))) < 1e-10
        assert abs(x - res.x) < 1e-4
    # balanced factorisation of Z into N factors: penalty identity
    Z = dnc(3.0)
    U, s, Vt = np.linalg.svd(Z, full_matrices=False)
    root = s ** (1.0 / N)
    fs = [root[:, None] * Vt] + [np.diag(root)] * (N - 2) + [U * root]
    P = fs[-1]
    for F in reversed(fs[:-1]):
        P = P @ F
    np.testing.assert_allclose(P, Z, atol=1e-12)
    assert abs(0.5 * wd * sum(np.sum(F**2) for F in fs) - 0.5 * wd * N * np.sum(s ** (2.0 / N))) < 1e-12


def test_ce_pairs_beat_dnc_on_model_thresholds():
    """Pairs beat DNC when K >= 4 and L >= 3, or K >= 6 and L = 2 (docs:
    theory/explicit-bias.md, 'Deep linear UFM with cross-entropy and weight decay')."""
    for L in (1, 2, 3, 5):
        for K in (2, 4, 6, 8, 12):
            dnc = svflow.explicit.ce_dnc_loss(K, L, weight_decay=1e-3)[0]
            pair = svflow.explicit.ce_pair_loss(K, L, weight_decay=1e-3)[0]
            expected = (L >= 3 and K >= 4) or (L == 2 and K >= 6)
            assert (pair < dnc - 1e-12) == expected, (K, L, dnc, pair)


# --- phase maps


def test_phase_map_thresholds_emerge():
    ds = svflow.explicit.explicit_phase_map(
        range(2, 16), range(2, 6), relu_weight_decay=0.004, ce_weight_decay=1e-3
    )
    thr = svflow.explicit.dnc_thresholds(ds, "relu")
    assert np.isnan(thr.sel(depth=2))  # no known construction beats DNC at L = 2
    assert float(thr.sel(depth=3)) == 10 and float(thr.sel(depth=4)) == 6 and float(thr.sel(depth=5)) == 6
    assert np.all(
        ds["relu_category"].sel(classes=2).values
        == svflow.explicit._maps.RELU_CATEGORIES.index("no_known_construction_beats_DNC")
    )
    assert np.all(ds["relu_loss_best"] <= ds["relu_loss_dnc"] + 1e-15)
    thr_ce = svflow.explicit.dnc_thresholds(ds, "ce")
    assert float(thr_ce.sel(depth=2)) == 6 and float(thr_ce.sel(depth=3)) == 4


# --- bad input


def test_bad_input_raises():
    with pytest.raises(ValueError, match="r >= 4"):
        svflow.explicit.srg_matrices(3)
    with pytest.raises(ValueError, match="r >= 4"):
        svflow.explicit.srg_rho(2, 4)
    with pytest.raises(ValueError, match="lam_H"):
        svflow.explicit.dnc_loss(10, 4, lam_H=-1e-3, lam_W=0.004)
    with pytest.raises(ValueError, match=r"lam_W\[1\]"):
        svflow.explicit.dnc_loss(10, 3, lam_H=1e-3, lam_W=[0.1, -0.1, 0.1])
    with pytest.raises(ValueError, match="weight_decay"):
        svflow.explicit.ce_dnc_loss(4, 3, weight_decay=-1.0)
    with pytest.raises(ValueError, match="classes K"):
        svflow.explicit.dnc_loss(1, 4, lam_H=1e-3, lam_W=1e-3)
    with pytest.raises(ValueError, match="classes K"):
        svflow.explicit.ce_dnc_loss(1, 3, weight_decay=1e-3)
    with pytest.raises(ValueError, match="C\\(r, 2\\)"):
        svflow.explicit.srg_loss(8, 4, lam_H=1e-3, lam_W=1e-3, r=5)
    with pytest.raises(ValueError, match="L = 3"):
        svflow.explicit.dnc_loss(10, 3, lam_H=1e-3, lam_W=[1e-3, 1e-3])


# --- reduced ODE with weight decay against the closed forms; hypercube code


def test_reduced_ode_with_weight_decay_ends_at_pair_code():
    """Independent route: the reduced ODE's stationary point (K = 8, L = 3) is the 2 x 2
    block code."""
    K, L, wd = 8, 3, 1e-3
    ds = svflow.simulate(
        K,
        L,
        init=svflow.spectral_init(K, L, scale=0.5, spread=0.5, seed=0),
        loss="ce",
        weight_decay=wd,
        t_end=1e6,
        num_times=21,
    )
    lam = ds["lam"].isel(time=-1).values
    alive = np.abs(lam) > 1e-3 * np.abs(lam).max()
    assert alive.sum() == K // 2
    val, beta = svflow.explicit.ce_pair_loss(K, L, weight_decay=wd)
    assert abs(float(ds["objective"].isel(time=-1)) - val) < 1e-10
    np.testing.assert_allclose(lam[alive], 2 * beta, rtol=1e-5)


def test_hypercube_code_walsh_frame():
    """Hypercube code for K = 8 equals the Walsh code on modes {1, 2, 4}; at L = 5 it
    beats the pairs."""
    K, L, wd = 8, 5, 1e-3
    N = L + 1
    from svflow._walsh import ce_loss

    def walsh_obj(x):
        lam = np.zeros(K)
        lam[[1, 2, 4]] = x
        return float(ce_loss(jnp.asarray(lam))) + 0.5 * wd * N * 3 * x ** (2 / N)

    res = minimize_scalar(walsh_obj, bounds=(1.0, 100.0), method="bounded", options={"xatol": 1e-12})
    hyp, beta = svflow.explicit.ce_code_loss(svflow.explicit.hypercube_code(K), L, weight_decay=wd)
    assert abs(hyp - res.fun) < 1e-10
    assert abs(K * beta - res.x) < 1e-4  # Z = beta V^T V = (K beta) U_S U_S^T
    assert hyp < svflow.explicit.ce_pair_loss(K, L, weight_decay=wd)[0] - 1e-3
    # at L = 5 the regular octagon (rank 2) does better still; at L = 4 the hypercube wins
    assert svflow.explicit.ce_codes(K, L, weight_decay=wd).category == "polygon"
    assert svflow.explicit.ce_codes(K, 4, weight_decay=wd).category == "hypercube"


# --- GD with the full-parameter engine; layer diagnostics


def test_full_engine_gd_k2_reaches_dnc():
    """svflow.train on a ReLU / squared-loss / weight-decay DeepUFM, K = 2, n = 2, small
    random start.

    Width 20: at width 6 a sizeable share of starts end at dead-ReLU stationary
    points (one class switched off), which is not what this test is about."""
    K, L, lam, n = 2, 3, 0.005, 2
    target = svflow.explicit.dnc_loss(K, L, lam_H=lam, lam_W=lam, samples=n)
    for key in (1, 2, 3):
        model = svflow.random_model(
            K,
            depth=L,
            width=20,
            scale=0.5,
            key=key,
            samples_per_class=n,
            activation="relu",
            loss="squared",
            weight_decay=lam,
        )
        ds, model = svflow.train(model, eta=0.5, steps=40_000, num_times=5, return_model=True, progress=False)
        final = float(ds["objective"].isel(time=-1))
        assert target - 1e-12 < final < target + 1e-6, (key, final, target)
        names, mats = svflow.explicit.layer_representations(model.factors)
        assert svflow.explicit.nc1(mats[0], K) < 1e-6  # features collapsed within class


def test_layer_diagnostics_on_srg_network():
    """The built SRG network (r = 5, L = 4): class-mean ranks r before W_{L-1}'s ReLU, K
    after."""
    r, L = 5, 4
    fs = svflow.explicit.srg_factors(r, L)
    names, mats = svflow.explicit.layer_representations(fs)
    ranks = {nm: int((svflow.explicit.class_mean_spectra(X, 10) > 1e-9).sum()) for nm, X in zip(names, mats)}
    assert ranks == {
        "H": 5,
        "pre1": 5,
        "post1": 5,
        "pre2": 5,
        "post2": 5,
        "pre3": 5,
        "post3": 10,
        "Z": 10,
    }


def test_nc1_closed_form():
    """Two classes in R^2, means +-e1, within-class deviations +-e1 * a: NC1 = a^2 /
    K."""
    a = 0.3
    X = np.array([[1 + a, 1 - a, -1 + a, -1 - a], [0.0, 0.0, 0.0, 0.0]])
    # S_W = a^2 e1 e1^T, S_B = e1 e1^T -> tr(S_W S_B^+)/K = a^2 / 2
    assert abs(svflow.explicit.nc1(X, 2) - a**2 / 2) < 1e-12


def test_full_engine_objective_of_srg_network_equals_closed_form():
    """The SRG network at its optimal scales, embedded in width 30 and evaluated by the
    full engine's DeepUFM.objective, has objective L_SRG (unequal lambdas)."""
    r, L, K, d = 5, 4, 10, 30
    lam_H, lam_W = 0.01, [0.002, 0.004, 0.008, 0.001]
    fs = svflow.explicit.srg_factors(r, L)
    loss, q = svflow.explicit.construction_loss(fs, lam_H=lam_H, lam_W=lam_W)
    c = svflow.explicit.balanced_scales(fs, q, lam_H=lam_H, lam_W=lam_W)
    fs = [cj * F for cj, F in zip(c, fs)]
    emb = []
    for i, F in enumerate(fs):
        rows = K if i == L else d
        cols = K if i == 0 else d
        E = np.zeros((rows, cols))
        E[: F.shape[0], : F.shape[1]] = F
        emb.append(E)
    model = svflow.model_from_arrays(emb, activation="relu", loss="squared", weight_decay=[lam_H, *lam_W])
    Lam = (lam_H * np.prod(lam_W)) ** (1 / (L + 1))
    closed = float(svflow.explicit.scale_loss(svflow.explicit.srg_rho(r, L) * K * Lam, L + 1)[0])
    assert abs(float(model.objective()) - closed) < 1e-12
