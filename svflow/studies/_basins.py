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
horizons (:func:`svflow._outcome.resolve`). :func:`basin_cell` is the same
computation for one start as a pure function (the unit of a
:func:`svflow.sweep` cell).

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

import jax
import jax.numpy as jnp
import numpy as np
import xarray as xr
from jaxtyping import Array, Float

from .. import _dims as D
from .._batch import MAX_STEPS, SUCCESS
from .._checks import check_int
from .._dataset import grid_dataset
from .._groups import Group, resolve_group, tie_pairs
from .._integrate import IntegrationError, SolverConfig
from .._limit import LIMIT_STEPS, relax
from .._outcome import (
    NC,
    UNDECIDED,
    Criterion,
    _undecide,
    advance,
    check_horizons,
    check_tolerances,
    consistent,
    decide,
    handoff_state,
    late_state,
    resolve,
)
from .._precision import computes
from .._start import check_depth

__all__ = [
    "FAMILIES",
    "FIRST_HORIZON",
    "LATER_HORIZONS",
    "continue_undecided",
    "default_leaders",
    "basin_start",
    "basin_cell",
    "basin_batch",
    "basin_map",
    "basin_width",
]

FAMILIES = ("lag", "random")

EPS, DELTA, SEED, DEPTH = "eps", "delta", D.SEED, D.DEPTH


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
    lead = tuple(sorted({check_int("leaders[]", i) for i in leaders}))
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


FIRST_HORIZON = 100.0
"""tau = log(1 + t) of the first stage of a basin map (t = e^100)."""

CHECK_HORIZON = 30.0
"""tau of the persistence check inside the first stage (the decision at
FIRST_HORIZON must find the same support and frozen sets here)."""

LATER_HORIZONS = (300.0, 1e3, 3e3, 1e4)
"""Further tau horizons through which :func:`basin_map` continues undecided starts."""

_CONFIG = SolverConfig(rtol=1e-5, atol=1e-8, max_steps=100_000)
"""Solver settings of the basin maps' exact runs: an outcome depends on the
hand-off states only to O(log tau / tau), far above these tolerances; rtol
1e-6 gave the same K = 4 edges and the same outcomes on 3000 random K = 8
starts, with 26 % more steps (benchmarks/RESULTS.md, section 7)."""


@computes
def basin_cell(
    eps: float | Float[Array, ""],
    delta: float | Float[Array, ""],
    seed=0,
    *,
    classes: int,
    depth: int,
    horizon: float = FIRST_HORIZON,
    family: str = "lag",
    leaders: tuple[int, ...] | None = None,
    config: SolverConfig = _CONFIG,
    criterion: Criterion = Criterion(),
    group: Group | None = None,
) -> dict:
    r"""Integrate ONE basin start to ``horizon`` (in tau) and decide its outcome (pure; vmap it).

    The settings after ``*`` are static (Python values). Returns a dict of
    arrays: ``outcome`` (0 NC, r support size, -1 undecided), ``rank``
    (support size), ``decided`` (the criterion holds at ``horizon`` and gives
    the same support and frozen sets at tau = min(30, horizon / 3)),
    ``support`` and ``frozen`` (K,) bool, ``ratio``
    ($|\lambda_i|/\max|\lambda|$, K), ``min_ratio`` (its minimum over modes
    i >= 1), ``rate_ratio`` (K), ``log_t_end`` (tau reached),
    ``lam0`` and ``lam_end`` (K,), ``solver_result`` (diffrax result code,
    0 = success) and ``num_steps``. A failed integration is undecided (and
    :func:`basin_map` raises on it).
    """
    N = depth + 1
    lam0 = basin_start(family, classes, eps, delta, seed, leaders, group)
    tau1 = float(horizon)
    tau0 = min(CHECK_HORIZON, tau1 / 3)

    ys, res, steps = advance(lam0, 0.0, (tau0, tau1), factors=N, balanced=True, config=config, group=group)

    def at(y1):
        late = late_state(y1, criterion, group)
        u1 = relax(handoff_state(y1, criterion, group), factors=N, group=group)
        d = decide(u1, N, criterion, group)
        d["decided"] = d["decided"] & late["late"]
        return d

    d0, d = at(ys[0]), at(ys[1])
    y1 = ys[1]
    steps = steps + 2 * LIMIT_STEPS
    same = jnp.all(d["support"] == d0["support"]) & jnp.all(d["frozen"] == d0["frozen"])
    d["decided"] = d["decided"] & d0["decided"] & same
    d["code"] = jnp.where(d["decided"], d["code"], UNDECIDED)
    ok = res == SUCCESS
    ratio = d["ratio"]
    return dict(
        outcome=jnp.where(ok, d["code"], UNDECIDED),
        rank=jnp.sum(d["support"]).astype(jnp.int32),
        decided=d["decided"] & ok,
        support=d["support"],
        frozen=d["frozen"],
        ratio=ratio,
        min_ratio=jnp.min(jnp.where(jnp.arange(classes) == 0, jnp.inf, ratio)),
        rate_ratio=d["rate_ratio"],
        log_t_end=jnp.asarray(tau1),
        lam0=lam0,
        lam_end=y1,
        solver_result=res,
        num_steps=steps,
    )


@partial(
    jax.jit,
    static_argnames=(
        "classes",
        "depth",
        "horizon",
        "family",
        "leaders",
        "config",
        "criterion",
        "group",
    ),
)
def basin_batch(
    eps: Float[Array, " B"],
    delta: Float[Array, " B"],
    seed,
    *,
    classes: int,
    depth: int,
    horizon: float = FIRST_HORIZON,
    family: str = "lag",
    leaders: tuple[int, ...] | None = None,
    config: SolverConfig = _CONFIG,
    criterion: Criterion = Criterion(),
    group: Group | None = None,
) -> dict:
    r"""Integrate and decide a batch of basin starts in ONE vmapped, jitted solve.

    ``jax.vmap`` of :func:`basin_cell` over the batch arrays ``eps``, ``delta``,
    ``seed`` (shape (B,); ``seed`` may be a scalar and is ignored by the
    ``"lag"`` family) for a static setting; this is the unit a sweep runner
    calls chunk by chunk. Under ``vmap`` the batch steps until its slowest
    member is done. Returns :func:`basin_cell`'s dict with a leading axis B.
    """
    seed = jnp.broadcast_to(jnp.asarray(seed), jnp.shape(eps))
    cell = partial(
        basin_cell,
        classes=classes,
        depth=depth,
        horizon=horizon,
        family=family,
        leaders=leaders,
        config=config,
        criterion=criterion,
        group=group,
    )
    return jax.vmap(cell)(eps, delta, seed)


def continue_undecided(
    out: dict,
    *,
    depth: int,
    horizons=LATER_HORIZONS,
    config: SolverConfig = _CONFIG,
    criterion: Criterion = Criterion(),
    group: Group | None = None,
) -> dict:
    """Continue the undecided members of a :func:`basin_batch` result (numpy dict,
    leading axis B) through ``horizons``; decided members are left as they are.

    Only the undecided starts run, as one smaller vmapped batch per horizon.
    Returns the updated dict (same keys).
    """
    out = {k: np.array(v) for k, v in out.items()}
    state = {
        "code": out["outcome"],
        "decided": out["decided"],
        "support": out["support"],
        "frozen": out["frozen"],
        "rate_ratio": out["rate_ratio"],
        "ratio": out["ratio"],
        "late": np.zeros_like(out["decided"]),
        "off_target_mass": np.zeros(len(out["decided"])),
        "solver_result": out["solver_result"],
        "num_steps": out["num_steps"],
    }
    st = resolve(
        out["lam_end"],
        out["log_t_end"],
        state,
        factors=depth + 1,
        balanced=True,
        horizons=horizons,
        config=config,
        criterion=criterion,
        group=group,
    )
    K = out["lam_end"].shape[-1]
    out.update(
        outcome=st["code"],
        decided=st["decided"],
        support=st["support"],
        frozen=st["frozen"],
        rank=st["support"].sum(-1).astype(np.int32),
        ratio=st["ratio"],
        min_ratio=np.where(np.arange(K) == 0, np.inf, st["ratio"]).min(-1),
        rate_ratio=st["rate_ratio"],
        log_t_end=st["tau"],
        lam_end=st["y"],
        solver_result=st["solver_result"],
        num_steps=st["num_steps"],
    )
    return out


@partial(jax.jit, static_argnames=("family", "classes", "leaders", "group"))
def _starts(eps, delta, seed, family, classes, leaders, group=None):
    return jax.vmap(lambda e, d, s: basin_start(family, classes, e, d, s, leaders, group))(eps, delta, seed)


def _run_starts(
    eps, delta, seed, *, classes, depth, horizons, family, leaders, config, criterion, group
) -> dict:
    """The outcome of a batch of basin starts through svflow's batch engine.

    The same stages as :func:`basin_cell` followed by :func:`continue_undecided`:
    a check at tau = min(30, horizons[0] / 3), the first decision at
    ``horizons[0]`` (which must find the same support and frozen sets), the
    undecided starts continued through the later horizons
    (:func:`svflow._outcome.resolve`, each stage one refill batch).
    Returns :func:`basin_cell`'s dict with a leading axis B (numpy).
    """
    lam0 = np.asarray(_starts(eps, delta, seed, family, classes, leaders, group))
    check = min(CHECK_HORIZON, horizons[0] / 3)
    st = resolve(
        lam0,
        0.0,
        factors=depth + 1,
        balanced=True,
        horizons=(check, *horizons),
        config=config,
        criterion=criterion,
        group=group,
    )
    K = lam0.shape[-1]
    _undecide(st, ~consistent(st, criterion))
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


def _check_batch(out: dict, config: SolverConfig, t_end, classes: int, depth: int) -> None:
    """Raise :class:`IntegrationError` (with advice) if a batch member failed."""
    res = np.asarray(out["solver_result"])
    maxed = res == MAX_STEPS
    bad = (res != SUCCESS) | ~np.all(np.isfinite(out["lam_end"]), axis=-1)
    where = f"basin map, classes={classes}, depth={depth}: "
    if np.any(maxed):
        raise IntegrationError(
            where + f"{int(maxed.sum())} of {res.size} trajectories used all max_steps = "
            f"{config.max_steps} steps to tau = log(1 + t) = {t_end}. Pass a larger max_steps, "
            "looser "
            f"rtol/atol (now {config.rtol:g}/{config.atol:g}) or shorter horizons."
        )
    if np.any(bad):
        raise IntegrationError(
            where + f"{int(bad.sum())} of {res.size} trajectories failed or went non-finite "
            f"before tau = log(1 + t) = {t_end}. Use float64, smaller initial scales eps or "
            "tighter rtol/atol."
        )


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
    rtol: float = _CONFIG.rtol,
    atol: float = _CONFIG.atol,
    max_steps: int = _CONFIG.max_steps,
    solver: str = "tsit5",
    criterion: Criterion | None = None,
    chunk_size: int | None = None,
    group=None,
) -> xr.Dataset:
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
        rtol, atol, max_steps, solver: diffrax settings of the exact runs
            (rtol, atol at most 1e-3, as for :func:`svflow.outcome`). Looser
            than :func:`svflow.simulate`'s (1e-5 vs 1e-8): a map runs
            thousands of starts and only decides each outcome, which depends
            on the hand-off states only to O(log tau / tau) (module
            ``_CONFIG``: 1e-6 gives the same outcomes).
        criterion: :class:`svflow._outcome.Criterion` of the decision.
        chunk_size: run each depth in chunks of this many starts (default: all).
        group: ``"walsh"``, ``"cyclic"``, a tuple of cyclic orders or ``None``
            (Walsh for K = 2^m, else cyclic); the default leaders of another group
            are the two modes of the lowest frequency (the K-gon of Z_K).

    Returns:
        Dataset with dims depth, eps, delta, seed (random family only) and
        mode: ``outcome``
        (0 NC, r support size, -1 undecided), ``rank`` (support size),
        ``decided``, ``support`` (mode), ``ratio`` (mode; |lambda_i| / max at
        the horizon reached: frozen modes are on their way to 0),
        ``min_ratio``, ``log_t_end`` (tau reached), ``lam0``, ``lam_end``,
        ``num_steps`` (all stages); provenance attrs.

    Raises:
        ValueError: bad arguments. IntegrationError: a trajectory failed.
    """
    grp = resolve_group(group, classes)
    depths, eps, delta, lead, seeds, hz = _check_map_args(
        classes, depths, eps, delta, family, seeds, leaders, horizons, grp
    )
    rtol, atol = check_tolerances(rtol, atol)
    config = SolverConfig(solver=solver, rtol=rtol, atol=atol, max_steps=max_steps)
    criterion = Criterion() if criterion is None else criterion
    if not isinstance(criterion, Criterion):
        raise TypeError(f"criterion must be a Criterion; got {type(criterion).__name__}.")
    if chunk_size is not None:
        chunk_size = check_int("chunk_size", chunk_size, minimum=1)
    run = dict(classes=classes, horizons=tuple(float(h) for h in hz), family=family, config=config)
    run.update(leaders=lead if family == "lag" else None, criterion=criterion, group=grp)
    per_depth, walls = _run_map(depths, eps, delta, seeds, chunk_size, run)
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
    per_depth, walls = [], []
    for depth in depths:
        tic = _time.perf_counter()
        parts = [
            _run_starts(*(f[lo : lo + chunk] for f in flat), depth=depth, **run) for lo in range(0, B, chunk)
        ]
        out = {k: np.concatenate([np.asarray(p[k]) for p in parts]) for k in parts[0]}
        walls.append(_time.perf_counter() - tic)
        _check_batch(out, run["config"], run["horizons"][-1], run["classes"], depth)
        per_depth.append(out)
    return per_depth, walls


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
        "wall_time_s_per_depth": [float(w) for w in walls],
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
