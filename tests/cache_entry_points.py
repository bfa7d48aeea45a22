"""Registry of svflow's public entry points that compile, for the cache-independence tests.

A result must never depend on what ran before it (svflow 0.2 returned the first
weight decay's result for a second one: CHANGELOG, 0.3.0). Each entry point is
listed once with a small base call and, for **every numeric argument of its
signature**, either two values (``values``: the result must follow the value,
whatever ran before and whatever the compilation cache holds) or the reason it
is left out (``skip``: it changes the output's shape, or it is not a number
that enters the computation). The numeric fields of an entry point's
``solver=svflow.Solver(...)`` are arguments ``solver.<field>``: each value
replaces that field of the entry point's default solver. ``tests/test_cache_independence.py`` walks each
signature, so a new numeric argument fails the test until it is listed here.

Run as a script, ``python tests/cache_entry_points.py ORDER OUT.npz [NAMES...]``
evaluates every (entry point, argument, value) in the given order (``ab`` or
``ba``) in this one process and writes one flat float vector per call.
"""

from __future__ import annotations

import dataclasses
import inspect
import sys
import tempfile
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np


@dataclass(frozen=True)
class Entry:
    """One public entry point: how to call it, and its numeric arguments."""

    call: Callable[..., Any]  # call(**kwargs) -> xarray.Dataset
    signature_of: Callable[[], Callable]  # the public function whose signature is walked
    base: dict = field(default_factory=dict)
    values: dict = field(default_factory=dict)  # name -> (a, b), a != b changes the result
    skip: dict = field(default_factory=dict)  # name -> why it is not checked here
    fast: tuple = ()  # the arguments checked in the default (non-slow) test run


def _simulate(**kw):
    import svflow

    return svflow.simulate(**kw)


def _outcome(**kw):
    import svflow

    return svflow.outcome(**kw)


def _basin_map(**kw):
    import svflow

    return svflow.studies.basin_map(**kw)


def _train(weight_decay=0.0, scale=0.3, **kw):
    import svflow

    model = svflow.random_model(4, depth=2, width=6, scale=scale, key=3, weight_decay=weight_decay)
    return svflow.train(model, **kw)


def _flow(weight_decay=0.0, scale=0.3, **kw):
    import svflow

    model = svflow.random_model(4, depth=2, width=6, scale=scale, key=3, weight_decay=weight_decay)
    return svflow.flow(model, **kw)


def _sweep_cell(key, eps, depth, weight):
    import jax
    import jax.numpy as jnp

    x = jax.random.normal(key, (3,))
    return {"value": weight * eps * jnp.sum(x) + depth}


def _sweep(**kw):
    import svflow

    store = Path(tempfile.mkdtemp(prefix="svflow-cache-test-")) / "s.zarr"
    weight = kw.pop("weight")
    return svflow.sweep(
        _sweep_cell,
        {"eps": [0.1, 0.3, 0.5], "depth": [1]},
        store=store,
        static=("depth",),
        params={"weight": weight},
        progress=False,
        **kw,
    )


def _sig(path: str) -> Callable[[], Callable]:
    def get():
        import svflow

        obj: Any = svflow
        for part in path.split("."):
            obj = getattr(obj, part)
        return obj

    return get


_NOT_NUMERIC = "not a number that enters the computation (a choice, a flag or an object)"
_SHAPE = "sets the output's shape (number of saves or cells), compared by shape elsewhere"
_BUDGET = "a step budget: enough steps give the same result (tests/test_bad_inputs.py checks too few)"
_SCHED = "scheduling only: must not change any number (tests/test_batch.py, tests/test_sweep.py)"

ENTRY_POINTS: dict[str, Entry] = {
    "simulate": Entry(
        call=_simulate,
        signature_of=_sig("simulate"),
        base=dict(classes=4, depth=2, init=[0.0, 0.2, 0.3, 0.4], t_end=50.0, num_times=5),
        values={
            "weight_decay": (1e-2, 5e-4),
            "t_end": (50.0, 20.0),
            "solver.rtol": (1e-8, 1e-6),
            "solver.atol": (1e-10, 1e-6),
            "rank_rtol": (0.1, 0.8),
            "log_t_end": (3.0, 5.0),
        },
        skip={
            "num_times": _SHAPE,
            "solver.max_steps": _BUDGET,
            "solver.lanes": _SCHED,
            "classes": _SHAPE,
            "depth": _SHAPE,
        },
        fast=("weight_decay", "t_end"),
    ),
    "outcome": Entry(
        call=_outcome,
        signature_of=_sig("outcome"),
        base=dict(classes=4, depth=2, init=[0.0, 1.0, 0.9, 0.5], horizons=(30.0, 100.0), kkt=False),
        values={
            "solver.rtol": (1e-6, 1e-7),
            "solver.atol": (1e-9, 1e-7),
            "horizons": ((30.0, 100.0), (100.0, 300.0)),
        },
        skip={"solver.max_steps": _BUDGET, "solver.lanes": _SCHED, "classes": _SHAPE, "depth": _SHAPE},
        fast=("solver.rtol",),
    ),
    "basin_map": Entry(
        call=_basin_map,
        signature_of=_sig("studies.basin_map"),
        base=dict(classes=4, depths=[2], eps=[0.1], delta=[0.3, 0.6], horizons=(100.0, 300.0)),
        values={
            "solver.rtol": (1e-5, 1e-7),
            "solver.atol": (1e-8, 1e-6),
            "horizons": ((100.0, 300.0), (300.0, 1000.0)),
            "eps": ([0.1], [0.05]),
            "delta": ([0.3, 0.6], [0.2, 0.7]),
        },
        skip={
            "solver.max_steps": _BUDGET,
            "solver.lanes": _SCHED,
            "chunk_size": _SCHED,
            "classes": _SHAPE,
            "seeds": "the lag family is deterministic (seeds enter the random family: tests/test_basins.py)",
        },
        fast=("solver.rtol",),
    ),
    "train": Entry(
        call=_train,
        signature_of=_sig("train"),
        base=dict(eta=0.1, t_end=5.0, num_times=3),
        values={
            "weight_decay": (1e-2, 1e-3),  # through random_model
            "scale": (0.3, 0.5),  # through random_model
            "eta": (0.1, 0.05),
            "t_end": (5.0, 3.0),
            "rank_rtol": (0.1, 0.9),
        },
        skip={"steps": "the same as t_end / eta", "num_times": _SHAPE, "chunk_steps": _SCHED},
        fast=("weight_decay", "eta"),
    ),
    "flow": Entry(
        call=_flow,
        signature_of=_sig("flow"),
        base=dict(t_end=50.0, num_times=3),
        values={
            "weight_decay": (1e-2, 1e-3),  # through random_model
            "scale": (0.3, 0.5),  # through random_model
            "t_end": (50.0, 20.0),
            "log_t_end": (3.0, 5.0),
            "solver.rtol": (1e-8, 1e-6),
            "solver.atol": (1e-10, 1e-6),
            "rank_rtol": (0.1, 0.9),
        },
        skip={
            "num_times": _SHAPE,
            "solver.max_steps": _BUDGET,
            "solver.lanes": _SCHED,
            "log_t_start": "the start of a continued run (needs the state there): tests/test_flow.py "
            "pins a continued run against the direct one",
        },
        fast=("weight_decay",),
    ),
    "sweep": Entry(
        call=_sweep,
        signature_of=_sig("sweep"),
        base=dict(chunk=2, weight=2.0),
        values={"base_seed": (0, 7), "weight": (2.0, 3.0)},  # weight: a cell parameter
        skip={"chunk": _SCHED, "batch": _SCHED, "max_chunks": _SHAPE},
        fast=("weight",),
    ),
}


def _is_number(x) -> bool:
    return isinstance(x, (int, float)) and not isinstance(x, bool)


def _solver_default(fn: Callable):
    """The default ``svflow.Solver`` of ``fn``'s ``solver`` parameter (None if it has none)."""
    import svflow

    p = inspect.signature(fn).parameters.get("solver")
    return p.default if p is not None and isinstance(p.default, svflow.Solver) else None


def numeric_parameters(fn: Callable) -> list[str]:
    """Names of the parameters of ``fn`` that take numbers (by annotation or default); the
    numeric fields of a ``solver=svflow.Solver(...)`` parameter as ``solver.<field>``."""
    out = []
    solver = _solver_default(fn)
    if solver is not None:
        hints = {f.name: str(f.type) for f in dataclasses.fields(solver)}
        out += [f"solver.{n}" for n, t in hints.items() if ("float" in t or "int" in t) and "bool" not in t]
    for name, p in inspect.signature(fn).parameters.items():
        ann = str(p.annotation)
        default = p.default
        is_num_default = _is_number(default) or (
            isinstance(default, tuple) and len(default) > 0 and all(_is_number(x) for x in default)
        )
        if is_num_default or "float" in ann or ("int" in ann and "bool" not in ann):
            out.append(name)
    return out


def calls(names=None, only_fast: bool = False, order: str = "ab"):
    """The list of (label, entry name, kwargs) to evaluate, in the given order of values."""
    out = []
    for name, entry in ENTRY_POINTS.items():
        if names and name not in names:
            continue
        for arg, pair in entry.values.items():
            if only_fast and arg not in entry.fast:
                continue
            vals = pair if order == "ab" else pair[::-1]
            for v in vals:
                kw = dict(entry.base)
                if arg.startswith("solver."):  # one field of the entry point's default Solver
                    default = _solver_default(entry.signature_of())
                    kw["solver"] = dataclasses.replace(default, **{arg.split(".", 1)[1]: v})
                else:
                    kw[arg] = v
                if arg == "log_t_end":
                    kw.pop("t_end", None)
                out.append((f"{name}:{arg}={v!r}", name, kw))
    return out


def digest(ds) -> np.ndarray:
    """Every numeric data variable and coordinate of ``ds``, flattened into one float vector."""
    parts = []
    for var in sorted(ds.variables):
        values = np.asarray(ds[var].values)
        if values.dtype.kind in "fiub":
            parts.append(values.astype(float).ravel())
    return np.concatenate(parts) if parts else np.zeros(0)


def main(argv: list[str]) -> None:
    order, out, *rest = argv
    only_fast = "--fast" in rest
    names = [r for r in rest if not r.startswith("--")]
    results = {}
    for label, name, kw in calls(names or None, only_fast, order):
        results[label] = digest(ENTRY_POINTS[name].call(**kw))
    np.savez(out, **results)


if __name__ == "__main__":
    main(sys.argv[1:])
