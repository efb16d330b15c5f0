"""Whether calling a module's ``forward`` directly would skip something ``module(...)`` does."""

from __future__ import annotations

from torch import nn
from torch.nn.modules import module as _module

__all__ = ["has_call_hooks"]

# torch keeps these registries private; `Module._call_impl` reads the same ones to choose
# its fast path (a plain `forward` call when all are empty).
_GLOBAL_HOOKS = (
    "_global_forward_pre_hooks",
    "_global_forward_hooks",
    "_global_backward_pre_hooks",
    "_global_backward_hooks",
)
_MODULE_HOOKS = ("_forward_pre_hooks", "_forward_hooks", "_backward_pre_hooks", "_backward_hooks")


def has_call_hooks(module: nn.Module) -> bool:
    """True if ``module(...)`` would run a hook that ``module.forward(...)`` would not: one
    of its own, or a global one (``register_module_forward_hook`` and the like).

    A registry this torch lacks counts as holding a hook, so an unknown torch never has
    its hooks skipped.
    """
    for name in _GLOBAL_HOOKS:
        if getattr(_module, name, True):
            return True
    return any(getattr(module, name, True) for name in _MODULE_HOOKS)
