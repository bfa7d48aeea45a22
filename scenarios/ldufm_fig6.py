"""Fig. 6 of Sukenik, Lampert & Mondelli (2024): GD on the L-DUFM (ReLU, squared
loss, weight decay).

    python scenarios/ldufm_fig6.py --quick --out fig6_quick.nc
    python scenarios/ldufm_fig6.py --out fig6.nc

K = 15 at L = 7, weight decay 0.004, learning rate 0.5, width 30, n = 1,
"""

from __future__ import annotations

from ldufm_gd_summary import runs_summary

from svflow.explicit._ldufm_studies import study_main

if __name__ == "__main__":
    raise SystemExit(study_main("ldufm_fig6", runs_summary, doc=__doc__))
