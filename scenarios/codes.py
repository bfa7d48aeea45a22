"""Softmax codes study: convergence of spectral and random starts to softmax codes,
and the predicted winning Walsh code per (K, N).

    python scenarios/codes.py --quick --out figures/data/codes_quick.nc
    python scenarios/codes.py --out codes.nc          # full setting (about 15 min on 2 cores)
"""

from __future__ import annotations

import argparse

import svflow
from svflow.figures.fig_code_convergence import combine


def main(argv=None):
    p = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument(
        "--quick", action="store_true", help="small setting (about a minute)"
    )
    p.add_argument("--out", default="codes.nc", help="output netCDF path")
    p.add_argument(
        "--classes", type=int, default=8, help="K for the trajectories (power of two)"
    )
    args = p.parse_args(argv)
    if args.out:  # fail now, not after the computation
        try:
            svflow.check_writable(args.out)
        except OSError as e:
            p.error(f"--out: {e}")
    K = args.classes
    if args.quick:
        spectral = svflow.studies.code_convergence_study(
            K, depths=(1, 2, 3, 5), seeds=(0,), t_end=1e8, num_times=25
        )
        random = svflow.studies.random_start_code_study(
            K, depths=(1, 3, 5), seeds=(0,), t_end=1e4, num_times=13
        )
    else:
        spectral = svflow.studies.code_convergence_study(
            K, depths=(1, 2, 3, 4, 5), seeds=(0, 1, 2), t_end=1e12, num_times=49
        )
        random = svflow.studies.random_start_code_study(
            K, depths=(1, 2, 3, 4, 5), seeds=(0, 1), t_end=1e5, num_times=25
        )
    table = svflow.studies.code_winner_table((4, 8, 16), range(2, 9))
    ds = combine(spectral, random, table)
    ds.attrs["scenario"] = "scenarios/codes.py" + (" --quick" if args.quick else "")
    svflow.save(ds, args.out)

    # --- summary
    print("predicted winning Walsh code per (K, N):")
    for K_ in ds["table_classes"].values:
        row = ds.sel(table_classes=K_)
        print(
            f"  K={K_}: "
            + ", ".join(
                f"N={N}: {row['win_name'].sel(factors=N).item()}"
                for N in ds["factors"].values
            )
        )
    print(
        f"spectral starts, K={K}: rho/rho* at t_end (limit at the KKT direction), KKT residual"
    )
    for L in ds["depth"].values:
        for s in ds["seed"].values:
            q = ds.sel(depth=L, seed=s)
            print(
                f"  N={L + 1} seed {s}: r={int(q['outcome_rank'])} ratio={float(q['rho_ratio'][-1]):.4f} "
                f"(limit {float(q['limit_rho_ratio']):.4f}) kkt={float(q['kkt_residual']):.1e}"
            )
    print(f"random starts, K={K}: rho/rho* at t_end")
    for L in ds["rdepth"].values:
        for s in ds["rseed"].values:
            q = ds.sel(rdepth=L, rseed=s)
            print(
                f"  N={L + 1} seed {s}: r={int(q['random_outcome_rank'])} "
                f"ratio={float(q['random_rho_ratio'][-1]):.4f}"
            )
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
