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
from ._asymptotics import MaxMarginPoint as MaxMarginPoint
from ._asymptotics import asymptotic_direction as asymptotic_direction
from ._asymptotics import code_table as code_table
from ._asymptotics import kkt_point as kkt_point
from ._asymptotics import max_margin_direction as max_margin_direction
from ._asymptotics import normalised_margin as normalised_margin
from ._asymptotics import walsh_supports as walsh_supports
from ._codes import SoftmaxCode as SoftmaxCode
from ._codes import class_embedding as class_embedding
from ._codes import code_convergence as code_convergence
from ._codes import exact_rho as exact_rho
from ._codes import gram_distance as gram_distance
from ._codes import one_vs_rest_margin as one_vs_rest_margin
from ._codes import softmax_code as softmax_code
from ._codes_study import code_convergence_study as code_convergence_study
from ._codes_study import code_winner_table as code_winner_table
from ._codes_study import random_start_code_study as random_start_code_study

from ._basins import basin_batch as basin_batch
from ._basins import basin_cell as basin_cell
from ._basins import basin_map as basin_map
from ._basins import basin_start as basin_start
from ._basins import basin_width as basin_width
from ._outcome import Criterion as Criterion
from ._outcome import outcome as outcome
from ._outcomes import OutcomeRule as OutcomeRule
from ._outcomes import classify as classify
from ._outcomes import classify_trajectory as classify_trajectory
from ._repulsion import log_ratio_rate as log_ratio_rate
from ._repulsion import repulsion as repulsion

# --- explicit low-rank bias (issue 5)
from ._explicit import BlockChoice as BlockChoice
from ._explicit import SRGMatrices as SRGMatrices
from ._explicit import balanced_scales as balanced_scales
from ._explicit import ce_block_loss as ce_block_loss
from ._explicit import ce_blocks as ce_blocks
from ._explicit import ce_code_loss as ce_code_loss
from ._explicit import ce_codes as ce_codes
from ._explicit import ce_dnc_loss as ce_dnc_loss
from ._explicit import ce_objective as ce_objective
from ._explicit import ce_pair_loss as ce_pair_loss
from ._explicit import construction_loss as construction_loss
from ._explicit import construction_rho as construction_rho
from ._explicit import dnc_factors as dnc_factors
from ._explicit import dnc_loss as dnc_loss
from ._explicit import hypercube_code as hypercube_code
from ._explicit import ldufm_decay as ldufm_decay
from ._explicit import network_objective as network_objective
from ._explicit import relu_blocks as relu_blocks
from ._explicit import relu_forward as relu_forward
from ._explicit import scale_loss as scale_loss
from ._explicit import srg_factors as srg_factors
from ._explicit import srg_loss as srg_loss
from ._explicit import srg_matrices as srg_matrices
from ._explicit import srg_rho as srg_rho
from ._explicit_maps import dnc_thresholds as dnc_thresholds
from ._explicit_maps import explicit_phase_map as explicit_phase_map
from ._explicit_maps import weight_decay_endpoints as weight_decay_endpoints
from ._ldufm import class_mean_spectra as class_mean_spectra
from ._ldufm import layer_representations as layer_representations
from ._ldufm import ldufm_runs as ldufm_runs
from ._ldufm import ldufm_sweep as ldufm_sweep
from ._ldufm import nc1 as nc1

# --- sweeps (issue 7)
from ._sweep import SweepSpecError as SweepSpecError
from ._sweep import cell_key as cell_key
from ._sweep import open_sweep as open_sweep
from ._sweep import sweep as sweep
