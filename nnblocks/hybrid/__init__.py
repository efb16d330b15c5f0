"""Eager <-> compiled with an equivalence check, and export (torch.export, ONNX).

Debug eagerly, run compiled when it pays, export to deploy:

- ``hybridize(model, batch, mode="auto")`` times eager against ``torch.compile`` on the
  real batch, checks that both give the same outputs and keeps the faster.
- ``export_onnx(model, batch, "model.onnx")`` exports with dynamic batch and sequence
  sizes, runs the file with onnxruntime and compares it with eager before writing it.
- ``export_program(model, batch)`` captures a ``torch.export.ExportedProgram``.
- ``export_decoder_step(seq2seq, src, "step.onnx")`` exports one cached decoding step
  with its caches as explicit inputs and outputs; ``onnx_greedy`` decodes with it.

ONNX needs the optional ``export`` extra: ``pip install nnblocks[export]``.
"""

from nnblocks.hybrid._compare import Comparison, compare, tolerance
from nnblocks.hybrid._compile import HybridResult, choose, hybridize
from nnblocks.hybrid._errors import EquivalenceError, ExportError
from nnblocks.hybrid._onnx import OnnxExport, export_onnx
from nnblocks.hybrid._program import export_program
from nnblocks.hybrid._step import DecoderStep, StepExport, export_decoder_step, onnx_greedy

__all__ = [
    "hybridize",
    "HybridResult",
    "choose",
    "export_onnx",
    "OnnxExport",
    "export_program",
    "export_decoder_step",
    "DecoderStep",
    "StepExport",
    "onnx_greedy",
    "compare",
    "Comparison",
    "tolerance",
    "EquivalenceError",
    "ExportError",
]
