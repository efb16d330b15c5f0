"""nnblocks: plug-and-play deep learning parts on PyTorch.

Public names (other code, tests and users rely on them)::

    nnblocks.register(kind, name)      nnblocks.build(spec, kind=None)
    nnblocks.list_parts(kind=None)     nnblocks.get_part(kind, name)
    nnblocks.save(model, folder)       nnblocks.load(folder)
    nnblocks.NNBlocksError             nnblocks.Learner(model, data, loss=..., metrics=...)
    nnblocks.check.check_part(...)     nnblocks.check.audit_reuse(...)

The training loop, the check kit, data and experiments are imported on first use, so
``import nnblocks`` stays light.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from nnblocks import errors
from nnblocks.errors import (  # noqa: F401  (public: listed by errors.__all__)
    CheckpointError,
    DataError,
    NNBlocksError,
    NumericsError,
    RegistryError,
    ShapeError,
    SpecError,
    TrainingError,
)
from nnblocks.registry import build, get_part, kind_of, list_parts, register, spec_of

__version__ = "0.1.0"

__all__ = [
    "__version__",
    "register",
    "build",
    "list_parts",
    "get_part",
    "spec_of",
    "kind_of",
    "save",
    "load",
    "Learner",
    "pipeline",
    "check",
    *errors.__all__,
]

# name -> (module, attribute or None for the module itself)
_LAZY = {
    "save": ("nnblocks.io", "save"),
    "load": ("nnblocks.io", "load"),
    "Learner": ("nnblocks.train", "Learner"),
    "check": ("nnblocks.check", None),
    "data": ("nnblocks.data", None),
    "train": ("nnblocks.train", None),
    "experiment": ("nnblocks.experiment", None),
    "generate": ("nnblocks.generate", None),
    "surgery": ("nnblocks.surgery", None),
    "hybrid": ("nnblocks.hybrid", None),
    "pipeline": ("nnblocks.text_pipeline", "pipeline"),
    "interop": ("nnblocks.interop", None),
}

if TYPE_CHECKING:
    from nnblocks import check
    from nnblocks.io import load, save
    from nnblocks.text_pipeline import pipeline
    from nnblocks.train import Learner


def __getattr__(name: str) -> Any:
    if name not in _LAZY:
        raise AttributeError(f"module 'nnblocks' has no attribute {name!r}")
    module_name, attr = _LAZY[name]
    module = importlib.import_module(module_name)
    value = module if attr is None else getattr(module, attr)
    globals()[name] = value
    return value
