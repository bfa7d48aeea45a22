r"""JAX's persistent compilation cache under the svflow cache directory.

svflow's solvers are large XLA programs (a whole adaptive ODE solve in one
``while_loop``); compiling one takes seconds, far longer than running it on a
few thousand starts. JAX can store compiled programs on disk and load them in
a later process. The first time svflow computes, :func:`enable_compilation_cache`
switches that cache on in

- ``$SVFLOW_COMPILE_CACHE`` if set to a path, else
- ``$SVFLOW_CACHE_DIR/jax`` if ``SVFLOW_CACHE_DIR`` is set, else
- ``$XDG_CACHE_HOME/svflow/jax`` (default ``~/.cache/svflow/jax``),

the same base directory as the softmax-code cache. Opt out with
``SVFLOW_COMPILE_CACHE=0`` (or ``off``/``false``/``no``). If the caller has
already set ``jax_compilation_cache_dir`` (``jax.config.update`` or the
``JAX_COMPILATION_CACHE_DIR`` environment variable), svflow leaves it alone.
JAX stores only programs that compile in at least
``jax_persistent_cache_min_compile_time_secs``; svflow lowers JAX's default
of 1 s to 0 (unless the caller changed it), since a fresh process pays for
every small program too.

The cache is trusted code: do not point it at a directory others can write.
"""

from __future__ import annotations

import os
from pathlib import Path

import jax

__all__ = ["enable_compilation_cache", "compilation_cache_dir", "ENV"]

ENV = "SVFLOW_COMPILE_CACHE"
_OFF = {"0", "off", "false", "no"}
_MIN_COMPILE_S = 0.0
_done = False


def compilation_cache_dir() -> Path | None:
    """Directory svflow uses for JAX's compilation cache, or None when opted out."""
    env = os.environ.get(ENV, "").strip()
    if env.lower() in _OFF:
        return None
    if env:
        return Path(env)
    base = os.environ.get("SVFLOW_CACHE_DIR")
    if base:
        return Path(base) / "jax"
    xdg = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(xdg) / "svflow" / "jax"


def enable_compilation_cache() -> Path | None:
    """Switch JAX's persistent compilation cache on (once per process); return its directory.

    Does nothing (returns None) when opted out with ``SVFLOW_COMPILE_CACHE=0``
    or when the directory cannot be created; returns the caller's directory if
    one was already configured.
    """
    global _done
    current = jax.config.jax_compilation_cache_dir
    if _done or current:
        return Path(current) if current else None
    _done = True
    path = compilation_cache_dir()
    if path is None:
        return None
    try:
        path.mkdir(parents=True, exist_ok=True)
    except OSError:
        return None
    jax.config.update("jax_compilation_cache_dir", str(path))
    if jax.config.jax_persistent_cache_min_compile_time_secs == 1.0:  # JAX's default
        jax.config.update("jax_persistent_cache_min_compile_time_secs", _MIN_COMPILE_S)
    return path
