"""While a model decodes, its transformer stacks run their blocks' cached steps directly.

A decoding step calls every layer once per token with one new position, and on the CPU the
layer's Python (``Module.__call__`` of the block and its sub-parts, the checks of each
input, the attention's choice of path) cost about as much as a small model's arithmetic.
``TransformerBlock.step_directly`` makes the same calls without that part: same bits.
What makes it safe is checked here once per decoding call (``can_step_directly``: no
hooks, eval mode, the built-in forward): within the call the user's code runs only in
hooks of other modules (a projection's, say), and a hook that one of those registers on a
directly stepped part runs from the next call (docs/interfaces.md).
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

from torch import nn

from nnblocks._tracing import tracing
from nnblocks.models._stack import TransformerStack

__all__ = ["direct_block_steps"]


def _steps(stack: TransformerStack) -> list | None:
    steps = []
    for layer in stack.layers:
        ready = getattr(layer, "can_step_directly", None)
        steps.append(layer.step_directly if callable(ready) and ready() else None)
    return steps if any(step is not None for step in steps) else None


@contextlib.contextmanager
def direct_block_steps(model: object) -> Iterator[None]:
    """Within the block, each ``TransformerStack`` of ``model`` steps its eligible layers
    through ``step_directly`` when called with caches, one position and no mask.

    Traced or compiled calls keep the module path (a graph should record what
    ``forward`` does: the stack checks at each call, and nothing is set up for a decoding
    call that starts while tracing); so do models that are not modules.
    """
    stacks = []
    if isinstance(model, nn.Module) and not tracing():
        stacks = [m for m in model.modules() if isinstance(m, TransformerStack)]
    marked = []
    for stack in stacks:
        steps = _steps(stack)
        if steps is not None:
            stack.direct_steps = steps
            marked.append(stack)
    try:
        yield
    finally:
        for stack in marked:
            stack.__dict__.pop("direct_steps", None)
