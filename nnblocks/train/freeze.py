"""Freeze and unfreeze parts of a model: the Learner's names for ``nnblocks.freezing``.

The implementation sits low in the package (``nnblocks/freezing.py``) so that surgery can
offer the same functions without importing training; see there for the policy on norms
with running statistics (``train_bn``).
"""

from __future__ import annotations

from nnblocks.freezing import (
    NORM_POLICIES,
    freeze,
    frozen_norms,
    has_batch_stats,
    match_modules,
    norm_policy,
    unfreeze,
)

__all__ = [
    "NORM_POLICIES",
    "freeze",
    "unfreeze",
    "match_modules",
    "has_batch_stats",
    "norm_policy",
    "frozen_norms",
]
