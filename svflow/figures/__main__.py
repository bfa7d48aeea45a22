"""``python -m svflow.figures [--quick] [--only NAME ...] [--out DIR] [--replot] [--list]``

Full-size figures go to ``figures/`` (tracked in git); ``--quick`` ones to
``figures/quick/`` (git-ignored), so a quick run never overwrites the full
set. Every dataset's attrs say ``setting = "quick"`` or ``"full"`` and carry
the ``git_commit`` and ``git_dirty`` flag of the code that made it.
"""

from __future__ import annotations

import argparse
import inspect
import sys
import time
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
from tqdm import tqdm  # noqa: E402

from .. import load, save  # noqa: E402
from .._dataset import check_writable, git_commit, provenance  # noqa: E402
from .._precision import computes  # noqa: E402
from . import registry  # noqa: E402

FULL_OUT = Path("figures")
QUICK_OUT = FULL_OUT / "quick"


def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="python -m svflow.figures", description=__doc__)
    p.add_argument("--quick", action="store_true", help="small sizes (minutes on 2 CPU cores)")
    p.add_argument("--only", nargs="+", metavar="NAME", help="only these figures")
    p.add_argument(
        "--out",
        default=None,
        help="output folder (default: figures/, or figures/quick/ with --quick)",
    )
    p.add_argument("--replot", action="store_true", help="redraw from saved datasets, no dynamics")
    p.add_argument("--list", action="store_true", help="list the registered figures and exit")
    args = p.parse_args(argv)

    figs = registry()
    if args.list:
        for name, f in figs.items():
            print(f"{name:28s} {f.description}")
        return 0
    if args.only:
        unknown = sorted(set(args.only) - set(figs))
        if unknown:
            p.error(f"unknown figure(s) {unknown}; registered: {sorted(figs)}")
        figs = {k: figs[k] for k in args.only}
    out = Path(args.out).expanduser() if args.out else (QUICK_OUT if args.quick else FULL_OUT)
    if args.quick and not args.replot and out.resolve() == FULL_OUT.resolve():
        p.error(
            f"--quick would overwrite the full-size figures in {FULL_OUT}/; quick output goes "
            f"to {QUICK_OUT}/ (the default) or another --out."
        )
    try:  # fail now, not after the computation
        (out / "data").mkdir(parents=True, exist_ok=True)
        for name in figs:
            check_writable(out / "data" / f"{name}.nc")
            check_writable(out / f"{name}.png")
    except OSError as e:
        p.error(f"--out: {e}")
    bar = tqdm(figs.items(), desc="figures", unit="fig", file=sys.stderr)
    for name, f in bar:
        bar.set_postfix_str(name)
        tic = time.perf_counter()
        data = out / "data" / f"{name}.nc"
        if args.replot:
            ds = load(data)
        else:
            # long computations show their own bars (under this one) where they have them
            shows = "progress" in inspect.signature(f.compute).parameters
            ds = computes(f.compute)(args.quick, **({"progress": True} if shows else {}))
            ds.attrs["figure_quick"] = int(args.quick)
            # a study's own setting name (e.g. the optimality map's "polished") is kept
            ds.attrs.setdefault("setting", "quick" if args.quick else "full")
            for k, v in provenance().items():  # versions for studies that do not record them
                if k != "jax_enable_x64":  # (this process's setting, not the computation's)
                    ds.attrs.setdefault(k, v)
            ds.attrs.update(git_commit())
            save(ds, data)
        fig = f.plot(ds)
        if ds.attrs.get("setting") == "quick" or ds.attrs.get("figure_quick") == 1:
            fig.text(
                0.995,
                0.005,
                "quick setting (small grid)",
                ha="right",
                va="bottom",
                fontsize=8,
                color="crimson",
            )
        fig.savefig(out / f"{name}.png", dpi=120, bbox_inches="tight")
        plt.close(fig)
        tqdm.write(f"{name}: {time.perf_counter() - tic:.1f} s -> {out / (name + '.png')}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
