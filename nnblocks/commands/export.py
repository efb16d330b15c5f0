"""`nnblocks export MODEL --onnx FILE`: export a saved model or a recipe's model to ONNX.

The file is checked in onnxruntime against eager PyTorch (on the example and on a batch and
length it was not traced with) before it is written; see ``nnblocks.hybrid.export_onnx``.
What the exporters log at INFO (every graph pass of torch.onnx and onnxscript) is shown only
with ``nnblocks -v export``; their warnings and errors always are.
"""

from __future__ import annotations

import argparse
import contextlib
import logging
from collections.abc import Iterator
from pathlib import Path

from rich.console import Console

from nnblocks.errors import SpecError
from nnblocks.experiment.targets import load_target, parse_input
from nnblocks.hybrid import export_onnx
from nnblocks.parts.boundary import check_arity, describe_inputs


def configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "target", metavar="CHECKPOINT_OR_RECIPE", help="a saved model folder or a recipe .yaml"
    )
    parser.add_argument("--onnx", required=True, metavar="FILE", help="the .onnx file to write")
    parser.add_argument(
        "--input",
        action="append",
        default=[],
        metavar="SHAPE",
        help="an example input: 2x8 (random floats) or 2x16:tokens=50 (token ids below 50); "
        "default: the first training examples of the recipe's data",
    )
    parser.add_argument("--exporter", choices=("auto", "dynamo", "torchscript"), default="auto")
    parser.add_argument("--opset", type=int, help="ONNX opset (default: the exporter's)")
    parser.add_argument("--static", action="store_true", help="fixed batch and sequence sizes")


def run(args: argparse.Namespace) -> int:
    model, inputs = load_target(args.target, size=2, command="nnblocks export")
    if args.input:
        inputs = tuple(parse_input(text) for text in args.input)
    needed = describe_inputs(model)
    if not inputs:
        raise SpecError(
            f"no example inputs: {type(model).__name__} takes {needed}; give one --input SHAPE "
            "per input (e.g. --input 2x16:tokens=50), or a recipe with data",
            path="nnblocks export",
        )
    check_arity(model, inputs, where="nnblocks export --input")
    with _exporter_logs(verbose=getattr(args, "verbose", False)):
        result = export_onnx(
            model.eval(),
            inputs,
            Path(args.onnx),
            dynamic_batch=not args.static,
            dynamic_sequence=not args.static,
            exporter=args.exporter,
            opset=args.opset,
        )
    Console().print(
        f"wrote {result.path} ({result.exporter} exporter; inputs {result.input_names}; "
        f"largest difference from PyTorch in onnxruntime {result.max_diff:.2e} over shapes "
        f"{result.checked_shapes})"
    )
    return 0


# The loggers of the exporter's own passes (a dynamo export of a one-layer model logs ~40
# INFO lines: removed nodes, folded constants, deduplicated initializers).
_EXPORTER_LOGGERS = ("torch.onnx", "onnxscript", "onnx_ir")


@contextlib.contextmanager
def _exporter_logs(*, verbose: bool) -> Iterator[None]:
    """Raise the exporter loggers to WARNING for the export, unless ``verbose``."""
    if verbose:
        yield
        return
    loggers = [logging.getLogger(name) for name in _EXPORTER_LOGGERS]
    levels = [logger.level for logger in loggers]
    for logger in loggers:
        logger.setLevel(max(logger.getEffectiveLevel(), logging.WARNING))
    try:
        yield
    finally:
        for logger, level in zip(loggers, levels, strict=True):
            logger.setLevel(level)
