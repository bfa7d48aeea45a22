"""Scoped double precision and compilation cache.

svflow computes in float64 (the reduced ODE runs over many decades of time and
the softmax saturates), but it must not switch the caller's whole process to
float64. Every public function that computes is wrapped in :func:`computes`,
which turns JAX's ``jax_enable_x64`` on for the duration of the call only
(``jax.enable_x64`` context manager) and points JAX's persistent compilation
cache at svflow's directory for the call only
(:func:`svflow._compile_cache.compilation_cache`); the caller's settings are
restored after.
"""

from __future__ import annotations

import functools
from typing import Callable, TypeVar

import jax

from ._compile_cache import compilation_cache

__all__ = ["computes"]

F = TypeVar("F", bound=Callable)


def computes(fn: F) -> F:
    """Decorator: run ``fn`` in float64 with svflow's compilation cache; restore the caller's JAX config."""

    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        with jax.enable_x64(True), compilation_cache():
            return fn(*args, **kwargs)

    return wrapper  # type: ignore[return-value]
