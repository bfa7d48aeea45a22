"""Scoped double precision.

svflow computes in float64 (the reduced ODE runs over many decades of time and
the softmax saturates), but it must not switch the caller's whole process to
float64. Every public function that computes is wrapped in :func:`float64`,
which turns JAX's ``jax_enable_x64`` on for the duration of the call only
(``jax.enable_x64`` context manager) and restores the caller's setting after.
"""

from __future__ import annotations

import functools
from typing import Callable, TypeVar

import jax

__all__ = ["float64"]

F = TypeVar("F", bound=Callable)


def float64(fn: F) -> F:
    """Decorator: run ``fn`` with ``jax_enable_x64`` on, restoring the caller's setting."""

    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        with jax.enable_x64(True):
            return fn(*args, **kwargs)

    return wrapper  # type: ignore[return-value]
