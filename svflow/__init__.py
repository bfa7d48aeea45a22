r"""svflow: singular-value flows of deep linear networks and deep UFMs.

Gradient flow of the mean loss of a deep unconstrained features model with K
classes and depth L (L weight matrices, N = L + 1 factors) has exact
solutions in a spectral frame, the real character basis of a finite abelian
group of order K (``svflow.Walsh`` for K = 2^m, ``svflow.Cyclic`` or
``svflow.Product`` for any K): the logit eigenvalues lambda_i evolve by a
K-dimensional ODE. svflow integrates that reduced ODE, trains the full
model by gradient descent (time t = steps x step size) for comparison, and
maps, classifies and sweeps the outcomes. Results are xarray datasets.

Where to start
--------------
One run of the reduced ODE, then its t -> infinity outcome::

    import svflow
    start = svflow.spectral_init(8, 4, scale=1e-2, seed=0)   # K = 8, L = 4
    ds = svflow.simulate(8, 4, init=start)                    # t up to 1e8
    svflow.save(ds, "run.nc")         # plain netCDF; svflow.load("run.nc")
    lim = svflow.outcome(8, 4, init=start)  # 0 = NC, r = support size, -1 = undecided
    print(int(lim["outcome"]), lim["limit"].values)

A batch of starts is one call (``init`` with leading dims named by
``batch_dims``); ``group=svflow.Cyclic(K)`` (the default when K is not a
power of two; the string ``"cyclic"`` also works) runs any K in the character
basis of Z_K.

The full model from a random start, by gradient descent::

    model = svflow.random_model(8, depth=4, width=32, key=0)
    ds = svflow.train(model, eta=0.1, t_end=1e3)

Which starts end where (certified outcomes over a grid of starts):
``svflow.studies.basin_map(8, [2, 4], eps, delta)``.
Any grid of your own, chunked, resumable and distributable, with
``svflow.sweep``; a cell function takes the cell's JAX key and coordinates
and returns arrays::

    import jax
    def cell(key, eps, depth):
        return {"total": eps * jax.random.normal(key, (depth + 1,)).sum()}
    ds = svflow.sweep(cell, {"eps": [0.1, 0.2], "depth": [1, 2]},
                      store="demo.zarr", chunk=2, static=("depth",))

Conventions: depth L = number of weight matrices; N = L + 1 factors
(features H, then W_1 .. W_L); mean-reduced losses; gradient-flow time.
``seed=`` is an integer for numpy draws (spectral_init, softmax_code);
``key=`` takes an integer seed or a ``jax.random`` key (JAX draws);
``seeds=`` is a sequence of seeds, one run each.

Namespaces
----------
``svflow`` holds the engines, starts, datasets, limits and codes, and sweeps;
``svflow.studies`` the studies built on them (basin maps, phase maps, code
studies, repulsion); ``svflow.explicit`` the closed forms and constructions
of the explicit low-rank bias (L-DUFM, cross-entropy with weight decay).

svflow computes in float64 (the reduced ODE runs over eight decades of time),
but only inside its own calls: every public function turns JAX's
``jax_enable_x64`` on for its duration and restores the caller's setting, so
importing svflow changes no global JAX configuration.
"""

from ._checks import public_names as _public_names

from ._dataset import svflow_version as _svflow_version

__version__ = _svflow_version()

# --- groups: the frames of spectral starts
from ._groups import Cyclic as Cyclic
from ._groups import Group as Group
from ._groups import Product as Product
from ._groups import Walsh as Walsh
from ._groups import margins as margins
from ._groups import softmax_eigenvalues as softmax_eigenvalues
from ._groups import spectral_basis as spectral_basis

# --- the reduced engine: starts, one run or a batch
from ._integrate import IntegrationError as IntegrationError
from ._integrate import Solver as Solver
from ._integrate import log_times as log_times
from ._simulate import factor_values as factor_values
from ._simulate import simulate as simulate
from ._start import Start as Start
from ._start import spectral_init as spectral_init

# --- datasets
from ._dataset import load as load
from ._dataset import save as save

# --- the full-parameter engine
from ._full.compare import compare as compare
from ._full.model import DeepUFM as DeepUFM
from ._full.model import model_from_arrays as model_from_arrays
from ._full.model import random_model as random_model
from ._full.model import spectral_model as spectral_model
from ._full.train import DivergenceError as DivergenceError
from ._full.train import train as train
from ._full.flow import flow as flow

# --- outcomes and their limits
from ._analysis.asymptotics import MaxMarginPoint as MaxMarginPoint
from ._analysis.asymptotics import code_table as code_table
from ._analysis.asymptotics import max_margin_direction as max_margin_direction
from ._outcome import Criterion as Criterion
from ._outcome import outcome as outcome

# --- sweeps
from ._sweep.runner import SweepInterrupted as SweepInterrupted
from ._sweep.runner import SweepSpecError as SweepSpecError
from ._sweep.runner import open_sweep as open_sweep
from ._sweep.runner import sweep as sweep

# --- public sub-namespaces
from . import explicit as explicit
from . import studies as studies

__all__ = _public_names(globals(), __name__)
"""The public names: every name bound above (the imports are the one list)."""
