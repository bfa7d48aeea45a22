"""Compiled CPU backends of svflow's engines (private).

:mod:`svflow._cpu.tsit5` is the batch engine of :mod:`svflow._batch` for the
balanced cross-entropy law in $u = \\log\\lambda$, compiled with numba: the same
method (diffrax's Tsit5), the same step-size controller (diffrax's
``PIDController`` as the JAX engine configures it) and the same saves, over
lanes of trajectories stored as structure-of-arrays. :func:`svflow._batch.solve_batch`
picks it on a CPU; the JAX engine stays the path for accelerators and tracing.
:mod:`svflow._cpu.limit` is the limit-map stage of the outcome pipeline
(:func:`svflow._outcome._limit_batch`: hand-off, the limit map's active-set
QP steps and the decision) written out the same way; ``svflow._outcome._stage``
picks it under the same ``Solver.backend`` choice.
"""
