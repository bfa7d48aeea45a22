r"""Basin maps of neural collapse over 2-D families of spectral starts.

Every start is balanced and spectral (docs: theory/spectral.md), so the
reduced law $\dot\lambda_i = (N/K)(1-\mu_i)|\lambda_i|^{2-2/N}$ (cross-entropy,
no weight decay, N = depth + 1 factors) is integrated for the whole grid at
once, per depth, through svflow's batch engine (the refill loop behind
:func:`svflow.simulate`). Each start is integrated in double-log time
$\sigma = \log(1 + \log(1 + t))$ to a first horizon $\tau_1$
($\tau = \log(1 + t)$) and its $t \to \infty$ outcome is decided by the
late-phase criterion of :func:`svflow.outcome` (NC / support size r /
undecided); the undecided starts go on, as smaller batches, through further
horizons. The stages are svflow's one outcome pipeline
(:func:`svflow._outcome.staged_outcome`, the one behind :func:`svflow.outcome`),
run on a batch of starts by :func:`basin_cells`; with a ``store``,
:func:`basin_map` runs through :func:`svflow.sweep` (one chunk = one call of
:func:`basin_cells`), resumably.

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

import dataclasses
import numbers
import time as _time
from functools import partial

import jax
import jax.numpy as jnp
import numpy as np
import xarray as xr
from jaxtyping import Array, ArrayLike, Float

from .. import _dims as D
from .._checks import check_bool, check_int
from .._dataset import grid_dataset
from .._groups import Group, resolve_group, tie_pairs
from .._integrate import SUCCESS, Solver, check_solution, check_solver, takes_solver
from .._outcome import (
    NC,
    UNDECIDED,
    Criterion,
    check_horizons,
    check_tolerances,
    staged_outcome,
)
from .._precision import computes
from .._start import check_depth

__all__ = [
    "FAMILIES",
    "FIRST_HORIZON",
    "LATER_HORIZONS",
    "BASIN_SOLVER",
    "default_leaders",
    "basin_start",
    "basin_cells",
    "basin_map",
    "basin_width",
]

FAMILIES = ("lag", "random")

EPS, DELTA, SEED, DEPTH = "eps", "delta", D.SEED, D.DEPTH


def default_leaders(classes: int, group=None) -> tuple[int, ...]:
    """The weight-one Walsh modes 1, 2, 4, ..., K/2 (the hypercube code); for other
    groups the two modes of the lowest frequency (cos, sin: the K-gon for Z_K)."""
    return resolve_group(group, classes).generator_modes()


def _check_family(family: str, classes: int, leaders, group: Group) -> tuple[int, ...]:
    if family not in FAMILIES:
        raise ValueError(f"family must be one of {FAMILIES}; got {family!r}.")
    if leaders is None:
        return group.generator_modes()
    lead = tuple(sorted({check_int("leaders[]", i) for i in leaders}))
    if not lead or lead[0] < 1 or lead[-1] >= classes:
        raise ValueError(
            f"leaders must be Walsh mode indices in 1..K-1 = 1..{classes - 1} "
            "(mode 0 never "
            f"moves under cross-entropy); got {leaders!r}."
        )
    if set(int(group.partner[i]) for i in lead) != set(lead):
        raise ValueError(
            f"leaders must contain both modes of every conjugate pair of group {group.label} "
            f"(pairs: dataset coordinate 'pair'); got {leaders!r}."
        )
    return lead


@computes
def basin_start(
    family: str,
    classes: int,
    eps: float | Float[Array, ""],
    delta: float | Float[Array, ""],
    seed=0,
    leaders: tuple[int, ...] | None = None,
    group: Group | None = None,
) -> Float[Array, " K"]:
    r"""$\lambda(0)$ of one member of a basin family (the ``family`` of :func:`basin_map`); vmappable.

    Over a group with conjugate pairs the sine mode copies its cosine partner."""
    group = resolve_group(group, classes)
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
        u = tie_pairs(u, group)
    return (eps * u).at[0].set(0.0)


FIRST_HORIZON = 100.0
"""tau = log(1 + t) of the first stage of a basin map (t = e^100)."""

CHECK_HORIZON = 30.0
"""tau of the persistence check inside the first stage (the decision at
FIRST_HORIZON must find the same support and frozen sets here)."""

LATER_HORIZONS = (300.0, 1e3, 3e3, 1e4)
"""Further tau horizons through which :func:`basin_map` continues undecided starts."""

BASIN_SOLVER = Solver(rtol=1e-5, atol=1e-8, max_steps=100_000)
"""Default solver of the basin maps' exact runs: an outcome depends on the
hand-off states only to O(log tau / tau), far above these tolerances; rtol
1e-6 gave the same K = 4 edges and the same outcomes on 3000 random K = 8
starts, with 26 % more steps (benchmarks/RESULTS.md, section 7)."""

DEFAULT_CHUNK = 64
"""Starts per stored chunk of a :func:`basin_map` with a ``store``."""

_MODE_OUTPUTS = ("lam0", "lam_end", "support", "frozen", "ratio", "rate_ratio")


@partial(jax.jit, static_argnames=("family", "classes", "leaders", "group"))
def _starts(eps, delta, seed, family, classes, leaders, group=None):
    return jax.vmap(lambda e, d, s: basin_start(family, classes, e, d, s, leaders, group))(eps, delta, seed)


def _basin_cells(
    eps, delta, seed, *, classes, depth, horizons, family, leaders, solver, criterion, group
) -> dict:
    """:func:`basin_cells` without the argument checks (the entry points check once)."""
    seed = jnp.broadcast_to(jnp.asarray(seed), jnp.shape(eps))
    lam0 = np.asarray(_starts(jnp.asarray(eps), jnp.asarray(delta), seed, family, classes, leaders, group))
    check = min(CHECK_HORIZON, horizons[0] / 3)
    st, _ = staged_outcome(
        lam0,
        0.0,
        depth=depth,
        balanced=True,
        horizons=(check, *horizons),
        config=solver,
        criterion=criterion,
        group=group,
        limit="none",
    )
    K = lam0.shape[-1]
    ok = st["solver_result"] == SUCCESS
    return dict(
        outcome=np.where(ok, st["code"], UNDECIDED).astype(np.int32),
        rank=st["support"].sum(-1).astype(np.int32),
        decided=st["decided"] & ok,
        support=st["support"],
        frozen=st["frozen"],
        ratio=st["ratio"],
        min_ratio=np.where(np.arange(K) == 0, np.inf, st["ratio"]).min(-1),
        rate_ratio=st["rate_ratio"],
        log_t_end=st["tau"],
        lam0=lam0,
        lam_end=st["y"],
        solver_result=st["solver_result"],
        num_steps=st["num_steps"],
    )


@computes
@takes_solver
def basin_cells(
    eps: Float[ArrayLike, " B"],
    delta: Float[ArrayLike, " B"],
    seed=0,
    *,
    classes: int,
    depth: int,
    horizons=(FIRST_HORIZON,) + LATER_HORIZONS,
    family: str = "lag",
    leaders: tuple[int, ...] | None = None,
    solver: Solver = BASIN_SOLVER,
    criterion: Criterion | None = None,
    group=None,
) -> dict:
    r"""Integrate a batch of basin starts and decide their outcomes: the cell of :func:`basin_map`.

    The starts $(\varepsilon, \delta[, \text{seed}])$ (arrays (B,); ``seed``
    may be a scalar and is ignored by the ``"lag"`` family) run through
    svflow's staged outcome pipeline (:func:`svflow._outcome.staged_outcome`,
    the one behind :func:`svflow.outcome`) on its refill batch engine: a check
    at tau = min(30, horizons[0] / 3), the first decision at ``horizons[0]``
    (it must find the same support and frozen sets as the check), the
    undecided starts continued, as smaller batches, through the later
    horizons. A batch cell function of :func:`svflow.sweep`
    (``batched=True``) calls it on a chunk.

    Returns a dict of numpy arrays with a leading axis B: ``outcome`` (0 NC,
    r support size, -1 undecided), ``rank`` (support size), ``decided``,
    ``support`` and ``frozen`` (K,) bool, ``ratio``
    ($|\lambda_i|/\max|\lambda|$, K), ``min_ratio`` (its minimum over modes
    i >= 1), ``rate_ratio`` (K), ``log_t_end`` (tau reached), ``lam0`` and
    ``lam_end`` (K,), ``solver_result`` (diffrax result code, 0 = success)
    and ``num_steps``. A failed integration is undecided (and
    :func:`basin_map` raises on it).
    """
    grp = resolve_group(group, classes)
    depth = check_depth(depth)
    lead = _check_family(family, classes, leaders, grp)
    hz = tuple(float(h) for h in check_horizons(horizons))
    solver = check_tolerances(check_solver(solver))
    criterion = _check_criterion(criterion)
    eps, delta = np.atleast_1d(np.asarray(eps, float)), np.atleast_1d(np.asarray(delta, float))
    if eps.ndim != 1 or eps.shape != delta.shape:
        raise ValueError(f"eps and delta must be 1-D arrays of one shape; got {eps.shape} and {delta.shape}.")
    return _basin_cells(
        eps,
        delta,
        seed,
        classes=grp.classes,
        depth=depth,
        horizons=hz,
        family=family,
        leaders=lead if family == "lag" else None,
        solver=solver,
        criterion=criterion,
        group=grp,
    )


def _check_criterion(criterion) -> Criterion:
    criterion = Criterion() if criterion is None else criterion
    if not isinstance(criterion, Criterion):
        raise TypeError(f"criterion must be a svflow._outcome.Criterion; got {type(criterion).__name__}.")
    return criterion


def _sweep_cell(
    keys, depth, eps, delta, seed, *, classes, horizons, family, leaders, group, solver, criterion
):
    """The batch cell function of a :func:`basin_map` with a store (its settings as
    plain values, the sweep's ``params``; the keys are unused: the family's own seed,
    a grid coordinate, drives the random draw)."""
    return _basin_cells(
        np.asarray(eps),
        np.asarray(delta),
        np.asarray(seed),
        classes=classes,
        depth=depth,
        horizons=tuple(horizons),
        family=family,
        leaders=None if leaders is None else tuple(leaders),
        solver=Solver(**solver),
        criterion=Criterion(**criterion),
        group=resolve_group(group, classes),
    )


def _sweep_cell_shapes(depth, *, classes, **_) -> dict:
    """Per-start output shapes and dtypes of :func:`_sweep_cell` (a sweep's dry run
    computes nothing)."""
    K = (classes,)
    f, i32, i64, b = "float64", "int32", "int64", "bool"
    return dict(
        outcome=((), i32),
        rank=((), i32),
        decided=((), b),
        support=(K, b),
        frozen=(K, b),
        ratio=(K, f),
        min_ratio=((), f),
        rate_ratio=(K, f),
        log_t_end=((), f),
        lam0=(K, f),
        lam_end=(K, f),
        solver_result=((), i64),
        num_steps=((), i64),
    )


_sweep_cell.output_shapes = _sweep_cell_shapes  # type: ignore[attr-defined]


def _grid(name, values, positive=False, unit=False) -> np.ndarray:
    v = np.atleast_1d(np.asarray(values, dtype=float))
    if v.ndim != 1 or v.size < 1 or not np.all(np.isfinite(v)):
        raise ValueError(f"{name} must be a 1-D array of finite numbers; got {values!r}.")
    if positive and np.any(v <= 0):
        raise ValueError(f"{name} must be > 0 (an initial scale); got {v}.")
    if unit and np.any((v < 0) | (v >= 1)):
        raise ValueError(f"{name} must lie in [0, 1) (a relative lag/spread, lambda(0) > 0); got {v}.")
    if np.any(np.diff(v) <= 0):
        raise ValueError(f"{name} must be strictly increasing; got {v}.")
    return v


@computes
@takes_solver
def basin_map(
    classes: int,
    depths,
    eps,
    delta,
    *,
    horizons=(FIRST_HORIZON,) + LATER_HORIZONS,
    family: str = "lag",
    seeds=(0,),
    leaders=None,
    solver: Solver = BASIN_SOLVER,
    criterion: Criterion | None = None,
    chunk_size: int | None = None,
    group=None,
    store=None,
    client=None,
    progress: bool = False,
    dry_run: bool = False,
) -> xr.Dataset | dict:
    r"""Outcome of every start of a 2-D spectral family, for several depths.

    For each depth L (N = L + 1 factors) all starts
    $(\varepsilon, \delta[, \text{seed}])$
    run as one batch through svflow's refill engine (optionally in chunks of
    ``chunk_size``) to the first horizon, where each start's
    $t \to \infty$ outcome is decided (NC / support size r / undecided) by the
    late-phase criterion of :func:`svflow.outcome`; the undecided starts are
    continued, as smaller batches, through the later horizons.

    Args:
        classes: K >= 2.
        depths: depths L >= 1 (weight matrices).
        eps: initial scales $\varepsilon > 0$ (a log grid is usual), increasing.
        delta: relative lags (``"lag"``) or spreads (``"random"``) in [0, 1),
            increasing.
        horizons: increasing horizons in tau = log(1 + t) (default 100, 300, 1e3, 3e3, 1e4:
            t = e^100, ..., e^10000); the first is run by every start and decides
            too (it is compared with a check at min(30, horizons[0] / 3), as a single
            horizon of :func:`svflow.outcome` is).
        family: ``"lag"`` (the $\log_2 K$ weight-one Walsh modes, or ``leaders``, start at
            $\varepsilon$, every other mode at $\varepsilon(1-\delta)$) or ``"random"``
            ($\lambda_i(0) = \varepsilon u_i$, $u_i \sim U[1-\delta, 1+\delta]$ from ``seed``);
            documentation page *Basins of neural collapse* (``docs/scenarios/basins.md``).
        seeds: a sequence of integer seeds of the ``"random"`` family (a
            ``seed`` dim; ``range(3)`` for three seeds); unused for ``"lag"``.
        leaders: leading modes of the ``"lag"`` family (default 1, 2, 4, ...).
        solver: a :class:`svflow.Solver` for the exact runs (default
            :data:`BASIN_SOLVER`: rtol 1e-5, atol 1e-8, 100 000 steps; rtol,
            atol at most 1e-3, as for :func:`svflow.outcome`). Looser than
            :func:`svflow.simulate`'s (1e-5 vs 1e-8): a map runs thousands of
            starts and only decides each outcome, which depends on the
            hand-off states only to O(log tau / tau) (1e-6 gives the same
            outcomes).
        criterion: :class:`svflow._outcome.Criterion` of the decision.
        chunk_size: run each depth in chunks of this many starts (default: all;
            with a ``store``: :data:`DEFAULT_CHUNK`).
        group: ``"walsh"``, ``"cyclic"``, a tuple of cyclic orders or ``None``
            (Walsh for K = 2^m, else cyclic); the default leaders of another group
            are the two modes of the lowest frequency (the K-gon of Z_K).
        store: a local zarr directory: the map runs through :func:`svflow.sweep`
            (static depth, chunks of ``chunk_size`` starts, each chunk one call
            of :func:`basin_cells` on the batch engine), so an interrupted map
            resumes from its finished chunks (a store of another map raises
            :class:`svflow.SweepSpecError`). Default ``None``: in memory.
        client: with a ``store``, a ``dask.distributed`` client or scheduler
            address to compute the chunks on (default: this process).
        progress: with a ``store``, the sweep's progress bar.
        dry_run: with a ``store``, compute nothing and return the sweep's plan
            (:func:`svflow.sweep` with ``dry_run=True``: cells, chunks done and
            to do, outputs).

    Returns:
        Dataset with dims depth, eps, delta, seed (random family only) and
        mode: ``outcome``
        (0 NC, r support size, -1 undecided), ``rank`` (support size),
        ``decided``, ``support`` (mode), ``ratio`` (mode; |lambda_i| / max at
        the horizon reached: frozen modes are on their way to 0),
        ``min_ratio``, ``log_t_end`` (tau reached), ``lam0``, ``lam_end``,
        ``num_steps`` (all stages); provenance attrs (with a ``store``,
        ``wall_time_s`` of this call instead of ``wall_time_s_per_depth``).

    Raises:
        ValueError: bad arguments. IntegrationError: a trajectory failed.
    """
    grp = resolve_group(group, classes)
    depths, eps, delta, lead, seeds, hz = _check_map_args(
        classes, depths, eps, delta, family, seeds, leaders, horizons, grp
    )
    config = check_tolerances(check_solver(solver))
    criterion = _check_criterion(criterion)
    if chunk_size is not None:
        chunk_size = check_int("chunk_size", chunk_size, minimum=1)
    progress, dry_run = check_bool("progress", progress), check_bool("dry_run", dry_run)
    if store is None and (client is not None or dry_run):
        raise ValueError("client and dry_run are about a stored map's chunks: pass a store too.")
    run = dict(classes=classes, horizons=tuple(float(h) for h in hz), family=family, config=config)
    run.update(leaders=lead if family == "lag" else None, criterion=criterion, group=grp)
    run["stored"] = store is not None
    if store is None:
        per_depth, walls = _run_map(depths, eps, delta, seeds, chunk_size, run)
    else:
        grid = {DEPTH: depths, EPS: eps, DELTA: delta, SEED: seeds}
        chunk = chunk_size or DEFAULT_CHUNK
        if dry_run:
            return _sweep_map(grid, store, chunk, client, False, run, dry_run=True)
        per_depth, walls = _sweep_map(grid, store, chunk, client, bool(progress), run)
    for depth, out in zip(depths, per_depth):
        _check_failures(out, config, hz[-1], classes, depth)
    return _basin_dataset(per_depth, walls, depths, eps, delta, seeds, lead, run)


def _check_map_args(classes: int, depths, eps, delta, family: str, seeds, leaders, horizons, grp) -> tuple:
    """Checked ``(depths, eps, delta, leaders, seeds, horizons)`` of :func:`basin_map`."""
    depths = [check_depth(d) for d in np.atleast_1d(np.asarray(depths, dtype=object))]
    if not depths:
        raise ValueError("depths must hold at least one depth L >= 1 (e.g. [2] or [2, 3]); got none.")
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
    if family == "random" and len(set(seeds.tolist())) != seeds.size:
        raise ValueError(f"seeds must be distinct; got {seeds.tolist()}.")
    hz = check_horizons(horizons)
    return depths, eps, delta, lead, seeds, hz


def _run_map(depths, eps, delta, seeds, chunk_size, run: dict) -> tuple[list, list]:
    """Every start of the grid, one batch (or chunks) per depth: per-depth outputs and wall times."""
    E, Dl, S = np.meshgrid(eps, delta, seeds, indexing="ij")
    flat = [jnp.asarray(a.ravel()) for a in (E, Dl, S)]
    B = flat[0].size
    chunk = B if chunk_size is None else int(chunk_size)
    kw = dict(classes=run["classes"], horizons=run["horizons"], family=run["family"], leaders=run["leaders"])
    kw.update(solver=run["config"], criterion=run["criterion"], group=run["group"])
    per_depth, walls = [], []
    for depth in depths:
        tic = _time.perf_counter()
        parts = [
            _basin_cells(*(f[lo : lo + chunk] for f in flat), depth=depth, **kw) for lo in range(0, B, chunk)
        ]
        out = {k: np.concatenate([np.asarray(p[k]) for p in parts]) for k in parts[0]}
        walls.append(_time.perf_counter() - tic)
        per_depth.append(out)
    return per_depth, walls


def _sweep_map(grid: dict, store, chunk: int, client, progress: bool, run: dict, dry_run: bool = False):
    """The map through :func:`svflow.sweep` into ``store``: per-depth outputs (flat over
    eps x delta x seed, C order, as :func:`_run_map`) and ``[wall time of the call]``;
    with ``dry_run`` the sweep's plan (a dict)."""
    from .._sweep.runner import sweep

    config, criterion = run["config"], run["criterion"]
    params = dict(
        classes=int(run["classes"]),
        horizons=list(run["horizons"]),
        family=run["family"],
        leaders=None if run["leaders"] is None else list(run["leaders"]),
        group=run["group"].label,
        solver=dataclasses.asdict(config),
        criterion=dataclasses.asdict(criterion),
    )
    tic = _time.perf_counter()
    ds = sweep(
        _sweep_cell,
        grid,
        store=store,
        chunk=chunk,
        client=client,
        static=(DEPTH,),
        params=params,
        outputs={k: (D.MODE,) for k in _MODE_OUTPUTS},
        progress=progress,
        batched=True,
        dry_run=dry_run,
    )
    if dry_run:
        return ds
    assert isinstance(ds, xr.Dataset)  # a computed sweep is a dataset
    wall = _time.perf_counter() - tic
    per_depth = []
    for i in range(len(grid[DEPTH])):
        sub = ds.isel({DEPTH: i})
        per_depth.append(
            {
                k: (v := sub[k].transpose(EPS, DELTA, SEED, ...).values).reshape((-1,) + v.shape[3:])
                for k in sub.data_vars
            }
        )
    return per_depth, [wall]


def _check_failures(out: dict, config: Solver, t_end: float, classes: int, depth: int) -> None:
    """Raise :class:`svflow.IntegrationError` (with advice) if a start of the map failed."""
    advice = {
        "max_steps": f"Pass a larger max_steps, looser rtol/atol (now {config.rtol:g}/{config.atol:g}) "
        "or shorter horizons.",
        "failed": "Use smaller initial scales eps or tighter rtol/atol.",
    }
    where = f"basin map, classes={classes}, depth={depth}: "
    to = f"tau = log(1 + t) = {t_end:g}"
    check_solution(out["lam_end"], out["solver_result"], out["num_steps"], config, to, where, advice)


def _basin_dataset(per_depth: list, walls: list, depths, eps, delta, seeds, lead, run: dict) -> xr.Dataset:
    """The dataset of :func:`basin_map` (dims depth, eps, delta, seed, mode; no seed for ``"lag"``)."""
    grid = (len(eps), len(delta), len(seeds))
    dims = (DEPTH, EPS, DELTA, SEED)
    modes = dims + (D.MODE,)

    def stack(k):
        return np.stack([o[k].reshape(grid + o[k].shape[1:]) for o in per_depth])

    outcome_text = "0 = NC (support = all K - 1 modes), r = size of the limit's support, -1 = undecided"
    horizon_text = "at the horizon reached"
    # long_name and units from the vocabulary (svflow._dims), but where this map's meaning is its own
    variables = {
        "outcome": (dims, stack("outcome"), {"description": outcome_text}),
        "rank": (dims, stack("rank"), {"long_name": "size of the limit's support"}),
        "decided": (dims, stack("decided")),
        "support": (modes, stack("support")),
        "ratio": (modes, stack("ratio"), {"long_name": f"|lam_i| / max_j |lam_j| {horizon_text}"}),
        "min_ratio": (
            dims,
            stack("min_ratio"),
            {"long_name": f"min_i |lam_i| / max_j |lam_j| {horizon_text} (i >= 1)"},
        ),
        "log_t_end": (dims, stack("log_t_end")),
        "lam0": (modes, stack("lam0")),
        "lam_end": (modes, stack("lam_end")),
        "num_steps": (dims, stack("num_steps"), {"long_name": "solver steps (all stages)"}),
    }
    grp, family, config = run["group"], run["family"], run["config"]
    coords = {
        DEPTH: np.asarray(depths),
        "factors": (DEPTH, np.asarray(depths) + 1, {}),
        EPS: eps,
        DELTA: (delta, {"long_name": "relative lag (lag family) or spread (random family)"}),
        SEED: (seeds, {"long_name": "seed of the random family"}),
        **grp.mode_coords(),
    }
    family_text = {
        "lag": f"lambda_i(0) = eps for leading modes {list(lead)}, "
        "eps (1 - delta) for the other modes i >= 1, "
        "lambda_0 = 0",
        "random": "lambda_i(0) = eps u_i, u_i ~ U[1 - delta, 1 + delta] "
        "from jax.random.key(seed), lambda_0 = 0",
    }[family]
    attrs = {
        "title": "svflow basin map (outcome of balanced spectral starts)",
        "engine": "reduced",
        "classes": int(run["classes"]),
        "loss_name": "ce",
        "weight_decay": 0.0,
        "group": grp.label,
        "family": family,
        "family_definition": family_text,
        "leaders": list(lead) if family == "lag" else [],
        "horizons_tau": list(run["horizons"]),
        **config.as_attrs(),
        "time_variable": "sigma = log(1 + tau), tau = log(1 + t)",
        **run["criterion"].as_attrs(),
        **(
            {"wall_time_s_per_depth": [float(w) for w in walls]}
            if not run.get("stored")
            else {"wall_time_s": float(walls[0])}
        ),
        "conventions": "depth L = number of weight matrices, N = L + 1 factors; "
        "t = steps x step size; "
        "mean-reduced loss; balanced start, lambda-only law",
    }
    ds = grid_dataset(coords, variables, attrs)
    return ds.isel({SEED: 0}, drop=True) if family == "lag" else ds


@computes
def basin_width(ds: xr.Dataset) -> xr.Dataset:
    r"""Basin width: for each (depth, eps[, seed]) the largest grid $\delta$ whose
    whole stretch $[\delta_0, \delta]$ of the grid reaches NC.

    Returns a Dataset with ``width`` (NaN when the smallest grid delta is not
    NC) and ``edge_outcome``, the outcome code of the first grid delta past the
    stretch (-1 undecided: the true edge may lie further out; -2: every grid
    delta is NC, so the width is only a lower bound).
    """
    if "outcome" not in ds or DELTA not in ds["outcome"].dims:
        raise ValueError("basin_width needs a basin_map dataset (variable 'outcome' with a 'delta' dim).")
    oc = ds["outcome"].transpose(..., DELTA)
    deltas = ds[DELTA].values
    nc = oc.values == NC
    run = np.cumprod(nc, axis=-1).astype(bool)
    n = run.sum(axis=-1)
    width = np.where(n > 0, deltas[np.maximum(n - 1, 0)], np.nan)
    nxt = np.take_along_axis(oc.values, np.minimum(n, len(deltas) - 1)[..., None], axis=-1)[..., 0]
    edge = np.where(n == len(deltas), -2, nxt)
    dims = oc.dims[:-1]
    coords = {d: ds[d] for d in dims}
    if "factors" in ds.coords:
        coords["factors"] = ds["factors"]
    return xr.Dataset(
        {
            "width": (
                dims,
                width,
                {"long_name": "largest delta with NC on the whole grid stretch from the smallest delta"},
            ),
            "edge_outcome": (
                dims,
                edge,
                {"long_name": "outcome just past the NC stretch (-1 undecided, -2 none)"},
            ),
        },
        coords=coords,
        attrs=dict(ds.attrs),
    )
