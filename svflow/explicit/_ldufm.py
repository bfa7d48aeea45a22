r"""Gradient descent on the L-DUFM of Súkeník, Lampert & Mondelli (NeurIPS 2024,
arXiv 2405.14468), against the closed forms.

The objective (depth L = number of weight matrices, N = L + 1 factors, n
samples per class, ReLU $\sigma$ after $W_1 .. W_{L-1}$, the same weight decay
$\lambda$ on every factor) is

$$\mathcal L = \frac{1}{2Kn}\|W_L\sigma(W_{L-1}\cdots\sigma(W_1H)) - Y\|_F^2
 + \frac{\lambda}{2}\Big(\|H\|_F^2 + \sum_{l=1}^L\|W_l\|_F^2\Big),$$

the objective of the full-parameter model :class:`svflow.DeepUFM` with
``activation="relu"``, ``loss="squared"`` and ``weight_decay`` $= \lambda$ (here
``lam``, the paper's name, is an alias of ``weight_decay``). The runs are such
models: Gaussian starts of :func:`svflow.random_model`, trained by
:func:`svflow.train`'s loop (:func:`svflow._full.train.run_gd`; every start of
one shape vmapped in one compiled loop, :func:`ldufm_gd_batch`; t = steps x
eta). On the records, every layer's representations are read off by the
model's forward pass (:meth:`svflow.DeepUFM.representations`,
:func:`layer_representations`):

- layer 0: the features H;
- layer l = 1..L-1: the pre-activation $W_l X_{l-1}$ and the post-ReLU
  $X_l = \sigma(W_l X_{l-1})$;
- layer L: the logits Z.

For each, the class-mean matrix $M_l \in \mathbb R^{d\times K}$ (uncentred:
the SRG construction's ranks r and K are ranks of uncentred matrices), its
singular values, its numerical rank ($\sigma_i > \epsilon\,\sigma_1$, $\epsilon$ = ``rank_rtol``)
and the within-class collapse
$\mathrm{NC1} = \operatorname{tr}(\Sigma_W\Sigma_B^+)/K$ (Papyan et al.;
$\Sigma_W$ the within-class covariance, $\Sigma_B$ the covariance of the
centred class means; 0 for n = 1).

**Polish.** GD stops at a fixed step count, not at a critical point. Every
run is then polished (:func:`polish`): L-BFGS (optimistix ``LBFGS`` on the
same model's factors, gradients by ``jax.grad``, every run of one shape
vmapped) for at most ``polish_steps`` steps. The ReLU objective has kinks
(pre-activations at 0, where the low-rank points sit): there the gradient
need not vanish and L-BFGS stalls at gradient norms ~1e-2. Stationarity is
therefore measured by the *Clarke gap* (:func:`clarke_gap`): the smallest
gradient over all ReLU slopes in [0, 1] at the kinks (the gradient norm where
there is none). Runs whose gap is at or above ``grad_tol`` get a nonsmooth
stage: a softplus smoothing continuation (L-BFGS at sharpness 1e2 .. 1e8),
then Newton's method on the kink face (kinks held at P = 0, the kink slopes
solved for with the factors). A polished point counts as converged when its
Clarke gap is below ``grad_tol`` (default :data:`GRAD_TOL` = 1e-6, the
tolerance of the smooth points; the objective is O(0.05)); a run above it
is reported as not converged, never dropped. Both the plain gradient norm
and the Clarke gap are stored, with the ``kink_count`` (:func:`kink_count`:
hidden pre-activations within :data:`KINK_RTOL` of 0 relative to their
layer's largest whose back-propagated signal is not 0, where the objective
is not differentiable).
Ranks of the polished point are gap ranks (:func:`gap_rank`): the threshold
sits in the largest gap of the normalised class-mean spectrum, whose size is
stored beside the rank.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import optimistix as optx
import xarray as xr

from .. import _dims as D
from .._checks import check_bool, check_choice, check_float, check_fraction, check_int
from .._dataset import grid_dataset
from .._full.model import DeepUFM, layers, mean_loss, random_model
from .._full.train import DivergenceError, run_gd, step_grid
from .._precision import computes
from ._ldufm_forms import dnc_loss, relu_blocks

__all__ = [
    "layer_representations",
    "class_mean_spectra",
    "nc1",
    "ldufm_runs",
    "ldufm_sweep",
    "ldufm_gd_batch",
    "polish",
    "polished_runs",
    "gap_rank",
    "kink_count",
    "clarke_gap",
]

RANK_RTOL_LAYERS = 1e-3
GRAD_TOL = 1e-6  # converged: Euclidean norm of the full gradient below this
POLISH_STEPS = 3000
SV_FLOOR = 1e-14  # singular values below this times sigma_1 are round-off (float64)
DEFAULT_DECAY = 0.004  # the weight decay of the paper's Fig. 2
KINK_RTOL = 1e-6  # kink face: |pre-activation| <= this x the layer's largest; live: |signal| > this
SMOOTHING = (1e2, 1e3, 1e4, 1e5, 1e6, 1e7, 1e8)  # softplus sharpnesses of the kink stage
SMOOTHING_STEPS = 1000  # L-BFGS steps per smoothing level
NEWTON_STEPS = 8  # face-Newton steps
FACE_RTOLS = (1e-6, 1e-5, 1e-4)  # kink faces |P| <= rtol max|P| tried by the face Newton
DROP_ROUNDS = 3  # face-Newton rounds releasing kinks whose slope leaves [0, 1]
FACE_NEWTON_MAX_PARAMS = 6000  # larger models skip the face Newton (a dense O(n^3) step)
NEWTON_STALL = 0.5  # a face-Newton round stops after two steps in a row each leaving > this x the residual
# iterations of each BVLS solve in the Clarke gap's Gauss-Newton steps (scipy's default is
# the number of kinks: far from a Clarke point, with ~1e3 kinks and a rank-deficient
# Jacobian, it took 400-500 iterations of one least-squares solve each, 5-25 s per solve)
BVLS_MAX_ITER = 50
# retries of the kink stage for a run it leaves uncertified: (L-BFGS steps from the start,
# 0 = the L-BFGS point; relative Gaussian perturbation of that point, seeded by the retry)
RESTARTS = ((10, 0.0), (0, 1e-4), (0, 1e-3))
CLARKE_NAME = (
    f"Clarke gap: min over ReLU slopes in [0, 1] at the kinks (|P| <= {KINK_RTOL:g} max|P|) "
    "of the full gradient's norm"
)
POLISH_NAME = (
    "optimistix LBFGS (history 20); for runs with Clarke gap >= grad_tol a softplus smoothing "
    "continuation (sharpness 1e2..1e8, LBFGS per level) and Newton on the kink face (releasing kinks "
    "whose slope leaves [0, 1]), retried from the start after 10 LBFGS steps and from the LBFGS point "
    "perturbed by 1e-4 and 1e-3 until the Clarke gap is below grad_tol"
)
KINK_NAME = f"live ReLU kinks at the polished point (|P| <= {KINK_RTOL:g} max|P|, |dL/dX| > {KINK_RTOL:g})"


def _weight_decay_of(weight_decay, lam, default: float | None = DEFAULT_DECAY) -> float:
    """The L-DUFM's weight decay from ``weight_decay`` or its alias ``lam`` (the paper's
    lambda; one of them, or neither for ``default``), checked > 0."""
    if weight_decay is not None and lam is not None:
        raise TypeError(
            f"pass weight_decay= or its alias lam= (the paper's lambda), not both; got "
            f"weight_decay={weight_decay!r} and lam={lam!r}."
        )
    value = weight_decay if weight_decay is not None else lam if lam is not None else default
    if value is None:
        raise TypeError("weight_decay= is required (lam= is its alias, the paper's lambda).")
    return check_float("weight_decay", value, minimum=0.0, strict_min=True)


@computes
def layer_representations(factors) -> tuple[list, list]:
    """(names, matrices) of every layer's representation of the L-DUFM (ReLU), (d or K,
    K n) each: the forward pass of :class:`svflow.DeepUFM` (``activation="relu"``,
    :meth:`svflow.DeepUFM.representations`) of any matrices (H, W_1, ..., W_L).
    Names: ``H``, ``pre1``, ``post1``, ..., ``pre<L-1>``, ``post<L-1>``, ``Z``."""
    return layers(factors, "relu")


@computes
def class_mean_spectra(X, classes: int) -> np.ndarray:
    """Singular values (decreasing, K of them, zero-padded) of the uncentred class-mean
    matrix."""
    classes = check_int("classes", classes, minimum=1)
    X = np.asarray(X)
    n = X.shape[1] // classes
    M = X.reshape(X.shape[0], classes, n).mean(axis=-1)
    sv = np.linalg.svd(M, compute_uv=False)
    return np.pad(sv, (0, classes - sv.size))[:classes]


@computes
def nc1(X, classes: int, rcond: float = RANK_RTOL_LAYERS**2) -> float:
    r"""$\operatorname{tr}(\Sigma_W\Sigma_B^+)/K$ of representations X (d, K n), columns
    class-major.

    The pseudo-inverse drops eigenvalues of $\Sigma_B$ below ``rcond`` times the
    largest (default: the square of the rank threshold, so the class-mean
    directions counted by the numerical rank are the ones inverted)."""
    classes = check_int("classes", classes, minimum=1)
    try:
        X = np.asarray(X, dtype=float)
    except (TypeError, ValueError) as e:
        raise TypeError(f"X must be a real matrix (d, K n) of representations; got {X!r:.80}.") from e
    if X.ndim != 2 or X.shape[1] == 0 or X.shape[1] % classes:
        raise ValueError(
            f"X must be a matrix (d, K n) of representations, columns class-major, with a number of "
            f"columns divisible by classes = {classes}; got shape {X.shape}."
        )
    n = X.shape[1] // classes
    Xc = X.reshape(X.shape[0], classes, n)
    mu = Xc.mean(axis=-1)
    g = mu.mean(axis=-1, keepdims=True)
    dev = (Xc - mu[..., None]).reshape(X.shape[0], -1)
    Sw = dev @ dev.T / X.shape[1]
    B = mu - g
    Sb = B @ B.T / classes
    return float(np.trace(Sw @ np.linalg.pinv(Sb, rcond=rcond, hermitian=True)) / classes)


# --- the L-DUFM as a DeepUFM: gradient descent by svflow's one loop, then the polish


def _template(model: DeepUFM) -> DeepUFM:
    """``model`` with a blank description: every start of one shape shares one compile."""
    return dataclasses.replace(model, description="")


def _check_starts(model, starts) -> tuple:
    """Stacked starts (leading run axis) of ``model``'s factor shapes, in its dtype."""
    if not isinstance(model, DeepUFM):
        raise TypeError(
            f"model must be a DeepUFM (e.g. svflow.random_model or svflow.model_from_arrays); "
            f"got {type(model).__name__}."
        )
    if starts is None:
        return tuple(F[None] for F in model.factors)
    if not isinstance(starts, (tuple, list)) or len(starts) != model.num_factors:
        raise ValueError(
            f"starts must be a sequence of N = {model.num_factors} stacked factors (H, W_1, ..., W_L), "
            f"each with a leading run axis; got {type(starts).__name__} of length "
            f"{len(starts) if hasattr(starts, '__len__') else '?'}."
        )
    stacked = tuple(jnp.asarray(F, dtype=model.dtype) for F in starts)
    want = [(stacked[0].shape[:1] + A.shape) for A in model.factors]
    got = [F.shape for F in stacked]
    if got != want:
        raise ValueError(
            f"starts must stack the model's factor shapes behind one run axis: expected {want}, got {got}."
        )
    return stacked


def _grad_norm(model: DeepUFM, factors):
    """Euclidean norm of the full gradient of ``model.objective`` over every factor entry."""
    return jnp.sqrt(sum(jnp.sum(g**2) for g in model.gradient(factors)))


def _objective_with(model: DeepUFM, factors, act):
    """``model``'s objective (its loss and penalty) with the hidden activation ``act``."""
    x = factors[0]
    for l, W in enumerate(factors[1:], start=1):
        x = W @ x
        if l < len(factors) - 1:
            x = act(l - 1, x)
    return mean_loss(x, model.loss) + model.penalty(factors)


def _slope_objective(model: DeepUFM, factors, masks, slopes):
    """The ReLU objective's value, differentiated with ReLU slope ``slopes[l]`` at the
    entries ``masks[l]`` of the hidden pre-activations and $\\mathbf 1[P > 0]$ elsewhere:
    its gradient is the chain-rule element of the objective's generalised gradient
    for those slopes (for slopes in {0, 1} the gradient of one smooth piece)."""

    def act(l, x):
        D = jnp.where(masks[l], slopes[l], (x > 0).astype(x.dtype))
        return jax.lax.stop_gradient(jax.nn.relu(x)) + D * (x - jax.lax.stop_gradient(x))

    return _objective_with(model, factors, act)


def _flat(tree) -> jax.Array:
    return jnp.concatenate([jnp.ravel(a) for a in tree])


def _unflat(v, shapes) -> list:
    out, i = [], 0
    for shp in shapes:
        size = int(np.prod(shp))
        out.append(v[i : i + size].reshape(shp))
        i += size
    return out


def _hidden(model: DeepUFM, factors) -> list:
    """The hidden pre-activations $P_1 .. P_{L-1}$."""
    names, mats = layers(factors, "relu")
    return [P for n, P in zip(names, mats) if n.startswith("pre")]


def _kink_masks(model: DeepUFM, factors, rtol: float) -> list:
    """Entries of each hidden pre-activation within ``rtol`` of 0 relative to its layer's
    largest (the kink face; dead entries included: their slope does not matter)."""
    return [jnp.abs(P) <= rtol * jnp.max(jnp.abs(P)) for P in _hidden(model, factors)]


def _split(model: DeepUFM, factors, svec) -> list:
    """A flat vector over every hidden entry, as matrices of the pre-activations' shapes."""
    return _unflat(svec, [P.shape for P in _hidden(model, factors)])


@eqx.filter_jit
def _slope_gradient(model: DeepUFM, factors, masks, svec):
    """(flat gradient for slopes ``svec`` at ``masks``, its Jacobian in ``svec``)."""

    def g(s):
        grad = jax.grad(_slope_objective, argnums=1)(model, factors, masks, _split(model, factors, s))
        return _flat(grad)

    return g(svec), jax.jacfwd(g)(svec)


def _clarke(model: DeepUFM, factors, rtol: float, iterations: int = 6) -> tuple[float, np.ndarray, list]:
    """(Clarke gap, its slopes over every hidden entry, the kink masks) at ``factors``.

    The gradient for slopes s is multilinear in s (kinks of one sample in
    successive layers multiply), so the box least-squares problem
    $\\min_{s \\in [0,1]^k}|g(s)|$ is solved by Gauss-Newton steps, each a
    bounded-variable least-squares problem (scipy ``lsq_linear``, BVLS, at most
    :data:`BVLS_MAX_ITER` iterations) in the kink slopes; the value returned is
    $|g(s)|$ evaluated exactly at the best slopes found (every such value bounds
    the minimum from above, whether or not BVLS reached its optimum)."""
    from scipy.optimize import lsq_linear

    fs = tuple(jnp.asarray(F, dtype=model.dtype) for F in factors)
    masks = _kink_masks(model, fs, rtol)
    pres = _hidden(model, fs)
    s = np.concatenate([np.asarray(P > 0, float).ravel() for P in pres])
    idx = np.nonzero(np.concatenate([np.asarray(m).ravel() for m in masks]))[0]
    g, J = (np.asarray(a) for a in _slope_gradient(model, fs, masks, jnp.asarray(s)))
    best = float(np.linalg.norm(g))
    for _ in range(iterations if idx.size else 0):
        Jk = J[:, idx]
        sol = lsq_linear(Jk, Jk @ s[idx] - g, bounds=(0.0, 1.0), method="bvls", max_iter=BVLS_MAX_ITER)
        trial = s.copy()
        trial[idx] = np.clip(sol.x, 0.0, 1.0)  # in the box also when BVLS stopped at its cap
        g, J = (np.asarray(a) for a in _slope_gradient(model, fs, masks, jnp.asarray(trial)))
        value = float(np.linalg.norm(g))
        if not value < best * (1 - 1e-3):
            if value < best:
                best, s = value, trial
            break
        best, s = value, trial
    return best, s, masks


@eqx.filter_jit
def _face_residual(model: DeepUFM, v, s, masks, active, sfix, shapes):
    """KKT residual on the kink face: (gradient for slopes s; P at the ``active`` kinks,
    s - ``sfix`` elsewhere: released kinks keep a fixed slope, non-kinks slope 0)."""
    fs = _unflat(v, shapes)
    grad = jax.grad(_slope_objective, argnums=1)(model, fs, masks, _split(model, fs, s))
    return jnp.concatenate([_flat(grad), jnp.where(active, _flat(_hidden(model, fs)), s - sfix)])


@eqx.filter_jit
def _face_jacobian(model: DeepUFM, v, s, masks, active, sfix, shapes):
    return jax.jacfwd(_face_residual, argnums=(1, 2))(model, v, s, masks, active, sfix, shapes)


def _face_newton(model: DeepUFM, factors, s, masks, steps: int, rounds: int = DROP_ROUNDS) -> list:
    """Newton's method on the kink face with an active-set loop: solve
    $g(\\theta, s) = 0$, $P_k(\\theta) = 0$ at the active kinks for the factors and the
    kink slopes together (least-squares steps: the minimum-norm solution at
    numerical rank ``rcond`` 1e-12, LAPACK's ``gelsy``, complete orthogonal
    factorisation, 2.3x faster than the SVD-based ``gelsd`` at 3707 unknowns;
    halved until the residual falls; stops when it does not, or when two steps in a
    row each leave more than :data:`NEWTON_STALL` = 0.5 of the residual: Newton
    converging on the face shrinks it by orders of magnitude per step). A kink whose slope leaves
    [0, 1] is a face the objective wants to leave: it is released (its slope
    fixed at the nearer bound, its $P_k = 0$ constraint dropped) and Newton
    runs again, for at most ``rounds`` rounds. Returns the factors after every
    round (the caller keeps the best by Clarke gap)."""
    from scipy.linalg import lstsq

    shapes = tuple(tuple(F.shape) for F in factors)
    v = _flat([jnp.asarray(F, dtype=model.dtype) for F in factors])
    m = np.asarray(_flat(masks))
    # the slopes off the kink face enter neither the gradient (the slope objective reads
    # a slope only where its mask is set) nor any P-constraint: their rows (s - 0) and
    # columns (the identity) form a block of their own with zero residual, so the
    # least-squares step is 0 there and the step solves the kink rows and columns alone
    kink = np.nonzero(m)[0]
    rows = np.concatenate([np.arange(v.size), v.size + kink])
    s = jnp.where(m, jnp.asarray(s, dtype=model.dtype), 0.0)
    active, sfix = m.copy(), np.zeros(m.size)
    out = []
    for _ in range(rounds + 1):
        act, fix = jnp.asarray(active), jnp.asarray(sfix, dtype=model.dtype)
        r = np.asarray(_face_residual(model, v, s, masks, act, fix, shapes))
        slow = 0
        for _ in range(steps):
            norm = np.linalg.norm(r)
            if not np.isfinite(norm) or norm < 1e-14:
                break
            A, B = _face_jacobian(model, v, s, masks, act, fix, shapes)
            J = np.hstack([np.asarray(A)[rows], np.asarray(B)[np.ix_(rows, kink)]])
            dk = lstsq(J, -r[rows], cond=1e-12, lapack_driver="gelsy", check_finite=False)[0]
            dv, ds = dk[: v.size], np.zeros(m.size)
            ds[kink] = dk[v.size :]
            for t in 0.5 ** np.arange(12):
                v1, s1 = v + t * dv, s + t * ds
                r1 = np.asarray(_face_residual(model, v1, s1, masks, act, fix, shapes))
                norm1 = np.linalg.norm(r1)
                if norm1 < norm:
                    break
            else:
                break
            v, s, r = v1, s1, r1
            slow = slow + 1 if norm1 > NEWTON_STALL * norm else 0
            if slow == 2:  # no Newton convergence on this face: two steps in a row under 2x
                break
        out.append(_unflat(v, shapes))
        sn = np.asarray(s)
        leave = active & ((sn < -1e-9) | (sn > 1 + 1e-9))
        if not leave.any():
            break
        active = active & ~leave
        sfix = np.where(leave, np.clip(sn, 0.0, 1.0), sfix)
        s = jnp.where(jnp.asarray(leave), jnp.asarray(sfix, dtype=model.dtype), s)
    return out


@eqx.filter_jit
def _smooth_batch(model: DeepUFM, factors, sharpness, max_steps: int):
    r"""Smoothing continuation from every stacked start: L-BFGS on the objective with the
    ReLU replaced by $\operatorname{softplus}(\beta x)/\beta$, for each $\beta$ of
    ``sharpness`` in turn (each level from the previous level's end)."""

    def smoothed(f, beta):
        return _objective_with(model, f, lambda _, x: jax.nn.softplus(beta * x) / beta)

    def one(f0):
        solver = optx.LBFGS(rtol=0.0, atol=1e-15, history_length=20)

        def level(f, beta):
            sol = optx.minimise(smoothed, solver, f, args=beta, max_steps=max_steps, throw=False)
            ok = jnp.all(jnp.asarray([jnp.all(jnp.isfinite(a)) for a in sol.value]))
            return jax.tree_util.tree_map(lambda a, b: jnp.where(ok, a, b), sol.value, f), None

        f, _ = jax.lax.scan(level, f0, sharpness)
        return f

    return jax.vmap(one)(factors)


@eqx.filter_jit
def _polish_batch(model: DeepUFM, factors, max_steps: int):
    """L-BFGS on ``model.objective`` from every stacked start (leading axis).

    Returns (polished factors, objective, gradient norm): the better of the start
    and the last L-BFGS iterate (a non-finite iterate keeps the start)."""

    def one(f0):
        solver = optx.LBFGS(rtol=0.0, atol=1e-15, history_length=20)
        sol = optx.minimise(lambda f, _: model.objective(f), solver, f0, max_steps=max_steps, throw=False)
        o0, o1 = model.objective(f0), model.objective(sol.value)
        keep = jnp.isfinite(o1) & (o1 <= o0)
        fs = jax.tree_util.tree_map(lambda a, b: jnp.where(keep, a, b), sol.value, f0)
        return fs, jnp.where(keep, o1, o0), _grad_norm(model, fs)

    return jax.vmap(one)(factors)


@computes
def clarke_gap(model: DeepUFM, factors=None, *, rtol: float = KINK_RTOL) -> float:
    r"""Clarke gap of a ReLU :class:`svflow.DeepUFM`'s objective at ``factors`` (default:
    the model's own): the smallest gradient over all ReLU slopes in [0, 1] at the kinks.

    With hidden pre-activations $P_l$ ($l = 1..L-1$), the kinks are the entries
    with $|(P_l)_{ij}| \le$ ``rtol`` $\max|P_l|$ (:data:`KINK_RTOL` = 1e-6). Let
    $g(s)$ be the gradient of the objective by the chain rule with ReLU slope
    $s_k \in [0, 1]$ at kink k and $\mathbf 1[P > 0]$ elsewhere; for $s$ a
    vertex of the box, $g(s)$ is the gradient of one smooth piece of the
    objective, and $g$ is multilinear in s, so every $g(s)$ is a convex
    combination of those piece gradients. The Clarke gap is

    $$\min_{s \in [0, 1]^k} |g(s)|$$

    (Euclidean norm over every entry of every factor), found by Gauss-Newton
    steps of bounded least squares (scipy's BVLS) and evaluated exactly at the
    slopes found. Where every sign pattern of the kinks is realised next to the
    point (kink gradients linearly independent, the generic case), the piece
    gradients lie in the Clarke subdifferential and the gap bounds
    $\operatorname{dist}(0, \partial_C\mathcal L)$ from above: a gap below a
    tolerance certifies approximate Clarke stationarity. With no kink it is the
    gradient norm. Entries within ``rtol`` of 0 but not at 0 count as kinks
    (their one-sided gradients differ by at most the kink's signal times a
    factor-scale step), so the gap measures stationarity up to that face
    tolerance."""
    if not isinstance(model, DeepUFM) or model.activation != "relu":
        raise TypeError(
            f"model must be a DeepUFM with activation='relu' (the L-DUFM); got "
            f"{type(model).__name__}{'' if not isinstance(model, DeepUFM) else ' with ' + model.activation}."
        )
    rtol = check_float("rtol", rtol, minimum=0.0)
    fs = model.factors if factors is None else factors
    return _clarke(_template(model), fs, rtol)[0]


@computes
def polish(
    model: DeepUFM,
    starts=None,
    *,
    max_steps: int = POLISH_STEPS,
    kinks: bool = True,
    grad_tol: float = GRAD_TOL,
    smoothing_steps: int = SMOOTHING_STEPS,
    newton_steps: int = NEWTON_STEPS,
):
    r"""Polish a :class:`svflow.DeepUFM`'s parameters, from one or many starts: L-BFGS,
    then, for a ReLU model, a nonsmooth stage for the runs stalled at ReLU kinks.

    1. optimistix ``LBFGS`` (history 20) on the model's objective
       (:meth:`svflow.DeepUFM.objective`: mean data loss +
       $\sum_l\tfrac{wd_l}2\|A_l\|_F^2$; for the L-DUFM ReLU, squared loss and
       weight decay), ``jax.grad`` for its gradient, for ``max_steps`` steps
       (no earlier stop: the runs are vmapped), keeping the better of start
       and end.
    2. For ``activation="relu"`` and ``kinks`` (default), every run whose
       Clarke gap (:func:`clarke_gap`) is still ``>= grad_tol``:

       - *smoothing continuation*: L-BFGS (``smoothing_steps`` per level) on
         the objective with the ReLU replaced by
         $\operatorname{softplus}(\beta x)/\beta$ for
         $\beta$ = :data:`SMOOTHING` = 1e2, 1e3, ..., 1e8 in turn (its
         gradient is the ReLU chain rule with slopes
         $\operatorname{sigmoid}(\beta P) \in (0, 1)$, so a smoothed
         stationary point is a Clarke point of the ReLU objective up to the
         kinks' distance ~1/beta from 0);
       - *face Newton*: with the kinks (|P| <= rtol max|P|, rtol of
         :data:`FACE_RTOLS` = 1e-6, 1e-5, 1e-4 in turn until one gives a
         Clarke gap < ``grad_tol``, the best kept)
         held at P = 0 as equality constraints and their slopes as unknowns
         (the slopes that minimise the gap as start), Newton's method on
         $g(\theta, s) = 0$, $P_{\rm kinks}(\theta) = 0$ (least-squares steps,
         at most ``newton_steps``, fewer when two in a row each leave more
         than :data:`NEWTON_STALL` = 0.5 of the residual; kept when it lowers the Clarke gap and
         does not raise the objective by more than 1e-9 relative). A kink
         whose slope leaves [0, 1] is released (slope fixed at the nearer
         bound, its P = 0 constraint dropped) and Newton runs again, for at
         most :data:`DROP_ROUNDS` rounds (an active-set loop). Models with
         more than :data:`FACE_NEWTON_MAX_PARAMS` = 6000 parameters skip
         the face Newton (its dense step is O(n^3); :func:`face_newton_runs`)
         and keep the continuation's point;
       - *retries*: while no candidate is certified (Clarke gap <
         ``grad_tol``), the continuation and face Newton run again from each
         start of :data:`RESTARTS` in turn: the start after 10 L-BFGS steps
         (the stage's outcome depends on where the continuation begins), then
         the L-BFGS point perturbed by Gaussian noise of 1e-4 and 1e-3 times
         each factor's largest entry (seeded, so reproducible).

       Of the candidates whose objective is not above the L-BFGS point's
       (1e-9 relative slack), the certified one of lowest objective replaces
       the L-BFGS point; when none is certified, the one of lowest Clarke gap
       does if it lowers the gap.

    Args:
        model: the model (its activation, loss, weight decay, K and n define the
            objective; its factors are the start when ``starts`` is None).
        starts: factors $(H, W_1, \ldots, W_L)$ stacked over runs (each with a
            leading run axis, the model's shapes behind it), or None (one run from
            the model's factors).
        max_steps: L-BFGS steps (>= 1).
        kinks: run the nonsmooth stage (ReLU models only).
        grad_tol: Clarke gap at or above which a run gets the nonsmooth stage
            (:data:`GRAD_TOL`).
        smoothing_steps: L-BFGS steps per smoothing level (>= 1).
        newton_steps: face-Newton steps (>= 0).

    Returns:
        ``(factors, objective, grad_norm, clarke_gap)`` as numpy arrays with the
        leading run axis. ``grad_norm`` is the Euclidean norm of the gradient
        (slope 1[P > 0]) over every entry of every factor at the returned point;
        ``clarke_gap`` the smallest gradient over ReLU slopes in [0, 1] at its
        kinks (:func:`clarke_gap`; the gradient norm for a smooth model). A run
        is converged when ``clarke_gap`` is below a stated tolerance
        (:data:`GRAD_TOL` for the L-DUFM); at a kink ``grad_norm`` need not
        vanish.
    """
    stacked = _check_starts(model, starts)
    max_steps = check_int("max_steps", max_steps, minimum=1)
    grad_tol = check_float("grad_tol", grad_tol, minimum=0.0, strict_min=True)
    smoothing_steps = check_int("smoothing_steps", smoothing_steps, minimum=1)
    newton_steps = check_int("newton_steps", newton_steps, minimum=0)
    kinks = check_bool("kinks", kinks)
    model = _template(model)
    fs, obj, gn = _polish_batch(model, stacked, max_steps)
    fs = [np.array(F) for F in fs]
    obj, gn = np.array(obj, float), np.array(gn, float)
    if model.activation != "relu":
        return tuple(fs), obj, gn, gn.copy()
    gap = np.array([_clarke(model, [F[k] for F in fs], KINK_RTOL)[0] for k in range(obj.size)])
    todo = np.nonzero(gap >= grad_tol)[0] if kinks else np.zeros(0, int)
    for k in (int(i) for i in todo):
        f1, o1, g1 = _kink_stage(
            model, stacked, [F[k] for F in fs], k, obj[k], gap[k], smoothing_steps, newton_steps, grad_tol
        )
        if f1 is not None:
            for F, A in zip(fs, f1):
                F[k] = np.asarray(A)
            obj[k], gap[k] = o1, g1
            gn[k] = float(_grad_norm(model, tuple(jnp.asarray(A) for A in f1)))
    return tuple(fs), obj, gn, gap


def _kink_stage(
    model: DeepUFM, stacked, point, k: int, obj: float, gap: float, smoothing_steps, newton_steps, tol
):
    """The nonsmooth stage for run ``k`` of ``stacked`` whose L-BFGS point ``point`` has
    objective ``obj`` and Clarke gap ``gap``: ``(factors, objective, gap)`` of the
    replacement, or ``(None, obj, gap)`` when no candidate improves on the point.

    Candidates come from the smoothing continuation and the face Newton
    (:func:`_nonsmooth_point`) started at the L-BFGS point, then, while none
    is certified (gap < ``tol``), at each retry of :data:`RESTARTS` in turn.
    A candidate qualifies when its objective is not above ``obj`` (1e-9
    relative slack); of the certified qualifiers the lowest objective is
    kept, else the qualifier of lowest gap if it lowers ``gap``."""
    sharp = jnp.asarray(SMOOTHING, dtype=model.dtype)
    cands = []
    for i, (steps, noise) in enumerate(((0, 0.0),) + RESTARTS):
        if steps:
            start = [F[k : k + 1] for F in stacked]
            f0 = [np.asarray(F[0]) for F in _polish_batch(model, tuple(start), steps)[0]]
        else:
            f0 = [np.asarray(F) for F in point]
        if noise:
            rng = np.random.default_rng(i)
            f0 = [F + noise * np.max(np.abs(F)) * rng.standard_normal(F.shape) for F in f0]
        smooth = _smooth_batch(model, tuple(jnp.asarray(F)[None] for F in f0), sharp, smoothing_steps)
        cand = _nonsmooth_point(model, [F[0] for F in smooth], newton_steps, tol)
        if cand is not None and cand[1] <= obj + 1e-9 * abs(obj):
            cands.append(cand)
        if any(c[2] < tol for c in cands):
            break
    ok = [c for c in cands if c[2] < tol]
    if ok:
        return min(ok, key=lambda c: c[1])
    if cands:
        best = min(cands, key=lambda c: c[2])
        if best[2] < gap:
            return best
    return None, obj, gap


def face_newton_runs(model: DeepUFM) -> bool:
    """Whether :func:`polish` runs the face Newton for ``model``: at most
    :data:`FACE_NEWTON_MAX_PARAMS` parameters (each of its steps is a dense least-squares
    solve in the parameters and the kink slopes, O(n^3): about 4 s at 3,700 unknowns
    on 2 cores (measured), so by the cubic law half a minute at 7,500 and, at 20,800
    (K = 10, L = 4, width 80), the better part of an hour per step and a 4 GB
    Jacobian; a run the face Newton does not certify takes up to 96 steps)."""
    return sum(int(np.prod(F.shape)) for F in model.factors) <= FACE_NEWTON_MAX_PARAMS


def _nonsmooth_point(model: DeepUFM, factors, newton_steps: int, tol: float):
    """(factors, objective, Clarke gap) after the face Newton from a smoothed point, or
    None when the point is not finite.

    The face is the set of entries with |P| <= rtol max|P| for each rtol of
    :data:`FACE_RTOLS` in turn (after a finite smoothing level the kinks sit at
    |P| ~ 1e-9 .. 1e-5, so no one threshold separates them from live entries),
    until a face gives a certified point (Clarke gap < ``tol``); every round of
    the face Newton's active-set loop gives a point; the one of lowest Clarke
    gap (at :data:`KINK_RTOL`) whose objective is not above the smoothed
    point's (1e-9 relative slack) is kept, the smoothed point itself when none
    lowers the gap."""
    fs = [jnp.asarray(F, dtype=model.dtype) for F in factors]
    o = float(model.objective(fs))
    if not np.isfinite(o):
        return None
    best = (fs, o, _clarke(model, fs, KINK_RTOL)[0])
    for rtol in FACE_RTOLS if newton_steps and face_newton_runs(model) else ():
        if best[2] < tol:
            break
        _, s, masks = _clarke(model, fs, rtol)
        for f1 in _face_newton(model, fs, s, masks, newton_steps):
            o1 = float(model.objective(f1))
            if np.isfinite(o1) and o1 <= o + 1e-9 * abs(o):
                g1 = _clarke(model, f1, KINK_RTOL)[0]
                if g1 < best[2]:
                    best = (f1, o1, g1)
    return best


@computes
def gap_rank(sv, floor: float = SV_FLOOR) -> tuple[int, float]:
    r"""Rank of a spectrum at its largest gap: ``(rank, gap)``.

    With $s_i = \sigma_i/\sigma_1$ (decreasing) and $s_{K+1}$ = ``floor`` (the
    round-off level of float64), the rank is the r maximising $s_r/s_{r+1}$
    over $r = 1..K$ (entries below ``floor`` count as ``floor``) and the gap
    is that ratio: a threshold anywhere inside the gap gives the same rank,
    and the stored gap says how clear the cut is (a gap of 10 is a weak
    verdict, 1e6 a clear one). ``(0, nan)`` for a zero spectrum."""
    sv = np.sort(np.abs(np.asarray(sv, dtype=float).ravel()))[::-1]
    if sv.size == 0 or not sv[0] > 0:
        return 0, float("nan")
    s = np.maximum(np.append(sv / sv[0], 0.0), floor)
    ratios = s[:-1] / s[1:]
    r = int(np.argmax(ratios))
    return r + 1, float(ratios[r])


@computes
def kink_count(
    model: DeepUFM, factors=None, *, rtol: float = KINK_RTOL, signal_tol: float = KINK_RTOL
) -> int:
    r"""Number of live ReLU kinks of a ReLU :class:`svflow.DeepUFM` at ``factors``
    (default: the model's own).

    With pre-activations $P_l = W_l X_{l-1}$, $X_l = \sigma(P_l)$, $l = 1..L-1$
    (:meth:`svflow.DeepUFM.representations`) and the back-propagated signal
    $A_l = \partial\mathcal L/\partial X_l$ (the objective's derivative with
    respect to the post-activation, taken with the later layers' ReLU slopes
    $\mathbf 1[P > 0]$), an entry is a live kink when
    $|(P_l)_{ij}| \le$ ``rtol`` $\max|P_l|$ (on the kink face) and
    $|(A_l)_{ij}| >$ ``signal_tol``: there the two one-sided derivatives of
    the objective differ by $(A_l)_{ij}\,\partial (P_l)_{ij}/\partial\theta$,
    so the objective is not differentiable and a gradient method can stall.
    Entries on the face with no signal (dead units: outgoing weights 0) leave
    the objective differentiable and do not count. Default tolerances
    :data:`KINK_RTOL` = 1e-6."""
    if not isinstance(model, DeepUFM) or model.activation != "relu":
        raise TypeError(
            f"model must be a DeepUFM with activation='relu' (the L-DUFM); got "
            f"{type(model).__name__}{'' if not isinstance(model, DeepUFM) else ' with ' + model.activation}."
        )
    rtol = check_float("rtol", rtol, minimum=0.0)
    signal_tol = check_float("signal_tol", signal_tol, minimum=0.0)
    fs = tuple(jnp.asarray(F, dtype=model.dtype) for F in (model.factors if factors is None else factors))
    names, mats = model.representations(fs)
    pres = [P for n, P in zip(names, mats) if n.startswith("pre")]

    def objective(extra):
        x = fs[0]
        for l, W in enumerate(fs[1:], start=1):
            x = W @ x
            if l < len(fs) - 1:
                x = jax.nn.relu(x) + extra[l - 1]
        return mean_loss(x, model.loss) + model.penalty(fs)

    signals = jax.grad(objective)([jnp.zeros_like(P) for P in pres])
    count = 0
    for P, A in zip(pres, signals):
        P, A = np.abs(np.asarray(P, float)), np.abs(np.asarray(A, float))
        count += int(np.sum((P <= rtol * P.max()) & (A > signal_tol)))
    return count


@eqx.filter_jit
def _gd_batch(model: DeepUFM, factors, eta, counts, keep_factors: bool):
    """:func:`svflow._full.train.run_gd` (the loop of :func:`svflow.train`) on ``model``
    from every stacked start (vmapped): ``counts`` steps before each record, each
    record the objective (and the factors if ``keep_factors``). Returns
    (final factors, records, first non-finite step or -1), leading axis = start."""

    def record(m, _):
        out = {"objective": m.objective()}
        if keep_factors:
            out["factors"] = m.factors
        return out

    def one(fs):
        m, recs, bad = run_gd(model.with_factors(fs), eta, counts, record_fn=record)
        return m.factors, recs, bad

    return jax.vmap(one)(factors)


def _ldufm_model(classes: int, depth: int, width: int, samples: int, weight_decay: float) -> DeepUFM:
    """The L-DUFM as a :class:`svflow.DeepUFM` (ReLU, squared loss, ``weight_decay`` on
    every factor, n = ``samples`` per class) whose objective :func:`polish` and
    :func:`polished_runs` use; its own factors (seed 0) are a placeholder."""
    m = random_model(
        classes,
        depth=depth,
        width=width,
        samples_per_class=samples,
        activation="relu",
        loss="squared",
        weight_decay=weight_decay,
    )
    return _template(m)


def _starts(classes, depth, width, scales, seeds, samples, weight_decay) -> tuple:
    """The L-DUFM as a :class:`svflow.DeepUFM` (:func:`svflow.random_model`, ReLU,
    squared loss, ``weight_decay`` on every factor) from every (scale, seed), scale-major:
    ``(template model, stacked factors)``."""
    models = [
        random_model(
            classes,
            depth=depth,
            width=width,
            scale=s,
            key=seed,
            samples_per_class=samples,
            activation="relu",
            loss="squared",
            weight_decay=weight_decay,
        )
        for s in scales
        for seed in seeds
    ]
    return _template(models[0]), tuple(jnp.stack(fs) for fs in zip(*[m.factors for m in models]))


def _check_gd(classes, depth, width, eta, steps, samples) -> tuple:
    """The arguments every L-DUFM gradient-descent run takes, checked (the weight decay
    by :func:`_weight_decay_of`)."""
    return (
        check_int("classes", classes, minimum=2),
        check_int("depth", depth, minimum=2),
        check_int("width", width, minimum=1),
        check_float("eta", eta, minimum=0.0, strict_min=True),
        check_int("steps", steps, minimum=1),
        check_int("samples", samples, minimum=1),
    )


@computes
def ldufm_gd_batch(
    classes: int,
    depth: int,
    *,
    width: int,
    weight_decay: float | None = None,
    lam: float | None = None,
    eta: float,
    steps: int,
    scales: Sequence[float],
    seeds: Sequence[int],
    samples: int = 1,
):
    r"""Full-batch GD on the L-DUFM from every (init scale, seed) start, vmapped.

    The L-DUFM is the :class:`svflow.DeepUFM` with ReLU, squared loss and
    ``weight_decay`` on every factor (``lam``, the paper's $\lambda$, is an alias:
    pass one of them), and GD is :func:`svflow.train`'s loop
    (:func:`svflow._full.train.run_gd`):
    $F_j \leftarrow F_j - \eta\nabla_{F_j}\mathcal L$ with
    $\mathcal L = \frac{1}{2Kn}\|Z - Y\|_F^2 + \frac{\lambda}{2}\sum_j\|F_j\|_F^2$
    ($Z$ the output of :func:`relu_forward`; mean squared loss; documentation page
    *Explicit low-rank bias*), ``steps`` steps (time t = steps x ``eta``). The
    starts are exactly those of :func:`svflow.random_model` (``key=seed``,
    ``scale``), so each run is the run :func:`svflow.train` makes from that
    start. Returns ``(factors, objective)``: the final factors stacked over the
    starts (scale-major: start ``i * len(seeds) + j`` is ``scales[i]``,
    ``seeds[j]``) and the final objectives, ``inf`` where GD diverged.
    """
    wd = _weight_decay_of(weight_decay, lam, default=None)
    classes, depth, width, eta, steps, samples = _check_gd(classes, depth, width, eta, steps, samples)
    scales = [check_float("scales[i]", s, minimum=0.0, strict_min=True) for s in scales]
    seeds = [check_int("seeds[i]", s) for s in seeds]
    if not scales or not seeds:
        raise ValueError("scales and seeds must each hold at least one value.")
    model, stacked = _starts(classes, depth, width, scales, seeds, samples, wd)
    factors, recs, _ = _gd_batch(model, stacked, jnp.asarray(eta, model.dtype), jnp.asarray([steps]), False)
    obj = np.asarray(recs["objective"][:, -1], dtype=float)
    obj = np.where(np.isfinite(obj), obj, np.inf)
    return tuple(np.asarray(F) for F in factors), obj


def polished_runs(model: DeepUFM, factors, *, max_steps: int, grad_tol: float, kinks: bool = True) -> dict:
    """Polish stacked runs of the L-DUFM ``model`` (:func:`polish`) and read off the
    polished points.

    Returns per run (leading axis): ``factors`` (the polished factors),
    ``objective``, ``fit`` (mean squared loss), ``regularisation`` (weight-decay
    penalty), ``grad_norm`` (at the polished point), ``grad_norm_start`` (at the
    GD end), ``clarke_gap`` (:func:`clarke_gap` at the polished point),
    ``converged`` (``clarke_gap < grad_tol``), ``kink_count``
    (:func:`kink_count` of the polished point), ``rank`` and ``gap``
    (layer: :func:`gap_rank` of every layer's class means, names of
    :func:`layer_representations`), ``bottleneck`` (smallest gap rank over H
    and the hidden layers, Z excluded) and ``names``."""
    model = _template(model)
    stacked = _check_starts(model, factors)
    g0 = jax.vmap(lambda fs: _grad_norm(model, fs))(stacked)
    fs, obj, gn, gap = polish(model, stacked, max_steps=max_steps, grad_tol=grad_tol, kinks=kinks)
    fit, reg = (np.asarray(a, float) for a in jax.vmap(lambda f: (model.data_loss(f), model.penalty(f)))(fs))
    rank_rows: list[list[int]] = []
    gaps: list[list[float]] = []
    names: list[str] = []
    for k in range(obj.size):
        names, mats = model.representations([F[k] for F in fs])
        rg = [gap_rank(class_mean_spectra(X, model.classes)) for X in mats]
        rank_rows.append([r for r, _ in rg])
        gaps.append([g for _, g in rg])
    ranks = np.asarray(rank_rows, int)
    counts = np.asarray([kink_count(model, [F[k] for F in fs]) for k in range(obj.size)], int)
    hidden = [i for i, n in enumerate(names) if n != "Z"]
    return {
        "factors": fs,
        "objective": obj,
        "fit": fit,
        "regularisation": reg,
        "grad_norm": gn,
        "grad_norm_start": np.asarray(g0, float),
        "clarke_gap": gap,
        "converged": gap < grad_tol,
        "kink_count": counts,
        "rank": ranks,
        "gap": np.asarray(gaps, float),
        "bottleneck": ranks[:, hidden].min(axis=1),
        "names": list(names),
    }


def _layer_stats(factors, classes: int, samples: int, rank_rtol: float):
    """(names, singular values (layer, K), ranks (layer,), NC1 (layer,)) of every layer."""
    names, mats = layer_representations(factors)
    sv = np.stack([class_mean_spectra(X, classes) for X in mats])
    top = np.where(sv[:, :1] > 0, sv[:, :1], 1.0)
    rk = ((sv > rank_rtol * top) & (sv > 0)).sum(axis=1)
    nc = np.array([nc1(X, classes, rank_rtol**2) if samples > 1 else 0.0 for X in mats])
    return names, sv, rk, nc


@computes
def ldufm_runs(
    classes: int = 10,
    depth: int = 4,
    *,
    width: int = 30,
    weight_decay: float | None = None,
    lam: float | None = None,
    eta: float = 0.5,
    steps: int = 100_000,
    seeds: Sequence[int] = tuple(range(10)),
    samples: int = 1,
    scale: float = 1.0,
    num_times: int = 61,
    rank_rtol: float = RANK_RTOL_LAYERS,
    dnc_rtol: float = 1e-2,
    polish_steps: int = POLISH_STEPS,
    grad_tol: float = GRAD_TOL,
    kinks: bool = True,
) -> xr.Dataset:
    r"""GD on the L-DUFM from Gaussian starts, one run per seed, with the closed forms.

    The L-DUFM is the :class:`svflow.DeepUFM` with ReLU, squared loss and weight
    decay ``weight_decay`` on every factor (the paper's
    $\lambda_H = \lambda_{W_l} = \lambda$; ``lam`` is its alias: pass one of
    them; default 0.004, stored as the attribute ``lam``); the start is
    :func:`svflow.random_model` with init ``scale`` (entries
    $\mathcal N(0, \text{scale}^2/\text{width})$), which decides which minimum GD
    finds. The run is recorded on the log step grid of :func:`svflow.train`
    (step 0 and ``num_times - 1`` log-spaced steps up to ``steps``; time
    t = steps x ``eta``): at every record the layer statistics of the module
    docstring are computed from the current factors. All seeds run together
    (:func:`ldufm_gd_batch`'s vmapped loop, GD continuing from the same
    parameters after each record), so each run is the run one uninterrupted
    :func:`svflow.train` call makes from the same start.

    Returns a Dataset with dims ``seed``, ``time``, ``layer`` (H, pre1, post1,
    ..., Z) and ``sv``:

    - over training: ``objective`` (seed, time) and its two parts ``fit_t``
      (the mean squared loss $\frac{1}{2Kn}\|Z - Y\|_F^2$) and
      ``regularisation_t`` ($\frac{\lambda}{2}\sum_j\|F_j\|_F^2$),
      ``sv_layer_t`` (seed, time, layer, sv), ``rank_layer_t`` and
      ``nc1_layer_t`` (seed, time, layer);
    - at the end: ``sv_layer`` (seed, layer, sv), ``rank_layer`` and
      ``nc1_layer`` (seed, layer), ``class_means`` (seed, layer, row, col: the
      class-mean matrix $M$ of every layer, $d$ rows (units, NaN below a layer's
      own rows: Z has K) and K columns), ``gram`` (seed, layer, col, col2:
      $M^\top M$, the classes' inner products), ``final_objective`` (seed), ``is_dnc``
      (seed: every layer's class means have rank K and the final objective is
      within ``dnc_rtol`` of L_DNC: wide networks approach L_DNC slowly, so the
      rank decides and the loss only guards against other full-rank points);
    - scalars ``L_DNC`` and ``L_best`` (best SRG/DNC block construction,
      :func:`svflow.explicit.relu_blocks`);
    - the polished end point (:func:`polish`: L-BFGS from the GD end, at most
      ``polish_steps`` steps): ``polished_objective``, ``fit`` (mean squared
      loss) and ``regularisation`` (weight-decay penalty), ``grad_norm`` (norm
      of the full gradient there), ``grad_norm_gd`` (at the GD end),
      ``clarke_gap`` (:func:`clarke_gap`: the smallest gradient over ReLU
      slopes in [0, 1] at the kinks), ``converged`` (``clarke_gap`` <
      ``grad_tol``: Clarke stationary to that tolerance; at a ReLU kink
      ``grad_norm`` need not vanish), ``kink_count`` (live ReLU kinks there,
      :func:`kink_count`), ``polished_rank_layer`` and ``rank_gap`` (seed,
      layer: :func:`gap_rank` of every layer's class means, the threshold in
      the largest spectral gap, and that gap).

    ``kinks``: run the polish's nonsmooth stage (smoothing continuation and
    Newton on the kink face: 36 s for a run that it certifies, 280 s for one
    that it does not, at K = 10, L = 4, width 30 on 2 cores) where L-BFGS
    leaves a Clarke gap at or above ``grad_tol``; with ``False`` such runs are
    reported as they are (``converged`` False). The attribute ``kink_stage``
    records it, and ``face_newton`` whether the stage's face Newton ran (models
    of at most :data:`FACE_NEWTON_MAX_PARAMS` parameters).

    NC1 is 0 by convention for ``samples`` = 1 (no within-class spread).
    """
    lam = _weight_decay_of(weight_decay, lam)
    classes, depth, width, eta, steps, samples = _check_gd(classes, depth, width, eta, steps, samples)
    scale = check_float("scale", scale, minimum=0.0, strict_min=True)
    num_times = check_int("num_times", num_times, minimum=2)
    rank_rtol = check_fraction("rank_rtol", rank_rtol)
    dnc_rtol = check_float("dnc_rtol", dnc_rtol, minimum=0.0)
    seeds = _check_seed_list(seeds)
    grid = step_grid(steps, num_times)
    L_dnc = dnc_loss(classes, depth, lam_H=lam, lam_W=lam, samples=samples)
    best = relu_blocks(classes, depth, lam_H=lam, lam_W=lam, samples=samples)
    model, factors = _starts(classes, depth, width, [scale], seeds, samples, lam)
    polish_steps = check_int("polish_steps", polish_steps, minimum=1)
    grad_tol = check_float("grad_tol", grad_tol, minimum=0.0, strict_min=True)
    kinks = check_bool("kinks", kinks)
    records = _record_runs(model, factors, grid, eta=eta, rank_rtol=rank_rtol)
    pol = polished_runs(model, records[-1], max_steps=polish_steps, grad_tol=grad_tol, kinks=kinks)
    attrs = {
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
        "best_construction": f"{best.category} {' '.join(map(str, best.blocks))}",
        "polish": POLISH_NAME,
        "polish_steps": int(polish_steps),
        "grad_tol": float(grad_tol),
        "kink_stage": int(kinks),
        "face_newton": int(kinks and face_newton_runs(model)),
    }
    ds = _runs_dataset(records[:-1], seeds, grid, classes, L_dnc, best, dnc_rtol, attrs)
    return ds.assign(_polished_variables(pol, grad_tol))


def _polished_variables(pol: dict, grad_tol: float) -> dict:
    """The polished-point variables of :func:`ldufm_runs` (dims seed, layer)."""
    runs = (D.SEED,)
    lay = (D.SEED, D.LAYER)
    return {
        "polished_objective": xr.Variable(
            runs, pol["objective"], {"long_name": "objective after the L-BFGS polish"}
        ),
        "fit": xr.Variable(runs, pol["fit"], {"long_name": "mean squared loss 1/(2Kn)||Z - Y||^2, polished"}),
        "regularisation": xr.Variable(
            runs, pol["regularisation"], {"long_name": "weight-decay penalty (lam/2) sum ||F||^2, polished"}
        ),
        "grad_norm": xr.Variable(
            runs, pol["grad_norm"], {"long_name": "norm of the full gradient at the polished point"}
        ),
        "grad_norm_gd": xr.Variable(
            runs, pol["grad_norm_start"], {"long_name": "norm of the full gradient at the GD end"}
        ),
        "clarke_gap": xr.Variable(
            runs,
            pol["clarke_gap"],
            {"long_name": CLARKE_NAME, "units": "1"},
        ),
        "converged": xr.Variable(runs, pol["converged"], {"long_name": f"clarke_gap < {grad_tol:g}"}),
        "kink_count": xr.Variable(
            runs,
            pol["kink_count"],
            {"long_name": KINK_NAME},
        ),
        "polished_rank_layer": xr.Variable(
            lay,
            pol["rank"],
            {"long_name": "class-mean rank of the polished point at the largest spectral gap"},
        ),
        "rank_gap": xr.Variable(
            lay, pol["gap"], {"long_name": "sigma_r / sigma_(r+1) at that rank (the largest gap)"}
        ),
    }


def _runs_dataset(
    records, seeds, grid, classes: int, L_dnc: float, best, dnc_rtol: float, attrs: dict
) -> xr.Dataset:
    """The :func:`ldufm_runs` dataset from the records of :func:`_record_runs`.

    A run ends in DNC when every layer's class means have rank K and its final
    objective is within ``dnc_rtol`` of ``L_dnc``.
    """
    names, objs, fits, regs, svs, ranks, nc1s, means = records
    eta, rank_rtol = attrs["eta"], attrs["rank_rtol"]
    finals = objs[:, -1]
    is_dnc = np.all(ranks[:, -1] == classes, axis=-1) & (np.abs(finals - L_dnc) <= dnc_rtol * L_dnc)
    rank_name = f"numerical rank of the class means (sigma_i > {rank_rtol:g} sigma_1)"
    nc1_name = "NC1 = tr(S_W S_B^+)/K"
    runs, run_t = (D.SEED,), (D.SEED, D.TIME)
    sv_name = "singular values of each layer's class-mean matrix"
    construction = f"{best.category} {' '.join(map(str, best.blocks))}"
    variables = {
        "objective": (run_t, objs, {"long_name": "L-DUFM objective (mean squared loss + weight decay)"}),
        "fit_t": (run_t, fits, {"long_name": "mean squared loss 1/(2Kn)||Z - Y||^2 (the fit) over training"}),
        "regularisation_t": (
            run_t,
            regs,
            {"long_name": "weight-decay penalty (lam/2) sum ||F||^2 (the regularisation) over training"},
        ),
        "sv_layer_t": (run_t + (D.LAYER, D.SV), svs, {"long_name": sv_name}),
        "rank_layer_t": (run_t + (D.LAYER,), ranks, {"long_name": rank_name}),
        "nc1_layer_t": (run_t + (D.LAYER,), nc1s, {"long_name": nc1_name}),
        "sv_layer": (runs + (D.LAYER, D.SV), svs[:, -1], {"long_name": sv_name + " at the end"}),
        "rank_layer": (runs + (D.LAYER,), ranks[:, -1], {"long_name": rank_name + " at the end"}),
        "nc1_layer": (runs + (D.LAYER,), nc1s[:, -1], {"long_name": nc1_name + " at the end"}),
        "final_objective": (runs, finals),
        "class_means": (
            runs + (D.LAYER, "row", "col"),
            means,
            {"long_name": "class-mean matrix M of every layer at the end (rows: units; cols: classes)"},
        ),
        "gram": (
            runs + (D.LAYER, "col", "col2"),
            np.einsum("slrc,slrd->slcd", np.nan_to_num(means), np.nan_to_num(means)),
            {"long_name": "Gram matrix M^T M of every layer's class means at the end (class inner products)"},
        ),
        "is_dnc": (runs, is_dnc),
        "L_DNC": ((), L_dnc, {"long_name": "closed-form best DNC loss"}),
        "L_best": ((), best.loss, {"long_name": f"best SRG/DNC construction: {construction}"}),
    }
    coords = {
        D.SEED: np.asarray(seeds, int),
        D.TIME: (grid * eta, {"long_name": "t = steps x learning rate"}),
        "step": (D.TIME, grid, {"long_name": "gradient-descent step"}),
        D.LAYER: list(names),
        D.SV: np.arange(classes),
        "row": np.arange(means.shape[2]),
        "col": np.arange(classes),
        "col2": np.arange(classes),
    }
    return grid_dataset(coords, variables, attrs)


def _check_seed_list(seeds) -> list[int]:
    if isinstance(seeds, (int, np.integer, float, str)):
        raise TypeError(
            f"seeds must be a sequence of seeds (one run per seed); got {seeds!r}. "
            "For n seeds pass seeds=range(n)."
        )
    seeds = [check_int("seeds[i]", s, minimum=0) for s in seeds]
    if not seeds:
        raise ValueError("seeds must name at least one seed; got an empty sequence.")
    return seeds


def _record_runs(model: DeepUFM, factors, grid, *, eta, rank_rtol):
    """GD (:func:`_gd_batch`) on ``model`` from the stacked starts ``factors``, with
    layer statistics at every record step of ``grid``.

    Returns ``(layer names, objective (seed, time), sv (seed, time, layer, sv),
    rank (seed, time, layer), nc1 (seed, time, layer), final factors)``; raises
    :class:`DivergenceError` at the first record with a non-finite objective.
    """
    counts = jnp.asarray(np.diff(grid, prepend=0))
    final, recs, _ = _gd_batch(model, factors, jnp.asarray(eta, model.dtype), counts, True)
    objs = np.asarray(recs["objective"])
    finite = np.all(np.isfinite(objs), axis=0)
    if not np.all(finite):
        done = int(grid[np.argmin(finite)])
        raise DivergenceError(
            f"gradient descent diverged by step {done} (t = {done * eta:g}) "
            f"with learning rate eta = {eta:g}; use a smaller eta or init scale."
        )
    split = jax.vmap(jax.vmap(lambda fs: (model.data_loss(fs), model.penalty(fs))))(list(recs["factors"]))
    fits, regs = (np.asarray(a, float) for a in split)
    kept = [np.asarray(F) for F in recs["factors"]]
    K, n = model.classes, model.samples_per_class
    per = [
        [_layer_stats([F[k, i] for F in kept], K, n, rank_rtol) for i in range(len(grid))]
        for k in range(objs.shape[0])
    ]
    names = per[0][0][0]
    svs, ranks, nc1s = (np.asarray([[p[j] for p in run] for run in per]) for j in (1, 2, 3))
    means = np.stack([_class_means([F[k, -1] for F in kept], K) for k in range(objs.shape[0])])
    return names, objs, fits, regs, svs, ranks, nc1s, means, final


def _class_means(factors, classes: int) -> np.ndarray:
    """Class-mean matrix of every layer (layer, row, class), rows padded with NaN to
    the widest layer (Z has K rows, the hidden layers d)."""
    _, mats = layer_representations(factors)
    means = [np.asarray(X).reshape(X.shape[0], classes, -1).mean(axis=-1) for X in mats]
    rows = max(M.shape[0] for M in means)
    return np.stack([np.pad(M, ((0, rows - M.shape[0]), (0, 0)), constant_values=np.nan) for M in means])


SWEEP_PARAMS = ("weight_decay", "lam", "width", "scale", "classes")
_SWEEP_ATTRS = {"weight_decay": "lam", "scale": "init_scale"}  # the dataset attr each one sets


@computes
def ldufm_sweep(param: str, values: Sequence, *, progress: bool = False, **kwargs) -> xr.Dataset:
    """:func:`ldufm_runs` over ``param`` (one of ``"weight_decay"`` or its alias
    ``"lam"``, ``"width"``, ``"scale"`` (the init scale) or ``"classes"``),
    concatenated along it (the dim is named ``param``). ``progress``: a bar over
    the values (one tick per :func:`ldufm_runs` call: its GD and its polish).

    Over ``classes`` the singular-value axis ``sv`` and the matrix axes ``row``,
    ``col``, ``col2`` are padded with NaN to the largest size; over ``width`` the
    matrices' ``row`` axis is. Where the attribute ``face_newton`` differs over the
    values (a width sweep across :data:`FACE_NEWTON_MAX_PARAMS`), it becomes a
    variable along ``param``."""
    param = check_choice("param", param, SWEEP_PARAMS)
    values = list(values)
    if not values:
        raise ValueError(f"values must hold at least one {param}; got an empty list.")
    progress = check_bool("progress", progress)
    from tqdm import tqdm

    bar = tqdm(values, desc=f"L-DUFM runs over {param}", unit="value", disable=not progress, leave=False)
    parts = []
    for v in bar:
        bar.set_postfix_str(f"{param} = {v}")
        parts.append(ldufm_runs(**{**kwargs, param: v}))
    if param == "classes":
        pad = {d: np.arange(max(p.sizes[d] for p in parts)) for d in ("sv", "row", "col", "col2")}
        parts = [p.reindex(pad) for p in parts]
    face = [int(p.attrs["face_newton"]) for p in parts]
    face_varies = len(set(face)) > 1  # then a variable along param, not an attr
    for p in parts:
        p.attrs.pop(_SWEEP_ATTRS.get(param, param), None)
        p.attrs.pop("best_construction", None)
        if face_varies:
            p.attrs.pop("face_newton")
    out = xr.concat(
        parts,
        dim=param,
        data_vars="all",
        coords="minimal",
        join="outer",  # over width the matrices' row axis differs: padded with NaN
        combine_attrs="drop_conflicts",
    )
    if face_varies:
        out["face_newton"] = xr.Variable(
            param, np.asarray(face), {"long_name": "the kink stage's face Newton ran (model size cap)"}
        )
    return out.assign_coords({param: np.asarray(values)})
