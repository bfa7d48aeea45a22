r"""Singular values of many small matrices on the host: LAPACK, one compiled loop.

:func:`svflow.flow` records the singular values of every factor at every save
(``sigma_factor``): 101 saves of a depth-3, width-16 model are 404 SVDs of
16 x 16 and 16 x 8 matrices. For matrices this small a batched
``jnp.linalg.svd`` (one LAPACK ``gesdd`` per matrix behind XLA's custom call)
costs about 16 us per 16 x 16 matrix, more than the whole integration. Here
one compiled numba loop runs the two stages ``gesdd`` runs when no vectors
are wanted: the Householder (Golub-Kahan) bidiagonalisation (:func:`_bidiag`,
LAPACK's unblocked ``dgebd2`` written out, 8 matrices at once in lockstep so
that every operation is one vector loop; LAPACK's blocked ``dgebrd`` one
matrix at a time from 128 on, as LAPACK's own crossover) and the singular
values of the bidiagonal by dqds (LAPACK's ``dlasq1``, high relative
accuracy), with no wrapper in between: about 9 us per 16 x 16 matrix on the
shared test machine, most of it dqds (benchmarks/RESULTS.md, section 14). The
values are those of ``numpy.linalg.svd`` up to rounding (tests/test_flow.py
pins them against it).

A row-major (C-order) (r, c) matrix is the column-major (c, r) matrix
$A^\top$, which has the same singular values, so the kernels read the
stored factors without transposing when c >= r.
"""

from __future__ import annotations

import math
from typing import no_type_check

import llvmlite.binding as llvm  # type: ignore[import-untyped]  # (numba's own dependency)
import numba
import numpy as np
from numba import types
from numba.extending import get_cython_function_address

__all__ = ["factor_singular_values"]


def _lapack(name: str, nargs: int):
    """SciPy's LAPACK routine ``name`` as a numba external function of ``nargs`` pointers.

    The routine is bound by a symbol name (registered with LLVM here, at
    import), not by its address, so the compiled kernel can be cached on disk.
    """
    symbol = f"svflow_{name}"
    llvm.add_symbol(symbol, get_cython_function_address("scipy.linalg.cython_lapack", name))
    return types.ExternalFunction(symbol, types.void(*[types.voidptr] * nargs))


# every argument of the Fortran interface is a pointer
_dgebrd = _lapack("dgebrd", 11)
_dlasq1 = _lapack("dlasq1", 5)

_LANES = 8
"""Matrices bidiagonalised together in lockstep (:func:`_bidiag`): one AVX-512 or
two AVX2 vectors of float64 per operation."""

_BLOCKED = 128
"""From this smaller dimension on LAPACK's blocked ``dgebrd`` bidiagonalises (below it
:func:`_bidiag`, the unblocked Householder loop ``dgebrd`` itself would run: LAPACK's
default crossover)."""


@numba.njit(cache=True, nogil=True, fastmath={"reassoc", "contract"})  # sums in any order: rounding only
@no_type_check  # no import-hook wrapper (jaxtyping's test hook) around a numba function
def _bidiag(a, M, N, d, e, u, w, alv, vtv, sc):
    """Householder bidiagonalisation (Golub-Kahan) of G = :data:`_LANES` column-major
    M x N matrices at once (M >= N), in lockstep: entry (i, j) of matrix g is
    ``a[(j * M + i) * G + g]``, so every operation is one vector loop over the G lanes.

    ``d[:, g]`` (N,): the diagonal, ``e[:, g]`` (N,): the superdiagonal
    (``e[N-1] = 0``), of the upper bidiagonal matrix orthogonally equivalent
    to matrix g (signs may differ: the singular values do not); ``a`` is
    overwritten; ``u`` (N, G), ``w`` (M, G), ``alv``, ``vtv``, ``sc`` (G,) are
    scratch. Norms are scaled by the largest entry (no overflow or
    underflow); a zero column or row is left as it is (its reflector is the
    identity). LAPACK's ``dgebd2`` without the reflectors' storage and the
    per-reflector BLAS calls (which dominate at d ~ 16).
    """
    G = _LANES
    for k in range(N):
        ck = k * M
        for g in range(G):
            sc[g] = 0.0
        for i in range(k, M):
            for g in range(G):
                sc[g] = max(sc[g], abs(a[(ck + i) * G + g]))
        for g in range(G):
            vtv[g] = 0.0
        for i in range(k, M):
            for g in range(G):
                s = sc[g] if sc[g] > 0.0 else 1.0
                t = a[(ck + i) * G + g] / s
                vtv[g] += t * t
        for g in range(G):
            nrm = sc[g] * math.sqrt(vtv[g])
            x0 = a[(ck + k) * G + g]
            al = -nrm if x0 >= 0 else nrm
            d[k, g] = al
            a[(ck + k) * G + g] = x0 - al
            v = nrm * (nrm + abs(x0))
            vtv[g] = v if v > 0.0 else 1.0
        for j in range(k + 1, N):
            cj = j * M
            for g in range(G):
                alv[g] = 0.0
            for i in range(k, M):
                for g in range(G):
                    alv[g] += a[(ck + i) * G + g] * a[(cj + i) * G + g]
            for g in range(G):
                alv[g] /= vtv[g]
            for i in range(k, M):
                for g in range(G):
                    a[(cj + i) * G + g] -= alv[g] * a[(ck + i) * G + g]
        if k < N - 1:
            for g in range(G):
                sc[g] = 0.0
            for j in range(k + 1, N):
                for g in range(G):
                    u[j, g] = a[(j * M + k) * G + g]
                    sc[g] = max(sc[g], abs(u[j, g]))
            for g in range(G):
                vtv[g] = 0.0
            for j in range(k + 1, N):
                for g in range(G):
                    s = sc[g] if sc[g] > 0.0 else 1.0
                    t = u[j, g] / s
                    vtv[g] += t * t
            for g in range(G):
                nrm = sc[g] * math.sqrt(vtv[g])
                x0 = u[k + 1, g]
                al = -nrm if x0 >= 0 else nrm
                e[k, g] = al
                u[k + 1, g] = x0 - al
                v = nrm * (nrm + abs(x0))
                vtv[g] = v if v > 0.0 else 1.0
            for i in range(k + 1, M):
                for g in range(G):
                    w[i, g] = 0.0
            for j in range(k + 1, N):
                cj = j * M
                for i in range(k + 1, M):
                    for g in range(G):
                        w[i, g] += u[j, g] * a[(cj + i) * G + g]
            for j in range(k + 1, N):
                cj = j * M
                for g in range(G):
                    alv[g] = u[j, g] / vtv[g]
                for i in range(k + 1, M):
                    for g in range(G):
                        a[(cj + i) * G + g] -= alv[g] * w[i, g]
        else:
            for g in range(G):
                e[k, g] = 0.0


@numba.njit(cache=True, nogil=True)
@no_type_check  # no import-hook wrapper (jaxtyping's test hook) around a numba function
def _svals_kernel(ys, offsets, rows, cols, keep, out, info):
    """``out[i, l, :keep]``: the ``keep`` largest singular values of factor l of row i.

    ``ys`` (R, P) float64 C-order; factor l is ``ys[i, offsets[l]:offsets[l] + rows[l] * cols[l]]``
    read as a C-order (rows[l], cols[l]) matrix. Entries past min(rows, cols) are 0.
    ``info[i, l]``: LAPACK's info (0 = converged). Below :data:`_BLOCKED` the rows
    are bidiagonalised :data:`_LANES` at a time (the last group padded with
    copies of its last row, whose results are dropped).
    """
    G = _LANES
    R = ys.shape[0]
    N = offsets.shape[0]
    big = 1
    kmax = 1
    mn = 2
    mmax = 1
    for l in range(N):
        mmax = max(mmax, max(rows[l], cols[l]))
        big = max(big, rows[l] * cols[l])
        kmax = max(kmax, min(rows[l], cols[l]))
        mn = max(mn, rows[l] + cols[l])
    a = np.empty(big * G)
    d = np.empty(kmax)
    e = np.empty(kmax)
    dl = np.empty((kmax, G))
    el = np.empty((kmax, G))
    u = np.empty((kmax, G))
    w = np.empty((mmax, G))
    alv = np.empty(G)
    vtv = np.empty(G)
    sc = np.empty(G)
    tauq = np.empty(kmax)
    taup = np.empty(kmax)
    lwork = 64 * mn  # dgebrd's (m + n) x block size; dlasq1 needs 4 k
    work = np.empty(lwork)
    ints = np.zeros(6, dtype=np.int32)  # m, n, lda, info, k, lwork
    for l in range(N):
        r = rows[l]
        c = cols[l]
        k = min(r, c)
        o = offsets[l]
        ints[4] = k
        if k < _BLOCKED:
            for i0 in range(0, R, G):
                # column-major with more rows than columns: the stored C-order (r, c)
                # is the column-major (c, r) A^T (same singular values); else copy A
                for g in range(G):
                    i = min(i0 + g, R - 1)
                    if c >= r:
                        for j in range(r * c):
                            a[j * G + g] = ys[i, o + j]
                    else:
                        for p in range(r):
                            for q in range(c):
                                a[(q * r + p) * G + g] = ys[i, o + p * c + q]
                _bidiag(a, max(r, c), k, dl, el, u, w, alv, vtv, sc)
                for g in range(min(G, R - i0)):
                    for j in range(k):
                        d[j] = dl[j, g]
                        e[j] = el[j, g]
                    ints[3] = 0
                    _dlasq1(ints[4:].ctypes, d.ctypes, e.ctypes, work.ctypes, ints[3:].ctypes)
                    info[i0 + g, l] = ints[3]
                    for j in range(keep):
                        out[i0 + g, l, j] = d[j] if j < k else 0.0
        else:
            for i in range(R):
                for j in range(r * c):
                    a[j] = ys[i, o + j]
                ints[0] = c  # the column-major (c, r) matrix A^T
                ints[1] = r
                ints[2] = c
                ints[3] = 0
                ints[5] = lwork
                _dgebrd(
                    ints[0:].ctypes, ints[1:].ctypes, a.ctypes, ints[2:].ctypes, d.ctypes, e.ctypes,
                    tauq.ctypes, taup.ctypes, work.ctypes, ints[5:].ctypes, ints[3:].ctypes,
                )  # fmt: skip
                if ints[3] == 0:
                    _dlasq1(ints[4:].ctypes, d.ctypes, e.ctypes, work.ctypes, ints[3:].ctypes)
                info[i, l] = ints[3]
                for j in range(keep):
                    out[i, l, j] = d[j] if j < k else 0.0


def factor_singular_values(ys: np.ndarray, shapes, keep: int) -> np.ndarray:
    r"""The ``keep`` largest singular values (decreasing, zero-padded) of every factor of every state.

    Args:
        ys: flat states (..., P): the factors' entries one after another, each
            factor C-order (as :func:`svflow._full.flow.flatten_params` lays them out).
        shapes: the factors' shapes (r, c), in order; their sizes sum to P.
        keep: how many singular values to keep per factor (K for ``sigma_factor``).

    Returns:
        (..., N, keep) float64, N = ``len(shapes)``: singular values in
        decreasing order, entries past min(r, c) set to 0.

    Raises:
        ValueError: ``ys`` does not hold the given shapes, or is not finite.
        numpy.linalg.LinAlgError: LAPACK's dqds did not converge (as numpy's SVD raises).
    """
    ys = np.asarray(ys, dtype=np.float64)
    shapes = [tuple(int(x) for x in s) for s in shapes]
    if any(len(s) != 2 or min(s) < 1 for s in shapes):
        raise ValueError(f"shapes must be matrix shapes (r, c) with r, c >= 1; got {shapes}.")
    sizes = np.asarray([r * c for r, c in shapes], dtype=np.int64)
    if ys.ndim < 1 or ys.shape[-1] != int(sizes.sum()):
        raise ValueError(
            f"ys must end in P = {int(sizes.sum())} entries (the factors {shapes} one after another); "
            f"got shape {ys.shape}."
        )
    keep = int(keep)
    if keep < 1:
        raise ValueError(f"keep must be >= 1; got {keep}.")
    lead = ys.shape[:-1]
    flat = np.ascontiguousarray(ys.reshape(-1, ys.shape[-1]))
    if not np.all(np.isfinite(flat)):
        raise ValueError("ys holds non-finite entries (NaN or inf): no singular values of those factors.")
    offsets = np.concatenate([[0], np.cumsum(sizes)[:-1]]).astype(np.int64)
    rows = np.asarray([r for r, _ in shapes], dtype=np.int64)
    cols = np.asarray([c for _, c in shapes], dtype=np.int64)
    out = np.empty((flat.shape[0], len(shapes), keep))
    info = np.zeros((flat.shape[0], len(shapes)), dtype=np.int32)
    _svals_kernel(flat, offsets, rows, cols, keep, out, info)
    if np.any(info != 0):
        i, l = np.argwhere(info != 0)[0]
        raise np.linalg.LinAlgError(
            f"LAPACK's singular values of factor {l} (state {i}) did not converge (info {info[i, l]})."
        )
    return out.reshape(lead + (len(shapes), keep))
