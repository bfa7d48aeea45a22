r"""Full-parameter gradient flow (``svflow.flow``) against gradient descent (``svflow.train``).

Problem: cross-entropy deep linear UFM, K = 8 classes, depth L = 3 (N = 4
factors), width d = 16, one Gaussian start (``svflow.random_model(8, depth=3,
width=16, key=0)``), horizons t = 1e2, 1e4 and 1e8.

Accuracy: the final singular values of the centred logits against a tight
reference (``svflow.flow`` with rtol = 1e-10, atol = 1e-12), as
$\max_i |\sigma_i - \sigma_i^{\rm ref}| / \sigma_1^{\rm ref}$. Gradient descent's
error is $O(\eta)$ (the flow is its $\eta \to 0$ limit).

Equal accuracy: the flow runs at the loosest rtol (atol = rtol / 1000) of
1e-3 .. 1e-7 whose error is at most gradient descent's at the same t (the
rtol chosen at t = 1e4 is kept for t = 1e8).

Timing: process CPU time (``time.process_time``: the machine is shared), the
median over calls after a warm-up call (compiled, both), the compared calls
interleaved (each round times gradient descent once and each flow variant 5
times, 3 rounds; for gradient descent's 1e6 steps one round with 15 flow
calls each), public call against
public call with the same number of records (101; the flow's 101
records cost 101 x N + 1 SVDs (a third to a half of its time), so the flow is also
timed with 21 records, where gradient descent's cost would not change by
1 %, and with 101 records without the factor SVDs, ``factor_spectra=False``). GD to t = 1e8
(1e9 steps at eta = 0.1) is extrapolated from its CPU time per step at
t = 1e4.

Run: ``python benchmarks/bench_flow.py [--quick]``.
"""

from __future__ import annotations

import argparse
import os
import statistics
import time

import _common as C  # noqa: E402  (puts this checkout on sys.path)

import numpy as np

import svflow

K, DEPTH, WIDTH = 8, 3, 16
RTOLS = (1e-3, 1e-4, 1e-5, 1e-6, 1e-7)


def error(ds, ref) -> float:
    s, r = ds.sigma.values[-1], ref.sigma.values[-1]
    return float(np.max(np.abs(s - r)) / r[0])


def flow_at(model, t_end, rtol, num_times=101, factor_spectra=True):
    return svflow.flow(
        model,
        t_end=t_end,
        solver=svflow.Solver(rtol=rtol, atol=rtol * 1e-3),
        num_times=num_times,
        factor_spectra=factor_spectra,
    )


def interleaved(calls: dict, *, rounds: int, gd_calls: int, flow_calls: int) -> dict:
    """Median process CPU time of each call, after one warm-up call each, timed in
    ``rounds`` rounds that each run every call (``"gd"`` ``gd_calls`` times, the
    others ``flow_calls`` times)."""
    for fn in calls.values():
        fn()  # warm-up (compiled, both)
    times: dict = {name: [] for name in calls}
    for _ in range(rounds):
        for name, fn in calls.items():
            for _ in range(gd_calls if name == "gd" else flow_calls):
                tic = time.process_time()
                fn()
                times[name].append(time.process_time() - tic)
    return {name: statistics.median(ts) for name, ts in times.items()}


def main(quick: bool = False):
    model = svflow.random_model(K, depth=DEPTH, width=WIDTH, key=0)
    rows = []
    load = os.getloadavg()[0]
    etas = (0.1,) if quick else (0.1, 0.01)
    per_step, chosen = {}, {}
    for t_end in (1e2, 1e4, 1e8):
        ref = svflow.flow(
            model, t_end=t_end, solver=svflow.Solver(rtol=1e-10, atol=1e-12, max_steps=1_000_000)
        )
        errs = {rtol: error(flow_at(model, t_end, rtol), ref) for rtol in RTOLS}
        for eta in etas:
            steps = int(round(t_end / eta))
            measured = t_end <= 1e4 and not (quick and t_end > 1e2)
            if measured:
                gd = svflow.train(model, eta=eta, t_end=t_end)
                err_gd, how = error(gd, ref), "measured"
                # equal accuracy: the loosest rtol whose error is at most gradient descent's
                chosen[eta] = max(r for r in RTOLS if errs[r] <= err_gd or r == min(RTOLS))
            rtol = chosen[eta]
            fl = flow_at(model, t_end, rtol)
            calls = {
                "flow": lambda: flow_at(model, t_end, rtol),
                "flow21": lambda: flow_at(model, t_end, rtol, 21),
                "bare": lambda: flow_at(model, t_end, rtol, factor_spectra=False),
            }
            if measured:
                calls["gd"] = lambda: svflow.train(model, eta=eta, t_end=t_end)
            # interleaved: each round times every call (GD once, each flow 5 times), so
            # the compared rows share the load of the shared machine
            rounds = 1 if measured and steps > 1e5 else 3
            med = interleaved(calls, rounds=rounds, gd_calls=1, flow_calls=15 // rounds)
            if measured:
                t_gd = med["gd"]
                per_step[eta] = t_gd / steps
            else:
                t_gd, err_gd, how = per_step[eta] * steps, float("nan"), "extrapolated"
            t_flow, t_flow21, t_bare = med["flow"], med["flow21"], med["bare"]
            rows.append(
                {
                    "t_end": t_end,
                    "eta": eta,
                    "gd_steps": steps,
                    "gd_cpu_s": t_gd,
                    "gd_err": err_gd,
                    "gd_time": how,
                    "flow_rtol": rtol,
                    "flow_steps": int(fl.attrs["num_steps"]),
                    "flow_cpu_s": t_flow,
                    "flow_err": errs[rtol],
                    "speedup": t_gd / t_flow,
                    "flow_cpu_s_21rec": t_flow21,
                    "speedup_21rec": t_gd / t_flow21,
                    "flow_cpu_s_no_factor_svd": t_bare,
                    "speedup_no_factor_svd": t_gd / t_bare,
                    "rank": int(fl["rank"].values[-1]),
                    "load": load,
                }
            )
            print(C.table(rows[-1:]), flush=True)
    print(C.table(rows, f"flow vs train, K={K}, L={DEPTH}, d={WIDTH}, CPU s (load avg {load:.1f})"))
    C.write_results("flow_vs_train", rows, quick=quick)
    return rows


if __name__ == "__main__":
    p = argparse.ArgumentParser()
    p.add_argument("--quick", action="store_true")
    main(p.parse_args().quick)
