"""Studies built on the engines: basin maps, phase maps, code studies, repulsion.

Each study runs a grid of starts through the public engines
(:func:`svflow.simulate` for the reduced ODE, :func:`svflow.train` for the full
model) and returns one ``xarray.Dataset``. For a grid too large for one
process, wrap a study's cell function in :func:`svflow.sweep`.

- Basins of neural collapse over the initial scale and spread of spectral
  starts: :func:`basin_map`, :func:`basin_width`, :func:`basin_start`,
  :func:`basin_cells` (a batch of starts, the cell of a stored map).
- Depth x width phase map of gradient descent from random starts:
  :func:`phase_map`, :func:`phase_cell`.
- Early-time repulsion of Walsh modes: :func:`repulsion`, :func:`log_ratio_rate`.
- Convergence to softmax codes: :func:`code_convergence`,
  :func:`code_convergence_study`, :func:`code_winner_table`,
  :func:`random_start_code_study`, and the tools they use: the supports of a
  group's frame (:func:`supports`), the best softmax codes
  (:func:`softmax_code`, :class:`SoftmaxCode`, :func:`exact_rho`), the class
  geometry (:func:`class_embedding`, :func:`gram_distance`,
  :func:`one_vs_rest_margin`) and the max-margin KKT points
  (:func:`kkt_point`, :func:`asymptotic_direction`, :func:`normalised_margin`).
- A real network on real data (a ReLU backbone under a deep linear head,
  trained by Adam on the scikit-learn digits or any ``(X, y)``):
  :func:`realdata_study`, :func:`digits_data`, :func:`prepare_data`,
  :class:`HeadNet`, :func:`train_adam`, :func:`train_flow`, and its metrics
  :func:`feature_metrics`, :func:`class_mean_sigma`, :func:`nc1`.
- The finite-horizon classifier of a dataset of trajectories or of one
  trajectory: :func:`classify`, :class:`OutcomeRule`, :func:`classify_trajectory`.
"""

from .._analysis.asymptotics import asymptotic_direction as asymptotic_direction
from .._analysis.asymptotics import kkt_point as kkt_point
from .._analysis.asymptotics import normalised_margin as normalised_margin
from .._analysis.asymptotics import supports as supports
from .._analysis.classify import OutcomeRule as OutcomeRule
from .._analysis.classify import classify as classify
from .._analysis.classify import classify_trajectory as classify_trajectory
from .._analysis.codes import SoftmaxCode as SoftmaxCode
from .._analysis.codes import class_embedding as class_embedding
from .._analysis.codes import code_convergence as code_convergence
from .._analysis.codes import exact_rho as exact_rho
from .._analysis.codes import gram_distance as gram_distance
from .._analysis.codes import one_vs_rest_margin as one_vs_rest_margin
from .._analysis.codes import softmax_code as softmax_code
from .._checks import public_names as _public_names
from ._basins import basin_cells as basin_cells
from ._basins import basin_map as basin_map
from ._basins import basin_start as basin_start
from ._basins import basin_width as basin_width
from ._codes import code_convergence_study as code_convergence_study
from ._codes import code_winner_table as code_winner_table
from ._codes import random_start_code_study as random_start_code_study
from ._phase import phase_cell as phase_cell
from ._phase import phase_map as phase_map
from ._realdata import HeadNet as HeadNet
from ._realdata import class_mean_sigma as class_mean_sigma
from ._realdata import digits_data as digits_data
from ._realdata import feature_metrics as feature_metrics
from ._realdata import nc1 as nc1
from ._realdata import prepare_data as prepare_data
from ._realdata import realdata_study as realdata_study
from ._realdata import train_adam as train_adam
from ._realdata import train_flow as train_flow
from ._repulsion import log_ratio_rate as log_ratio_rate
from ._repulsion import repulsion as repulsion

__all__ = _public_names(globals(), __name__)
"""The public names: every name bound above (the imports are the one list)."""
