"""``export_program``: capture a model as a ``torch.export.ExportedProgram``.

An ExportedProgram is the whole-graph, Python-free form of a model that AOTInductor,
ExecuTorch and the ONNX exporter start from. Capturing fails on Python branches that
depend on tensor values; the error names the model and the line of model code at fault.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import torch
from torch import nn

from nnblocks.hybrid._compare import compare, describe_model
from nnblocks.hybrid._errors import EquivalenceError, ExportError
from nnblocks.hybrid._onnx import _reason
from nnblocks.hybrid._shapes import export_inputs, to_dynamic_shapes
from nnblocks.hybrid._state import eval_mode

__all__ = ["export_program"]


def export_program(
    model: nn.Module,
    example_inputs: Any,
    *,
    dynamic_batch: bool = True,
    dynamic_sequence: bool = True,
    dynamic_axes: Mapping[str | int, Mapping[int, str] | Sequence[int]] | None = None,
    strict: bool = False,
    check: bool = True,
    rtol: float | None = None,
    atol: float | None = None,
) -> torch.export.ExportedProgram:
    """Capture ``model`` with ``torch.export.export``, with dynamic batch and sequence sizes.

    The model is captured in eval mode; every module's mode is restored afterwards.

    Args:
        model: the model.
        example_inputs: one batch of positional arguments (a tensor or a tuple).
        dynamic_batch, dynamic_sequence, dynamic_axes: which axes may change size, as in
            ``export_onnx``.
        strict: capture with TorchDynamo's strict tracing (``torch.export`` default off).
        check: run the program on the example and compare it with eager.
        rtol, atol: tolerances of the check (defaults per dtype, see ``hybridize``).

    Returns:
        The ``ExportedProgram``; ``program.module()`` is callable like the model.

    Raises:
        ExportError: ``torch.export`` cannot capture the model (naming the model, the
            reason and the line of model code at fault).
        EquivalenceError: the program's outputs differ from eager on the example.
        SpecError: bad ``dynamic_axes``, or an example with size 1 on a dynamic axis.

    Example:
        >>> attn = nnblocks.build("mha", "attention", dim=16, heads=2)
        >>> program = export_program(attn, torch.randn(2, 5, 16))     # doctest: +SKIP
        >>> program.module()(torch.randn(3, 7, 16)).shape               # doctest: +SKIP
        torch.Size([3, 7, 16])
    """
    args, names, axes = export_inputs(
        model, example_inputs, batch=dynamic_batch, sequence=dynamic_sequence,
        overrides=dynamic_axes, where="export_program",
    )  # fmt: skip
    with eval_mode(model):
        try:
            program = torch.export.export(
                model, args, dynamic_shapes=to_dynamic_shapes(args, names, axes), strict=strict
            )
        except Exception as exc:  # torch.export raises many types; all mean "cannot capture"
            raise ExportError(
                f"export_program: torch.export could not capture {describe_model(model)}: "
                f"{_reason(exc)}. Expected a model without Python branches on tensor values "
                "(see https://pytorch.org/docs/stable/export.html); dynamic axes: "
                f"{ {n: a for n, a in axes.items() if a} }."
            ) from exc
        if check:
            with torch.no_grad():
                expected, actual = model(*args), program.module()(*args)
            result = compare(expected, actual, rtol=rtol, atol=atol, what="exported")
            if not result.ok:
                raise EquivalenceError(
                    f"export_program: the program of {describe_model(model)} disagrees with "
                    f"eager: {result.problem}. Largest difference {result.max_diff:.3g}, in "
                    f"{result.where}.",
                    max_diff=result.max_diff,
                    where=result.where,
                )
    return program
