r"""Outcomes of random starts: the full-parameter flow followed in double-log time.

For a spectral start the $t \to \infty$ outcome is certified by the reduced
limit map (:func:`svflow.outcome`). A random start does not reduce, so
:func:`flow_outcome` follows every parameter (:func:`svflow.flow`, double-log
time $\sigma = \log(1 + \tau)$, $\tau = \log(1 + t)$) to a horizon
$\tau_{\rm end}$ and reads the limit direction of the centred logits off the
late **growth exponents** of their singular values $s_1 \ge s_2 \ge \dots$:

$$p_i = \frac{\Delta \log s_i}{\Delta \log \tau},\qquad
  e_i = \frac{\Delta \log q_i}{\Delta \log \tau} = p_i - p_1,\qquad q_i = s_i / s_1,$$

over the last two half-decades of $\tau$ (window A: $[\tau_{\rm end}/10,
\tau_{\rm end}/\sqrt{10}]$, window B: $[\tau_{\rm end}/\sqrt{10}, \tau_{\rm end}]$).
Homogeneity (Lyu & Li 2020) makes $s_1$ grow like $\tau$ ($p_1 \to 1$), the
modes of the limit's support keep a positive ratio ($e_i \to 0$), and the others
vanish in ratio ($q_i \to 0$). The rule, per mode $i \ge 2$ of the K - 1
that can carry norm:

- **on** (in the support): $q_i \ge$ ``q_on`` and $e_i \ge -$``e_flat`` in
  window B (flat or rising: not on its way out);
- **off**: $q_i \le$ ``q_off`` and $e_i \le -$``e_decay`` in both windows;
- anything else is undecided, and so is the start.

Decided starts get ``outcome`` = the number r of modes on (0 when r = K - 1:
neural collapse). This is a finite-horizon rule: it does not prove the limit
(a mode falling at a steady power of $\tau$ could in principle turn round
later; the late phase of a random start is not known to be monotone); it
says the start looks settled on two consecutive half-decades of $\tau$, and
its thresholds were checked against independent integrations ten times
further (tests/test_flow_outcome.py, docs: theory/random-starts.md).

A KKT residual of the limit point: with $\hat\theta = \theta/\gamma^{1/N}$
(smallest margin 1), the pairwise margins $q_{cj} = Z_{y_j j} - Z_{cj}$ and
their gradients, ``kkt_residual`` $= \min_{\lambda \ge 0}\|\hat\theta -
\sum\lambda_{cj}\nabla q_{cj}\| / \|\hat\theta\|$ (stationarity of
$\min\|\theta\|^2/2$ s.t. $q \ge 1$; non-negative least squares) and
``kkt_slackness`` $= \sum\lambda_{cj}(q_{cj} - 1)/\|\hat\theta\|^2$.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import xarray as xr
from scipy.optimize import nnls

from .._checks import check_float, check_int
from .._integrate import Solver
from .._precision import computes
from .flow import _as_models, flow
from .model import DeepUFM, forward

__all__ = ["flow_outcome", "kkt_residual"]


def _pair_margins(factors, activation: str, labels):
    Z = forward(factors, activation)
    K = Z.shape[0]
    correct = Z[labels, jnp.arange(Z.shape[1])]
    diffs = correct[None, :] - Z  # (K, M); the target rows are 0
    mask = jnp.arange(K)[:, None] != labels[None, :]
    return diffs[mask]


@computes
def kkt_residual(model: DeepUFM) -> tuple[float, float]:
    r"""``(stationarity, slackness)`` of ``model``'s parameters as a max-margin KKT point.

    Definition (docs: theory/random-starts.md): $\hat\theta = \theta/\gamma^{1/N}$, NNLS multipliers
    over the pairwise margins. Both are 0 at an exact KKT point of
    $\min\|\theta\|^2/2$ s.t. all margins $\ge 1$; ``(inf, inf)`` if the
    margin is not positive.
    """
    labels = jnp.repeat(jnp.arange(model.classes), model.samples_per_class)
    factors = tuple(jnp.asarray(A, float) for A in model.factors)
    gamma = float(jnp.min(_pair_margins(factors, model.activation, labels)))
    if not gamma > 0:
        return float("inf"), float("inf")
    c = gamma ** (-1.0 / len(factors))
    theta = tuple(c * A for A in factors)
    q = np.asarray(_pair_margins(theta, model.activation, labels))
    J = jax.jacrev(_pair_margins)(theta, model.activation, labels)
    Jm = np.concatenate([np.asarray(j).reshape(q.size, -1) for j in J], axis=1)
    v = np.concatenate([np.asarray(A).ravel() for A in theta])
    lam, res = nnls(Jm.T, v)
    norm2 = float(v @ v)
    return float(res / np.sqrt(norm2)), float(lam @ (q - 1.0) / norm2)


def _window_exponents(log_s, log_tau, lo, hi):
    a, b = np.argmin(np.abs(log_tau - lo)), np.argmin(np.abs(log_tau - hi))
    return (log_s[..., b, :] - log_s[..., a, :]) / (log_tau[b] - log_tau[a])


@computes
def flow_outcome(
    model: DeepUFM | list[DeepUFM],
    *,
    log_t_end: float = 1000.0,
    num_times: int = 81,
    q_on: float = 0.2,
    q_off: float = 0.1,
    e_flat: float = 0.1,
    e_decay: float = 0.2,
    rtol: float = 1e-7,
    atol: float = 1e-9,
    max_steps: int = 100_000,
) -> xr.Dataset:
    r"""The $t \to \infty$ outcome of the full-parameter flow from a random start (or a list).

    Follows :func:`svflow.flow` in double-log time to $\tau = \log(1 + t)$ =
    ``log_t_end`` and decides the rank of the limit direction of the centred
    logits from the growth exponents of their singular values over the last
    decade of $\tau$ (rule and caveats: docs, theory/random-starts.md).
    Cross-entropy without weight decay only.

    Args:
        model: a :class:`DeepUFM` or a list of them (equal shapes and settings).
        log_t_end: the horizon $\tau_{\rm end}$ (>= 10).
        num_times: saves, log-spaced in $\tau$.
        q_on, q_off, e_flat, e_decay: the rule's thresholds (on: ratio >= q_on
            and exponent >= -e_flat; off: ratio <= q_off and exponent <= -e_decay
            on both half-decades).
        rtol, atol, max_steps: solver settings of the flow.

    Returns:
        Dataset over ``start`` (absent for one model): ``outcome`` (0 = NC,
        r = rank of the limit direction, -1 = undecided), ``support`` (start, sv)
        bool as int, ``limit`` (start, sv): $q_i = s_i/s_1$ at the horizon,
        ``exponent`` (start, sv): $e_i$ in the last half-decade,
        ``kkt_residual`` and ``kkt_slackness`` (max-margin KKT stationarity and slackness), ``horizon``
        ($\tau$ reached), ``num_steps``; attrs: the thresholds and settings.
    """
    models = _as_models(model)
    single = isinstance(model, DeepUFM)
    log_t_end = check_float("log_t_end", log_t_end, minimum=10.0)
    num_times = check_int("num_times", num_times, minimum=11)
    for name, v in (("q_on", q_on), ("q_off", q_off), ("e_flat", e_flat), ("e_decay", e_decay)):
        check_float(name, v, minimum=0.0, strict_min=True)
    if not q_off < q_on:
        raise ValueError(f"q_off must be below q_on; got q_off={q_off}, q_on={q_on}.")
    ds, finals = flow(
        models,
        log_t_end=log_t_end,
        num_times=num_times,
        solver=Solver(rtol=rtol, atol=atol, max_steps=max_steps),
        return_model=True,
    )
    K = models[0].classes
    s = ds.sigma.values[:, :, : K - 1]  # (B, T, K - 1): the centred logits have rank <= K - 1
    with np.errstate(divide="ignore"):
        log_tau = np.log(ds.log_t.values)
        log_q = np.log(s / s[:, :, :1])
    top = np.log(log_t_end)
    eA = _window_exponents(log_q, log_tau, top - np.log(10.0), top - 0.5 * np.log(10.0))
    eB = _window_exponents(log_q, log_tau, top - 0.5 * np.log(10.0), top)
    q = np.exp(log_q[:, -1])
    on = (q >= q_on) & (eB >= -e_flat)
    off = (q <= q_off) & (eA <= -e_decay) & (eB <= -e_decay)
    on[:, 0] = True
    off[:, 0] = False
    decided = np.all(on | off, axis=1)
    rank = on.sum(axis=1)
    outcome = np.where(decided, np.where(rank == K - 1, 0, rank), -1)
    kkt = np.array([kkt_residual(m) for m in finals])
    sv = np.arange(K - 1)
    out = xr.Dataset(
        {
            "outcome": (("start",), outcome, {"long_name": "0 = NC, r = rank of the limit, -1 = undecided"}),
            "support": (
                ("start", "sv"),
                (on & decided[:, None]).astype(int),
                {"long_name": "mode in the limit's support"},
            ),
            "limit": (("start", "sv"), q, {"long_name": "s_i / s_1 of the centred logits at the horizon"}),
            "exponent": (("start", "sv"), eB, {"long_name": "d log(s_i/s_1) / d log tau, last half-decade"}),
            "kkt_residual": (("start",), kkt[:, 0], {"long_name": "max-margin KKT stationarity residual"}),
            "kkt_slackness": (("start",), kkt[:, 1], {"long_name": "max-margin KKT complementary slackness"}),
            "horizon": (
                ("start",),
                np.full(len(models), float(ds.log_t.values[-1])),
                {"long_name": "tau = log(1 + t) reached"},
            ),
            "num_steps": (
                ("start",),
                np.atleast_1d(ds["num_steps"].values),
                {"long_name": "solver step attempts"},
            ),
        },
        coords={"sv": sv},
        attrs={
            "title": "svflow outcome of the full-parameter flow",
            "criterion": "late growth exponents of the centred-logit singular values in log tau",
            "classes": int(K),
            "depth": int(models[0].depth),
            "width": int(models[0].width),
            "log_t_end": float(log_t_end),
            "q_on": q_on,
            "q_off": q_off,
            "e_flat": e_flat,
            "e_decay": e_decay,
            "rtol": rtol,
            "atol": atol,
            "init": ds.attrs["init"],
        },
    )
    return out.isel(start=0) if single else out
