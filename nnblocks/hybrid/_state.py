"""Leave a model as it was found: mode flags, gradients, buffers and the random stream.

Measuring a training step runs forward and backward on the user's model: BatchNorm updates
its running statistics, gradients accumulate and dropout draws random numbers. These
helpers undo all of it, so ``hybridize`` and the exporters have no side effects.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator, Sequence
from typing import Any

import torch
from torch import nn

__all__ = ["as_args", "devices_of", "eval_mode", "kept_training_state", "synchronizer"]


def as_args(example_inputs: Any) -> tuple[Any, ...]:
    """The positional arguments of one call: a lone tensor becomes a 1-tuple."""
    if isinstance(example_inputs, (tuple, list)):
        return tuple(example_inputs)
    return (example_inputs,)


def devices_of(model: nn.Module | None, args: Sequence[Any]) -> set[torch.device]:
    """The devices of the model's first parameter or buffer and of the tensor arguments."""
    found = {a.device for a in args if isinstance(a, torch.Tensor)}
    if model is not None:
        for tensor in (*model.parameters(), *model.buffers()):
            found.add(tensor.device)
            break
    return found


def synchronizer(devices: set[torch.device]) -> Callable[[], None]:
    """A function that waits for queued kernels on ``devices`` (a no-op on CPU).

    Asynchronous devices return before their kernels finish; timing them without a wait
    measures only the launch.
    """
    types = {d.type for d in devices}
    if "cuda" in types and torch.cuda.is_available():
        return torch.cuda.synchronize
    if "mps" in types and hasattr(torch, "mps"):
        return torch.mps.synchronize
    return lambda: None


@contextlib.contextmanager
def eval_mode(model: nn.Module) -> Iterator[nn.Module]:
    """Put every module in eval mode; restore each module's own flag afterwards.

    Each flag is restored, not just the root's: a frozen BatchNorm deliberately kept in eval
    inside a training model must stay so.
    """
    flags = [(m, m.training) for m in model.modules()]
    model.eval()
    try:
        yield model
    finally:
        for module, training in flags:
            module.training = training


@contextlib.contextmanager
def kept_training_state(model: nn.Module, devices: set[torch.device]) -> Iterator[None]:
    """Run training steps on ``model`` and then undo them.

    Restores every parameter's ``.grad``, every buffer's values (BatchNorm statistics,
    step counters) and the random number generators of the CPU and of ``devices``.
    """
    grads = [(p, p.grad) for p in model.parameters()]
    buffers = [(b, b.detach().clone()) for b in model.buffers()]
    cuda = [d for d in devices if d.type == "cuda"]
    with torch.random.fork_rng(devices=cuda, enabled=True):
        try:
            yield
        finally:
            with torch.no_grad():
                for buffer, saved in buffers:
                    buffer.copy_(saved)
            for param, grad in grads:
                param.grad = grad
