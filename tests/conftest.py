"""Test set-up.

- svflow runs in float64 inside its own functions only (scoped
  ``jax_enable_x64``). Many tests also build reference values with their own
  ``jnp`` code, which needs float64 too, so the suite turns x64 on for the
  whole process by default. ``SVFLOW_TEST_X64=0`` leaves JAX in its default
  float32 mode instead: the tests marked ``scoped_x64`` then show that svflow
  gets its precision on its own, e.g.
  ``SVFLOW_TEST_X64=0 python -m pytest -m scoped_x64``.
- The on-disk caches (``SVFLOW_CACHE_DIR``) live in ``.pytest_cache/svflow``
  of this checkout, never in the user's ``~/.cache``.
"""

import os
import tempfile
from pathlib import Path

import jax
import numpy as np
import pytest

GLOBAL_X64 = os.environ.get("SVFLOW_TEST_X64", "1") != "0"
if GLOBAL_X64:
    jax.config.update("jax_enable_x64", True)

os.environ["SVFLOW_CACHE_DIR"] = str(Path(__file__).resolve().parent.parent / ".pytest_cache" / "svflow")


def pytest_configure(config):
    config.addinivalue_line(
        "markers",
        "scoped_x64: runs with or without global x64 (SVFLOW_TEST_X64=0 checks svflow's own float64)",
    )


# JAX's persistent compilation cache: a test-only directory, never the user's
os.environ.setdefault(
    "SVFLOW_COMPILE_CACHE", os.path.join(tempfile.gettempdir(), f"svflow-test-jax-cache-{os.getuid()}")
)


@pytest.fixture
def rng():
    return np.random.default_rng(20260521)


@pytest.fixture
def key():
    return jax.random.PRNGKey(20260521)
