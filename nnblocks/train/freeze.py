"""Freeze and unfreeze parts of a model: the Learner's names for ``nnblocks.freezing``.

The implementation sits low in the package (``nnblocks/freezing.py``) so that surgery can
offer the same functions without importing training; see there for the policy on norms
with running statistics (``train_bn``). This module only re-exports it.
"""

from nnblocks.freezing import *  # noqa: F403  (the same objects, under the training package)
