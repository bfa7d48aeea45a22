"""Fig. 5 of Sukenik, Lampert & Mondelli (2024): GD on the L-DUFM (ReLU, squared
loss, weight decay).

    python scenarios/ldufm_fig5.py --quick --out fig5_quick.nc
    python scenarios/ldufm_fig5.py --out fig5.nc

K = 3, 4, 5 at L = 4, weight decay 0.004, learning rate 0.5, width 16,
"""

from __future__ import annotations

from ldufm_gd_summary import runs_summary

from svflow.explicit._ldufm_studies import study_main

if __name__ == "__main__":
    raise SystemExit(study_main("ldufm_fig5", runs_summary, doc=__doc__))
