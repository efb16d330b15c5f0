"""Distributed data parallel through ``torchrun``: environment, process group, reductions.

The same script runs alone or under ``torchrun --nproc_per_node=N`` (multi-node through
torchrun's rendezvous): the Learner reads ``RANK``, ``WORLD_SIZE`` and ``LOCAL_RANK``,
joins the process group (gloo on CPU, nccl on CUDA), wraps the model in
``DistributedDataParallel``, gives each process its share of every global batch, sums metric
states across processes, and lets only rank 0 write files.

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
]

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
