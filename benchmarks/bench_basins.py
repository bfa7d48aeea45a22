r"""Item 2: basin-map throughput, one svflow batch vs a loop of scipy ``solve_ivp`` (LSODA).

Problem: balanced cross-entropy, K = 16 classes, depth L = 5 (N = 6 factors),
1000 starts of the basin maps' ``"random"`` family (``svflow.basin_start``):
$\lambda_i(0) = \varepsilon u_i$, $u_i \sim U[1-\delta, 1+\delta]$ (seed = start index)
with $\varepsilon$ log-uniform in $[10^{-3}, 10^{-1}]$ and $\delta$ uniform in
$[0.1, 0.9]$, horizon t = 1e8,
161 save times (``svflow.log_times``), rtol = 1e-8, atol = 1e-10 on both sides.

Baselines: ``scipy.integrate.solve_ivp(method="LSODA")`` on the same ODE with
a numpy right-hand side (same stable formulas, dense 16 x 16 Hadamard), one
start after another. The main baseline integrates in the same variable as
svflow, $\tau = \log(1+t)$ (it is faster for LSODA than plain t, so the ratio
is the conservative one); plain t is timed on a subset for reference.

Outcomes, computed the same way from both sides' saved trajectories: the
numerical rank of the final $\lambda$ (singular values above 0.1 x the largest,
``svflow._metrics.rank_from_sigma``) and the basin maps' classifier
(``svflow.classify_trajectory``: NC / rank r / undecided from the direction of
travel in log-time); the two sides must agree for >= 99 % of starts.

svflow rows: ``svflow._batch.solve_batch`` (naive = one vmap of everything,
then sorted chunks, the fast transform, two threads) and the public
``svflow.basin_batch`` (one vmap + classifier, run here at the same
tolerances and save grid).

Timing: wall time and process CPU time (all threads) of the whole batch,
after one warm-up call that compiles (compile time is reported separately).
The machine is shared: the CPU-time ratio is the robust number.

Run: ``python benchmarks/bench_basins.py`` (quick: scipy on 200 starts,
extrapolated, and said so) or ``--full`` (scipy on all 1000).
"""

from __future__ import annotations

import argparse
import statistics
import time

import _common as C  # noqa: E402  (puts this checkout on sys.path)

import jax
import jax.numpy as jnp
import numpy as np
from scipy.integrate import solve_ivp
from scipy.special import logsumexp

import svflow
from svflow._batch import solve_batch
from svflow._integrate import SolverConfig, check_solution
from svflow._metrics import rank_from_sigma, sigma_from_lam
from svflow._simulate import ReducedField

K, DEPTH = 16, 5
N = DEPTH + 1
T_END = 1e8
RTOL, ATOL = 1e-8, 1e-10


def starts(num: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(lam0 (num, K), scales, spreads) of the basin maps' "random" family, seeds 0..num-1."""
    rng = np.random.default_rng(seed)
    scales = 10 ** rng.uniform(-3, -1, num)
    spreads = rng.uniform(0.1, 0.9, num)
    lam0 = jax.vmap(lambda e, d, s: svflow.basin_start("random", K, e, d, s))(
        jnp.asarray(scales), jnp.asarray(spreads), jnp.arange(num))
    return np.asarray(lam0), scales, spreads


# ---------------------------------------------------------------- numpy/scipy side
_H = np.asarray(svflow.hadamard(K))


def rhs_numpy(t, lam):
    r"""$\dot\lambda = -N G |\lambda|^{2-2/N}$, $G = -(1-\mu)/K$, as in svflow._walsh (numpy)."""
    f = _H @ lam / K
    neg = -(f[0] - f[1:])  # -m_k, k != 0
    lse = np.logaddexp(0.0, logsumexp(neg))
    gp = np.zeros(K)
    gp[1:] = np.exp(neg - lse)
    omm = gp.sum() - _H @ gp
    omm[0] = 0.0
    return N * (omm / K) * np.abs(lam) ** (2.0 - 2.0 / N)


def rhs_numpy_tau(tau, lam):
    return np.exp(tau) * rhs_numpy(np.expm1(tau), lam)


def scipy_one(lam0, ts, variable="tau"):
    if variable == "tau":
        sol = solve_ivp(rhs_numpy_tau, (0.0, np.log1p(ts[-1])), lam0, method="LSODA",
                        t_eval=np.log1p(ts), rtol=RTOL, atol=ATOL)
    else:
        sol = solve_ivp(rhs_numpy, (0.0, ts[-1]), lam0, method="LSODA", t_eval=ts, rtol=RTOL, atol=ATOL)
    if sol.status != 0:
        raise RuntimeError(f"solve_ivp failed: {sol.message}")
    return sol.y.T, sol.nfev


def scipy_loop(lam0s, ts, variable="tau"):
    ys, nfev = [], 0
    w0, c0 = time.perf_counter(), time.process_time()
    for lam0 in lam0s:
        y, n = scipy_one(lam0, ts, variable)
        ys.append(y)
        nfev += n
    return np.stack(ys), time.perf_counter() - w0, time.process_time() - c0, nfev


# ---------------------------------------------------------------- svflow side
def outcome(lam_final) -> np.ndarray:
    """Numerical rank (threshold 0.1) of the final logits."""
    return np.asarray(rank_from_sigma(sigma_from_lam(jnp.asarray(lam_final))))


def classifier(ts, ys) -> np.ndarray:
    """The basin maps' outcome code (0 NC, r rank r, -1 undecided) of every trajectory."""
    f = jax.jit(jax.vmap(lambda y: svflow.classify_trajectory(jnp.asarray(ts), y).code))
    return np.asarray(f(jnp.asarray(ys)))


def public_basin_batch(scales, spreads, ts, repeats=5):
    """svflow.basin_batch (one vmap + classifier) at the benchmark's tolerances and grid."""
    config = SolverConfig(rtol=RTOL, atol=ATOL, max_steps=200_000)
    args = (jnp.asarray(scales), jnp.asarray(spreads), jnp.arange(len(scales)))
    kw = dict(classes=K, depth=DEPTH, t_end=float(ts[-1]), num_times=len(ts), family="random", config=config)
    w0 = time.perf_counter()
    out = jax.block_until_ready(svflow.basin_batch(*args, **kw))
    first = time.perf_counter() - w0
    walls, cpus = [], []
    for _ in range(repeats):
        w0, c0 = time.perf_counter(), time.process_time()
        out = jax.block_until_ready(svflow.basin_batch(*args, **kw))
        walls.append(time.perf_counter() - w0)
        cpus.append(time.process_time() - c0)
    return out, first, statistics.median(walls), statistics.median(cpus)


def svflow_batch(lam0s, ts, *, method="dense", chunk_size=None, sort=True, workers=1, repeats=5):
    field = ReducedField(jnp.asarray(0.0), "ce", N, True, method)
    config = SolverConfig(rtol=RTOL, atol=ATOL)
    w0 = time.perf_counter()
    sol = solve_batch(field, lam0s, ts, config, chunk_size=chunk_size, sort=sort, workers=workers)
    first = time.perf_counter() - w0
    walls, cpus = [], []
    for _ in range(repeats):
        w0, c0 = time.perf_counter(), time.process_time()
        sol = solve_batch(field, lam0s, ts, config, chunk_size=chunk_size, sort=sort, workers=workers)
        walls.append(time.perf_counter() - w0)
        cpus.append(time.process_time() - c0)
    check_solution(sol.ys, sol.result, sol.num_steps, config, float(ts[-1]))
    return sol, first, statistics.median(walls), statistics.median(cpus)


def step_profile(lam0, ts) -> list[dict]:
    """Cost of one solver step per member vs batch size (identical members: no waste),
    and of the right-hand side alone (6 Tsit5 stages per step)."""
    rows = []
    config = SolverConfig(rtol=RTOL, atol=ATOL)
    for method in ("dense", "fast"):
        field = ReducedField(jnp.asarray(0.0), "ce", N, True, method)
        rhs = jax.jit(jax.vmap(lambda y: field(0.0, y)))
        for B in (1, 16, 128, 1024):
            y = np.tile(lam0, (B, 1))
            sol = solve_batch(field, y, ts, config, chunk_size=B, sort=False)
            steps = int(sol.num_steps[0])
            cpu = C.timeit(lambda: solve_batch(field, y, ts, config, chunk_size=B, sort=False), repeats=3)
            yj = jnp.asarray(y)
            t_rhs = C.timeit(lambda: rhs(yj).block_until_ready(), repeats=20)
            rows.append({"method": method, "batch": B, "steps": steps,
                         "us_per_step_per_member": 1e6 * cpu / steps / B,
                         "us_per_rhs_per_member": 1e6 * t_rhs / B})
    return rows


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--full", action="store_true", help="scipy on all starts (about 2-3 minutes)")
    p.add_argument("--starts", type=int, default=1000)
    p.add_argument("--scipy-subset", type=int, default=200)
    a = p.parse_args(argv)
    B = a.starts
    ts = svflow.log_times(T_END)
    lam0s, scales, spreads = starts(B)
    print(f"basin batch: K={K}, L={DEPTH}, {B} starts, t_end={T_END:g}, rtol={RTOL:g}, atol={ATOL:g}", flush=True)

    # svflow variants
    variants = [
        ("naive: one vmap, unsorted", dict(chunk_size=B, sort=False)),
        ("sorted, chunks of 256", dict(chunk_size=256)),
        ("sorted, chunks of 128", dict(chunk_size=128)),
        ("sorted, chunks of 128, fast transform", dict(chunk_size=128, method="fast")),
        ("sorted, chunks of 128, 2 threads", dict(chunk_size=128, workers=2)),
    ]
    sv = {}
    for name, kw in variants:
        sol, first, wall, cpu = svflow_batch(lam0s, ts, **kw)
        sv[name] = (sol, first, wall, cpu)
        print(f"  svflow {name:40s} first call {first:6.2f} s  run wall {wall:6.3f} s  cpu {cpu:6.3f} s  "
              f"steps mean {sol.num_steps.mean():.0f} max {sol.num_steps.max()}", flush=True)
    pb, pb_first, pb_wall, pb_cpu = public_basin_batch(scales, spreads, ts)
    # same starts up to rounding (basin_batch builds them inside its jit, where XLA may fuse)
    np.testing.assert_allclose(np.asarray(pb["lam0"]), lam0s, rtol=1e-13, atol=0)
    print(f"  svflow.basin_batch (public, one vmap + classifier)  first call {pb_first:6.2f} s  "
          f"run wall {pb_wall:6.3f} s  cpu {pb_cpu:6.3f} s", flush=True)
    ref_sol = sv["sorted, chunks of 128"][0]
    out_sv = outcome(ref_sol.ys[:, -1])
    cls_sv = classifier(ts, ref_sol.ys)

    # scipy
    n_sp = B if a.full else min(a.scipy_subset, B)
    sp_ys, sp_wall, sp_cpu, nfev = scipy_loop(lam0s[:n_sp], ts, "tau")
    print(f"  scipy LSODA (tau) on {n_sp} starts: wall {sp_wall:.2f} s cpu {sp_cpu:.2f} s, "
          f"{nfev / n_sp:.0f} rhs evaluations per start", flush=True)
    n_t = min(50, n_sp)
    spt_ys, spt_wall, spt_cpu, nfev_t = scipy_loop(lam0s[:n_t], ts, "t")
    print(f"  scipy LSODA (t)   on {n_t} starts: wall {spt_wall:.2f} s cpu {spt_cpu:.2f} s, "
          f"{nfev_t / n_t:.0f} rhs evaluations per start", flush=True)
    out_sp = outcome(sp_ys[:, -1])
    cls_sp = classifier(ts, sp_ys)
    agree = float(np.mean(out_sp == out_sv[:n_sp]))
    agree_cls = float(np.mean(cls_sp == cls_sv[:n_sp]))
    agree_pub = float(np.mean(np.asarray(pb["outcome"])[:n_sp] == cls_sp))
    rel = np.abs(sp_ys[:, -1] - ref_sol.ys[:n_sp, -1]) / np.abs(ref_sol.ys[:n_sp, -1]).max(axis=1, keepdims=True)
    agree_t = float(np.mean(outcome(spt_ys[:, -1]) == out_sv[:n_t]))
    sp_rate_wall, sp_rate_cpu = n_sp / sp_wall, n_sp / sp_cpu

    rows = []
    for name, (sol, first, wall, cpu) in sv.items():
        rows.append({
            "method": f"svflow {name}", "starts_timed": B,
            "traj_per_s_wall": B / wall, "traj_per_s_cpu": B / cpu,
            "speedup_wall": (B / wall) / sp_rate_wall, "speedup_cpu": (B / cpu) / sp_rate_cpu,
            "first_call_s": first, "speedup_incl_compile": (B / first) / sp_rate_wall,
            "outcome_agreement": float(np.mean(outcome(sol.ys[:n_sp, -1]) == out_sp)),
            "classifier_agreement": float(np.mean(classifier(ts, sol.ys[:n_sp]) == cls_sp)),
        })
    rows.append({
        "method": "svflow.basin_batch (public: one vmap + classifier)", "starts_timed": B,
        "traj_per_s_wall": B / pb_wall, "traj_per_s_cpu": B / pb_cpu,
        "speedup_wall": (B / pb_wall) / sp_rate_wall, "speedup_cpu": (B / pb_cpu) / sp_rate_cpu,
        "first_call_s": pb_first, "speedup_incl_compile": (B / pb_first) / sp_rate_wall,
        "outcome_agreement": float(np.mean(outcome(np.asarray(pb["lam_end"])[:n_sp]) == out_sp)),
        "classifier_agreement": agree_pub,
    })
    rows.append({
        "method": "scipy LSODA loop, tau = log(1+t)", "starts_timed": n_sp,
        "traj_per_s_wall": sp_rate_wall, "traj_per_s_cpu": sp_rate_cpu,
        "speedup_wall": 1.0, "speedup_cpu": 1.0, "first_call_s": float("nan"),
        "speedup_incl_compile": float("nan"), "outcome_agreement": 1.0, "classifier_agreement": 1.0,
    })
    rows.append({
        "method": "scipy LSODA loop, plain t", "starts_timed": n_t,
        "traj_per_s_wall": n_t / spt_wall, "traj_per_s_cpu": n_t / spt_cpu,
        "speedup_wall": (n_t / spt_wall) / sp_rate_wall, "speedup_cpu": (n_t / spt_cpu) / sp_rate_cpu,
        "first_call_s": float("nan"), "speedup_incl_compile": float("nan"), "outcome_agreement": agree_t,
        "classifier_agreement": float(np.mean(classifier(ts, spt_ys) == cls_sv[:n_t])),
    })
    print(C.table(rows, f"\nBasin batch throughput (scipy timed on {n_sp} of {B} starts"
                        f"{', extrapolated per trajectory' if n_sp < B else ''})"))
    print(f"\noutcome (rank at 0.1) agreement svflow vs scipy: {agree:.4f} on {n_sp} starts; "
          f"max relative difference of final lambda: {rel.max():.2e}; "
          f"ranks: {dict(zip(*np.unique(out_sv, return_counts=True)))}")
    print(f"classifier agreement svflow vs scipy: {agree_cls:.4f}; classifier codes (0 NC, r rank r, "
          f"-1 undecided): {dict(zip(*np.unique(cls_sv, return_counts=True)))}")
    steps = ref_sol.num_steps
    print(f"step counts: mean {steps.mean():.1f}, max {steps.max()}, corr(log scale, steps) = "
          f"{np.corrcoef(np.log(scales), steps)[0, 1]:.2f}; unsorted batch waste "
          f"1 - mean/max = {1 - steps.mean() / steps.max():.2f}")
    if a.full:
        prof = step_profile(lam0s[int(np.argmax(ref_sol.num_steps))], ts)
        print(C.table(prof, "\nProfile: solver step cost per member vs batch size (CPU time; "
                            "one rhs call = one dispatch, so its small-B numbers include dispatch)"))
        C.write_results("basins_step_profile", prof, quick=not a.full)
    attrs = {"classes": K, "depth": DEPTH, "t_end": T_END, "rtol": RTOL, "atol": ATOL,
             "starts": B, "scipy_starts": n_sp, "outcome_agreement": agree,
             "classifier_agreement": agree_cls,
             "max_rel_diff_final_lam": float(rel.max()), "scipy_extrapolated": bool(n_sp < B)}
    C.write_results("basins_throughput", rows, attrs, quick=not a.full)
    return rows, attrs


if __name__ == "__main__":
    main()
