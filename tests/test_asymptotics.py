"""Asymptotic outcomes: Walsh-code enumeration and max-margin KKT points."""

import itertools

import numpy as np
import pytest

import svflow
from svflow._analysis import asymptotics as A


def brute_force_gamma(K, N, S):
    """Independent route: margins through svflow.margins (Walsh transform), norm from factors."""
    lam = np.zeros(K)
    lam[list(S)] = 1.0
    m = np.asarray(svflow.margins(lam))[1:].min()
    s = lam ** (1.0 / N)  # balanced factors: every factor has singular values s
    norm = N * np.sum(s**2)  # sum_l ||W_l||_F^2
    return m / norm ** (N / 2) if m > 0 else -np.inf


@pytest.mark.parametrize("K", [4, 8])
def test_enumeration_matches_brute_force(K):
    tab = A.code_table(K, range(2, 8), global_check=False)
    for N in range(2, 8):
        best, winners = -np.inf, []
        for r in range(1, K):
            for S in itertools.combinations(range(1, K), r):
                g = brute_force_gamma(K, N, S)
                if g > best * (1 + 1e-12):
                    best, winners = g, [S]
                elif abs(g - best) <= 1e-12 * abs(best):
                    winners.append(S)
        row = tab.sel(factors=N)
        assert float(row["gamma"]) == pytest.approx(best, rel=1e-12)
        assert int(row["ties"]) == len(winners)
        assert int(row["size"]) == len(winners[0])


@pytest.mark.parametrize("K", [4, 8, 16])
def test_two_factors_predict_neural_collapse(K):
    tab = A.code_table(K, [2], global_check=False)
    row = tab.sel(factors=2)
    assert int(row["size"]) == K - 1 and int(row["dmin"]) == K // 2
    assert str(row["name"].values).startswith("simplex")
    # closed form: (2/K)(K/2) / (2 (K-1)) = 1 / (2 (K-1))
    assert float(row["gamma"]) == pytest.approx(1 / (2 * (K - 1)), rel=1e-12)


def test_supports_k16_counts():
    sup = A.supports(16)
    # separating supports = subsets of F_2^4 \ {0} that span F_2^4; count those of size 4:
    # ordered bases of F_2^4 / 4! = (15*14*12*8)/24
    assert int((sup["size"] == 4).sum()) == 15 * 14 * 12 * 8 // 24
    assert int(sup["dmin"].max()) == 8


def test_vertex_optimum_agrees_with_equal_codes_k4():
    # global optimum over all lambda >= 0 (independent: vertex enumeration) = best equal code
    tab = A.code_table(4, range(2, 7), global_check=True)
    np.testing.assert_allclose(tab["gamma_global"].values, tab["gamma"].values, rtol=1e-10)


def test_kkt_point_nc_and_cube():
    K = 8
    rng = np.random.default_rng(0)
    nc = np.r_[0.0, 1 + 0.05 * rng.uniform(size=K - 1)]
    p = svflow.max_margin_direction(nc, depth=1)
    np.testing.assert_allclose(p.lam[1:], 1.0, rtol=1e-7)  # NC: m_k = (2/K)(K/2) c = 1
    assert p.kkt_residual < 1e-9 and p.converged and p.infeasibility < 1e-12
    cube = np.zeros(K)
    cube[[1, 2, 4]] = 1.0
    cube[1:] += 0.01 * rng.uniform(size=K - 1)
    q = svflow.max_margin_direction(cube, depth=5)
    assert set(np.flatnonzero(q.support)) == {1, 2, 4}
    np.testing.assert_allclose(q.lam[[1, 2, 4]], K / 2, rtol=1e-7)  # margin (2/K) lam = 1
    assert q.kkt_residual < 1e-9
    assert q.normalised_margin == pytest.approx((2 / K) * 1 / (6 * 3) ** 3, rel=1e-9)


def test_kkt_residual_flags_non_stationary_points():
    lam = np.r_[0.0, 1.0, 2.0, 3.0]  # K = 4, unequal: not a KKT point at N = 2
    res, *_ = A.kkt_residual(lam, 2)
    assert res > 1e-2


def angle(a, b):
    a = a / np.linalg.norm(a)
    b = b / np.linalg.norm(b)
    return float(np.arccos(np.clip(a @ b, -1.0, 1.0)))


def test_solver_predicts_long_deep_trajectory():
    K, depth = 8, 3  # N = 4: the [4,3,2] even-weight code wins the enumeration
    ds = svflow.simulate(
        K,
        depth,
        init=svflow.spectral_init(K, depth, 1e-2, 0.5, seed=0),
        t_end=1e8,
        num_times=9,
    )
    p = svflow.studies.asymptotic_direction(ds)
    assert p.kkt_residual < 1e-9 and p.converged
    # the predicted direction is an equal-lambda [4,3,2] code: gamma = (2/K) 2 / (4 N)^(N/2)
    N = depth + 1
    assert p.normalised_margin == pytest.approx((2 / K) * 2 / (4 * N) ** (N / 2), rel=1e-8)
    # continue the same trajectory eight more decades (the ODE is autonomous)
    lam8 = ds["lam"].values[-1]
    more = svflow.simulate(K, depth, init=lam8, times=np.r_[0.0, np.logspace(10, 16, 4)])
    angles = [angle(lam8, p.lam)] + [angle(x, p.lam) for x in more["lam"].values[1:]]
    assert all(b < a for a, b in zip(angles, angles[1:])), angles  # approaches monotonically
    assert angles[-1] < 0.25 * angles[0]
    top = more["lam"].values[-1]
    assert set(np.flatnonzero(top > 0.5 * top.max())) == set(np.flatnonzero(p.support))
    # and the KKT point seen from t = 1e16 is the same point
    q = svflow.max_margin_direction(top, depth)
    assert angle(q.lam, p.lam) < 1e-6


def test_bad_input():
    with pytest.raises(ValueError, match="separate"):
        svflow.max_margin_direction(np.r_[0.0, 1.0, 0.0, 0.0], depth=2)
    with pytest.raises(ValueError, match="depth"):
        svflow.max_margin_direction(np.r_[0.0, 1.0, 1.0, 1.0], depth=0)
