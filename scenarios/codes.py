"""Softmax codes study: convergence of spectral and random starts to softmax codes,
and the predicted winning Walsh code per (K, N).

The settings QUICK and FULL are shared with the figure ``code_convergence``
(svflow/figures/fig_code_convergence.py).

    python scenarios/codes.py --quick --out figures/data/codes_quick.nc
    python scenarios/codes.py --out codes.nc          # full setting (about 15 min on 2 cores)
"""

from __future__ import annotations

from svflow import save
from svflow._cli import scenario_cli
from svflow.figures.fig_code_convergence import FULL, QUICK, compute_setting


def main(argv=None):
    def options(p):
        p.add_argument(
            "--classes",
            type=int,
            default=None,
            help="K for the trajectories, a power of two (default: the setting's)",
        )

    args, _, cfg = scenario_cli(
        __doc__,
        {"quick": QUICK, "full": FULL},
        argv,
        options=options,
        out_default="codes.nc",
        quick_help="small setting (about a minute)",
    )
    if args.classes is not None:
        cfg["classes"] = args.classes
    K = cfg["classes"]
    ds = compute_setting(cfg)
    ds.attrs["scenario"] = "scenarios/codes.py" + (" --quick" if args.quick else "")
    save(ds, args.out)

    # --- summary
    print("predicted winning Walsh code per (K, N):")
    for K_ in ds["table_classes"].values:
        row = ds.sel(table_classes=K_)
        print(
            f"  K={K_}: "
            + ", ".join(f"N={N}: {row['win_name'].sel(factors=N).item()}" for N in ds["factors"].values)
        )
    print(f"spectral starts, K={K}: rho/rho* at t_end (limit at the KKT direction), KKT residual")
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
