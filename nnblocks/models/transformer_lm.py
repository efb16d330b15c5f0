"""Model `transformer_lm`: a decoder-only Transformer language model (GPT, Radford et al.
2018/2019), assembled from slots. See ``nnblocks/models/transformer.py`` for the family."""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from nnblocks.errors import ShapeError
from nnblocks.models._checks import positive_int, special_ids
from nnblocks.models._stack import (
    ENCODER_OPTIONS,
    Stack,
    check_inputs,
    check_tokens,
    embed,
    input_masks,
    key_mask,
    new_positions,
    padded_positions,
    plan_stacks,
    position_limit,
    tie_weight,
    tied_groups,
)
from nnblocks.registry import build, register

__all__ = ["TransformerLM"]


@register("model", "transformer_lm")
class TransformerLM(nn.Module):
    """Decoder-only Transformer: token embedding, causal blocks, output head.

    Slots: ``embedding``, ``position`` (absolute schemes only; a relative one goes to every
    self-attention's ``position=`` option), ``dropout``, ``decoder.layers.N`` (blocks, with
    ``decoder.layers.N.self_attention``, ``.feedforward``, ``.self_attention_norm``,
    ``.feedforward_norm``), ``decoder.final_norm``, ``head``.

    Args:
        vocab_size: number of token ids V.
        dim: model width D.
        heads: attention heads H, offered to every attention.
        layers: number of blocks.
        max_len: longest sequence an absolute position part must cover.
        embedding: embedding spec (``"token"``).
        position: position spec; absolute ones (``learned``, ``sinusoidal``, ``none``) are
            added to the embeddings, relative ones (``rotary``, ``alibi``) go to attention.
        block: the block part of every layer (``"transformer"``).
        self_attention, feedforward, norm: specs for every layer's slots.
        norm_placement: ``"pre"`` (GPT-2) or ``"post"`` (Vaswani et al. 2017).
        dropout: rate of the embedding dropout and of each block's residual dropout.
        drop_path: stochastic depth rate of the last layer; layer ``i`` of ``L`` gets
            ``drop_path * (i + 1) / L`` (Huang et al. 2016).
        final_norm: norm after the last layer: ``"auto"`` (one after pre-norm stacks),
            ``True``, ``False``/None or a norm spec.
        head: head spec (``"linear"``, offered ``bias=False``) giving ``[.., V]`` logits.
        tie_embeddings: share the embedding's weight with the head (Press & Wolf 2017);
            listed in ``tied_parameters``.
        decoder: options for every layer of the decoder stack, e.g. ``{"self_attention": "gqa"}``
            (so ``model.decoder.self_attention=gqa`` swaps that stack's attention); applied
            before ``layer_overrides``.
        layer_overrides: per-layer options, ``{"0-3": {"self_attention": "local"}}`` (see
            ``nnblocks/models/transformer.py``).
        pad_id: padding id (keys with it are masked out) or None when nothing is padded.
        bos_id, eos_id: begin and end of sequence ids, for decoding.

    Call arguments:
        tokens: ``[B, T]`` integer token ids.
        attention_mask: optional ``[B, T]`` bool or 0/1, True/1 at real tokens (the
            Hugging Face convention); without it the mask comes from ``pad_id``. With it,
            absolute positions count from each row's first real token, so a left-padded
            row gives the logits it gives alone.
        position_ids: optional ``[B, T]`` positions of the tokens (absolute position
            parts take them as they are; relative ones accept per-row shifts of 0..T-1).

    Returns:
        Next-token logits ``[B, T, V]``.

    Raises:
        SpecError: a bad option or slot spec, naming its spec path; ``position_ids`` a
            relative position part cannot follow.
        ShapeError: ``tokens`` is not an integer tensor ``[B, T]``, or an optional input
            does not fit it.

    Example:
        >>> lm = nnblocks.build({"name": "transformer_lm", "vocab_size": 100, "dim": 32,
        ...                      "heads": 2, "layers": 2})
        >>> lm(torch.randint(3, 100, (2, 7))).shape
        torch.Size([2, 7, 100])
        >>> nnblocks.generate.greedy(lm.eval(), batch_size=2, max_new_tokens=5).shape[0]
        2
    """

    def __init__(
        self,
        vocab_size: int,
        dim: int = 256,
        heads: int = 4,
        layers: int = 4,
        max_len: int = 1024,
        embedding: Any = "token",
        position: Any = "learned",
        block: Any = "transformer",
        self_attention: Any = "mha",
        feedforward: Any = "mlp",
        norm: Any = "layer",
        norm_placement: str = "pre",
        dropout: float = 0.1,
        drop_path: float = 0.0,
        final_norm: Any = "auto",
        head: Any = "linear",
        tie_embeddings: bool = True,
        decoder: dict[str, Any] | None = None,
        layer_overrides: dict[str, Any] | None = None,
        pad_id: int | None = 0,
        bos_id: int = 1,
        eos_id: int = 2,
    ):
        super().__init__()
        self.vocab_size = positive_int("vocab_size", vocab_size)
        self.pad_id, self.bos_id, self.eos_id = special_ids(
            pad_id=pad_id, bos_id=bos_id, eos_id=eos_id
        )
        plan = plan_stacks(
            dim=dim, heads=heads, max_len=max_len, block=block, self_attention=self_attention,
            feedforward=feedforward, norm=norm, norm_placement=norm_placement, dropout=dropout,
            drop_path=drop_path, final_norm=final_norm, position=position,
            layer_overrides=layer_overrides,
            stacks={"decoder": Stack("layers", layers, ENCODER_OPTIONS, decoder)},
        )  # fmt: skip
        self.dim, self.max_len = plan.dim, plan.max_len
        self.embedding = plan.embedding(
            embedding, at="embedding", vocab_size=vocab_size, pad_id=pad_id
        )
        self.position = plan.absolute_position(at="position")
        self.dropout = plan.dropout()
        self.decoder = plan.build("decoder")
        self.head = build(head, "head", at="head", dim=dim, out_features=vocab_size, bias=False)
        shared = [tie_weight(self.embedding, self.head, slot="head")] if tie_embeddings else []
        self.tied_parameters = tied_groups(self, shared)

    def _hidden(
        self,
        tokens: torch.Tensor,
        mask: torch.Tensor | None,
        positions: torch.Tensor | None = None,
    ) -> torch.Tensor:
        x = embed(tokens, self.embedding, self.position, self.dropout, positions=positions)
        h, _ = self.decoder(x, mask=mask, causal=True)  # [B, T, D]
        return h

    def hidden_states(
        self,
        tokens: torch.Tensor,
        attention_mask: torch.Tensor | None = None,
        position_ids: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """The last layer's output ``[B, T, D]`` (after ``decoder.final_norm``), before the head.

        Takes the call arguments of ``forward``; what Hugging Face's ``GPT2Model`` returns
        as ``last_hidden_state``.
        """
        check_tokens(tokens, model="transformer_lm")
        check_inputs(tokens, attention_mask, position_ids, model="transformer_lm")
        mask, positions = input_masks(
            tokens, self.pad_id, attention_mask, position_ids,
            absolute=self.position is not None, model="transformer_lm",
        )  # fmt: skip
        return self._hidden(tokens, mask, positions)  # [B, T, D]

    def forward(
        self,
        tokens: torch.Tensor,
        attention_mask: torch.Tensor | None = None,
        position_ids: torch.Tensor | None = None,
    ) -> torch.Tensor:
        return self.head(self.hidden_states(tokens, attention_mask, position_ids))  # [B, T, V]

    # Decoding protocol (docs/interfaces.md), used by nnblocks.generate.

    @property
    def max_decode_len(self) -> int | None:
        """The longest sequence a decoding prefix may reach: the absolute position part's
        ``max_len``; None (no limit) with relative or no positions."""
        return position_limit(self.position)

    def begin(self, src: torch.Tensor | None = None) -> dict[str, Any]:
        """Start decoding: an empty cache per layer. A language model takes no source.

        Raises:
            ShapeError: ``src`` is given (a prompt goes in the prefix instead).
        """
        if src is not None:
            raise ShapeError(
                "model `transformer_lm` has no source to encode: begin(src) expected "
                "src=None; pass a prompt as the decoding prefix instead. Received: a "
                f"{type(src).__name__}"
            )
        return {"caches": [{} for _ in self.decoder.layers], "length": 0}

    def step(
        self, prefix: torch.Tensor, state: dict[str, Any], use_cache: bool = True
    ) -> tuple[torch.Tensor, dict[str, Any]]:
        """Next-token logits after ``prefix``.

        Args:
            prefix: ``[B, t]`` every token so far (BOS first).
            state: from ``begin`` or the previous ``step``.
            use_cache: run only the positions the caches do not cover yet. Falls back to
                recomputing when some attention part has no cache.

        Returns:
            ``(logits [B, V], state)``.

        Raises:
            ShapeError: ``prefix`` is not ``[B, t]`` integer ids, or holds no new position.
        """
        check_tokens(prefix, model="transformer_lm", arg="prefix")
        mask = key_mask(prefix, self.pad_id)  # [B, t] or None
        # A left-padded prompt counts positions from its first real token (as transformers'
        # generate does); without padding the positions are 0..t-1 as always.
        positions = None if mask is None or self.position is None else padded_positions(mask)
        if not (use_cache and self.decoder.cacheable):
            return self.head(self._hidden(prefix, mask, positions)[:, -1]), state  # [B, V]
        seen = new_positions(prefix, state, model="transformer_lm")
        x = embed(
            prefix[:, seen:], self.embedding, self.position, self.dropout, offset=seen,
            positions=None if positions is None else positions[:, seen:],
        )  # fmt: skip
        h, caches = self.decoder(x, mask=mask, causal=True, caches=state["caches"])
        # h: [B, t - seen, D]
        return self.head(h[:, -1]), {**state, "caches": caches, "length": prefix.shape[1]}
