"""A new user's first hour, again: save times, version, errors, files, docs.

Each test pins behaviour against a route outside the code under test: a
closed-form trajectory, the changelog file, netCDF/zarr as read back by
xarray, the README's own text, the colours' RGB values.
"""

from __future__ import annotations

import re
import sys
import warnings
from pathlib import Path

import numpy as np
import pytest
import xarray as xr

import svflow

from helpers import wrong_type

ROOT = Path(__file__).resolve().parents[1]
pytestmark = pytest.mark.scoped_x64


def _logistic(lam0, t, K):
    """Squared loss, one weight matrix (N = 2), balanced: d lambda / dt = (2/K) lambda (1 - lambda)."""
    lam0 = np.asarray(lam0, float)
    return 1.0 / (1.0 + (1.0 / lam0 - 1.0) * np.exp(-2.0 * np.asarray(t)[:, None] / K))


# --- save times after the start


@pytest.mark.parametrize("progress", [False, True])
def test_simulate_save_times_after_the_start(progress):
    """times without 0: the run starts at t = 0 and saves exactly the times given."""
    lam0, ts = [0.2, 0.1, 0.3, 0.5], [1.0, 10.0, 100.0]
    ds = svflow.simulate(
        4,
        1,
        init=lam0,
        loss="squared",
        times=ts,
        solver=svflow.Solver(rtol=1e-10, atol=1e-12),
        progress=progress,
    )
    np.testing.assert_array_equal(ds.time.values, ts)
    np.testing.assert_allclose(ds.lam.values, _logistic(lam0, ts, 4), rtol=1e-7)


def test_batched_save_times_after_the_start():
    lam0 = np.array([[0.2, 0.1, 0.3, 0.5], [0.6, 0.4, 0.05, 0.9]])
    ts = [0.5, 50.0]
    ds = svflow.simulate(
        4,
        1,
        init=lam0,
        loss="squared",
        times=ts,
        batch_dims="start",
        solver=svflow.Solver(rtol=1e-10, atol=1e-12),
    )
    assert ds.lam.dims == ("start", "time", "mode")
    for b in range(2):
        np.testing.assert_allclose(ds.lam.values[b], _logistic(lam0[b], ts, 4), rtol=1e-7)


def test_simulate_times_zero_only_names_times():
    with pytest.raises(ValueError, match="save time after t = 0") as e:
        svflow.simulate(4, 1, init=[0.0, 0.1, 0.2, 0.3], times=[0])
    assert "saves" not in str(e.value)


def test_train_save_times_after_the_start_and_whole_steps():
    """train records exactly the times given, from step 0; t_end must be whole steps."""
    model = svflow.random_model(4, depth=1, width=4, key=0)
    after = svflow.train(model, eta=0.1, times=[0.3, 0.6])
    full = svflow.train(model, eta=0.1, times=[0.0, 0.3, 0.6])
    np.testing.assert_allclose(after.time.values, [0.3, 0.6], rtol=1e-15)
    np.testing.assert_array_equal(after.step.values, [3, 6])
    np.testing.assert_allclose(after.loss.values, full.loss.values[1:], rtol=1e-12)
    with pytest.raises(ValueError, match=r"0\.9 or 1\.2"):
        svflow.train(model, eta=0.3, t_end=1.0)
    ds = svflow.train(model, eta=0.3, t_end=1.2, num_times=3)
    assert float(ds.time[-1]) == pytest.approx(1.2) and int(ds.step[-1]) == 4


# --- version and changelog


def test_version_is_the_newest_changelog_entry():
    text = (ROOT / "CHANGELOG.md").read_text(encoding="utf-8")
    versions = re.findall(r"^## \[(\d+\.\d+\.\d+)\]", text, re.M)
    assert versions, "CHANGELOG.md has no '## [X.Y.Z]' headings"
    assert svflow.__version__ == versions[0]
    assert "~/.cache/svflow/jax" in text and "rerun" in text  # the 0.2 cache defect, what to do


# --- clear errors


@pytest.mark.parametrize(
    "init, match",
    [
        ([[0.0, 0.1, 0.2, 0.3], [0.0, 0.1, 0.2]], "ragged"),
        ([[0.0, 0.1, 0.2, 0.3], 0.5], "ragged"),
        ("START_THEN_LIST", "mixes Start"),
        ("LIST_THEN_START", "mixes Start"),
    ],
)
@pytest.mark.parametrize("batch_dims", [None, "start"])
def test_ragged_or_mixed_init_is_named(init, match, batch_dims):
    start = svflow.spectral_init(4, 1)
    if init == "START_THEN_LIST":
        init = [start, [0.0, 0.1, 0.2, 0.3]]
    elif init == "LIST_THEN_START":
        init = [[0.0, 0.1, 0.2, 0.3], start]
    with pytest.raises(ValueError, match=match) as e:
        svflow.simulate(4, 1, init=init, t_end=10.0, batch_dims=batch_dims)
    assert "inhomogeneous" not in str(e.value)


def test_sweep_store_must_be_a_path():
    def cell(key, x):
        return {"y": x}

    with pytest.raises(TypeError, match="store must be the path"):
        svflow.sweep(cell, {"x": [1.0, 2.0]}, store=None, chunk=2)
    with pytest.raises(TypeError, match="store must be the path"):
        svflow.open_sweep(123)


def test_compare_and_nc1_name_their_arguments():
    with pytest.raises(TypeError, match=wrong_type("xarray Datasets", "reduced")):
        svflow.compare(1, 2)
    with pytest.raises(ValueError, match="divisible by classes"):
        svflow.explicit.nc1(np.ones((3, 5)), 2)
    with pytest.raises(ValueError, match="matrix"):
        svflow.explicit.nc1(1, 2)
    # a matrix of two classes with identical samples: no within-class spread, NC1 = 0
    X = np.array([[1.0, 1.0, -1.0, -1.0], [0.5, 0.5, 2.0, 2.0]])
    assert svflow.explicit.nc1(X, 2) == pytest.approx(0.0, abs=1e-15)


# --- files


def _small():
    return svflow.simulate(4, 1, init=[0.0, 0.1, 0.2, 0.3], t_end=10.0, num_times=4)


def test_load_reads_netcdf3(tmp_path):
    ds = _small()
    path = tmp_path / "nc3.nc"
    ds.to_netcdf(path, engine="scipy")
    assert path.read_bytes()[:3] == b"CDF"  # netCDF3, not HDF5
    back = svflow.load(path)
    np.testing.assert_array_equal(back.lam.values, ds.lam.values)
    assert back.attrs["classes"] == 4


def test_save_refuses_a_zarr_name(tmp_path):
    with pytest.raises(ValueError, match=r"\.zarr.*to_zarr"):
        svflow.save(_small(), tmp_path / "x.zarr")
    assert not (tmp_path / "x.zarr").exists()


def test_one_number_attrs_round_trip_identical(tmp_path):
    """An attr list of one number (a one-depth basin map's wall time) survives netCDF."""
    from svflow._dataset import grid_dataset

    ds = grid_dataset(
        {"depth": [2]},
        {"x": (("depth",), [1.5])},
        {"wall_time_s_per_depth": [15.2], "flags": [True], "depths": [2, 3]},
    )
    path = svflow.save(ds, tmp_path / "a.nc")
    with xr.open_dataset(path) as raw:  # plain xarray, not svflow.load
        assert raw.load().identical(ds)
    assert svflow.load(path).identical(ds)
    np.testing.assert_array_equal(ds.attrs["depths"], [2, 3])


def test_text_labels_write_to_zarr_without_warnings(tmp_path):
    ds = _small()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        ds.to_zarr(tmp_path / "a.zarr", consolidated=False)
        svflow.load(svflow.save(ds, tmp_path / "a.nc")).to_zarr(tmp_path / "b.zarr", consolidated=False)
    assert [str(w.message)[:80] for w in caught] == []
    back = xr.open_zarr(tmp_path / "a.zarr", consolidated=False).load()
    assert list(back["part"].values) == list(ds["part"].values) == ["real"] * 4


# --- basins scenario


def _basins():
    sys.path.insert(0, str(ROOT / "scenarios"))
    import basins

    return basins


def test_basins_dry_run_prints_a_plan(tmp_path, capsys):
    assert _basins().main(["--quick", "--classes", "4", "--dry-run", "--store", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    assert "{" not in out and "'" not in out  # no raw dicts
    # lag family: 5 depths x 2 eps x 12 lags; random: 5 x 2 x 4 spreads x 2 seeds
    assert "K = 4, lag family" in out and "120 starts (5 depths x 24)" in out
    assert "K = 4, random family" in out and "80 starts (5 depths x 16)" in out
    assert "not yet created" in out and "to compute" in out


def test_basins_out_writes_one_file_per_k_and_keeps_both_families_attrs():
    basins = _basins()
    paths = basins.out_paths("res/basins.nc", (4, 8))
    assert paths == {4: Path("res/basins_K4.nc"), 8: Path("res/basins_K8.nc")}
    lag = xr.Dataset(attrs={"classes": 4, "params_family": "lag", "family": "lag", "rtol": 1e-5})
    rnd = xr.Dataset(attrs={"classes": 4, "params_family": "random", "family": "random", "rtol": 1e-5})
    attrs = basins._family_attrs(lag, rnd)
    assert attrs == {"classes": 4, "lag_params_family": "lag", "random_params_family": "random", "rtol": 1e-5}


# --- docs and figures


def _readme_blocks():
    return re.findall(r"```python\n(.*?)```", (ROOT / "README.md").read_text(encoding="utf-8"), re.S)


def test_readme_python_blocks_import_what_they_use():
    blocks = _readme_blocks()
    assert len(blocks) >= 2
    for block in blocks:
        if "svflow." in block:
            assert re.search(r"^import svflow\b", block, re.M), block[:200]


def test_readme_dataset_table_says_which_runs_have_each_variable():
    """A variable of the layout table missing from some engine's dataset says where it exists."""
    text = (ROOT / "README.md").read_text(encoding="utf-8")
    table = text.split("### Dataset layout", 1)[1].split("\n\n", 2)[1]
    rows = re.findall(r"^\| `([^|]+)` \|[^|]*\| ([^|]*) \|$", table, re.M)
    assert len(rows) >= 6
    lam0 = [0.0, 1.0, 0.8, 0.6, 0.9, 0.7, 0.5, 1.1]
    runs = {
        "simulate": svflow.simulate(8, 1, init=lam0, t_end=1.0, num_times=2),
        "spectral": svflow.train(svflow.spectral_model(lam0, depth=1, width=8, key=0), eta=0.1, steps=1),
        "random": svflow.train(svflow.random_model(8, depth=1, width=8, key=0), eta=0.1, steps=1),
    }
    for names, meaning in rows:
        for name in re.split(r"`, `", names):
            missing = [k for k, ds in runs.items() if name not in ds]
            if "random" in missing:
                assert "spectral" in meaning and "random_model" in meaning, (name, meaning)
            if "simulate" in missing:
                assert "full engine" in meaning or "store_s" in meaning, (name, meaning)


def test_public_docstrings_do_not_cite_private_module_docstrings():
    bad = []
    for ns, names in ((svflow, svflow.__all__), (svflow.studies, svflow.studies.__all__)):
        for name in names:
            doc = getattr(getattr(ns, name), "__doc__", None) or ""
            if isinstance(getattr(ns, name), type(svflow)):
                continue
            if "module docstring" in doc or re.search(r":mod:`svflow\._", doc):
                bad.append(name)
    for name in svflow.explicit.__all__:
        doc = getattr(svflow.explicit, name).__doc__ or ""
        if "module docstring" in doc or re.search(r":mod:`svflow\._", doc):
            bad.append(f"explicit.{name}")
    assert bad == []


def test_groups_figure_colours_are_distinct():
    """Every two outcome colours of the groups figure differ clearly (RGB distance >= 0.25)."""
    from matplotlib.colors import to_rgb

    from svflow.figures.fig_groups import outcome_colors

    rgb = np.array([to_rgb(c) for c in outcome_colors(8)])
    dist = np.linalg.norm(rgb[:, None] - rgb[None], axis=-1)
    assert dist[np.triu_indices(len(rgb), 1)].min() >= 0.25


def test_committed_figure_datasets_have_provenance_or_are_listed_stale():
    """Each figures/data/*.nc records its code (git commit, svflow version, setting) in plain
    netCDF attrs, or figures/README.md names it under "Stale datasets"."""
    text = (ROOT / "figures" / "README.md").read_text(encoding="utf-8")
    stale_par = text.split("**Stale datasets.**", 1)[1].split("\n\n", 1)[0]
    stale = set(re.findall(r"`([\w*]+)`", stale_par))
    fresh = []
    for path in sorted((ROOT / "figures" / "data").glob("*.nc")):
        with xr.open_dataset(path) as raw:  # plain xarray: what any reader sees
            attrs = raw.attrs
        old = any(isinstance(v, str) and v.startswith("json:") for v in attrs.values())
        ok = not old and all(k in attrs for k in ("git_commit", "svflow_version", "setting"))
        ok = ok and len(str(attrs["git_commit"])) == 40 and int(attrs.get("git_dirty", 1)) == 0
        if ok:
            fresh.append(path.stem)
        else:
            assert path.stem in stale or any(path.stem.startswith(s.rstrip("*")) for s in stale), path.name
    assert {"singular_values", "repulsion", "crosscheck", "explicit_ode"} <= set(fresh)
