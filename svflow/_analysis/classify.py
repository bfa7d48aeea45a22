r"""Finite-horizon outcome diagnostic (the direction of travel at t_end).

**Not the t -> infinity outcome.** This classifier reads a trajectory saved up
to a finite t_end and projects the ratio trends a few decades ahead; modes that
still rise log-log slowly (K = 4 lag family, N = 3: a lagging ratio of 0.37 at
t = 1e8 that reaches 1 near t = e^1000) are called frozen. No study of svflow
uses it for outcomes: basin maps, NC fractions, code studies and figures use
:func:`svflow.outcome` (certified late-phase criterion in double-log time).
It stays as a diagnostic of a saved trajectory.

Under cross-entropy the logits grow like $\log t$ and the direction
$\lambda/\|\lambda\|$ converges only logarithmically, so "the ratios at
$t_\mathrm{end}$" is not an outcome (docs: theory/outcomes.md). The classifier here
decides from the **direction of travel in log-time**.

Conventions. For a trajectory $\lambda(t)$ (time axis first, K Walsh modes,
mode 0 ignored: it never changes the cross-entropy) define the ratios

$$q_i(t) = \frac{|\lambda_i(t)|}{\max_{j \ge 1}|\lambda_j(t)|}, \qquad i = 1..K-1,$$

and, over the **window** of the last $W$ decades of saved times
$[t_\mathrm{end}10^{-W}, t_\mathrm{end}]$, their least-squares slopes per decade
$s_i = dq_i/d\log_{10}t$ (over the whole window, and over its later half, to
catch accelerating motion). With a threshold $\theta$ and a **horizon** of $H$
further decades:

- the slope used for mode $i$ is the one of the two that pushes $q_i$ towards
  $\theta$ the hardest (the more negative one when $q_i \ge \theta$, the more
  positive one when $q_i < \theta$);
- the projection $q_i^{+} = q_i(t_\mathrm{end}) + H s_i$ is the ratio after $H$
  more decades at that rate. Ratio trends in log-time decelerate as the
  direction converges (the late corrections are $O(1/\log t)$), so a linear
  projection in $\log t$ over-estimates the future motion: it is the cautious
  choice;
- mode $i$ **carries the norm** if $q_i \ge \theta$ and $q_i^{+} \ge \theta$;
  it is **frozen/decaying** if $q_i < \theta$ and $q_i^{+} < \theta$;
  otherwise it is **moving** (its side of the threshold is not settled).

A trajectory is *decided* when (i) every state is finite, (ii) it escaped the
small-initialisation plateau before the window opened (the window then holds
only post-escape, log-time dynamics; before the escape the ratios barely move
although nothing is settled), and (iii) no mode is moving. Its **rank** is the
number of carrying modes; the **outcome code** is ``0`` for neural collapse
(all K - 1 modes carry the norm: NC), ``r`` for a rank-r low-rank outcome
(1 <= r < K - 1) and ``-1`` (:data:`UNDECIDED`) otherwise.

The **escape time** is the first time the data loss falls to
``escape_frac`` times its initial value (default one half; $\log K$ at a small
start), interpolated linearly in $\log t$ between saved times; ``inf`` if it
never does.

Checked against longer runs: for K = 4 and 8, depths 1-5, eps in {1e-3, 1e-2,
1e-1} and 16 lags of the ``"lag"`` basin family, 472 cells were decided both
at t_end = 1e8 and at 1e12; one disagreed (K = 8, N = 6: a ratio resting at
0.52 and falling by 0.005 per decade, which crosses 1/2 near t = 5e11, about
3.7 decades later). A ratio that settles close to the threshold is the
classifier's weak spot; a longer ``horizon`` turns such cells into undecided.

Everything is a pure function of arrays (jit/vmap friendly);
:func:`classify` applies it to a trajectory Dataset with any extra dims.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import xarray as xr
from jaxtyping import Array, Float, Int

from .. import _dims as D
from .._dataset import netcdf_safe
from .._fields import check_loss, data_loss
from .._groups import resolve_group
from .._precision import computes

__all__ = [
    "NC",
    "UNDECIDED",
    "CARRYING",
    "FROZEN",
    "MOVING",
    "OutcomeRule",
    "Outcome",
    "mode_ratios",
    "escape_time",
    "classify_trajectory",
    "classify",
]

NC = 0
"""Outcome code of neural collapse (all K - 1 modes carry the norm)."""
UNDECIDED = -1
"""Outcome code of a trajectory whose direction of travel is not settled."""

CARRYING, FROZEN, MOVING = 1, 0, -1
"""Per-mode states: carries the norm, frozen/decaying, moving across the threshold."""


@dataclass(frozen=True)
class OutcomeRule:
    r"""Parameters of the outcome classifier (recorded in dataset attrs).

    Attributes:
        window: $W$, decades of log-time (at the end of the run) whose trend is read.
        horizon: $H$, decades ahead over which the current trend must not carry a
            ratio across the threshold.
        threshold: $\theta \in (0, 1)$ on $q_i = |\lambda_i|/\max_j|\lambda_j|$
            separating "carries the norm" from "frozen".
        escape_frac: the run has escaped once loss <= escape_frac x loss(0).
        loss: ``"ce"`` or ``"squared"`` (only used for the escape time).
    """

    window: float = 2.0
    horizon: float = 4.0
    threshold: float = 0.5
    escape_frac: float = 0.5
    loss: str = "ce"

    def __post_init__(self):
        if not (np.isfinite(self.window) and self.window > 0):
            raise ValueError(f"window must be a positive number of decades; got {self.window!r}.")
        if not (np.isfinite(self.horizon) and self.horizon >= 0):
            raise ValueError(f"horizon must be a number of decades >= 0; got {self.horizon!r}.")
        if not (0 < self.threshold < 1):
            raise ValueError(
                f"threshold must lie in (0, 1) (a ratio to the largest mode); got {self.threshold!r}."
            )
        if not (0 < self.escape_frac < 1):
            raise ValueError(f"escape_frac must lie in (0, 1); got {self.escape_frac!r}.")
        check_loss(self.loss)

    def as_attrs(self) -> dict:
        return {
            "outcome_window_decades": float(self.window),
            "outcome_horizon_decades": float(self.horizon),
            "outcome_threshold": float(self.threshold),
            "outcome_escape_frac": float(self.escape_frac),
            "outcome_codes": "0 = neural collapse (rank K-1), r = rank-r low-rank, -1 = undecided",
        }


class Outcome(NamedTuple):
    """Result of :func:`classify_trajectory` (leading batch dims allowed)."""

    code: Int[Array, "..."]  # 0 NC, r low rank, -1 undecided
    rank: Int[Array, "..."]  # modes with q_i >= threshold at t_end
    escape_time: Float[Array, "..."]  # inf if the loss never fell to escape_frac x loss(0)
    decided: Array  # bool
    ratio: Float[Array, "... K"]  # q_i(t_end), mode 0 -> 0
    slope: Float[Array, "... K"]  # dq_i/dlog10 t used for the projection
    state: Int[Array, "... K"]  # CARRYING / FROZEN / MOVING per mode (mode 0 -> FROZEN)


def mode_ratios(lam: Float[Array, "... K"]) -> Float[Array, "... K"]:
    r"""$q_i = |\lambda_i| / \max_{j\ge1}|\lambda_j|$ for $i \ge 1$; entry 0 is 0."""
    mag = jnp.abs(lam).at[..., 0].set(0.0)
    top = jnp.max(mag, axis=-1, keepdims=True)
    return jnp.where(top > 0, mag / jnp.where(top > 0, top, 1.0), 0.0)


def escape_time(times: Float[Array, " T"], loss: Float[Array, " T"], frac: float = 0.5) -> Float[Array, ""]:
    r"""First time with loss <= frac x loss(t_0), linear in $\log t$ between saves.

    Returns inf if the loss never gets there.
    """
    target = frac * loss[0]
    below = loss <= target
    i = jnp.argmax(below)
    ok = jnp.any(below)
    im = jnp.maximum(i - 1, 0)
    t0, t1 = times[im], times[i]
    l0, l1 = loss[im], loss[i]
    w = jnp.clip((l0 - target) / jnp.where(l0 != l1, l0 - l1, 1.0), 0.0, 1.0)
    # log-interpolate when both ends are positive, else linear (first interval, t = 0)
    pos = (t0 > 0) & (t1 > 0)
    lt = jnp.exp(jnp.log(jnp.where(pos, t0, 1.0)) * (1 - w) + jnp.log(jnp.where(pos, t1, 1.0)) * w)
    t = jnp.where(pos, lt, t0 + w * (t1 - t0))
    t = jnp.where(i == 0, times[0], t)
    return jnp.where(ok, t, jnp.inf)


def _slope(x, q, w):
    """Weighted least-squares slope of q (T, K) against x (T,) with weights w (T,)."""
    sw = jnp.maximum(jnp.sum(w), 1e-300)
    xb = jnp.sum(w * x) / sw
    qb = jnp.sum(w[:, None] * q, axis=0) / sw
    dx = (x - xb) * w
    den = jnp.sum(dx * (x - xb))
    return jnp.sum(dx[:, None] * (q - qb), axis=0) / jnp.where(den > 0, den, 1.0)


@computes
def classify_trajectory(
    times: Float[Array, " T"],
    lam: Float[Array, "T K"],
    rule: OutcomeRule = OutcomeRule(),
    end=None,
    group=None,
) -> Outcome:
    r"""Classify one trajectory $\lambda(t)$ (the rule: documentation page *Outcomes as t -> infinity*,
    "Deciding an outcome from a finite run", ``docs/theory/outcomes.md``).

    Args:
        times: increasing save times (gradient-flow time, $t \ge 0$), shape (T,).
            The window needs at least 3 saved times in its later half.
        lam: logit eigenvalues in a spectral frame, shape (T, K).
        rule: classifier parameters.
        end: optional index (may be traced): classify as if the run had ended at
            ``times[end]`` (later saves are ignored). ``vmap`` over it to see
            when a run becomes decided without re-slicing (and re-compiling).
        group: the frame of ``lam`` (a :class:`svflow.Group` or its spec;
            ``None``: Walsh for K = 2^m, else cyclic), for the loss.

    Returns:
        :class:`Outcome`. Pure and jit/vmap-compatible (vmap over leading axes
        of ``times``/``lam``).
    """
    times = jnp.asarray(times)
    lam = jnp.asarray(lam)
    T, K = lam.shape
    group = resolve_group(group, K)
    idx = T - 1 if end is None else jnp.asarray(end)
    valid = jnp.arange(T) <= idx
    t_end = times[idx]
    t_lo = t_end * 10.0 ** (-rule.window)
    t_mid = t_end * 10.0 ** (-rule.window / 2)
    x = jnp.log10(jnp.where(times > 0, times, 1.0))
    w_full = ((times >= t_lo) & (times > 0) & valid).astype(lam.dtype)
    w_late = ((times >= t_mid) & (times > 0) & valid).astype(lam.dtype)
    enough = jnp.sum(w_late) >= 3

    finite = jnp.all(jnp.isfinite(lam) | ~valid[:, None])
    lam = jnp.where(valid[:, None] & jnp.isfinite(lam), lam, 1.0)
    q = mode_ratios(lam)
    s_full = _slope(x, q, w_full)
    s_late = _slope(x, q, w_late)
    q_end = q[idx]
    theta = rule.threshold
    above = q_end >= theta
    s = jnp.where(above, jnp.minimum(s_full, s_late), jnp.maximum(s_full, s_late))
    q_proj = q_end + rule.horizon * s
    carrying = above & (q_proj >= theta)
    frozen = (~above) & (q_proj < theta)
    state = jnp.where(carrying, CARRYING, jnp.where(frozen, FROZEN, MOVING))
    state = state.at[0].set(FROZEN)
    s = s.at[0].set(0.0)

    L = jnp.where(valid, data_loss(lam, rule.loss, group), jnp.inf)
    t_esc = escape_time(times, L, rule.escape_frac)
    rank = jnp.sum(above.at[0].set(False))
    decided = finite & enough & (t_esc <= t_lo) & jnp.all(state != MOVING)
    code = jnp.where(decided, jnp.where(rank == K - 1, NC, rank), UNDECIDED)
    return Outcome(
        code.astype(jnp.int32),
        rank.astype(jnp.int32),
        t_esc,
        decided,
        q_end,
        s,
        state.astype(jnp.int32),
    )


@computes
def classify(ds: xr.Dataset, rule: OutcomeRule | None = None, **kwargs) -> xr.Dataset:
    r"""Classify every trajectory of a Dataset with ``lam`` of dims (..., time, mode).

    Extra dims (runs, seeds, sweep axes) are kept. Keyword arguments build an
    :class:`OutcomeRule` (``window``, ``horizon``, ``threshold``,
    ``escape_frac``); ``loss`` defaults to the dataset's ``loss_name`` attr.

    Returns:
        A Dataset with ``outcome`` (0 NC, r rank-r, -1 undecided), ``rank``,
        ``escape_time``, ``decided`` over the extra dims, and ``ratio``,
        ``ratio_slope``, ``mode_state`` with the extra dims and ``mode``; the
        rule in attrs.
    """
    rule = _classify_rule(ds, rule, kwargs)
    lam = ds[D.LAM]
    if D.TIME not in lam.dims or D.MODE not in lam.dims:
        raise ValueError(f"{D.LAM!r} must have dims 'time' and 'mode'; got {lam.dims}.")
    extra = [d for d in lam.dims if d not in (D.TIME, D.MODE)]
    lam = lam.transpose(*extra, D.TIME, D.MODE)
    times = np.asarray(ds[D.TIME].values, dtype=float)
    if times.size < 4:
        raise ValueError(f"classify needs at least 4 saved times; got {times.size}.")
    shape = lam.shape[:-2]
    flat = jnp.asarray(lam.values.reshape((-1,) + lam.shape[-2:]))
    group = resolve_group(ds.attrs.get("group"), lam.shape[-1])
    out = jax.jit(jax.vmap(lambda l: classify_trajectory(jnp.asarray(times), l, rule, group=group)))(flat)
    out = jax.tree.map(lambda a: np.asarray(a).reshape(shape + a.shape[1:]), out)
    return _classified_dataset(ds, out, tuple(extra), rule)


def _classify_rule(ds, rule: OutcomeRule | None, kwargs: dict) -> OutcomeRule:
    """Check ``ds`` holds ``lam``; the rule given, or one built from ``kwargs`` (loss from the attrs)."""
    if not isinstance(ds, xr.Dataset):
        raise TypeError(
            f"ds must be an xarray.Dataset with variable {D.LAM!r} (from svflow.simulate); "
            f"got {type(ds).__name__}."
        )
    if D.LAM not in ds:
        raise ValueError(
            f"classify needs a dataset with variable {D.LAM!r} (dims ..., time, mode), "
            f"as made by svflow.simulate; got variables {sorted(map(str, ds.data_vars))}."
        )
    if rule is None:
        kwargs.setdefault("loss", ds.attrs.get("loss_name", "ce"))
        return OutcomeRule(**kwargs)
    if kwargs:
        raise ValueError(f"pass either rule= or keyword settings, not both; got rule and {sorted(kwargs)}.")
    return rule


def _classified_dataset(ds: xr.Dataset, out, extra: tuple, rule: OutcomeRule) -> xr.Dataset:
    """The dataset of :func:`classify`: per-trajectory results over ``extra`` (and ``mode``)."""
    coords = {d: ds[d] for d in extra if d in ds.coords}
    mdims = extra + (D.MODE,)
    variables = {
        "outcome": (
            extra,
            out.code,
            {"long_name": "outcome code", "description": "0 = NC, r = rank-r low-rank, -1 = undecided"},
        ),
        "rank": (extra, out.rank, {"long_name": f"modes with |lam_i|/max|lam| >= {rule.threshold} at t_end"}),
        "escape_time": (
            extra,
            out.escape_time,
            {"long_name": f"first time with loss <= {rule.escape_frac} x loss(0)"},
        ),
        "decided": (extra, out.decided, {"long_name": "outcome decided"}),
        "ratio": (mdims, out.ratio, {"long_name": "|lam_i| / max_j |lam_j| at t_end"}),
        "ratio_slope": (
            mdims,
            out.slope,
            {"long_name": "d ratio / d log10 t used for the projection", "units": "1/decade"},
        ),
        "mode_state": (mdims, out.state, {"long_name": "1 carrying, 0 frozen, -1 moving"}),
    }
    res = xr.Dataset(
        variables,
        coords={**coords, D.MODE: ds[D.MODE]} if D.MODE in ds.coords else coords,
        attrs={**dict(ds.attrs), **rule.as_attrs()},
    )
    return netcdf_safe(res)
