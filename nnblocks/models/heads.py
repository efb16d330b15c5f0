"""Moved: the `head` kind and its built-ins live in ``nnblocks/parts/head.py``.

This name is kept so that ``nnblocks.models.heads.LinearHead`` keeps working.
"""

from nnblocks.parts.head import LinearHead, MLPHead

__all__ = ["LinearHead", "MLPHead"]
