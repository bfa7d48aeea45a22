import jax
import numpy as np
import pytest

jax.config.update("jax_enable_x64", True)


@pytest.fixture
def rng():
    return np.random.default_rng(20260521)


@pytest.fixture
def key():
    return jax.random.PRNGKey(20260521)
