"""Distributed data parallel through ``torchrun``: environment, process group, reductions.

The same script runs alone or under ``torchrun --nproc_per_node=N`` (multi-node through
torchrun's rendezvous): the Learner reads ``RANK``, ``WORLD_SIZE`` and ``LOCAL_RANK``,
joins the process group (gloo on CPU, nccl on CUDA), wraps the model in
``DistributedDataParallel``, gives each process its share of every global batch, sums metric
states across processes, and lets only rank 0 write files.

``strategy="fsdp"`` shards the model instead of copying it (``nnblocks.train.fsdp``);
``check_strategy`` refuses a strategy or batch size the launch cannot use before any
process group is formed.

Restarts (``torchrun --max-restarts=N`` with ``fit(..., resume="auto")`` and a
``SaveCheckpoint``): launch torchrun with ``TORCH_DISABLE_SHARE_RDZV_TCP_STORE=1``; with the
store shared between rounds, a restarted round can read the dead round's addresses and fail
to connect (pytorch/pytorch#135712, seen here with torch 2.13 and gloo).
"""

from __future__ import annotations

import dataclasses
import datetime
import logging
import os
from typing import Any

import torch
import torch.distributed as dist

from nnblocks.errors import TrainingError
from nnblocks.train import fsdp

__all__ = [
    "DistInfo",
    "dist_info",
    "setup",
    "is_main",
    "all_reduce_sum",
    "broadcast_object",
    "gather_objects",
    "barrier",
    "wrap_ddp",
    "wrap_model",
    "check_strategy",
    "STRATEGIES",
]

STRATEGIES = ("ddp", "fsdp")

log = logging.getLogger(__name__)


@dataclasses.dataclass(frozen=True)
class DistInfo:
    """Where this process stands: ``rank`` of ``world_size``, ``local_rank`` on its node."""

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0

    @property
    def enabled(self) -> bool:
        return self.world_size > 1


def _env_int(name: str, default: int) -> int:
    value = os.environ.get(name)
    if value is None:
        return default
    try:
        return int(value)
    except ValueError as exc:
        raise TrainingError(
            f"environment variable {name} must be an integer. Received: {value!r}"
        ) from exc


def dist_info() -> DistInfo:
    """This process's place, from an initialised process group or torchrun's variables."""
    if dist.is_available() and dist.is_initialized():
        return DistInfo(dist.get_rank(), dist.get_world_size(), _env_int("LOCAL_RANK", 0))
    return DistInfo(_env_int("RANK", 0), _env_int("WORLD_SIZE", 1), _env_int("LOCAL_RANK", 0))


def setup(
    device: torch.device | str | None = None, *, timeout_s: float = 1800
) -> tuple[DistInfo, torch.device]:
    """Join the process group when launched by torchrun, and pick this process's device.

    Args:
        device: the device asked for; ``None`` -> ``cuda:LOCAL_RANK`` if CUDA is available,
            else CPU.
        timeout_s: how long collectives wait for a missing process.

    Returns:
        ``(info, device)``.

    Raises:
        TrainingError: WORLD_SIZE > 1 but torch.distributed is unavailable.
    """
    info = dist_info()
    if device is None:
        device = f"cuda:{info.local_rank}" if torch.cuda.is_available() else "cpu"
    device = torch.device(device)
    if device.type == "cuda" and device.index is None:
        device = torch.device(
            "cuda", info.local_rank if info.enabled else torch.cuda.current_device()
        )
    if info.enabled and not dist.is_initialized():
        if not dist.is_available():
            raise TrainingError(
                f"WORLD_SIZE={info.world_size} asks for distributed training, but this torch "
                "build has no torch.distributed."
            )
        if device.type == "cuda":
            torch.cuda.set_device(device)
        backend = "nccl" if device.type == "cuda" else "gloo"
        dist.init_process_group(backend, timeout=datetime.timedelta(seconds=timeout_s))
        log.info("joined process group: rank %d of %d (%s)", info.rank, info.world_size, backend)
    return info, device


def is_main() -> bool:
    """True on rank 0 (and when not distributed)."""
    return dist_info().rank == 0


def _active() -> bool:
    return dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1


def all_reduce_sum(tensor: torch.Tensor) -> torch.Tensor:
    """The sum of ``tensor`` over processes (``tensor`` itself when not distributed)."""
    if not _active():
        return tensor
    out = tensor.clone()
    dist.all_reduce(out, op=dist.ReduceOp.SUM)
    return out


def broadcast_object(obj: Any, src: int = 0) -> Any:
    """Rank ``src``'s ``obj`` on every process."""
    if not _active():
        return obj
    box = [obj]
    dist.broadcast_object_list(box, src=src)
    return box[0]


def gather_objects(obj: Any) -> list[Any]:
    """Every process's ``obj``, in rank order, on every process."""
    if not _active():
        return [obj]
    out: list[Any] = [None] * dist.get_world_size()
    dist.all_gather_object(out, obj)
    return out


def barrier() -> None:
    if _active():
        dist.barrier()


def wrap_ddp(model: torch.nn.Module, device: torch.device) -> torch.nn.Module:
    """``model`` inside DistributedDataParallel when distributed, else ``model``."""
    if not _active():
        return model
    from torch.nn.parallel import DistributedDataParallel

    ids = [device.index] if device.type == "cuda" else None
    return DistributedDataParallel(model, device_ids=ids)


def check_strategy(
    strategy: str | None, fsdp_wrap: Any, model: torch.nn.Module, batch_size: Any
) -> str | None:
    """Refuse a strategy, wrapping pattern or batch size this launch cannot use.

    Reads torchrun's ``WORLD_SIZE`` only, so it runs before any process group is formed.

    Args:
        strategy: ``None``, ``"ddp"`` or ``"fsdp"`` (recipe key ``train.strategy``).
        fsdp_wrap: the FSDP wrapping patterns (only with ``"fsdp"``).
        model: the model the patterns must match.
        batch_size: the global batch size (``train.batch_size``).

    Returns:
        ``strategy``.

    Raises:
        TrainingError: an unknown strategy, ``fsdp`` with one process, ``fsdp_wrap``
            without ``fsdp`` or matching no module, or a global batch size the number of
            processes does not divide.
    """
    world = dist_info().world_size
    if strategy is not None and strategy not in STRATEGIES:
        raise TrainingError(
            "Received an invalid value for `train.strategy` (Learner `strategy`): expected "
            f"'ddp', 'fsdp' or None. Received: strategy={strategy!r}"
        )
    if strategy == "fsdp" and world < 2:
        raise TrainingError(
            "`train.strategy` is 'fsdp', but this process is not one of several: FSDP shards "
            "the model across 2 or more processes. Launch with `torchrun --nproc_per_node=N` "
            f"(N >= 2), or use strategy 'ddp' or None. Received: WORLD_SIZE={world}"
        )
    if fsdp_wrap is not None:
        if strategy != "fsdp":
            raise TrainingError(
                "`fsdp_wrap` is only used with strategy 'fsdp'. Received: "
                f"strategy={strategy!r}, fsdp_wrap={fsdp_wrap!r}"
            )
        fsdp.wrap_targets(model, fsdp_wrap)  # a pattern that matches nothing fails here
    if world > 1 and isinstance(batch_size, int) and batch_size % world:
        raise TrainingError(
            f"`train.batch_size` (the global batch) must be divisible by the number of "
            f"processes to split it evenly. Received: batch_size={batch_size}, "
            f"WORLD_SIZE={world}"
        )
    return strategy


def wrap_model(
    model: torch.nn.Module, device: torch.device, strategy: str | None, fsdp_wrap: Any = None
) -> torch.nn.Module:
    """The module the training steps run: ``model`` sharded in place by FSDP, inside DDP,
    or ``model`` itself when not distributed."""
    if strategy == "fsdp":
        names = fsdp.shard_model(model, fsdp_wrap)
        log.info("fsdp: %d units (%s) and the root", len(names), ", ".join(names[:4]))
        return model
    return wrap_ddp(model, device)
