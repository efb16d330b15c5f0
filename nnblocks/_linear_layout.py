"""Linear weights stored column-major while a model decodes on the CPU.

A decoding step multiplies a few rows (batch x beams) by every weight matrix, so its
matrix products are matrix-vector products, bound by how fast the weights stream from
memory. ``F.linear(x, W)`` computes ``x @ W.T``; with ``W`` held as the transpose of a
contiguous ``[in, out]`` matrix, CPU BLAS reads ``W.T`` row by row. On the machine of our
benchmarks (2-core AMD EPYC, MKL) that ran 1.1-1.9x faster for 1 to 32 rows in most runs
and about as fast from 64 to 512 rows (``benchmarks/decode.py`` measures the decoding it
speeds up); another BLAS may differ.

Only the memory layout changes: every value stays the same, and so does every product up
to the rounding of a different summation order. The original weights are put back when
decoding ends, also on an exception.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

import torch
from torch import nn

__all__ = ["column_major_linears", "MAX_BYTES"]

MAX_BYTES = 1 << 30  # the copies' memory: at most 1 GiB on top of the model


def _eligible(weight: torch.Tensor) -> bool:
    # Only a plain CPU float matrix that owns its whole storage: a view into a larger
    # buffer (a flattened parameter group, a fused projection) must stay a view of it.
    return (
        type(weight.data) is torch.Tensor
        and weight.device.type == "cpu"
        and weight.dim() == 2
        and weight.is_floating_point()
        and weight.is_contiguous()
        and weight.storage_offset() == 0
        and weight.untyped_storage().nbytes() == weight.numel() * weight.element_size()
    )


def _linear_only(module: nn.Module) -> bool:
    """Whether ``module.weight`` enters only ``F.linear``: ``nn.Linear`` running the stock
    forward, or a part whose class sets ``linear_weight_only = True`` (the ``linear`` head)."""
    if isinstance(module, nn.Linear) and type(module).forward is nn.Linear.forward:
        return True
    return getattr(type(module), "linear_weight_only", False) is True


def _linear_weights(model: nn.Module) -> list[nn.Parameter]:
    """The weights to relay, once each. A weight shared with a module that reads it another
    way (an embedding tied to the head) is left as it is."""
    owners: dict[int, list[bool]] = {}
    params: dict[int, nn.Parameter] = {}
    for module in model.modules():
        for name, param in module.named_parameters(recurse=False):
            owners.setdefault(id(param), []).append(name == "weight" and _linear_only(module))
            params[id(param)] = param
    return [p for key, p in params.items() if all(owners[key]) and _eligible(p)]


@contextlib.contextmanager
def column_major_linears(model: object) -> Iterator[None]:
    """Within the block, hold the model's CPU ``nn.Linear`` weights column-major.

    The parameters stay the same objects (optimizers and tied modules keep them); only
    their ``.data`` is swapped for a column-major copy, and the original tensors are put
    back afterwards (no second copy). The copies need as much memory again as the weights,
    so models whose linear weights exceed ``MAX_BYTES`` are left as they are, as are
    models that are not modules and weights on other devices.
    """
    weights = _linear_weights(model) if isinstance(model, nn.Module) else []
    if sum(w.numel() * w.element_size() for w in weights) > MAX_BYTES:
        weights = []
    originals = [weight.data for weight in weights]
    with torch.no_grad():
        for weight in weights:
            weight.data = weight.data.t().contiguous().t()
    try:
        yield
    finally:
        for weight, original in zip(weights, originals):
            weight.data = original
