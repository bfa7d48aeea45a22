"""Shared helpers of the svflow benchmarks: timing, machine info, tables, results.

Every benchmark prints a table and writes it under ``benchmarks/results/`` as
CSV and as a netCDF dataset (one ``row`` dimension, machine info in attrs).
Times on the shared 2-core machine are noisy: compare ratios measured in the
same run, not absolute times.
"""

from __future__ import annotations

import csv
import re
import os
import platform
import statistics
import subprocess
import sys
import time
from pathlib import Path

RESULTS = Path(__file__).resolve().parent / "results"
ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:  # run from anywhere: import this checkout's svflow
    sys.path.insert(0, str(ROOT))

# svflow's public functions switch to float64 only for their own duration;
# the benchmarks also time its internals directly, so they run in float64 too.
os.environ.setdefault("JAX_ENABLE_X64", "1")


def machine() -> dict:
    """CPU model, core count and versions, for the results' attrs."""
    model = platform.processor() or "unknown"
    try:
        out = subprocess.run(["lscpu"], capture_output=True, text=True, check=False).stdout
        for line in out.splitlines():
            if line.startswith("Model name:"):
                model = line.split(":", 1)[1].strip()
    except OSError:
        pass
    import jax
    import numpy
    import scipy

    return {
        "cpu_model": model,
        "cpu_count": os.cpu_count() or 0,
        "python": platform.python_version(),
        "jax": jax.__version__,
        "numpy": numpy.__version__,
        "scipy": scipy.__version__,
        "jax_backend": jax.default_backend(),
    }


def timeit(fn, *, repeats: int = 20, min_time: float = 0.0, clock=time.process_time) -> float:
    """Median time of ``fn()`` over ``repeats`` calls (``fn`` must block).

    ``clock`` defaults to the process CPU time, which the other jobs on a
    shared machine disturb far less than wall time (pass ``time.perf_counter``
    for wall time).
    """
    fn()  # warm-up (compilation, caches)
    times = []
    t_start = time.perf_counter()
    while len(times) < repeats or (time.perf_counter() - t_start) < min_time:
        tic = clock()
        fn()
        times.append(clock() - tic)
        if len(times) > 100 * repeats:
            break
    return statistics.median(times)


def table(rows: list[dict], title: str = "") -> str:
    """Plain-text (markdown) table of a list of dicts with the same keys."""
    if not rows:
        return f"{title}\n(no rows)"
    keys = list(rows[0])

    def fmt(v):
        if isinstance(v, float):
            return f"{v:.4g}"
        return str(v)

    cells = [[fmt(r[k]) for k in keys] for r in rows]
    widths = [max(len(k), *(len(c[i]) for c in cells)) for i, k in enumerate(keys)]
    line = lambda xs: "| " + " | ".join(x.rjust(w) for x, w in zip(xs, widths)) + " |"
    out = [title] if title else []
    out += [line(keys), "|" + "|".join("-" * (w + 2) for w in widths) + "|"]
    out += [line(c) for c in cells]
    return "\n".join(out)


def write_results(name: str, rows: list[dict], attrs: dict | None = None, quick: bool = False) -> Path:
    """Write ``rows`` as ``results/<name>.csv`` and ``results/<name>.nc``; return the .nc path.

    ``quick=True`` appends ``_quick`` to the name, so quick runs never overwrite
    the full-size results that RESULTS.md quotes.
    """
    if quick:
        name = f"{name}_quick"
    import numpy as np
    import xarray as xr

    import svflow

    RESULTS.mkdir(parents=True, exist_ok=True)
    keys = list(rows[0])
    with open(RESULTS / f"{name}.csv", "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=keys)
        w.writeheader()
        w.writerows(rows)
    data = {}
    for k in keys:
        vals = [r[k] for r in rows]
        arr = np.asarray(vals)
        if arr.dtype == object:
            arr = np.asarray([str(v) for v in vals])
        data[re.sub(r"[^A-Za-z0-9_]+", "_", k).strip("_")] = ("row", arr, {"long_name": k})
    ds = xr.Dataset(data, attrs={"benchmark": name, **machine(), **(attrs or {})})
    try:
        return svflow.save(ds, RESULTS / f"{name}.nc")
    except ImportError:  # h5netcdf without h5py: netCDF3 via scipy, same encoded attrs
        from svflow._dataset import encode_attrs

        out = ds.copy()
        out.attrs = encode_attrs(ds.attrs)
        path = RESULTS / f"{name}.nc"
        out.to_netcdf(path, engine="scipy")
        return path


def fit_exponent(x, y) -> float:
    """Least-squares slope of log y against log x."""
    import numpy as np

    return float(np.polyfit(np.log(np.asarray(x, float)), np.log(np.asarray(y, float)), 1)[0])
