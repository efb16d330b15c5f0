"""Freeze and unfreeze parts of a model: the Learner's names for ``nnblocks.freezing``.

The implementation sits low in the package (``nnblocks/freezing.py``) so that surgery can
offer the same functions without importing training; see there for the policy on norms
with running statistics (``train_bn``). This module only re-exports it.
"""

from __future__ import annotations

from nnblocks import freezing
from nnblocks.freezing import (  # noqa: F401  (public: listed by freezing.__all__)
    NORM_POLICIES,
    freeze,
    frozen_norms,
    group_by_patterns,
    has_batch_stats,
    match_modules,
    norm_policy,
    unfreeze,
)

__all__ = list(freezing.__all__)
