"""Tests of ``svflow.sweep``: resumable, chunked, distributed sweeps on zarr.

Every equality here is exact (``np.array_equal``): a cell's key depends only on
its coordinates, so how the grid is cut, interrupted, sharded or distributed
must not change a single bit.
"""

import hashlib
import os
import signal
import subprocess
import sys
import time

import cloudpickle
import jax
import jax.numpy as jnp
import numpy as np
import pytest
import xarray as xr
import zarr

import svflow
from svflow._sweep.runner import DONE, cell_key

from helpers import ROOT, checkout_env

# cell functions defined here travel to dask workers by value
cloudpickle.register_pickle_by_value(sys.modules[__name__])

GRID = {"eps": [0.1, 0.2, 0.5], "depth": [1, 2], "seed": np.arange(5)}


def cell(key, eps, depth, seed, scale):
    """Closed-form cell: a Gaussian draw of the cell's key, scaled."""
    x = jax.random.normal(key, (depth + 1,))
    return {
        "total": scale * eps * jnp.sum(x),
        "first": eps * x[0] * jnp.arange(1.0, 4.0),
        "twice_seed": 2 * seed,
    }


def run(store, chunk=4, **kw):
    kw.setdefault("params", {"scale": 2.0})
    kw.setdefault("static", ("depth",))
    return svflow.sweep(
        cell, GRID, store=store, chunk=chunk, outputs={"first": ("comp",)}, progress=False, **kw
    )


def assert_same(a, b):
    assert set(a.data_vars) == set(b.data_vars)
    for name in a.data_vars:
        assert a[name].dims == b[name].dims
        np.testing.assert_array_equal(a[name].values, b[name].values)


@pytest.fixture(scope="module")
def ref(tmp_path_factory):
    """The reference sweep: in-process, chunk = 4 (the last chunk of each depth padded)."""
    return run(tmp_path_factory.mktemp("ref") / "store", chunk=4)


# --- values, keys, layout


def test_cells_equal_direct_calls(ref):
    """Independent route: cell_fn called one cell at a time (no vmap, no chunks)."""
    ds = ref
    assert ds.total.dims == ("eps", "depth", "seed")
    assert ds.first.dims == ("eps", "depth", "seed", "comp")
    for eps in GRID["eps"]:
        for depth in GRID["depth"]:
            for seed in (0, 4):
                c = dict(eps=eps, depth=depth, seed=seed)
                want = cell(cell_key(0, **c), scale=2.0, **c)
                got = ds.sel(**c)
                np.testing.assert_allclose(got.total, want["total"], rtol=1e-14)
                np.testing.assert_allclose(got.first, want["first"], rtol=1e-14)
                assert int(got.twice_seed) == 2 * seed


def test_cell_key_depends_only_on_coordinates():
    a = cell_key(0, eps=0.1, depth=1, seed=3)
    b = cell_key(0, seed=3, depth=1, eps=0.1)  # order of names is irrelevant
    keys = [cell_key(0, eps=0.1, depth=1, seed=s) for s in range(50)]
    data = {tuple(np.asarray(jax.random.key_data(k)).tolist()) for k in keys}
    assert np.array_equal(jax.random.key_data(a), jax.random.key_data(b))
    assert len(data) == 50
    assert not np.array_equal(
        jax.random.key_data(a), jax.random.key_data(cell_key(1, eps=0.1, depth=1, seed=3))
    )


def test_other_chunk_size_and_resume_equal(tmp_path, ref):
    # same vmapped batch (4 cells), other chunks: bitwise equal
    for chunk in (8, 12):
        assert_same(run(tmp_path / f"c{chunk}", chunk=chunk, batch=4), ref)
    # another batch shape (7, padded): the same draws; XLA may round differently
    other = run(tmp_path / "c7", chunk=7)
    for name in ref.data_vars:
        np.testing.assert_allclose(other[name].values, ref[name].values, rtol=1e-13)
    with pytest.raises(ValueError, match="divisor of chunk"):
        run(tmp_path / "bad", chunk=6, batch=4)
    # staged: two chunks, stop, resume
    plan = run(tmp_path / "staged", chunk=4, dry_run=True)
    assert not (tmp_path / "staged").exists()
    assert (plan["cells"], plan["chunks"], plan["chunks_done"]) == (30, 8, 0)  # 2 x ceil(15/4)
    assert run(tmp_path / "staged", chunk=4, max_chunks=2) is None
    plan = run(tmp_path / "staged", chunk=4, dry_run=True)
    assert (plan["chunks_done"], plan["cells_done"], plan["chunks_todo"]) == (2, 8, 6)
    assert_same(run(tmp_path / "staged", chunk=4), ref)
    assert_same(svflow.open_sweep(tmp_path / "staged"), ref)


@pytest.mark.slow
def test_reduced_ode_cells_chunk_invariant(tmp_path):
    """A short reduced-ODE solve per cell (adaptive steps under vmap): with one
    batch size, chunking changes which cells share a chunk, not one bit."""
    from svflow._integrate import Solver, solve
    from svflow._simulate import ReducedField

    def ode_cell(key, eps, seed):
        s0 = 0.1 * jnp.exp(eps * jax.random.normal(key, (3, 4)))
        field = ReducedField(jnp.asarray(0.0), "ce", 3, False)
        ys, _, steps = solve(field, s0, jnp.array([0.0, 50.0]), None, Solver(rtol=1e-6, atol=1e-8))
        return {"lam": jnp.prod(ys[-1], axis=0), "steps": steps}

    grid = {"eps": [0.1, 1.0], "seed": np.arange(5)}
    a = svflow.sweep(ode_cell, grid, store=tmp_path / "a", chunk=3, progress=False)
    b = svflow.sweep(ode_cell, grid, store=tmp_path / "b", chunk=6, batch=3, progress=False)
    assert_same(a, b)
    assert np.all(a.steps.values > 0)
    # independent pin: under cross-entropy G_0 = 0 and wd = 0, so every s_{l,0} and
    # hence lam_0 = prod_l s_{l,0} keep their initial values
    s0 = 0.1 * np.exp(0.1 * np.asarray(jax.random.normal(cell_key(0, eps=0.1, seed=2), (3, 4))))
    np.testing.assert_allclose(a.lam.sel(eps=0.1, seed=2).values[0], np.prod(s0[:, 0]), rtol=1e-12)


# --- interruption, damage, specification


KILL_SCRIPT = """
import os, sys, time
import jax, jax.numpy as jnp, numpy as np
import svflow

LOG = sys.argv[2]
SLEEP = float(sys.argv[3])

def log(eps, seed):
    with open(LOG, "a") as f:
        f.write(f"{float(eps)!r} {int(seed)}\\n")
    time.sleep(SLEEP)

def cell(key, eps, seed):
    jax.debug.callback(log, eps, seed)
    x = jax.random.normal(key, (3,))
    return {"y": eps * x, "m": jnp.max(x)}

svflow.sweep(cell, {"eps": [0.5, 1.0, 2.0, 4.0], "seed": np.arange(6)},
             store=sys.argv[1], chunk=4, progress=False)
"""


def read_log(path):
    if not path.exists():
        return []
    return [(float(a), int(b)) for a, b in (line.split() for line in path.read_text().splitlines())]


def chunk_of(eps, seed):
    return ([0.5, 1.0, 2.0, 4.0].index(eps) * 6 + seed) // 4


def test_sigkill_then_resume_recomputes_only_unfinished_chunks(tmp_path):
    script = tmp_path / "job.py"
    script.write_text(KILL_SCRIPT)
    store, log1, log2, log3 = (tmp_path / n for n in ("store", "log1", "log2", "log3"))

    # --- run 1: killed (SIGKILL, no cleanup) once its fourth chunk is being computed
    # (the runner dispatches chunk k + 1 before writing chunk k, so chunks 0, 1 are in)
    p = subprocess.Popen([sys.executable, str(script), str(store), str(log1), "0.05"], env=checkout_env())
    deadline = time.time() + 120
    while len(read_log(log1)) < 13 and p.poll() is None and time.time() < deadline:
        time.sleep(0.02)
    p.send_signal(signal.SIGKILL)
    p.wait()
    assert p.returncode == -signal.SIGKILL
    marks = np.asarray(zarr.open_group(str(store), mode="r")[DONE][...])[0]
    finished = {int(c) for c in np.nonzero(marks)[0]}
    assert {0, 1} <= finished and len(finished) < 6

    # --- run 2: resume; it evaluates exactly the chunks without a mark
    subprocess.run([sys.executable, str(script), str(store), str(log2), "0"], env=checkout_env(), check=True)
    evaluated = read_log(log2)
    recomputed = {chunk_of(*c) for c in evaluated}
    assert recomputed.isdisjoint(finished)
    assert recomputed | finished == set(range(6))
    assert len(evaluated) == 4 * len(recomputed)  # each cell once (no padding here)

    # --- an uninterrupted run gives the same numbers
    subprocess.run(
        [sys.executable, str(script), str(tmp_path / "fresh"), str(log3), "0"], env=checkout_env(), check=True
    )
    assert len(read_log(log3)) == 24
    assert_same(svflow.open_sweep(store), svflow.open_sweep(tmp_path / "fresh"))


def counting_cell(log_path):
    def log(seed):
        with open(log_path, "a") as f:
            f.write(f"{int(seed)}\n")

    def fn(key, eps, seed):
        jax.debug.callback(log, seed)
        return {"y": eps * jax.random.normal(key, (2,))}

    fn.__qualname__ = "counting_cell"
    return fn


def test_unmarked_or_damaged_chunks_are_recomputed(tmp_path):
    grid = {"eps": [1.0], "seed": np.arange(15)}
    store, logf = tmp_path / "s", tmp_path / "log"
    fn = counting_cell(logf)
    ref = svflow.sweep(fn, grid, store=tmp_path / "ref", chunk=3, progress=False)
    assert svflow.sweep(fn, grid, store=store, chunk=3, progress=False, max_chunks=4) is None
    logf.unlink()
    g = zarr.open_group(str(store), mode="r+")
    assert np.count_nonzero(np.asarray(g[DONE][...])[0, :4]) == 4
    g[DONE][0, 0] = 0  # chunk 0: data written, completion mark missing
    g["y"][0, 3] = [42.0, 42.0]  # chunk 1: plausible but wrong data, mark kept
    chunk2 = next(p for p in (store / "y").rglob("*") if p.is_file() and p.parts[-3:] == ("0", "2", "0"))
    chunk2.write_bytes(b"garbage" * 5)  # chunk 2: undecodable chunk file
    mark4 = store / DONE / "c" / "0" / "4"
    g[DONE][0, 4] = 12345  # chunk 4 (never computed): a mark, then an undecodable mark file
    mark4.write_bytes(b"\x00garbage")
    with pytest.warns(UserWarning, match="recomputed"):
        ds = svflow.sweep(fn, grid, store=store, chunk=3, progress=False)
    seeds = sorted(int(s) for s in logf.read_text().split())
    assert seeds == [*range(9), 12, 13, 14]  # chunks 0, 1, 2 recomputed, 4 new; 3 kept
    assert_same(ds, ref)
    assert not np.any(ds.y.values == 42.0)


def test_incomplete_store_is_never_read_as_result(tmp_path):
    grid = {"eps": [1.0, 2.0], "seed": np.arange(4)}
    fn = counting_cell(tmp_path / "log")
    svflow.sweep(fn, grid, store=tmp_path / "s", chunk=3, progress=False, max_chunks=1)
    with pytest.raises(ValueError, match="incomplete"):
        svflow.open_sweep(tmp_path / "s")
    ds = svflow.open_sweep(tmp_path / "s", allow_incomplete=True)
    assert ds.complete.values.sum() == 3
    assert np.all(np.isnan(ds.y.values[~ds.complete.values]))
    assert np.all(np.isfinite(ds.y.values[ds.complete.values]))


def snapshot(path):
    return {
        str(p.relative_to(path)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(path.rglob("*"))
        if p.is_file()
    }


def test_changed_specification_raises_and_leaves_store_untouched(tmp_path):
    store = tmp_path / "s"
    run(store, max_chunks=3)
    before = snapshot(store)
    changes = [
        (dict(params={"scale": 3.0}), r"params\['scale'\]: 2.0 -> 3.0"),
        (dict(base_seed=1), "base_seed: 0 -> 1"),
        (dict(static=("depth", "eps")), r"static: \['depth'\] -> \['depth', 'eps'\]"),
        (dict(chunk=5), "chunk=4"),
    ]
    for kw, match in changes:
        with pytest.raises(svflow.SweepSpecError, match=match):
            run(store, **kw)
    with pytest.raises(svflow.SweepSpecError, match=r"grid\['seed'\]"):
        svflow.sweep(
            cell,
            {**GRID, "seed": np.arange(6)},
            store=store,
            chunk=4,
            static=("depth",),
            params={"scale": 2.0},
            outputs={"first": ("comp",)},
            progress=False,
        )
    assert snapshot(store) == before


def test_bad_input_says_what_to_pass(tmp_path):
    with pytest.raises(ValueError, match="repeated"):
        svflow.sweep(cell, {**GRID, "eps": [0.1, 0.1]}, store=tmp_path / "a", chunk=2, params={"scale": 1.0})
    with pytest.raises(ValueError, match="not in the grid"):
        run(tmp_path / "b", static=("width",))
    with pytest.raises(ValueError, match="static="):
        svflow.sweep(lambda key, loss: {"x": 1.0}, {"loss": ["ce", "squared"]}, store=tmp_path / "c", chunk=2)
    with pytest.raises(ValueError, match="dict"):
        svflow.sweep(lambda key, eps: eps, {"eps": [1.0]}, store=tmp_path / "d", chunk=2)
    with pytest.raises(ValueError, match="positive"):
        run(tmp_path / "e", chunk=0)
    with pytest.raises(ValueError, match="static="):  # depth sets a shape: must be static
        run(tmp_path / "f", static=())
    assert not any((tmp_path / n).exists() for n in "abcdef")


# --- backends


def test_dask_local_cluster_equals_in_process(tmp_path, ref):
    from distributed import Client, LocalCluster

    with (
        LocalCluster(n_workers=2, threads_per_worker=1, processes=True, dashboard_address=None) as cluster,
        Client(cluster) as client,
    ):
        ds = run(tmp_path / "dask", client=client)
        workers = client.run(lambda: os.getpid())
        # a scheduler address instead of a client; chunks of two batches of 4
        by_address = run(tmp_path / "addr", chunk=8, batch=4, client=cluster.scheduler_address)
    assert len(set(workers.values())) == 2
    assert_same(ds, ref)
    assert_same(by_address, ref)


SHARD_SCRIPT = """
import sys
import jax, numpy as np
import svflow
from svflow._sweep.runner import _batched, _devices, _make_plan
sys.path.insert(0, sys.argv[2])
import test_sweep as t

assert len(jax.devices()) == 2, jax.devices()
ds = t.run(sys.argv[1], chunk=4)
plan = _make_plan(t.cell, t.GRID, ("depth",), {"scale": 2.0}, 0, 4, {"first": ("comp",)}, None)
fn, batch = _batched(plan, 0, _devices(None))
words, dyn, n = plan.chunk_inputs(0, 0, batch)
out = fn(words, *(dyn[d] for d in plan.dynamic))
print("batch", batch, "devices", len(out["total"].sharding.device_set))
"""


def test_sharded_over_two_host_devices_equals_single_device(tmp_path, ref):
    script = tmp_path / "shard.py"
    script.write_text(SHARD_SCRIPT)
    e = checkout_env(XLA_FLAGS="--xla_force_host_platform_device_count=2")
    res = subprocess.run(
        [sys.executable, str(script), str(tmp_path / "two"), str(ROOT / "tests")],
        env=e,
        check=True,
        capture_output=True,
        text=True,
    )
    assert "batch 4 devices 2" in res.stdout
    # each device runs 2 of the 4 cells: a smaller compiled shape, which XLA could in
    # general round differently; for this cell every bit agrees
    assert_same(svflow.open_sweep(tmp_path / "two"), ref)


def test_store_path_empty_directory_or_foreign(tmp_path, ref):
    (tmp_path / "empty").mkdir()
    assert_same(run(tmp_path / "empty"), ref)  # an empty directory becomes the store
    (tmp_path / "foreign").mkdir()
    (tmp_path / "foreign" / "notes.txt").write_text("not a sweep")
    with pytest.raises(svflow.SweepSpecError, match="not an svflow sweep store"):
        run(tmp_path / "foreign")
    assert [p.name for p in (tmp_path / "foreign").iterdir()] == ["notes.txt"]


def test_redefined_cell_fn_is_not_served_stale_compiled_code(tmp_path):
    """Two cell functions with one name and one specification but different code
    (a notebook re-run, a long-lived dask worker): each runs its own code."""

    def make(offset):
        def fn(key, eps):
            return {"y": eps + offset}

        return fn

    grid = {"eps": [0.0, 1.0]}
    a = svflow.sweep(make(1.0), grid, store=tmp_path / "a", chunk=2, progress=False)
    b = svflow.sweep(make(2.0), grid, store=tmp_path / "b", chunk=2, progress=False)
    np.testing.assert_array_equal(a.y.values, [1.0, 2.0])
    np.testing.assert_array_equal(b.y.values, [2.0, 3.0])


def _normal_cell(key, eps, depth):
    return {"value": eps * jax.random.normal(key, (3,)) + depth}


def _normal_cells(keys, eps, depth, log=None):
    if log is not None:
        with open(log, "a") as f:
            f.write(f"{len(eps)}\n")
    return {
        "value": np.asarray(eps)[:, None] * np.asarray(jax.vmap(lambda k: jax.random.normal(k, (3,)))(keys))
        + depth
    }


def test_batched_cell_fn_gets_the_same_keys_and_resumes(tmp_path):
    """A batch cell function (batched=True) sees the cells' keys and coordinates as arrays; its
    sweep equals the vmapped sweep of the per-cell function (independent route: the same draws
    through jax.vmap), and an interrupted sweep resumes without recomputing finished chunks."""
    grid = {"eps": [0.1, 0.2, 0.3, 0.4, 0.5], "depth": [1, 2]}
    ref = svflow.sweep(_normal_cell, grid, store=tmp_path / "v", chunk=2, static=("depth",), progress=False)
    log = tmp_path / "log"
    kw = dict(store=tmp_path / "b", chunk=2, static=("depth",), params={"log": str(log)}, progress=False)
    assert svflow.sweep(_normal_cells, grid, batched=True, max_chunks=2, **kw) is None
    calls = log.read_text().split()
    got = svflow.sweep(_normal_cells, grid, batched=True, **kw)
    later = log.read_text().split()[len(calls) :]
    assert calls[0] == "1"  # one real evaluation of the first cell gives the output shapes
    assert sorted(map(int, later)) == [1, 1, 2, 2]  # the 4 chunks not done (2 static x 3 - 2)
    np.testing.assert_allclose(got["value"].values, ref["value"].values, rtol=1e-15, atol=0)
    assert got["value"].dims == ("eps", "depth", "value_dim0")


@pytest.mark.slow
def test_stored_basin_map_equals_the_in_memory_map(tmp_path):
    """basin_map(store=...) runs through svflow.sweep (one chunk = one batch of the outcome
    pipeline) and gives the in-memory map's decisions; a second call reads the store back."""
    eps, delta = np.array([1e-3, 1e-1]), np.array([0.01, 0.1, 0.5])
    kw = dict(horizons=(100.0, 1e3), family="random", seeds=[0, 1])
    ref = svflow.studies.basin_map(4, [2], eps, delta, **kw)
    got = svflow.studies.basin_map(4, [2], eps, delta, store=tmp_path / "a", chunk_size=5, **kw)
    again = svflow.studies.basin_map(4, [2], eps, delta, store=tmp_path / "a", chunk_size=5, **kw)
    for name in ("outcome", "rank", "decided", "support", "log_t_end", "lam0"):
        np.testing.assert_array_equal(got[name].values, ref[name].values)
    # chunks of 5 are other batches of the refill engine: states agree to rounding
    np.testing.assert_allclose(got["lam_end"].values, ref["lam_end"].values, rtol=1e-6)
    xr.testing.assert_equal(again.drop_attrs(), got.drop_attrs())
    assert "wall_time_s" in got.attrs and "wall_time_s_per_depth" not in got.attrs
    with pytest.raises(svflow.SweepSpecError):
        svflow.studies.basin_map(4, [2], eps, delta, store=tmp_path / "a", chunk_size=5, horizons=(100.0,))


def test_one_progress_bar_counts_cells_and_resumes_at_cells_done(tmp_path, capsys):
    fn = counting_cell(tmp_path / "log")
    grid = {"eps": [1.0, 2.0], "seed": np.arange(5)}
    svflow.sweep(fn, grid, store=tmp_path / "s", chunk=4, max_chunks=1, progress=False)
    capsys.readouterr()
    svflow.sweep(fn, grid, store=tmp_path / "s", chunk=4, progress=True)
    err = capsys.readouterr().err
    assert "4/10" in err.replace(" ", "")  # starts at the 4 cells done before
    assert "10/10" in err.replace(" ", "")
    assert err.count("sweep s") >= 1 and "cell" in err


@pytest.mark.parametrize("module", ["zarr", "dask", "distributed"])
def test_missing_sweep_extra_is_a_clear_import_error(tmp_path, monkeypatch, module):
    # a module set to None in sys.modules is one Python cannot import (find_spec: None)
    monkeypatch.setitem(sys.modules, module, None)
    grid = {"eps": [1.0], "seed": np.arange(2)}
    with pytest.raises(ImportError, match=rf"svflow.sweep needs {module}.*svflow\[sweep\]"):
        svflow.sweep(cell, grid, store=tmp_path / "s", chunk=2, progress=False)
    with pytest.raises(ImportError, match=rf"svflow.open_sweep needs {module}.*svflow\[sweep\]"):
        svflow.open_sweep(tmp_path / "s")
    assert not (tmp_path / "s").exists()  # nothing was written
