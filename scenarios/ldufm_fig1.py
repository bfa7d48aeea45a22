"""Fig. 1 of Sukenik, Lampert & Mondelli (2024): the matrices of the SRG construction.

    python scenarios/ldufm_fig1.py --out fig1.nc

K = C(5, 2) = 10 classes (edges of K_5), L = 4, unit scale. Prints every
layer's class-mean matrix shape and numerical rank: M3 has rank r = 5, the
pre-activation of M4 (J - B^T B) rank 5, M4 (its ReLU, the Kneser adjacency)
rank K = 10. QUICK and FULL are the same (no training).
"""

from __future__ import annotations

from svflow.explicit._ldufm_studies import study_main


def summary(ds) -> str:
    return "\n".join(
        f"{name:7s} {int(ds['rows'].sel(layer=name))} x {ds.attrs['classes']}  "
        f"rank {int(ds['matrix_rank'].sel(layer=name))}"
        for name in ds["layer"].values
    )


if __name__ == "__main__":
    raise SystemExit(study_main("ldufm_fig1", summary, doc=__doc__))
