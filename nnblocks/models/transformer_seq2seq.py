"""Model `transformer_seq2seq`: the encoder-decoder Transformer (Vaswani et al. 2017),
assembled from slots. See ``nnblocks/models/transformer.py`` for the family."""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from nnblocks.errors import ShapeError, SpecError
from nnblocks.models._checks import positive_int, special_ids
from nnblocks.models._stack import (
    DECODER_OPTIONS,
    ENCODER_OPTIONS,
    Stack,
    StackPlan,
    check_inputs,
    check_tokens,
    embed,
    input_masks,
    new_positions,
    plan_stacks,
    position_limit,
    tie_weight,
    tied_groups,
)
from nnblocks.registry import build, register
from nnblocks.spec import current_path, join_path

__all__ = ["TransformerSeq2Seq"]


def _vocab_sizes(vocab_size: Any, src_vocab_size: Any, tgt_vocab_size: Any) -> tuple[int, int]:
    src = src_vocab_size if src_vocab_size is not None else vocab_size
    tgt = tgt_vocab_size if tgt_vocab_size is not None else vocab_size
    if src is None or tgt is None:
        raise SpecError(
            "missing the vocabulary size: give `vocab_size` (one vocabulary for both sides) or "
            f"`src_vocab_size` and `tgt_vocab_size`. Received: vocab_size={vocab_size!r}, "
            f"src_vocab_size={src_vocab_size!r}, tgt_vocab_size={tgt_vocab_size!r}",
            path=current_path() or None,
        )
    return positive_int("src_vocab_size", src), positive_int("tgt_vocab_size", tgt)


@register("model", "transformer_seq2seq")
class TransformerSeq2Seq(nn.Module):
    """Encoder-decoder Transformer for sequence-to-sequence tasks (translation).

    Slots: ``src_embedding``, ``tgt_embedding`` (one module when ``share_embeddings``),
    ``src_position``, ``tgt_position`` (absolute schemes only; a relative one goes to every
    self-attention's ``position=`` option), ``dropout``, ``encoder.layers.N`` (with
    ``.self_attention``, ``.feedforward`` and their norms), ``encoder.final_norm``,
    ``decoder.layers.N`` (with ``.self_attention``, ``.cross_attention``, ``.feedforward``
    and their norms), ``decoder.final_norm``, ``head``.

    Args:
        vocab_size: one vocabulary size for both sides (the default of the two below).
        src_vocab_size, tgt_vocab_size: source and target vocabulary sizes.
        dim: model width D.
        heads: attention heads H, offered to every attention.
        encoder_layers, decoder_layers: number of blocks in each stack.
        max_len: longest sequence an absolute position part must cover.
        embedding: embedding spec for both sides (``{"name": "token", "scale": true}``
            multiplies by sqrt(D) as in Vaswani et al. 2017).
        position: position spec for both sides (``"sinusoidal"``).
        block: the block part of every layer (``"transformer"``).
        self_attention, cross_attention, feedforward, norm: specs for every layer's slots
            (``cross_attention`` only in the decoder).
        norm_placement: ``"pre"`` or ``"post"`` (the original Transformer).
        dropout: rate of the embedding dropout and of each block's residual dropout.
        drop_path: stochastic depth rate of each stack's last layer (linear rule).
        final_norm: ``"auto"`` (after pre-norm stacks), ``True``, ``False``/None or a spec.
        head: head spec (``"linear"``, offered ``bias=False``) giving ``[.., V_tgt]``.
        share_embeddings: one embedding module for source and target (needs equal vocab
            sizes; Press & Wolf 2017 for a shared subword vocabulary).
        tie_embeddings: share the target embedding's weight with the head.
        encoder: options for every layer of the encoder stack, e.g. ``{"self_attention": "gqa"}``
            (so ``model.encoder.self_attention=gqa`` swaps that stack's attention); applied
            before ``layer_overrides``.
        decoder: options for every layer of the decoder stack, e.g. ``{"self_attention": "gqa"}``
            (so ``model.decoder.self_attention=gqa`` swaps that stack's attention); applied
            before ``layer_overrides``.
        layer_overrides: per-layer options keyed by stack, e.g.
            ``{"encoder.0-1": {"self_attention": "local"}, "decoder.*": {...}}``.
        pad_id, bos_id, eos_id: special token ids (source and target use the same).

    Call arguments:
        src: ``[B, S]`` source token ids.
        tgt_in: ``[B, T]`` target ids shifted right (BOS first), for teacher forcing.
        attention_mask: optional ``[B, S]`` bool or 0/1, True/1 at real source tokens (the
            Hugging Face name); without it the mask comes from ``pad_id``.
        decoder_attention_mask: optional ``[B, T]``, the same for ``tgt_in``.

    Returns:
        Logits ``[B, T, V_tgt]``.

    Raises:
        SpecError: a bad option or slot spec, naming its spec path.
        ShapeError: ``src`` or ``tgt_in`` is not an integer tensor ``[B, T]``, or their
            batch sizes differ.

    Example:
        >>> model = nnblocks.build({"name": "transformer_seq2seq", "vocab_size": 50,
        ...                         "dim": 32, "heads": 2})
        >>> model(torch.randint(3, 50, (2, 9)), torch.randint(3, 50, (2, 7))).shape
        torch.Size([2, 7, 50])
    """

    def __init__(
        self,
        vocab_size: int | None = None,
        src_vocab_size: int | None = None,
        tgt_vocab_size: int | None = None,
        dim: int = 256,
        heads: int = 4,
        encoder_layers: int = 3,
        decoder_layers: int = 3,
        max_len: int = 512,
        embedding: Any = "token",
        position: Any = "sinusoidal",
        block: Any = "transformer",
        self_attention: Any = "mha",
        cross_attention: Any = "mha",
        feedforward: Any = "mlp",
        norm: Any = "layer",
        norm_placement: str = "pre",
        dropout: float = 0.1,
        drop_path: float = 0.0,
        final_norm: Any = "auto",
        head: Any = "linear",
        share_embeddings: bool = False,
        tie_embeddings: bool = True,
        encoder: dict[str, Any] | None = None,
        decoder: dict[str, Any] | None = None,
        layer_overrides: dict[str, Any] | None = None,
        pad_id: int | None = 0,
        bos_id: int = 1,
        eos_id: int = 2,
    ):
        super().__init__()
        src_vocab, tgt_vocab = _vocab_sizes(vocab_size, src_vocab_size, tgt_vocab_size)
        if share_embeddings and src_vocab != tgt_vocab:
            raise SpecError(
                "share_embeddings needs one vocabulary: expected src_vocab_size == "
                f"tgt_vocab_size. Received: {src_vocab} and {tgt_vocab}",
                path=join_path(current_path(), "share_embeddings") or None,
            )
        self.src_vocab_size, self.tgt_vocab_size = src_vocab, tgt_vocab
        self.pad_id, self.bos_id, self.eos_id = special_ids(
            pad_id=pad_id, bos_id=bos_id, eos_id=eos_id
        )
        plan = plan_stacks(
            dim=dim, heads=heads, max_len=max_len, block=block, self_attention=self_attention,
            feedforward=feedforward, norm=norm, norm_placement=norm_placement, dropout=dropout,
            drop_path=drop_path, final_norm=final_norm, position=position,
            layer_overrides=layer_overrides,
            stacks={
                "encoder": Stack("encoder_layers", encoder_layers, ENCODER_OPTIONS, encoder),
                "decoder": Stack("decoder_layers", decoder_layers, DECODER_OPTIONS, decoder),
            },
        )  # fmt: skip
        self.dim, self.max_len = plan.dim, plan.max_len
        self._build_embeddings(plan, embedding, share_embeddings, pad_id)
        self.dropout = plan.dropout()
        self.encoder = plan.build("encoder")
        self.decoder = plan.build("decoder", cross_attention=cross_attention)
        self.head = build(head, "head", at="head", dim=dim, out_features=tgt_vocab, bias=False)

        shared = list(self.src_embedding.parameters()) if share_embeddings else []
        if tie_embeddings:
            shared.append(tie_weight(self.tgt_embedding, self.head, slot="head"))
        self.tied_parameters = tied_groups(self, shared)

    def _build_embeddings(
        self, plan: StackPlan, embedding: Any, share: bool, pad_id: int | None
    ) -> None:
        """Slots ``src_embedding``, ``tgt_embedding`` (one module when shared) and the
        absolute ``src_position``, ``tgt_position``."""
        self.src_embedding = plan.embedding(
            embedding, at="src_embedding", vocab_size=self.src_vocab_size, pad_id=pad_id
        )
        if share:
            self.tgt_embedding = self.src_embedding
        else:
            self.tgt_embedding = plan.embedding(
                embedding, at="tgt_embedding", vocab_size=self.tgt_vocab_size, pad_id=pad_id
            )
        self.src_position = plan.absolute_position(at="src_position")
        self.tgt_position = plan.absolute_position(at="tgt_position")

    def encode(
        self, src: torch.Tensor, attention_mask: torch.Tensor | None = None
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        """Encode the source once: ``(memory [B, S, D], src key mask [B, S] or None)``.

        ``attention_mask`` ``[B, S]`` (True/1 = real token) replaces the ``pad_id`` mask.
        """
        check_tokens(src, model="transformer_seq2seq", arg="src")
        check_inputs(src, attention_mask, None, model="transformer_seq2seq")
        x = embed(src, self.src_embedding, self.src_position, self.dropout)  # [B, S, D]
        src_mask, _ = input_masks(
            src, self.pad_id, attention_mask, None, absolute=False, model="transformer_seq2seq"
        )
        memory, _ = self.encoder(x, mask=src_mask)
        return memory, src_mask

    def _decode(
        self,
        tgt: torch.Tensor,
        memory: torch.Tensor,
        src_mask: torch.Tensor | None,
        caches: list[dict[str, Any]] | None = None,
        offset: int = 0,
        tgt_mask: torch.Tensor | None = None,
    ) -> tuple[torch.Tensor, list[dict[str, Any]] | None]:
        # With caches, `tgt` is the whole prefix and only positions from `offset` are run.
        x = embed(tgt[:, offset:], self.tgt_embedding, self.tgt_position, self.dropout, offset)
        mask, _ = input_masks(
            tgt, self.pad_id, tgt_mask, None, absolute=False, model="transformer_seq2seq"
        )
        return self.decoder(
            x,
            mask=mask,
            causal=True,
            context=memory,
            context_mask=src_mask,
            caches=caches,
        )

    def forward(
        self,
        src: torch.Tensor,
        tgt_in: torch.Tensor,
        attention_mask: torch.Tensor | None = None,
        decoder_attention_mask: torch.Tensor | None = None,
    ) -> torch.Tensor:
        check_tokens(tgt_in, model="transformer_seq2seq", arg="tgt_in")
        check_inputs(
            tgt_in, decoder_attention_mask, None, model="transformer_seq2seq",
            mask_name="decoder_attention_mask",
        )  # fmt: skip
        if src.shape[0] != tgt_in.shape[0]:
            raise ShapeError(
                "model `transformer_seq2seq`: expected `src` and `tgt_in` with the same batch "
                f"size. Received: src {tuple(src.shape)}, tgt_in {tuple(tgt_in.shape)}"
            )
        memory, src_mask = self.encode(src, attention_mask)
        h, _ = self._decode(tgt_in, memory, src_mask, tgt_mask=decoder_attention_mask)
        return self.head(h)  # [B, T, V]; h: [B, T, D]

    # Decoding protocol (docs/interfaces.md), used by nnblocks.generate.

    @property
    def max_decode_len(self) -> int | None:
        """The longest target a decoding prefix may reach: the target position part's
        ``max_len``; None (no limit) with relative or no positions."""
        return position_limit(self.tgt_position)

    def begin(self, src: torch.Tensor | None = None) -> dict[str, Any]:
        """Encode ``src`` ``[B, S]`` once; the state holds the memory and empty caches.

        Raises:
            ShapeError: ``src`` is missing or not ``[B, S]`` integer ids.
        """
        if src is None:
            raise ShapeError(
                "model `transformer_seq2seq`: begin(src) expected source token ids [B, S]. "
                "Received: None"
            )
        memory, src_mask = self.encode(src)
        state: dict[str, Any] = {
            "memory": memory,
            "caches": [{} for _ in self.decoder.layers],
            "length": 0,
        }
        if src_mask is not None:
            state["memory_mask"] = src_mask
        return state

    def step(
        self, prefix: torch.Tensor, state: dict[str, Any], use_cache: bool = True
    ) -> tuple[torch.Tensor, dict[str, Any]]:
        """Next-token logits after the target ``prefix`` ``[B, t]`` (BOS first).

        With ``use_cache`` only the positions the caches do not cover yet are run (the
        cross-attention parts may keep the projected memory in their caches); without it,
        or when some attention part has no cache, the whole prefix is recomputed.

        Returns:
            ``(logits [B, V], state)``.

        Raises:
            ShapeError: ``prefix`` is not ``[B, t]`` integer ids, or holds no new position.
        """
        check_tokens(prefix, model="transformer_seq2seq", arg="prefix")
        memory, src_mask = state["memory"], state.get("memory_mask")
        if not (use_cache and self.decoder.cacheable):
            h, _ = self._decode(prefix, memory, src_mask)
            return self.head(h[:, -1]), state  # [B, V]
        seen = new_positions(prefix, state, model="transformer_seq2seq")
        h, caches = self._decode(prefix, memory, src_mask, caches=state["caches"], offset=seen)
        return self.head(h[:, -1]), {**state, "caches": caches, "length": prefix.shape[1]}
