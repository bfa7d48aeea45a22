"""Fig. 2 of Sukenik, Lampert & Mondelli (2024): GD on the L-DUFM (ReLU, squared
loss, weight decay).

    python scenarios/ldufm_fig2.py --quick --out fig2_quick.nc
    python scenarios/ldufm_fig2.py --out fig2.nc

K = 10, L = 4, weight decay 0.004 on every factor, width 30, learning rate 0.5,
"""

from __future__ import annotations

from ldufm_gd_summary import runs_summary

from svflow.explicit._ldufm_studies import study_main

if __name__ == "__main__":
    raise SystemExit(study_main("ldufm_fig2", runs_summary, doc=__doc__))
