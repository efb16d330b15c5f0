"""`nnblocks audit RECIPE_OR_CHECKPOINT`: the module-reuse audit of a recipe's model.

A recipe YAML's ``model:`` spec is built with ``nnblocks.build`` (with the dataset's
``task.model_args`` as defaults when the recipe has ``data``); the audit then traces one
forward pass on a small batch of the training split. A checkpoint folder is loaded with
``nnblocks.load``; with ``--recipe`` its recipe's data gives the batch. Without data only
the static checks run (shared Parameter objects, modules registered twice).

Exits 1 when the audit finds a failure (``--strict``: a warning too), else 0.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

import torch
from rich.console import Console
from torch import nn

from nnblocks.check.audit import audit_reuse
from nnblocks.errors import DataError, SpecError

__all__ = ["configure", "run", "load_target", "example_batch"]


def configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "target", metavar="RECIPE_OR_CHECKPOINT", help="a recipe .yaml or a checkpoint folder"
    )
    parser.add_argument(
        "--recipe", help="for a checkpoint: a recipe whose data gives the example batch"
    )
    parser.add_argument(
        "--batch", type=int, default=2, help="examples in the traced batch (default 2)"
    )
    parser.add_argument(
        "--input",
        action="append",
        default=[],
        metavar="SHAPE",
        help="an example input when there is no data: 2x8 (random floats) or 2x16:tokens=50 "
        "(random token ids below 50); repeat for several inputs",
    )
    parser.add_argument("--strict", action="store_true", help="exit 1 on warnings too")
    parser.add_argument("--json", action="store_true", help="print the report as JSON")


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
    from nnblocks.experiment.recipe import load_recipe
    from nnblocks.experiment.run import build_from_recipe
    from nnblocks.registry import build
    from nnblocks.spec import spec_path

    recipe = load_recipe(path)
    if "model" not in recipe:
        raise SpecError("the recipe has no `model` section to audit.", path=f"{path}: model")
    if "data" not in recipe:
        with spec_path("model"):
            return build(recipe["model"], "model"), ()
    data, model = build_from_recipe(recipe)
    return model, example_batch(data, size)


def load_target(
    target: str, *, recipe: str | None = None, size: int = 2
) -> tuple[nn.Module, tuple[Any, ...]]:
    """(model, example inputs) for a recipe file or a checkpoint folder."""
    path = Path(target)
    if path.is_dir():
        from nnblocks.io import load

        model = load(path)
        inputs: tuple[Any, ...] = ()
        if recipe is not None:
            _, inputs = _from_recipe(recipe, size)
        return model, inputs
    if not path.is_file():
        raise SpecError(
            f"no such recipe file or checkpoint folder: {target}", path="nnblocks audit"
        )
    return _from_recipe(target, size)


def run(args: argparse.Namespace) -> int:
    model, inputs = load_target(args.target, recipe=args.recipe, size=args.batch)
    if args.input:
        inputs = tuple(parse_input(text) for text in args.input)
    report = audit_reuse(model, *inputs)
    report.title = f"audit {args.target} ({type(model).__name__})"
    if args.json:
        print(json.dumps(report.to_dict(), indent=2))
    else:
        Console(width=None if Console().is_terminal else 120).print(report.table())
    if not report.ok or (args.strict and report.warnings):
        return 1
    return 0
