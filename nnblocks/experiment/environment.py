"""What a run needs to be reproduced: versions, device, threads, seed, determinism."""

from __future__ import annotations

import importlib.metadata
import os
import platform
import random
import sys
from collections.abc import Mapping
from typing import Any

import numpy as np
import torch

from nnblocks.experiment.seeds import seed_values

__all__ = ["seed_after_build", "seed_everything", "describe_environment"]

_PACKAGES = ["torch", "numpy", "safetensors", "torchmetrics", "tokenizers", "optuna", "sacrebleu"]


def seed_everything(seed: int, *, deterministic: bool = False) -> None:
    """Seed Python, NumPy and torch; optionally ask torch for deterministic algorithms."""
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)
    if deterministic:
        # Some CUDA kernels need this to be deterministic; harmless on CPU.
        os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
        torch.use_deterministic_algorithms(True, warn_only=True)


def seed_after_build(seed: Any) -> None:
    """Named seeds (``{init, data, dropout}``): the stream that dropout and augmentation
    draw from starts after the model is built, from the ``dropout`` seed. An int seed keeps
    one stream from initialisation on, as runs made before named seeds did."""
    if isinstance(seed, Mapping):
        torch.manual_seed(seed_values(seed)["dropout"])


def _version(name: str) -> str | None:
    try:
        return importlib.metadata.version(name)
    except importlib.metadata.PackageNotFoundError:
        return None


def describe_environment(seed: Any = None, *, deterministic: bool = False) -> dict[str, Any]:
    """A JSON-able description of this machine and process."""
    import nnblocks

    cuda = torch.cuda.is_available()
    return {
        "nnblocks": nnblocks.__version__,
        "python": sys.version.split()[0],
        "platform": platform.platform(),
        "packages": {p: _version(p) for p in _PACKAGES if _version(p)},
        "device": torch.cuda.get_device_name(0)
        if cuda
        else f"cpu ({platform.processor() or platform.machine()})",
        "cuda": torch.version.cuda if cuda else None,
        "torch_threads": torch.get_num_threads(),
        "cpu_count": os.cpu_count(),
        "seed": seed,
        "deterministic": deterministic,
        "omp_wait_policy": os.environ.get("OMP_WAIT_POLICY"),
    }
