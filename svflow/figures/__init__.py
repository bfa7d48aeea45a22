"""Figure registry: ``python -m svflow.figures`` regenerates every figure.

Each figure lives in its own module ``svflow/figures/fig_<name>.py`` and
registers itself with :func:`register`. A figure has two halves:

- ``compute(quick: bool) -> xarray.Dataset``: runs the dynamics through the
  public API (the same calls a notebook makes);
- ``plot(ds) -> matplotlib.figure.Figure``: draws from the dataset only.

The runner writes ``figures/<name>.png`` and the dataset it was drawn from,
``figures/data/<name>.nc`` (with ``--quick``: under ``figures/quick/``, which
git ignores); ``--replot`` redraws from saved datasets without recomputing.
Captions and the symbols used are in ``figures/README.md``. Modules are discovered
automatically (no central list to edit).
"""

from __future__ import annotations

import importlib
import pkgutil
from collections.abc import Callable
from dataclasses import dataclass

__all__ = ["Figure", "register", "registry"]


@dataclass(frozen=True)
class Figure:
    name: str
    compute: Callable  # (quick: bool) -> xr.Dataset
    plot: Callable  # (ds) -> matplotlib Figure
    description: str = ""


_REGISTRY: dict[str, Figure] = {}


def register(name: str, *, compute: Callable, plot: Callable, description: str = "") -> Figure:
    """Register a figure under ``name`` (file stem of the PNG and dataset)."""
    if name in _REGISTRY and _REGISTRY[name].compute is not compute:
        raise ValueError(f"figure {name!r} is registered twice")
    fig = Figure(name, compute, plot, description)
    _REGISTRY[name] = fig
    return fig


def registry() -> dict[str, Figure]:
    """All figures, discovering every ``fig_*`` module of this package."""
    for info in pkgutil.iter_modules(__path__):
        if info.name.startswith("fig_"):
            importlib.import_module(f"{__name__}.{info.name}")
    return dict(sorted(_REGISTRY.items()))
