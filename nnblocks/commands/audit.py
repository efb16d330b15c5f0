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

from nnblocks.check.audit import audit_reuse
from nnblocks.commands._common import wide_console
from nnblocks.experiment.targets import example_batch, load_target, parse_input
from nnblocks.parts.boundary import check_arity

__all__ = ["configure", "run", "load_target", "example_batch", "parse_input"]


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


def run(args: argparse.Namespace) -> int:
    model, inputs = load_target(args.target, recipe=args.recipe, size=args.batch)
    if args.input:
        inputs = tuple(parse_input(text) for text in args.input)
        check_arity(model, inputs, where="nnblocks audit --input")
    report = audit_reuse(model, *inputs)
    report.title = f"audit {args.target} ({type(model).__name__})"
    if args.json:
        print(json.dumps(report.to_dict(), indent=2))
    else:
        wide_console(width=120).print(report.table())
    if not report.ok or (args.strict and report.warnings):
        return 1
    return 0
