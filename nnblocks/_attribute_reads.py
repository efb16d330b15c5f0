"""Children and parameters read as plain attributes while a model decodes.

An ``nn.Module`` keeps its children and parameters in ``_modules`` and ``_parameters``, not
in the instance ``__dict__``, so ``self.q_proj`` or ``self.weight`` first misses the normal
lookup and then runs ``Module.__getattr__``; on CPython 3.11 the miss also builds an
AttributeError, about 0.6 us in all. A decoding step of a small transformer makes about 120
such reads per token. Within ``direct_attribute_reads`` each module's ``__dict__`` also
holds its children and parameters, so the same reads are plain dictionary hits (greedy
decoding of ``benchmarks/decode.py``'s model: 10-20% faster at batch 1 to 8).

Nothing else changes: the registries that ``state_dict``, ``parameters()`` and ``children()``
read are untouched, and assigning a new child or parameter through ``Module.__setattr__``
drops the alias of that name (torch removes it from ``__dict__``). The aliases go when the
block ends, also on an exception. Buffers are left out: a part may assign a new tensor to a
buffer at call time, and that assignment would keep a stale alias.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

from torch import nn

__all__ = ["direct_attribute_reads"]


@contextlib.contextmanager
def direct_attribute_reads(model: object) -> Iterator[None]:
    """Within the block, ``module.<child>`` and ``module.<parameter>`` skip ``__getattr__``.

    For the duration of a decoding call, where the model's structure does not change: a
    part that sets a child or a parameter to None, or replaces one through ``add_module``,
    ``register_parameter`` or ``del`` while it runs, would read the old one until the block
    ends (assigning a module or a parameter is seen at once). Objects that are not modules
    are left as they are.
    """
    added: list[tuple[dict, str, object]] = []
    if isinstance(model, nn.Module):
        for module in model.modules():
            attributes, cls = module.__dict__, type(module)
            # A scripted module keeps its registries in C++ (wrappers, not dicts): as it is.
            registries = (module._modules, module._parameters)
            if not all(type(registry) is dict for registry in registries):
                continue
            for registry in registries:
                for name, value in registry.items():
                    # A class attribute of the same name wins over `__getattr__` (so a
                    # plain read never reached the child): it must keep winning.
                    if name not in attributes and not hasattr(cls, name):
                        attributes[name] = value
                        added.append((attributes, name, value))
    try:
        yield
    finally:
        for attributes, name, alias in added:
            # Only the alias put here: `__setattr__` may have dropped it already.
            if attributes.get(name, _MISSING) is alias:
                del attributes[name]


_MISSING = object()
