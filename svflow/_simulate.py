r"""``svflow.simulate``: the reduced singular-value ODE as an xarray dataset.

The dataset layout of both engines is in the README ("Dataset layout");
starts, batches and horizons are described in :func:`simulate`.
"""

from __future__ import annotations

import dataclasses
import time as _time

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import xarray as xr
from jaxtyping import Array, Float

from . import _dims as D
from ._batch import solve_batch, solve_batch_loglog
from ._checks import check_float, check_fraction, check_int
from ._dataset import build_dataset, variable
from ._fields import CETauField, check_loss, rhs_balanced, rhs_factors
from ._groups import AUTO_DENSE_MAX_FFT, Group, Walsh, check_pairs, resolve_group
from ._integrate import (
    IntegrationError,
    Solver,
    check_solution,
    check_solver,
    check_times,
    log_times,
    solve,
    takes_solver,
)
from ._metrics import RANK_ATOL, RANK_RTOL
from ._precision import computes
from ._start import Start, as_start, check_depth, init_array, start_group

__all__ = ["simulate", "default_t_end", "factor_values", "ReducedField"]


class ReducedField(eqx.Module):
    r"""Vector field of the reduced ODE, ``field(t, y, args)``.

    ``balanced=True``: y is $\lambda$ (K,); otherwise y is $s$ (N, K).
    ``variable="log"`` (balanced cross-entropy, every $\lambda_i > 0$ for
    $i \ge 1$): y is $u = \log\lambda$ (K,) with entry 0 a placeholder
    ($\lambda_0 = 0$ under cross-entropy) and the law
    $\dot u_i = (N/K)(1-\mu_i)e^{(1-2/N)u_i} - N\,wd$ ($\dot u_0 = 0$).
    ``weight_decay`` is an array leaf, so a sweep over it compiles once.
    """

    weight_decay: Float[Array, ""]
    loss: str = eqx.field(static=True)
    factors: int = eqx.field(static=True)
    balanced: bool = eqx.field(static=True)
    method: str = eqx.field(static=True, default="auto")
    group: Group | None = eqx.field(static=True, default=None)
    variable: str = eqx.field(static=True, default="lam")

    def cpu_kernel_law(self, classes: int) -> dict | None:
        r"""The law as the compiled CPU kernel (:mod:`svflow._cpu.tsit5`) takes it, or None.

        The kernel covers the balanced cross-entropy law in $u = \log\lambda$
        (``variable="log"``, any weight decay) for the Walsh group of any
        order (fast Walsh transform) and any other group up to K =
        ``AUTO_DENSE_MAX_FFT`` (its dense $1 - \cos\theta$ table, as
        :meth:`svflow.Group.one_minus_mu` uses there).
        """
        if self.variable != "log" or self.loss != "ce" or not self.balanced:
            return None
        group = resolve_group(self.group, classes)
        walsh = isinstance(group, Walsh)
        if not walsh and classes > AUTO_DENSE_MAX_FFT:
            return None
        return dict(
            factors=int(self.factors),
            weight_decay=float(self.weight_decay),
            walsh=walsh,
            one_minus_cos=np.zeros((1, 1)) if walsh else np.asarray(group.one_minus_cos, float),
        )

    def __call__(self, t, y, args=None):
        group = resolve_group(self.group, y.shape[-1])  # None (a field built by hand): K's default
        if self.variable == "log":
            return _rhs_ce_log(y, self.weight_decay, self.factors, group, self.method)
        if self.balanced and self.loss == "ce":
            return _rhs_ce_balanced(y, self.weight_decay, self.factors, group, self.method)
        if self.balanced:
            return rhs_balanced(t, y, self.loss, self.weight_decay, self.factors, group, self.method)
        return rhs_factors(t, y, self.loss, self.weight_decay, group, self.method)


def _rhs_ce_balanced(lam, weight_decay, factors: int, group: Group, method: str = "auto"):
    r"""Balanced cross-entropy law $\dot\lambda_i = (N/K)(1-\mu_i)|\lambda_i|^{2-2/N} - N\,wd\,\lambda_i$.

    The law of :func:`svflow._fields.rhs_balanced` (the same operations, so
    the same numbers) with $1 - \mu$ from :meth:`svflow.Group.ce_one_minus_mu`
    (the Walsh group: one exponential per mode; this is the inner loop of
    every batch).
    """
    K = lam.shape[-1]
    N = factors
    G = -group.ce_one_minus_mu(lam, method=method) / K
    return -N * G * jnp.abs(lam) ** (2.0 - 2.0 / N) - N * weight_decay * lam


def _rhs_ce_log(u, weight_decay, factors: int, group: Group, method: str = "auto"):
    r"""The balanced cross-entropy law in $u = \log\lambda$ (every $\lambda_i > 0$, $i \ge 1$).

    $\dot u_i = \dot\lambda_i/\lambda_i = (N/K)(1-\mu_i)e^{(1-2/N)u_i} - N\,wd$
    with one exponential per mode: $s = e^{u/N}$ (the balanced factor value),
    $\lambda = s^N$ and $e^{(1-2/N)u} = s^{N-2}$ by integer powers, no pow.
    Entry 0 is a placeholder: $\lambda_0 = 0$ and $\dot u_0 = 0$. ``group``:
    the :class:`svflow.Group` of the frame.
    """
    K = u.shape[-1]
    N = factors
    s = jnp.exp(u / N)
    mask = jnp.arange(K) != 0
    lam = jnp.where(mask, s**N, 0.0)
    omm = group.ce_one_minus_mu(lam, method=method)
    return jnp.where(mask, (N / K) * omm * s ** (N - 2) - N * weight_decay, 0.0)


def _margins_host(lam: np.ndarray, group: Group) -> np.ndarray:
    r"""Margins $m(x) = \frac1K\sum_j\lambda_j(1 - \cos\theta_{k_j}(x))$ (..., K) in numpy.

    The host twin of :meth:`svflow.Group.margins` (``method="auto"``) for the
    dataset of :func:`simulate`: the character table's $1 - \cos\theta$ up to
    K = ``AUTO_DENSE_MAX_FFT``, the group Fourier transform (``numpy.fft``,
    mixed radix over the group's orders) beyond. The same closed form, so the
    same numbers up to rounding (tests/test_simulate.py pins it against the
    JAX route); numpy keeps a fresh process from tracing and loading XLA
    programs for the dataset (benchmarks/RESULTS.md, section 13.2).
    """
    K = lam.shape[-1]
    if K <= AUTO_DENSE_MAX_FFT:
        m = lam @ np.asarray(group.one_minus_cos, dtype=float).T
        m /= K
        return m
    lam_hat = (0.5 * (lam + lam[..., group.partner]))[..., group.char_mode]
    batch = lam.shape[:-1]
    axes = tuple(range(len(batch), len(batch) + len(group.orders)))
    f = np.fft.ifftn(lam_hat.reshape(batch + tuple(group.orders)), axes=axes).real.reshape(lam.shape)
    return f[..., :1] - f


def _ce_loss_margin_host(m: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    r"""(mean cross-entropy $\log(1 + \sum_{x\ne0}e^{-m(x)})$, smallest margin $\min_{x\ne0} m(x)$)
    from the margins (..., K).

    The log-sum-exp of :meth:`svflow.Group.ce_loss` in numpy, shifted by the
    smallest margin (stable for margins of either sign); ``m`` is overwritten.
    """
    low = np.min(m[..., 1:], axis=-1)
    e = m[..., 1:]
    e -= low[..., None]  # m(x) - min m >= 0: exp(-(m - min m)) <= 1
    np.negative(e, out=e)
    np.exp(e, out=e)
    return np.logaddexp(0.0, np.log(np.sum(e, axis=-1)) - low), low


def _balanced_s(lam: np.ndarray, factors: int) -> np.ndarray:
    r"""Balanced factors $s_l = |\lambda|^{1/N}$, the sign of $\lambda$ on the last factor: (..., N, K)."""
    mag = np.abs(lam) ** (1.0 / factors)
    s = np.broadcast_to(mag[..., None, :], lam.shape[:-1] + (factors, lam.shape[-1])).copy()
    s[..., -1, :] = np.where(lam < 0, -mag, mag)
    return s


def _outputs(
    ys: np.ndarray,
    balanced: bool,
    factors: int,
    loss: str,
    weight_decay: float,
    rank_rtol: float,
    group: Group,
    store_s: bool = True,
) -> dict:
    r"""Every per-time quantity of the dataset, batched over (B, T, ...), in numpy.

    ``lam`` (the state, or the product of the factors), the loss (cross-entropy
    from the margins, :func:`_ce_loss_margin_host`; squared $\sum_i(\lambda_i - 1)^2/(2K)$),
    the objective (loss + wd/2 x the squared norm of the factors), the smallest
    margin, the singular values ``sigma`` of the centred logits and their
    numerical rank. Balanced runs build the factors ``s`` from ``lam`` only
    when ``store_s`` (``s`` is None otherwise); unbalanced runs always return
    their state ``s``. No XLA program runs here: in a fresh process the
    dataset costs no tracing and no compilation-cache load.
    """
    ys = np.asarray(ys, dtype=float)
    lam = ys if balanced else np.prod(ys, axis=-2)
    K = lam.shape[-1]
    m = _margins_host(lam, group)
    if loss == "ce":
        data, margin = _ce_loss_margin_host(m)
    else:
        data, margin = np.sum((lam - 1.0) ** 2, axis=-1) / (2 * K), np.min(m[..., 1:], axis=-1)
    if balanced:
        s = _balanced_s(lam, factors) if store_s else None
        # sum_l ||s_l||^2 = N sum_i |lam_i|^(2/N)
        penalty = factors * np.sum(np.abs(lam) ** (2.0 / factors), axis=-1) if weight_decay else 0.0
    else:
        s = ys
        penalty = np.sum(ys**2, axis=(-2, -1))
    mags = np.abs(lam)
    mags[..., 0] = 0.0
    mags.sort(axis=-1)
    sigma = mags[..., ::-1]
    top = sigma[..., :1]
    rank = np.sum((sigma > rank_rtol * top) & (sigma > RANK_ATOL), axis=-1)
    return dict(
        lam=lam,
        s=s,
        sigma=sigma,
        loss=data,
        objective=data + 0.5 * weight_decay * penalty,
        margin=margin,
        rank=rank,
    )


def factor_values(ds: xr.Dataset) -> xr.DataArray:
    r"""The factor singular values $s$ (..., time, factor, mode) of a :func:`simulate` dataset.

    Returns ``ds["s"]`` when the dataset holds it (unbalanced starts, or
    ``store_s=True``); for a balanced run without it, the balanced factors
    $s_{l,i} = |\lambda_i|^{1/N}$ for $l < N - 1$ and
    $s_{N-1,i} = \operatorname{sign}(\lambda_i)|\lambda_i|^{1/N}$ (the sign
    on the last factor, N = L + 1 factors, ``ds.attrs["factors"]``), exactly
    what ``store_s=True`` stores.
    """
    if not isinstance(ds, xr.Dataset):
        raise TypeError(f"ds must be an xarray.Dataset from svflow.simulate; got {type(ds).__name__}.")
    if D.S in ds:
        return ds[D.S]
    if D.LAM not in ds or "factors" not in ds.attrs:
        raise ValueError(
            f"ds has no {D.S!r} variable and no {D.LAM!r} with a 'factors' attr: pass a dataset "
            "from svflow.simulate."
        )
    N = int(ds.attrs["factors"])
    lam = ds[D.LAM]
    s = _balanced_s(lam.values, N)
    dims = lam.dims[:-1] + (D.FACTOR, lam.dims[-1])
    return xr.DataArray(
        s,
        dims=dims,
        coords={**{k: v for k, v in lam.coords.items()}, D.FACTOR: np.arange(N)},
        name=D.S,
        attrs=D.attrs(D.S),
    )


@eqx.filter_jit
def _finite_at_start(field, y0s):
    return jnp.all(jnp.isfinite(jax.vmap(lambda y: field(0.0, y, None))(y0s)))


FINITE_BOUND = 1e100
r"""Balanced cross-entropy starts with every $|\lambda_i(0)| \le$ ``FINITE_BOUND`` (and
$wd \le$ ``FINITE_BOUND``) have a finite field at the start, so :func:`_field_finite` needs no
evaluation for them: the margins are at most $2\max_i|\lambda_i|$, the softmax of finite
margins is finite ($0 \le 1 - \mu_i \le 2$), $|\lambda_i|^{2-2/N} \le 10^{200}$ and
$N\,wd\,|\lambda_i| \le N\,10^{200}$."""


def _field_finite(field: ReducedField, y0s: np.ndarray) -> bool:
    """Whether ``field`` is finite at every start (B, ...): by the bound of :data:`FINITE_BOUND`
    for balanced cross-entropy starts within it, else by evaluating the field (compiled)."""
    if (
        field.balanced
        and field.loss == "ce"
        and float(field.weight_decay) <= FINITE_BOUND
        and np.max(np.abs(y0s)) <= FINITE_BOUND
    ):
        return True
    return bool(_finite_at_start(field, jnp.asarray(y0s)))


def _array_starts(
    flat: np.ndarray, classes: int, depth: int, loss: str, group: Group
) -> tuple[np.ndarray, bool]:
    """Check a stack of B starts, (B, K) lambda(0) or (B, N, K) s(0), at once; return (y0s, balanced)."""
    N = depth + 1
    if flat.shape[1:] == (classes,):
        y0s, balanced = flat.copy(), True
        if loss == "ce":
            y0s[:, 0] = 0.0  # mode 0 shifts every logit equally: no effect on CE
        lam = y0s
    elif flat.shape[1:] == (N, classes):
        y0s, balanced = flat, False
        with np.errstate(over="ignore", invalid="ignore"):
            lam = np.prod(flat, axis=1)
    else:
        raise ValueError(
            f"each start of init must be lambda(0) of shape (K,) = ({classes},) or s(0) of shape "
            f"(N, K) = ({N}, {classes}) for classes={classes}, depth={depth} (N = depth + 1 "
            f"factors); got starts of shape {flat.shape[1:]}."
        )
    if not np.all(np.isfinite(flat)):
        raise ValueError("init contains non-finite values (NaN or inf); pass finite numbers.")
    if not np.all(np.isfinite(lam)):
        raise ValueError(
            "init's factors are finite but their product lambda(0) overflows (non-finite); pass smaller s(0)."
        )
    if loss == "ce":
        check_pairs(y0s, group, "init")
    return y0s, balanced


def _as_starts(init, classes: int, depth: int, loss: str, batch_dims, group: Group) -> tuple:
    """Read ``init`` as one start or a batch.

    Returns ``(y0s, balanced, description, dims, coords, batch_shape)`` with
    ``y0s`` of shape (B, K) (balanced: lambda(0)) or (B, N, K) (s(0)).
    """
    if isinstance(init, xr.DataArray):
        state_dims = tuple(d for d in init.dims if d in (D.FACTOR, D.MODE))
        if state_dims not in ((D.MODE,), (D.FACTOR, D.MODE)):
            raise ValueError(
                f"init as a DataArray needs a {D.MODE!r} dim (lambda(0)) or {D.FACTOR!r} and "
                f"{D.MODE!r} dims (s(0)); got dims {init.dims}."
            )
        if batch_dims is not None:
            raise ValueError("batch_dims is only for plain arrays: a DataArray names its own dims.")
        dims = tuple(d for d in init.dims if d not in state_dims)
        arr = np.asarray(init.transpose(*dims, *state_dims).values, dtype=float)
        batch = arr.shape[: len(dims)]
        coords = {d: init.coords[d] for d in dims if d in init.coords}
        y0s, balanced = _array_starts(
            arr.reshape((-1,) + arr.shape[len(dims) :]), classes, depth, loss, group
        )
        desc = f"user batch of {y0s.shape[0]} starts over {list(dims)}"
        return y0s, balanced, desc, dims, coords, batch
    if isinstance(init, (list, tuple)) and init and all(isinstance(x, Start) for x in init):
        dims = ("start",) if batch_dims is None else tuple(np.atleast_1d(batch_dims).tolist())
        if len(dims) != 1:
            raise ValueError(f"a list of Start objects has one batch dim; got batch_dims={batch_dims!r}.")
        starts = [as_start(x, classes, depth, loss, group) for x in init]
        balanced = all(x.balanced for x in starts)
        y0s = np.stack([np.array(x.lam0 if balanced else x.s0) for x in starts])
        if balanced and loss == "ce":
            y0s[:, 0] = 0.0
        desc = "; ".join(x.description for x in starts)
        return y0s, balanced, desc, dims, {}, (len(starts),)
    if batch_dims is None or isinstance(init, Start):
        if batch_dims is not None:
            raise ValueError("batch_dims needs an array of starts, not a single Start.")
        start = as_start(init, classes, depth, loss, group)
        y0 = np.array(start.lam0 if start.balanced else start.s0)[None]
        if start.balanced and loss == "ce":
            y0[:, 0] = 0.0
        return y0, start.balanced, start.description, (), {}, ()
    dims = (batch_dims,) if isinstance(batch_dims, str) else tuple(batch_dims)
    if not dims or len(set(dims)) != len(dims) or not all(isinstance(d, str) for d in dims):
        raise ValueError(f"batch_dims must be distinct dim names (strings); got {batch_dims!r}.")
    arr = init_array(init)
    nb = len(dims)
    if arr.ndim < nb + 1 or 0 in arr.shape[:nb]:
        raise ValueError(
            f"init has shape {arr.shape}: batch_dims={dims} need that many non-empty leading "
            f"axes followed by lambda(0) (K,) or s(0) (N, K) = ({depth + 1}, {classes})."
        )
    batch = arr.shape[:nb]
    y0s, balanced = _array_starts(arr.reshape((-1,) + arr.shape[nb:]), classes, depth, loss, group)
    return y0s, balanced, f"user batch of {y0s.shape[0]} starts over {list(dims)}", dims, {}, batch


def default_t_end(weight_decay: float) -> float:
    r"""Default horizon of :func:`simulate`: 1e8, or $\min(10^8, 100/wd)$ with weight decay."""
    return 1e8 if weight_decay <= 0 else min(1e8, 100.0 / weight_decay)


def _save_times(loss: str, weight_decay: float, t_end, times, num_times: int, log_t_end):
    """The save times ``ts``, the double-log times ``taus`` (or None) and the checked ``log_t_end``."""
    if log_t_end is not None:
        if loss != "ce" or weight_decay != 0:
            raise ValueError(
                "log_t_end (double-log time, any horizon) needs loss='ce' and "
                f"weight_decay=0; got loss={loss!r}, weight_decay={weight_decay!r}."
            )
        if times is not None or t_end is not None:
            raise ValueError("pass log_t_end= alone (it replaces t_end= and times=).")
        log_t_end = check_float("log_t_end", log_t_end, minimum=0.0, strict_min=True)
        taus = np.concatenate([[0.0], np.geomspace(min(0.1, log_t_end / 1e3), log_t_end, num_times - 1)])
        with np.errstate(over="ignore"):
            return np.expm1(taus), taus, log_t_end
    if times is None:
        if t_end is None:
            t_end = default_t_end(weight_decay)
        return log_times(check_float("t_end", t_end, minimum=0.0, strict_min=True), num_times), None, None
    if t_end is not None:
        raise ValueError("pass either t_end= or times=, not both (times sets the final time).")
    ts = check_times(times)
    if ts[-1] == 0.0:
        raise ValueError(
            "times must hold a save time after t = 0 (the run starts at t = 0 and ends at "
            f"times[-1]); got times = {ts.tolist()}. Pass e.g. times=[0, 1, 10]."
        )
    return ts, None, None


def _uses_log(field: ReducedField, y0s: np.ndarray) -> np.ndarray:
    """Which starts run in u = log(lambda).

    Balanced cross-entropy without weight decay with every lambda_i(0) > 0 (i >= 1).
    """
    plain = field.balanced and field.loss == "ce" and field.variable == "lam"
    if not (plain and float(field.weight_decay) == 0.0):
        return np.zeros(y0s.shape[0], bool)
    return np.all(y0s[:, 1:] > 0, axis=1)


def _solve_log_or_lam(field: ReducedField, y0s, ts, config: Solver, progress: bool):
    r"""``(ys in lambda, num_steps, backends)``: starts with every $\lambda_i(0) > 0$ ($i \ge 1$) in
    $u = \log\lambda$ (``backends``: the batch backends that ran, joined by ``+``).

    Under the balanced cross-entropy law the sign of every $\lambda_i$ is
    conserved (the law is Lipschitz in $\lambda$ for N >= 2 and vanishes at
    0, so no mode reaches or crosses 0 in finite time) and $\lambda_0 = 0$;
    a start with some $\lambda_i(0) \le 0$, $i \ge 1$, runs in $\lambda$
    itself (exact for zero and negative modes). Either way the queue order
    uses $-\log\|\lambda(0)\|$.

    **Tolerance in u.** An error $\delta$ of $u$ is a relative error $\delta$
    of $\lambda$, so the controller holds the local error of $u_i$ below
    $\mathrm{rtol} + \mathrm{atol}\,|u_i|$: ``rtol`` is the local relative
    error of every $\lambda_i$, and ``atol`` (no mode reaches 0, so no
    absolute floor is needed) only loosens it where $|\log\lambda_i|$ is
    large; with the defaults (1e-8, 1e-10, $|u| \lesssim 20$) by at most 20 %. With
    weight decay the runs stay in $\lambda$: there the steps are bound by
    stiffness, not accuracy, and u at the same tolerance measured 5x less
    accurate (benchmarks/RESULTS.md).
    """
    log = _uses_log(field, y0s)
    cost = -np.log(np.linalg.norm(y0s.reshape(y0s.shape[0], -1), axis=1) + 1e-300)
    t_end = float(ts[-1])
    ys: np.ndarray | None = None
    num_steps = np.empty(y0s.shape[0], dtype=np.int64)
    used: set[str] = set()
    for use_log in (True, False):
        sel = np.flatnonzero(log == use_log)
        if sel.size == 0:
            continue
        f, y0 = field, y0s[sel]
        cfg = config
        if use_log:
            f = dataclasses.replace(field, variable="log")
            y0 = np.log(np.where(np.arange(y0.shape[1]) == 0, 1.0, y0))
            cfg = dataclasses.replace(config, rtol=config.atol, atol=config.rtol)
        if progress:
            y, result, steps = solve(f, jnp.asarray(y0[0]), jnp.asarray(ts), None, cfg, True)
            y = np.asarray(jax.block_until_ready(y))[None]
            check_solution(y, result, steps, config, t_end)
            steps = np.asarray([int(steps)])
            used.add("jax")
        else:
            sol = solve_batch(f, y0, ts, cfg, cost=cost[sel])
            check_solution(sol.ys, sol.result, sol.num_steps, config, t_end)
            y, steps = sol.ys, sol.num_steps
            used.add(sol.backend)
        if use_log:
            y = np.asarray(y, dtype=float)
            if not y.flags.writeable:  # a view of a device array
                y = y.copy()
            with np.errstate(over="ignore"):
                np.exp(y, out=y)  # in place: the (B, T, K) states are the largest array of the call
            y[..., 0] = 0.0
            if not np.all(np.isfinite(y)):
                raise IntegrationError(
                    f"lambda = exp(u) overflowed on the way to t = {t_end:g}: the run blew up. "
                    "Use a smaller init scale or a shorter t_end."
                )
        if sel.size == y0s.shape[0]:  # every start ran on this route: its states are the result
            ys = np.asarray(y, dtype=float)
            if not ys.flags.writeable:  # the dataset owns writable arrays, as numpy's own
                ys = ys.copy()
        else:
            if ys is None:
                ys = np.empty((y0s.shape[0], len(ts)) + y0s.shape[1:])
            ys[sel] = y
        num_steps[sel] = steps
    assert ys is not None
    return ys, num_steps, "+".join(sorted(used))


def _integrate_starts(field: ReducedField, y0s, ts, taus, config: Solver, progress: bool):
    """Integrate every start: ``(ys, num_steps, wall_time_s, batch backends)``, errors that name the fix."""
    if not _field_finite(field, y0s):
        raise IntegrationError(
            "the vector field is non-finite at the start (the gradient overflows): the "
            "run would blow up at once. Pass a smaller init."
        )
    t_end, weight_decay = float(ts[-1]), float(field.weight_decay)
    tic = _time.perf_counter()
    try:
        if taus is not None:
            if progress:
                raise ValueError("progress=True is not available with log_t_end.")
            grp = field.group
            sol = solve_batch_loglog(CETauField(field.factors, field.balanced, grp), y0s, taus, config)
            where = f"double-log run to tau = log(1 + t) = {taus[-1]:g}: "
            check_solution(sol.ys, sol.result, sol.num_steps, config, t_end, where)
            ys, num_steps, backends = sol.ys, sol.num_steps, sol.backend
        else:
            ys, num_steps, backends = _solve_log_or_lam(field, y0s, ts, config, progress)
    except IntegrationError as e:
        if weight_decay > 0 and t_end > default_t_end(weight_decay):
            raise IntegrationError(
                f"the integration to t = {t_end:g} failed with weight_decay = {weight_decay:g}: "
                f"the flow settles by t ~ {10 / weight_decay:g} and the explicit solver turns "
                f"stiff after that, so more steps do not help. Pass t_end <= "
                f"{default_t_end(weight_decay):g} (the default when t_end is not given). "
                f"(Solver: {e})"
            ) from None
        raise
    return ys, num_steps, _time.perf_counter() - tic, backends


def _simulate_dataset(ys, num_steps, wall: float, ts, taus, run: dict, dims, coords, batch) -> xr.Dataset:
    """The dataset of :func:`simulate`: one start, or the batch dims leading every variable."""
    grp, config, N, weight_decay = run["group"], run["config"], run["depth"] + 1, float(run["weight_decay"])
    out = _outputs(ys, run["balanced"], N, run["loss"], weight_decay, run["rank_rtol"], grp, run["store_s"])
    out = {k: v for k, v in out.items() if v is not None}
    attrs = {
        "title": "svflow reduced singular-value ODE",
        "engine": "reduced",
        "classes": int(run["classes"]),
        "depth": int(run["depth"]),
        "factors": int(N),
        "samples_per_class": 1,
        "loss_name": run["loss"],
        "weight_decay": weight_decay,
        "t_end": float(ts[-1]),
        "init": run["init"],
        "group": grp.label,
        "balanced_path": bool(run["balanced"]),
        "store_s": bool(run["store_s"]),
        "log_variable_starts": int(run["log_starts"]),
        "batch_backend": run["batch_backend"],
        "rank_rtol": float(run["rank_rtol"]),
        **config.as_attrs(),
        "num_steps": int(np.sum(num_steps)),
        "wall_time_s": wall,
        "conventions": "depth L = number of weight matrices, N = L + 1 factors; "
        "t = steps x step size; mean-reduced loss; lambda_i = prod_l s_{l,i}",
    }
    ds = build_dataset(ts, attrs=attrs, **{k: v[0] for k, v in out.items()})
    if taus is not None:
        ds = ds.assign_coords(log_t=variable(D.TIME, taus, D.attrs("log_t")))
        ds.attrs.update(
            log_t_end=float(run["log_t_end"]), time_variable="sigma = log(1 + tau), tau = log(1 + t)"
        )
    modes = {name: variable(*spec) for name, spec in grp.mode_coords().items()}
    if not dims:
        return ds.assign_coords(modes)
    variables = {
        name: variable(dims + var.dims, out[name].reshape(batch + out[name].shape[1:]), var.attrs)
        for name, var in ds.data_vars.items()
    }
    variables["num_steps"] = variable(dims, num_steps.reshape(batch), D.attrs("num_steps"))
    out_ds = xr.Dataset(variables, coords={**dict(ds.coords), **coords}, attrs=ds.attrs)
    return out_ds.assign_coords(modes)


SIMULATE_SOLVER = Solver(rtol=1e-8, atol=1e-10, max_steps=200_000)
"""Default solver of :func:`simulate`: tight tolerances, since the dataset is the
whole trajectory (float64 holds about 16 digits)."""


@computes
@takes_solver
def simulate(
    classes: int,
    depth: int,
    *,
    init,
    loss: str = "ce",
    weight_decay: float = 0.0,
    t_end: float | None = None,
    times=None,
    num_times: int = 161,
    solver: Solver = SIMULATE_SOLVER,
    progress: bool = False,
    rank_rtol: float = RANK_RTOL,
    batch_dims=None,
    group=None,
    log_t_end: float | None = None,
    store_s: bool | None = None,
) -> xr.Dataset:
    r"""Integrate the reduced singular-value ODE from one or many spectral starts.

    Gradient flow of the mean loss of the deep UFM (K classes, L weight
    matrices, N = L + 1 factors, n = 1) from factors diagonal in the character
    frame U of a finite abelian group of order K (:func:`svflow.spectral_basis`):

    $$\frac{ds_{l,i}}{dt} = -G_i \prod_{j\ne l}s_{j,i} - wd\,s_{l,i},$$

    $G_i = (\mu_i - 1)/K$ (cross-entropy; $\mu_i$ the eigenvalues of the column
    softmax in the frame U) or $(\lambda_i - 1)/K$ (squared loss, Y = I);
    balanced starts follow $\dot\lambda_i = -N G_i|\lambda_i|^{2-2/N} - N\,wd\,\lambda_i$.
    t = steps x step size; the solver runs in $\tau = \log(1 + t)$.

    **Starts.** A start is $H = V_1\operatorname{diag}(s_0)U^\top$, ...,
    $W_L = U\operatorname{diag}(s_L)V_L^\top$ in the real character basis U of a
    finite abelian group of order K (:func:`svflow.spectral_basis`):
    Walsh-Hadamard ($(\mathbb Z_2)^m$), cyclic ($\mathbb Z_K$) or a product of
    cyclic groups. Under cross-entropy the two modes of a pair must start equal.

    **Many starts.** ``init`` may hold a batch of starts: an array whose leading
    dims are named by ``batch_dims`` (e.g. shape (B, K) with
    ``batch_dims="start"``), an ``xarray.DataArray`` with a ``mode`` dim (and a
    ``factor`` dim for s(0)) whose other dims are batch dims (their coords are
    kept), or a list of :class:`Start`. All starts run through one compiled
    refill loop (finished trajectories hand their lane to the next start);
    each trajectory is integrated exactly as it would be alone (up to the last
    bits). The batch dims lead every variable of the dataset. All starts of a
    batch are balanced, or all are not.

    **Horizons.** ``t_end`` reaches 1e8 and beyond. Its default is 1e8 without
    weight decay; with $wd > 0$ the flow settles to a stationary point by
    $t \sim 10/wd$ (the decay term alone relaxes at rate $N\,wd$) and an
    explicit solver turns stiff after that, so the default is $\min(10^8, 100/wd)$.
    ``log_t_end`` reaches any horizon: the run goes to $\tau = \log(1 + t)$ =
    ``log_t_end`` (e.g. 1e4, t = e^10000) in double-log time with the log-domain
    field (cross-entropy without weight decay only),
    saving ``num_times`` times log-spaced in $\tau$. The dataset then has the
    coordinate ``log_t`` ($\tau$) along ``time``; ``time`` itself is inf beyond
    t ~ 1e308.

    Args:
        classes, depth: K >= 2 and L >= 1.
        init: $\lambda(0)$ (K,) (balanced; $\lambda_0$ set to 0 under
            cross-entropy), $s(0)$ (N, K), a :class:`Start`, or a batch of these.
        loss: ``"ce"`` or ``"squared"``; weight_decay: $wd \ge 0$ on every factor.
        t_end, times, num_times: final time (default $\min(10^8, 100/wd)$), or
            explicit increasing save times $\ge 0$; else ``num_times`` times (0,
            then log-spaced). Every run starts at t = 0; the dataset holds exactly
            the save times, so the start is in it only when ``times[0] == 0``.
            ``num_times=2`` keeps only the start and the end state (what basin
            maps and outcomes need): the solver takes the same steps as with
            161 saves, so the end state is the same, and no dense output in
            between is computed or stored.
        solver: a :class:`svflow.Solver` (default :data:`SIMULATE_SOLVER`:
            rtol 1e-8, atol 1e-10, 200 000 steps, Tsit5, PID controller).
            Balanced cross-entropy starts without weight decay whose modes
            $i \ge 1$ all start positive integrate $u = \log\lambda$
            (one exponential per mode, no power; the sign of each mode is
            conserved); there the local error of $u_i$ (the *relative*
            error of $\lambda_i$) is held below
            $\mathrm{rtol} + \mathrm{atol}\,|u_i|$. Other starts integrate $\lambda$ or $s$ with the usual
            $\mathrm{atol} + \mathrm{rtol}\,|y|$. Attr ``log_variable_starts``
            counts the starts run in $u$. On a CPU the $u$ runs go through the
            compiled CPU kernel (numba; the same Tsit5 steps and controller as
            the JAX engine, ``solver.backend`` chooses); attr ``batch_backend``
            names the backend(s) that ran (``"numba"``, ``"jax"`` or ``"jax+numba"``).
        progress: a progress bar in log(1 + t) (single start only).
        rank_rtol: threshold of the numerical rank.
        batch_dims: names of the leading batch dims of an array ``init``.
        group: a :class:`svflow.Group` or its spec (``"walsh"``, ``"cyclic"``, a
            tuple of cyclic orders); None: the group of a :class:`Start`, else
            Walsh for K = 2^m, cyclic otherwise.
        log_t_end: integrate to $\tau = \log(1 + t)$ = ``log_t_end`` in double-log
            time (cross-entropy without weight decay; overrides ``t_end``/``times``).
        store_s: store the factor values ``s`` (time, factor, mode). Default
            (None): only for unbalanced starts (s(0) given; there ``s`` is the
            integrated state). A balanced run's factors are determined by
            ``lam`` ($|s_{l,i}| = |\lambda_i|^{1/N}$, the sign on the last
            factor): pass ``store_s=True`` to store them too (N times the size
            of ``lam``), or get them afterwards with :func:`svflow.factor_values`.

    Returns:
        An ``xarray.Dataset`` with dims ``time``, ``mode``, ``factor``, ``sv``
        (the common layout of both engines; ``mode`` has the group's ``frequency``,
        ``pair`` and ``part`` coordinates), preceded by any batch dims (then
        ``num_steps`` is a variable over them); attrs: every parameter and provenance.

    Raises:
        ValueError: bad input (the message names the fix).
        IntegrationError: the solver failed (message says what to change).
    """
    grp = start_group(init, classes, group)
    check_depth(depth)
    check_loss(loss)
    weight_decay = check_float("weight_decay", weight_decay, minimum=0.0)
    rank_rtol = check_fraction("rank_rtol", rank_rtol)
    num_times = check_int("num_times", num_times, minimum=2)
    ts, taus, log_t_end = _save_times(loss, weight_decay, t_end, times, num_times, log_t_end)
    config = check_solver(solver)
    y0s, balanced, description, dims, coords, batch = _as_starts(init, classes, depth, loss, batch_dims, grp)
    if store_s is not None and not isinstance(store_s, (bool, np.bool_)):
        raise TypeError(f"store_s must be True, False or None; got {store_s!r}.")
    if store_s is False and not balanced:
        raise ValueError(
            "store_s=False drops the factors of a balanced run; an unbalanced start (s(0) given) "
            "integrates s itself, which is always stored. Pass store_s=None or True."
        )
    if progress and dims:
        raise ValueError("progress=True shows one trajectory's progress: pass a single start.")
    # device_put, not jnp.asarray: a transfer, no XLA program (none is built on the CPU kernel's path)
    field = ReducedField(jax.device_put(np.float64(weight_decay)), loss, depth + 1, balanced, group=grp)
    ys, num_steps, wall, backends = _integrate_starts(field, y0s, ts, taus, config, progress)
    run = dict(classes=classes, depth=depth, loss=loss, weight_decay=weight_decay, init=description)
    run.update(balanced=balanced, rank_rtol=rank_rtol, group=grp, config=config, log_t_end=log_t_end)
    run.update(store_s=(not balanced) if store_s is None else store_s, batch_backend=backends)
    run.update(log_starts=0 if taus is not None else int(np.sum(_uses_log(field, y0s))))
    return _simulate_dataset(ys, num_steps, wall, ts, taus, run, dims, coords, batch)
