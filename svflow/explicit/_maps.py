r"""Phase maps of the explicit low-rank bias: which construction has the lowest loss.

Over a grid of class counts K and depths L (L = number of weight matrices),
for the L-DUFM (ReLU, squared loss, weight decay; :func:`svflow.explicit.relu_blocks`)
and for the deep linear cross-entropy model with weight decay
(:func:`svflow.explicit.ce_blocks`). Category codes are stored as integers with their
names in the variable's attrs (``flag_values`` / ``flag_meanings``, CF style).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import xarray as xr

from .. import _dims as D
from .._checks import check_float, check_int
from .._dataset import grid_dataset
from .._full.model import forward, layers, model_from_arrays
from .._precision import computes
from ._ce_forms import (
    ce_blocks,
    ce_code_loss,
    ce_codes,
    ce_dnc_loss,
    ce_pair_loss,
    hypercube_code,
    polygon_code,
)
from ._ldufm import class_mean_spectra, gap_rank, polish
from ._ldufm_forms import (
    construction_loss,
    dnc_factors,
    dnc_loss,
    relu_blocks,
    srg_factors,
    srg_loss,
    srg_rho,
)

__all__ = [
    "RELU_CATEGORIES",
    "CE_CATEGORIES",
    "explicit_phase_map",
    "dnc_thresholds",
    "weight_decay_endpoints",
    "srg_construction_layers",
    "srg_ratio_curve",
    "CEMinimum",
    "ce_minimum",
    "ce_direct_table",
    "CE_DIRECT_CELLS",
]

# Category names say what was compared: the candidates are the known constructions
# only (for K <= 5 there is no SRG block at all), so "DNC" is never claimed optimal.
RELU_CATEGORIES = (
    "trivial_point_best",
    "no_known_construction_beats_DNC",
    "SRG",
    "SRG+DNC",
    "multi-SRG",
)
CE_CATEGORIES = (
    "trivial_point_best",
    "no_known_code_beats_DNC",
    "pairs",
    "other_blocks",
    "hypercube",
    "polygon",
)
_RELU_FROM = {"zero": 0, "DNC": 1, "SRG": 2, "SRG+DNC": 3, "multi-SRG": 4}
_CE_FROM = {"zero": 0, "DNC": 1, "pairs": 2, "other": 3, "hypercube": 4, "polygon": 5}


def _flags(names) -> dict:
    return {"flag_values": list(range(len(names))), "flag_meanings": " ".join(names)}


@computes
def explicit_phase_map(
    classes: Sequence[int] = tuple(range(2, 41)),
    depths: Sequence[int] = tuple(range(2, 9)),
    *,
    relu_weight_decay: float = 0.004,
    ce_weight_decay: float = 1e-3,
    samples: int = 1,
    radii: Sequence[int] = tuple(range(4, 13)),
) -> xr.Dataset:
    r"""Best construction per (K, L) for both models, as an ``xarray.Dataset``.

    Args:
        classes: class counts K (>= 2).
        depths: depths L (>= 2; number of weight matrices).
        relu_weight_decay: the L-DUFM's weight decay (the ``relu_`` variables),
            the same on H and every $W_l$.
        ce_weight_decay: the CE model's weight decay on every factor (the ``ce_``
            variables).
        samples: n samples per class (both models).
        radii: graph sizes r of the SRG table ``srg_rho`` (dims r, depth).

    Returns:
        Dataset with dims ``classes``, ``depth``, ``r`` and variables
        ``relu_category``, ``relu_loss_dnc``, ``relu_loss_best``,
        ``relu_blocks`` (string), ``ce_category``, ``ce_loss_dnc``,
        ``ce_loss_pairs``, ``ce_loss_best``, ``ce_blocks`` (string), ``srg_rho``.
    """
    Ks = np.asarray([check_int("classes[]", K, minimum=2) for K in classes], dtype=int)
    Ls = np.asarray([check_int("depths[]", L, minimum=1) for L in depths], dtype=int)
    shape = (Ks.size, Ls.size)
    out = {
        "relu_category": np.zeros(shape, int),
        "relu_loss_dnc": np.zeros(shape),
        "relu_loss_best": np.zeros(shape),
        "relu_blocks": np.empty(shape, object),
        "ce_category": np.zeros(shape, int),
        "ce_loss_dnc": np.zeros(shape),
        "ce_loss_pairs": np.full(shape, np.nan),
        "ce_loss_best": np.zeros(shape),
        "ce_blocks": np.empty(shape, object),
    }
    for i, K in enumerate(Ks):
        for j, L in enumerate(Ls):
            cell = _best_constructions(int(K), int(L), relu_weight_decay, ce_weight_decay, samples)
            for name, value in cell.items():
                out[name][i, j] = value
    dims = (D.CLASSES, D.DEPTH)
    variables = {
        name: (dims, D.text(out[name]) if out[name].dtype == object else out[name], vattrs)
        for name, vattrs in _EXPLICIT_MAP_ATTRS.items()
    }
    rho = np.array([[srg_rho(int(r), int(L)) for L in Ls] for r in radii])
    variables["srg_rho"] = (("r", D.DEPTH), rho, {"long_name": "rho of the SRG construction, K = C(r, 2)"})
    coords = {
        D.CLASSES: (Ks, {"long_name": "number of classes K"}),
        D.DEPTH: (Ls, {"long_name": "depth L (number of weight matrices)"}),
        "r": (np.asarray(radii, int), {"long_name": "vertices of K_r (SRG block of C(r,2) classes)"}),
    }
    attrs = {
        "title": "svflow explicit low-rank bias phase map",
        "relu_weight_decay": float(relu_weight_decay),
        "ce_weight_decay": float(ce_weight_decay),
        "samples_per_class": int(samples),
    }
    return grid_dataset(coords, variables, attrs)


def _best_constructions(K: int, L: int, lam: float, weight_decay: float, samples: int) -> dict:
    """One (K, L) cell of :func:`explicit_phase_map`: the known constructions of both models.

    L-DUFM (weight decay ``lam`` on H and every $W_l$): best DNC/SRG block
    network and L_DNC. CE model (``weight_decay`` on every factor): best block
    code or hypercube, the DNC loss and the 2 x 2 block competitor (K = 2 or
    K >= 4; NaN otherwise).
    """
    ch = relu_blocks(K, L, lam_H=lam, lam_W=lam, samples=samples)
    ce = ce_codes(K, L, weight_decay=weight_decay, samples=samples)
    cell = {
        "relu_category": _RELU_FROM[ch.category],
        "relu_loss_dnc": dnc_loss(K, L, lam_H=lam, lam_W=lam, samples=samples),
        "relu_loss_best": ch.loss,
        "relu_blocks": " ".join(map(str, ch.blocks)),
        "ce_category": _CE_FROM[ce.category],
        "ce_loss_dnc": ce_dnc_loss(K, L, weight_decay=weight_decay, samples=samples)[0],
        "ce_loss_best": ce.loss,
        "ce_blocks": " ".join(map(str, ce.blocks)),
    }
    if K == 2 or K >= 4:
        cell["ce_loss_pairs"] = ce_pair_loss(K, L, weight_decay=weight_decay, samples=samples)[0]
    return cell


_EXPLICIT_MAP_ATTRS = {
    "relu_category": {
        "long_name": "lowest-loss known L-DUFM construction (DNC and SRG block networks only)",
        **_flags(RELU_CATEGORIES),
    },
    "relu_loss_dnc": {"long_name": "L_DNC (L-DUFM)"},
    "relu_loss_best": {"long_name": "lowest L-DUFM loss over DNC/SRG block constructions"},
    "relu_blocks": {"long_name": "SRG blocks (r) and dnc:<classes>"},
    "ce_category": {
        "long_name": "lowest-loss known CE code (block codes, hypercube and polygon only)",
        **_flags(CE_CATEGORIES),
    },
    "ce_loss_dnc": {"long_name": "DNC loss, linear CE model with weight decay"},
    "ce_loss_pairs": {"long_name": "2 x 2 block competitor loss (odd K: one 3-block)"},
    "ce_loss_best": {"long_name": "lowest CE loss over block codes, the hypercube and the polygon"},
    "ce_blocks": {"long_name": "block sizes (or hypercube:m) of the best CE code"},
}


@computes
def dnc_thresholds(ds: xr.Dataset, model: str = "relu") -> xr.DataArray:
    r"""Per depth, the smallest K of the map from which on a known construction
    beats DNC at every larger K of the map (``model`` = ``"relu"`` or ``"ce"``);
    NaN when none beats DNC at the largest K. Only the known constructions are
    compared: GD can beat DNC below this K (see :func:`svflow.explicit.ldufm_optimality_map`)."""
    if model not in ("relu", "ce"):
        raise ValueError(f"model must be 'relu' or 'ce'; got {model!r}.")
    var = ds[f"{model}_category"]
    dnc_or_zero = (var == 1) | (var == 0)  # categories 0, 1: nothing beats DNC
    Ks = ds[D.CLASSES].values
    out = []
    for L in ds[D.DEPTH].values:
        col = dnc_or_zero.sel(depth=L).values
        loses = ~col
        k = np.nan
        for i in range(len(Ks)):
            if loses[i:].all():
                k = float(Ks[i])
                break
        out.append(k)
    return xr.DataArray(
        np.array(out),
        coords={D.DEPTH: ds[D.DEPTH].values},
        dims=D.DEPTH,
        name=f"{model}_dnc_threshold",
        attrs={"long_name": "smallest K from which a known construction beats DNC at every larger K"},
    )


@computes
def weight_decay_endpoints(
    classes: int = 8,
    depths: Sequence[int] = (1, 2, 3, 5),
    seeds: Sequence[int] = (0, 1, 2, 3),
    *,
    weight_decay: float = 1e-3,
    scale: float = 0.5,
    spread: float = 0.5,
    t_end: float = 1e6,
    num_times: int = 81,
) -> xr.Dataset:
    r"""Reduced ODE of the deep linear CE model with weight decay from spectral starts,
    against the closed forms of section 7.

    Runs :func:`svflow.simulate` (``loss="ce"``, ``weight_decay``) for every depth
    and seed (:func:`svflow.spectral_init` with ``scale``, ``spread``) and stores
    the trajectories with dims (depth, seed, time, mode), the number of
    surviving modes at the end (``|lambda_i| > 1e-3 max``), and the closed-form
    losses ``ce_dnc``, ``ce_pairs``, ``ce_hypercube``, ``ce_blocks`` (best block
    code) and ``ce_best`` (the lowest of them) per depth.
    Mode 0 is kept at 0 (it never moves under cross-entropy). With weight decay
    and N >= 3 the origin attracts small starts: keep ``scale`` of order 0.1-1.
    """
    ts, objs, lam = _endpoint_runs(
        classes,
        depths,
        seeds,
        weight_decay=weight_decay,
        scale=scale,
        spread=spread,
        t_end=t_end,
        num_times=num_times,
    )
    fin = np.abs(lam[:, :, -1, :])
    alive = (fin > 1e-3 * fin.max(axis=-1, keepdims=True)).sum(axis=-1)
    runs = (D.DEPTH, D.SEED)
    variables = {
        "objective": (runs + (D.TIME,), objs, {"long_name": "CE + (wd/2) sum ||F||^2"}),
        D.LAM: (runs + (D.TIME, D.MODE), lam, {"long_name": "logit eigenvalue (Walsh frame)"}),
        "surviving_modes": (runs, alive, {"long_name": "modes with |lambda| > 1e-3 max at t_end"}),
    }
    for name, (values, long_name) in _ce_closed_forms(classes, depths, weight_decay).items():
        variables[name] = ((D.DEPTH,), values, {"long_name": long_name})
    coords = {
        D.DEPTH: np.asarray(depths, int),
        D.SEED: np.asarray(seeds, int),
        D.TIME: ts,
        D.MODE: np.arange(classes),
    }
    attrs = {
        "title": "reduced ODE with weight decay vs closed forms",
        "classes": int(classes),
        "weight_decay": float(weight_decay),
        "scale": float(scale),
        "spread": float(spread),
        "t_end": float(t_end),
    }
    return grid_dataset(coords, variables, attrs)


def _endpoint_runs(classes, depths, seeds, *, weight_decay, scale, spread, t_end, num_times):
    """Reduced CE ODE with weight decay per (depth, seed): (times, objective, lam).

    ``objective`` has dims (depth, seed, time), ``lam`` (depth, seed, time, mode).
    """
    from .._simulate import simulate
    from .._start import spectral_init

    objs, lams = [], []
    ts = None
    for L in depths:
        o_row, l_row = [], []
        for seed in seeds:
            ds = simulate(
                classes,
                int(L),
                init=spectral_init(classes, int(L), scale=scale, spread=spread, seed=int(seed)),
                loss="ce",
                weight_decay=weight_decay,
                t_end=t_end,
                num_times=num_times,
            )
            ts = ds[D.TIME].values
            o_row.append(ds[D.OBJECTIVE].values)
            l_row.append(ds[D.LAM].values)
        objs.append(o_row)
        lams.append(l_row)
    return ts, np.asarray(objs), np.asarray(lams)


def _ce_closed_forms(classes: int, depths, weight_decay: float) -> dict:
    """Closed-form CE losses per depth: ``name -> (values, long name)``.

    DNC, the 2 x 2 block code, the hypercube code, the best block code and the
    lowest of block codes and hypercube.
    """
    dnc = [ce_dnc_loss(classes, int(L), weight_decay=weight_decay)[0] for L in depths]
    pairs = [ce_pair_loss(classes, int(L), weight_decay=weight_decay)[0] for L in depths]
    blocks = [ce_blocks(classes, int(L), weight_decay=weight_decay).loss for L in depths]
    hyper = [ce_code_loss(hypercube_code(classes), int(L), weight_decay=weight_decay)[0] for L in depths]
    return {
        "ce_dnc": (np.asarray(dnc), "closed-form DNC loss"),
        "ce_pairs": (np.asarray(pairs), "closed-form 2 x 2 block loss"),
        "ce_hypercube": (np.asarray(hyper), "closed-form hypercube code loss"),
        "ce_blocks": (np.asarray(blocks), "best block-code loss"),
        "ce_best": (np.minimum(blocks, hyper), "best of block codes and hypercube"),
    }


def _network_layers(factors, depth: int) -> tuple[list, list]:
    """(names, class-mean matrices) M1 = H, pre-M(l+1), M(l+1) = ReLU(W_l M_l), Z: the
    DeepUFM's forward pass (:func:`svflow._full.model.layers`, ReLU), Fig. 1's names."""
    names, mats = layers(factors, "relu")
    rename = {"H": "M1", "Z": "Z"}
    for l in range(1, depth):
        rename[f"pre{l}"], rename[f"post{l}"] = f"pre-M{l + 1}", f"M{l + 1}"
    return [rename[n] for n in names], [np.asarray(m) for m in mats]


def _rank9(m) -> int:
    s = np.linalg.svd(m, compute_uv=False)
    return int((s > 1e-9 * s[0]).sum())


@computes
def srg_construction_layers(r: int = 5, depth: int = 4) -> xr.Dataset:
    r"""Class-mean matrices of every layer of the unit-scale SRG network (Fig. 1 of
    Súkeník, Lampert & Mondelli 2024).

    Built by :func:`svflow.explicit.srg_factors` (K = C(r, 2) classes, the edges of
    $K_r$) and run through the ReLU network. Layers are numbered as class-mean
    matrices $M_1 = H$, $M_{l+1} = \sigma(W_l M_l)$ ($l < L$), with the
    pre-activations $W_l M_l$ kept as well, and $Z = W_L M_L = I_K$. For
    $L \ge 3$: $M_2 = \dots = M_{L-1} = B$ (incidence matrix, rank r), the
    pre-activation of $M_L$ is $J - B^\top B$ (rank r) and $M_L$ is its ReLU,
    the Kneser adjacency of KG(r, 2) (rank K).

    Returns a Dataset with dims ``layer`` (names ``M1``, ``pre-M2``, ``M2``, ...,
    ``Z``), ``row``, ``col`` and ``col2``: ``matrix`` (layer, row, col; NaN-padded to K
    rows), ``rows`` and ``matrix_rank`` (layer; numerical rank, $\sigma_i > 10^{-9}
    \sigma_1$), ``gram`` (layer, col, col2: $M^\top M$, the classes' inner
    products) and, for contrast, ``dnc_gram`` and ``dnc_rank`` of the same
    layers of the unit-scale DNC network (:func:`svflow.explicit.dnc_factors`,
    width K): every Gram matrix a multiple of $I_K$, every rank K.
    """
    r = check_int("r", r, minimum=4)
    depth = check_int("depth", depth, minimum=2)
    K = r * (r - 1) // 2
    names, mats = _network_layers(srg_factors(r, depth), depth)
    _, dnc_mats = _network_layers(dnc_factors(K, depth), depth)
    rows = max(m.shape[0] for m in mats)
    out = np.full((len(mats), rows, K), np.nan)
    ranks = []
    for i, m in enumerate(mats):
        out[i, : m.shape[0]] = m
        s = np.linalg.svd(m, compute_uv=False)
        ranks.append(int((s > 1e-9 * s[0]).sum()))
    variables = {
        "matrix": (
            ("layer", "row", "col"),
            out,
            {"long_name": "class-mean matrix (column = class = edge of K_r)"},
        ),
        "rows": (("layer",), [m.shape[0] for m in mats]),
        "matrix_rank": (("layer",), np.asarray(ranks), {"long_name": "numerical rank"}),
        "gram": (
            ("layer", "col", "col2"),
            np.stack([m.T @ m for m in mats]),
            {"long_name": "Gram matrix M^T M of the class means (SRG)"},
        ),
        "dnc_gram": (
            ("layer", "col", "col2"),
            np.stack([m.T @ m for m in dnc_mats]),
            {"long_name": "Gram matrix M^T M of the class means (DNC, for contrast)"},
        ),
        "dnc_rank": (
            ("layer",),
            np.asarray([_rank9(m) for m in dnc_mats]),
            {"long_name": "numerical rank (DNC)"},
        ),
    }
    coords = {"layer": names, "row": np.arange(rows), "col": np.arange(K), "col2": np.arange(K)}
    attrs = {
        "title": "SRG construction, class means of every layer (unit scale)",
        "r": int(r),
        "classes": int(K),
        "depth": int(depth),
    }
    return grid_dataset(coords, variables, attrs)


@computes
def srg_ratio_curve(
    radii: Sequence[int] = tuple(range(4, 13)),
    depths: Sequence[int] = (3, 4, 5),
    lams: Sequence[float] = (0.004,),
    *,
    samples: int = 1,
    network: bool = False,
) -> xr.Dataset:
    r"""$L_{\rm SRG}/L_{\rm DNC}$ for $K = \binom r2$ classes against r (Fig. 3 left
    of Súkeník, Lampert & Mondelli 2024).

    ``ratio`` (lam, depth, r) is the closed form
    :func:`svflow.explicit.srg_loss` (one SRG block holding every class) over
    :func:`svflow.explicit.dnc_loss`, every factor with weight decay ``lam``. With
    ``network=True`` also ``ratio_network``: the same ratio from the built
    matrices (:func:`svflow.explicit.srg_factors`, :func:`svflow.explicit.dnc_factors`) run
    through the ReLU network at their best balanced scale
    (:func:`svflow.explicit.construction_loss`). Below 1 the SRG network beats DNC.
    """
    rs = [check_int("radii[i]", r, minimum=4) for r in radii]
    Ls = [check_int("depths[i]", L, minimum=2) for L in depths]
    lm = [check_float("lams[i]", x, minimum=0.0, strict_min=True) for x in lams]
    samples = check_int("samples", samples, minimum=1)
    if not rs or not Ls or not lm:
        raise ValueError("radii, depths and lams must each hold at least one value.")
    shape = (len(lm), len(Ls), len(rs))
    ratio = np.zeros(shape)
    net = np.full(shape, np.nan)
    for a, lam in enumerate(lm):
        for b, L in enumerate(Ls):
            for c, r in enumerate(rs):
                K = r * (r - 1) // 2
                kw: dict[str, Any] = dict(lam_H=lam, lam_W=lam, samples=samples)
                ratio[a, b, c] = srg_loss(K, L, r=r, **kw) / dnc_loss(K, L, **kw)
                if network:
                    num = construction_loss(srg_factors(r, L), **kw)[0]
                    den = construction_loss(dnc_factors(K, L), **kw)[0]
                    net[a, b, c] = num / den
    rs_a = np.asarray(rs)
    runs = ("lam", D.DEPTH, "r")
    data = {"ratio": (runs, ratio, {"long_name": "L_SRG / L_DNC (closed forms)"})}
    if network:
        data["ratio_network"] = (
            runs,
            net,
            {"long_name": "L_SRG / L_DNC (built matrices through the ReLU network)"},
        )
    coords = {
        "lam": (np.asarray(lm), {"long_name": "weight decay (every factor)"}),
        D.DEPTH: (np.asarray(Ls), {"long_name": "depth L (number of weight matrices)"}),
        "r": (rs_a, {"long_name": "vertices r of K_r"}),
        D.CLASSES: ("r", rs_a * (rs_a - 1) // 2, {"long_name": "K = C(r, 2)"}),
    }
    attrs = {"title": "SRG construction against DNC", "samples_per_class": int(samples)}
    return grid_dataset(coords, data, attrs)


# --- direct minimisation of the deep linear CE model with weight decay


class CEMinimum(NamedTuple):
    """Best polished point of :func:`ce_minimum`."""

    objective: float  # CE + (wd/2) sum ||F||^2 at the best polished start
    rank: int  # gap rank of the class-mean logits (:func:`svflow.explicit.gap_rank`)
    gap: float  # sigma_r / sigma_(r+1) at that rank
    grad_norm: float  # norm of the full gradient at the best point
    seed: int  # the seed of the best start
    factors: tuple  # [H, W_1, ..., W_L] of the best point
    objectives: np.ndarray  # polished objective of every seed
    grad_norms: np.ndarray  # gradient norm of every seed


def _ce_starts(K: int, L: int, d: int, n: int, scale: float, seeds) -> tuple:
    """Gaussian starts N(0, scale^2 / d) (H: N(0, scale^2 / K n)), stacked over seeds."""
    shapes = [(d, K * n)] + [(d, d)] * (L - 1) + [(K, d)]
    out = []
    for seed in seeds:
        keys = jax.random.split(jax.random.PRNGKey(int(seed)), len(shapes))
        out.append(
            [scale / math.sqrt(s[1]) * jax.random.normal(k, s, dtype=float) for k, s in zip(keys, shapes)]
        )
    return tuple(jnp.stack(fs) for fs in zip(*out))


@computes
def ce_minimum(
    classes: int,
    depth: int,
    *,
    weight_decay: float,
    seeds: Sequence[int] = tuple(range(8)),
    samples: int = 1,
    width: int | None = None,
    scale: float = 1.0,
    max_steps: int = 3000,
) -> CEMinimum:
    r"""Direct minimisation of the deep linear UFM with cross-entropy and weight decay.

    $$\min_{H, W_1..W_L}\ \frac1{Kn}\sum_{i}\mathrm{CE}(Z_{:,i}, y_i)
    + \frac{wd}2\Big(\|H\|_F^2 + \sum_{l=1}^L\|W_l\|_F^2\Big),\qquad Z = W_L\cdots W_1H,$$

    (depth L = number of weight matrices, N = L + 1 factors, n samples per
    class, columns class-major: the :class:`svflow.DeepUFM` with ``activation="linear"``,
    ``loss="ce"`` and ``weight_decay=wd``) from Gaussian starts (one per seed, entries
    $\mathcal N(0, \text{scale}^2/\text{fan-in})$, width d = ``width``, default
    K), each polished by L-BFGS (:func:`svflow.explicit.polish`, ``max_steps``
    steps, the runs vmapped). The objective is smooth, so a good run ends with a
    small gradient norm. Returns the best run (:class:`CEMinimum`): its
    objective, the gap rank of its class-mean logits, the gradient norm, its
    seed and factors, and every seed's polished objective and gradient norm.
    It is an upper bound on the global minimum, set beside the constructions of
    :func:`svflow.explicit.ce_codes` (DNC, block codes, hypercube, polygon).
    """
    K = check_int("classes", classes, minimum=2)
    L = check_int("depth", depth, minimum=1)
    wd = check_float("weight_decay", weight_decay, minimum=0.0, strict_min=True)
    if isinstance(seeds, (int, np.integer, float, str)):
        raise TypeError(f"seeds must be a sequence of seeds; got {seeds!r}. For n seeds pass seeds=range(n).")
    seeds = [check_int("seeds[i]", s, minimum=0) for s in seeds]
    if not seeds:
        raise ValueError("seeds must name at least one seed; got an empty sequence.")
    n = check_int("samples", samples, minimum=1)
    d = K if width is None else check_int("width", width, minimum=1)
    scale = check_float("scale", scale, minimum=0.0, strict_min=True)
    starts = _ce_starts(K, L, d, n, scale, seeds)
    model = model_from_arrays([F[0] for F in starts], activation="linear", loss="ce", weight_decay=wd)
    fs, obj, gn, _ = polish(model, starts, max_steps=max_steps)
    b = int(np.nanargmin(obj))
    best = [np.asarray(F[b]) for F in fs]
    Z = np.asarray(forward(best))
    rank, gap = gap_rank(class_mean_spectra(Z, K))
    return CEMinimum(float(obj[b]), int(rank), float(gap), float(gn[b]), seeds[b], tuple(best), obj, gn)


CE_DIRECT_CELLS = tuple((K, 5) for K in (4, 6, 8, 9, 10, 12, 16)) + ((12, 4), (6, 3), (8, 3), (16, 3))


@computes
def ce_direct_table(
    cells: Sequence[tuple[int, int]] = CE_DIRECT_CELLS,
    *,
    weight_decay: float = 1e-3,
    seeds: Sequence[int] = tuple(range(6)),
    samples: int = 1,
    max_steps: int = 2000,
    rtol: float = 1e-5,
) -> xr.Dataset:
    r"""Direct minimisation beside the known CE constructions, cell by cell.

    For every (K, L) in ``cells``: the closed-form losses of DNC, the 2 x 2 blocks
    (K = 2 or K >= 4), the best block code (:func:`svflow.explicit.ce_blocks`),
    the hypercube (K >= 3) and the regular K-gon (K >= 5), the best of them
    (``known``, its name in ``known_code``), and the best polished random start
    of :func:`ce_minimum` (``direct``, its gap rank, gradient norm and seed,
    and the number of seeds below the best known code). ``direct_wins`` marks
    the cells where no known construction is optimal: ``direct`` below
    ``(1 - rtol)`` x ``known``. Dataset with dim ``cell`` (coords ``classes``,
    ``depth``)."""
    cells = [
        (check_int("cells[i][0] (K)", K, minimum=3), check_int("cells[i][1] (L)", L, minimum=1))
        for K, L in cells
    ]
    if not cells:
        raise ValueError("cells must hold at least one (K, L) pair.")
    wd = check_float("weight_decay", weight_decay, minimum=0.0, strict_min=True)
    rtol = check_float("rtol", rtol, minimum=0.0)
    names = ("dnc", "pairs", "blocks", "hypercube", "polygon")
    rows: dict[str, list] = {
        k: [] for k in names + ("known", "known_code", "direct", "rank", "gap", "grad", "seed", "nbelow")
    }
    kw: dict[str, Any] = dict(weight_decay=wd, samples=samples)
    for K, L in cells:
        vals = {
            "dnc": ce_dnc_loss(K, L, **kw)[0],
            "pairs": ce_pair_loss(K, L, **kw)[0] if K >= 4 else np.nan,
            "blocks": ce_blocks(K, L, **kw).loss,
            "hypercube": ce_code_loss(hypercube_code(K), L, **kw)[0],
            "polygon": ce_code_loss(polygon_code(K), L, **kw)[0] if K >= 5 else np.nan,
        }
        best = ce_codes(K, L, **kw)
        m = ce_minimum(K, L, seeds=seeds, max_steps=max_steps, **kw)
        for k in names:
            rows[k].append(vals[k])
        rows["known"].append(best.loss)
        rows["known_code"].append(f"{best.category} " + " ".join(map(str, best.blocks)))
        rows["direct"].append(m.objective)
        rows["rank"].append(m.rank)
        rows["gap"].append(m.gap)
        rows["grad"].append(m.grad_norm)
        rows["seed"].append(m.seed)
        rows["nbelow"].append(int((m.objectives < (1 - rtol) * best.loss).sum()))
    direct, known = np.asarray(rows["direct"]), np.asarray(rows["known"])
    c = ("cell",)
    variables = {
        **{f"ce_{k}": (c, np.asarray(rows[k], float), {"long_name": f"closed-form {k} loss"}) for k in names},
        "known": (c, known, {"long_name": "lowest loss of the known constructions (ce_codes)"}),
        "known_code": (c, np.asarray(rows["known_code"]), {"long_name": "that construction"}),
        "direct": (c, direct, {"long_name": "best polished random start (ce_minimum)"}),
        "direct_rank": (c, np.asarray(rows["rank"]), {"long_name": "gap rank of its class-mean logits"}),
        "direct_gap": (c, np.asarray(rows["gap"]), {"long_name": "sigma_r / sigma_(r+1) at that rank"}),
        "direct_grad_norm": (c, np.asarray(rows["grad"]), {"long_name": "gradient norm at the best start"}),
        "direct_seed": (c, np.asarray(rows["seed"]), {"long_name": "seed of the best start"}),
        "direct_below_known": (
            c,
            np.asarray(rows["nbelow"]),
            {"long_name": f"seeds below (1 - {rtol:g}) x known", "units": "runs"},
        ),
        "direct_wins": (c, direct < (1 - rtol) * known, {"long_name": "no known construction is optimal"}),
    }
    coords = {
        "cell": np.arange(len(cells)),
        D.CLASSES: (("cell",), np.asarray([K for K, _ in cells]), {"long_name": "number of classes K"}),
        D.DEPTH: (("cell",), np.asarray([L for _, L in cells]), {"long_name": "depth L"}),
    }
    attrs = {
        "title": "deep linear CE with weight decay: direct minimisation beside the known codes",
        "weight_decay": float(wd),
        "samples_per_class": int(samples),
        "direct_seeds": len(seeds),
        "direct_max_steps": int(max_steps),
        "rtol": float(rtol),
    }
    return grid_dataset(coords, variables, attrs)
