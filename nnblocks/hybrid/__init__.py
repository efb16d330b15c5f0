"""Eager <-> compiled with an equivalence check, and export (torch.export, ONNX).

Debug eagerly, run compiled when it pays, export to deploy:

- ``hybridize(model, batch, mode="auto")`` times eager against ``torch.compile`` on the
  real batch, checks that both give the same outputs and keeps the faster.
- ``export_onnx(model, batch, "model.onnx")`` exports with dynamic batch and sequence
  sizes, runs the file with onnxruntime and compares it with eager before writing it.
- ``export_program(model, batch)`` captures a ``torch.export.ExportedProgram``.

ONNX needs the optional ``export`` extra: ``pip install nnblocks[export]``.
"""

from nnblocks.hybrid._compare import Comparison, compare, tolerance
from nnblocks.hybrid._compile import HybridResult, choose, hybridize
from nnblocks.hybrid._errors import EquivalenceError, ExportError
from nnblocks.hybrid._onnx import OnnxExport, export_onnx
from nnblocks.hybrid._program import export_program

__all__ = [
    "hybridize",
    "HybridResult",
    "choose",
    "export_onnx",
    "OnnxExport",
    "export_program",
    "compare",
    "Comparison",
    "tolerance",
    "EquivalenceError",
    "ExportError",
]
