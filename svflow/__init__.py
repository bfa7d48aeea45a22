"""svflow: singular-value flows of deep linear networks and deep UFMs.

Importing svflow switches JAX to float64 (the reduced ODE runs over eight
decades of time); set the environment variable ``SVFLOW_NO_X64=1`` before
import to opt out.
"""

import os as _os

import jax as _jax

if _os.environ.get("SVFLOW_NO_X64", "0") != "1":
    _jax.config.update("jax_enable_x64", True)

from importlib.metadata import PackageNotFoundError as _PNF
from importlib.metadata import version as _version

try:
    __version__ = _version("svflow")
except _PNF:  # running from a source tree without installation
    __version__ = "0+unknown"

from ._dataset import build_dataset as build_dataset
from ._dataset import load as load
from ._dataset import save as save
from ._integrate import IntegrationError as IntegrationError
from ._integrate import log_times as log_times
from ._simulate import simulate as simulate
from ._start import Start as Start
from ._start import spectral_init as spectral_init
from ._walsh import hadamard as hadamard
from ._walsh import margins as margins
from ._walsh import softmax_eigenvalues as softmax_eigenvalues
from ._walsh import walsh_transform as walsh_transform

# --- full-parameter engine (issue 3)
from ._full import DeepUFM as DeepUFM
from ._full import model_from_arrays as model_from_arrays
from ._full import random_model as random_model
from ._full import spectral_model as spectral_model
from ._compare import compare as compare
from ._phase import phase_cell as phase_cell
from ._phase import phase_map as phase_map
from ._train import DivergenceError as DivergenceError
from ._train import train as train

# --- basins, outcomes, codes (issue 4)

from ._basins import basin_batch as basin_batch
from ._basins import basin_cell as basin_cell
from ._basins import basin_map as basin_map
from ._basins import basin_start as basin_start
from ._basins import basin_width as basin_width
from ._outcomes import OutcomeRule as OutcomeRule
from ._outcomes import classify as classify
from ._outcomes import classify_trajectory as classify_trajectory
from ._repulsion import log_ratio_rate as log_ratio_rate
from ._repulsion import repulsion as repulsion

# --- explicit low-rank bias (issue 5)

# --- sweeps (issue 7)
from ._sweep import SweepSpecError as SweepSpecError
from ._sweep import cell_key as cell_key
from ._sweep import open_sweep as open_sweep
from ._sweep import sweep as sweep
