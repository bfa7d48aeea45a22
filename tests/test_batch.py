"""solve_batch: sorted, chunked, padded batches give each trajectory exactly as alone."""

import jax.numpy as jnp
import numpy as np
import pytest

from svflow._batch import chunk_size_for, solve_batch
from svflow._integrate import SolverConfig, check_solution, log_times, solve
from svflow._simulate import ReducedField


def test_logistic_closed_form_through_chunks_and_padding():
    # squared loss, N = 2, balanced: d lam/dt = 2 lam (1 - lam)/K (Saxe), logistic solution
    K = 4
    rng = np.random.default_rng(1)
    lam0 = 10 ** rng.uniform(-3, -1, (7, K))  # 7 starts in chunks of 3: last chunk padded
    ts = log_times(50.0, 41)
    field = ReducedField(jnp.asarray(0.0), "squared", 2, True)
    config = SolverConfig(rtol=1e-10, atol=1e-12)
    sol = solve_batch(field, lam0, ts, config, chunk_size=3)
    check_solution(sol.ys, sol.result, sol.num_steps, config, ts[-1])
    assert sol.num_chunks == 3 and sol.ys.shape == (7, 41, K)
    exact = 1.0 / (1.0 + (1.0 / lam0[:, None, :] - 1.0) * np.exp(-2.0 * ts[None, :, None] / K))
    np.testing.assert_allclose(sol.ys, exact, rtol=1e-7)


@pytest.mark.parametrize("workers", [1, 2])
def test_same_as_single_solves_in_original_order(workers):
    K, N = 8, 4
    rng = np.random.default_rng(2)
    lam0 = 10 ** rng.uniform(-2, -0.5, (5, 1)) * rng.uniform(0.5, 1.5, (5, K))
    lam0[:, 0] = 0.0
    ts = log_times(1e4, 21)
    field = ReducedField(jnp.asarray(0.0), "ce", N, True)
    config = SolverConfig()
    sol = solve_batch(field, lam0, ts, config, chunk_size=2, workers=workers)
    for i in range(5):  # the unbatched route, one start at a time
        ys, _, n = solve(field, jnp.asarray(lam0[i]), jnp.asarray(ts), None, config)
        np.testing.assert_allclose(sol.ys[i], np.asarray(ys), rtol=1e-12, atol=1e-14)
        assert sol.num_steps[i] == int(n)


def test_chunk_size_from_memory_budget():
    # per member: 8 bytes x 16 values x (4 x 161 + 64) = 90624 bytes
    assert chunk_size_for((16,), 161, 10 * 90624) == 10
    assert chunk_size_for((16,), 161, 1) == 1
    lam0 = np.full((3, 4), 0.1)
    field = ReducedField(jnp.asarray(0.0), "squared", 2, True)
    sol = solve_batch(field, lam0, log_times(1.0, 5), max_bytes=1)
    assert sol.chunk_size == 1 and sol.num_chunks == 3


def test_bad_input():
    field = ReducedField(jnp.asarray(0.0), "squared", 2, True)
    with pytest.raises(ValueError, match="B >= 1 starts"):
        solve_batch(field, np.ones(4), log_times(1.0, 5))
    with pytest.raises(ValueError, match="workers"):
        solve_batch(field, np.ones((2, 4)), log_times(1.0, 5), workers=0)
    with pytest.raises(ValueError, match="sort keys"):
        solve_batch(field, np.ones((2, 4)), log_times(1.0, 5), sort=np.ones(3))
