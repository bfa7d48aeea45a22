"""Run every svflow benchmark, each in a fresh Python process (compile counts and
peak memory need one), quick sizes by default.

    python benchmarks/run_all.py            # quick: about 10 minutes on 2 busy cores
    python benchmarks/run_all.py --full     # the sizes of benchmarks/RESULTS.md (~25 min)
    python benchmarks/run_all.py --only rhs basins

Each benchmark prints its table and writes ``benchmarks/results/<name>.csv``
and ``.nc``.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent

# name -> (script, supports --full)
BENCHMARKS = {
    "reduced_vs_full": ("bench_reduced_vs_full.py", True),
    "batch": ("bench_batch.py", True),
    "rhs": ("bench_rhs.py", True),
    "compile": ("bench_compile.py", False),
    "memory": ("bench_memory.py", True),
}


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--full", action="store_true", help="full sizes (tens of minutes)")
    p.add_argument("--only", nargs="*", choices=sorted(BENCHMARKS), help="run only these")
    a = p.parse_args(argv)
    failed = []
    for name in a.only or list(BENCHMARKS):
        script, has_full = BENCHMARKS[name]
        if not (HERE / script).exists():
            print(f"== {name}: {script} not in this checkout, skipped", flush=True)
            continue
        cmd = [sys.executable, str(HERE / script)] + (["--full"] if a.full and has_full else [])
        print(f"\n== {name}: {' '.join(cmd[1:])}", flush=True)
        tic = time.perf_counter()
        rc = subprocess.call(cmd, cwd=HERE.parent)
        print(f"== {name}: exit {rc} after {time.perf_counter() - tic:.0f} s", flush=True)
        if rc:
            failed.append(name)
    if failed:
        print(f"failed: {', '.join(failed)}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
