"""Argument checks and the block partition shared by the closed forms of the two models
(the ReLU L-DUFM in :mod:`._ldufm_forms`, the deep linear cross-entropy model in
:mod:`._ce_forms`): both choose the best block-diagonal construction of K classes
by dynamic programming over block sizes.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import NamedTuple

from .._checks import check_float, check_int

__all__ = ["BlockChoice"]


# --- arguments


def _check_classes(classes, minimum: int = 2) -> int:
    return check_int("classes K", classes, minimum=minimum)


def _check_depth(depth, minimum: int = 1) -> int:
    return check_int("depth L (number of weight matrices, N = L + 1 factors)", depth, minimum=minimum)


def _check_samples(samples) -> int:
    return check_int("samples (per class, n)", samples, minimum=1)


def _check_decay(value, name: str) -> float:
    return check_float(name, value, minimum=0.0)


class BlockChoice(NamedTuple):
    """Best block-diagonal construction: loss, the blocks, and a category label."""

    loss: float
    # ReLU model: SRG block sizes r (vertices) then "dnc:<count>"; CE: block sizes k
    blocks: tuple
    category: str


def _partition_dp(K: int, sizes: Sequence[int], cost: dict) -> tuple[float, list]:
    """min sum of cost[k] over multisets of sizes summing to K (unbounded knapsack)."""
    best = [math.inf] * (K + 1)
    choice: list = [None] * (K + 1)
    best[0] = 0.0
    for m in range(1, K + 1):
        for k in sizes:
            if k <= m and best[m - k] + cost[k] < best[m] - 1e-15:
                best[m] = best[m - k] + cost[k]
                choice[m] = k
    parts, m = [], K
    while m > 0:
        parts.append(choice[m])
        m -= choice[m]
    return best[K], sorted(parts, reverse=True)
