r"""Basin maps of neural collapse over 2-D families of spectral starts.

Every start is balanced and Walsh-Hadamard (docs: theory/spectral.md), so the
reduced law $\dot\lambda_i = (N/K)(1-\mu_i)|\lambda_i|^{2-2/N}$ (cross-entropy,
no weight decay, N = depth + 1 factors) is integrated for the whole grid at
once per depth, through the batch engine of :func:`svflow.simulate`
(:func:`svflow._batch.solve_batch`: one compiled refill loop). Each trajectory is
classified by :func:`svflow._outcomes.classify_trajectory` (NC / rank r /
undecided from the direction of travel in log-time).

Families of $\lambda(0)$ (mode 0 is 0: it never changes the cross-entropy):

- ``"lag"`` (deterministic): $\lambda_i(0) = \varepsilon$ for the *leading*
  modes and $\varepsilon(1-\delta)$ for every other mode $i \ge 1$. The
  default leaders are the $m = \log_2 K$ weight-one modes $1, 2, 4, \dots$:
  the hypercube code $[m, m, 1]$, the lowest-rank outcome in the Walsh frame.
  $\delta \in [0, 1)$ is the relative lag of the remaining $K - 1 - m$ modes;
  $\delta = 0$ is the exact NC start. The seed is ignored.
- ``"random"``: $\lambda_i(0) = \varepsilon u_i$, $u_i \sim U[1-\delta, 1+\delta]$
  i.i.d. from ``jax.random.key(seed)`` (the family of :func:`svflow.spectral_init`,
  with JAX's generator instead of numpy's).

The **basin width** at (depth, eps[, seed]) is the largest grid $\delta$ such
that every grid $\delta' \le \delta$ reaches NC (see :func:`basin_width`).
"""

from __future__ import annotations

import numbers
import time as _time
from functools import partial

import diffrax
import jax
import jax.numpy as jnp
import numpy as np
import xarray as xr
from jaxtyping import Array, Float

from . import _dims as D
from ._batch import solve_batch
from ._checks import check_float, check_int
from ._dataset import netcdf_safe, provenance
from ._groups import Group, resolve_group, tie_pairs
from ._integrate import IntegrationError, SolverConfig, log_times, solve
from ._outcomes import NC, UNDECIDED, OutcomeRule, classify_trajectory, mode_ratios
from ._precision import float64
from ._reduced import data_loss
from ._simulate import ReducedField
from ._start import check_depth

__all__ = [
    "FAMILIES",
    "default_leaders",
    "basin_start",
    "basin_cell",
    "basin_map",
    "basin_width",
]

FAMILIES = ("lag", "random")

EPS, DELTA, SEED, DEPTH = "eps", "delta", "seed", "depth"


def default_leaders(classes: int, group=None) -> tuple[int, ...]:
    """The weight-one Walsh modes 1, 2, 4, ..., K/2 (the hypercube code); for other
    groups the two modes of the lowest frequency (cos, sin: the K-gon for Z_K)."""
    g = resolve_group(group, classes)
    if g.name == "walsh":
        return tuple(1 << b for b in range(len(g.orders)))
    return (1, int(g.partner[1]))


def _check_family(family: str, classes: int, leaders, group=None) -> tuple[int, ...]:
    if family not in FAMILIES:
        raise ValueError(f"family must be one of {FAMILIES}; got {family!r}.")
    if leaders is None:
        return default_leaders(classes, group)
    lead = tuple(sorted({int(i) for i in leaders}))
    if not lead or lead[0] < 1 or lead[-1] >= classes:
        raise ValueError(
            f"leaders must be Walsh mode indices in 1..K-1 = 1..{classes - 1} "
            "(mode 0 never "
            f"moves under cross-entropy); got {leaders!r}."
        )
    g = resolve_group(group, classes)
    if set(int(g.partner[i]) for i in lead) != set(lead):
        raise ValueError(
            f"leaders must contain both modes of every conjugate pair of group {g.label} "
            f"(pairs: dataset coordinate 'pair'); got {leaders!r}."
        )
    return lead


@float64
def basin_start(
    family: str,
    classes: int,
    eps: Float[Array, ""],
    delta: Float[Array, ""],
    seed=0,
    leaders: tuple[int, ...] | None = None,
    group: Group | None = None,
) -> Float[Array, " K"]:
    r"""$\lambda(0)$ of one member of a basin family (module docstring); vmappable.

    Over a group with conjugate pairs the sine mode copies its cosine partner."""
    lead = _check_family(family, classes, leaders, group)
    eps = jnp.asarray(eps, float)
    delta = jnp.asarray(delta, float)
    if family == "lag":
        is_lead = np.zeros(classes, bool)
        is_lead[list(lead)] = True
        u = jnp.where(jnp.asarray(is_lead), 1.0, 1.0 - delta)
    else:
        r = jax.random.uniform(jax.random.key(seed), (classes,), dtype=eps.dtype)
        u = 1.0 - delta + 2.0 * delta * r
    u = tie_pairs(u, resolve_group(group, classes))
    return (eps * u).at[0].set(0.0)


@float64
def basin_cell(
    eps: Float[Array, ""],
    delta: Float[Array, ""],
    seed=0,
    *,
    classes: int,
    depth: int,
    t_end: float,
    num_times: int = 121,
    family: str = "lag",
    leaders: tuple[int, ...] | None = None,
    config: SolverConfig = SolverConfig(rtol=1e-6, atol=1e-9, max_steps=20_000),
    rule: OutcomeRule = OutcomeRule(),
    group: Group | None = None,
) -> dict:
    r"""Integrate and classify ONE basin start (pure; vmap it over eps, delta, seed).

    The settings after ``*`` are static (Python values). Returns a dict of
    arrays: ``outcome`` (0 NC, r rank r, -1 undecided), ``rank``,
    ``escape_time``, ``decided``, ``min_ratio``
    ($\min_{i\ge1}|\lambda_i|/\max_j|\lambda_j|$ at t_end), ``loss_end``,
    ``lam0`` and ``lam_end`` (K,), ``solver_result`` (diffrax result code,
    0 = success) and ``num_steps``. A failed integration is classified
    undecided (and :func:`basin_map` raises on it).
    """
    N = depth + 1
    ts = jnp.asarray(log_times(t_end, num_times))
    field = ReducedField(jnp.asarray(0.0), "ce", N, True, group=group)
    lam0 = basin_start(family, classes, eps, delta, seed, leaders, group)
    ys, result, steps = solve(field, lam0, ts, None, config)
    return _summarise(ts, ys, lam0, result._value, steps, rule, group)


def _summarise(ts, ys, lam0, code, steps, rule: OutcomeRule, group=None) -> dict:
    """basin_cell's dict from one solved trajectory ``ys`` (T, K) (pure; vmappable)."""
    classes = ys.shape[-1]
    out = classify_trajectory(ts, ys, rule)
    ok = code == diffrax.RESULTS.successful._value
    q = mode_ratios(ys[-1])
    return dict(
        outcome=jnp.where(ok, out.code, UNDECIDED),
        rank=out.rank,
        escape_time=out.escape_time,
        decided=out.decided & ok,
        min_ratio=jnp.min(jnp.where(jnp.arange(classes) == 0, jnp.inf, q)),
        loss_end=data_loss(ys[-1], "ce", group=group),
        lam0=lam0,
        lam_end=ys[-1],
        solver_result=code,
        num_steps=steps,
    )


@partial(jax.jit, static_argnames=("rule", "group"))
def _summarise_batch(ts, ys, lam0, code, steps, rule: OutcomeRule, group=None) -> dict:
    return jax.vmap(lambda y, l, c, n: _summarise(ts, y, l, c, n, rule, group))(ys, lam0, code, steps)


@partial(jax.jit, static_argnames=("family", "classes", "leaders", "group"))
def _starts(eps, delta, seed, family, classes, leaders, group=None):
    return jax.vmap(lambda e, d, s: basin_start(family, classes, e, d, s, leaders, group))(
        eps, delta, seed
    )


def _check_batch(
    out: dict, config: SolverConfig, t_end: float, classes: int, depth: int
) -> None:
    """Raise :class:`IntegrationError` (with advice) if a batch member failed."""
    res = np.asarray(out["solver_result"])
    maxed = res == diffrax.RESULTS.max_steps_reached._value
    bad = (res != diffrax.RESULTS.successful._value) | ~np.all(
        np.isfinite(out["lam_end"]), axis=-1
    )
    where = f"basin map, classes={classes}, depth={depth}: "
    if np.any(maxed):
        raise IntegrationError(
            where
            + f"{int(maxed.sum())} of {res.size} trajectories used all max_steps = "
            f"{config.max_steps} steps to t = {t_end:g}. Pass a larger max_steps, "
            "looser "
            f"rtol/atol (now {config.rtol:g}/{config.atol:g}) or a shorter t_end."
        )
    if np.any(bad):
        raise IntegrationError(
            where
            + f"{int(bad.sum())} of {res.size} trajectories failed or went non-finite "
            f"before t = {t_end:g}. Use float64, smaller initial scales eps or "
            "tighter rtol/atol."
        )


def _grid(name, values, positive=False, unit=False) -> np.ndarray:
    v = np.atleast_1d(np.asarray(values, dtype=float))
    if v.ndim != 1 or v.size < 1 or not np.all(np.isfinite(v)):
        raise ValueError(
            f"{name} must be a 1-D array of finite numbers; got {values!r}."
        )
    if positive and np.any(v <= 0):
        raise ValueError(f"{name} must be > 0 (an initial scale); got {v}.")
    if unit and np.any((v < 0) | (v >= 1)):
        raise ValueError(
            f"{name} must lie in [0, 1) (a relative lag/spread, lambda(0) > 0); "
            f"got {v}."
        )
    if np.any(np.diff(v) <= 0):
        raise ValueError(f"{name} must be strictly increasing; got {v}.")
    return v


@float64
def basin_map(
    classes: int,
    depths,
    eps,
    delta,
    *,
    t_end: float = 1e8,
    num_times: int = 121,
    family: str = "lag",
    seeds=(0,),
    leaders=None,
    rtol: float = 1e-6,
    atol: float = 1e-9,
    max_steps: int = 20_000,
    solver: str = "tsit5",
    rule: OutcomeRule | None = None,
    chunk_size: int | None = None,
    group=None,
) -> xr.Dataset:
    r"""Outcome of every start of a 2-D spectral family, for several depths.

    For each depth L (N = L + 1 factors) all starts
    $(\varepsilon, \delta[, \text{seed}])$
    run as one batch through the engine of :func:`svflow.simulate`
    (:func:`svflow._batch.solve_batch`; optionally in chunks of
    ``chunk_size``), each classified NC / rank r / undecided.

    Args:
        classes: K = 2^m.
        depths: depths L >= 1 (weight matrices).
        eps: initial scales $\varepsilon > 0$ (a log grid is usual), increasing.
        delta: relative lags (``"lag"``) or spreads (``"random"``) in [0, 1),
            increasing.
        t_end, num_times: log-spaced save grid ending at t_end (the classifier
            reads its last decades: pick t_end so that most cells are decided).
        family: ``"lag"`` or ``"random"`` (module docstring).
        seeds: a sequence of integer seeds of the ``"random"`` family (a
            ``seed`` dim; ``range(3)`` for three seeds); unused for ``"lag"``.
        leaders: leading modes of the ``"lag"`` family (default 1, 2, 4, ...).
        rtol, atol, max_steps, solver: diffrax settings. Looser than
            :func:`svflow.simulate`'s (1e-6 vs 1e-8, 121 vs 161 saved times):
            a map runs thousands of starts and only classifies each outcome,
            which these settings already decide.
        rule: :class:`OutcomeRule` of the classifier.
        chunk_size: run each depth in chunks of this many starts (default: all).
        group: ``"walsh"``, ``"cyclic"``, a tuple of cyclic orders or ``None``
            (Walsh for K = 2^m, else cyclic); the default leaders of another group
            are the two modes of the lowest frequency (the K-gon of Z_K).

    Returns:
        Dataset with dims (depth, eps, delta[, seed][, mode]): ``outcome``,
        ``rank``, ``escape_time``, ``decided``, ``min_ratio``, ``loss_end``,
        ``lam_end``, ``num_steps``; provenance attrs.

    Raises:
        ValueError: bad arguments. IntegrationError: a trajectory failed.
    """
    # --- check arguments
    grp = resolve_group(group, classes)
    depths = [check_depth(d) for d in np.atleast_1d(np.asarray(depths, dtype=object))]
    if len(set(depths)) != len(depths):
        raise ValueError(f"depths must be distinct; got {depths}.")
    eps = _grid("eps", eps, positive=True)
    delta = _grid("delta", delta, unit=True)
    lead = _check_family(family, classes, leaders, grp)
    if isinstance(seeds, (numbers.Number, np.number, str, bytes)):
        raise TypeError(
            f"seeds must be a sequence of seeds (one run per seed); got the single value "
            f"{seeds!r}. For n seeds pass seeds=range(n); for one seed s pass seeds=(s,)."
        )
    seeds = [check_int("seeds[]", s, minimum=0) for s in seeds]
    if not seeds:
        raise ValueError("seeds must hold at least one seed; got an empty sequence.")
    seeds = np.asarray(seeds, np.int64) if family == "random" else np.zeros(1, np.int64)
    t_end = check_float("t_end", t_end, minimum=0.0, strict_min=True)
    num_times = check_int("num_times", num_times, minimum=2)
    if family == "random" and len(set(seeds.tolist())) != seeds.size:
        raise ValueError(f"seeds must be distinct; got {seeds.tolist()}.")
    config = SolverConfig(solver=solver, rtol=rtol, atol=atol, max_steps=max_steps)
    rule = OutcomeRule() if rule is None else rule
    if rule.loss != "ce":
        raise ValueError(
            "basin maps are for cross-entropy; pass an OutcomeRule with loss='ce'."
        )
    if chunk_size is not None:
        chunk_size = check_int("chunk_size", chunk_size, minimum=1)

    # --- integrate, one batch per depth
    ts = log_times(float(t_end), int(num_times))
    E, Dl, S = np.meshgrid(eps, delta, seeds, indexing="ij")
    flat = [jnp.asarray(a.ravel()) for a in (E, Dl, S)]
    B = flat[0].size
    chunk = B if chunk_size is None else int(chunk_size)
    per_depth, walls = [], []
    for depth in depths:
        tic = _time.perf_counter()
        field = ReducedField(jnp.asarray(0.0), "ce", depth + 1, True, group=grp)
        parts = []
        for lo in range(0, B, chunk):
            sl = slice(lo, min(lo + chunk, B))
            lam0 = _starts(*(f[sl] for f in flat), family, classes, lead if family == "lag" else None,
                           grp)
            sol = solve_batch(field, np.asarray(lam0), ts, config)
            parts.append(
                _summarise_batch(
                    jnp.asarray(ts),
                    jnp.asarray(sol.ys),
                    lam0,
                    jnp.asarray(sol.result),
                    jnp.asarray(sol.num_steps),
                    rule,
                    grp,
                )
            )
        out = {k: np.concatenate([np.asarray(p[k]) for p in parts]) for k in parts[0]}
        walls.append(_time.perf_counter() - tic)
        _check_batch(out, config, float(t_end), classes, depth)
        per_depth.append(out)

    # --- build dataset
    grid = (len(eps), len(delta), len(seeds))
    dims = (DEPTH, EPS, DELTA, SEED)

    def stack(k):
        return np.stack([o[k].reshape(grid + o[k].shape[1:]) for o in per_depth])

    variables = {
        "outcome": (
            dims,
            stack("outcome"),
            {
                "long_name": "outcome code",
                "description": "0 = NC, r = rank-r low-rank, -1 = undecided",
            },
        ),
        "rank": (
            dims,
            stack("rank"),
            {"long_name": f"modes with |lam_i|/max|lam| >= {rule.threshold} at t_end"},
        ),
        "escape_time": (
            dims,
            stack("escape_time"),
            {"long_name": f"first time with loss <= {rule.escape_frac} x loss(0)"},
        ),
        "decided": (dims, stack("decided"), {"long_name": "outcome decided"}),
        "min_ratio": (
            dims,
            stack("min_ratio"),
            {"long_name": "min_i |lam_i| / max_j |lam_j| at t_end (i >= 1)"},
        ),
        "loss_end": (dims, stack("loss_end"), {"long_name": "cross-entropy at t_end"}),
        "lam0": (dims + (D.MODE,), stack("lam0"), {"long_name": "lambda(0)"}),
        "lam_end": (dims + (D.MODE,), stack("lam_end"), {"long_name": "lambda(t_end)"}),
        "num_steps": (dims, stack("num_steps"), {"long_name": "solver steps"}),
    }
    coords = {
        DEPTH: (
            DEPTH,
            np.asarray(depths),
            {"long_name": "depth L (weight matrices); N = L + 1 factors"},
        ),
        "factors": (DEPTH, np.asarray(depths) + 1, {"long_name": "N = L + 1 factors"}),
        EPS: (EPS, eps, {"long_name": "initial scale epsilon"}),
        DELTA: (
            DELTA,
            delta,
            {"long_name": "relative lag (lag family) or spread (random family)"},
        ),
        SEED: (SEED, seeds, {"long_name": "seed of the random family"}),
        D.MODE: (D.MODE, np.arange(classes), {"long_name": "Walsh mode index"}),
    }
    ds = xr.Dataset(variables, coords=coords).assign_coords(grp.mode_coords())
    if family == "lag":
        ds = ds.isel({SEED: 0}, drop=True)
    family_text = {
        "lag": f"lambda_i(0) = eps for leading modes {list(lead)}, "
        "eps (1 - delta) for the other modes i >= 1, "
        "lambda_0 = 0",
        "random": "lambda_i(0) = eps u_i, u_i ~ U[1 - delta, 1 + delta] "
        "from jax.random.key(seed), lambda_0 = 0",
    }[family]
    ds.attrs = {
        "title": "svflow basin map (outcome of balanced spectral starts)",
        "engine": "reduced",
        "classes": int(classes),
        "loss_name": "ce",
        "weight_decay": 0.0,
        "family": family,
        "group": grp.label,
        "family_definition": family_text,
        "leaders": list(lead) if family == "lag" else [],
        "t_end": float(t_end),
        "num_times": int(num_times),
        **config.as_attrs(),
        **rule.as_attrs(),
        "wall_time_s_per_depth": [float(w) for w in walls],
        "conventions": "depth L = number of weight matrices, N = L + 1 factors; "
        "t = steps x step size; "
        "mean-reduced loss; balanced start, lambda-only law",
        **provenance(),
    }
    return netcdf_safe(ds)


@float64
def basin_width(ds: xr.Dataset) -> xr.Dataset:
    r"""Basin width: for each (depth, eps[, seed]) the largest grid $\delta$ whose
    whole stretch $[\delta_0, \delta]$ of the grid reaches NC.

    Returns a Dataset with ``width`` (NaN when the smallest grid delta is not
    NC) and ``edge_outcome``, the outcome code of the first grid delta past the
    stretch (-1 undecided: the true edge may lie further out; -2: every grid
    delta is NC, so the width is only a lower bound).
    """
    if "outcome" not in ds or DELTA not in ds["outcome"].dims:
        raise ValueError(
            "basin_width needs a basin_map dataset (variable 'outcome' with a "
            "'delta' dim)."
        )
    oc = ds["outcome"].transpose(..., DELTA)
    deltas = ds[DELTA].values
    nc = oc.values == NC
    run = np.cumprod(nc, axis=-1).astype(bool)
    n = run.sum(axis=-1)
    width = np.where(n > 0, deltas[np.maximum(n - 1, 0)], np.nan)
    nxt = np.take_along_axis(
        oc.values, np.minimum(n, len(deltas) - 1)[..., None], axis=-1
    )[..., 0]
    edge = np.where(n == len(deltas), -2, nxt)
    dims = oc.dims[:-1]
    coords = {d: ds[d] for d in dims}
    if "factors" in ds.coords:
        coords["factors"] = ds["factors"]
    return netcdf_safe(xr.Dataset(
        {
            "width": (
                dims,
                width,
                {
                    "long_name": "largest delta with NC on the whole grid stretch "
                    "from the smallest delta"
                },
            ),
            "edge_outcome": (
                dims,
                edge,
                {
                    "long_name": "outcome just past the NC stretch "
                    "(-1 undecided, -2 none)"
                },
            ),
        },
        coords=coords,
        attrs=dict(ds.attrs),
    ))
