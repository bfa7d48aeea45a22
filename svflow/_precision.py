"""JAX's persistent compilation cache, scoped to svflow's own calls.

svflow's solvers are large XLA programs (a whole adaptive ODE solve in one
``while_loop``); compiling one takes seconds, far longer than running it on a
few thousand starts. JAX can store compiled programs on disk and load them in
a later process. Every public svflow function that computes runs inside
:func:`compilation_cache` (through :func:`svflow._precision.computes`), which
points JAX's cache at

- ``$SVFLOW_COMPILE_CACHE`` if set to a path, else
- ``$SVFLOW_CACHE_DIR/jax-v{FORMAT}`` if ``SVFLOW_CACHE_DIR`` is set, else
- ``$XDG_CACHE_HOME/svflow/jax-v{FORMAT}`` (default ``~/.cache/svflow/jax-v3``)

for the duration of the call and restores the caller's JAX configuration
after it: ``jax.config`` reads the same before and after an svflow call.
Opt out with ``SVFLOW_COMPILE_CACHE=0`` (or ``off``/``false``/``no``). If the
caller has set ``jax_compilation_cache_dir`` themselves, svflow uses theirs.

**What the cache is keyed on.** JAX keys each entry on the compiled program
itself (its HLO, with every constant that was traced into it), the compile
options, the backend and the jax/jaxlib versions. A result therefore never
depends on what ran before: two calls that differ in any number produce
either different programs (a constant) or the same program fed different
arguments (an array leaf). svflow 0.2 also stored traced programs of its own
(``jax.export``) keyed by shapes only, and one of them could serve a later
call with another weight decay (a silent wrong answer; CHANGELOG 0.3.0).
Those stored programs are gone, and ``FORMAT`` in the directory name makes
sure nothing an older svflow wrote is read again.

**Where it lives, and deleting it.** The directory above holds only compiled
programs; deleting it (or any older ``~/.cache/svflow/jax*`` folder) is always
safe: the next call compiles again. Only point ``SVFLOW_COMPILE_CACHE`` at a
directory nobody else can write to (JAX runs what it finds there).

JAX initialises its cache object once per process, at the first compile that
sees a cache directory; after that, programs compiled outside svflow's calls
may also be looked up there (JAX's own behaviour; the configuration itself is
restored).

Scoped double precision
-----------------------

Scoped double precision and compilation cache.

svflow computes in float64 (the reduced ODE runs over many decades of time and
the softmax saturates), but it must not switch the caller's whole process to
float64. Every public function that computes is wrapped in :func:`computes`,
which turns JAX's ``jax_enable_x64`` on for the duration of the call only
(``jax.enable_x64`` context manager) and points JAX's persistent compilation
cache at svflow's directory for the call only
(:func:`svflow._precision.compilation_cache`); the caller's settings are
restored after.
"""

from __future__ import annotations

import contextlib
import functools
import os
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TypeVar

import jax

__all__ = ["compilation_cache", "compilation_cache_dir", "ENV", "FORMAT", "computes"]


# --- the compilation cache
ENV = "SVFLOW_COMPILE_CACHE"
FORMAT = 3
"""Cache format number: part of the default directory name, raised whenever
what svflow stores there changes meaning (3: JAX's HLO-keyed entries only;
svflow 0.2's ``jax/`` folder held shape-keyed stored programs)."""
_OFF = {"0", "off", "false", "no"}


def compilation_cache_dir() -> Path | None:
    """Directory svflow uses for JAX's compilation cache, or None when opted out."""
    env = os.environ.get(ENV, "").strip()
    if env.lower() in _OFF:
        return None
    if env:
        return Path(env).expanduser()
    base = os.environ.get("SVFLOW_CACHE_DIR")
    if base:
        return Path(base).expanduser() / f"jax-v{FORMAT}"
    xdg = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(xdg) / "svflow" / f"jax-v{FORMAT}"


@contextlib.contextmanager
def compilation_cache() -> Iterator[Path | None]:
    """Scope in which JAX's persistent compilation cache points at :func:`compilation_cache_dir`.

    Yields the directory in use (None when opted out or when it cannot be
    created). The caller's ``jax_compilation_cache_dir``, minimum compile time
    and minimum entry size are restored on exit; a directory the caller set
    is used as it is.
    """
    own = jax.config.values["jax_compilation_cache_dir"]
    if own:
        yield Path(own)
        return
    path = compilation_cache_dir()
    if path is not None:
        try:
            path.mkdir(parents=True, exist_ok=True)
        except OSError:
            path = None
    if path is None:
        yield None
        return
    # store every program (a fresh process pays for small ones too); -1 keeps
    # JAX from rewriting the entry-size setting globally when it sets up its cache
    settings = {
        "jax_compilation_cache_dir": str(path),
        "jax_persistent_cache_min_compile_time_secs": 0.0,
        "jax_persistent_cache_min_entry_size_bytes": -1,
    }
    before = {name: getattr(jax.config, name) for name in settings}
    try:
        for name, value in settings.items():
            jax.config.update(name, value)
        yield path
    finally:
        for name, value in before.items():
            jax.config.update(name, value)


# --- scoped double precision
F = TypeVar("F", bound=Callable)


def computes(fn: F) -> F:
    """Decorator: run ``fn`` in float64 with svflow's compilation cache; restore the caller's JAX config."""

    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        with jax.enable_x64(True), compilation_cache():
            return fn(*args, **kwargs)

    return wrapper  # type: ignore[return-value]
