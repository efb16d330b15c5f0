"""``export_onnx``: export a model to ONNX, run it with onnxruntime, compare with eager.

Two exporters ship with PyTorch. The dynamo-based one (``torch.onnx.export(dynamo=True)``,
the default since PyTorch 2.9) captures the model with ``torch.export`` and translates it
with onnxscript; it keeps dynamic sizes symbolic and refuses what it cannot capture, such as
Python branches on tensor values. The TorchScript one (``dynamo=False``, deprecated) traces
one run: it accepts nearly any model but freezes every Python branch the example took. So
``exporter="auto"`` tries dynamo first and falls back to TorchScript, and the exported file
is always run with onnxruntime at the example's shapes *and* at other batch sizes and
lengths before it is written, which is what catches a frozen branch or a fixed size.
"""

from __future__ import annotations

import contextlib
import dataclasses
import io
import logging
import os
import warnings
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import torch
from torch import nn

from nnblocks.errors import SpecError
from nnblocks.hybrid._compare import compare, describe_model, flatten
from nnblocks.hybrid._errors import EquivalenceError, ExportError
from nnblocks.hybrid._optional import require
from nnblocks.hybrid._shapes import DynamicAxes, export_inputs, to_dynamic_shapes
from nnblocks.hybrid._state import as_args, eval_mode
from nnblocks.io.atomic import atomic_write_bytes

__all__ = ["OnnxExport", "export_onnx"]

log = logging.getLogger(__name__)

_EXPORTERS = ("auto", "dynamo", "torchscript")


@dataclasses.dataclass(frozen=True)
class OnnxExport:
    """What ``export_onnx`` wrote.

    Attributes:
        path: the ``.onnx`` file.
        exporter: ``"dynamo"`` or ``"torchscript"``: the exporter that produced it.
        input_names, output_names: the graph's inputs (the tensor arguments of
            ``model.forward``, by parameter name) and outputs (``output`` or
            ``output_0``, ``output_1``, ...).
        dynamic_axes: ``{input: {axis: dimension name}}``.
        max_diff: the largest absolute difference between onnxruntime and eager over all
            checked inputs (None when ``check=False``).
        checked_shapes: the input shapes that were run through onnxruntime.
    """

    path: Path
    exporter: str
    input_names: tuple[str, ...]
    output_names: tuple[str, ...]
    dynamic_axes: DynamicAxes
    max_diff: float | None = None
    checked_shapes: tuple[tuple[tuple[int, ...], ...], ...] = ()


# Over 80 lines by its docstring only (the public API's full documentation).
def export_onnx(
    model: nn.Module,
    example_inputs: Any,
    path: str | os.PathLike[str],
    *,
    dynamic_batch: bool = True,
    dynamic_sequence: bool = True,
    dynamic_axes: Mapping[str | int, Mapping[int, str] | Sequence[int]] | None = None,
    opset: int | None = None,
    exporter: str = "auto",
    check: bool = True,
    check_inputs: Sequence[Any] | None = None,
    rtol: float | None = None,
    atol: float | None = None,
) -> OnnxExport:
    """Export ``model`` to an ONNX file, verified with onnxruntime.

    The model is exported in eval mode (dropout off, BatchNorm running statistics); every
    module's mode is restored afterwards. The file is written atomically and only after the
    check passed, so a failed export leaves any previous file unchanged.

    Args:
        model: the model; tensors in ``example_inputs`` must be on its device.
        example_inputs: one batch of positional arguments (a tensor or a tuple).
        path: the ``.onnx`` file to write (its folder is created).
        dynamic_batch: axis 0 of every tensor input may change size (``batch``).
        dynamic_sequence: axis 1 of every sequence input (integer ``[B, T]`` token ids and
            ``[B, T, D]`` vectors) may change size (``<input>_len``).
        dynamic_axes: per input (name or position) its own dynamic axes, replacing the
            defaults: ``{"src": {0: "batch", 1: "src_len"}}`` or ``{"x": [0, 2]}``; ``{}``
            makes an input static. Inputs given one dimension name must share one size.
        opset: the ONNX opset version; None: the exporter's default.
        exporter: ``"auto"`` (dynamo, falling back to TorchScript), ``"dynamo"`` or
            ``"torchscript"``.
        check: run the file with onnxruntime and compare it with eager.
        check_inputs: the inputs to check (each a tensor or a tuple). Default: the example,
            and the example with one more row in the batch and one position less in each
            dynamic sequence axis (one more if it is shorter than 3), so the dynamic axes
            are exercised; for a token model (``model.pad_id``) that variant also ends its
            first row with padding, so a mask left out of the export is caught.
        rtol, atol: tolerances of the check (defaults per dtype, see ``hybridize``).

    Returns:
        An ``OnnxExport`` with the exporter used and the largest difference found.

    Raises:
        ExportError: both exporters failed (with each one's reason, naming the model), an
            export package is missing (naming ``pip install nnblocks[export]``), or
            onnxruntime cannot load or run the file at a checked shape.
        EquivalenceError: onnxruntime's outputs differ from eager beyond the tolerance.
        SpecError: a bad ``exporter`` or ``dynamic_axes``, or an example with size 1 on a
            dynamic axis.
        CheckpointError: the file cannot be written.

    Example:
        >>> attn = nnblocks.build("mha", "attention", dim=16, heads=2)
        >>> result = export_onnx(attn, torch.randn(2, 5, 16), "attn.onnx")  # doctest: +SKIP
        >>> result.exporter, result.max_diff < 1e-5                         # doctest: +SKIP
        ('dynamo', True)
    """
    if exporter not in _EXPORTERS:
        raise SpecError(
            f"Received an invalid value for `exporter`: expected one of {', '.join(_EXPORTERS)}. "
            f"Received: exporter={exporter!r}",
            path="export_onnx",
        )
    args, names, axes = export_inputs(
        model, example_inputs, batch=dynamic_batch, sequence=dynamic_sequence,
        overrides=dynamic_axes, where="export_onnx",
    )  # fmt: skip
    tensor_names = [n for n, a in zip(names, args) if isinstance(a, torch.Tensor)]
    ort = require("onnxruntime", "checking an ONNX export") if check else None
    with eval_mode(model), torch.no_grad():
        expected = model(*args)  # an error here is the model's own: let it through
    n_outputs = sum(isinstance(leaf, torch.Tensor) for _, leaf in flatten(expected))
    output_names = ["output"] if n_outputs == 1 else [f"output_{i}" for i in range(n_outputs)]
    graph = _Graph(model, args, names, tensor_names, output_names, axes, opset)
    data, used = _export(graph, exporter)
    max_diff: float | None = None
    shapes: tuple[tuple[tuple[int, ...], ...], ...] = ()
    if ort is not None:
        cases = _cases(model, args, names, axes, check_inputs)
        max_diff, shapes = _check(ort, data, model, cases, names, rtol=rtol, atol=atol, path=path)
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_bytes(target, data)
    log.info("exported %s to %s with the %s exporter", describe_model(model), target, used)
    return OnnxExport(
        target, used, tuple(tensor_names), tuple(output_names), axes, max_diff, shapes
    )


def _cases(
    model: nn.Module,
    args: tuple[Any, ...],
    names: list[str],
    axes: DynamicAxes,
    check_inputs: Sequence[Any] | None,
) -> list[tuple[Any, ...]]:
    """The inputs to run through onnxruntime: the given ones, or the example and a variant."""
    if check_inputs is not None:
        return [as_args(c) for c in check_inputs]
    variant = _variant(args, names, axes, getattr(model, "pad_id", None))
    return [args] if variant is None else [args, variant]


# --- exporting ---------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class _Graph:
    """What either exporter is given: the model, its example, the graph's names and axes."""

    model: nn.Module
    args: tuple[Any, ...]
    names: list[str]  # the forward parameters of ``args``, in order
    tensor_names: list[str]  # the graph's inputs: the names of the tensor arguments
    output_names: list[str]
    axes: DynamicAxes
    opset: int | None


def _export(graph: _Graph, exporter: str) -> tuple[bytes, str]:
    """The ONNX bytes and the name of the exporter that made them (``auto``: the first)."""
    model = graph.model
    order = ("dynamo", "torchscript") if exporter == "auto" else (exporter,)
    reasons = []
    for name in order:
        export = _by_dynamo if name == "dynamo" else _by_torchscript
        try:
            with eval_mode(model), _quiet():
                data = export(graph)
            return data, name
        except ExportError as exc:
            if exporter != "auto":
                raise
            reasons.append(f"{name}: {exc}")
        except Exception as exc:  # exporters raise many types; each is one reason to report
            reasons.append(f"{name}: {_reason(exc)}")
        log.info("the %s ONNX exporter failed on %s: %s", name, describe_model(model), reasons[-1])
    raise ExportError(
        f"export_onnx: could not export {describe_model(model)} to ONNX. "
        + " | ".join(reasons)
        + ". Expected a model torch.export can capture (no Python branch on tensor values, "
        "see https://pytorch.org/docs/stable/export.html)."
    )


def _by_dynamo(graph: _Graph) -> bytes:
    require("onnxscript", "the dynamo-based ONNX exporter")
    require("onnx", "the dynamo-based ONNX exporter")
    program = torch.onnx.export(
        graph.model,
        graph.args,
        dynamo=True,
        dynamic_shapes=to_dynamic_shapes(graph.args, graph.names, graph.axes),
        input_names=graph.tensor_names,
        output_names=graph.output_names,
        opset_version=graph.opset,
        verbose=False,
    )
    if program is None:
        raise ExportError("torch.onnx.export(dynamo=True) returned no program.")
    return _serialize(program.model_proto)


class _Positional(nn.Module):
    """Calls the model with positional arguments only.

    The TorchScript exporter appends the default of every ``forward`` parameter the
    example leaves out and passes them positionally, which breaks parts with keyword-only
    parameters (``need_weights``, ``cache``); behind ``*args`` it appends nothing.
    """

    def __init__(self, inner: nn.Module):
        super().__init__()
        self.inner = inner

    def forward(self, *args: Any) -> Any:
        return self.inner(*args)


def _by_torchscript(graph: _Graph) -> bytes:
    wrapper = _Positional(graph.model).eval()
    buffer = io.BytesIO()
    options: dict[str, Any] = {} if graph.opset is None else {"opset_version": graph.opset}
    torch.onnx.export(
        wrapper,
        graph.args,
        buffer,  # type: ignore[arg-type]  # the TorchScript exporter writes file objects too
        dynamo=False,
        input_names=graph.tensor_names,
        output_names=graph.output_names,
        dynamic_axes={n: dict(a) for n, a in graph.axes.items() if a},
        **options,
    )
    return buffer.getvalue()


def _serialize(proto: Any) -> bytes:
    try:
        return proto.SerializeToString()
    except ValueError as exc:  # protobuf refuses messages over 2 GiB
        raise ExportError(
            f"the ONNX model is too large to serialise in one file ({exc}); models over "
            "2 GiB need ONNX external data, which export_onnx does not write yet."
        ) from exc


@contextlib.contextmanager
def _quiet() -> Iterator[None]:
    """Silence what the exporters say that a user cannot act on.

    The TorchScript exporter warns that it is deprecated (we chose it as the fallback) and
    that traced shape checks became constants (the onnxruntime check at other shapes is
    what tells whether that matters); the dynamo exporter logs that torchvision is absent.
    """
    registration = logging.getLogger("torch.onnx._internal.exporter._registration")
    level = registration.level
    registration.setLevel(logging.ERROR)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", DeprecationWarning)
            warnings.simplefilter("ignore", FutureWarning)
            warnings.simplefilter("ignore", torch.jit.TracerWarning)
            yield
    finally:
        registration.setLevel(level)


def _reason(exc: BaseException) -> str:
    """The first line of an exporter's error and, if given, the line of model code at fault."""
    lines = [line.strip() for line in str(exc).splitlines() if line.strip()]
    first = f"{type(exc).__name__}: {lines[0] if lines else ''}"
    for i, line in enumerate(lines):
        if line.startswith("File ") and "site-packages" not in line and i + 1 < len(lines):
            return f"{first} (at {line[5:]}: {lines[i + 1]})"
    return first


# --- checking ----------------------------------------------------------------------------


def _variant(
    args: tuple[Any, ...], names: list[str], axes: DynamicAxes, pad_id: Any = None
) -> tuple[Any, ...] | None:
    """The example with other sizes on its dynamic axes, and padding (None: no change).

    Batch axes (axis 0) grow by one row; other axes shrink by one position, or grow by one
    when shorter than 3. A dimension name shared by inputs gets one new size for all.
    Growth repeats the last slice, so token ids stay valid ids. For a token model
    (``model.pad_id``, docs/interfaces.md) the last position of the first row of every
    ``[B, T]`` id input becomes padding: a model that skips its mask when nothing is
    padded must not be exported with that shortcut frozen in.
    """
    sizes: dict[str, int] = {}
    for name, arg in zip(names, args):
        for axis, dim in axes.get(name, {}).items():
            if dim not in sizes:
                size = arg.shape[axis]
                sizes[dim] = size + 1 if axis == 0 or size < 3 else size - 1
    pad = isinstance(pad_id, int) and not isinstance(pad_id, bool)
    out, changed = [], bool(sizes)
    for name, arg in zip(names, args):
        for axis, dim in axes.get(name, {}).items():
            size, want = arg.shape[axis], sizes[dim]
            if want < size:
                arg = arg.narrow(axis, 0, want)
            elif want > size:
                last = arg.narrow(axis, size - 1, 1)
                arg = torch.cat([arg, *[last] * (want - size)], dim=axis)
        if pad and _is_token_ids(arg) and arg.shape[1] >= 2 and bool(arg[0, -1] != pad_id):
            arg = arg.clone()
            arg[0, -1] = pad_id
            changed = True
        out.append(arg)
    return tuple(out) if changed else None


def _is_token_ids(arg: Any) -> bool:
    return (
        isinstance(arg, torch.Tensor)
        and arg.dim() == 2
        and not (arg.is_floating_point() or arg.is_complex() or arg.dtype == torch.bool)
    )


def _to_numpy(name: str, t: torch.Tensor) -> Any:
    if t.dtype == torch.bfloat16:
        raise ExportError(
            f"input `{name}` is bfloat16, which numpy (and so the onnxruntime check) cannot "
            "hold. Expected float32/float16 example inputs, or pass check=False."
        )
    return t.detach().cpu().numpy()


def _check(
    ort: Any,
    data: bytes,
    model: nn.Module,
    cases: list[tuple[Any, ...]],
    names: list[str],
    *,
    rtol: float | None,
    atol: float | None,
    path: str | os.PathLike[str],
) -> tuple[float, tuple[tuple[tuple[int, ...], ...], ...]]:
    """Run the exported bytes with onnxruntime on each case; the largest difference."""
    where = f"the ONNX export of {describe_model(model)} (for `{path}`)"
    try:
        session = ort.InferenceSession(data, providers=["CPUExecutionProvider"])
    except Exception as exc:  # onnxruntime raises its own exception types
        raise ExportError(f"onnxruntime could not load {where}: {_reason(exc)}") from exc
    graph_inputs = [i.name for i in session.get_inputs()]
    worst, shapes = 0.0, []
    for case in cases:
        tensors = {n: a for n, a in zip(names, case) if isinstance(a, torch.Tensor)}
        unknown = [n for n in graph_inputs if n not in tensors]
        if unknown:
            raise ExportError(
                f"{where} has inputs {graph_inputs}; expected names among the model's tensor "
                f"arguments {list(tensors)}. Unknown: {unknown}"
            )
        shape = tuple(tuple(t.shape) for t in tensors.values())
        feeds = {n: _to_numpy(n, tensors[n]) for n in graph_inputs}
        with eval_mode(model), torch.no_grad():
            expected = model(*case)
        try:
            outputs = session.run(None, feeds)
        except Exception as exc:
            raise ExportError(
                f"onnxruntime could not run {where} at input shapes {shape}: {_reason(exc)}. "
                "The export may have fixed a size the example had; check dynamic_axes."
            ) from exc
        want = [leaf for _, leaf in flatten(expected) if isinstance(leaf, torch.Tensor)]
        got = [torch.from_numpy(o) for o in outputs]
        result = compare(want, got, rtol=rtol, atol=atol, what="onnxruntime")
        if not result.ok:
            raise EquivalenceError(
                f"{where} disagrees with eager at input shapes {shape}: {result.problem}. "
                f"Largest difference {result.max_diff:.3g}, in {result.where}. Nothing was "
                "written. A branch on a size or value that tracing froze gives this (for a "
                "token model: export with padding in the example, so the masked path is "
                "traced); try exporter='dynamo', or pass looser rtol/atol if this is rounding.",
                max_diff=result.max_diff,
                where=result.where,
            )
        worst = max(worst, result.max_diff)
        shapes.append(shape)
    return worst, tuple(shapes)
