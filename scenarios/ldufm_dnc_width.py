"""Fig. 3 (right) of Sukenik, Lampert & Mondelli (2024): fraction of GD runs ending in
DNC against width, K = 10, L = 4.

    python scenarios/ldufm_dnc_width.py --quick --out dnc_width_quick.nc  # 4 seeds, 5e4 steps
    python scenarios/ldufm_dnc_width.py --out dnc_width.nc                # 10 seeds, 2e5 steps

Weight decay 0.004 on every factor, learning rate 0.5, n = 1, init scale 1.0.
A run ends in DNC when every layer's class means have rank K (threshold
1e-3) and its objective is within 1e-2 (relative) of L_DNC.
"""

from __future__ import annotations

from ldufm_gd_summary import runs_summary

from svflow.explicit._ldufm_studies import study_main

if __name__ == "__main__":
    raise SystemExit(study_main("ldufm_fig3_right", runs_summary, doc=__doc__))
