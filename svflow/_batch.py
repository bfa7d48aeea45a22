r"""Batches of reduced-ODE trajectories: sorted, chunked, memory-bounded.

Under ``jax.vmap`` an adaptive solve steps until its *slowest* member ends:
the members already done keep being stepped (masked) while the others move.
For basin maps the step counts of different starts differ by 3x (K = 16,
L = 5, t = 1e8, rtol = 1e-8: from ~130 steps for starts of size $10^{-1}$ to
~400 for size $10^{-3}$, which spend longer crossing their blow-up), so one
vmapped batch of everything wastes about half its work (mean/max = 0.52).
:func:`solve_batch` therefore

1. sorts the starts by a cost proxy (default: $\log\|y_0\|$, which predicts
   the step count of balanced cross-entropy starts; correlation -0.9 in
   ``benchmarks/bench_basins.py``), so that each chunk holds starts of similar
   cost;
2. runs them in equal-sized chunks through one compiled
   ``vmap(solve)`` (the last chunk is padded by repeating its last start, so
   every call has the same shape and nothing recompiles);
3. sizes the chunks from a memory budget ``max_bytes`` (the saved trajectory
   of every member of a chunk and the solver's work arrays must fit), and
   copies each chunk's result to host memory before the next one starts, so
   the device working set is bounded whatever the number of starts;
4. optionally keeps ``workers`` chunks in flight on separate threads (XLA
   releases the GIL; a vmapped solve of a small ODE runs on one core).

Each trajectory is integrated exactly as by :func:`svflow._integrate.solve`
(same solver, controller and tolerances, in $\tau = \log(1+t)$): chunking and
order change which trajectories share a batch, never the numbers of any one.
"""

from __future__ import annotations

import math
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Callable

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np

from ._integrate import SolverConfig, check_times, solve

__all__ = ["BatchSolution", "solve_batch", "chunk_size_for", "DEFAULT_MAX_BYTES"]

DEFAULT_MAX_BYTES = 1 << 30
"""Default memory budget of one chunk in flight (1 GiB)."""

DEFAULT_CHUNK = 128
"""Largest default chunk: past ~128 members the per-member cost of a step stops
falling (benchmarks/RESULTS.md, item 2) while the slowest-member waste grows."""

_WORK_FACTOR = 4
"""Bytes of device memory per saved value of a chunk, in units of one float
(the saved trajectory, its transposition and the copy to host), plus
``_SOLVER_ARRAYS`` state-sized solver work arrays per member."""
_SOLVER_ARRAYS = 64


@dataclass(frozen=True)
class BatchSolution:
    """Result of :func:`solve_batch`, in the order of the starts given.

    Attributes:
        ys: saved states, shape (B, T, *state shape) (numpy).
        result: diffrax result codes, batched (use with ``check_solution``).
        num_steps: steps taken per trajectory, shape (B,) (numpy).
        chunk_size: members per compiled call.
        num_chunks: number of compiled calls.
    """

    ys: np.ndarray
    result: object
    num_steps: np.ndarray
    chunk_size: int
    num_chunks: int


def chunk_size_for(state_shape: tuple, num_times: int, max_bytes: int, itemsize: int = 8) -> int:
    """Largest chunk whose device working set fits in ``max_bytes``."""
    size = int(np.prod(state_shape)) if state_shape else 1
    per_member = itemsize * size * (_WORK_FACTOR * num_times + _SOLVER_ARRAYS)
    return max(1, int(max_bytes // per_member))


@eqx.filter_jit
def _solve_chunk(field, y0s, ts, args, config: SolverConfig):
    return jax.vmap(lambda y: solve(field, y, ts, args, config))(y0s)


def solve_batch(
    field: Callable,
    y0s,
    ts,
    config: SolverConfig = SolverConfig(),
    *,
    args=None,
    chunk_size: int | None = None,
    max_bytes: int = DEFAULT_MAX_BYTES,
    sort: bool | np.ndarray = True,
    workers: int = 1,
) -> BatchSolution:
    r"""Integrate ``field`` from every start in ``y0s`` (leading axis B), saving at ``ts``.

    Args:
        field: vector field ``field(t, y, args)`` (e.g. ``ReducedField``).
        y0s: starts, array of shape (B, *state shape).
        ts: save times (t >= 0, increasing), as for :func:`svflow._integrate.solve`.
        config: solver settings (identical for every member).
        args: passed to ``field`` (not batched).
        chunk_size: members per compiled call; default
            ``min(128, B, chunk from max_bytes)``.
        max_bytes: memory budget of the chunks in flight (all ``workers`` together).
        sort: ``True`` groups starts by $\log\|y_0\|$, ``False`` keeps the
            given order, or an array of B sort keys (similar keys = similar cost).
        workers: chunks in flight at once (threads); 1 runs them one by one.

    Returns:
        :class:`BatchSolution` in the order of ``y0s``. Nothing is checked:
        pass ``result`` and ``num_steps`` to ``check_solution``.
    """
    y0s = np.asarray(y0s, dtype=float)
    if y0s.ndim < 2 or y0s.shape[0] < 1:
        raise ValueError(
            f"y0s must hold B >= 1 starts along its first axis, shape (B, *state); got shape {y0s.shape}."
        )
    ts = check_times(ts)
    if int(workers) < 1:
        raise ValueError(f"workers must be an integer >= 1; got {workers!r}.")
    if not (max_bytes > 0):
        raise ValueError(f"max_bytes must be a positive number of bytes; got {max_bytes!r}.")
    B, state = y0s.shape[0], y0s.shape[1:]
    T = ts.size
    budget = chunk_size_for(state, T, max_bytes / int(workers))
    if chunk_size is None:
        chunk_size = min(DEFAULT_CHUNK, B, budget)
    elif int(chunk_size) < 1:
        raise ValueError(f"chunk_size must be an integer >= 1 or None; got {chunk_size!r}.")
    chunk_size = int(min(chunk_size, B))

    if sort is True:
        key = np.log(np.linalg.norm(y0s.reshape(B, -1), axis=1) + 1e-300)
        order = np.argsort(key, kind="stable")
    elif sort is False:
        order = np.arange(B)
    else:
        key = np.asarray(sort, dtype=float)
        if key.shape != (B,):
            raise ValueError(f"sort keys must have shape (B,) = ({B},); got shape {key.shape}.")
        order = np.argsort(key, kind="stable")

    n_chunks = math.ceil(B / chunk_size)
    padded = np.concatenate([order, np.full(n_chunks * chunk_size - B, order[-1])])
    chunks = padded.reshape(n_chunks, chunk_size)
    ts_j = jnp.asarray(ts)
    ys = np.empty((B, T) + state, dtype=float)  # host copy: B x T x state floats
    steps = np.empty(B, dtype=np.int64)
    codes = [None] * n_chunks

    def run(i):
        idx = chunks[i]
        out_ys, res, ns = _solve_chunk(field, jnp.asarray(y0s[idx]), ts_j, args, config)
        keep = min(chunk_size, B - i * chunk_size)
        ys[idx[:keep]] = np.asarray(out_ys)[:keep]
        steps[idx[:keep]] = np.asarray(ns)[:keep]
        codes[i] = jax.tree.map(lambda x: np.array(np.asarray(x)[:keep]), res)

    if int(workers) == 1 or n_chunks == 1:
        for i in range(n_chunks):
            run(i)
    else:
        with ThreadPoolExecutor(int(workers)) as ex:
            list(ex.map(run, range(n_chunks)))
    result = jax.tree.map(lambda *xs: np.concatenate(xs), *codes)
    inverse = np.empty(B, dtype=np.int64)
    inverse[order] = np.arange(B)
    result = jax.tree.map(lambda x: x[inverse], result)
    return BatchSolution(ys=ys, result=result, num_steps=steps, chunk_size=chunk_size, num_chunks=n_chunks)
