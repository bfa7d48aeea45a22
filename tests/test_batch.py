"""The refill engine: each trajectory exactly as a plain diffeqsolve, closed forms, batched simulate."""

import os
import subprocess
import sys
import textwrap

import diffrax
import jax.numpy as jnp
import numpy as np
import pytest
import xarray as xr

import svflow
from svflow._batch import chunk_size_for, log_time_field, solve_batch, solve_many
from svflow._integrate import Solver, log_times
from svflow._simulate import ReducedField


def _ce_starts(B, K, seed):
    rng = np.random.default_rng(seed)
    lam0 = 10 ** rng.uniform(-3, -1, (B, 1)) * rng.uniform(0.2, 1.8, (B, K))
    lam0[:, 0] = 0.0
    return lam0


def test_refill_equals_plain_diffeqsolve():
    # 7 starts through 3 lanes: lanes are refilled 4 times, in cost order
    K, N = 8, 4
    lam0 = _ce_starts(7, K, 2)
    ts = log_times(1e6, 41)
    taus = np.log1p(ts)
    field = log_time_field(ReducedField(jnp.asarray(0.0), "ce", N, True))
    sol = solve_many(field, lam0, taus, rtol=1e-8, atol=1e-10, lanes=3, cost=-lam0.sum(1))
    assert sol.lanes == 3 and np.all(sol.result == 0)
    for i in range(7):  # diffrax's own loop, one start at a time
        ref = diffrax.diffeqsolve(
            diffrax.ODETerm(field),
            diffrax.Tsit5(),
            taus[0],
            taus[-1],
            None,
            jnp.asarray(lam0[i]),
            saveat=diffrax.SaveAt(ts=jnp.asarray(taus)),
            stepsize_controller=diffrax.PIDController(rtol=1e-8, atol=1e-10, dtmin=1e-13 * taus[-1]),
            max_steps=100_000,
        )
        np.testing.assert_allclose(sol.ys[i], np.asarray(ref.ys), rtol=1e-12, atol=1e-300)
        assert sol.num_steps[i] == int(ref.stats["num_steps"])


def test_logistic_closed_form_through_chunks_and_padding():
    # squared loss, N = 2, balanced: d lam/dt = 2 lam (1 - lam)/K (Saxe), logistic solution
    K = 4
    rng = np.random.default_rng(1)
    lam0 = 10 ** rng.uniform(-3, -1, (7, K))
    ts = log_times(50.0, 41)
    field = ReducedField(jnp.asarray(0.0), "squared", 2, True)
    config = Solver(rtol=1e-10, atol=1e-12)
    # a budget of 3 starts per chunk: chunks of 3, 2, 2 (padded to the same shape)
    budget = 3 * 8 * K * (2 * 41 + 8)
    sol = solve_batch(field, lam0, ts, config, max_bytes=budget, lanes=2)
    assert sol.num_chunks == 3 and sol.ys.shape == (7, 41, K)
    exact = 1.0 / (1.0 + (1.0 / lam0[:, None, :] - 1.0) * np.exp(-2.0 * ts[None, :, None] / K))
    np.testing.assert_allclose(sol.ys, exact, rtol=1e-7)


def test_batched_simulate_equals_per_start_simulate():
    K, depth = 8, 2
    lam0 = _ce_starts(6, K, 3).reshape(2, 3, K)
    kw = dict(t_end=1e5, num_times=31)
    ds = svflow.simulate(K, depth, init=lam0, batch_dims=("a", "b"), solver=svflow.Solver(lanes=4), **kw)
    assert ds["lam"].dims == ("a", "b", "time", "mode") and ds["num_steps"].dims == ("a", "b")
    for a in range(2):
        for b in range(3):
            one = svflow.simulate(K, depth, init=lam0[a, b], **kw)
            np.testing.assert_allclose(ds["lam"].values[a, b], one["lam"].values, rtol=1e-10, atol=1e-300)
            np.testing.assert_allclose(ds["loss"].values[a, b], one["loss"].values, rtol=1e-10)
            assert int(ds["num_steps"][a, b]) == one.attrs["num_steps"]
    # a DataArray keeps its dims and coords; unbalanced factor starts batch too
    da = xr.DataArray(lam0[0], dims=("seed", "mode"), coords={"seed": [10, 11, 12]})
    ds2 = svflow.simulate(K, depth, init=da, **kw)
    np.testing.assert_array_equal(ds2["seed"], [10, 11, 12])
    np.testing.assert_allclose(ds2["lam"].values, ds["lam"].values[0], rtol=1e-10, atol=1e-300)
    s0 = np.abs(lam0[0]) ** (1 / 3) * np.array([1.0, 1.2, 1 / 1.2])[:, None]
    s0 = np.stack([s0, s0 * 1.1])  # (2, N, K)
    ds3 = svflow.simulate(K, depth, init=s0, batch_dims="start", **kw)
    one = svflow.simulate(K, depth, init=s0[1], **kw)
    np.testing.assert_allclose(ds3["s"].values[1], one["s"].values, rtol=1e-10, atol=1e-300)


def test_chunk_size_from_memory_budget():
    # per start: 8 bytes x 16 values x (2 x 161 + 8) = 42240 bytes
    assert chunk_size_for((16,), 161, 10 * 42240) == 10
    assert chunk_size_for((16,), 161, 1) == 1
    lam0 = np.full((3, 4), 0.1)
    field = ReducedField(jnp.asarray(0.0), "squared", 2, True)
    sol = solve_batch(field, lam0, log_times(1.0, 5), max_bytes=1)
    assert sol.chunk_size == 1 and sol.num_chunks == 3


def test_bad_input():
    field = ReducedField(jnp.asarray(0.0), "squared", 2, True)
    with pytest.raises(ValueError, match="B >= 1 starts"):
        solve_batch(field, np.ones(4), log_times(1.0, 5))
    with pytest.raises(ValueError, match="lanes"):
        solve_batch(field, np.ones((2, 4)), log_times(1.0, 5), lanes=0)
    with pytest.raises(ValueError, match="cost"):
        solve_batch(field, np.ones((2, 4)), log_times(1.0, 5), cost=np.ones(3))
    with pytest.raises(ValueError, match="batch_dims"):
        svflow.simulate(4, 1, init=np.ones((2, 4)) * 0.1, batch_dims=("a", "a"))
    with pytest.raises(ValueError, match="shape"):
        svflow.simulate(4, 1, init=np.ones((2, 3)) * 0.1, batch_dims="start")


@pytest.mark.slow
def test_second_process_hits_the_compilation_cache(tmp_path):
    """A fresh process finds the first one's compiled solver on disk."""
    script = textwrap.dedent(
        """
        import time, numpy as np, svflow
        from svflow._precision import compilation_cache_dir
        tic = time.process_time()
        svflow.simulate(4, 1, init=[0.0, 0.1, 0.2, 0.3], t_end=10.0, num_times=5)
        print(time.process_time() - tic, len(list(compilation_cache_dir().iterdir())))
        """
    )
    env = dict(os.environ, SVFLOW_COMPILE_CACHE=str(tmp_path / "jax"))
    env.pop("JAX_COMPILATION_CACHE_DIR", None)
    runs = [
        subprocess.run([sys.executable, "-c", script], env=env, capture_output=True, text=True, check=True)
        for _ in range(2)
    ]
    (cold, n_cold), (warm, n_warm) = [map(float, r.stdout.split()) for r in runs]
    assert n_cold > 0 and n_warm == n_cold  # the second process wrote nothing new
    assert warm < cold


@pytest.mark.parametrize("K", [4, 16, 128])
def test_one_exponential_ce_law_matches_the_reference_law(K):
    # ReducedField's balanced cross-entropy law (one softmax) against rhs_balanced
    # (log-sum-exp route), from tiny starts to saturated ones where 1 - mu ~ e^{-m}
    from svflow._fields import rhs_balanced
    from svflow._groups import resolve_group

    rng = np.random.default_rng(K)
    field = ReducedField(jnp.asarray(0.0), "ce", 4, True)
    for scale in (1e-3, 1.0, 30.0, 300.0):
        lam = rng.uniform(0.2, 1.8, K) * scale
        lam[0] = 0.0
        got = np.asarray(field(0.0, jnp.asarray(lam)))
        ref = np.asarray(rhs_balanced(0.0, jnp.asarray(lam), "ce", 0.0, 4, resolve_group(None, K)))
        assert got[0] == 0.0
        np.testing.assert_allclose(got, ref, rtol=1e-12 if K < 128 else 1e-11, atol=0)


def test_plain_function_field_and_opt_out(monkeypatch):
    """A field that is a plain Python function (traced afresh, never stored) gives the
    logistic closed form too; SVFLOW_COMPILE_CACHE=0 switches the disk cache off."""
    from svflow._precision import compilation_cache_dir

    K = 2

    def field(s, y, args):  # squared loss, N = 2, in plain t: d lam/dt = 2 lam (1 - lam)/K
        return 2.0 * y * (1.0 - y) / K

    lam0 = np.array([[1e-3, 0.5], [0.2, 0.9]])
    ts = np.linspace(0.0, 20.0, 11)
    sol = solve_many(field, lam0, ts, rtol=1e-10, atol=1e-12)
    exact = 1.0 / (1.0 + (1.0 / lam0[:, None, :] - 1.0) * np.exp(-2.0 * ts[None, :, None] / K))
    np.testing.assert_allclose(sol.ys, exact, rtol=1e-7)
    for off in ("0", "off", "False"):
        monkeypatch.setenv("SVFLOW_COMPILE_CACHE", off)
        assert compilation_cache_dir() is None
    monkeypatch.setenv("SVFLOW_COMPILE_CACHE", "/some/dir")
    assert str(compilation_cache_dir()) == "/some/dir"
