"""Fully sharded data parallel (``strategy="fsdp"``): PyTorch's FSDP2, wrapped by slot pattern.

Each process keeps only its shard of every parameter, gradient and optimizer state
(``torch.distributed.fsdp.fully_shard``; Zhao et al. 2023, "PyTorch FSDP"): a wrapped
module gathers its full parameters just before its forward (and again for its backward)
and frees them after, and gradients are reduce-scattered so each process steps only its
shard. The unit of gathering is a *wrapped module*: by default each Transformer layer
(every module at a path ``....layers.N``), or the modules matching ``fsdp_wrap`` globs
(``"decoder.layers.*"``); the model itself is always wrapped last, so what is left
(embeddings, a tied head, the final norm) forms one more unit. Tied weights stay tied as
long as both users sit in the same unit (the default keeps embedding and head in the root).

Parameters become ``DTensor`` shards in place: the module keeps its class, its names and
its slots. Checkpoints of a sharded model are written with ``torch.distributed.checkpoint``
(every process writes its shards into one folder; a later run on any number of processes
reads them resharded), see ``save_sharded`` / ``load_sharded``.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch
from torch import nn

from nnblocks.errors import CheckpointError, TrainingError
from nnblocks.slots import close_slots, find

__all__ = [
    "SHARDED_DIR",
    "wrap_targets",
    "shard_model",
    "is_sharded",
    "local_tensor",
    "save_sharded",
    "load_sharded",
    "full_state_dict",
    "gathered_model",
]

SHARDED_DIR = "sharded"  # the DCP folder inside a training checkpoint
_LAYER = re.compile(r"(^|\.)layers\.\d+$")  # the default unit: one Transformer layer


def _outermost(hits: list[tuple[str, nn.Module]]) -> list[tuple[str, nn.Module]]:
    """Drop matches inside other matches (a glob like ``layers.*`` also hits sub-modules)."""
    names = [n for n, _ in hits]
    return [(n, m) for n, m in hits if not any(n.startswith(f"{o}.") for o in names if o != n)]


def wrap_targets(model: nn.Module, patterns: str | Sequence[str] | None) -> list[str]:
    """The module paths ``shard_model`` wraps, checked without touching the model.

    Args:
        model: the model.
        patterns: globs over module paths (``"decoder.layers.*"``), or ``None``: each
            Transformer layer (``....layers.N``); a model without such layers is wrapped as
            one unit.

    Returns:
        The outermost matching module paths, in model order.

    Raises:
        TrainingError: a pattern that matches no module (naming ``fsdp_wrap`` and close
            slot names), or patterns that are not strings.
    """
    if patterns is None:
        return [n for n, _ in model.named_modules() if _LAYER.search(n)]
    if isinstance(patterns, str):
        patterns = [patterns]
    if not patterns or not all(isinstance(p, str) and p for p in patterns):
        raise TrainingError(
            "Received an invalid value for `fsdp_wrap`: expected a glob over module paths or a "
            f"non-empty list of them, e.g. 'decoder.layers.*'. Received: fsdp_wrap={patterns!r}"
        )
    hits: list[tuple[str, nn.Module]] = []
    for pattern in patterns:
        found = find(model, pattern)
        if not found:
            close = ", ".join(close_slots(model, pattern)) or "none"
            raise TrainingError(
                f"`fsdp_wrap` pattern `{pattern}` matches no module of {type(model).__name__}: "
                f"expected a module path or a glob such as 'decoder.layers.*'. Close: {close}"
            )
        hits.extend(h for h in found if all(h[1] is not m for _, m in hits))
    order = {n: i for i, (n, _) in enumerate(model.named_modules())}
    return sorted((n for n, _ in _outermost(hits)), key=lambda n: order.get(n, -1))


def shard_model(
    model: nn.Module, patterns: str | Sequence[str] | None, *, mesh: Any = None
) -> list[str]:
    """Shard ``model`` in place over the process group with FSDP2.

    Needs an initialised process group (``nnblocks.train.distributed.setup``) and the
    model on its device.

    Args:
        model: the model (on this process's device).
        patterns: which modules form their own unit (see ``wrap_targets``).
        mesh: a ``DeviceMesh`` (default: all processes, one dimension).

    Returns:
        The wrapped module paths (the model itself, wrapped last, not listed).

    Raises:
        TrainingError: as ``wrap_targets``.
    """
    from torch.distributed.fsdp import fully_shard

    names = wrap_targets(model, patterns)
    modules = dict(model.named_modules())
    # Innermost first: fully_shard on a parent leaves the parameters of already wrapped
    # children to them (wrap_targets only keeps outermost matches, so order is by depth).
    for name in reversed(names):
        fully_shard(modules[name], mesh=mesh)
    fully_shard(model, mesh=mesh)
    return names


def is_sharded(model: nn.Module) -> bool:
    """True when ``model``'s parameters are FSDP shards (``DTensor``)."""
    from torch.distributed.tensor import DTensor

    return any(isinstance(p, DTensor) for p in model.parameters())


def local_tensor(t: torch.Tensor) -> torch.Tensor:
    """This process's shard of ``t`` (``t`` itself when it is not a DTensor)."""
    to_local = getattr(t, "to_local", None)
    return to_local() if callable(to_local) else t


def _grads(model: nn.Module) -> dict[str, torch.Tensor]:
    return {n: p.grad for n, p in model.named_parameters() if p.grad is not None}


def save_sharded(folder: Path, model: nn.Module, opt: torch.optim.Optimizer) -> None:
    """Write model, optimizer state and pending gradients as a DCP checkpoint in ``folder``.

    Every process must call it with the same ``folder`` (on a file system all can reach);
    it returns once every process's shards and rank 0's metadata are written.
    """
    import torch.distributed.checkpoint as dcp
    from torch.distributed.checkpoint.state_dict import get_state_dict

    model_sd, opt_sd = get_state_dict(model, opt)
    dcp.save({"model": model_sd, "optim": opt_sd, "grads": _grads(model)}, checkpoint_id=folder)


def load_sharded(folder: Path, model: nn.Module, opt: torch.optim.Optimizer) -> None:
    """Read a ``save_sharded`` checkpoint into ``model`` and ``opt``, resharded to this run.

    Works on any number of processes (and on one, into an unsharded model).

    Raises:
        CheckpointError: the checkpoint does not fit the model or optimizer (names the
            mismatch as DCP reports it).
    """
    import torch.distributed.checkpoint as dcp
    from torch.distributed.checkpoint.state_dict import get_state_dict, set_state_dict

    saved = dcp.FileSystemReader(folder).read_metadata().state_dict_metadata
    params = dict(model.named_parameters())
    grad_names = [k.split(".", 1)[1] for k in saved if k.startswith("grads.")]
    grads = {n: torch.zeros_like(params[n]) for n in grad_names if n in params}
    model_sd, opt_sd = get_state_dict(model, opt)
    state: dict[str, Any] = {"model": model_sd, "optim": opt_sd, "grads": grads}
    try:
        dcp.load(state, checkpoint_id=folder)
    except Exception as exc:  # DCP raises many kinds (CheckpointException, RuntimeError)
        raise CheckpointError(
            f"`{folder}`: the sharded checkpoint does not fit this model or optimizer: {exc}"
        ) from exc
    set_state_dict(model, opt, model_state_dict=state["model"], optim_state_dict=state["optim"])
    for name, p in params.items():
        p.grad = state["grads"].get(name)


def full_state_dict(model: nn.Module) -> dict[str, torch.Tensor]:
    """The whole state dict gathered on CPU on rank 0 (``{}`` on the other ranks).

    Every process must call it. For an unsharded model: its state dict on CPU.
    """
    from torch.distributed.checkpoint.state_dict import StateDictOptions, get_model_state_dict

    if not is_sharded(model):
        return {k: v.detach().cpu() for k, v in model.state_dict().items()}
    options = StateDictOptions(full_state_dict=True, cpu_offload=True)
    return dict(get_model_state_dict(model, options=options))  # type: ignore[arg-type]


def gathered_model(model: nn.Module) -> nn.Module | None:
    """``model`` with its whole weights in one plain module, for saving after a sharded run.

    Every process must call it. Not sharded: ``model`` itself. Sharded: on rank 0 a new
    model rebuilt from ``model``'s spec holding the gathered weights (on CPU), elsewhere
    ``None``.

    Raises:
        CheckpointError: a sharded model that was not built from a spec (use
            ``full_state_dict`` and a model of your own).
    """
    import torch.distributed as dist

    from nnblocks.errors import SpecError
    from nnblocks.registry import build, spec_of

    if not is_sharded(model):
        return model
    state = full_state_dict(model)
    if dist.get_rank() != 0:
        return None
    try:
        plain = build(spec_of(model), kind="model")
    except SpecError as exc:
        raise CheckpointError(
            f"cannot save the sharded {type(model).__name__} as a model folder: it was not "
            "built from a spec. Gather its weights with "
            "nnblocks.train.fsdp.full_state_dict(model) instead."
        ) from exc
    plain.load_state_dict(state)
    return plain
