"""A result never depends on what ran before it, nor on the compilation cache.

svflow 0.2 kept traced solver programs keyed by shapes only; the weight decay
was baked in, so a second call with another weight decay returned the first
one's result, in the same process and, through the disk cache, in a new one.
The independent route here is a run with the cache switched off
(``SVFLOW_COMPILE_CACHE=0``) in a fresh process: every (entry point, numeric
argument, value) of ``tests/cache_entry_points.py`` is evaluated

1. in a fresh process with the cache off (the reference),
2. in a fresh process with an empty cache, values in the order a, b,
3. in a second fresh process on that now-warm cache, values in the order b, a,

and all three must agree bit for bit, and the two values must give different
results. The default run checks the arguments marked ``fast`` (weight decay
first among them); ``-m slow`` checks every numeric argument.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from helpers import ROOT, checkout_env

sys.path.insert(0, str(Path(__file__).resolve().parent))
from cache_entry_points import ENTRY_POINTS, calls, numeric_parameters  # noqa: E402

HERE = ROOT / "tests"


def test_every_numeric_argument_is_registered():
    """Walk each entry point's signature: every numeric argument has two values or a stated reason."""
    for name, entry in ENTRY_POINTS.items():
        fn = entry.signature_of()
        missing = [a for a in numeric_parameters(fn) if a not in entry.values and a not in entry.skip]
        assert not missing, (
            f"{name}: numeric arguments {missing} are not in tests/cache_entry_points.py; give each "
            "two values that change the result (values=) or the reason it is left out (skip=)."
        )
        for arg, (a, b) in entry.values.items():
            assert a != b, f"{name}:{arg}"
        assert set(entry.fast) <= set(entry.values)


def _run(order: str, out: Path, cache: str, fast: bool) -> dict:
    env = checkout_env(SVFLOW_COMPILE_CACHE=cache)
    env.pop("JAX_COMPILATION_CACHE_DIR", None)
    cmd = [sys.executable, str(HERE / "cache_entry_points.py"), order, str(out)]
    if fast:
        cmd.append("--fast")
    subprocess.run(cmd, env=env, check=True, capture_output=True, text=True, cwd=ROOT)
    with np.load(out) as z:
        return {k: z[k] for k in z.files}


def _check(tmp_path: Path, fast: bool) -> None:
    cache = str(tmp_path / "jax-cache")
    ref = _run("ab", tmp_path / "ref.npz", "0", fast)
    cold = _run("ab", tmp_path / "cold.npz", cache, fast)
    warm = _run("ba", tmp_path / "warm.npz", cache, fast)
    assert any(Path(cache).iterdir()), "the cached runs wrote no compiled program"
    labels = [label for label, _, _ in calls(only_fast=fast)]
    assert set(ref) == set(cold) == set(warm) == set(labels)
    for label in labels:
        np.testing.assert_array_equal(cold[label], ref[label], err_msg=f"{label}: empty cache, a then b")
        np.testing.assert_array_equal(warm[label], ref[label], err_msg=f"{label}: warm cache, b then a")
    # each argument's two values give different results (else the check above proves nothing)
    for first, second in zip(labels[::2], labels[1::2]):
        a, b = ref[first], ref[second]
        assert a.shape != b.shape or not np.array_equal(a, b), f"{first} and {second} gave the same result"


def test_results_follow_every_fast_argument_whatever_ran_before(tmp_path):
    _check(tmp_path, fast=True)


@pytest.mark.slow
def test_results_follow_every_numeric_argument_whatever_ran_before(tmp_path):
    _check(tmp_path, fast=False)


@pytest.mark.parametrize("order", [(1e-2, 5e-4), (5e-4, 1e-2)])
def test_squared_loss_weight_decay_fixed_point_in_either_order(order):
    """The issue's example: balanced squared loss, N = 2, weight decay wd. The flow
    d lam/dt = -2 lam (lam - 1)/K - 2 wd lam settles at the closed form lam* = 1 - K wd,
    for each wd whichever ran first in this process."""
    import svflow

    K = 4
    for wd in order:
        ds = svflow.simulate(K, 1, init=np.full(K, 0.5), loss="squared", weight_decay=wd, t_end=1e5)
        np.testing.assert_allclose(ds["lam"].isel(time=-1).values, 1.0 - K * wd, rtol=1e-7)


def test_jax_config_is_unchanged_by_svflow_calls():
    """After simulate, outcome and train, every one of jax.config's values reads as before
    (precision and the compilation cache are scoped to svflow's own calls). A fresh process:
    the test suite itself switches x64 on globally (tests/conftest.py)."""
    script = (
        "import jax, numpy as np, svflow\n"
        "before = {k: repr(v) for k, v in jax.config.values.items()}\n"
        "svflow.simulate(4, 2, init=[0.0, 0.2, 0.3, 0.4], t_end=10.0, num_times=3)\n"
        "svflow.outcome(4, 2, init=[0.0, 1.0, 0.9, 0.5], horizons=(30.0, 100.0), kkt=False)\n"
        "svflow.train(svflow.random_model(4, depth=1, width=4, key=0), eta=0.1, t_end=1.0)\n"
        "after = {k: repr(v) for k, v in jax.config.values.items()}\n"
        "print(sorted(k for k in before if before[k] != after.get(k)))\n"
    )
    env = checkout_env()
    env.pop("JAX_COMPILATION_CACHE_DIR", None)
    env.pop("JAX_ENABLE_X64", None)
    out = subprocess.run([sys.executable, "-c", script], env=env, check=True, capture_output=True, text=True)
    assert out.stdout.strip() == "[]", out.stdout
