r"""Item 4: compile time of each public entry point, and recompilations of a sweep.

For every entry point: the first call (trace + compile + run) against the
second call with new values of the same shapes (run only); the difference is
the compile cost. Compilations are counted with a ``jax.monitoring`` listener
on XLA backend compiles (every jitted function and every op-by-op primitive
compiled for a new shape counts once); those of the ODE solver itself (the
jitted ``solve`` / ``_solve_chunk``) are counted separately.

The sweep: ``svflow.simulate`` over weight decay x init scale x depth (3 x 3 x
2 cells). Weight decay, init and times are array arguments, depth is static
(it sets the number of factors N), so the solver must compile exactly once
per depth: 2 times, whatever the number of cells.

Run: ``python benchmarks/bench_compile.py``.
"""

from __future__ import annotations

import time
from collections import Counter

import _common as C  # noqa: E402  (puts this checkout on sys.path)

import jax
import jax.numpy as jnp
import numpy as np

import svflow
from svflow._batch import solve_batch
from svflow._integrate import SolverConfig
from svflow._simulate import ReducedField

_EVENT = "/jax/core/compile/backend_compile_duration"


class CompileCounter:
    """Count XLA backend compiles (and their seconds) while active."""

    def __init__(self):
        self.names: Counter = Counter()
        self.seconds = 0.0
        self.active = False
        jax.monitoring.register_event_duration_secs_listener(self._listen)

    def _listen(self, event, duration, **kw):
        if self.active and event == _EVENT:
            self.names[str(kw.get("fun_name", "?"))] += 1
            self.seconds += duration

    def __enter__(self):
        self.names.clear()
        self.seconds = 0.0
        self.active = True
        return self

    def __exit__(self, *exc):
        self.active = False

    @property
    def total(self) -> int:
        return sum(self.names.values())

    def solver(self) -> int:
        return sum(n for k, n in self.names.items() if "solve" in k)


def first_second(counter, name, make_call):
    """Time ``make_call(0)()`` (first) and ``make_call(1)()`` (same shapes, new values)."""
    row = {"entry_point": name}
    for label, i in (("first", 0), ("second", 1)):
        fn = make_call(i)
        with counter:
            tic = time.perf_counter()
            fn()
            row[f"{label}_call_s"] = time.perf_counter() - tic
        row[f"{label}_compiles"] = counter.total
        row[f"{label}_solver_compiles"] = counter.solver()
        row[f"{label}_backend_compile_s"] = counter.seconds
    row["compile_s (first - second)"] = row["first_call_s"] - row["second_call_s"]
    return row


def main(argv=None):
    counter = CompileCounter()
    K, L = 16, 5
    rows = []

    def sim(i):
        return lambda: svflow.simulate(K, L, init=svflow.spectral_init(K, L, 1e-2, 0.5, seed=i), t_end=1e8)

    rows.append(first_second(counter, "svflow.simulate (K=16, L=5, balanced CE, t=1e8)", sim))

    def sim_unbal(i):
        s0 = np.asarray(svflow.spectral_init(K, L, 1e-2, 0.5, seed=i).s0) * np.linspace(0.9, 1.1, L + 1)[:, None]
        return lambda: svflow.simulate(K, L, init=s0, t_end=1e8)

    rows.append(first_second(counter, "svflow.simulate (unbalanced s(0))", sim_unbal))

    field = ReducedField(jnp.asarray(0.0), "ce", L + 1, True)
    ts = svflow.log_times(1e8)

    def batch(i):
        rng = np.random.default_rng(i)
        lam0 = 10 ** rng.uniform(-3, -1, (256, 1)) * rng.uniform(0.5, 1.5, (256, K))
        lam0[:, 0] = 0.0
        return lambda: solve_batch(field, lam0, ts, SolverConfig())

    rows.append(first_second(counter, "svflow._batch.solve_batch (256 starts, chunks of 128)", batch))
    rows += optional_entry_points(counter)

    print(C.table(rows, "Compile vs run time per entry point (wall seconds)"))

    # sweep recompilations
    cells = [(wd, sc, L_) for L_ in (3, 5) for wd in (0.0, 1e-4, 1e-3) for sc in (1e-3, 1e-2, 1e-1)]
    with counter:
        tic = time.perf_counter()
        for wd, sc, L_ in cells:
            svflow.simulate(K, L_, init=svflow.spectral_init(K, L_, sc, 0.5), weight_decay=wd, t_end=1e6)
        wall = time.perf_counter() - tic
    solver_compiles = counter.solver()
    static_settings = len({L_ for _, _, L_ in cells}) - 1  # depth 5 already compiled above
    sweep = [{
        "sweep": "simulate: 3 weight decays x 3 scales x depths (3, 5)", "cells": len(cells),
        "static_settings_new": static_settings, "solver_compiles": solver_compiles,
        "all_backend_compiles": counter.total, "wall_s": wall,
        "once_per_static_setting": bool(solver_compiles == static_settings),
    }]
    print(C.table(sweep, "\nSweep recompilations (depth 5 was compiled above; depth 3 is new)"))
    print("compiled functions during the sweep:", dict(counter.names))
    C.write_results("compile_times", rows)
    C.write_results("compile_sweep", sweep, {"functions": str(dict(counter.names))})
    return rows, sweep


def optional_entry_points(counter) -> list[dict]:
    """Entry points of the other issues (full engine, basin maps, sweeps), when merged."""
    return []


if __name__ == "__main__":
    main()
