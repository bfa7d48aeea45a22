"""Names shared by every dataset svflow writes.

Both engines (the reduced ODE and full-parameter gradient descent) emit one
layout, so analysis code and figures never care which engine produced a
dataset. Use these constants instead of string literals.
"""

# --- dimensions
TIME = "time"  # gradient-flow time t = steps x step size
MODE = "mode"  # Walsh mode index i = 0..K-1 (mode 0 = all-ones direction)
FACTOR = "factor"  # factor index l = 0..N-1 (0 = features H, N-1 = W_L)
SV = "sv"  # index of a singular value, sorted in decreasing order
LAYER = "layer"  # weight layer l = 1..L (full engine, per-factor spectra)

# --- study dimensions (grids over settings; see svflow._dataset.grid_dataset)
DEPTH = "depth"  # depth L = number of weight matrices (N = L + 1 factors)
CLASSES = "classes"  # number of classes K
SEED = "seed"  # random seed of an initialisation
SCALE = "scale"  # initialisation scale

# --- data variables
LAM = "lam"  # logit eigenvalues in the Walsh frame, (time, mode)
S = "s"  # factor singular values in the Walsh frame, (time, factor, mode)
SIGMA = "sigma"  # singular values of the centred logits, (time, sv)
SIGMA_FACTOR = "sigma_factor"  # singular values of every factor, (time, factor, sv)
LOSS = "loss"  # data loss (mean over samples), (time,)
OBJECTIVE = "objective"  # loss + weight-decay penalty, (time,)
MARGIN = "margin"  # min_y Z[y, y] - max_{c != y} Z[c, y], (time,)
RANK = "rank"  # numerical rank of the centred logits, (time,)
DRIFT = "frame_drift"  # ||offdiag(U^T Z U)||_F (full engine, spectral start)

TIME_ATTRS = {
    "long_name": "gradient-flow time",
    "units": "1",
    "description": "t = steps x step size (gradient flow of the mean-reduced loss)",
}


def text(values):
    """Text labels for a dataset variable or coordinate: a numpy array of Python ``str`` (object dtype).

    Variable-length strings: netCDF stores them as strings, and zarr format 3 has
    a specified data type for them (numpy's fixed-width ``<U`` strings have none,
    so every ``to_zarr`` of them warns ``UnstableSpecificationWarning``).
    """
    import numpy as np

    return np.array([str(v) for v in np.asarray(values).ravel()], dtype=object).reshape(np.shape(values))
