"""Model and example inputs for the commands that take a recipe or a saved model.

``load_target`` gives ``(model, example inputs)`` for a recipe YAML (its model built with
its data's ``model_args``, the inputs the first training examples) or for a saved model
folder (``nnblocks.load``); ``parse_input`` makes an example input from a shape such as
``2x16:tokens=50``. ``nnblocks audit`` and ``nnblocks export`` share them.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
from torch import nn

from nnblocks.errors import DataError, SpecError
from nnblocks.experiment.recipe import load_recipe
from nnblocks.experiment.run import check_recipe
from nnblocks.registry import build
from nnblocks.spec import spec_path

__all__ = ["load_target", "example_batch", "parse_input"]


def example_batch(data: Any, size: int) -> tuple[Any, ...]:
    """The model inputs of the first ``size`` training examples of a data bundle.

    Raises:
        DataError: the bundle has no usable training split.
    """
    train = getattr(data, "train", None)
    if train is None or len(train) == 0:
        raise DataError("the recipe's data has no training examples to audit with.")
    n = min(size, len(train))
    if hasattr(train, "tensors") and hasattr(train, "n_inputs"):
        batch = train[torch.arange(n)]
        return tuple(batch[: train.n_inputs])
    collate = getattr(data, "collate", None) or torch.utils.data.default_collate
    batch = collate([train[i] for i in range(n)])
    n_inputs = getattr(train, "n_inputs", 1)
    return tuple(batch[:n_inputs]) if isinstance(batch, (tuple, list)) else (batch,)


def parse_input(text: str) -> torch.Tensor:
    """``"2x8"`` -> ``randn(2, 8)``; ``"2x16:tokens=50"`` -> token ids in [3, 50) (past the specials).

    Raises:
        SpecError: a malformed shape.
    """
    shape_text, _, kind = text.partition(":")
    try:
        shape = [int(n) for n in shape_text.lower().split("x")]
    except ValueError:
        shape = []
    if not shape or any(n <= 0 for n in shape):
        raise SpecError(
            f"expected a shape like 2x8 or 2x16:tokens=50. Received: {text!r}", path="--input"
        )
    if kind:
        name, _, value = kind.partition("=")
        if name != "tokens" or not value.isdigit() or int(value) < 4:
            raise SpecError(
                f"expected `tokens=VOCAB` (VOCAB >= 4) after the shape. Received: {kind!r}",
                path="--input",
            )
        return torch.randint(3, int(value), shape)
    return torch.randn(shape)


def _from_recipe(path: str, size: int) -> tuple[nn.Module, tuple[Any, ...]]:
    recipe = load_recipe(path)
    if "model" not in recipe:
        raise SpecError("the recipe has no `model` section to audit.", path=f"{path}: model")
    if "data" not in recipe:
        with spec_path("model"):
            return build(recipe["model"], "model"), ()
    checked = check_recipe(recipe)
    return checked.model, example_batch(checked.data, size)


def load_target(
    target: str, *, recipe: str | None = None, size: int = 2, command: str = "nnblocks audit"
) -> tuple[nn.Module, tuple[Any, ...]]:
    """(model, example inputs) for a recipe file or a checkpoint folder.

    Args:
        target: a recipe ``.yaml`` or a saved model folder.
        recipe: for a folder: a recipe whose data gives the example inputs.
        size: examples in the batch.
        command: the command named in errors.

    Raises:
        SpecError: neither a recipe file nor a folder, or a recipe that does not check.
        CheckpointError: a folder that does not load.
    """
    path = Path(target)
    if path.is_dir():
        from nnblocks.io import load

        model = load(path)
        inputs: tuple[Any, ...] = ()
        if recipe is not None:
            _, inputs = _from_recipe(recipe, size)
        return model, inputs
    if not path.is_file():
        raise SpecError(f"no such recipe file or checkpoint folder: {target}", path=command)
    return _from_recipe(target, size)
