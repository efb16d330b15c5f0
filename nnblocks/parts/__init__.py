"""Built-in parts, one module (or package) per kind; importing this registers them all.

Each kind's module docstring is its written contract.
"""

from nnblocks.parts import (  # noqa: F401  (imported for registration)
    activation,
    attention,
    block,
    embedding,
    feedforward,
    head,
    norm,
    position,
    regularization,
)
