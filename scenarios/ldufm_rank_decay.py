"""Fig. 3 (middle) of Sukenik, Lampert & Mondelli (2024): numerical rank at the end
against weight decay, K = 10, L = 4.

    python scenarios/ldufm_rank_decay.py --quick --out rank_decay_quick.nc  # 3 seeds, 5e4 steps
    python scenarios/ldufm_rank_decay.py --out rank_decay.nc                # 10 seeds, 2e5 steps

Width 30, learning rate 0.5, n = 1, init scale 1.0, every factor's weight
decay = 0.001 .. 0.016. Prints every run's ranks per layer and final
objective / L_DNC, and the fraction ending in DNC per weight decay.
"""

from __future__ import annotations

from ldufm_gd_summary import runs_summary

from svflow.explicit._ldufm_studies import study_main

if __name__ == "__main__":
    raise SystemExit(study_main("ldufm_fig3_middle", runs_summary, doc=__doc__))
