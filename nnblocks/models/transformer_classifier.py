"""Model `transformer_classifier`: an encoder-only Transformer that classifies a sequence
(pooled, ``[B, C]``) or tags each token (``[B, T, C]``), as BERT does (Devlin et al. 2019).
See ``nnblocks/models/transformer.py`` for the family."""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from nnblocks.errors import SpecError
from nnblocks.models._checks import positive_int, special_ids
from nnblocks.models._stack import (
    ENCODER_OPTIONS,
    Stack,
    check_inputs,
    check_tokens,
    embed,
    input_masks,
    plan_stacks,
    tie_weight,
    tied_groups,
)
from nnblocks.registry import build, register
from nnblocks.spec import current_path

__all__ = ["TransformerClassifier"]

_POOLS = ("mean", "first", "max", "none")


@register("model", "transformer_classifier")
class TransformerClassifier(nn.Module):
    """Encoder-only Transformer: bidirectional blocks, pooling, a classification head.

    Slots: ``embedding``, ``position`` (absolute only; a relative scheme goes to every
    self-attention's ``position=`` option), ``embedding_norm`` (optional), ``dropout``,
    ``encoder.layers.N`` (with
    ``.self_attention``, ``.feedforward`` and their norms), ``encoder.final_norm``,
    ``head``.

    Args:
        vocab_size: number of token ids.
        num_classes: number of classes C (or tags when ``pool="none"``).
        dim: model width D.
        heads: attention heads H, offered to every attention.
        layers: number of blocks.
        max_len: longest sequence an absolute position part must cover.
        embedding, position, block, self_attention, feedforward, norm: slot specs, as in
            ``transformer_lm``.
        norm_placement: ``"pre"`` or ``"post"`` (BERT).
        dropout: rate of the embedding dropout and of each block's residual dropout.
        drop_path: stochastic depth rate of the last layer (linear rule, Huang et al. 2016).
        final_norm: ``"auto"`` (after pre-norm stacks), ``True``, ``False``/None or a spec.
        head: head spec (``"linear"``, offered ``bias=True``), applied after pooling.
        pool: how a sequence becomes one vector: ``"mean"`` over real (non-pad) tokens,
            ``"first"`` token (a [CLS] token the data puts first), ``"max"`` over real
            tokens, or ``"none"`` to tag every token.
        embedding_norm: None, or a norm spec over the sum of token, type and position
            embeddings (BERT's embedding LayerNorm), slot ``embedding_norm``.
        tie_embeddings: share the embedding's weight with the head's ``.weight`` (BERT's
            masked-LM head over ``pool="none"``); listed in ``tied_parameters``.
        encoder: options for every layer of the encoder stack, e.g. ``{"self_attention": "gqa"}``
            (so ``model.encoder.self_attention=gqa`` swaps that stack's attention); applied
            before ``layer_overrides``.
        layer_overrides: per-layer options, ``{"0-3": {"self_attention": "local"}}``.
        pad_id: padding id (masked out of attention and pooling) or None.

    Call arguments:
        tokens: ``[B, T]`` integer token ids.
        attention_mask: optional ``[B, T]`` bool or 0/1, True/1 at real tokens; without it
            the mask comes from ``pad_id``. It masks attention and pooling.
        position_ids: optional ``[B, T]`` positions (default 0..T-1, or counted from each
            row's first real token when ``attention_mask`` is given).
        token_type_ids: optional ``[B, T]`` segment ids, for an embedding part with token
            types (``{"name": "token", "type_vocab_size": 2}``).

    Returns:
        ``[B, C]`` class logits, or ``[B, T, C]`` per-token logits when ``pool="none"``.

    Raises:
        SpecError: a bad option or slot spec, naming its spec path.
        ShapeError: ``tokens`` is not an integer tensor ``[B, T]``, or an optional input
            does not fit it.

    Example:
        >>> clf = nnblocks.build({"name": "transformer_classifier", "vocab_size": 100,
        ...                       "num_classes": 3, "dim": 32, "heads": 2, "layers": 1})
        >>> clf(torch.randint(1, 100, (4, 12))).shape
        torch.Size([4, 3])
    """

    def __init__(
        self,
        vocab_size: int,
        num_classes: int,
        dim: int = 256,
        heads: int = 4,
        layers: int = 4,
        max_len: int = 512,
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
        pool: str | None = "mean",
        embedding_norm: Any = None,
        tie_embeddings: bool = False,
        encoder: dict[str, Any] | None = None,
        layer_overrides: dict[str, Any] | None = None,
        pad_id: int | None = 0,
    ):
        super().__init__()
        self.vocab_size = positive_int("vocab_size", vocab_size)
        self.num_classes = positive_int("num_classes", num_classes)
        self.pool = "none" if pool is None else pool
        if self.pool not in _POOLS:
            raise SpecError(
                f"Received an invalid value for `pool`: expected one of {', '.join(_POOLS)}. "
                f"Received: pool={pool!r}",
                path=current_path() or None,
            )
        (self.pad_id,) = special_ids(pad_id=pad_id)
        plan = plan_stacks(
            dim=dim, heads=heads, max_len=max_len, block=block, self_attention=self_attention,
            feedforward=feedforward, norm=norm, norm_placement=norm_placement, dropout=dropout,
            drop_path=drop_path, final_norm=final_norm, position=position,
            layer_overrides=layer_overrides,
            stacks={"encoder": Stack("layers", layers, ENCODER_OPTIONS, encoder)},
        )  # fmt: skip
        self.dim, self.max_len = plan.dim, plan.max_len
        self.embedding = plan.embedding(
            embedding, at="embedding", vocab_size=vocab_size, pad_id=pad_id
        )
        self.position = plan.absolute_position(at="position")
        self.embedding_norm = (
            None
            if embedding_norm is None
            else build(embedding_norm, "norm", at="embedding_norm", dim=dim)
        )
        self.dropout = plan.dropout()
        self.encoder = plan.build("encoder")
        self.head = build(head, "head", at="head", dim=dim, out_features=num_classes, bias=True)
        shared = [tie_weight(self.embedding, self.head, slot="head")] if tie_embeddings else []
        self.tied_parameters = tied_groups(self, shared)

    def _encode(
        self,
        tokens: torch.Tensor,
        attention_mask: torch.Tensor | None,
        position_ids: torch.Tensor | None,
        token_type_ids: torch.Tensor | None,
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        check_tokens(tokens, model="transformer_classifier")
        check_inputs(
            tokens, attention_mask, position_ids, token_type_ids, model="transformer_classifier"
        )
        mask, positions = input_masks(
            tokens, self.pad_id, attention_mask, position_ids,
            absolute=self.position is not None, model="transformer_classifier",
        )  # fmt: skip
        x = embed(
            tokens, self.embedding, self.position, self.dropout,
            positions=positions, token_type_ids=token_type_ids, norm=self.embedding_norm,
        )  # fmt: skip
        h, _ = self.encoder(x, mask=mask)  # [B, T, D]
        return h, mask

    def hidden_states(
        self,
        tokens: torch.Tensor,
        attention_mask: torch.Tensor | None = None,
        position_ids: torch.Tensor | None = None,
        token_type_ids: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """The encoder's output ``[B, T, D]`` before pooling and head (takes ``forward``'s
        arguments); Hugging Face's ``last_hidden_state``."""
        return self._encode(tokens, attention_mask, position_ids, token_type_ids)[0]

    def forward(
        self,
        tokens: torch.Tensor,
        attention_mask: torch.Tensor | None = None,
        position_ids: torch.Tensor | None = None,
        token_type_ids: torch.Tensor | None = None,
    ) -> torch.Tensor:
        h, mask = self._encode(tokens, attention_mask, position_ids, token_type_ids)
        if self.pool == "none":
            return self.head(h)  # [B, T, C]
        return self.head(self._pool(h, mask))  # [B, C]

    def _pool(self, h: torch.Tensor, mask: torch.Tensor | None) -> torch.Tensor:
        if self.pool == "first":
            return h[:, 0]  # [B, D]
        if mask is None:
            return h.mean(dim=1) if self.pool == "mean" else h.amax(dim=1)
        keep = mask.unsqueeze(-1)  # [B, T, 1]
        if self.pool == "mean":
            # An all-padding row pools to zeros rather than 0/0.
            count = keep.sum(dim=1).clamp(min=1).to(h.dtype)  # [B, 1]
            return (h * keep).sum(dim=1) / count  # [B, D]
        pooled = h.masked_fill(~keep, float("-inf")).amax(dim=1)  # [B, D]
        return torch.where(keep.any(dim=1), pooled, torch.zeros_like(pooled))
