"""`nnblocks train RECIPE --from RUN_OR_CHECKPOINT`: continue a trained model on new data.

``--from`` names either a finished run folder (it holds ``metrics.json``, which a run
writes last, and the saved ``model/``) or a training checkpoint folder (``training.json``
and ``model.safetensors``, e.g. ``RUN/checkpoints/last``). From a run, the model is
``nnblocks.load(RUN/model)`` - with any surgery it went through - and the recipe's
``continual:`` section reads what that run kept in ``RUN/continual/`` (rehearsal buffer,
EWC penalties). From a checkpoint, the recipe's own model is built and the checkpoint's
weights are loaded into it.
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from torch import nn

from nnblocks.errors import CheckpointError, SpecError
from nnblocks.io import load
from nnblocks.registry import kind_of, spec_of
from nnblocks.surgery import grow
from nnblocks.train.checkpoint import TRAINING_FILE, load_model_weights

__all__ = ["Previous", "previous_run", "continue_model"]

# Sizes the data offers the model: they must agree with the model that continues.
_SIZES = ("vocab_size", "src_vocab_size", "tgt_vocab_size", "in_features", "in_channels")


@dataclasses.dataclass(frozen=True)
class Previous:
    """What ``--from`` names: ``root`` (the run folder) and ``model`` (what to load)."""

    root: Path
    model: Path
    is_run: bool


def previous_run(path: str | os.PathLike[str]) -> Previous:
    """Check ``path`` before any work: a finished run or a training checkpoint.

    Raises:
        CheckpointError: naming the folder and the file that marks what it expected.
    """
    folder = Path(path)
    if not folder.is_dir():
        raise CheckpointError(
            f"--from `{folder}`: no such folder (expected a run or a checkpoint)."
        )
    if (folder / "metrics.json").is_file():
        if not (folder / "model").is_dir():
            raise CheckpointError(
                f"--from `{folder}`: the run has no saved model (`{folder / 'model'}` missing)."
            )
        return Previous(folder, folder / "model", True)
    if (folder / TRAINING_FILE).is_file():
        # RUN/checkpoints/<name>: the run's continual state, if any, sits two levels up
        return Previous(folder.parent.parent, folder, False)
    raise CheckpointError(
        f"--from `{folder}` is not a finished run (no `{folder / 'metrics.json'}`, which a "
        f"run writes last) nor a training checkpoint (no `{folder / TRAINING_FILE}`)."
    )


def continue_model(
    previous: Previous, model: nn.Module, data: Any, continual: Mapping[str, Any]
) -> nn.Module:
    """The model to continue: the previous run's (grown as asked) or the recipe's with the
    checkpoint's weights.

    Args:
        previous: from ``previous_run``.
        model: the recipe's model, built for the new data.
        data: the new data bundle (its ``task.model_args`` give the sizes it needs).
        continual: the recipe's ``continual:`` section (``grow_head``).

    Raises:
        SpecError: the previous model does not fit the new data (naming the size).
        CheckpointError: a corrupt or mismatched checkpoint.
    """
    if not previous.is_run:
        return load_model_weights(model, previous.model)
    loaded = load(previous.model)
    needs = dict(getattr(getattr(data, "task", None), "model_args", {}) or {})
    head = continual.get("grow_head")
    classes = needs.get("num_classes")
    if head is not None and isinstance(classes, int):
        target = loaded.get_submodule(head) if isinstance(head, str) else None
        if isinstance(target, nn.Linear) and target.out_features < classes:
            grow(loaded, head, classes)
    _check_sizes(loaded, needs, previous, grown=head is not None)
    return loaded


def _check_sizes(
    model: nn.Module, needs: dict[str, Any], previous: Previous, *, grown: bool
) -> None:
    spec = spec_of(model) if kind_of(model) is not None else {}
    keys = _SIZES if grown else (*_SIZES, "num_classes")
    for key in keys:
        if key in needs and key in spec and spec[key] != needs[key]:
            hint = (
                " Set continual.grow_head (e.g. `head`) to widen the head for the new classes."
                if key == "num_classes"
                else " Continue on data prepared like the previous run's (same tokenizers)."
            )
            raise SpecError(
                f"the model in `{previous.model}` has {key}={spec[key]}, but the recipe's data "
                f"needs {key}={needs[key]}.{hint}",
                path=f"--from: model.{key}",
            )
