"""Early-time repulsion (N >= 3) and attraction (N = 2) of Walsh modes.

Measures d/dt log(lambda_j / lambda_k) along balanced spectral trajectories by
fourth-order finite differences and compares it with the small-lambda series
of the softmax eigenvalues (1 - mu to order 0, 1, 2 in lambda; see
svflow.studies.log_ratio_rate; docs: theory/reduced-ode.md,
'Early-time repulsion'). The settings QUICK and FULL are shared with
the figure ``repulsion`` (svflow/figures/fig_repulsion.py).

    python scenarios/repulsion.py --quick [--out repulsion.nc]
    python scenarios/repulsion.py [--classes 16] [--out repulsion.nc]
"""

from __future__ import annotations

import numpy as np

import svflow
from svflow._cli import scenario_cli
from svflow.figures.fig_repulsion import FULL, QUICK


def main(argv=None) -> int:
    def options(p):
        p.add_argument(
            "--classes",
            type=int,
            default=None,
            help="number of classes K, a power of two (default: the setting's)",
        )

    args, _, cfg = scenario_cli(__doc__, {"quick": QUICK, "full": FULL}, argv, options=options)
    if args.classes is not None:
        cfg["classes"] = args.classes
    ds = svflow.studies.repulsion(**cfg)
    j, k = ds.attrs["pair"]
    print(f"K = {ds.attrs['classes']}, pair (j, k) = ({j}, {k}), lag = {ds.attrs['lag']}")
    print("  N   lam_j     measured      order0        order2        rel.err0  rel.err2")
    for d in ds["depth"].values:
        x = ds.sel(depth=d)
        for target in (1e-3, 1e-2, 1e-1):
            i = int(np.argmin(np.abs(x["lam_j"].values - target)))
            m, o0, o2 = (float(x[v][i]) for v in ("measured", "order0", "order2"))
            print(
                f"  {d + 1}  {float(x['lam_j'][i]):.3e}  {m:+.5e}  {o0:+.5e}  "
                f"{o2:+.5e}  "
                f"{abs(o0 - m) / abs(m):.1e}   {abs(o2 - m) / abs(m):.1e}"
            )
    if args.out:
        svflow.save(ds, args.out)
        print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
