r"""svflow: singular-value flows of deep linear networks and deep UFMs.

Gradient flow of the mean loss of a deep unconstrained features model with K
classes and depth L (L weight matrices, N = L + 1 factors) has exact
solutions in the Walsh-Hadamard frame: the logit eigenvalues lambda_i evolve
by a K-dimensional ODE. svflow integrates that reduced ODE, trains the full
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
``batch_dims``); ``group="cyclic"`` (the default when K is not a power of
two) runs any K in the character basis of Z_K.

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


def _find_version() -> str:
    """The version of this svflow: its checkout's pyproject.toml, else the installed metadata.

    A source checkout (editable install, or on ``PYTHONPATH``) reads its own
    ``pyproject.toml``, so the version never comes from another installed copy's
    stale metadata; an installed wheel has no ``pyproject.toml`` beside it.
    """
    from importlib.metadata import PackageNotFoundError, version
    from pathlib import Path

    pyproject = Path(__file__).resolve().parent.parent / "pyproject.toml"
    if pyproject.is_file():
        import tomllib

        project = tomllib.loads(pyproject.read_text(encoding="utf-8")).get("project", {})
        if project.get("name") == "svflow" and "version" in project:
            return str(project["version"])
    try:
        return version("svflow")
    except PackageNotFoundError:
        return "0+unknown"


__version__ = _find_version()

# --- the reduced engine: starts, one run or a batch
from ._groups import Group as Group
from ._groups import group_softmax_eigenvalues as group_softmax_eigenvalues
from ._groups import resolve_group as resolve_group
from ._groups import spectral_basis as spectral_basis
from ._integrate import IntegrationError as IntegrationError
from ._integrate import log_times as log_times
from ._simulate import factor_values as factor_values
from ._simulate import simulate as simulate
from ._start import Start as Start
from ._start import spectral_init as spectral_init
from ._walsh import hadamard as hadamard
from ._walsh import margins as margins
from ._walsh import softmax_eigenvalues as softmax_eigenvalues
from ._walsh import walsh_transform as walsh_transform

# --- datasets
from ._dataset import check_writable as check_writable
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

# --- outcomes, limits and codes
from ._analysis.asymptotics import MaxMarginPoint as MaxMarginPoint
from ._analysis.asymptotics import asymptotic_direction as asymptotic_direction
from ._analysis.asymptotics import code_table as code_table
from ._analysis.asymptotics import kkt_point as kkt_point
from ._analysis.asymptotics import max_margin_direction as max_margin_direction
from ._analysis.asymptotics import normalised_margin as normalised_margin
from ._analysis.codes import SoftmaxCode as SoftmaxCode
from ._analysis.codes import exact_rho as exact_rho
from ._analysis.codes import softmax_code as softmax_code
from ._outcome import Criterion as Criterion
from ._outcome import outcome as outcome
from ._analysis.classify import OutcomeRule as OutcomeRule
from ._analysis.classify import classify as classify

# --- sweeps
from ._sweep.runner import SweepInterrupted as SweepInterrupted
from ._sweep.runner import SweepSpecError as SweepSpecError
from ._sweep.runner import cell_key as cell_key
from ._sweep.runner import open_sweep as open_sweep
from ._sweep.runner import sweep as sweep

# --- public sub-namespaces
from . import explicit as explicit
from . import studies as studies

__all__ = [
    "Criterion",
    "DeepUFM",
    "DivergenceError",
    "Group",
    "IntegrationError",
    "MaxMarginPoint",
    "OutcomeRule",
    "SoftmaxCode",
    "Start",
    "SweepInterrupted",
    "SweepSpecError",
    "asymptotic_direction",
    "cell_key",
    "check_writable",
    "classify",
    "code_table",
    "compare",
    "exact_rho",
    "factor_values",
    "explicit",
    "flow",
    "group_softmax_eigenvalues",
    "hadamard",
    "kkt_point",
    "load",
    "log_times",
    "margins",
    "max_margin_direction",
    "model_from_arrays",
    "normalised_margin",
    "open_sweep",
    "outcome",
    "random_model",
    "resolve_group",
    "save",
    "simulate",
    "softmax_code",
    "softmax_eigenvalues",
    "spectral_basis",
    "spectral_init",
    "spectral_model",
    "studies",
    "sweep",
    "train",
    "walsh_transform",
]


def __getattr__(name: str):
    """Names of svflow 0.1 that moved to a sub-namespace in 0.2: an error that says where they are."""
    for sub in (studies, explicit):
        if name in sub.__all__:
            raise AttributeError(
                f"svflow.{name} moved to {sub.__name__}.{name} in svflow 0.2 (CHANGELOG.md); "
                f"use {sub.__name__}.{name}."
            )
    if name == "build_dataset":
        from ._dataset import build_dataset

        return build_dataset
    raise AttributeError(f"module 'svflow' has no attribute {name!r}")
