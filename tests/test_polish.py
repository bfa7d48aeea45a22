"""The L-BFGS polish, gap ranks, the stored best points of the optimality map and the
direct minimisation of the CE model.

Routes: objectives and gradients recomputed by hand-written numpy code
(forward pass and back-propagation, no JAX) from the returned or stored
factors; the closed-form codes of the CE model as upper bounds.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import xarray as xr

import svflow

LAM = 0.004
MAP = Path(__file__).resolve().parents[1] / "figures" / "data" / "ldufm_optimality.nc"


def numpy_ldufm(factors, lam, samples=1):
    """(objective, gradient norm) of the L-DUFM by numpy forward and backward passes."""
    H, Ws = np.asarray(factors[0], float), [np.asarray(W, float) for W in factors[1:]]
    K = Ws[-1].shape[0]
    Y = np.repeat(np.eye(K), samples, axis=1)
    xs, pres = [H], []
    for l, W in enumerate(Ws):
        p = W @ xs[-1]
        pres.append(p)
        xs.append(np.maximum(p, 0.0) if l < len(Ws) - 1 else p)
    Z = xs[-1]
    M = Y.shape[1]
    obj = 0.5 * np.sum((Z - Y) ** 2) / M + 0.5 * lam * sum(np.sum(F**2) for F in [H, *Ws])
    grads = [None] * len(Ws)
    delta = (Z - Y) / M  # d obj / d (pre-activation of the last layer)
    for l in range(len(Ws) - 1, -1, -1):
        grads[l] = delta @ xs[l].T + lam * Ws[l]
        back = Ws[l].T @ delta
        delta = back * (pres[l - 1] > 0) if l > 0 else back
    gH = delta + lam * H
    gn = np.sqrt(sum(np.sum(g**2) for g in [gH, *grads]))
    return float(obj), float(gn)


def numpy_slope_gradient(factors, lam, slopes):
    """Flat gradient of the L-DUFM (n = 1) by numpy back-propagation with ReLU slope
    ``slopes[l]`` (a matrix of the pre-activation's shape, NaN = 1[P > 0]) at layer l."""
    H, Ws = np.asarray(factors[0], float), [np.asarray(W, float) for W in factors[1:]]
    K = Ws[-1].shape[0]
    xs, pres = [H], []
    for l, W in enumerate(Ws):
        p = W @ xs[-1]
        pres.append(p)
        xs.append(np.maximum(p, 0.0) if l < len(Ws) - 1 else p)
    delta = (xs[-1] - np.eye(K)) / K
    grads = [None] * len(Ws)
    for l in range(len(Ws) - 1, -1, -1):
        grads[l] = delta @ xs[l].T + lam * Ws[l]
        back = Ws[l].T @ delta
        if l > 0:
            D = np.where(np.isnan(slopes[l - 1]), pres[l - 1] > 0, slopes[l - 1])
            delta = back * D
        else:
            delta = back
    return np.concatenate([(delta + lam * H).ravel()] + [g.ravel() for g in grads])


def _ldufm_model(starts, lam=LAM):
    """The L-DUFM (ReLU, squared loss, weight decay lam) as a DeepUFM of the starts' shapes."""
    first = [np.asarray(F[0]) for F in starts]
    return svflow.model_from_arrays(first, activation="relu", loss="squared", weight_decay=lam)


def test_polish_lowers_the_objective_and_reports_its_gradient_norm():
    """polish on a small L-DUFM (K = 3, L = 3, width 6, two Gaussian starts, no GD):
    the returned objective and gradient norm agree with the numpy forward and
    backward passes at the returned factors, the objective went down, and the
    gradient norm of the smooth runs fell by orders of magnitude."""
    rng = np.random.default_rng(0)
    shapes = [(6, 3), (6, 6), (6, 6), (3, 6)]
    starts = tuple(np.stack([rng.normal(0, 0.6, s) for _ in range(2)]) for s in shapes)
    fs, obj, gn, gap = svflow.explicit.polish(_ldufm_model(starts), starts, max_steps=400)
    for k in range(2):
        o0, g0 = numpy_ldufm([F[k] for F in starts], LAM)
        o1, g1 = numpy_ldufm([F[k] for F in fs], LAM)
        assert o1 == pytest.approx(obj[k], rel=1e-12)
        assert g1 == pytest.approx(gn[k], rel=1e-6, abs=1e-13)
        assert o1 < o0
        assert g1 < 1e-3 * g0
        assert gap[k] <= gn[k] * (1 + 1e-9)  # slopes 1[P > 0] are one choice in the box


def test_gap_rank_cuts_at_the_largest_gap():
    assert svflow.explicit.gap_rank([3.0, 1.0, 1e-9, 1e-10]) == (2, pytest.approx(1e9))
    r, gap = svflow.explicit.gap_rank([1.0, 0.5, 0.25])  # no gap: full rank at the floor
    assert r == 3 and gap == pytest.approx(0.25 / 1e-14)
    assert svflow.explicit.gap_rank([0.0, 0.0])[0] == 0


@pytest.mark.skipif(not MAP.exists(), reason="committed optimality map not present")
def test_stored_below_dnc_points_reevaluate():
    """Every cell of the committed optimality map whose best run is below L_DNC: the
    stored factors, evaluated by the numpy forward pass, give the stored objective
    to 1e-10 (relative) and below (1 - beat_rtol) L_DNC; their gradient norm, by
    numpy back-propagation, is the stored one (a map of L-BFGS only) or not below
    the stored Clarke gap (a map re-polished with the kink stage), and the
    converged flag says whether the stationarity measure is under grad_tol."""
    ds = svflow.load(MAP)
    tol = float(ds.attrs["grad_tol"])
    rtol = float(ds.attrs["beat_rtol"])
    cells = [
        (int(K), int(L))
        for K in ds["classes"].values
        for L in ds["depth"].values
        if bool(ds["beats_dnc"].sel(classes=K, depth=L))
    ]
    assert cells, "the map claims no point below L_DNC"
    for K, L in cells:
        c = ds.sel(classes=K, depth=L)
        obj, gn = numpy_ldufm(svflow.explicit.map_parameters(ds, K, L), float(ds.attrs["lam"]))
        assert obj == pytest.approx(float(c["best_objective"]), rel=1e-10, abs=0)
        assert obj < (1 - rtol) * float(c["L_DNC"])
        assert int(c["n_below_dnc"]) >= 1
        if "best_clarke_gap" in ds:  # a map polished with the kink stage (repolish_map)
            # the plain gradient takes slope 1[P > 0] at kinks held at P ~ 1e-17 (a
            # round-off sign): one vertex of the slope box, so not below the Clarke gap
            assert gn >= float(c["best_clarke_gap"]) * (1 - 1e-6)
            assert bool(c["best_converged"]) == (float(c["best_clarke_gap"]) < tol)
        else:  # a map of 0.4 (L-BFGS only): the stored plain gradient norm
            assert gn == pytest.approx(float(c["best_grad_norm"]), rel=1e-6)
            assert bool(c["best_converged"]) == (gn < tol)


def test_kink_count_hand_computed():
    """K = 2, L = 2, d = 2, n = 1, H = I, W_1 = I: the pre-activation P = I has two
    entries at 0. With W_2 = [[.5, .5], [0, .5]] the signal dL/dX = W_2^T (Z - Y)/2
    = [[-1/8, 1/8], [-1/8, 0]] is non-zero at both: 2 live kinks. With W_2 = I/2 it is
    -I/8, zero off the diagonal: no live kink (the objective is differentiable)."""
    H, W1 = np.eye(2), np.eye(2)
    for W2, want in ((np.array([[0.5, 0.5], [0.0, 0.5]]), 2), (0.5 * np.eye(2), 0)):
        m = svflow.model_from_arrays([H, W1, W2], activation="relu", loss="squared", weight_decay=LAM)
        assert svflow.explicit.kink_count(m) == want
    with pytest.raises(TypeError, match="relu"):
        svflow.explicit.kink_count(svflow.model_from_arrays([H, W1, W1], loss="squared"))


def numpy_live_kinks(factors, rtol=1e-6, signal_tol=1e-6, positive=None):
    """Live kinks by numpy: |P| <= rtol max|P| per hidden layer and |dL/dX| > signal_tol.
    ``positive``: the ReLU slopes 1[P > 0] per hidden layer to back-propagate with (default:
    numpy's own P; a stored point has kinks at P ~ 1e-16, whose sign is round-off and may
    differ between numpy's and XLA's matrix products)."""
    H, Ws = np.asarray(factors[0], float), [np.asarray(W, float) for W in factors[1:]]
    K = Ws[-1].shape[0]
    xs, pres = [H], []
    for l, W in enumerate(Ws):
        pres.append(W @ xs[-1])
        xs.append(np.maximum(pres[-1], 0.0) if l < len(Ws) - 1 else pres[-1])
    delta, count = (xs[-1] - np.eye(K)) / K, 0
    for l in range(len(Ws) - 1, 0, -1):
        signal = Ws[l].T @ delta
        P = np.abs(pres[l - 1])
        count += int(np.sum((P <= rtol * P.max()) & (np.abs(signal) > signal_tol)))
        delta = signal * (pres[l - 1] > 0 if positive is None else np.asarray(positive[l - 1]))
    return count


@pytest.mark.slow
@pytest.mark.skipif(not MAP.exists(), reason="committed optimality map not present")
def test_live_kinks_mark_the_stalled_points_of_the_map():
    """At the stored best point of every cell of the committed map, kink_count equals
    the numpy count; the runs that stall (gradient norm above 1e-4) have live kinks and
    the converged ones (below 1e-6) have none. Of the stalled points all but at most
    one have live kinks at the default tolerances (a stalled point may sit with its
    kinks further from 0 than 1e-6 max|P|)."""
    ds = svflow.load(MAP)
    lam = float(ds.attrs["lam"])
    stalled = stalled_with_kinks = 0
    for K in ds["classes"].values:
        for L in ds["depth"].values:
            fs = svflow.explicit.map_parameters(ds, int(K), int(L))
            m = svflow.model_from_arrays(fs, activation="relu", loss="squared", weight_decay=lam)
            n = svflow.explicit.kink_count(m)
            # numpy's back-propagation with svflow's activation pattern (the signs of the
            # round-off kinks at P ~ 1e-16 come from the forward pass, not the count)
            names, mats = m.representations(fs)
            positive = [np.asarray(P) > 0 for nm, P in zip(names, mats) if nm.startswith("pre")]
            assert n == numpy_live_kinks(fs, positive=positive)
            gn = float(ds["best_grad_norm"].sel(classes=K, depth=L))
            if gn < 1e-6:
                assert n == 0, (int(K), int(L))
            elif gn > 1e-4:
                stalled += 1
                stalled_with_kinks += n > 0
    assert stalled >= 1 and stalled_with_kinks >= stalled - 1


def _one_kink_point():
    """K = 2, L = 2, d = 2: W_1's first row is orthogonal to H's first column, so
    P = W_1 H has one entry at 0, (0, 0), with a live signal."""
    H = np.array([[1.0, 0.3], [0.0, 0.8]])
    W1 = np.array([[0.0, 0.9], [0.5, 0.7]])
    W2 = np.array([[0.6, -0.4], [0.2, 0.9]])
    return [H, W1, W2]


def test_clarke_gap_at_one_kink_closed_form():
    """One kink (slope s): the gradient is affine in s, g(s) = g(0) + s (g(1) - g(0)),
    both ends by numpy back-propagation; its smallest norm over s in [0, 1] is the
    projection s* = clip(-g(0).c / |c|^2, 0, 1). The point is not stationary (a known
    positive gap) and s* is inside (0, 1), so the gap is below both one-sided
    gradient norms; with the ReLU's own slope (0 at P = 0) the plain gradient norm."""
    fs = _one_kink_point()
    P = fs[1] @ fs[0]
    assert P[0, 0] == 0.0 and np.sum(P == 0) == 1
    lo = np.full(P.shape, np.nan)
    lo[0, 0] = 0.0
    hi = lo.copy()
    hi[0, 0] = 1.0
    g0, g1 = numpy_slope_gradient(fs, LAM, [lo]), numpy_slope_gradient(fs, LAM, [hi])
    c = g1 - g0
    s = float(np.clip(-g0 @ c / (c @ c), 0.0, 1.0))
    assert 0.05 < s < 0.95
    want = float(np.linalg.norm(g0 + s * c))
    m = svflow.model_from_arrays(fs, activation="relu", loss="squared", weight_decay=LAM)
    gap = svflow.explicit.clarke_gap(m)
    assert gap == pytest.approx(want, rel=1e-9)
    assert 1e-3 < gap < min(np.linalg.norm(g0), np.linalg.norm(g1)) - 0.02
    assert numpy_ldufm(fs, LAM)[1] == pytest.approx(np.linalg.norm(g0), rel=1e-12)
    assert svflow.explicit.kink_count(m) == 1


def test_clarke_gap_without_kinks_is_the_gradient_norm():
    """No pre-activation near 0: the objective is smooth there and the gap is the
    gradient norm (numpy back-propagation)."""
    fs = _one_kink_point()
    fs[1] = fs[1] + np.array([[0.2, 0.0], [0.0, 0.0]])
    assert np.min(np.abs(fs[1] @ fs[0])) > 0.1
    m = svflow.model_from_arrays(fs, activation="relu", loss="squared", weight_decay=LAM)
    assert svflow.explicit.clarke_gap(m) == pytest.approx(numpy_ldufm(fs, LAM)[1], rel=1e-12)
    with pytest.raises(TypeError, match="relu"):
        svflow.explicit.clarke_gap(svflow.model_from_arrays(fs, loss="squared"))


def _hull_distance(G):
    """Distance from 0 to the convex hull of the columns of G (scipy NNLS on the
    simplex-augmented system)."""
    from scipy.optimize import nnls

    rho = 1e3 * max(1.0, float(np.abs(G).max()))
    A = np.vstack([G, rho * np.ones((1, G.shape[1]))])
    b = np.append(np.zeros(G.shape[0]), rho)
    lam_, _ = nnls(A, b, maxiter=50 * G.shape[1])
    lam_ = lam_ / lam_.sum()
    return float(np.linalg.norm(G @ lam_))


@pytest.mark.slow
def test_polish_reaches_a_kink_optimum_of_a_tiny_problem():
    """K = 3, L = 4, width 4, weight decay 0.004: GD from init scale 0.55 (seed 1) then
    polish ends at a point below 0.99 L_DNC (0.981 when measured) whose plain gradient
    norm stays ~1e-2 (a kink point), yet which is Clarke stationary: by numpy, the
    gradients of every smooth piece at its kinks (every sign pattern, the
    vertices of the slope box) span a convex hull within 1e-8 of 0; the returned
    objective is the numpy one."""
    fs, _ = svflow.explicit.ldufm_gd_batch(
        3, 4, width=4, weight_decay=LAM, eta=0.5, steps=4000, scales=(0.55,), seeds=(1,)
    )
    out, obj, gn, gap = svflow.explicit.polish(_ldufm_model(fs), fs, max_steps=300, smoothing_steps=300)
    point = [F[0] for F in out]
    o, g = numpy_ldufm(point, LAM)
    assert o == pytest.approx(obj[0], rel=1e-12)
    assert o < 0.99 * svflow.explicit.dnc_loss(3, 4, lam_H=LAM, lam_W=LAM)
    # the plain gradient takes slope 1[P > 0] at P ~ 1e-17, a round-off sign: only its size is compared
    assert g > 1e-3 and gn[0] > 1e-3
    assert gap[0] < 1e-8
    # the live kinks, by numpy: |P| <= 1e-6 max|P| with a non-zero signal
    x, pres = point[0], []
    for W in point[1:-1]:
        pres.append(W @ x)
        x = np.maximum(pres[-1], 0.0)
    kinks = [
        (l, i, j)
        for l, P in enumerate(pres)
        for i, j in zip(*np.nonzero(np.abs(P) <= 1e-6 * np.abs(P).max()))
    ]
    # at most 16 near-zero entries, so the 2^k patterns below enumerate
    assert len(kinks) <= 16

    def toggled(b, s):  # numpy's gradient with kink b at slope s, the rest at 1[P > 0]
        slopes = [np.full(P.shape, np.nan) for P in pres]
        l, i, j = kinks[b]
        slopes[l][i, j] = s
        return numpy_slope_gradient(point, LAM, slopes)

    # a kink is live when its slope moves the gradient (a dead entry's slope is idle): numpy's
    # count of those equals svflow's kink_count (its signal |dL/dX| > 1e-6 on the same face,
    # the later layers at slope 1[P > 0])
    live_np = sum(np.linalg.norm(toggled(b, 1.0) - toggled(b, 0.0)) > 1e-6 for b in range(len(kinks)))
    assert svflow.explicit.kink_count(_ldufm_model(fs), point) == live_np >= 1
    cols = []
    for bits in range(2 ** len(kinks)):
        slopes = [np.full(P.shape, np.nan) for P in pres]
        for b, (l, i, j) in enumerate(kinks):
            slopes[l][i, j] = (bits >> b) & 1
        cols.append(numpy_slope_gradient(point, LAM, slopes))
    pieces = np.unique(np.round(np.stack(cols), 14), axis=0)  # dead entries repeat pieces
    assert len(pieces) >= 2  # a kink point: more than one smooth piece meets there
    assert _hull_distance(pieces.T) < 1e-8


def numpy_clarke_bound(factors, lam, rtol=1e-6, iterations=30):
    """(an upper bound on the Clarke gap, the number of near-zero entries) of the L-DUFM
    (n = 1) at ``factors``, by numpy alone: the kinks are the hidden pre-activation
    entries with |P| <= rtol max|P| (dead ones included); the back-propagated
    gradient g(s) is multilinear in their slopes s, so its partial derivative in
    s_i is exactly g(s with s_i = 1) - g(s with s_i = 0); Gauss-Newton steps of
    box least squares (scipy ``lsq_linear``) over s in [0, 1]^k, and |g(s)| at the
    best s found is returned (every s in the box is a convex combination of the
    sign patterns' piece gradients, so it bounds the hull distance from above)."""
    from scipy.optimize import lsq_linear

    x, pres = np.asarray(factors[0], float), []
    for W in factors[1:-1]:
        pres.append(np.asarray(W, float) @ x)
        x = np.maximum(pres[-1], 0.0)
    kinks = [
        (l, i, j)
        for l, P in enumerate(pres)
        for i, j in zip(*np.nonzero(np.abs(P) <= rtol * np.abs(P).max()))
    ]

    def grad(s):
        slopes = [np.full(P.shape, np.nan) for P in pres]
        for v, (l, i, j) in zip(s, kinks):
            slopes[l][i, j] = v
        return numpy_slope_gradient(factors, lam, slopes)

    s = np.array([float(pres[l][i, j] > 0) for l, i, j in kinks])
    g = grad(s)
    best = float(np.linalg.norm(g))
    for _ in range(iterations):
        J = np.empty((g.size, s.size))
        for k in range(s.size):
            hi, lo = s.copy(), s.copy()
            hi[k], lo[k] = 1.0, 0.0
            J[:, k] = grad(hi) - grad(lo)
        trial = np.clip(lsq_linear(J, J @ s - g, bounds=(0.0, 1.0), method="bvls").x, 0.0, 1.0)
        g_trial = grad(trial)
        if not np.linalg.norm(g_trial) < best:
            break
        s, g, best = trial, g_trial, float(np.linalg.norm(g_trial))
    return best, len(kinks)


@pytest.mark.skipif(not MAP.exists(), reason="committed optimality map not present")
@pytest.mark.parametrize("K, L", [(3, 5), (6, 6)])
def test_map_point_certified_by_the_retried_kink_stage(K, L):
    """The stored best points of (K 3, L 5), below L_DNC at rank 2, and (K 6, L 6),
    below L_DNC at rank 3, which the nonsmooth polish certified only with its
    retries and active-set loop ((K 6, L 6) only in a third re-polish: Clarke gap
    3.8e-4, then 2.0e-6, 1.4e-6, 8.2e-7): the numpy objective is the stored one
    to 1e-10, the plain gradient norm is far above the tolerance (a kink point),
    and a numpy Gauss-Newton over the ReLU slopes of the near-zero
    pre-activations finds a slope choice whose back-propagated gradient is below
    grad_tol (an independent Clarke bound)."""
    ds = svflow.load(MAP)
    tol, lam = float(ds.attrs["grad_tol"]), float(ds.attrs["lam"])
    c = ds.sel(classes=K, depth=L)
    point = svflow.explicit.map_parameters(ds, K, L)
    obj, gn = numpy_ldufm(point, lam)
    assert obj == pytest.approx(float(c["best_objective"]), rel=1e-10, abs=0)
    assert obj < (1 - float(ds.attrs["beat_rtol"])) * float(c["L_DNC"])
    assert gn > 100 * tol
    bound, count = numpy_clarke_bound(point, lam)
    assert count >= 1
    assert bound < tol
    assert bool(c["best_converged"])


def _numpy_ce(factors, wd):
    Z = factors[0]
    for W in factors[1:]:
        Z = W @ Z
    K, M = Z.shape
    y = np.repeat(np.arange(K), M // K)
    mx = Z.max(axis=0)
    lse = np.log(np.exp(Z - mx).sum(axis=0)) + mx
    return float(np.mean(lse - Z[y, np.arange(M)]) + 0.5 * wd * sum(np.sum(F**2) for F in factors)), Z


def test_ce_minimum_small_two_routes():
    """K = 4, L = 2: the returned factors, evaluated by numpy, give the returned
    objective; the best balanced factorisation of the same logits (ce_objective,
    AM-GM) is not above it; the best seed is the lowest of the per-seed objectives
    and a critical point (gradient norm under 1e-6: the objective is smooth)."""
    wd = 1e-3
    m = svflow.explicit.ce_minimum(4, 2, weight_decay=wd, seeds=(0, 1), max_steps=600)
    obj, Z = _numpy_ce(m.factors, wd)
    assert obj == pytest.approx(m.objective, rel=1e-12)
    assert svflow.explicit.ce_objective(Z, 2, weight_decay=wd) <= obj + 1e-12
    assert m.objective == pytest.approx(float(np.min(m.objectives)), rel=1e-15)
    assert m.grad_norm < 1e-6


@pytest.mark.slow
def test_ce_minimum_beats_the_octagon_at_k8_l5():
    """K = 8, L = 5, wd = 1e-3: direct minimisation reaches at most 0.02885, below the
    octagon code (0.029169, the best known construction), at rank 3; the numpy
    objective of the returned factors agrees."""
    wd = 1e-3
    m = svflow.explicit.ce_minimum(8, 5, weight_decay=wd, seeds=range(8), max_steps=2000)
    obj, _ = _numpy_ce(m.factors, wd)
    assert obj == pytest.approx(m.objective, rel=1e-12)
    octagon = svflow.explicit.ce_code_loss(svflow.explicit.polygon_code(8), 5, weight_decay=wd)[0]
    assert octagon == pytest.approx(svflow.explicit.ce_codes(8, 5, weight_decay=wd).loss)
    assert obj <= 0.02885 < octagon
    assert m.rank == 3
    assert m.grad_norm < 1e-6


STARTS = tuple(np.ones((1,) + s) for s in [(2, 2), (2, 2), (2, 2)])


def test_bad_arguments():
    with pytest.raises(TypeError, match="seeds"):
        svflow.explicit.ce_minimum(4, 2, weight_decay=1e-3, seeds=3)
    with pytest.raises(ValueError, match="weight_decay"):
        svflow.explicit.ce_minimum(4, 2, weight_decay=0.0)
    with pytest.raises(ValueError, match="max_steps"):
        svflow.explicit.polish(_ldufm_model(STARTS), STARTS, max_steps=0)
    with pytest.raises(ValueError, match="stack the model's factor shapes"):
        svflow.explicit.polish(_ldufm_model(STARTS), tuple(F[:, :-1] for F in STARTS))
    with pytest.raises(TypeError, match="DeepUFM"):
        svflow.explicit.polish(lambda fs: 0.0, STARTS)


@pytest.mark.skipif(not MAP.exists(), reason="committed optimality map not present")
def test_repolish_map_bad_cells():
    ds = svflow.load(MAP)
    with pytest.raises(ValueError, match="not in the map"):
        svflow.explicit.repolish_map(ds, cells=[(99, 2)])
    with pytest.raises(TypeError, match="cells"):
        svflow.explicit.repolish_map(ds, cells=[3])


@pytest.mark.skipif(not MAP.exists(), reason="committed optimality map not present")
def test_repolish_map_records_the_code_that_repolished():
    """The ``repolish`` note names the svflow version, git commit and dirty flag of
    the process that re-polished; the map's own provenance attrs stay those of the
    run that made it, and cells not asked for keep their stored values exactly."""
    from svflow._dataset import provenance

    ds = svflow.load(MAP)
    out = svflow.explicit.repolish_map(ds, cells=[(2, 2)], max_steps=5)
    now = provenance()
    tail = out.attrs["repolish"].rsplit("; then ", 1)[-1]
    assert "cells (K 2, L 2)" in tail
    assert (
        f"svflow {now['svflow_version']} at git commit {now['git_commit']} (dirty {now['git_dirty']})" in tail
    )
    for key in ("svflow_version", "git_commit", "git_dirty", "created"):
        assert out.attrs[key] == ds.attrs[key]
    rest = out["best_objective"].where(~((out.classes == 2) & (out.depth == 2)))
    xr.testing.assert_identical(rest, ds["best_objective"].where(~((ds.classes == 2) & (ds.depth == 2))))


@pytest.mark.skipif(not MAP.exists(), reason="committed optimality map not present")
def test_the_figures_full_run_is_the_committed_maps_setting():
    """``python -m svflow.figures --only ldufm_optimality`` recomputes the map the
    committed figure shows: the same study setting (grid, steps, seeds, init scales,
    L-BFGS steps, weight decay, learning rate, no per-run kink stage), then the
    re-polish of the best points that the committed dataset records."""
    from svflow.explicit._ldufm_studies import LDUFM_STUDIES
    from svflow.figures import fig_ldufm_optimality as fig

    ds = svflow.load(MAP)
    kw = LDUFM_STUDIES["ldufm_optimality"].settings(fig.FULL_SETTING)
    assert ds.attrs["setting"] == fig.FULL_SETTING
    assert list(ds["classes"].values) == list(kw["classes"])
    assert list(ds["depth"].values) == list(kw["depths"])
    assert int(ds.attrs["steps"]) == kw["steps"]
    assert int(ds.attrs["polish_steps"]) == kw["polish_steps"]
    assert ds.sizes["seed"] == kw["seeds"]
    np.testing.assert_array_equal(ds["scale"].values, kw["scales"])
    assert float(ds.attrs["lam"]) == kw["weight_decay"] and float(ds.attrs["eta"]) == kw["eta"]
    assert int(ds.attrs.get("kink_stage", 0)) == int(kw["kinks"])
    assert "repolish" in ds.attrs  # the figure's full run re-polishes too
