"""``export_decoder_step``: one cached decoding step of an encoder-decoder, as ONNX.

A deployed decoder must not recompute its prefix at every token. The exported graph takes
the self-attention caches as explicit inputs and returns the grown caches as outputs, so a
runtime (onnxruntime here) decodes token by token exactly as ``model.step`` does:

    inputs:  token [B, 1], keys_mask [B, T], memory [B, S, D], memory_mask [B, S],
             past_key_0, past_value_0, ... [B, Hkv, T - 1, Dh] (one pair per layer)
    outputs: logits [B, V], present_key_0, present_value_0, ... [B, Hkv, T, Dh]

``T`` counts the keys after this step (cached and new), so ``keys_mask`` is
``prefix != pad_id`` of the whole prefix, as the model computes it. The encoder runs once
in eager PyTorch (or its own export); the cross-attention projects ``memory`` at each step.
"""

from __future__ import annotations

import dataclasses
import os
from pathlib import Path
from typing import Any

import torch
from torch import nn

from nnblocks.errors import SpecError
from nnblocks.generate import ended, stop_and_fill
from nnblocks.hybrid._errors import ExportError
from nnblocks.hybrid._optional import require
from nnblocks.io.atomic import atomic_write_bytes

__all__ = ["DecoderStep", "StepExport", "export_decoder_step", "onnx_greedy"]


class DecoderStep(nn.Module):
    """The decoder of a ``transformer_seq2seq`` as one step with explicit caches.

    Args:
        model: a ``transformer_seq2seq`` whose self-attention parts keep ``k``/``v``
            caches (the built-in softmax attentions without a window).

    Call arguments:
        token ``[B, 1]`` long, keys_mask ``[B, T]`` bool, memory ``[B, S, D]``,
        memory_mask ``[B, S]`` bool, then ``past_key_i, past_value_i`` per layer.

    Returns:
        ``(logits [B, V], present_key_0, present_value_0, ...)``.
    """

    def __init__(self, model: Any):
        super().__init__()
        self.model = model
        self.layers = len(model.decoder.layers)

    def forward(
        self,
        token: torch.Tensor,
        keys_mask: torch.Tensor,
        memory: torch.Tensor,
        memory_mask: torch.Tensor,
        *past: torch.Tensor,
    ) -> tuple[torch.Tensor, ...]:
        m = self.model
        offset = past[0].shape[2]  # positions cached before this step
        caches = [
            {"self": {"k": past[2 * i], "v": past[2 * i + 1], "offset": offset}}
            for i in range(self.layers)
        ]
        x = m.tgt_embedding(token)  # [B, 1, D]
        if m.tgt_position is not None:
            x = m.tgt_position(x, offset=offset)
        h, caches = m.decoder(
            x,
            mask=keys_mask,
            causal=True,
            context=memory,
            context_mask=memory_mask,
            caches=caches,
        )
        present = [t for c in caches for t in (c["self"]["k"], c["self"]["v"])]
        return (m.head(h[:, -1]), *present)  # [B, V], [B, Hkv, T, Dh] ...


@dataclasses.dataclass(frozen=True)
class StepExport:
    """What ``export_decoder_step`` wrote: the file and the graph's input and output names."""

    path: Path
    input_names: tuple[str, ...]
    output_names: tuple[str, ...]


def _example(model: Any, src: torch.Tensor, past: int) -> tuple[torch.Tensor, ...]:
    """Inputs of a step after ``past`` cached positions, from eager decoding of ``src``."""
    with torch.no_grad():
        state = model.begin(src)
        prefix = torch.full((src.shape[0], 1), int(model.bos_id), device=src.device)
        for _ in range(past):
            logits, state = model.step(prefix, state)
            prefix = torch.cat([prefix, logits.argmax(-1, keepdim=True)], dim=1)
    memory = state["memory"]
    memory_mask = state.get("memory_mask")
    if memory_mask is None:
        memory_mask = torch.ones(memory.shape[:2], dtype=torch.bool, device=memory.device)
    caches = [t[:, :, :past] for c in state["caches"] for t in (c["self"]["k"], c["self"]["v"])]
    keys_mask = prefix != (-1 if model.pad_id is None else model.pad_id)
    return (prefix[:, -1:], keys_mask, memory, memory_mask, *caches)


def export_decoder_step(
    model: Any,
    src: torch.Tensor,
    path: str | os.PathLike[str],
    *,
    opset: int | None = None,
) -> StepExport:
    """Export one cached decoding step of a ``transformer_seq2seq`` to ONNX.

    Batch, source length and cache length are dynamic. The graph is traced by the dynamo
    exporter from a step with three cached positions.

    Args:
        model: a ``transformer_seq2seq`` (in eval mode while exporting).
        src: ``[B, S]`` example source ids (``B >= 2``, ``S >= 2``).
        path: the ``.onnx`` file to write.
        opset: the ONNX opset; None: the exporter's default.

    Returns:
        A ``StepExport`` naming the file, inputs and outputs.

    Raises:
        SpecError: the model has no decoder stack with ``k``/``v`` self-attention caches.
        ExportError: the exporter failed, or the export packages are missing.
    """
    decoder = getattr(model, "decoder", None)
    if not hasattr(model, "tgt_embedding") or decoder is None or not decoder.cacheable:
        raise SpecError(
            "export_decoder_step expected a `transformer_seq2seq` whose attention parts keep "
            f"decoding caches. Received: {type(model).__name__}",
            path="export_decoder_step",
        )
    require("onnxscript", "exporting with the dynamo ONNX exporter")
    was_training = model.training
    model.eval()
    try:
        args = _example(model, src, past=3)
        if not all(t.dim() == 4 for t in args[4:]):
            raise SpecError(
                "export_decoder_step expected self-attention caches with keys `k` and `v` "
                "[B, Hkv, T, Dh] in every decoder layer (softmax attention without a window).",
                path="export_decoder_step",
            )
        step = DecoderStep(model).eval()
        names, outputs, shapes = _signature(model, step.layers)
        try:
            with torch.no_grad():
                program = torch.onnx.export(
                    step,
                    args,
                    dynamo=True,
                    input_names=names,
                    output_names=outputs,
                    dynamic_shapes=shapes,
                    opset_version=opset,
                    verbose=False,
                )
        except Exception as exc:
            raise ExportError(
                f"the decoder step of {type(model).__name__} could not be exported: "
                f"{type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}"
            ) from exc
        target = Path(path)
        target.parent.mkdir(parents=True, exist_ok=True)
        assert program is not None  # dynamo=True always returns the program
        atomic_write_bytes(target, program.model_proto.SerializeToString())
    finally:
        model.train(was_training)
    return StepExport(target, tuple(names), tuple(outputs))


def _signature(model: Any, layers: int) -> tuple[list[str], list[str], tuple[Any, ...]]:
    """Input names, output names and the dynamic shapes of the step's inputs."""
    names = ["token", "keys_mask", "memory", "memory_mask"] + [
        f"past_{kind}_{i}" for i in range(layers) for kind in ("key", "value")
    ]
    outputs = ["logits"] + [
        f"present_{kind}_{i}" for i in range(layers) for kind in ("key", "value")
    ]
    batch, src_len = torch.export.Dim("batch"), torch.export.Dim("src_len")
    longest = getattr(model.tgt_position, "max_len", None)  # a position table's end
    past_len = torch.export.Dim(
        "past", min=0, max=longest - 1 if isinstance(longest, int) else None
    )
    keys = past_len + 1  # keys_mask covers the cached keys and the new one
    # The varargs `*past` are one nested entry of the structure.
    shapes = (
        {0: batch},
        {0: batch, 1: keys},
        {0: batch, 1: src_len},
        {0: batch, 1: src_len},
        tuple({0: batch, 2: past_len} for _ in range(2 * layers)),
    )
    return names, outputs, shapes


def onnx_greedy(session: Any, model: Any, src: torch.Tensor, max_new_tokens: int) -> torch.Tensor:
    """Greedy decoding with an exported step in onnxruntime (the encoder runs in eager).

    Follows ``nnblocks.generate.greedy``: BOS first, EOS kept, ``pad_id`` after it.

    Args:
        session: an ``onnxruntime.InferenceSession`` of ``export_decoder_step``'s file.
        model: the ``transformer_seq2seq`` that was exported (for the encoder and ids).
        src: ``[B, S]`` source ids.
        max_new_tokens: most tokens to add.

    Returns:
        ``[B, 1 + n]`` token ids.
    """
    with torch.no_grad():
        state = model.eval().begin(src)
    memory = state["memory"].numpy()
    memory_mask = state.get("memory_mask")
    if memory_mask is None:
        memory_mask = torch.ones(memory.shape[:2], dtype=torch.bool)
    b = src.shape[0]
    first = model.decoder.layers[0].self_attention
    past_shape = (b, first.kv_heads, 0, first.head_dim)
    past = {
        name.name: torch.zeros(past_shape).numpy()
        for name in session.get_inputs()
        if name.name.startswith("past_")
    }
    eos, pad = stop_and_fill(model, torch.device("cpu"))
    tokens = torch.full((b, 1), int(model.bos_id), dtype=torch.long)
    done = torch.zeros(b, dtype=torch.bool)
    for _ in range(max_new_tokens):
        feeds = {
            "token": tokens[:, -1:].numpy(),
            "keys_mask": (tokens != (-1 if model.pad_id is None else model.pad_id)).numpy(),
            "memory": memory,
            "memory_mask": memory_mask.numpy(),
            **past,
        }
        logits, *present = session.run(None, feeds)
        past = {
            name.replace("present_", "past_"): value
            for name, value in zip([o.name for o in session.get_outputs()][1:], present)
        }
        nxt = torch.from_numpy(logits).float().argmax(-1)
        nxt = torch.where(done, torch.full_like(nxt, pad), nxt)
        tokens = torch.cat([tokens, nxt[:, None]], dim=1)
        done |= ended(nxt, eos)
        if bool(done.all()):
            break
    return tokens
