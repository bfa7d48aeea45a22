r"""The public batch path (``svflow.simulate`` on a batch of starts) against compiled loops.

Problem A (basin "random" family): balanced cross-entropy, K = 16, depth
L = 5 (N = 6 factors), starts $\lambda_i(0) = \varepsilon u_i$ with
$\varepsilon$ log-uniform in $[10^{-3}, 10^{-1}]$, $u_i \sim U[1-\delta,
1+\delta]$, $\delta \sim U[0.1, 0.9]$, $\lambda_0 = 0$; t = 1e8, 161 log-spaced
saves (``svflow.log_times``), rtol = 1e-8, atol = 1e-10.
Problem B: the same family at K = 1024, L = 3, 256 starts.

Rows (all integrate in the same variable $\tau = \log(1+t)$ with the same
cancellation-free $1 - \mu$, saving at the same times):

- ``svflow.simulate`` (public): the whole call, dataset included;
- ``engine``: ``svflow._batch.solve_batch`` alone (what the public call spends
  in the solver);
- ``floor``: 6 right-hand-side evaluations (Tsit5 with first-same-as-last)
  x the steps the engine took x the cost of one batched evaluation, measured
  in this run on the engine's lane count (a ``fori_loop`` of vmapped calls);
- ``CyRK``: a numba-compiled loop over the starts of ``CyRK.nbsolve_ivp``
  (RK45, numba right-hand side with a dense Hadamard matrix);
- ``scipy``: a Python loop of ``scipy.integrate.solve_ivp`` (LSODA, numpy
  right-hand side), on a subset of starts (extrapolated, and said so).

Warm: after one call that compiles (numba and XLA), median of ``--repeats``.
Cold: a fresh Python process runs the first call, (i) with an empty JAX
compilation cache and (ii) with the cache the first one filled; CyRK's fresh
process pays numba's compilation. ``--cpu`` (issue 25, :func:`cpu_case`): the
fresh process (:func:`child_cpu`: svflow's import not timed, numba's import
timed) runs with dask installed and as a core install (dask hidden by
``sys.modules["dask"] = None``), beside CyRK warm in the same rounds;
``--old DIR`` adds the same two rows for the svflow package in DIR. Times are **process CPU time** (all
threads; XLA and numba run single-threaded here); the load average is
recorded because the machine is shared.

Run: ``pip install -e .[bench]`` then ``python benchmarks/bench_batch.py``
(quick: 1000 starts at K = 16; K = 1024 with CyRK on 4 starts) or
``--full`` (adds 1e4 starts at K = 16; CyRK on 16 starts at K = 1024).
"""

from __future__ import annotations

import os

os.environ.setdefault("XLA_FLAGS", "--xla_cpu_multi_thread_eigen=false intra_op_parallelism_threads=1")
os.environ.setdefault("NUMBA_NUM_THREADS", "1")

import argparse
import dataclasses
import json
import subprocess
import sys
import tempfile
import time

import _common as C  # noqa: E402  (puts this checkout on sys.path)

import jax
import jax.numpy as jnp
import numpy as np

jax.config.update("jax_enable_x64", True)

import svflow
from svflow._batch import default_lanes, log_time_field, solve_batch
from svflow._integrate import Solver, log_times
from svflow._simulate import ReducedField
from svflow._walsh import hadamard

T_END, NUM_TIMES = 1e8, 161
RTOL, ATOL = 1e-8, 1e-10


def starts(K: int, B: int, seed: int = 0) -> np.ndarray:
    """B starts of the basin "random" family (module docstring)."""
    rng = np.random.default_rng(seed)
    eps = 10 ** rng.uniform(-3, -1, B)
    delta = rng.uniform(0.1, 0.9, B)
    u = 1 - delta[:, None] + 2 * delta[:, None] * rng.uniform(size=(B, K))
    lam = eps[:, None] * u
    lam[:, 0] = 0.0
    return lam


def public(K, depth, lam0):
    return svflow.simulate(
        K,
        depth,
        init=lam0,
        batch_dims="start",
        t_end=T_END,
        num_times=NUM_TIMES,
        solver=svflow.Solver(rtol=RTOL, atol=ATOL),
    )


def engine(K, depth, lam0):
    field = ReducedField(jnp.asarray(0.0), "ce", depth + 1, True)
    return solve_batch(field, lam0, log_times(T_END, NUM_TIMES), Solver(rtol=RTOL, atol=ATOL))


def rhs_cost(K, depth, lanes, reps=400) -> float:
    """CPU seconds of one batched right-hand-side evaluation per member (lanes members at once)."""
    f = log_time_field(ReducedField(jnp.asarray(0.0), "ce", depth + 1, True))
    y = jnp.asarray(starts(K, lanes, seed=1) + 1e-3)

    @jax.jit
    def loop(y):
        def body(i, c):
            return c + 1e-12 * jax.vmap(lambda v: f(1.0 + 1e-3 * i, v, None))(c)

        return jax.lax.fori_loop(0, reps, body, y)

    return C.timeit(lambda: loop(y).block_until_ready(), repeats=5) / (reps * lanes)


# --------------------------------------------------------------------------- CyRK (numba)
def cyrk_solver(K, depth):
    import numba
    from CyRK import nbsolve_ivp

    H = np.asarray(hadamard(K))
    N = depth + 1
    expo = 2.0 - 2.0 / N

    @numba.njit(fastmath=False)
    def rhs(tau, lam):
        f = H @ lam
        z = (f - f[0]) / K
        e = np.exp(z - z.max())
        p = e / e.sum()
        p[0] = 0.0
        omm = p.sum() - H @ p
        omm[0] = 0.0
        return np.exp(tau) * (N / K) * omm * np.abs(lam) ** expo

    @numba.njit
    def loop(lam0s, taus):
        B = lam0s.shape[0]
        out = np.empty((B, lam0s.shape[1], taus.size))
        ok = np.ones(B, np.bool_)
        for b in range(B):
            r = nbsolve_ivp(
                rhs,
                (taus[0], taus[-1]),
                lam0s[b].copy(),
                rtol=RTOL,
                atol=ATOL,
                rk_method=1,
                t_eval=taus,
                warnings=False,
            )
            ok[b] = r.success
            out[b] = r.y
        return out, ok

    return loop


def cyrk_run(loop, lam0):
    taus = np.log1p(log_times(T_END, NUM_TIMES))
    ys, ok = loop(np.ascontiguousarray(lam0), taus)
    return np.transpose(ys, (0, 2, 1)), ok


# --------------------------------------------------------------------------- numpy RHS
def numpy_tau_rhs(K, depth):
    """The balanced cross-entropy law in tau = log(1 + t), in plain numpy (scipy's loops)."""
    H = np.asarray(hadamard(K), float)
    N = depth + 1

    def rhs(tau, lam):
        f = H @ lam
        z = (f - f[0]) / K
        e = np.exp(z - z.max())
        p = e / e.sum()
        p[0] = 0.0
        omm = p.sum() - H @ p
        omm[0] = 0.0
        return np.exp(tau) * (N / K) * omm * np.abs(lam) ** (2.0 - 2.0 / N)

    return rhs


# --------------------------------------------------------------------------- scipy
def scipy_loop(K, depth, lam0):
    from scipy.integrate import solve_ivp

    rhs = numpy_tau_rhs(K, depth)

    taus = np.log1p(log_times(T_END, NUM_TIMES))
    return np.stack(
        [
            solve_ivp(rhs, (taus[0], taus[-1]), y, method="LSODA", t_eval=taus, rtol=RTOL, atol=ATOL).y.T
            for y in lam0
        ]
    )


# --------------------------------------------------------------------------- cold starts
CHILD = r"""
import os, sys, time, json
c0 = time.process_time()
sys.path.insert(0, {bench!r})
import bench_batch as B
c1 = time.process_time()
lam0 = B.starts({K}, {n})
{call}
c2 = time.process_time()
print(json.dumps(dict(imports=c1 - c0, first_call=c2 - c1)))
"""


def cold(kind: str, K, depth, n, cache_dir) -> dict:
    call = {
        "svflow": f"B.public({K}, {depth}, lam0)",
        "cyrk": f"B.cyrk_run(B.cyrk_solver({K}, {depth}), lam0)",
    }[kind]
    code = CHILD.format(bench=os.path.dirname(os.path.abspath(__file__)), K=K, n=n, call=call)
    env = dict(os.environ, SVFLOW_COMPILE_CACHE=str(cache_dir))
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def agreement(a: np.ndarray, b: np.ndarray) -> tuple[float, float]:
    """Max relative difference of the final states, and agreement of their numerical ranks."""
    fa, fb = a[:, -1, 1:], b[:, -1, 1:]
    rel = float(np.max(np.abs(fa - fb) / np.max(np.abs(fb), axis=1, keepdims=True)))
    ra = (fa / fa.max(1, keepdims=True) >= 0.1).sum(1)
    rb = (fb / fb.max(1, keepdims=True) >= 0.1).sum(1)
    return rel, float(np.mean(ra == rb))


def case(K, depth, B, cyrk_n, scipy_n, repeats, do_cold) -> list[dict]:
    lam0 = starts(K, B)
    rows = []
    load = os.getloadavg()[0]

    def row(method, per_traj_s, note="", final_rel_diff=float("nan"), rank_agree=float("nan")):
        rows.append(
            dict(
                K=K,
                depth=depth,
                starts=B,
                method=method,
                ms_per_traj=1e3 * per_traj_s,
                final_rel_diff=final_rel_diff,
                rank_agree=rank_agree,
                note=note,
                load=load,
            )
        )

    # svflow: public path and engine, warm
    ds = public(K, depth, lam0)
    t_pub = C.timeit(lambda: public(K, depth, lam0), repeats=repeats) / B
    sol = engine(K, depth, lam0)
    t_eng = C.timeit(lambda: engine(K, depth, lam0), repeats=repeats) / B
    steps = float(np.mean(sol.num_steps))
    lanes = min(default_lanes(), B)
    floor = 6 * steps * rhs_cost(K, depth, lanes)
    row("svflow.simulate (public, batch)", t_pub, f"{steps:.0f} steps/traj, {lanes} lanes")
    row("engine (solve_batch)", t_eng)
    row("floor (6 x steps x batched RHS)", floor)

    # CyRK, warm, on cyrk_n starts
    loop = cyrk_solver(K, depth)
    cyrk_run(loop, lam0[:1])  # numba compile
    sub = lam0[:cyrk_n]
    tic = time.process_time()
    ys_c, ok = cyrk_run(loop, sub)
    t_cy = (time.process_time() - tic) / cyrk_n
    rel, ranks = agreement(ds["lam"].values[:cyrk_n], ys_c)
    row(
        "CyRK nbsolve_ivp RK45 loop (numba)",
        t_cy,
        f"{cyrk_n} starts" + ("" if cyrk_n == B else ", extrapolated"),
        final_rel_diff=rel,
        rank_agree=ranks,
    )
    assert ok.all(), "a CyRK integration failed"
    if scipy_n:
        tic = time.process_time()
        ys_s = scipy_loop(K, depth, lam0[:scipy_n])
        t_sp = (time.process_time() - tic) / scipy_n
        rel_s, ranks_s = agreement(ds["lam"].values[:scipy_n], ys_s)
        row(
            "scipy solve_ivp LSODA loop",
            t_sp,
            f"{scipy_n} starts, extrapolated",
            final_rel_diff=rel_s,
            rank_agree=ranks_s,
        )
    if do_cold:
        with tempfile.TemporaryDirectory() as d:
            c1 = cold("svflow", K, depth, B, d)
            c2 = cold("svflow", K, depth, B, d)
        row(
            "svflow.simulate, fresh process, empty cache",
            c1["first_call"] / B,
            f"imports {c1['imports']:.2f} s CPU (not included)",
        )
        row(
            "svflow.simulate, fresh process, warm cache",
            c2["first_call"] / B,
            f"imports {c2['imports']:.2f} s CPU (not included)",
        )
        c3 = cold("cyrk", K, depth, cyrk_n, "0")
        row(
            "CyRK loop, fresh process (numba compile)",
            c3["first_call"] / cyrk_n,
            f"{cyrk_n} starts; imports {c3['imports']:.2f} s CPU (not included)",
        )
    return rows


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument(
        "--full", action="store_true", help="adds 1e4 starts at K = 16, CyRK on 16 starts at K = 1024"
    )
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--no-cold", action="store_true", help="skip the fresh-process rows")
    p.add_argument("--only", choices=["16", "1024"], default=None)
    a = p.parse_args()
    rows = []
    if a.only in (None, "16"):
        rows += case(16, 5, 1000, 1000, 50 if not a.full else 200, a.repeats, not a.no_cold)
        if a.full:
            rows += case(16, 5, 10_000, 2000, 0, 1, not a.no_cold)
    if a.only in (None, "1024"):
        rows += case(1024, 3, 256, 16 if a.full else 4, 0, 1, not a.no_cold)
    print(C.table(rows, "public batch path vs compiled loops (process CPU time per trajectory)"))
    name = "batch" if a.only is None else f"batch_K{a.only}"
    C.write_results(name, rows, attrs={"clock": "process CPU time"}, quick=not a.full)


# --------------------------------------------------------------------------- issue 25: one run, old beside new
CHILD25 = r"""
import os, sys, time, json
sys.path.insert(0, {src!r})
import numpy as np
import jax
jax.config.update("jax_enable_x64", True)
import svflow
{starts_src}
lam0 = starts({K}, {n})
# svflow >= 0.4 takes a Solver; 0.2 took rtol= and atol=
tol = (dict(solver=svflow.Solver(rtol={rtol!r}, atol={atol!r})) if hasattr(svflow, "Solver")
       else dict(rtol={rtol!r}, atol={atol!r}))
def call():
    return svflow.simulate({K}, {depth}, init=lam0, batch_dims="start", t_end={t_end!r},
                           num_times={num_times}, **tol)
c = time.process_time(); ds = call(); first = time.process_time() - c
c = time.process_time(); ds = call(); warm = time.process_time() - c
print(json.dumps(dict(first=first, warm=warm, final=ds["lam"].values[:4, -1].tolist(),
                      steps=float(ds["num_steps"].mean()), svflow=svflow.__file__)))
"""


def child25(src, K, depth, n, cache_dir) -> dict:
    """A fresh process on the svflow at ``src``: first call (cache in ``cache_dir``) and a warm call."""
    import inspect

    code = CHILD25.format(
        src=str(src), starts_src=inspect.getsource(starts), K=K, depth=depth, n=n,
        t_end=T_END, num_times=NUM_TIMES, rtol=RTOL, atol=ATOL,
    )  # fmt: skip
    env = dict(os.environ, SVFLOW_COMPILE_CACHE=str(cache_dir))
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def dop853_reference(K, depth, lam0) -> np.ndarray:
    """Final lambda of each start by scipy's DOP853 at rtol 1e-12 (the balanced law in tau)."""
    from scipy.integrate import solve_ivp

    rhs = numpy_tau_rhs(K, depth)

    tau1 = float(np.log1p(T_END))
    return np.stack(
        [solve_ivp(rhs, (0.0, tau1), y, method="DOP853", rtol=1e-12, atol=1e-15).y[:, -1] for y in lam0]
    )


def issue25_case(K, depth, B, rounds, cyrk_n, scipy_n, old_src, basin) -> list[dict]:
    """Issue 25: every row in interleaved rounds of one process (fresh-process rows: child processes)."""
    from svflow._simulate import _solve_log_or_lam

    lam0 = starts(K, B)
    ts = log_times(T_END, NUM_TIMES)
    cfg = Solver(rtol=RTOL, atol=ATOL)
    field = ReducedField(jnp.asarray(0.0), "ce", depth + 1, True)
    loop = cyrk_solver(K, depth)
    calls = {
        "svflow.simulate (public), 161 saves": lambda: public(K, depth, lam0),
        "svflow.simulate, end state only (num_times=2)": lambda: svflow.simulate(
            K,
            depth,
            init=lam0,
            batch_dims="start",
            t_end=T_END,
            num_times=2,
            solver=svflow.Solver(rtol=RTOL, atol=ATOL),
        ),
        "svflow.simulate, store_s=True (the 0.2 dataset)": lambda: svflow.simulate(
            K,
            depth,
            init=lam0,
            batch_dims="start",
            t_end=T_END,
            num_times=NUM_TIMES,
            solver=svflow.Solver(rtol=RTOL, atol=ATOL),
            store_s=True,
        ),  # fmt: skip
        "engine in u = log(lambda) (new)": lambda: _solve_log_or_lam(field, lam0, ts, cfg, False),
        "engine in lambda (0.2)": lambda: solve_batch(field, lam0, ts, cfg),
        "CyRK nbsolve_ivp RK45 loop (numba)": lambda: cyrk_run(loop, lam0[:cyrk_n]),
    }
    per = {name: (B if "CyRK" not in name else cyrk_n) for name in calls}
    for fn in calls.values():
        fn()  # compile (XLA, numba)
    times = {name: [] for name in calls}
    kids = {"new": [], "old": []}
    loads = []
    with tempfile.TemporaryDirectory() as d_new, tempfile.TemporaryDirectory() as d_old:
        child25(C.ROOT, K, depth, B, d_new)  # fill the caches
        if old_src:
            child25(old_src, K, depth, B, d_old)
        for _ in range(rounds):
            loads.append(os.getloadavg()[0])
            for name, fn in calls.items():
                tic = time.process_time()
                fn()
                times[name].append((time.process_time() - tic) / per[name])
            kids["new"].append(child25(C.ROOT, K, depth, B, d_new))
            if old_src:
                kids["old"].append(child25(old_src, K, depth, B, d_old))
    ds = public(K, depth, lam0)
    ref = dop853_reference(K, depth, lam0[:4])

    def acc(final):
        f = np.asarray(final)
        return float(np.max(np.abs(f - ref) / np.abs(ref).max(axis=1, keepdims=True)))

    load = float(np.mean(loads))
    rows = []

    def row(method, vals, note="", err=float("nan")):
        vals = np.asarray(vals, float)
        rows.append(
            dict(K=K, depth=depth, starts=B, method=method, ms_per_traj=1e3 * float(np.median(vals)),
                 ms_min=1e3 * float(vals.min()), ms_max=1e3 * float(vals.max()), err_vs_dop853=err,
                 note=note, load=load)
        )  # fmt: skip

    steps_new = float(np.mean(ds["num_steps"]))
    for name in calls:
        note = f"{cyrk_n} starts" if "CyRK" in name else ""
        err = acc(ds["lam"].values[:4, -1]) if name.startswith("svflow.simulate (public)") else float("nan")
        if name.startswith("svflow.simulate (public)"):
            note = f"{steps_new:.0f} steps/traj"
        row(name, times[name], note, err)
    row("svflow.simulate, fresh process, warm cache (new)", [k["first"] / B for k in kids["new"]])
    if old_src:
        ko = kids["old"]
        row("svflow 0.2 simulate (public), warm, own process", [k["warm"] / B for k in ko],
            f"{ko[0]['steps']:.0f} steps/traj", acc(ko[0]["final"]))  # fmt: skip
        row("svflow 0.2 simulate, fresh process, warm cache", [k["first"] / B for k in ko])
    if scipy_n:
        tic = time.process_time()
        scipy_loop(K, depth, lam0[:scipy_n])
        row("scipy solve_ivp LSODA loop", [(time.process_time() - tic) / scipy_n], f"{scipy_n} starts")
    if basin:
        from svflow.studies import basin_map

        eps, delta = np.geomspace(1e-3, 1e-1, 8), np.linspace(0.1, 0.8, 8)
        basin_map(K, [depth], eps, delta, family="random")  # compile
        tic = time.process_time()
        bm = basin_map(K, [depth], eps, delta, family="random")
        t_b = (time.process_time() - tic) / 64
        row("studies.basin_map, random family, per start", [t_b],
            f"64 starts, horizons tau = 100 (t = e^100) and on; {int((bm.outcome.values < 0).sum())} undecided")  # fmt: skip
    return rows


def main25(argv=None):
    p = argparse.ArgumentParser(description="issue 25: old beside new in one run")
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--old", default="", help="a folder holding an older svflow package (git archive)")
    p.add_argument("--only", choices=["16", "1024"], default=None)
    a = p.parse_args(argv)
    rows = []
    if a.only in (None, "16"):
        rows += issue25_case(16, 5, 1000, a.rounds, 1000, 20, a.old, True)
    if a.only in (None, "1024"):
        rows += issue25_case(1024, 3, 32, max(1, a.rounds - 1), 2, 0, a.old, False)
    print(C.table(rows, "issue 25: public batch path, old and new, one run (process CPU ms per trajectory)"))
    C.write_results("batch_issue25" + ("" if a.only is None else f"_K{a.only}"), rows,
                    attrs={"clock": "process CPU time"})  # fmt: skip


# --------------------------------------------------------------------------- issue 25: the CPU backend
CHILD_CPU = r"""
import os, sys, time, json
if {core!r}:
    sys.modules["dask"] = None  # a core install: dask (svflow's `sweep` extra) is absent
sys.path.insert(0, {src!r})
import numpy as np
import jax
jax.config.update("jax_enable_x64", True)
import svflow
{starts_src}
lam0 = starts({K}, {n})
c = time.process_time()
ds = svflow.simulate({K}, {depth}, init=lam0, batch_dims="start", t_end={t_end!r},
                     num_times={num_times}, solver=svflow.Solver(rtol={rtol!r}, atol={atol!r}))
first = time.process_time() - c
dask_array = "dask.array" in sys.modules
c = time.process_time()
ds["lam"].isel(time=-1).mean("start").values  # a user's first operation on the result
op = time.process_time() - c
print(json.dumps(dict(first=first, op=op, steps=float(ds["num_steps"].mean()), dask_array=dask_array,
                      dask="dask" in sys.modules and sys.modules["dask"] is not None)))
"""


def child_cpu(K, depth, n, core=False, src=None) -> dict:
    """A fresh process: svflow's first public call (numba's and JAX's caches as they are).

    Timed: ``svflow.simulate``'s first call alone, process CPU time (all threads). Not timed:
    the imports of numpy, jax and svflow and the starts. Timed with it: whatever the first call
    loads, numba's import included (svflow imports ``svflow._cpu.tsit5``, and so numba, at the
    first batch that runs on the CPU kernel), the kernel's load from numba's disk cache, JAX's
    backend and xarray's first dataset (with dask installed, xarray imports ``dask.array`` at its
    first Variable unless the Variable is built by xarray's fastpath, as svflow's are). Also
    returned: ``op``, the CPU time of a first operation on the result
    (``ds["lam"].isel(time=-1).mean("start").values``, which imports ``dask.array`` where dask
    is installed), and ``dask_array``, whether ``dask.array`` was imported by the time
    ``simulate`` returned. ``core=True``: the child sets ``sys.modules["dask"] = None`` before any
    import, so xarray and svflow see no dask, as in an install of svflow's core dependencies
    (dask comes only with the ``sweep`` extra). ``src``: the folder whose ``svflow`` package
    runs (default: this checkout).
    """
    import inspect

    code = CHILD_CPU.format(
        src=str(src or C.ROOT), starts_src=inspect.getsource(starts), K=K, depth=depth, n=n,
        t_end=T_END, num_times=NUM_TIMES, rtol=RTOL, atol=ATOL, core=bool(core),
    )  # fmt: skip
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    res = json.loads(out.stdout.strip().splitlines()[-1])
    if res["dask"] == bool(core):
        raise RuntimeError(f"child with core={core} saw dask={res['dask']}")
    return res


def kernel_floor(K, depth, lam0, num_times=2):
    """The SoA kernel alone (svflow._cpu.tsit5.solve_log_ce) on the end-state problem: no dataset,
    no wrapper; the same settings as the public call (u = log(lambda), rtol + atol |u|)."""
    from svflow._batch import DEFAULT_LANES
    from svflow._cpu.tsit5 import solve_log_ce

    K = lam0.shape[1]
    u0 = np.log(np.where(np.arange(K) == 0, 1.0, lam0))
    saves = np.log1p(log_times(T_END, num_times))
    order = np.argsort(np.log(np.linalg.norm(lam0, axis=1)), kind="stable")
    floor = float(saves[-1])
    for _ in range(100):
        floor = float(np.nextafter(floor, -np.inf))
    law = ReducedField(jnp.asarray(0.0), "ce", depth + 1, True, variable="log").cpu_kernel_law(K)
    return solve_log_ce(
        u0, saves, order, **law, rtol=ATOL, atol=RTOL, max_steps=200_000, dt0=0.01,
        dtmin=1e-13 * saves[-1], t1_floor=floor, lanes=min(DEFAULT_LANES, len(lam0)), max_steps_code=1,
    )  # fmt: skip


def cpu_case(K, depth, B, rounds, cyrk_n, scipy_n, basin_side, old_src="") -> tuple[list[dict], str]:
    """Issue 25 items 3-4: every in-process row once per round, rounds interleaved; the fresh
    processes (warm caches; :func:`child_cpu`, with dask and without, and the same two for the
    svflow package in ``old_src`` when given) between the rows of each round. Returns the rows and
    ``uptime`` at the start."""
    lam0 = starts(K, B)
    ts = log_times(T_END, NUM_TIMES)
    u0 = np.log(np.where(np.arange(K) == 0, 1.0, lam0))
    ufield = ReducedField(jnp.asarray(0.0), "ce", depth + 1, True, variable="log")
    loop = cyrk_solver(K, depth)

    def sim(num_times=NUM_TIMES, backend="auto"):
        return svflow.simulate(K, depth, init=lam0, batch_dims="start", t_end=T_END, num_times=num_times,
                               solver=Solver(rtol=RTOL, atol=ATOL, backend=backend))  # fmt: skip

    calls = {
        "svflow.simulate (public, 161 saves), warm": lambda: sim(),
        "svflow.simulate, end state only (num_times=2), warm": lambda: sim(2),
        "svflow.simulate, JAX engine forced (backend='jax')": lambda: sim(backend="jax"),
        "engine: solve_batch, numba backend (161 saves)": lambda: solve_batch(
            ufield, u0, ts, Solver(rtol=ATOL, atol=RTOL, backend="numba")
        ),
        "engine: solve_batch, JAX backend (161 saves)": lambda: solve_batch(
            ufield, u0, ts, Solver(rtol=ATOL, atol=RTOL, backend="jax")
        ),
        "floor: SoA kernel alone, end state (2 saves)": lambda: kernel_floor(K, depth, lam0),
        "CyRK nbsolve_ivp RK45 loop (numba), warm": lambda: cyrk_run(loop, lam0[:cyrk_n]),
    }
    per = {name: (cyrk_n if "CyRK" in name else B) for name in calls}
    uptime = subprocess.run(["uptime"], capture_output=True, text=True).stdout.strip()
    for fn in calls.values():
        fn()  # compile (XLA, numba)
    # fresh processes: (a) dask installed (as here), (b) a core install (dask hidden); with --old,
    # the same two for an older svflow package, in the same rounds
    fresh = {
        "svflow.simulate, fresh process, warm caches (a) dask installed": dict(core=False),
        "svflow.simulate, fresh process, warm caches (b) core install, no dask": dict(core=True),
    }
    if old_src:
        fresh["old svflow, fresh process, warm caches (a) dask installed"] = dict(core=False, src=old_src)
        fresh["old svflow, fresh process, warm caches (b) core install, no dask"] = dict(
            core=True, src=old_src
        )
    for kw in fresh.values():
        child_cpu(K, depth, B, **kw)  # fill the caches of a fresh process
    times = {name: [] for name in calls}
    for name in fresh:
        times[name], times[name + ", then a first xarray operation"] = [], []
    notes = {}
    loads = []
    for _ in range(rounds):
        loads.append(os.getloadavg()[0])
        for name, fn in calls.items():
            tic = time.process_time()
            fn()
            times[name].append((time.process_time() - tic) / per[name])
        for name, kw in fresh.items():
            res = child_cpu(K, depth, B, **kw)
            times[name].append(res["first"] / B)
            times[name + ", then a first xarray operation"].append((res["first"] + res["op"]) / B)
            notes[name] = f"dask.array imported by simulate: {res['dask_array']}"
    ds = sim()
    ds_jax = sim(backend="jax")
    ref = dop853_reference(K, depth, lam0[:4]) if K <= 64 else None
    notes |= {
        "svflow.simulate (public, 161 saves), warm": f"{float(ds.num_steps.mean()):.0f} steps/traj",
        "svflow.simulate, JAX engine forced (backend='jax')": f"{float(ds_jax.num_steps.mean()):.0f} steps/traj",
        "CyRK nbsolve_ivp RK45 loop (numba), warm": f"{cyrk_n} starts",
    }
    if scipy_n:
        tic = time.process_time()
        scipy_loop(K, depth, lam0[:scipy_n])
        times["scipy solve_ivp LSODA loop"] = [(time.process_time() - tic) / scipy_n]
        notes["scipy solve_ivp LSODA loop"] = f"{scipy_n} starts"
    if basin_side:
        from svflow.studies import basin_map

        eps, delta = np.geomspace(1e-3, 1e-1, basin_side), np.linspace(0.1, 0.9, basin_side)
        basin_map(K, [depth], eps, delta, family="random")  # compile
        tic = time.process_time()
        bm = basin_map(K, [depth], eps, delta, family="random")
        name = "studies.basin_map, random family, per start"
        times[name] = [(time.process_time() - tic) / basin_side**2]
        und = int((bm.outcome.values < 0).sum())
        notes[name] = (
            f"{basin_side}x{basin_side} starts of the same family, to t = e^100 and on; {und} undecided"
        )
        # the same map with its exact runs on the JAX engine (the kernel's double-log clock off)
        from svflow.studies._basins import BASIN_SOLVER

        jax_solver = dataclasses.replace(BASIN_SOLVER, backend="jax")
        basin_map(K, [depth], eps, delta, family="random", solver=jax_solver)  # compile
        tic = time.process_time()
        bm_jax = basin_map(K, [depth], eps, delta, family="random", solver=jax_solver)
        name_jax = "studies.basin_map, JAX engine forced (backend='jax'), per start"
        times[name_jax] = [(time.process_time() - tic) / basin_side**2]
        same = np.array_equal(bm.outcome.values, bm_jax.outcome.values)
        notes[name_jax] = f"same outcomes as the numba map: {same}"
    load = float(np.mean(loads))
    rows = []
    for name, vals in times.items():
        vals = np.asarray(vals, float)
        err = float("nan")
        if ref is not None and name.startswith("svflow.simulate (public"):
            f = ds["lam"].values[:4, -1]
            err = float(np.max(np.abs(f - ref) / np.abs(ref).max(axis=1, keepdims=True)))
        rows.append(
            dict(K=K, depth=depth, starts=B, method=name, ms_per_traj=1e3 * float(np.median(vals)),
                 ms_min=1e3 * float(vals.min()), ms_max=1e3 * float(vals.max()), err_vs_dop853=err,
                 note=notes.get(name, ""), load=load)
        )  # fmt: skip
    same = np.array_equal(ds.num_steps.values, ds_jax.num_steps.values)
    rel = float(np.max(np.abs(ds["lam"].values - ds_jax["lam"].values) / np.abs(ds_jax["lam"].values).max()))
    nan = float("nan")
    rows.append(dict(K=K, depth=depth, starts=B, method="numba vs JAX engine: same step counts, max rel diff",
                     ms_per_traj=nan, ms_min=nan, ms_max=nan, err_vs_dop853=nan,
                     note=f"same steps: {same}; lam rel diff {rel:.1e}", load=load))  # fmt: skip
    print(rows, flush=True)
    return rows, uptime


def main_cpu(argv=None):
    p = argparse.ArgumentParser(description="issue 25: the compiled CPU backend, one run")
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--only", choices=["16", "1024"], default=None)
    p.add_argument("--old", default="", help="a folder holding an older svflow package (git archive)")
    p.add_argument("--no-basin", action="store_true", help="skip the basin_map rows")
    p.add_argument("--tag", default="", help="suffix of the results files (keeps earlier runs' files)")
    a = p.parse_args(argv)
    rows, ups = [], []
    if a.only in (None, "16"):
        r, u = cpu_case(16, 5, 1000, a.rounds, 1000, 20, 0 if a.no_basin else 16, a.old)
        rows += r
        ups.append(f"K=16: {u}")
    if a.only in (None, "1024"):
        r, u = cpu_case(1024, 3, 32, max(1, a.rounds - 1), 2, 0, 0, a.old)
        rows += r
        ups.append(f"K=1024: {u}")
    title = "issue 25: compiled CPU backend, one run (process CPU ms per trajectory); " + " | ".join(ups)
    print(C.table(rows, title))
    C.write_results("batch_cpu" + ("" if a.only is None else f"_K{a.only}") + (f"_{a.tag}" if a.tag else ""), rows,
                    attrs={"clock": "process CPU time", "uptime": " | ".join(ups)})  # fmt: skip


def main_basin(argv=None):
    """Issue 25, the basin_map target: ``studies.basin_map`` (K = 16, L = 5, random family, a
    16 x 16 grid) per start against the public ``svflow.simulate`` per start (1000 starts of the
    same family, 161 saves, as ``cpu_case``), and the same map with the limit map forced onto
    XLA (as the svflow 0.5.0 pipeline: exact runs on the kernel, ``_limit.relax`` in XLA, its
    QPs now warm-started as the compiled map's), the rows interleaved in each round (process
    CPU time, median over the rounds)."""
    p = argparse.ArgumentParser(description="issue 25: basin_map against simulate, one run")
    p.add_argument("--rounds", type=int, default=5)
    p.add_argument("--side", type=int, default=16)
    a = p.parse_args(argv)
    import svflow._outcome as O
    from svflow.studies import basin_map

    K, depth, B, side = 16, 5, 1000, a.side
    lam0 = starts(K, B)
    eps, delta = np.geomspace(1e-3, 1e-1, side), np.linspace(0.1, 0.9, side)
    routed = O.limit_backend

    def xla_limit_map():
        O.limit_backend = lambda config: "jax"
        try:
            return basin_map(K, [depth], eps, delta, family="random")
        finally:
            O.limit_backend = routed

    calls = {
        "svflow.simulate (public, 161 saves), per trajectory": (lambda: public(K, depth, lam0), B),
        "studies.basin_map, limit map compiled (numba), per start": (
            lambda: basin_map(K, [depth], eps, delta, family="random"),
            side**2,
        ),
        "studies.basin_map, limit map in XLA, per start": (xla_limit_map, side**2),
    }
    uptime = subprocess.run(["uptime"], capture_output=True, text=True).stdout.strip()
    out = {name: fn() for name, (fn, _) in calls.items()}  # compile (XLA, numba)
    times = {name: [] for name in calls}
    loads = []
    for _ in range(a.rounds):
        loads.append(os.getloadavg()[0])
        for name, (fn, n) in calls.items():
            tic = time.process_time()
            fn()
            times[name].append((time.process_time() - tic) / n)
    new, old = (out[n] for n in list(calls)[1:])
    same = {v: bool(np.array_equal(new[v].values, old[v].values)) for v in ("outcome", "support", "decided")}
    sim = float(np.median(times[list(calls)[0]]))
    per_round = np.asarray(times[list(calls)[0]], float)
    rows = []
    for name, vals in times.items():
        vals = np.asarray(vals, float)
        med = float(np.median(vals))
        if "basin_map" in name:  # also the ratio within each round (same load): median and range
            r = vals / per_round
            note = f"{med / sim:.2f}x simulate (per round {np.median(r):.2f}x, {r.min():.2f}-{r.max():.2f}x)"
        else:
            note = f"{float(out[name].num_steps.mean()):.0f} steps"
        if "numba" in name:
            note += f"; {int((new.outcome.values < 0).sum())} undecided; same as XLA map: {same}"
        rows.append(dict(method=name, ms=1e3 * med, ms_min=1e3 * float(vals.min()),
                         ms_max=1e3 * float(vals.max()), note=note, load=float(np.mean(loads))))  # fmt: skip
    print(C.table(rows, f"issue 25: basin_map vs simulate, K = 16, L = 5 (process CPU ms); {uptime}"))
    C.write_results("batch_cpu_basin", rows, attrs={"clock": "process CPU time", "uptime": uptime})


if __name__ == "__main__":
    if "--basin" in sys.argv:
        main_basin([x for x in sys.argv[1:] if x != "--basin"])
    elif "--cpu" in sys.argv:
        main_cpu([x for x in sys.argv[1:] if x != "--cpu"])
    elif "--issue25" in sys.argv:
        main25([x for x in sys.argv[1:] if x != "--issue25"])
    else:
        main()
