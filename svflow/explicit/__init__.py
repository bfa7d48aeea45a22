"""The explicit low-rank bias: closed forms and constructions.

With weight decay the global minimisers of deep unconstrained feature models
are low rank, and deep neural collapse (DNC) stops being optimal. This
namespace holds the closed forms and constructions of

- the deep ReLU L-DUFM of Súkeník, Lampert & Mondelli (NeurIPS 2024,
  arXiv 2405.14468): :func:`dnc_loss`, :func:`srg_loss`, :func:`srg_rho`,
  :func:`srg_matrices`, :func:`srg_factors`, :func:`dnc_factors`,
  :func:`relu_blocks` (block networks of SRG and DNC blocks),
  :func:`relu_forward`, :func:`network_objective`, :func:`construction_loss`,
  :func:`construction_rho`, :func:`scale_loss`, :func:`balanced_scales`;
- the deep linear model with cross-entropy and weight decay: :func:`ce_dnc_loss`,
  :func:`ce_pair_loss`, :func:`ce_block_loss`, :func:`ce_code_loss`,
  :func:`ce_blocks`, :func:`ce_codes`, :func:`ce_objective`,
  :func:`hypercube_code`, :func:`polygon_code`, :func:`ldufm_decay`;
- the maps over (K, L) built from them: :func:`explicit_phase_map`,
  :func:`dnc_thresholds`, :func:`weight_decay_endpoints`,
  :func:`srg_construction_layers`, :func:`srg_ratio_curve`;
- direct minimisation of the CE model beside the constructions:
  :func:`ce_minimum`, :func:`ce_direct_table`;
- gradient descent on the L-DUFM and its layer statistics: :func:`ldufm_runs`,
  :func:`ldufm_sweep`, :func:`ldufm_gd_batch`, :func:`ldufm_optimality_map`,
  :func:`layer_representations`, :func:`class_mean_spectra`, :func:`nc1`,
  the L-BFGS polish of the end points :func:`polish`, :func:`gap_rank`, :func:`kink_count`,
  :func:`clarke_gap` (the stationarity measure at ReLU kinks), and
  :func:`map_parameters` (the stored best factors of a map cell), :func:`repolish_map`.

The L-DUFM's gradient descent runs are :class:`svflow.DeepUFM` models (ReLU,
squared loss, weight decay) trained by the loop of :func:`svflow.train`, and
:func:`polish` polishes a :class:`svflow.DeepUFM`'s parameters. Their weight
decay is ``weight_decay`` (the same on H and every W_l); ``lam``, the paper's
lambda, is accepted as its alias (pass one of them) and names the datasets'
attribute and sweep dimension. The closed forms take ``lam_H`` and ``lam_W``
(one decay on H, one per weight matrix).
"""

from .._checks import public_names as _public_names
from ._ce_forms import ce_block_loss as ce_block_loss
from ._ce_forms import ce_blocks as ce_blocks
from ._ce_forms import ce_code_loss as ce_code_loss
from ._ce_forms import ce_codes as ce_codes
from ._ce_forms import ce_dnc_loss as ce_dnc_loss
from ._ce_forms import ce_objective as ce_objective
from ._ce_forms import ce_pair_loss as ce_pair_loss
from ._ce_forms import hypercube_code as hypercube_code
from ._ce_forms import polygon_code as polygon_code
from ._ldufm import clarke_gap as clarke_gap
from ._ldufm import class_mean_spectra as class_mean_spectra
from ._ldufm import gap_rank as gap_rank
from ._ldufm import kink_count as kink_count
from ._ldufm import layer_representations as layer_representations
from ._ldufm import ldufm_gd_batch as ldufm_gd_batch
from ._ldufm import ldufm_runs as ldufm_runs
from ._ldufm import ldufm_sweep as ldufm_sweep
from ._ldufm import nc1 as nc1
from ._ldufm import polish as polish
from ._ldufm_forms import SRGMatrices as SRGMatrices
from ._ldufm_forms import balanced_scales as balanced_scales
from ._ldufm_forms import construction_loss as construction_loss
from ._ldufm_forms import construction_rho as construction_rho
from ._ldufm_forms import dnc_factors as dnc_factors
from ._ldufm_forms import dnc_loss as dnc_loss
from ._ldufm_forms import ldufm_decay as ldufm_decay
from ._ldufm_forms import network_objective as network_objective
from ._ldufm_forms import relu_blocks as relu_blocks
from ._ldufm_forms import relu_forward as relu_forward
from ._ldufm_forms import scale_loss as scale_loss
from ._ldufm_forms import srg_factors as srg_factors
from ._ldufm_forms import srg_loss as srg_loss
from ._ldufm_forms import srg_matrices as srg_matrices
from ._ldufm_forms import srg_rho as srg_rho
from ._ldufm_map import ldufm_optimality_map as ldufm_optimality_map
from ._ldufm_map import map_parameters as map_parameters
from ._ldufm_map import repolish_map as repolish_map
from ._maps import CEMinimum as CEMinimum
from ._maps import ce_direct_table as ce_direct_table
from ._maps import ce_minimum as ce_minimum
from ._maps import dnc_thresholds as dnc_thresholds
from ._maps import explicit_phase_map as explicit_phase_map
from ._maps import srg_construction_layers as srg_construction_layers
from ._maps import srg_ratio_curve as srg_ratio_curve
from ._maps import weight_decay_endpoints as weight_decay_endpoints
from ._shared import BlockChoice as BlockChoice

__all__ = _public_names(globals(), __name__)
"""The public names: every name bound above (the imports are the one list)."""
