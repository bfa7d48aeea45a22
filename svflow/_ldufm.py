r"""Gradient descent on seed 1's L-DUFM with the full-parameter engine, against the
closed forms.

The model is :func:`svflow.random_model` with ``activation="relu"``,
``loss="squared"`` and weight decay on every factor, trained by
:func:`svflow.train` (full-batch GD, t = steps x eta). At the end every
layer's representations are read off:

- layer 0: the features H;
- layer l = 1..L-1: the pre-activation $W_l X_{l-1}$ and the post-ReLU
  $X_l = \sigma(W_l X_{l-1})$;
- layer L: the logits Z.

For each, the class-mean matrix $M_l \in \mathbb R^{d\times K}$ (uncentred:
the SRG construction's ranks r and K are ranks of uncentred matrices), its
singular values, its numerical rank ($\sigma_i > $ ``rank_rtol`` $\sigma_1$)
and the within-class collapse
$\mathrm{NC1} = \operatorname{tr}(\Sigma_W\Sigma_B^+)/K$ (Papyan et al.;
$\Sigma_W$ the within-class covariance, $\Sigma_B$ the covariance of the
centred class means; 0 for n = 1).
"""

from __future__ import annotations

from typing import Sequence

import jax
import jax.numpy as jnp
import numpy as np
import xarray as xr

from ._checks import check_int
from ._dataset import netcdf_safe, provenance
from ._explicit import dnc_loss, relu_blocks
from ._full import random_model
from ._precision import float64
from ._train import train

__all__ = [
    "layer_representations",
    "class_mean_spectra",
    "nc1",
    "ldufm_runs",
    "ldufm_sweep",
]

RANK_RTOL_LAYERS = 1e-3


@float64
def layer_representations(factors) -> tuple[list, list]:
    """(names, matrices) of every layer's representation, (d or K, K n) each."""
    x = jnp.asarray(factors[0])
    names, mats = ["H"], [x]
    L = len(factors) - 1
    for l, W in enumerate(factors[1:], start=1):
        x = jnp.asarray(W) @ x
        if l < L:
            names.append(f"pre{l}")
            mats.append(x)
            x = jax.nn.relu(x)
            names.append(f"post{l}")
            mats.append(x)
    names.append("Z")
    mats.append(x)
    return names, mats


@float64
def class_mean_spectra(X, classes: int) -> np.ndarray:
    """Singular values (decreasing, K of them, zero-padded) of the uncentred class-mean
    matrix."""
    classes = check_int("classes", classes, minimum=1)
    X = np.asarray(X)
    n = X.shape[1] // classes
    M = X.reshape(X.shape[0], classes, n).mean(axis=-1)
    sv = np.linalg.svd(M, compute_uv=False)
    return np.pad(sv, (0, classes - sv.size))[:classes]


@float64
def nc1(X, classes: int, rcond: float = RANK_RTOL_LAYERS**2) -> float:
    r"""$\operatorname{tr}(\Sigma_W\Sigma_B^+)/K$ of representations X (d, K n), columns
    class-major.

    The pseudo-inverse drops eigenvalues of $\Sigma_B$ below ``rcond`` times the
    largest (default: the square of the rank threshold, so the class-mean
    directions counted by the numerical rank are the ones inverted)."""
    classes = check_int("classes", classes, minimum=1)
    X = np.asarray(X, dtype=float)
    n = X.shape[1] // classes
    Xc = X.reshape(X.shape[0], classes, n)
    mu = Xc.mean(axis=-1)
    g = mu.mean(axis=-1, keepdims=True)
    dev = (Xc - mu[..., None]).reshape(X.shape[0], -1)
    Sw = dev @ dev.T / X.shape[1]
    B = mu - g
    Sb = B @ B.T / classes
    return float(
        np.trace(Sw @ np.linalg.pinv(Sb, rcond=rcond, hermitian=True)) / classes
    )


@float64
def ldufm_runs(
    classes: int = 10,
    depth: int = 4,
    *,
    width: int = 30,
    lam: float = 0.004,
    eta: float = 0.5,
    steps: int = 100_000,
    seeds: Sequence[int] = tuple(range(10)),
    samples: int = 1,
    scale: float = 1.0,
    num_times: int = 61,
    rank_rtol: float = RANK_RTOL_LAYERS,
    dnc_rtol: float = 1e-2,
) -> xr.Dataset:
    r"""GD on the L-DUFM from Gaussian starts, one run per seed, with the closed forms.

    Every factor has weight decay ``lam``. Returns a Dataset with dims
    ``seed``, ``time``, ``layer`` (H, pre1, post1, ..., Z) and ``sv``:
    ``objective`` (seed, time), ``sv_layer`` (seed, layer, sv), ``rank_layer``
    and ``nc1_layer`` (seed, layer), ``final_objective`` (seed), ``is_dnc``
    (seed: every layer's class means have rank K and the final objective is
    within ``dnc_rtol`` of L_DNC: wide networks approach L_DNC slowly, so the
    rank decides and the loss only guards against other full-rank points), and scalars
    ``L_DNC``, ``L_best`` (best
    SRG/DNC block construction, :func:`svflow.relu_blocks`).
    """
    if isinstance(seeds, (int, np.integer, float, str)):
        raise TypeError(
            f"seeds must be a sequence of seeds (one run per seed); got {seeds!r}. "
            "For n seeds pass seeds=range(n)."
        )
    seeds = [check_int("seeds[]", s, minimum=0) for s in seeds]
    if not seeds:
        raise ValueError("seeds must hold at least one seed; got an empty sequence.")
    objs, svs, ranks, nc1s, finals, is_dnc = [], [], [], [], [], []
    ts, names = None, None
    L_dnc = dnc_loss(classes, depth, lam_H=lam, lam_W=lam, samples=samples)
    best = relu_blocks(classes, depth, lam_H=lam, lam_W=lam, samples=samples)
    for seed in seeds:
        model = random_model(
            classes,
            depth=depth,
            width=width,
            scale=scale,
            key=int(seed),
            samples_per_class=samples,
            activation="relu",
            loss="squared",
            weight_decay=lam,
        )
        ds, model = train(
            model,
            eta=eta,
            steps=steps,
            num_times=num_times,
            return_model=True,
            progress=False,
        )
        ts = ds["time"].values
        objs.append(ds["objective"].values)
        names, mats = layer_representations(model.factors)
        sv = np.stack([class_mean_spectra(X, classes) for X in mats])
        rk = (sv > rank_rtol * sv[:, :1]).sum(axis=1)
        svs.append(sv)
        ranks.append(rk)
        nc1s.append(
            [nc1(X, classes, rank_rtol**2) if samples > 1 else 0.0 for X in mats]
        )
        final = float(ds["objective"].values[-1])
        finals.append(final)
        is_dnc.append(
            bool(np.all(rk == classes) and abs(final - L_dnc) <= dnc_rtol * L_dnc)
        )
    return netcdf_safe(xr.Dataset(
        {
            "objective": (
                ("seed", "time"),
                np.asarray(objs),
                {"long_name": "L-DUFM objective"},
            ),
            "sv_layer": (
                ("seed", "layer", "sv"),
                np.asarray(svs),
                {
                    "long_name": "singular values of each layer's class-mean matrix "
                    "at the end"
                },
            ),
            "rank_layer": (
                ("seed", "layer"),
                np.asarray(ranks),
                {"long_name": f"numerical rank (sigma_i > {rank_rtol:g} sigma_1)"},
            ),
            "nc1_layer": (
                ("seed", "layer"),
                np.asarray(nc1s),
                {"long_name": "tr(S_W S_B^+)/K"},
            ),
            "final_objective": (("seed",), np.asarray(finals)),
            "is_dnc": (("seed",), np.asarray(is_dnc)),
            "L_DNC": ((), L_dnc, {"long_name": "closed-form best DNC loss"}),
            "L_best": (
                (),
                best.loss,
                {
                    "long_name": "best SRG/DNC construction: "
                    f"{best.category} {best.blocks}"
                },
            ),
        },
        coords={
            "seed": np.asarray(seeds, int),
            "time": ts,
            "layer": list(names),
            "sv": np.arange(classes),
        },
        attrs={
            "title": "GD on the L-DUFM (ReLU, squared loss, weight decay)",
            "classes": int(classes),
            "depth": int(depth),
            "width": int(width),
            "lam": float(lam),
            "eta": float(eta),
            "steps": int(steps),
            "samples_per_class": int(samples),
            "init_scale": float(scale),
            "rank_rtol": float(rank_rtol),
            "best_construction": f"{best.category} {best.blocks}",
            **provenance(),
        },
    ))


@float64
def ldufm_sweep(param: str, values: Sequence, **kwargs) -> xr.Dataset:
    """:func:`ldufm_runs` over ``param`` (``"lam"`` or ``"width"``), concatenated along
    it."""
    if param not in ("lam", "width"):
        raise ValueError(f"param must be 'lam' or 'width'; got {param!r}.")
    parts = [ldufm_runs(**{**kwargs, param: v}) for v in values]
    for p in parts:
        p.attrs.pop(param, None)
    out = xr.concat(
        parts,
        dim=param,
        data_vars="all",
        coords="minimal",
        combine_attrs="drop_conflicts",
    )
    return out.assign_coords({param: np.asarray(values)})
