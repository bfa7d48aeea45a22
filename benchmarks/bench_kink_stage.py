r"""The L-DUFM polish's kink stage, per run (issue 25: the L-DUFM figures' full cost).

Problem: the L-DUFM (ReLU, squared loss, weight decay 0.004 on every factor) of
``svflow.explicit.ldufm_runs`` with K classes, depth L, width d, n samples per
class and init scale s, from the starts of the given seeds: GD for ``steps``
steps at learning rate 0.5 (all seeds vmapped), L-BFGS (3000 steps, no kink
stage), then the kink stage (``svflow.explicit._ldufm._kink_stage``: smoothing
continuation, face Newton, retries) on every run whose Clarke gap is still at
or above 1e-6, one run at a time.

Timing: process CPU time of each part (the machine may be shared; pin the
process and the BLAS threads, e.g. ``OPENBLAS_NUM_THREADS=1 taskset -c 1``,
and say so with the numbers).

Run: ``python benchmarks/bench_kink_stage.py K L d n s steps SEEDS``, e.g.
``python benchmarks/bench_kink_stage.py 10 4 30 1 1.0 200000 0,1,2,3`` (Fig. 3
middle's weight decay 0.004 column) or ``... 10 4 30 5 1.0 200000 0,1,2``
(Fig. 2's setting). Results: ``benchmarks/RESULTS.md`` section 17.2.
"""

from __future__ import annotations

import sys
import time

import jax

jax.config.update("jax_enable_x64", True)

from svflow.explicit import _ldufm as M  # noqa: E402


def main(argv: list[str]) -> None:
    K, L, d, n = (int(a) for a in argv[:4])
    scale, steps = float(argv[4]), int(argv[5])
    seeds = [int(x) for x in argv[6].split(",")]
    tic = time.process_time()
    model, factors = M._starts(K, L, d, [scale], seeds, n, 0.004)
    records = M._record_runs(model, factors, M.step_grid(steps, 41), eta=0.5, rank_rtol=1e-3)
    size = sum(F.size for F in model.factors)
    print(f"parameters {size}, face Newton runs: {M.face_newton_runs(model)}")
    print(f"GD: {time.process_time() - tic:.1f} CPU s", flush=True)
    tic = time.process_time()
    fs, obj, _, gap = M.polish(model, records[-1], max_steps=3000, kinks=False)
    print(f"L-BFGS: {time.process_time() - tic:.1f} CPU s; Clarke gaps {gap}", flush=True)
    for k, seed in enumerate(seeds):
        if gap[k] < M.GRAD_TOL:
            continue
        tic = time.process_time()
        _, o1, g1 = M._kink_stage(
            model,
            records[-1],
            [F[k] for F in fs],
            k,
            obj[k],
            gap[k],
            M.SMOOTHING_STEPS,
            M.NEWTON_STEPS,
            M.GRAD_TOL,
        )
        print(
            f"seed {seed}: kink stage {time.process_time() - tic:.1f} CPU s, Clarke gap {gap[k]:.1e} -> {g1:.1e}, "
            f"objective {obj[k]:.13g} -> {o1:.13g}",
            flush=True,
        )


if __name__ == "__main__":
    main(sys.argv[1:])
