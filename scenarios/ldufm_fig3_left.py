"""Fig. 3 (left) of Sukenik, Lampert & Mondelli (2024): L_SRG / L_DNC against r.

    python scenarios/ldufm_fig3_left.py --quick --out fig3_left_quick.nc  # closed forms
    python scenarios/ldufm_fig3_left.py --out fig3_left.nc   # + built matrices (~1 min)

K = C(r, 2) classes, r = 4..12, L = 3, 4, 5, weight decay 0.001, 0.004 and
0.016 on every factor (the paper's weight decay for this panel is not in our
summary), n = 1. Prints the ratio per weight decay and depth; FULL also the
same ratio from the built matrices run through the ReLU network.
"""

from __future__ import annotations

from svflow.explicit._ldufm_studies import study_main


def summary(ds) -> str:
    lines = ["r: " + " ".join(f"{r:7d}" for r in ds["r"].values)]
    for lam in ds["lam"].values:
        for L in ds["depth"].values:
            row = ds["ratio"].sel(lam=lam, depth=L).values
            lines.append(f"weight decay {lam:g}, L = {L}: " + " ".join(f"{v:7.4f}" for v in row))
            if "ratio_network" in ds:
                net = ds["ratio_network"].sel(lam=lam, depth=L).values
                lines.append("   built matrices:  " + " ".join(f"{v:7.4f}" for v in net))
    return "\n".join(lines)


if __name__ == "__main__":
    raise SystemExit(study_main("ldufm_fig3_left", summary, doc=__doc__))
