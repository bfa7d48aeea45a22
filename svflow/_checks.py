"""Argument checks shared by every public function, and the public names of a namespace.

One place for the checks, so every message has the same shape: it names the
parameter, says what was expected and shows what was passed. Each check
returns the normalised value (a Python ``int``, ``float`` or ``str``).
"""

from __future__ import annotations

import math
import numbers
from collections.abc import Iterable
from types import ModuleType

import numpy as np

__all__ = ["check_int", "check_float", "check_choice", "check_fraction", "check_bool", "public_names"]


def public_names(namespace: dict, package: str) -> list[str]:
    """The sorted public names of a namespace module (``svflow``, ``svflow.studies``,
    ``svflow.explicit``): every name its imports bind, so the import lines are the one
    list. Modules count only if they are svflow's own (a tool such as jaxtyping's import
    hook may bind others); underscored names never count."""
    return sorted(
        name
        for name, value in dict(namespace).items()
        if not name.startswith("_")
        and (not isinstance(value, ModuleType) or value.__name__.startswith(package + "."))
    )


def check_int(name: str, value, *, minimum: int | None = None, maximum: int | None = None) -> int:
    """``value`` as an ``int`` in [minimum, maximum]; bools, floats and strings raise.

    >>> check_int("depth", 3, minimum=1)
    3
    """
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, (numbers.Integral, np.integer)):
        raise TypeError(f"{name} must be an integer; got {value!r} ({type(value).__name__}).")
    value = int(value)
    if minimum is not None and value < minimum:
        raise ValueError(f"{name} must be an integer >= {minimum}; got {value}.")
    if maximum is not None and value > maximum:
        raise ValueError(f"{name} must be an integer <= {maximum}; got {value}.")
    return value


def check_float(
    name: str,
    value,
    *,
    minimum: float | None = None,
    maximum: float | None = None,
    strict_min: bool = False,
    allow_inf: bool = False,
) -> float:
    """``value`` as a finite real ``float`` in the given range; strings, bools, NaN raise.

    ``strict_min=True`` excludes ``minimum`` itself (e.g. a positive step size).
    """
    if isinstance(value, (bool, np.bool_, str, bytes)) or not isinstance(value, (numbers.Real, np.number)):
        raise TypeError(f"{name} must be a real number; got {value!r} ({type(value).__name__}).")
    if isinstance(value, (complex, np.complexfloating)):
        raise TypeError(f"{name} must be a real number; got the complex value {value!r}.")
    value = float(value)
    if math.isnan(value) or (math.isinf(value) and not allow_inf):
        raise ValueError(f"{name} must be a finite number; got {value}.")
    if minimum is not None and (value < minimum or (strict_min and value == minimum)):
        op = ">" if strict_min else ">="
        raise ValueError(f"{name} must be {op} {minimum}; got {value}.")
    if maximum is not None and value > maximum:
        raise ValueError(f"{name} must be <= {maximum}; got {value}.")
    return value


def check_fraction(name: str, value, *, open_low: bool = True, open_high: bool = True) -> float:
    """A real number in (0, 1) (ends included where ``open_*`` is False)."""
    v = check_float(name, value)
    low_ok = v > 0 if open_low else v >= 0
    high_ok = v < 1 if open_high else v <= 1
    if not (low_ok and high_ok):
        lo = "(" if open_low else "["
        hi = ")" if open_high else "]"
        raise ValueError(f"{name} must lie in {lo}0, 1{hi}; got {v}.")
    return v


def check_bool(name: str, value) -> bool:
    """``value`` must be ``True`` or ``False`` (a numpy bool too; not 0, 1 or a string)."""
    if not isinstance(value, (bool, np.bool_)):
        raise TypeError(f"{name} must be True or False; got {value!r} ({type(value).__name__}).")
    return bool(value)


def check_choice(name: str, value, choices: Iterable[str]) -> str:
    """``value`` must be one of ``choices`` (exact match)."""
    choices = tuple(choices)
    if not isinstance(value, str) or value not in choices:
        raise ValueError(f"{name} must be one of {', '.join(map(repr, choices))}; got {value!r}.")
    return value
