"""The first hour of a new user: bad inputs, files, precision, interruptions.

Every bad input must raise at once (no hang, no silent wrong answer) with the
right exception type (TypeError for a wrong type, ValueError for a wrong
value) and a message that names the parameter. The other tests check the
files svflow writes against plain xarray / the operating system, the scoped
float64 against a fresh interpreter, and the weight-decay horizon against a
run continued 100 times further.
"""

import os
import signal
import stat
import subprocess
import sys
import textwrap
from types import ModuleType

import jax
import numpy as np
import pytest
import xarray as xr

import svflow
from svflow._metrics import RANK_ATOL, rank_from_sigma

from helpers import ROOT, checkout_env, wrong_type

# every test here also passes with JAX in float32 mode (SVFLOW_TEST_X64=0)
pytestmark = pytest.mark.scoped_x64

ENV = checkout_env()


def _model():
    return svflow.random_model(4, depth=1, width=4, key=0)


def _lam_ds():
    return svflow.simulate(4, 1, init=[0.0, 0.1, 0.2, 0.3], t_end=10.0, num_times=5)


S4 = lambda **kw: svflow.spectral_init(4, 1, **kw)  # noqa: E731
SIM = lambda **kw: svflow.simulate(4, 1, **{"init": np.ones(4), **kw})  # noqa: E731
TRAIN = lambda **kw: svflow.train(_model(), **{"eta": 0.1, "steps": 5, **kw})  # noqa: E731
BASIN = lambda **kw: svflow.studies.basin_map(  # noqa: E731
    4, **{"depths": [1], "eps": [1e-2], "delta": [0.1], "family": "random", **kw}
)

# (call, exception type, text the message must contain: the parameter's name)
CASES = {
    # integers: type and range, in every public function
    "train chunk_steps=0": (lambda: TRAIN(chunk_steps=0), ValueError, "chunk_steps"),
    "train chunk_steps=-5": (lambda: TRAIN(chunk_steps=-5), ValueError, "chunk_steps"),
    "train chunk_steps=2.0": (lambda: TRAIN(chunk_steps=2.0), TypeError, "chunk_steps"),
    "train steps=1.5": (lambda: TRAIN(steps=1.5), TypeError, "steps"),
    "train num_times=1": (lambda: TRAIN(num_times=1), ValueError, "num_times"),
    "simulate num_times=0": (lambda: SIM(num_times=0), ValueError, "num_times"),
    "simulate max_steps=1.5": (lambda: SIM(solver=svflow.Solver(max_steps=1.5)), TypeError, "max_steps"),
    "simulate max_steps=0": (lambda: SIM(solver=svflow.Solver(max_steps=0)), ValueError, "max_steps"),
    "simulate depth=1.5": (lambda: svflow.simulate(4, 1.5, init=np.ones(4)), TypeError, "depth"),
    "simulate depth=True": (lambda: svflow.simulate(4, True, init=np.ones(4)), TypeError, "depth"),
    "simulate classes='4'": (lambda: svflow.simulate("4", 1, init=np.ones(4)), TypeError, "classes"),
    "spectral_init seed=-1": (lambda: S4(seed=-1), ValueError, "seed"),
    "spectral_init seed=0.5": (lambda: S4(seed=0.5), TypeError, "seed"),
    "random_model key=-1": (lambda: svflow.random_model(4, depth=1, width=4, key=-1), ValueError, "key"),
    "random_model width=0": (lambda: svflow.random_model(4, depth=1, width=0), ValueError, "width"),
    "random_model width=8.0": (lambda: svflow.random_model(4, depth=1, width=8.0), TypeError, "width"),
    "log_times num=1": (lambda: svflow.log_times(10.0, 1), ValueError, "num"),
    "softmax_code starts=0": (lambda: svflow.studies.softmax_code(4, 2, starts=0), ValueError, "starts"),
    "softmax_code seed=-1": (lambda: svflow.studies.softmax_code(4, 2, seed=-1), ValueError, "seed"),
    "srg_rho r=4.0": (lambda: svflow.explicit.srg_rho(4.0, 2), TypeError, "r"),
    "dnc_loss samples=0": (
        lambda: svflow.explicit.dnc_loss(4, 2, lam_H=1e-3, lam_W=1e-3, samples=0),
        ValueError,
        "samples",
    ),
    "basin_map chunk_size=0": (lambda: BASIN(chunk_size=0), ValueError, "chunk_size"),
    "basin_map depths=[1.5]": (lambda: BASIN(depths=[1.5]), TypeError, "depth"),
    "sweep max_chunks=-1": (
        lambda: svflow.sweep(
            lambda key, x: {"y": x}, {"x": [1.0]}, store="unused.zarr", chunk=1, max_chunks=-1
        ),
        ValueError,
        "max_chunks",
    ),
    "phase_map seeds=1.5": (
        lambda: svflow.studies.phase_map(classes=(4,), depths=(1,), widths=(4,), seeds=1.5),
        TypeError,
        "seeds",
    ),
    "ldufm_runs seeds=3": (
        lambda: svflow.explicit.ldufm_runs(4, 2, width=4, steps=2, seeds=3),
        TypeError,
        "seeds",
    ),
    "ldufm_runs kinks='no'": (
        lambda: svflow.explicit.ldufm_runs(4, 2, width=4, steps=2, seeds=(0,), kinks="no"),
        TypeError,
        "kinks",
    ),
    "ldufm_optimality_map kinks=1": (
        lambda: svflow.explicit.ldufm_optimality_map((3,), (2,), steps=2, seeds=1, kinks=1),
        TypeError,
        "kinks",
    ),
    "log_ratio_rate j=1.5": (lambda: svflow.studies.log_ratio_rate(np.ones(8), 3, 1.5, 2), TypeError, "j"),
    "gram_distance restarts=0": (
        lambda: svflow.studies.gram_distance(np.eye(3), np.eye(3), restarts=0),
        ValueError,
        "restarts",
    ),
    "cell_key base_seed=-1": (lambda: svflow._sweep.runner.cell_key(-1, x=1), ValueError, "base_seed"),
    "explicit_phase_map classes=[2.5]": (
        lambda: svflow.explicit.explicit_phase_map(classes=[2.5], depths=[2]),
        TypeError,
        "classes",
    ),
    "class_embedding rank=0": (lambda: svflow.studies.class_embedding(np.eye(4), 0), ValueError, "rank"),
    "dnc_factors seed=-1": (lambda: svflow.explicit.dnc_factors(4, 2, seed=-1), ValueError, "seed"),
    # silent wrong answers, now errors
    "spectral_init loss='foo'": (lambda: S4(loss="foo"), ValueError, "loss"),
    "simulate rank_rtol=-1": (lambda: SIM(t_end=1.0, rank_rtol=-1), ValueError, "rank_rtol"),
    "simulate rank_rtol=2": (lambda: SIM(t_end=1.0, rank_rtol=2), ValueError, "rank_rtol"),
    "simulate rank_rtol=nan": (lambda: SIM(t_end=1.0, rank_rtol=float("nan")), ValueError, "rank_rtol"),
    "train rank_rtol=2": (lambda: TRAIN(rank_rtol=2.0), ValueError, "rank_rtol"),
    "softmax_code rank > K - 1": (lambda: svflow.studies.softmax_code(4, 4), ValueError, "rank"),
    "basin_map seeds=3": (lambda: BASIN(seeds=3), TypeError, "seeds"),
    "basin_map seeds=()": (lambda: BASIN(seeds=()), ValueError, "seeds"),
    "basin_map seeds=(-1,)": (lambda: BASIN(seeds=(-1,)), ValueError, "seeds"),
    "train times off the step grid": (lambda: TRAIN(steps=None, times=[0.0, 0.15]), ValueError, "times"),
    "train times unsorted": (lambda: TRAIN(steps=None, times=[0.2, 0.1]), ValueError, "times"),
    "train times repeated": (lambda: TRAIN(steps=None, times=[0.1, 0.1]), ValueError, "times"),
    "simulate complex init": (lambda: SIM(init=np.ones(4) * (1 + 1j)), TypeError, "init"),
    "model_from_arrays complex": (
        lambda: svflow.model_from_arrays([np.ones((2, 4)) * 1j, np.ones((4, 2))]),
        TypeError,
        "factors",
    ),
    # unclear errors, now clear
    "simulate t_end='1e3'": (lambda: SIM(t_end="1e3"), TypeError, "t_end"),
    "simulate weight_decay='0.1'": (lambda: SIM(weight_decay="0.1"), TypeError, "weight_decay"),
    "simulate rtol=0": (lambda: SIM(solver=svflow.Solver(rtol=0.0)), ValueError, "rtol"),
    "simulate solver='euler'": (lambda: SIM(solver=svflow.Solver(method="euler")), ValueError, "method"),
    "simulate t_end and times": (lambda: SIM(t_end=1.0, times=[0.0, 1.0]), ValueError, "t_end"),
    "train eta='0.1'": (lambda: TRAIN(eta="0.1"), TypeError, "eta"),
    "train dtype=float16": (lambda: TRAIN(dtype="float16"), ValueError, "dtype"),
    "train model=None": (lambda: svflow.train(None, eta=0.1, steps=1), TypeError, "model"),
    "random_model dtype=float16": (
        lambda: svflow.random_model(4, depth=1, width=4, dtype="float16"),
        ValueError,
        "dtype",
    ),
    "random_model scale='1'": (
        lambda: svflow.random_model(4, depth=1, width=4, scale="1"),
        TypeError,
        "scale",
    ),
    "spectral_init spread=1": (lambda: S4(spread=1.0), ValueError, "spread"),
    "classify('x')": (lambda: svflow.studies.classify("x"), TypeError, "ds"),
    "save(DataArray)": (lambda: svflow.save(xr.DataArray([1.0]), "x.nc"), TypeError, "DataArray"),
}


@pytest.mark.parametrize("name", list(CASES))
def test_bad_input_names_the_parameter(name, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # nothing may be written by a rejected call
    call, exc, text = CASES[name]
    with pytest.raises(exc) as info:
        call()
    assert text in str(info.value), str(info.value)
    assert list(tmp_path.iterdir()) == []


def test_chunk_steps_zero_raises_instead_of_hanging():
    """The old code looped forever at chunk_steps=0; an alarm turns a hang into a failure."""

    def hang(signum, frame):
        raise AssertionError("train(chunk_steps=0) hangs")

    old = signal.signal(signal.SIGALRM, hang)
    signal.alarm(120)
    try:
        for bad in (0, -1):
            with pytest.raises(ValueError, match="chunk_steps"):
                svflow.train(_model(), eta=0.1, steps=3, chunk_steps=bad)
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, old)


# --- the rank of collapsed logits


def test_rank_has_an_absolute_floor():
    """By definition: K - 1 equal singular values of 1e-10 are numerically zero, not rank K - 1."""
    assert int(rank_from_sigma(np.r_[np.full(7, 1e-10), 0.0])) == 0
    assert int(rank_from_sigma(np.r_[1.0, np.full(6, 1e-10), 0.0])) == 1
    assert int(rank_from_sigma(np.r_[np.full(7, 10 * RANK_ATOL), 0.0])) == 7


def test_weight_decay_collapse_reports_rank_zero():
    """wd = 0.1 from a small start: the decay term -N wd lambda beats the gradient push
    (of order |lambda|^(2 - 2/N)), every lambda_i shrinks to ~0, and the rank is 0."""
    ds = svflow.simulate(8, 3, init=svflow.spectral_init(8, 3), weight_decay=0.1)
    assert float(np.abs(ds.lam.isel(time=-1)).max()) < RANK_ATOL
    assert int(ds["rank"].isel(time=-1)) == 0


# --- weight decay with the default horizon


def test_weight_decay_default_horizon_settles():
    """Default settings work with weight decay, and the end point is settled: a run
    continued 100 times further sees no change, and the vector field vanishes there."""
    wd, K, L = 1e-3, 8, 3
    start = svflow.spectral_init(K, L, scale=1e-2, seed=0)
    ds = svflow.simulate(K, L, init=start, weight_decay=wd)
    assert ds.attrs["t_end"] == pytest.approx(100 / wd)
    longer = svflow.simulate(
        K, L, init=start, weight_decay=wd, t_end=1e4 / wd, solver=svflow.Solver(max_steps=400_000)
    )
    lam, lam_long = ds.lam.values[-1], longer.lam.values[-1]
    np.testing.assert_allclose(lam, lam_long, rtol=1e-6, atol=1e-12)
    assert np.abs(lam).max() > 1.0  # a non-trivial stationary point, not the origin
    # stationarity of the balanced law: N G_i |lam_i|^(2 - 2/N) + N wd lam_i = 0
    from svflow._fields import rhs_balanced

    with jax.enable_x64(True):
        rate = np.asarray(rhs_balanced(0.0, jax.numpy.asarray(lam), "ce", wd, L + 1, svflow.Walsh(K), "auto"))
    # the two terms that cancel are each of size N wd |lam|; they cancel to 1e-6 of that
    assert np.abs(rate).max() < 1e-6 * (L + 1) * wd * np.abs(lam).max()


def test_weight_decay_long_horizon_error_says_what_works():
    with pytest.raises(svflow.IntegrationError, match=r"weight_decay = 0.001.*Pass t_end <= 100000 "):
        svflow.simulate(
            4,
            2,
            init=svflow.spectral_init(4, 2),
            weight_decay=1e-3,
            t_end=1e8,
            solver=svflow.Solver(max_steps=2000),
        )


# --- files


def _same_attrs(a: dict, b: dict):
    assert set(a) == set(b)
    for k in a:
        if isinstance(a[k], np.ndarray) or isinstance(b[k], np.ndarray):
            np.testing.assert_array_equal(a[k], b[k], err_msg=k)
        else:
            assert a[k] == b[k], k


def test_plain_xarray_netcdf_round_trip(tmp_path):
    """Any tool writes and reads svflow datasets: plain to_netcdf / open_dataset keep every attr."""
    for ds in (_lam_ds(), svflow.train(_model(), eta=0.1, steps=10, num_times=3)):
        path = tmp_path / f"{ds.attrs['engine']}.nc"
        ds.to_netcdf(path)
        with xr.open_dataset(path) as back:
            _same_attrs(ds.attrs, back.attrs)
            for name in ds.variables:
                _same_attrs(ds[name].attrs, back[name].attrs)
            xr.testing.assert_identical(back.load().drop_attrs(), ds.drop_attrs())
        assert not any(isinstance(v, str) and v.startswith("json:") for v in ds.attrs.values())
        # svflow.load reads the plain file the same way
        assert svflow.load(path).identical(ds)


def test_committed_old_format_datasets_still_load():
    """Datasets written with the earlier "json:..." attrs decode to the current attrs.

    ``tests/data/repulsion_0.1.nc`` is the repulsion figure's dataset as svflow 0.1 wrote it.
    """
    ds = svflow.load(ROOT / "tests" / "data" / "repulsion_0.1.nc")
    np.testing.assert_array_equal(ds.attrs["pair"], [1, 3])
    assert ds.attrs["jax_enable_x64"] == 1
    assert not any(isinstance(v, str) and v.startswith("json:") for v in ds.attrs.values())


def test_save_respects_umask_and_keeps_mode(tmp_path):
    ds = _lam_ds()
    old = os.umask(0o022)
    try:
        new = svflow.save(ds, tmp_path / "new.nc")
        assert stat.S_IMODE(new.stat().st_mode) == 0o644  # 0666 minus the umask
        svflow.save(ds, new)  # overwriting a 0644 file keeps 0644
        assert stat.S_IMODE(new.stat().st_mode) == 0o644
        new.chmod(0o600)  # a file made private stays private
        svflow.save(ds, new)
        assert stat.S_IMODE(new.stat().st_mode) == 0o600
        os.umask(0o077)
        private = svflow.save(ds, tmp_path / "private.nc")
        assert stat.S_IMODE(private.stat().st_mode) == 0o600
    finally:
        os.umask(old)
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]  # no temp files left


def test_save_and_load_expand_home(tmp_path, monkeypatch):
    monkeypatch.setenv("HOME", str(tmp_path))
    path = svflow.save(_lam_ds(), "~/runs/a.nc")
    assert path == tmp_path / "runs" / "a.nc" and path.exists()
    assert svflow.load("~/runs/a.nc").attrs["engine"] == "reduced"


def test_load_errors_name_the_file(tmp_path):
    good = svflow.save(_lam_ds(), tmp_path / "good.nc")
    data = good.read_bytes()
    (tmp_path / "truncated.nc").write_bytes(data[: len(data) // 2])
    (tmp_path / "corrupt.nc").write_bytes(np.random.default_rng(0).bytes(4096))
    (tmp_path / "empty.nc").write_bytes(b"")
    store = tmp_path / "sweep.zarr"
    store.mkdir()
    (store / "zarr.json").write_text("{}")
    for name, exc, text in [
        ("truncated.nc", ValueError, "truncated"),
        ("corrupt.nc", ValueError, "corrupt"),
        ("empty.nc", ValueError, "empty"),
        ("sweep.zarr", IsADirectoryError, "open_sweep"),
        ("missing.nc", FileNotFoundError, "does not exist"),
    ]:
        with pytest.raises(exc, match=text) as info:
            svflow.load(tmp_path / name)
        assert str(tmp_path / name) in str(info.value)


def test_save_errors_name_the_target_not_the_temp_file(tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("x")
    with pytest.raises(NotADirectoryError) as info:
        svflow.save(_lam_ds(), blocker / "a.nc")
    assert str(blocker / "a.nc") in str(info.value) and ".tmp" not in str(info.value)
    with pytest.raises(IsADirectoryError, match="directory"):
        svflow.save(_lam_ds(), tmp_path)
    if os.geteuid() != 0:  # root writes into read-only folders
        ro = tmp_path / "ro"
        ro.mkdir()
        ro.chmod(0o555)
        with pytest.raises(PermissionError) as info:
            svflow.save(_lam_ds(), ro / "a.nc")
        assert str(ro / "a.nc") in str(info.value) and ".tmp" not in str(info.value)


def test_datasets_carry_the_git_commit():
    """The commit in the attrs is the one git reports for this checkout."""
    from svflow._dataset import _git_state

    _git_state.cache_clear()  # read once per process: re-read the tree as it is now
    ds = _lam_ds()
    head = subprocess.run(["git", "rev-parse", "HEAD"], cwd=ROOT, capture_output=True, text=True)
    if head.returncode != 0:  # outside a git checkout the attrs say so
        assert (ds.attrs["git_commit"], ds.attrs["git_dirty"]) == ("unknown", -1)
        return
    assert ds.attrs["git_commit"] == head.stdout.strip()
    dirty = subprocess.run(
        ["git", "status", "--porcelain", "--untracked-files=no"], cwd=ROOT, capture_output=True, text=True
    ).stdout.strip()
    assert ds.attrs["git_dirty"] == int(bool(dirty))


# --- scoped float64


X64_SCRIPT = textwrap.dedent("""
    import jax
    before = bool(jax.config.jax_enable_x64)
    import svflow
    assert bool(jax.config.jax_enable_x64) == before, "import svflow changed jax_enable_x64"
    ds = svflow.simulate(4, 2, init=svflow.spectral_init(4, 2), t_end=100.0, num_times=5)
    assert ds.lam.dtype == "float64" and ds.attrs["jax_enable_x64"] == 1
    model = svflow.random_model(4, depth=2, width=8, key=0)
    assert model.dtype == "float64"
    tr = svflow.train(model, eta=0.1, steps=10, num_times=3)
    assert tr.loss.dtype == "float64"
    assert model.objective().dtype == "float64"  # the model's maths keeps float64
    assert bool(jax.config.jax_enable_x64) == before, "a call changed jax_enable_x64"
    print("ok", before)
""")


@pytest.mark.parametrize("x64", ["0", "1"])
def test_import_svflow_leaves_x64_as_it_was(x64):
    """A fresh interpreter in float32 (and in float64) mode: svflow changes nothing global,
    yet computes in float64 inside its own calls."""
    out = subprocess.run(
        [sys.executable, "-c", X64_SCRIPT],
        env={**ENV, "JAX_ENABLE_X64": x64},
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert out.returncode == 0, out.stderr[-3000:]
    assert out.stdout.split() == ["ok", str(x64 == "1")]


# --- sweeps interrupted with Ctrl-C


def _cell(key, eps):
    return {"y": eps * jax.random.normal(key, ())}


def test_sweep_ctrl_c_says_what_is_safe_and_resumes(tmp_path, monkeypatch):
    import svflow._sweep.runner as sw

    grid = {"eps": np.arange(1.0, 7.0)}
    calls = []
    real = sw.dispatch_chunk

    def interrupt_third(*args, **kw):
        calls.append(1)
        if len(calls) == 3:
            raise KeyboardInterrupt
        return real(*args, **kw)

    monkeypatch.setattr(sw, "dispatch_chunk", interrupt_third)
    store = tmp_path / "s.zarr"
    with pytest.raises(svflow.SweepInterrupted) as info:
        svflow.sweep(_cell, grid, store=store, chunk=2, progress=False)
    # chunk 0 was written when chunk 1 was dispatched; the Ctrl-C came at chunk 2
    assert "1 of 3 chunks" in str(info.value) and "again to resume" in str(info.value)
    assert isinstance(info.value, KeyboardInterrupt)
    assert info.value.__cause__ is None and info.value.__suppress_context__
    part = svflow.open_sweep(store, allow_incomplete=True)
    assert int(np.isfinite(part.y.values).sum()) == 2
    monkeypatch.setattr(sw, "dispatch_chunk", real)
    resumed = svflow.sweep(_cell, grid, store=store, chunk=2, progress=False)
    fresh = svflow.sweep(_cell, grid, store=tmp_path / "fresh.zarr", chunk=2, progress=False)
    np.testing.assert_array_equal(resumed.y.values, fresh.y.values)


# --- scripts fail before computing


def test_scenario_with_unwritable_out_fails_at_once(tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("x")
    out = subprocess.run(
        [sys.executable, str(ROOT / "scenarios" / "repulsion.py"), "--quick", "--out", str(blocker / "r.nc")],
        env=ENV,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert out.returncode == 2 and "--out" in out.stderr and str(blocker) in out.stderr
    assert out.stdout == ""  # nothing computed (the scenario prints its table first)


def test_quick_figures_never_overwrite_the_full_set(tmp_path):
    from svflow.figures.__main__ import FULL_OUT, QUICK_OUT, main

    assert QUICK_OUT.parent == FULL_OUT
    ignored = subprocess.run(["git", "check-ignore", "-q", "figures/quick/x.png"], cwd=ROOT)
    assert ignored.returncode == 0
    with pytest.raises(SystemExit) as info:
        main(["--quick", "--out", str(ROOT / "figures"), "--only", "repulsion"])
    assert info.value.code == 2
    blocker = tmp_path / "file"
    blocker.write_text("x")
    with pytest.raises(SystemExit):
        main(["--out", str(blocker / "figs"), "--only", "repulsion"])


# --- discoverability


def test_help_lists_the_functions_and_the_docstring_examples_run(tmp_path, monkeypatch):
    for name in (
        "simulate",
        "spectral_init",
        "outcome",
        "train",
        "random_model",
        "sweep",
        "save",
        "load",
        "studies",
        "explicit",
    ):
        assert name in svflow.__all__ and name in svflow.__doc__
    assert "basin_map" in svflow.studies.__all__ and "basin_map" in svflow.__doc__
    assert all(hasattr(svflow, n) for n in svflow.__all__)
    monkeypatch.chdir(tmp_path)
    code = []
    for block in svflow.__doc__.split("::\n")[1:]:  # reST literal blocks: the indented lines
        lines = []
        for line in block.splitlines():
            if line.strip() and not line.startswith("    "):
                break
            lines.append(line)
        code.append(textwrap.dedent("\n".join(lines)))
    code = "\n".join(code)
    exec(compile(code, "svflow.__doc__", "exec"), {})
    assert (tmp_path / "run.nc").exists() and (tmp_path / "demo.zarr").exists()


# --- outcome and basin_map (issue 26)


@pytest.fixture(scope="module")
def lam8():
    return np.asarray(svflow.spectral_init(8, 4, seed=0).lam0)


def test_outcome_single_horizon_decides_like_several(lam8):
    # a single horizon is preceded by the check horizon min(30, h / 3) (as in basin_map)
    one = svflow.outcome(8, 4, init=lam8, horizons=(100.0,), kkt=False)
    two = svflow.outcome(8, 4, init=lam8, horizons=(100.0 / 3, 100.0), kkt=False)
    assert int(one["outcome"]) != -1
    assert int(one["outcome"]) == int(two["outcome"])
    np.testing.assert_array_equal(one["support"].values, two["support"].values)


def test_outcome_raises_on_solver_failure_with_advice(lam8):
    from svflow._integrate import IntegrationError

    with pytest.raises(IntegrationError, match="max_steps"):
        svflow.outcome(8, 4, init=lam8, solver=svflow.Solver(rtol=1e-6, atol=1e-9, max_steps=5))
    with pytest.raises(IntegrationError, match="rescale|max_steps"):
        svflow.outcome(8, 4, init=lam8 * 1e200)


def test_failed_run_reports_the_horizon_reached_and_no_support(lam8):
    from svflow._groups import resolve_group
    from svflow._integrate import Solver
    from svflow._outcome import Criterion, staged_outcome

    cfg = Solver(rtol=1e-6, atol=1e-9, max_steps=5)
    grp = resolve_group(None, 8)
    kw = dict(depth=4, balanced=True, horizons=(1e5, 1e6), config=cfg, criterion=Criterion(), group=grp)
    st, _ = staged_outcome(lam8[None], 0.0, limit="ratio", **kw)
    assert st["solver_result"][0] != 0
    assert st["tau"][0] == 0.0  # not the unreached 1e6
    assert st["code"][0] == -1 and not st["support"].any()


def test_outcome_refuses_tolerances_it_cannot_certify_with(lam8):
    with pytest.raises(ValueError, match="too loose"):
        svflow.outcome(8, 4, init=lam8, solver=svflow.Solver(rtol=1.0, atol=1e-9, max_steps=100_000))
    with pytest.raises(ValueError, match="float64"):
        svflow.outcome(8, 4, init=lam8, solver=svflow.Solver(rtol=1e-20, atol=1e-9, max_steps=100_000))
    with pytest.raises(ValueError, match="too loose"):
        svflow.studies.basin_map(
            4, [2], [0.1], [0.1], solver=svflow.Solver(rtol=0.5, atol=1e-8, max_steps=100_000)
        )


def test_negative_lambda_is_refused_by_outcome_and_followed_by_simulate(lam8):
    """outcome has no limit to certify from a negative balanced mode; simulate follows it
    exactly: under cross-entropy d lam_i/dt = (N/K)(1 - mu_i)|lam_i|^(2-2/N) > 0, so every
    negative mode rises towards 0 and never changes sign."""
    with pytest.raises(ValueError, match="never grows"):
        svflow.outcome(8, 3, init=-lam8)
    ds = svflow.simulate(8, 3, init=-lam8, t_end=1e4, num_times=5)
    lam = ds["lam"].values[:, 1:]
    assert np.all(lam <= 0) and np.all(np.diff(lam, axis=0) >= 0)
    assert np.all(np.abs(lam[-1]) < np.abs(lam8[1:]))
    with pytest.raises(ValueError, match="never grows"):
        svflow.outcome(8, 3, init=np.stack([lam8, -lam8]), batch_dims="start")


def test_outcome_and_basin_map_argument_errors(lam8):
    with pytest.raises(TypeError, match="batch_dims"):
        svflow.outcome(8, 4, init=lam8[None], batch_dims=3)
    with pytest.raises(ValueError, match="K = 8 classes"):
        svflow.outcome(6, 4, init=svflow.spectral_init(8, 4))
    with pytest.raises(TypeError, match=wrong_type("kkt must be True or False", "kkt")):
        svflow.outcome(8, 4, init=lam8, kkt="no")
    with pytest.raises(ValueError, match="K <= 1024"):
        svflow.outcome(2048, 2, init=np.ones(2048))
    with pytest.raises(ValueError, match="at least one depth"):
        svflow.studies.basin_map(4, [], [0.1], [0.1])
    with pytest.raises(TypeError, match="leaders"):
        svflow.studies.basin_map(4, [2], [0.1], [0.1], leaders=[1.5, 2])
    assert "classes: K >= 2" in svflow.outcome.__doc__


def test_top_level_is_small_and_its_list_is_its_bindings():
    """At most 35 top-level names (issue 22; the moves are in the CHANGELOG), and
    ``__all__`` is every public binding of ``svflow/__init__.py`` (a second route:
    the module's own namespace), with no lazy shim behind it."""
    public = {n for n, v in vars(svflow).items() if not n.startswith("_") and not isinstance(v, ModuleType)}
    assert sorted(public | {"explicit", "studies"}) == svflow.__all__  # submodules loaded later excluded
    assert len(svflow.__all__) <= 35
    assert not hasattr(svflow, "__getattr__")
    for moved in ("basin_map", "classify", "hadamard", "resolve_group", "cell_key"):
        with pytest.raises(AttributeError):
            getattr(svflow, moved)


@pytest.mark.parametrize(
    "call",
    [
        lambda: svflow.simulate(4, 1, init=np.ones(4), rtol=1e-6),
        lambda: svflow.outcome(4, 1, init=np.ones(4), max_steps=10),
        lambda: svflow.studies.basin_map(4, [1], [0.1], [0.1], atol=1e-9),
        lambda: svflow.flow(_model(), lanes=4),
        lambda: svflow.studies.repulsion(8, [1], rtol=1e-9),
    ],
)
def test_old_solver_keywords_say_to_pass_a_solver(call):
    """rtol/atol/max_steps/lanes moved into svflow.Solver: the error names the replacement."""
    with pytest.raises(TypeError, match=r"use solver=svflow\.Solver\((rtol|atol|max_steps|lanes)="):
        call()


def test_solver_rejects_bad_settings_and_records_netcdf_safe_attrs():
    with pytest.raises(ValueError, match="method"):
        svflow.Solver(method="euler")
    with pytest.raises(ValueError, match="lanes"):
        svflow.Solver(lanes=0)
    with pytest.raises(TypeError, match=wrong_type("solver must be an svflow.Solver", "solver")):
        svflow.simulate(4, 1, init=np.ones(4), solver="tsit5")
    attrs = svflow.Solver(rtol=1e-7, lanes=8).as_attrs()
    assert attrs["rtol"] == 1e-7 and attrs["lanes"] == 8 and attrs["solver"] == "tsit5"
    assert all(isinstance(v, (str, int, float)) and not isinstance(v, bool) for v in attrs.values())
    assert "lanes" not in svflow.Solver().as_attrs()  # None is not netCDF-safe: left out


def test_flags_take_true_or_false_only():
    """One check for every on/off argument (svflow._checks.check_bool): numpy bools pass as
    Python bools; 1, 0 and strings raise a TypeError that names the argument."""
    from svflow._checks import check_bool

    assert check_bool("kinks", np.True_) is True and check_bool("kinks", False) is False
    for bad in (1, 0, "yes", None):
        with pytest.raises(TypeError, match="kinks must be True or False"):
            check_bool("kinks", bad)
    model = svflow.random_model(4, depth=2, width=4, key=0)
    with pytest.raises(TypeError, match=wrong_type("factor_spectra must be True or False", "factor_spectra")):
        svflow.flow(model, t_end=1.0, factor_spectra=1)
