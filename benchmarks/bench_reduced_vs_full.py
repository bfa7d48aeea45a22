r"""Item 1: reduced ODE vs full-parameter gradient descent, same spectral trajectory.

Problem: cross-entropy deep UFM, K = 16 classes, depth L = 5 (N = 6 factors),
width d = 256, float64, spectral start $\lambda_i(0) = u_i$, $u_i \sim U[0.5, 1.5]$
(``svflow.spectral_init(16, 5, scale=1.0, spread=0.5, seed=0)``), horizon
t = 10 (``--full``) or t = 2 (quick), 21 log-spaced record times.

Accuracy: each engine is run until its $\lambda(t)$ agrees with a tight
reference (``svflow.simulate`` with rtol = 1e-12, atol = 1e-14, saved at the
same times) to ``TOL = 1e-4`` relative, measured by ``svflow.compare``:
$\max_t \|\lambda(t) - \lambda^{\rm ref}(t)\|_2 / \|\lambda^{\rm ref}(t)\|_2$.

* Full GD (``svflow.train`` on ``svflow.spectral_model``): the error is
  $O(\eta)$. A pilot run at $\eta_0$ gives the constant; then $\eta$ is set to
  80 % of the predicted largest step meeting TOL and shrunk by 0.7 until the
  run meets it. Only that final run is timed, after a 1-step warm-up at the
  same $\eta$ (eta is static in the jitted GD loop, so each new eta compiles).
* Reduced ODE (``svflow.simulate``): the loosest rtol (atol = rtol / 100) among
  1e-4 .. 1e-8 that meets TOL, timed on its second call (compiled).

The scale-1 start keeps GD's run short: a scale-0.1 start followed through
its blow-up to t = 100 has a similar $O(\eta)$ constant but needs ~10x more
GD steps, while the reduced ODE's cost barely changes.

Run: ``python benchmarks/bench_reduced_vs_full.py [--full]``.
"""

from __future__ import annotations

import argparse
import math
import time

import _common as C  # noqa: E402  (puts this checkout on sys.path)

import jax
import jax.numpy as jnp

import svflow
from svflow._integrate import Solver, solve
from svflow._simulate import ReducedField

K, DEPTH, WIDTH = 16, 5, 256
TOL = 1e-4
NUM_TIMES = 21


def reference(start, times):
    return svflow.simulate(
        K, DEPTH, init=start, times=times, solver=svflow.Solver(rtol=1e-12, atol=1e-14, max_steps=1_000_000)
    )


def gd_run(model, start, eta, t_end, timed=False):
    eta = t_end / math.ceil(t_end / eta)  # a whole number of steps to t_end
    if timed:  # compile at this eta first
        svflow.train(model, eta=eta, steps=1, num_times=2)
    w0, c0 = time.perf_counter(), time.process_time()
    ds = svflow.train(model, eta=eta, t_end=t_end, num_times=NUM_TIMES)
    wall, cpu = time.perf_counter() - w0, time.process_time() - c0
    err = float(svflow.compare(reference(start, ds.time.values), ds).max_rel_error)
    return ds, err, wall, cpu


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--full", action="store_true", help="horizon t = 10 (default t = 2)")
    a = p.parse_args(argv)
    t_end = 10.0 if a.full else 2.0
    start = svflow.spectral_init(K, DEPTH, 1.0, 0.5, seed=0)
    model = svflow.spectral_model(start, depth=DEPTH, width=WIDTH, key=0, dtype=jnp.float64)
    print(
        f"reduced vs full GD: K={K}, L={DEPTH}, d={WIDTH}, float64, t_end={t_end:g}, tol={TOL:g}", flush=True
    )

    # --- full GD: pilot, then the largest eta meeting TOL
    eta0 = 0.05
    _, err0, _, _ = gd_run(model, start, eta0, t_end)
    print(f"  GD pilot eta={eta0:g}: max rel error {err0:.3e}", flush=True)
    trials = [{"engine": "full GD", "setting": f"eta={eta0:g}", "max_rel_error": err0}]
    eta = eta0 * 0.8 * TOL / err0
    while True:
        ds_f, err, wall_f, cpu_f = gd_run(model, start, eta, t_end, timed=True)
        steps = int(ds_f.attrs["steps"])
        print(
            f"  GD eta={eta:.3e} ({steps} steps): max rel error {err:.3e}, wall {wall_f:.2f} s, "
            f"cpu {cpu_f:.2f} s",
            flush=True,
        )
        trials.append({"engine": "full GD", "setting": f"eta={eta:.3e}", "max_rel_error": err})
        if err <= TOL:
            break
        eta *= 0.7

    # the GD loop alone (no records, no dataset): compiled at this eta by the run above
    from svflow._full.train import _advance_jit

    w0, c0 = time.perf_counter(), time.process_time()
    jax.block_until_ready(_advance_jit(model, eta, jnp.asarray(0), jnp.asarray(steps)))
    wall_g, cpu_g = time.perf_counter() - w0, time.process_time() - c0

    # --- reduced ODE: loosest tolerance meeting TOL, at the GD's times
    times = ds_f.time.values
    ref = reference(start, times)
    chosen = None
    for rtol in (1e-4, 1e-5, 1e-6, 1e-7, 1e-8):
        kw = dict(init=start, times=times, rtol=rtol, atol=rtol / 100)
        svflow.simulate(K, DEPTH, **kw)  # compile
        w0, c0 = time.perf_counter(), time.process_time()
        reps = 5
        for _ in range(reps):
            ds_r = svflow.simulate(K, DEPTH, **kw)
        wall_r, cpu_r = (time.perf_counter() - w0) / reps, (time.process_time() - c0) / reps
        err_r = float(svflow.compare(ref, ds_r).max_rel_error)
        trials.append({"engine": "reduced ODE", "setting": f"rtol={rtol:g}", "max_rel_error": err_r})
        print(
            f"  reduced rtol={rtol:g}: max rel error {err_r:.3e}, wall {wall_r * 1e3:.1f} ms, "
            f"solver steps {ds_r.attrs['num_steps']}",
            flush=True,
        )
        if err_r <= TOL:
            chosen = (rtol, err_r, wall_r, cpu_r, int(ds_r.attrs["num_steps"]))
            break
    rtol, err_r, wall_r, cpu_r, nsteps = chosen
    # the solver alone (no dataset, no post-processing): what simulate's overhead hides
    field = ReducedField(jnp.asarray(0.0), "ce", DEPTH + 1, True)
    config = Solver(rtol=rtol, atol=rtol / 100)
    y0, ts = jnp.asarray(start.lam0), jnp.asarray(times)
    solve_once = lambda: jax.block_until_ready(solve(field, y0, ts, None, config))
    wall_s = C.timeit(solve_once, repeats=20, clock=time.perf_counter)
    cpu_s = C.timeit(solve_once, repeats=20)
    rows = [
        {
            "engine": "full GD (svflow.train)",
            "setting": f"eta={eta:.3e}, {steps} steps",
            "max_rel_error": err,
            "wall_s": wall_f,
            "cpu_s": cpu_f,
            "ratio_wall": 1.0,
            "ratio_cpu": 1.0,
        },
        {
            "engine": "full GD loop only (_train.advance)",
            "setting": f"eta={eta:.3e}, {steps} steps",
            "max_rel_error": err,
            "wall_s": wall_g,
            "cpu_s": cpu_g,
            "ratio_wall": wall_f / wall_g,
            "ratio_cpu": cpu_f / cpu_g,
        },
        {
            "engine": "reduced ODE (svflow.simulate)",
            "setting": f"rtol={rtol:g}, {nsteps} solver steps",
            "max_rel_error": err_r,
            "wall_s": wall_r,
            "cpu_s": cpu_r,
            "ratio_wall": wall_f / wall_r,
            "ratio_cpu": cpu_f / cpu_r,
        },
        {
            "engine": "reduced solver only (_integrate.solve)",
            "setting": f"rtol={rtol:g}",
            "max_rel_error": err_r,
            "wall_s": wall_s,
            "cpu_s": cpu_s,
            "ratio_wall": wall_f / wall_s,
            "ratio_cpu": cpu_f / cpu_s,
        },
    ]
    print(
        C.table(
            rows,
            f"\nReduced ODE vs full GD to {TOL:g} relative (t_end = {t_end:g}); "
            "ratio = full GD time / this row's time",
        )
    )
    print(C.table(trials, "\nAccuracy trials"))
    print(
        f"\nloops only (GD steps vs the ODE solver, no records or datasets): "
        f"{wall_g / wall_s:.3g}x wall, {cpu_g / cpu_s:.3g}x CPU"
    )
    attrs = {
        "classes": K,
        "depth": DEPTH,
        "width": WIDTH,
        "t_end": t_end,
        "tol": TOL,
        "eta": eta,
        "gd_steps": steps,
        "reduced_rtol": rtol,
        "speedup_wall": wall_f / wall_r,
        "speedup_cpu": cpu_f / cpu_r,
        "speedup_solver_only_wall": wall_f / wall_s,
        "speedup_solver_only_cpu": cpu_f / cpu_s,
        "speedup_loops_only_wall": wall_g / wall_s,
        "speedup_loops_only_cpu": cpu_g / cpu_s,
    }
    C.write_results(f"reduced_vs_full_t{t_end:g}", rows, attrs)
    C.write_results(f"reduced_vs_full_trials_t{t_end:g}", trials, attrs)
    return rows, attrs


if __name__ == "__main__":
    main()
