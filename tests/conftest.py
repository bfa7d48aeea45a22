import os
import tempfile

import jax
import numpy as np
import pytest

jax.config.update("jax_enable_x64", True)

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
