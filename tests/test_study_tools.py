"""The shared plumbing of studies and scenarios: grid_dataset and scenario_cli."""

from __future__ import annotations

import numpy as np
import pytest
import xarray as xr

import svflow
from svflow import _dims as D
from svflow._cli import scenario_cli
from svflow._dataset import grid_dataset


def test_grid_dataset_takes_long_name_and_units_from_the_vocabulary():
    ds = grid_dataset(
        {D.DEPTH: np.array([1, 2]), "factors": (D.DEPTH, np.array([2, 3]), {}), "made_up": [7]},
        {
            "rho": ((D.DEPTH,), np.array([0.5, 0.25])),
            "outcome": ((D.DEPTH,), np.array([0, 2]), {"long_name": "this map's own", "description": "d"}),
        },
    )
    # a name the table holds: its long_name and units, written once in svflow._dims
    assert ds["rho"].attrs == {"long_name": "one-vs-rest margin of the rank-r class embedding", "units": "1"}
    assert ds[D.DEPTH].attrs == {"long_name": D.VOCABULARY[D.DEPTH][0], "units": "1"}
    assert "N = L + 1" in ds[D.DEPTH].attrs["long_name"] and ds["factors"].attrs["units"] == "1"
    # attrs given with a variable win over the table and keep their extras
    assert ds["outcome"].attrs == {"long_name": "this map's own", "units": "1", "description": "d"}
    # a name the table does not hold gets no invented attrs
    assert ds["made_up"].attrs == {}
    assert D.attrs("made_up") == {} and D.attrs(D.TIME, units="s")["units"] == "s"


def test_grid_dataset_is_netcdf_safe_with_provenance(tmp_path):
    ds = grid_dataset(
        {
            D.DEPTH: (np.array([1, 2]), {"long_name": "depth L"}),
            D.SEED: np.arange(3),
            "factors": (D.DEPTH, np.array([2, 3]), {"long_name": "N = L + 1"}),
        },
        {
            "loss": ((D.DEPTH, D.SEED), np.ones((2, 3)), {"long_name": "loss", "flag": True}),
            "ok": ((D.DEPTH,), np.array([True, False])),
        },
        {"title": "t", "spectral": False, "weights": [0.1, 0.2], "nothing": None},
    )
    assert ds["loss"].dims == (D.DEPTH, D.SEED)
    assert ds["factors"].dims == (D.DEPTH,) and ds["factors"].attrs["long_name"] == "N = L + 1"
    assert ds[D.DEPTH].attrs["long_name"] == "depth L"
    # attrs are netCDF-safe: booleans as 0/1, None as "none", lists as arrays
    assert ds.attrs["spectral"] == 0 and ds.attrs["nothing"] == "none"
    assert ds["loss"].attrs["flag"] == 1
    np.testing.assert_array_equal(ds.attrs["weights"], [0.1, 0.2])
    # provenance is added
    assert {"svflow_version", "git_commit", "created"} <= set(ds.attrs)
    path = tmp_path / "g.nc"
    ds.to_netcdf(path)
    back = xr.open_dataset(path)
    np.testing.assert_array_equal(back["loss"].values, ds["loss"].values)
    assert back.attrs["title"] == "t"


SETTINGS = {"quick": {"a": 1, "b": (0.5,)}, "full": {"a": 2, "b": (0.5, 1.0)}, "wide": {"a": 3}}


def test_scenario_cli_picks_and_prints_the_setting(capsys):
    args, setting, cfg = scenario_cli("doc", SETTINGS, ["--quick"])
    assert setting == "quick" and cfg == SETTINGS["quick"] and args.quick and args.out is None
    cfg["a"] = 99  # a copy: the shared setting is untouched
    assert SETTINGS["quick"]["a"] == 1
    assert "[quick setting] a=1, b=(0.5,)" in capsys.readouterr().out
    args, setting, cfg = scenario_cli("doc", SETTINGS, ["--setting", "wide"])
    assert setting == "wide" and cfg == {"a": 3} and not args.quick
    assert scenario_cli("doc", SETTINGS, [])[1] == "full"


def test_scenario_cli_script_options():
    def options(p):
        p.add_argument("--classes", type=int, default=None)

    args, _, _ = scenario_cli("doc", SETTINGS, ["--classes", "16"], options=options)
    assert args.classes == 16


def test_scenario_cli_rejects_disagreement_and_bad_out_before_printing(tmp_path, capsys):
    with pytest.raises(SystemExit) as e:
        scenario_cli("doc", SETTINGS, ["--quick", "--setting", "full"])
    assert e.value.code == 2
    blocker = tmp_path / "file"
    blocker.write_text("x")
    with pytest.raises(SystemExit) as e:
        scenario_cli("doc", SETTINGS, ["--out", str(blocker / "r.nc")])
    assert e.value.code == 2
    captured = capsys.readouterr()
    assert captured.out == "" and "--out" in captured.err
    with pytest.raises(ValueError, match="quick"):
        scenario_cli("doc", {"full": {}}, [])


def test_check_writable_refuses_a_folder_path(tmp_path):
    with pytest.raises(IsADirectoryError):
        svflow._dataset.check_writable(str(tmp_path / "new" / ".."))


def test_figures_and_scenarios_share_one_setting():
    from svflow.figures import fig_code_convergence, fig_groups, fig_phase_map, fig_repulsion
    from svflow.studies._phase import FULL_SETTING, QUICK_SETTING

    assert fig_phase_map.QUICK is QUICK_SETTING and fig_phase_map.FULL is FULL_SETTING
    for mod in (fig_code_convergence, fig_groups, fig_repulsion):
        assert set(mod.QUICK) == set(mod.FULL)


def test_figures_runner_turns_on_a_computes_progress_and_keeps_a_studys_setting(tmp_path, monkeypatch):
    """``python -m svflow.figures`` passes ``progress=True`` to a figure whose compute
    takes it (and calls one that does not without it), and keeps a study's own
    ``setting`` attr (the optimality map's "polished") instead of writing "full"."""
    import matplotlib.pyplot as plt
    import xarray as xr

    from svflow import figures
    from svflow.figures import __main__ as runner

    calls = []

    def with_bar(quick, progress=False):
        calls.append(("with_bar", quick, progress))
        return xr.Dataset({"x": ("i", [1.0])}, attrs={"setting": "polished"})

    def without_bar(quick):
        calls.append(("without_bar", quick))
        return xr.Dataset({"x": ("i", [2.0])})

    fake = {
        "t_with_bar": figures.Figure("t_with_bar", with_bar, lambda ds: plt.figure(), ""),
        "t_without_bar": figures.Figure("t_without_bar", without_bar, lambda ds: plt.figure(), ""),
    }
    monkeypatch.setattr(runner, "registry", lambda: dict(fake))
    assert runner.main(["--out", str(tmp_path)]) == 0
    assert calls == [("with_bar", False, True), ("without_bar", False)]
    assert svflow.load(tmp_path / "data" / "t_with_bar.nc").attrs["setting"] == "polished"
    assert svflow.load(tmp_path / "data" / "t_without_bar.nc").attrs["setting"] == "full"


def test_ldufm_sweep_progress_bar(capsys):
    """``ldufm_sweep(..., progress=True)`` shows one bar over the swept values."""
    ds = svflow.explicit.ldufm_sweep(
        "lam",
        (0.004, 0.008),
        progress=True,
        classes=3,
        depth=2,
        width=4,
        steps=20,
        seeds=(0,),
        num_times=3,
        polish_steps=2,
        kinks=False,
    )
    assert list(ds["lam"].values) == [0.004, 0.008]
    err = capsys.readouterr().err
    assert "L-DUFM runs over lam" in err and "1/2" in err and "lam = 0.008" in err
    with pytest.raises(TypeError, match="progress"):
        svflow.explicit.ldufm_sweep("lam", (0.004,), progress="yes")
