r"""A real network on real data: a ReLU backbone under a deep linear head.

(docs: scenarios/realdata.md)

The deep UFM treats the features $H$ as free parameters. Here they come from
a real network: a bias-free ReLU MLP backbone $\phi$ (``hidden`` widths, e.g.
two layers of 64) maps an input $x \in \mathbb{R}^D$ to features
$h = \phi(x) \in \mathbb{R}^p$, and a deep linear head of depth $L$ (the
number of its weight matrices) and width $d$ maps them to logits

$$f(x) = W_L W_{L-1} \cdots W_1\, \phi(x),\qquad W_1 \in \mathbb{R}^{d\times p},
\ W_l \in \mathbb{R}^{d\times d},\ W_L \in \mathbb{R}^{K\times d}$$

($L = 1$: one matrix $K \times p$, the width plays no part). The loss is the
mean cross-entropy over the training samples, with no weight decay.

Every layer is bias-free, so $f$ is positively homogeneous of degree
$M = \text{len(hidden)} + L$ in the parameters $\theta$ (all weight matrices):
$f_{c\theta} = c^M f_\theta$ for $c > 0$. The **normalised margin** is

$$\bar\gamma = \frac{\min_i \big(f_{y_i}(x_i) - \max_{c \ne y_i} f_c(x_i)\big)}
{\big(\sum_{\text{all weight matrices}} \|W\|_F^2\big)^{M/2}},$$

invariant under $\theta \to c\,\theta$: the quantity that gradient flow on an
exponential-type loss increases once the data are fitted (Lyu & Li 2020).

Metrics on the training set at log-spaced times (:func:`feature_metrics`):
the singular values and numerical rank of the centred class-mean matrix at
the head's input ($h$, $p \times K$) and output (the logits, $K \times K$),
NC1 at both places, train and test accuracy, the loss and the margins.
"""

from __future__ import annotations

import hashlib
import math
import tempfile
import time as _time
from collections.abc import Sequence
from typing import Any

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import xarray as xr

from .._checks import check_choice, check_float, check_int
from .._full.train import step_grid
from .._integrate import Solver, check_solver, takes_solver
from .._metrics import RANK_RTOL, rank_from_sigma
from .._precision import computes

__all__ = [
    "HeadNet",
    "digits_data",
    "prepare_data",
    "class_mean_sigma",
    "nc1",
    "feature_metrics",
    "train_adam",
    "train_flow",
    "realdata_study",
    "QUICK_SETTING",
    "FULL_SETTING",
]

# The settings of the real-data study (keyword arguments of realdata_study),
# shared by scenarios/realdata.py and the figure ``realdata``.
QUICK_SETTING: dict[str, Any] = dict(
    depths=(1, 3, 6),
    widths=(16, 64),
    seeds=3,
    hidden=(64, 64),
    learning_rate=3e-3,
    steps=1000,
    batch_size=None,
    dtype="float32",
)
FULL_SETTING: dict[str, Any] = dict(
    depths=(1, 2, 3, 4, 5, 6),
    widths=(16, 32, 64, 128),
    seeds=5,
    hidden=(64, 64),
    learning_rate=3e-3,
    steps=3000,
    batch_size=None,
    dtype="float64",
)


# --- data


def _require(module: str, package: str):
    """Import ``module`` or say which extra installs it."""
    import importlib

    try:
        return importlib.import_module(module)
    except ModuleNotFoundError:
        raise ModuleNotFoundError(
            f"the real-data study needs {package}: pip install {package} (or pip install 'svflow[data]')."
        ) from None


def _check_xy(X, y, name: str = "X"):
    """``(X, y)`` as float and int numpy arrays, or a ValueError/TypeError saying what is wrong."""
    try:
        X = np.asarray(X)
        y = np.asarray(y)
    except Exception as err:  # noqa: BLE001 -- any array-conversion failure is a bad input
        raise TypeError(f"{name} and its labels must be array-like; got {type(X).__name__}: {err}") from None
    if X.dtype == object or not (np.issubdtype(X.dtype, np.floating) or np.issubdtype(X.dtype, np.integer)):
        raise TypeError(f"{name} must hold real numbers; got dtype {X.dtype}.")
    if X.ndim != 2:
        raise ValueError(
            f"{name} must be 2-D (samples, features); got shape {X.shape}. "
            "Flatten images first, e.g. X.reshape(len(X), -1)."
        )
    if y.ndim != 1:
        raise ValueError(f"the labels of {name} must be 1-D (samples,); got shape {y.shape}.")
    if len(X) != len(y):
        raise ValueError(f"{name} has {len(X)} samples but its labels have {len(y)}; they must match.")
    if len(X) == 0:
        raise ValueError(f"{name} has no samples.")
    if not np.all(np.isfinite(X)):
        bad = np.argwhere(~np.isfinite(X))[0]
        raise ValueError(
            f"{name} holds {int(np.sum(~np.isfinite(X)))} non-finite values (NaN or inf), "
            f"the first at sample {bad[0]}, feature {bad[1]}; clean or impute them first."
        )
    if not (np.issubdtype(y.dtype, np.integer) or np.issubdtype(y.dtype, np.bool_)):
        if np.issubdtype(y.dtype, np.floating) and np.all(np.isfinite(y)) and np.all(y == np.round(y)):
            y = y.astype(np.int64)
        else:
            raise ValueError(
                f"labels must be integers 0..K-1; got dtype {y.dtype} (first values {y[:5].tolist()})."
            )
    return X.astype(np.float64), y.astype(np.int64)


def prepare_data(X, y, X_test=None, y_test=None, *, test_fraction: float = 0.25, split_seed: int = 0) -> dict:
    r"""Check, split and standardise user data ``(X, y)`` for :func:`realdata_study`.

    Args:
        X: (n, D) real features (images flattened), all finite.
        y: (n,) integer labels 0..K-1, every class present.
        X_test, y_test: a held-out set (same checks, labels within 0..K-1);
            when omitted, a stratified ``test_fraction`` of ``(X, y)`` is held
            out (``sklearn.model_selection.train_test_split``, ``split_seed``).

    Features are standardised with the training set's mean and standard
    deviation (constant features: divided by 1).

    Returns:
        dict with ``X_train`` (n_train, D), ``y_train``, ``X_test``,
        ``y_test`` (numpy float64 / int64), ``classes`` K and
        ``fingerprint`` (SHA-256 of the prepared arrays, recorded by the study
        so a resumed store cannot mix data sets).

    Raises:
        TypeError: features that are not real numbers.
        ValueError: labels not integers in 0..K-1, a class with no sample,
            NaN or inf features, lengths that differ, wrong dimensions.
    """
    X, y = _check_xy(X, y, "X")
    if y.min() < 0:
        raise ValueError(f"labels must be integers 0..K-1; got the label {int(y.min())}.")
    K = int(y.max()) + 1
    if K < 2:
        raise ValueError(f"need at least 2 classes; the labels hold only {sorted(set(y.tolist()))}.")
    counts = np.bincount(y, minlength=K)
    if np.any(counts == 0):
        missing = np.flatnonzero(counts == 0).tolist()
        raise ValueError(
            f"labels must be 0..K-1 with every class present; K = {K} from the largest label, "
            f"but class(es) {missing} have no sample. Relabel the classes to 0..K-1."
        )
    if (X_test is None) != (y_test is None):
        raise ValueError("pass both X_test and y_test, or neither (then a test split is held out).")
    if X_test is None:
        train_test_split = _require("sklearn.model_selection", "scikit-learn").train_test_split

        frac = check_float("test_fraction", test_fraction, minimum=0.0, maximum=1.0, strict_min=True)
        if counts.min() < 2:
            raise ValueError(
                f"class {int(np.argmin(counts))} has a single sample: it cannot be split into "
                "train and test; pass X_test, y_test."
            )
        X_train, X_test, y_train, y_test = train_test_split(
            X, y, test_size=frac, random_state=int(split_seed), stratify=y
        )
    else:
        X_train, y_train = X, y
        X_test, y_test = _check_xy(X_test, y_test, "X_test")
        if X_test.shape[1] != X.shape[1]:
            raise ValueError(f"X_test has {X_test.shape[1]} features but X has {X.shape[1]}.")
        if y_test.min() < 0 or y_test.max() >= K:
            raise ValueError(
                f"test labels must lie in 0..{K - 1} (the classes of y); "
                f"got the range {int(y_test.min())}..{int(y_test.max())}."
            )
    mu = X_train.mean(axis=0)
    sd = X_train.std(axis=0)
    sd = np.where(sd > 0, sd, 1.0)
    X_train = (X_train - mu) / sd
    X_test = (X_test - mu) / sd
    h = hashlib.sha256()
    for a in (X_train, y_train, X_test, y_test):
        h.update(np.ascontiguousarray(a).tobytes())
    return dict(
        X_train=X_train,
        y_train=y_train,
        X_test=X_test,
        y_test=y_test,
        classes=K,
        fingerprint=h.hexdigest(),
    )


def digits_data(*, test_fraction: float = 0.25, split_seed: int = 0) -> dict:
    """The scikit-learn digits (1797 8x8 images, K = 10) through :func:`prepare_data`.

    Offline (shipped with scikit-learn). The default split holds out a
    stratified 25 % (``split_seed = 0``): 1347 training and 450 test images.
    """
    X, y = _require("sklearn.datasets", "scikit-learn").load_digits(return_X_y=True)
    return prepare_data(X, y, test_fraction=test_fraction, split_seed=split_seed)


# --- the model


class HeadNet(eqx.Module):
    r"""A bias-free ReLU MLP backbone followed by a deep linear head.

    ``backbone[i]`` has shape (hidden[i], fan-in); ``head[l]`` is $W_{l+1}$
    (``head[0]``: (d, p), ``head[-1]``: (K, d); for $L = 1$ one (K, p) matrix).
    Inputs are rows: ``model(X)`` maps (n, D) to logits (n, K).
    """

    backbone: tuple
    head: tuple

    @staticmethod
    @computes
    def init(key, inputs: int, classes: int, *, hidden=(64, 64), depth: int = 3, width: int = 64, dtype=None):
        r"""Gaussian init: backbone $\mathcal N(0, 2/\text{fan-in})$ (He, for ReLU), head
        $\mathcal N(0, 1/\text{fan-in})$ (the fan-in scaling of :func:`svflow.random_model`)."""
        dtype = dtype or jnp.float64
        hidden = tuple(int(h) for h in hidden)
        p = hidden[-1] if hidden else inputs
        shapes_b = list(zip(hidden, (inputs,) + hidden[:-1]))
        outs = [classes] if depth == 1 else [width] * (depth - 1) + [classes]
        ins = [p] + outs[:-1]
        keys = jax.random.split(key, len(shapes_b) + depth)
        backbone = tuple(
            jax.random.normal(k, s, dtype) * math.sqrt(2.0 / s[1]) for k, s in zip(keys, shapes_b)
        )
        head = tuple(
            jax.random.normal(k, (o, i), dtype) / math.sqrt(i)
            for k, o, i in zip(keys[len(shapes_b) :], outs, ins)
        )
        return HeadNet(backbone, head)

    @property
    def degree(self) -> int:
        """Homogeneity degree M = number of weight matrices (backbone + head)."""
        return len(self.backbone) + len(self.head)

    def features(self, X):
        """Backbone features h = phi(X), shape (n, p): the head's input."""
        h = X
        for B in self.backbone:
            h = jax.nn.relu(h @ B.T)
        return h

    def head_apply(self, h):
        """The deep linear head on features (n, p) -> logits (n, K)."""
        for W in self.head:
            h = h @ W.T
        return h

    def __call__(self, X):
        return self.head_apply(self.features(X))


def cross_entropy(model: HeadNet, X, y):
    """Mean cross-entropy of the logits ``model(X)`` against integer labels ``y``."""
    Z = model(X)
    return jnp.mean(jax.nn.logsumexp(Z, axis=-1) - jnp.take_along_axis(Z, y[:, None], axis=-1)[:, 0])


# --- metrics


def _class_means(F, y, K: int):
    onehot = jax.nn.one_hot(y, K, dtype=F.dtype)  # (n, K)
    counts = onehot.sum(axis=0)
    return (onehot.T @ F) / jnp.maximum(counts, 1)[:, None]  # (K, q)


@computes
def class_mean_sigma(F, y, classes: int):
    r"""Singular values (decreasing, K of them) of the centred class-mean matrix.

    $M = [\mu_1 - \bar\mu, \dots, \mu_K - \bar\mu]$ with $\mu_c$ the mean of the
    rows of ``F`` (n, q) in class c and $\bar\mu = \frac1K\sum_c \mu_c$ (the mean
    of the class means, the global mean for balanced classes). Rank <= K - 1.
    Zero-padded to K values when q < K.
    """
    mu = _class_means(jnp.asarray(F), jnp.asarray(y), classes)
    Mc = mu - mu.mean(axis=0, keepdims=True)
    s = jnp.linalg.svd(Mc, compute_uv=False)
    return jnp.concatenate([s, jnp.zeros(classes - s.shape[0], s.dtype)]) if s.shape[0] < classes else s


@computes
def nc1(F, y, classes: int):
    r"""NC1 $= \frac1K \operatorname{tr}(\Sigma_W \Sigma_B^{+})$ (Papyan, Han & Donoho 2020).

    $\Sigma_W = \frac1n\sum_i (f_i - \mu_{y_i})(f_i - \mu_{y_i})^\top$ (within-class),
    $\Sigma_B = \frac1K \sum_c (\mu_c - \bar\mu)(\mu_c - \bar\mu)^\top$ (between-class,
    $\bar\mu$ the mean of the class means), $^{+}$ the Moore-Penrose inverse.
    0 exactly when every sample sits on its class mean (within-class collapse).
    ``F``: (n, q) features (rows), ``y``: (n,) labels 0..K-1.
    """
    F, y = jnp.asarray(F), jnp.asarray(y)
    mu = _class_means(F, y, classes)
    Mc = mu - mu.mean(axis=0, keepdims=True)
    W = F - mu[y]
    sw = W.T @ W / F.shape[0]
    sb = Mc.T @ Mc / classes
    return jnp.trace(sw @ jnp.linalg.pinv(sb, hermitian=True)) / classes


def _margins(Z, y):
    correct = jnp.take_along_axis(Z, y[:, None], axis=-1)[:, 0]
    other = jnp.max(jnp.where(jax.nn.one_hot(y, Z.shape[-1], dtype=bool), -jnp.inf, Z), axis=-1)
    return correct - other


@computes
@eqx.filter_jit
def feature_metrics(model: HeadNet, X, y, X_test, y_test, *, classes: int, rank_rtol: float = RANK_RTOL):
    r"""The study's records of one network (pure; jit- and vmap-able).

    Returns a dict: ``train_acc``, ``test_acc`` (fractions), ``loss`` (mean CE
    on the training set), ``sigma_in`` / ``sigma_out`` (K singular values of the
    centred class-mean matrix of the training set at the head's input and
    output, :func:`class_mean_sigma`), ``rank_in`` / ``rank_out`` (their
    numerical ranks, :func:`svflow.rank_from_sigma` at ``rank_rtol``),
    ``nc1_in`` / ``nc1_out`` (:func:`nc1`), ``margin`` (min over training
    samples of $f_y - \max_{c\ne y} f_c$) and ``normalised_margin``
    (``margin`` / $(\sum \|W\|_F^2)^{M/2}$, M = ``model.degree``).
    Computed in float64 whatever the model's dtype.
    """
    model = jax.tree.map(lambda a: jnp.asarray(a, jnp.float64), model)  # records in float64
    X, X_test = jnp.asarray(X, jnp.float64), jnp.asarray(X_test, jnp.float64)
    H = model.features(X)
    Z = model.head_apply(H)
    Zt = model(X_test)
    sig_in = class_mean_sigma(H, y, classes)
    sig_out = class_mean_sigma(Z, y, classes)
    margin = _margins(Z, y).min()
    norm_sq = sum(jnp.sum(W**2) for W in model.backbone + model.head)
    loss = jnp.mean(jax.nn.logsumexp(Z, axis=-1) - jnp.take_along_axis(Z, y[:, None], axis=-1)[:, 0])
    return dict(
        train_acc=jnp.mean(jnp.argmax(Z, axis=-1) == y, dtype=jnp.float64),
        test_acc=jnp.mean(jnp.argmax(Zt, axis=-1) == y_test, dtype=jnp.float64),
        loss=loss,
        sigma_in=sig_in,
        sigma_out=sig_out,
        rank_in=rank_from_sigma(sig_in, rank_rtol),
        rank_out=rank_from_sigma(sig_out, rank_rtol),
        nc1_in=nc1(H, y, classes),
        nc1_out=nc1(Z, y, classes),
        margin=margin,
        normalised_margin=margin / norm_sq ** (model.degree / 2),
    )


# --- training


@computes
def train_adam(
    model: HeadNet,
    data: dict,
    *,
    learning_rate: float = 1e-3,
    steps: int = 3000,
    batch_size: int | None = None,
    num_records: int = 25,
    key=None,
    rank_rtol: float = RANK_RTOL,
):
    r"""Train ``model`` by Adam (optax) on the mean cross-entropy; records at log-spaced steps.

    Full batch when ``batch_size`` is None, else mini-batches of ``batch_size``
    training samples drawn without replacement at every step (``key``).
    The steps between two records run in one ``lax.fori_loop``; the records
    (:func:`feature_metrics`) are taken at ``svflow._full.train.step_grid(steps,
    num_records)`` (0, then log-spaced up to ``steps``). Pure in ``model`` and
    ``key``: ``jax.vmap`` it over seeds (the study does).

    Args:
        model: a :class:`HeadNet`.
        data: :func:`prepare_data` / :func:`digits_data` output.
        learning_rate, steps: Adam's step size and number of steps.

    Returns:
        ``(model, records)``: the trained model and a dict of arrays with a
        leading record axis (see :func:`feature_metrics`).
    """
    steps = check_int("steps", steps, minimum=1)
    lr = check_float("learning_rate", learning_rate, minimum=0.0, strict_min=True)
    num_records = check_int("num_records", num_records, minimum=2)
    n = int(len(data["y_train"]))
    if batch_size is not None:
        batch_size = check_int("batch_size", batch_size, minimum=1, maximum=n)
    key = jax.random.PRNGKey(0) if key is None else key
    dt = model.head[0].dtype
    arrays = (
        jnp.asarray(data["X_train"], dt),
        jnp.asarray(data["y_train"]),
        jnp.asarray(data["X_test"], dt),
        jnp.asarray(data["y_test"]),
    )
    return _adam_run(
        model,
        arrays,
        key,
        lr=lr,
        steps=steps,
        batch_size=batch_size,
        num_records=num_records,
        classes=int(data["classes"]),
        rank_rtol=float(rank_rtol),
    )


@eqx.filter_jit
def _adam_run(model, arrays, key, *, lr, steps, batch_size, num_records, classes, rank_rtol):
    """The compiled body of :func:`train_adam` (one compile per static setting)."""
    optax = _require("optax", "optax")

    X, y, Xt, yt = arrays
    n = X.shape[0]
    opt = optax.adam(lr)
    grid = step_grid(steps, num_records)

    def loss_at(m, idx):
        if idx is None:
            return cross_entropy(m, X, y)
        return cross_entropy(m, X[idx], y[idx])

    def step(i, carry):
        m, state = carry
        idx = (
            None if batch_size is None else jax.random.permutation(jax.random.fold_in(key, i), n)[:batch_size]
        )
        g = jax.grad(loss_at)(m, idx)
        upd, state = opt.update(g, state, m)
        return optax.apply_updates(m, upd), state

    def record(m):
        return feature_metrics(m, X, y, Xt, yt, classes=classes, rank_rtol=rank_rtol)

    def chunk(carry, bounds):
        start, count = bounds
        carry = jax.lax.fori_loop(start, start + count, step, carry)
        return carry, record(carry[0])

    carry = (model, opt.init(model))
    bounds = (jnp.asarray(grid[:-1]), jnp.asarray(np.diff(grid)))
    first = record(model)
    (model, _), recs = jax.lax.scan(chunk, carry, bounds)
    recs = jax.tree.map(lambda a, b: jnp.concatenate([a[None], b]), first, recs)
    return model, recs


class _NetLogits(eqx.Module):
    """The K x M logits of a :class:`HeadNet` on the fixed inputs ``X`` (the flow engine's door)."""

    X: jax.Array

    def __call__(self, model):
        return model(self.X).T


def _flow_solve(model: HeadNet, X, y, ts, config):
    """One flow of the whole network (jit- and vmap-able): ``(unravel, ys (T, P), result, num_steps)``."""
    from .._full.flow import GradientFlowField
    from .._integrate import solve

    leaves, treedef = jax.tree_util.tree_flatten(model)
    from .._full.flow import _Unravel

    unravel = _Unravel(treedef, tuple(tuple(x.shape) for x in leaves))
    y0 = jnp.concatenate([jnp.ravel(jnp.asarray(x, jnp.float64)) for x in leaves])
    field = GradientFlowField(logits=_NetLogits(X), unravel=unravel, labels=y, loss="ce")
    ys, result, num_steps = solve(field, y0, jnp.asarray(ts), None, config)
    return unravel, ys, result, num_steps


REALDATA_SOLVER = Solver(rtol=1e-6, atol=1e-8, max_steps=100_000)
"""Default solver of the full-parameter flow of :func:`train_flow` and
:func:`realdata_study` (``optimizer="flow"``)."""


@computes
@takes_solver
def train_flow(
    model: HeadNet,
    data: dict,
    *,
    t_end: float = 100.0,
    num_records: int = 25,
    solver: Solver = REALDATA_SOLVER,
    rank_rtol: float = RANK_RTOL,
):
    r"""Train ``model`` by the gradient flow of all its weights, $\dot\theta = -\nabla_\theta\,\text{CE}$.

    The full-parameter flow engine of :func:`svflow.flow` (its generic core
    ``GradientFlowField``: any model whose output is the K x M logits, here
    ``model(X_train).T``, with the cross-entropy drive in the log domain),
    integrated by diffrax (Tsit5, ``PIDController(rtol, atol)``, float64) in
    log time $\tau = \log(1 + t)$ to gradient-flow time ``t_end``, records
    (:func:`feature_metrics`) at ``num_records`` log-spaced times from 0.
    The flow of a real network is stiff (its sharpness grows as it trains):
    on the digits, L = 3, d = 16, reaching t = 100 took 6086 solver steps.
    ``solver``: a :class:`svflow.Solver` (default :data:`REALDATA_SOLVER`:
    rtol 1e-6, atol 1e-8, 100 000 steps).

    Returns:
        ``(model, records, stats)``: the model at ``t_end``, the records with a
        leading time axis and ``{"t": save times, "num_steps": solver steps}``.

    Raises:
        IntegrationError: the solver failed (the message says what to change).
    """
    from .._integrate import check_solution, log_times

    t_end = check_float("t_end", t_end, minimum=0.0, strict_min=True)
    num_records = check_int("num_records", num_records, minimum=2)
    config = check_solver(solver)
    ts = log_times(t_end, num_records)
    X = jnp.asarray(data["X_train"], jnp.float64)
    y = jnp.asarray(data["y_train"])
    model = jax.tree.map(lambda a: jnp.asarray(a, jnp.float64), model)
    unravel, ys, result, num_steps = eqx.filter_jit(_flow_solve)(model, X, y, ts, config)
    check_solution(ys, result, num_steps, config, t_end)
    recs = _flow_records(unravel, ys, data, int(data["classes"]), float(rank_rtol))
    return unravel(ys[-1]), recs, {"t": ts, "num_steps": int(num_steps)}


@eqx.filter_jit
def _flow_records(unravel, ys, data, classes, rank_rtol):
    X, y = jnp.asarray(data["X_train"]), jnp.asarray(data["y_train"])
    Xt, yt = jnp.asarray(data["X_test"]), jnp.asarray(data["y_test"])
    return jax.vmap(
        lambda v: feature_metrics(unravel(v), X, y, Xt, yt, classes=classes, rank_rtol=rank_rtol)
    )(ys)


# --- the study

_OUT_DIMS = {"sigma_in": ("sv",), "sigma_out": ("sv",)}
_RECORDED = (
    "train_acc",
    "test_acc",
    "loss",
    "sigma_in",
    "sigma_out",
    "rank_in",
    "rank_out",
    "nc1_in",
    "nc1_out",
    "margin",
    "normalised_margin",
)
_LONG_NAMES = {
    "train_acc": "training accuracy",
    "test_acc": "test accuracy",
    "loss": "mean cross-entropy on the training set",
    "sigma_in": "singular values of the centred class-mean features at the head's input",
    "sigma_out": "singular values of the centred class-mean logits (the head's output)",
    "rank_in": "numerical rank of the centred class-mean features at the head's input",
    "rank_out": "numerical rank of the centred class-mean logits (the head's output)",
    "nc1_in": "NC1 = tr(Sigma_W Sigma_B^+)/K at the head's input",
    "nc1_out": "NC1 = tr(Sigma_W Sigma_B^+)/K at the head's output",
    "margin": "min over training samples of f_y - max_{c != y} f_c",
    "normalised_margin": "margin / (sum of squared Frobenius norms of all weights)^(M/2)",
}


@computes
@takes_solver
def realdata_study(
    X=None,
    y=None,
    X_test=None,
    y_test=None,
    *,
    depths: Sequence[int] = (1, 3, 6),
    widths: Sequence[int] = (16, 64),
    seeds: int = 3,
    hidden: Sequence[int] = (64, 64),
    optimizer: str = "adam",
    learning_rate: float = 1e-3,
    steps: int = 3000,
    batch_size: int | None = None,
    num_records: int = 25,
    t_end: float = 100.0,
    solver: Solver = REALDATA_SOLVER,
    rank_rtol: float = RANK_RTOL,
    dtype: str = "float64",
    store=None,
    base_seed: int = 0,
    test_fraction: float = 0.25,
    split_seed: int = 0,
    ufm_reference: bool = False,
    progress: bool = False,
) -> xr.Dataset:
    r"""Train a ReLU backbone + deep linear head over depth x width x seed on real data.

    Every cell (depth L, width d, seed) initialises a :class:`HeadNet` from the
    sweep's cell key (:func:`svflow.sweep`: static depth and width, the seeds
    vmapped in one chunk) and trains it by ``optimizer``: ``"adam"``
    (:func:`train_adam`, full batch or mini-batches of ``batch_size``) or
    ``"flow"`` (the gradient flow of all weights, :func:`train_flow`, to
    gradient-flow time ``t_end``; float64), recording :func:`feature_metrics`
    at log-spaced times.

    Args:
        X, y: (n, D) features and (n,) labels 0..K-1; default: the
            scikit-learn digits (:func:`digits_data`).
        X_test, y_test: a held-out set; default a stratified ``test_fraction``
            split of ``(X, y)`` (see :func:`prepare_data`).
        depths, widths, seeds: the grid (L = number of head matrices).
        hidden: backbone widths (bias-free ReLU layers).
        learning_rate, steps, batch_size: Adam's settings.
        t_end, solver: the flow's horizon and :class:`svflow.Solver` (default
            :data:`REALDATA_SOLVER`).
        dtype: ``"float64"`` (default) or ``"float32"``: the precision of
            training (twice as fast on a CPU); the records are always float64.
        store: zarr directory of the sweep; an interrupted run resumes from it
            (default: a temporary directory, no resume).
        ufm_reference: also run :func:`svflow.studies.phase_map` (deep UFM,
            random starts, K from the data, the same depths and widths, seeds
            ``base_seed + i``; full-parameter flow) and add its rank at t = 400
            as ``ufm_rank`` and the rank of its t -> infinity limit as
            ``ufm_limit_rank`` (depth, width, seed): the model's prediction
            beside the network's ``rank_out``.

    Returns:
        ``xr.Dataset`` with dims ``depth``, ``width``, ``seed``, ``time``
        (Adam: ``time`` = steps x learning rate, a nominal time, Adam is no
        gradient flow, and the ``step`` coordinate holds the step numbers;
        flow: ``time`` = gradient-flow time t, and the solver's ``num_steps``
        and diffrax ``result`` per cell) and
        ``sv``; variables as in :func:`feature_metrics`; attrs with every
        setting, the data's fingerprint and provenance.
    """
    optimizer = check_choice("optimizer", optimizer, ("adam", "flow"))
    dtype = check_choice("dtype", dtype, ("float64", "float32"))
    if optimizer == "flow" and dtype != "float64":
        raise ValueError(f"the flow integrates in float64; got dtype={dtype!r}.")
    from .._integrate import check_solution, log_times, result_code

    t_end = check_float("t_end", t_end, minimum=0.0, strict_min=True)
    config = check_solver(solver)
    if (X is None) != (y is None):
        raise ValueError("pass both X and y (features and labels), or neither (the digits).")
    data = (
        digits_data(test_fraction=test_fraction, split_seed=split_seed)
        if X is None
        else prepare_data(X, y, X_test, y_test, test_fraction=test_fraction, split_seed=split_seed)
    )
    seeds = check_int("seeds", seeds, minimum=1)
    depths = [check_int("depth", L, minimum=1) for L in depths]
    widths = [check_int("width", w, minimum=1) for w in widths]
    hidden = tuple(check_int("hidden width", h, minimum=1) for h in hidden)
    steps = check_int("steps", steps, minimum=1)
    K, D_in = int(data["classes"]), int(data["X_train"].shape[1])

    def realdata_cell(
        key, depth, width, seed, *, fingerprint, optimizer, learning_rate, steps, batch_size, **kw
    ):
        k_init, k_batch = jax.random.split(key)
        m = HeadNet.init(
            k_init, D_in, K, hidden=hidden, depth=depth, width=width, dtype=jnp.dtype(kw["dtype"])
        )
        if optimizer == "flow":
            X, y = jnp.asarray(data["X_train"]), jnp.asarray(data["y_train"])
            unravel, ys, result, num_steps = _flow_solve(
                m, X, y, log_times(kw["t_end"], kw["num_records"]), config
            )
            recs = _flow_records(unravel, ys, data, K, float(rank_rtol))
            return {**recs, "num_steps": num_steps, "result": jnp.asarray(result_code(result))}
        _, recs = train_adam(
            m,
            data,
            learning_rate=learning_rate,
            steps=steps,
            batch_size=None if batch_size == 0 else batch_size,
            num_records=kw["num_records"],
            key=k_batch,
            rank_rtol=rank_rtol,
        )
        return recs

    params = dict(
        fingerprint=data["fingerprint"],
        optimizer=optimizer,
        t_end=t_end,
        rtol=config.rtol,
        atol=config.atol,
        max_steps=config.max_steps,
        learning_rate=float(learning_rate),
        steps=steps,
        batch_size=0 if batch_size is None else int(batch_size),
        num_records=int(num_records),
        dtype=dtype,
    )
    grid: dict[str, Any] = dict(depth=depths, width=widths, seed=np.arange(seeds))
    outputs = {k: ("time",) + _OUT_DIMS.get(k, ()) for k in _RECORDED}
    if optimizer == "flow":
        outputs.update(num_steps=(), result=())
    tic = _time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="svflow-realdata-") as tmp:
        from .._sweep.runner import sweep

        ds = sweep(
            realdata_cell,
            grid,
            store=store if store is not None else f"{tmp}/realdata.zarr",
            chunk=seeds,
            static=("depth", "width"),
            params=params,
            outputs=outputs,
            base_seed=int(base_seed),
            progress=progress,
        )
        assert isinstance(ds, xr.Dataset)  # a full run (no dry_run, no max_chunks)
        ds = ds.load()
    wall = _time.perf_counter() - tic
    if optimizer == "flow":
        res = ds["result"].values.ravel()
        check_solution(
            np.zeros(res.size), res, ds["num_steps"].values, config, t_end, "realdata_study, flow: "
        )
        ds = ds.assign_coords(
            time=("time", log_times(t_end, num_records), {"long_name": "gradient-flow time t"}),
            sv=np.arange(K),
        )
        ds["num_steps"].attrs["long_name"] = "solver steps of the flow"
        ds["result"].attrs["long_name"] = "diffrax result code (0 = success)"
    else:
        rec_steps = step_grid(steps, num_records)
        ds = ds.assign_coords(
            time=("time", rec_steps * float(learning_rate), {"long_name": "nominal time: Adam steps x lr"}),
            step=("time", rec_steps, {"long_name": "Adam steps"}),
            sv=np.arange(K),
        )
    ds["depth"].attrs["long_name"] = "L, number of weight matrices of the linear head"
    ds["width"].attrs["long_name"] = "d, width of the linear head"
    for k in _RECORDED:
        ds[k].attrs["long_name"] = _LONG_NAMES[k]
    attrs = dict(
        title="svflow real-data study: ReLU backbone + deep linear head",
        data="sklearn digits" if X is None else "user arrays",
        data_fingerprint=data["fingerprint"],
        classes=K,
        inputs=D_in,
        n_train=int(len(data["y_train"])),
        n_test=int(len(data["y_test"])),
        hidden=list(hidden),
        optimizer=optimizer,
        dtype=dtype,
        **(
            dict(t_end=t_end, **config.as_attrs())
            if optimizer == "flow"
            else dict(
                learning_rate=float(learning_rate),
                steps=steps,
                batch_size="full" if batch_size is None else int(batch_size),
            )
        ),
        loss_name="ce",
        weight_decay=0.0,
        rank_rtol=float(rank_rtol),
        base_seed=int(base_seed),
        test_fraction=float(test_fraction),
        split_seed=int(split_seed),
        device=str(jax.devices()[0]),
        wall_time_s=wall,
    )
    if ufm_reference:
        from ._phase import phase_map

        ufm = phase_map(
            classes=(K,),
            depths=depths,
            widths=widths,
            seeds=tuple(int(base_seed) + i for i in range(seeds)),
            snapshot_time=400.0,
            progress=False,
        )
        ds["ufm_rank"] = (
            ("depth", "width", "seed"),
            ufm["snapshot_rank"].sel(classes=K).values,
            {"long_name": f"deep UFM (K = {K}) rank of centred logits at t = 400, random starts, flow"},
        )
        ds["ufm_limit_rank"] = (
            ("depth", "width", "seed"),
            ufm["limit_rank"].sel(classes=K).values,
            {"long_name": f"deep UFM (K = {K}) rank of the t -> infinity limit (NaN: undecided)"},
        )
        attrs.update(ufm_snapshot_time=400.0, ufm_horizons=ufm.attrs["horizons"])
    from .._dataset import netcdf_attrs, provenance

    ds.attrs = netcdf_attrs({**ds.attrs, **attrs, **provenance()})
    return ds
