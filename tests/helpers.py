"""Set-ups the tests share (import with ``from helpers import ...``; pytest puts
``tests/`` on ``sys.path``).

- :data:`ROOT` and :func:`checkout_env`: a subprocess (a script, a notebook
  kernel, a fresh interpreter) that imports this checkout's svflow.
- :data:`LAM0`: the K = 8 spectral start of the README's cross-check.
- :func:`small_model`: the small random deep UFM the full-engine tests start from.
- :func:`lam_rel_error`: the relative error of one trajectory's ``lam`` against another's.
- :func:`wrong_type`: the ``match`` pattern of a ``TypeError`` for an argument of the wrong type.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

import svflow

ROOT = Path(__file__).resolve().parent.parent

# the README's cross-check start: K = 8 logit eigenvalues in the Walsh frame (mode 0 = 0)
LAM0 = np.array([0.0, 1.0, 0.8, 0.6, 0.9, 0.7, 0.5, 1.1])


def checkout_env(**extra: str) -> dict:
    """``os.environ`` with this checkout first on ``PYTHONPATH`` (a subprocess started
    outside the repository imports this tree's svflow, not another install), then ``extra``."""
    path = os.environ.get("PYTHONPATH")
    return {**os.environ, "PYTHONPATH": str(ROOT) + (os.pathsep + path if path else ""), **extra}


def small_model(classes: int = 4, **kw) -> svflow.DeepUFM:
    """``svflow.random_model(classes, depth=2, width=8, key=0)``, any of them overridden by ``kw``."""
    return svflow.random_model(classes, **{"depth": 2, "width": 8, "key": 0, **kw})


def lam_rel_error(full, reduced) -> float:
    """max over time of ||lam_full - lam_reduced|| / ||lam_reduced|| (datasets on one time grid)."""
    diff = np.linalg.norm(full.lam.values - reduced.lam.values, axis=-1)
    return float(np.max(diff / np.linalg.norm(reduced.lam.values, axis=-1)))


def wrong_type(message: str, name: str) -> str:
    """``pytest.raises(TypeError, match=wrong_type(message, name))`` for argument ``name`` of
    the wrong type: svflow's own ``message``, or, under jaxtyping's import hook with beartype
    (the suite's default, pyproject.toml), the type checker's error, which names the
    parameter and comes first. Run without the hook (``--jaxtyping-packages=``) to see
    svflow's own message checked."""
    return rf"(?:{message})|typechecking parameter '{name}'"


def walsh_ce_tau_law(K: int, N: int):
    r"""The balanced cross-entropy law of a Walsh spectral start in $\tau = \log(1 + t)$,
    written in numpy from the model (an independent route for the engines' tests):
    $d\lambda/d\tau = e^\tau\,\frac NK\,(1 - \mu)\,|\lambda|^{2 - 2/N}$ with $\mu = Hp$ the
    softmax's transform and entry 0 held at 0. Returns ``law(tau, lam)`` for scipy."""
    H = np.array(svflow.Walsh(K).hadamard(), float)

    def law(tau, lam):
        f = H @ lam
        z = (f - f[0]) / K
        p = np.exp(z - z.max())
        p /= p.sum()
        p[0] = 0.0
        omm = p.sum() - H @ p
        omm[0] = 0.0
        return np.exp(tau) * (N / K) * omm * np.abs(lam) ** (2 - 2 / N)

    return law
