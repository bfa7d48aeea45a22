"""Names shared by every dataset svflow writes, and what each name means.

Both engines (the reduced ODE and full-parameter gradient descent) emit one
layout, so analysis code and figures never care which engine produced a
dataset. Use these constants instead of string literals.

:data:`VOCABULARY` maps every variable and coordinate name of svflow's
datasets to its ``(long_name, units)``, once; :func:`attrs` turns a name into
its attrs. ``svflow._dataset.grid_dataset``, the one dataset builder, looks the
attributes up, so a study names only the dims of its variables; a variable
whose meaning is particular to one dataset (e.g. a ratio at a stated horizon)
passes its own ``long_name``, which wins over the table.
"""

# --- dimensions
TIME = "time"  # gradient-flow time t = steps x step size
MODE = "mode"  # mode index i = 0..K-1 of the group's spectral basis (mode 0 = all-ones direction)
FACTOR = "factor"  # factor index l = 0..N-1 (0 = features H, N-1 = W_L)
SV = "sv"  # index of a singular value, sorted in decreasing order
LAYER = "layer"  # weight layer l = 1..L (full engine, per-factor spectra)

# --- study dimensions (grids over settings; see svflow._dataset.grid_dataset)
DEPTH = "depth"  # depth L = number of weight matrices (N = L + 1 factors)
CLASSES = "classes"  # number of classes K
SEED = "seed"  # random seed of an initialisation
SCALE = "scale"  # initialisation scale

# --- data variables
LAM = "lam"  # logit eigenvalues in the group's spectral frame, (time, mode)
S = "s"  # factor singular values in the spectral frame, (time, factor, mode)
SIGMA = "sigma"  # singular values of the centred logits, (time, sv)
SIGMA_FACTOR = "sigma_factor"  # singular values of every factor, (time, factor, sv)
LOSS = "loss"  # data loss (mean over samples), (time,)
OBJECTIVE = "objective"  # loss + weight-decay penalty, (time,)
MARGIN = "margin"  # min_y Z[y, y] - max_{c != y} Z[c, y], (time,)
RANK = "rank"  # numerical rank of the centred logits, (time,)
DRIFT = "frame_drift"  # ||offdiag(U^T Z U)||_F (full engine, spectral start)

# --- the vocabulary: name -> (long_name, units); units "1" = dimensionless
_DEPTH_TEXT = "depth L (number of weight matrices; N = L + 1 factors)"
VOCABULARY: dict[str, tuple[str, str]] = {
    # dimensions and coordinates
    TIME: ("gradient-flow time", "1"),
    MODE: ("mode index in the group's spectral basis (Walsh or character basis; 0 = all-ones)", "1"),
    FACTOR: ("factor index (0 = features H, N-1 = last weight W_L)", "1"),
    SV: ("singular value index", "1"),
    DEPTH: (_DEPTH_TEXT, "1"),
    CLASSES: ("number of classes K", "1"),
    SEED: ("random seed", "1"),
    "factors": ("N = L + 1 factors", "1"),
    "width": ("width d of the hidden factors", "1"),
    "eps": ("initial scale epsilon", "1"),
    "log_t": ("tau = log(1 + t)", "1"),
    "step": ("gradient-descent step k (t = k eta)", "1"),
    "record_time": ("t = step x eta of each record", "1"),
    # trajectories (both engines)
    LAM: ("logit eigenvalue in the group's spectral frame (U^T Z U diagonal)", "1"),
    S: ("factor singular value in the group's spectral frame", "1"),
    SIGMA: ("singular value of the centred logits (decreasing)", "1"),
    SIGMA_FACTOR: ("singular value of each factor", "1"),
    LOSS: ("mean data loss", "1"),
    OBJECTIVE: ("loss + (wd/2) sum_l ||W_l||_F^2", "1"),
    MARGIN: ("min_y Z[y,y] - max_{c != y} Z[c,y]", "1"),
    RANK: ("numerical rank of the centred logits", "1"),
    DRIFT: ("||offdiag(U^T Z U)||_F (frame drift)", "1"),
    "norm_sq": ("squared Frobenius norm of each factor", "1"),
    "normalised_margin": ("margin / (sum_l ||A_l||_F^2)^(N/2)", "1"),
    "num_steps": ("solver step attempts (accepted + rejected)", "1"),
    "result": ("diffrax result code (0 = success)", "1"),
    "solver_result": ("diffrax result code (0 = success)", "1"),
    # outcomes (svflow.outcome, basin maps)
    "outcome": ("t -> infinity outcome", "1"),
    "support": ("mode in the limit's support", "1"),
    "limit": ("limiting direction lambda / max lambda (KKT point on the support)", "1"),
    "kkt_residual": ("relative KKT stationarity residual of the limit", "1"),
    "rate_ratio": ("rho_i = (d log lambda_i / d sigma) / (that of the largest mode)", "1"),
    "log_t_end": ("horizon reached, tau = log(1 + t)", "1"),
    "lam0": ("lambda(0)", "1"),
    "lam_end": ("lambda at the horizon reached", "1"),
    "decided": ("outcome decided", "1"),
    # phase maps
    "sv_ratio": ("sigma_(K-1) / sigma_1 of the centred logits", "1"),
    "reached_nc": ("all K-1 non-zero singular values within nc_tol of each other", "1"),
    "diverged": ("the loss became non-finite", "1"),
    "rank_t": ("rank over the record grid", "1"),
    "sv_ratio_t": ("sigma_(K-1)/sigma_1 over the record grid", "1"),
    # softmax codes
    "rho": ("one-vs-rest margin of the rank-r class embedding", "1"),
    "rho_ratio": ("rho / rho*(K, r)", "1"),
    "rho_star": ("rho*(K, r) (exact or best found)", "1"),
    "gram_distance": ("RMS Gram difference to the best code (min over relabellings)", "1"),
    "outcome_rank": ("support size of the t -> infinity limit (svflow.outcome)", "1"),
    "limit_rho_ratio": ("rho / rho* at the limiting (KKT) direction", "1"),
    "limit_gamma": ("normalised margin of the KKT point", "1"),
}


def attrs(name: str, **extra) -> dict:
    """The attrs of dataset name ``name``: ``long_name`` and ``units`` from :data:`VOCABULARY`
    (none for a name the table does not hold), then ``extra`` (which wins)."""
    entry = VOCABULARY.get(name)
    base = {} if entry is None else {"long_name": entry[0], "units": entry[1]}
    return {**base, **extra}


TIME_ATTRS = attrs(TIME, description="t = steps x step size (gradient flow of the mean-reduced loss)")


def text(values):
    """Text labels for a dataset variable or coordinate: a numpy array of Python ``str`` (object dtype).

    Variable-length strings: netCDF stores them as strings, and zarr format 3 has
    a specified data type for them (numpy's fixed-width ``<U`` strings have none,
    so every ``to_zarr`` of them warns ``UnstableSpecificationWarning``).
    """
    import numpy as np

    return np.array([str(v) for v in np.asarray(values).ravel()], dtype=object).reshape(np.shape(values))
