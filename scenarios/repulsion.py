"""Early-time repulsion (N >= 3) and attraction (N = 2) of Walsh modes.

Measures d/dt log(lambda_j / lambda_k) along balanced spectral trajectories by
fourth-order finite differences and compares it with the small-lambda series of
1 - mu to order 0, 1, 2 (docs: theory/reduced-ode.md, 'Early-time repulsion').

    python scenarios/repulsion.py --quick [--out repulsion.nc]
"""

from __future__ import annotations

import argparse

import numpy as np

import svflow


def main(argv=None) -> int:
    p = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument("--quick", action="store_true")
    p.add_argument("--out", default=None, help="write the dataset here (netCDF)")
    p.add_argument("--classes", type=int, default=8)
    args = p.parse_args(argv)
    if args.out:  # fail now, not after the computation
        try:
            svflow.check_writable(args.out)
        except OSError as e:
            p.error(f"--out: {e}")
    if args.quick:
        ds = svflow.studies.repulsion(
            args.classes, [1, 2, 3, 5], eps=1e-3, lag=0.5, lam_cap=0.5, num_times=201
        )
    else:
        ds = svflow.studies.repulsion(
            args.classes, [1, 2, 3, 4, 5], eps=1e-4, lag=0.5, lam_cap=1.0, num_times=801
        )
    j, k = ds.attrs["pair"]
    print(f"K = {args.classes}, pair (j, k) = ({j}, {k}), lag = {ds.attrs['lag']}")
    print(
        "  N   lam_j     measured      order0        order2        rel.err0  rel.err2"
    )
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
