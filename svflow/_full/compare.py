r"""Cross-check of the two engines: full GD against the reduced ODE.

Full-batch gradient descent with step $\eta$ after k steps approximates the
gradient flow at $t = k\eta$ with an $O(\eta)$ error (docs: theory/models.md, 'Time'), so
the relative error of $\lambda(t)$ between a spectral-start run of
:func:`svflow.train` and :func:`svflow.simulate` from the same start should
halve when $\eta$ halves.
"""

from __future__ import annotations

import numpy as np
import xarray as xr

from .. import _dims as D
from .._dataset import netcdf_safe
from .._precision import computes

__all__ = ["compare"]


def _lam(ds: xr.Dataset, which: str) -> xr.DataArray:
    if not isinstance(ds, xr.Dataset):
        raise TypeError(
            f"compare(reduced, full) takes two xarray Datasets (from svflow.simulate and "
            f"svflow.train); the {which} argument is of type {type(ds).__name__}: {ds!r:.80}."
        )
    if D.LAM not in ds:
        raise ValueError(
            f"the {which} dataset has no '{D.LAM}' variable: compare needs "
            "lambda(t) from svflow.simulate and from svflow.train on a spectral "
            "start (svflow.spectral_model)."
        )
    return ds[D.LAM]


@computes
def compare(reduced: xr.Dataset, full: xr.Dataset, *, rtol_times: float = 1e-9) -> xr.Dataset:
    r"""Relative error of $\lambda(t)$ of a full run against a reduced run.

    $$e(t) = \frac{\|\lambda^{\text{full}}(t) - \lambda^{\text{red}}(t)\|_2}
    {\|\lambda^{\text{red}}(t)\|_2}$$

    on the full run's times. When the reduced run was saved at the same times
    (``svflow.simulate(..., times=full.time.values)``, the precise way) they
    are used as they are; otherwise $\lambda^{\text{red}}$ is interpolated
    linearly in $\log(1+t)$ and only full-run times inside the reduced run's
    range are kept (attr ``interpolated`` says which happened).

    Returns:
        Dataset with ``lam_full``, ``lam_reduced``, ``abs_error`` (time, mode),
        ``rel_error`` (time,), ``max_rel_error`` (scalar; also an attr) and,
        when both have it, ``s_rel_error`` (time,) for the factor values.
    """
    lam_r, lam_f = _lam(reduced, "reduced"), _lam(full, "full")
    if lam_r.sizes[D.MODE] != lam_f.sizes[D.MODE]:
        raise ValueError(
            "the runs have different numbers of classes: reduced "
            f"K = {lam_r.sizes[D.MODE]}, "
            f"full K = {lam_f.sizes[D.MODE]}."
        )
    tr = np.asarray(reduced[D.TIME].values, float)
    tf = np.asarray(full[D.TIME].values, float)
    same = tr.shape == tf.shape and np.allclose(tr, tf, rtol=rtol_times, atol=rtol_times)
    red, s_red, keep = _reduced_on_full_times(reduced, lam_r, tr, tf, same)
    ful = lam_f.values[keep]
    diff = ful - red
    rel = np.linalg.norm(diff, axis=-1) / np.maximum(np.linalg.norm(red, axis=-1), np.finfo(float).tiny)
    modes = (D.TIME, D.MODE)
    data = {
        "lam_full": (modes, ful, {"long_name": "lambda from full GD"}),
        "lam_reduced": (modes, red, {"long_name": "lambda from the reduced ODE"}),
        "abs_error": (modes, diff, {"long_name": "lambda_full - lambda_reduced"}),
        "rel_error": ((D.TIME,), rel, {"long_name": "||lambda_full - lambda_reduced|| / ||lambda_reduced||"}),
        "max_rel_error": ((), rel.max(), {"long_name": "max over time of rel_error"}),
    }
    if s_red is not None and D.S in full and full[D.S].shape[1:] == s_red.shape[1:]:
        s_ful = full[D.S].values[keep]
        s_rel = np.linalg.norm(s_ful - s_red, axis=(-2, -1)) / np.linalg.norm(s_red, axis=(-2, -1))
        data["s_rel_error"] = ((D.TIME,), s_rel, {"long_name": "||s_full - s_reduced||_F / ||s_reduced||_F"})
    attrs = {
        "title": "svflow cross-check: full GD vs reduced ODE",
        "eta": full.attrs.get("eta", float("nan")),
        "interpolated": not same,
        "max_rel_error": float(rel.max()),
        "full_engine": full.attrs.get("engine", "unknown"),
        "reduced_engine": reduced.attrs.get("engine", "unknown"),
    }
    return netcdf_safe(xr.Dataset(data, coords={D.TIME: (D.TIME, tf[keep], D.TIME_ATTRS)}, attrs=attrs))


def _reduced_on_full_times(reduced: xr.Dataset, lam_r: xr.DataArray, tr, tf, same: bool) -> tuple:
    """``(lambda, s or None, keep)`` of the reduced run at the full run's times ``tf[keep]``.

    The same times are used as they are; otherwise the reduced run is
    interpolated linearly in log(1 + t) at the full-run times inside its range.
    """
    if same:
        s_red = reduced[D.S].values if D.S in reduced else None
        return lam_r.values, s_red, np.ones(tf.size, bool)
    keep = (tf >= tr[0]) & (tf <= tr[-1])
    if not keep.any():
        raise ValueError(
            f"no common times: the reduced run covers t in [{tr[0]:g}, "
            f"{tr[-1]:g}], the full run [{tf[0]:g}, {tf[-1]:g}]. Simulate "
            "with times=full.time.values."
        )
    x, xq = np.log1p(tr), np.log1p(tf[keep])

    def interp(a):
        flat = a.reshape(a.shape[0], -1)
        cols = [np.interp(xq, x, flat[:, j]) for j in range(flat.shape[1])]
        return np.stack(cols, axis=-1).reshape((xq.size,) + a.shape[1:])

    s_red = interp(reduced[D.S].values) if D.S in reduced else None
    return interp(lam_r.values), s_red, keep
