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
from svflow._integrate import Solver
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
        s0 = (
            np.asarray(svflow.spectral_init(K, L, 1e-2, 0.5, seed=i).s0)
            * np.linspace(0.9, 1.1, L + 1)[:, None]
        )
        return lambda: svflow.simulate(K, L, init=s0, t_end=1e8)

    rows.append(first_second(counter, "svflow.simulate (unbalanced s(0))", sim_unbal))

    field = ReducedField(jnp.asarray(0.0), "ce", L + 1, True)
    ts = svflow.log_times(1e8)

    def batch(i):
        rng = np.random.default_rng(i)
        lam0 = 10 ** rng.uniform(-3, -1, (256, 1)) * rng.uniform(0.5, 1.5, (256, K))
        lam0[:, 0] = 0.0
        return lambda: solve_batch(field, lam0, ts, Solver())

    rows.append(first_second(counter, "svflow._batch.solve_batch (256 starts, refill engine)", batch))
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
    sweep = [
        {
            "sweep": "loop of simulate: 3 weight decays x 3 scales x depths (3, 5); depth 5 compiled above",
            "cells": len(cells),
            "static_settings_new": static_settings,
            "solver_compiles": solver_compiles,
            "all_backend_compiles": counter.total,
            "wall_s": wall,
            "once_per_static_setting": bool(solver_compiles == static_settings),
            "functions": str(dict(counter.names)),
        }
    ]
    sweep += sweep_recompiles(counter)
    sweep += train_recompiles(counter)
    print(
        C.table([{k: v for k, v in r.items() if k != "functions"} for r in sweep], "\nSweep recompilations")
    )
    for r in sweep:
        print("compiled during", r["sweep"].split(":")[0], ":", r["functions"])
    C.write_results("compile_times", rows)
    C.write_results("compile_sweep", sweep)
    return rows, sweep


def optional_entry_points(counter) -> list[dict]:
    """Entry points of the other issues (full engine, basin maps), when in this checkout."""
    rows = []
    K, L = 16, 5
    if hasattr(svflow, "train"):

        def gd(i):
            model = svflow.spectral_model(
                svflow.spectral_init(K, L, 1.0, 0.5, seed=i), depth=L, width=256, key=i, dtype=jnp.float64
            )
            return lambda: svflow.train(model, eta=1e-2, steps=100, num_times=11)

        rows.append(first_second(counter, "svflow.train (K=16, L=5, d=256, 100 GD steps)", gd))
    if hasattr(svflow.studies, "basin_map"):

        def bmap(i):
            eps = np.logspace(-3, -1, 8) * (1 + 0.1 * i)
            return lambda: svflow.studies.basin_map(K, [L], eps, np.linspace(0.0, 0.5, 8))

        rows.append(first_second(counter, "svflow.studies.basin_map (K=16, L=5, 8 x 8 starts)", bmap))
    return rows


def train_recompiles(counter) -> list[dict]:
    """A loop of svflow.train over 3 seeds x 2 step sizes (one static setting: K, L, d)."""
    if not hasattr(svflow, "train"):
        return []
    K, L = 16, 5
    with counter:
        tic = time.perf_counter()
        for seed in (10, 11, 12):
            model = svflow.spectral_model(
                svflow.spectral_init(K, L, 1.0, 0.5, seed=seed),
                depth=L,
                width=256,
                key=seed,
                dtype=jnp.float64,
            )
            for eta in (1e-2, 5e-3):
                svflow.train(model, eta=eta, steps=10, num_times=3)
        wall = time.perf_counter() - tic
    names = dict(counter.names)
    gd = sum(n for k, n in names.items() if "advance" in k)
    return [
        {
            "sweep": "loop of svflow.train: 3 seeds x 2 eta, K=16, L=5, d=256 (1 static setting, compiled above)",
            "cells": 6,
            "static_settings_new": 0,
            "solver_compiles": gd,
            "all_backend_compiles": counter.total,
            "wall_s": wall,
            "once_per_static_setting": bool(gd == 0),
            "functions": str(names),
        }
    ]


def sweep_recompiles(counter) -> list[dict]:
    """svflow.sweep over depth (static) x eps x delta: compiles of the vmapped cell function."""
    if not hasattr(svflow, "sweep"):
        return []
    import tempfile

    from svflow._integrate import solve as _solve

    def cell(key, depth, eps, delta, classes, t_end):
        u = jax.random.uniform(key, (classes,), minval=1.0 - delta, maxval=1.0 + delta)
        lam0 = (eps * u).at[0].set(0.0)
        field = ReducedField(jnp.asarray(0.0), "ce", depth + 1, True)
        ys, _, steps = _solve(field, lam0, jnp.array([0.0, t_end]), None, Solver(rtol=1e-6, atol=1e-9))
        return {"lam_end": ys[-1], "num_steps": steps}

    grid = {"depth": [3, 5], "eps": [1e-2, 3e-2, 1e-1], "delta": [0.1, 0.3, 0.5]}
    with tempfile.TemporaryDirectory() as tmp, counter:
        tic = time.perf_counter()
        svflow.sweep(
            cell,
            grid,
            store=f"{tmp}/s.zarr",
            chunk=4,
            static=("depth",),
            params={"classes": 16, "t_end": 1e6},
            progress=False,
        )
        wall = time.perf_counter() - tic
    names = dict(counter.names)
    cell_compiles = sum(
        n for k, n in names.items() if k == "jit(one)" or "solve" in k
    )  # the runner jits vmap(one)
    return [
        {
            "sweep": "svflow.sweep: depths (3, 5) static x 3 eps x 3 delta, chunks of 4 (3 chunks/depth)",
            "cells": 18,
            "static_settings_new": 2,
            "solver_compiles": cell_compiles,
            "all_backend_compiles": counter.total,
            "wall_s": wall,
            "once_per_static_setting": bool(cell_compiles == 2),
            "functions": str(names),
        }
    ]


if __name__ == "__main__":
    main()
