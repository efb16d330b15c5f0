"""Models over feature sequences, the shapes of ``torch.nn.TransformerEncoder`` and
``torch.nn.Transformer``: `encoder_stack` and `encoder_decoder` (kind `model`).

The token models (``transformer_lm``, ``transformer_seq2seq``) own their embeddings and
heads; torch's modules take ``[B, T, D]`` features and return features, so what
``nnblocks.interop.from_torch`` builds for them is a stack of `block` parts with nothing
around it but an optional final norm. Every layer is a slot (``layers.N``,
``encoder.layers.N``, ``decoder.layers.N``), swappable like any other.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from nnblocks.models._checks import positive_int
from nnblocks.models._stack import TransformerStack, build_blocks, build_final_norm
from nnblocks.registry import register

__all__ = ["EncoderDecoder", "EncoderStack"]


@register("model", "encoder_stack")
class EncoderStack(nn.Module):
    """A stack of `block` parts over features, ``[B, T, D] -> [B, T, D]``.

    The shape of ``torch.nn.TransformerEncoder``; ``from_torch`` converts one into this.

    Args:
        dim: model width D.
        heads: attention heads, offered to every block.
        layers: number of blocks (slots ``layers.0`` ...).
        block: the block spec of every layer.
        final_norm: a norm spec after the last block (slot ``final_norm``), or None.

    Call arguments:
        x: ``[B, T, D]``.
        mask: bool, True = may attend (the attention contract: ``[B, T]`` per key,
            ``[B, T, T]`` or broadcastable to ``[B, H, T, T]``), or None.
        causal: each position attends only to itself and earlier ones.

    Returns:
        ``[B, T, D]``.

    Example:
        >>> import torch, nnblocks
        >>> enc = nnblocks.build({"name": "encoder_stack", "dim": 16, "heads": 2, "layers": 2})
        >>> enc(torch.randn(3, 5, 16)).shape
        torch.Size([3, 5, 16])
    """

    def __init__(
        self,
        dim: int,
        heads: int,
        layers: int = 6,
        block: Any = "transformer",
        final_norm: Any = None,
    ):
        super().__init__()
        n_layers = positive_int("layers", layers)
        self.layers = nn.ModuleList(
            build_blocks("layers", n_layers, dim=dim, heads=heads, options={"block": block})
        )
        self.final_norm = build_final_norm(final_norm, at="final_norm", dim=dim)

    def forward(
        self, x: torch.Tensor, mask: torch.Tensor | None = None, causal: bool = False
    ) -> torch.Tensor:
        for layer in self.layers:
            x = layer(x, mask=mask, causal=causal)  # [B, T, D]
        return x if self.final_norm is None else self.final_norm(x)


@register("model", "encoder_decoder")
class EncoderDecoder(nn.Module):
    """An encoder stack and a decoder stack with cross-attention, over features.

    The shape of ``torch.nn.Transformer``: ``(src [B, S, D], tgt [B, T, D]) -> [B, T, D]``.

    Args:
        dim: model width D.
        heads: attention heads, offered to every block.
        encoder_layers, decoder_layers: numbers of blocks (slots ``encoder.layers.N``,
            ``decoder.layers.N``).
        encoder_block: block spec of every encoder layer.
        decoder_block: block spec of every decoder layer (it needs a ``cross_attention``).
        encoder_norm, decoder_norm: norm specs after each stack (slots
            ``encoder.final_norm``, ``decoder.final_norm``), or None.

    Call arguments:
        src: ``[B, S, D]``; tgt: ``[B, T, D]``.
        src_mask: encoder self-attention mask; tgt_mask: decoder self-attention mask;
            memory_mask: cross-attention mask (``[B, S]`` per source position, or 3-D/4-D).
            All bool, True = may attend.
        causal: the decoder's self-attention is causal.

    Returns:
        ``[B, T, D]``.
    """

    def __init__(
        self,
        dim: int,
        heads: int,
        encoder_layers: int = 6,
        decoder_layers: int = 6,
        encoder_block: Any = "transformer",
        decoder_block: Any = None,
        encoder_norm: Any = "layer",
        decoder_norm: Any = "layer",
    ):
        super().__init__()
        if decoder_block is None:
            decoder_block = {"name": "transformer", "cross_attention": "mha"}
        self.encoder = self._stack(
            "encoder", encoder_layers, encoder_block, encoder_norm, dim, heads
        )
        self.decoder = self._stack(
            "decoder", decoder_layers, decoder_block, decoder_norm, dim, heads
        )

    @staticmethod
    def _stack(
        name: str, n_layers: Any, block: Any, norm: Any, dim: int, heads: int
    ) -> TransformerStack:
        """Slots ``name.layers.N`` (``n_layers`` blocks) and ``name.final_norm``."""
        n = positive_int(f"{name}_layers", n_layers)
        layers = build_blocks(f"{name}.layers", n, dim=dim, heads=heads, options={"block": block})
        return TransformerStack(layers, build_final_norm(norm, at=f"{name}.final_norm", dim=dim))

    def encode(self, src: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
        """``[B, S, D] -> [B, S, D]``: the encoder stack and its final norm."""
        return self.encoder(src, mask=mask)[0]

    def forward(
        self,
        src: torch.Tensor,
        tgt: torch.Tensor,
        src_mask: torch.Tensor | None = None,
        tgt_mask: torch.Tensor | None = None,
        memory_mask: torch.Tensor | None = None,
        causal: bool = False,
    ) -> torch.Tensor:
        memory = self.encode(src, src_mask)  # [B, S, D]
        x, _ = self.decoder(
            tgt, mask=tgt_mask, causal=causal, context=memory, context_mask=memory_mask
        )
        return x  # [B, T, D]
