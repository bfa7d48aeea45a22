"""The jaxtyping shape annotations of svflow's public signatures are checked at run time.

svflow is imported in a fresh interpreter under jaxtyping's import hook with
beartype as the type checker (``jaxtyping.install_import_hook("svflow",
"beartype.beartype")``, the set-up diffrax's test suite uses through
``--jaxtyping-packages``): every annotated function of the package then checks
its arguments and return values, including the dimensions shared between them.

- Correct calls pass the checks and still give the right numbers: the Walsh
  transform, softmax eigenvalues and margins against SciPy's Hadamard matrix
  (a route outside svflow), the character basis, the softmax-code margin and
  one short run of the reduced engine.
- Wrongly shaped arguments raise jaxtyping's ``TypeCheckError`` (or a beartype
  violation): a 0-d array where ``"... K"`` is required, a 1-D array where
  ``"K r"`` is, and two Gram matrices of different K where both are ``"K K"``.
- (slow) The tour of the Getting-started page runs under the hook.

The interpreter starts in the repository root with the root first on
``PYTHONPATH``, so it imports this checkout's svflow.
"""

from __future__ import annotations

import subprocess
import sys
import textwrap

import pytest

from helpers import ROOT, checkout_env

pytest.importorskip("beartype", reason="beartype is in the test extra: pip install -e '.[test]'")

_HOOK = """
import jaxtyping
with jaxtyping.install_import_hook("svflow", "beartype.beartype"):
    import svflow
assert svflow.__file__.startswith({root!r}), svflow.__file__
"""


def _run_hooked(body: str, **extra_env: str) -> subprocess.CompletedProcess:
    code = _HOOK.format(root=str(ROOT)) + textwrap.dedent(body)
    env = checkout_env(**extra_env)
    env.setdefault("JAX_PLATFORMS", "cpu")
    return subprocess.run(
        [sys.executable, "-c", code],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=600,
        env=env,
    )


def test_annotated_functions_run_under_the_type_checker():
    proc = _run_hooked(
        """
        import numpy as np
        import jax.numpy as jnp
        from scipy.linalg import hadamard

        K = 8
        H = hadamard(K).astype(float)
        lam = np.array([0.0, 1.0, 0.8, 0.6, 0.9, 0.7, 0.5, 1.1])

        # Walsh frame, checked against SciPy's Hadamard matrix
        np.testing.assert_allclose(svflow.Walsh(K).transform(lam), H @ lam, rtol=1e-12)
        np.testing.assert_allclose(svflow.Walsh(K).transform(np.stack([lam, 2 * lam])),
                                   np.stack([H @ lam, 2 * H @ lam]), rtol=1e-12)
        f = H @ lam / K
        np.testing.assert_allclose(svflow.margins(jnp.asarray(lam)), f[0] - f, atol=1e-12)
        g = np.exp(f - f.max()) / np.exp(f - f.max()).sum()
        np.testing.assert_allclose(svflow.softmax_eigenvalues(lam), H @ g, atol=1e-12)

        # character basis of the cyclic group: orthonormal, K x K
        U = svflow.spectral_basis(6)
        assert U.shape == (6, 6)
        np.testing.assert_allclose(U.T @ U, np.eye(6), atol=1e-12)
        mu = svflow.softmax_eigenvalues(np.array([0.0, 1.0, 1.0, 0.5, 0.5, 0.2]), "cyclic")
        assert mu.shape == (6,) and abs(float(mu[0]) - 1.0) < 1e-12

        # softmax codes: the regular simplex in R^3 has rho = K / (K - 1)
        V = np.array([[1.0, 1, 1], [1, -1, -1], [-1, 1, -1], [-1, -1, 1]])
        assert abs(svflow.studies.one_vs_rest_margin(V) - 4 / 3) < 1e-9
        E = svflow.studies.class_embedding(svflow.explicit.polygon_code(5), 2)
        assert E.shape == (5, 2)
        d, _ = svflow.studies.gram_distance(E @ E.T, E @ E.T)
        assert d < 1e-9
        assert svflow.explicit.hypercube_code(8).shape == (8, 8)

        # one short run of the reduced engine (its fields and batch solver)
        ds = svflow.simulate(K, 2, init=svflow.spectral_init(K, 2, scale=1e-2), t_end=1e2,
                             num_times=5)
        assert ds["lam"].shape == (5, K) and np.all(np.isfinite(ds["lam"].values))
        print("HOOKED RUN OK")
        """
    )
    assert proc.returncode == 0, proc.stderr[-4000:]
    assert "HOOKED RUN OK" in proc.stdout


def test_wrong_shapes_raise_type_check_errors():
    proc = _run_hooked(
        """
        import numpy as np
        import jax.numpy as jnp
        import jaxtyping

        errors = [jaxtyping.TypeCheckError]
        try:
            from beartype.roar import BeartypeCallHintViolation
            errors.append(BeartypeCallHintViolation)
        except ImportError:
            pass
        errors = tuple(errors)

        cases = {
            "margins(0-d)": lambda: svflow.margins(jnp.ones(())),
            "Walsh.transform(0-d)": lambda: svflow.Walsh(8).transform(np.float64(1.0) * np.ones(())),
            "one_vs_rest_margin(1-d)": lambda: svflow.studies.one_vs_rest_margin(np.ones(3)),
            "gram_distance(K=3 vs K=4)": lambda: svflow.studies.gram_distance(np.eye(3), np.eye(4)),
        }
        for name, call in cases.items():
            try:
                call()
            except errors as err:
                print("rejected", name, type(err).__name__)
            else:
                raise AssertionError(f"{name}: no type-check error")
        print("WRONG SHAPES REJECTED")
        """
    )
    assert proc.returncode == 0, proc.stderr[-4000:]
    assert "WRONG SHAPES REJECTED" in proc.stdout
    assert proc.stdout.count("rejected ") == 4


@pytest.mark.slow
def test_getting_started_tour_runs_under_the_type_checker(tmp_path):
    """The tour of the Getting-started page (engines, dataset, outcome, basin map, full
    GD, sweep) passes every annotation check of the functions it reaches."""
    import re

    page = (ROOT / "docs" / "getting-started.md").read_text(encoding="utf-8")
    blocks = re.findall(r"```python\n(.*?)```", page, re.S)
    assert len(blocks) >= 6, "the tour's python blocks were not found"
    body = "\nimport os\nos.chdir({tmp!r})\n".format(tmp=str(tmp_path))
    body += "\n".join(blocks) + "\nprint('HOOKED TOUR OK')\n"
    proc = _run_hooked(body, MPLBACKEND="Agg")
    assert proc.returncode == 0, proc.stderr[-4000:]
    assert "HOOKED TOUR OK" in proc.stdout
