"""Model `rnn_seq2seq`: an LSTM or GRU encoder-decoder with a pluggable attention slot.

The encoder reads the source (optionally in both directions); the decoder is initialised with
the encoder's final states and, at every target position, asks the part in its `attention`
slot which source positions matter. The wiring follows Luong et al. 2015, "Effective
Approaches to Attention-based Neural Machine Translation": the attention query is the
decoder's *current* top hidden state, and the attentional state
``tanh(W_c [context; h_t])`` feeds the output head. ``additive`` is Bahdanau et al. 2015's
score function and ``multiplicative`` Luong's "general" score; any attention part fits,
called with the attention contract ``attn(h [B, T, D], context=memory [B, S, D],
mask=src_padding_mask [B, S])``.

Slots (module paths): ``src_embedding``, ``tgt_embedding``, ``encoder``, ``decoder``
(torch RNNs), ``attention``, ``combine`` (the Linear of the attentional state), ``head``.

Speed: with full teacher forcing (always in eval, and in training when
``teacher_forcing == 1.0``) and without input feeding, the decoder runs as one fused RNN
call over all target positions and the attention as one call with ``T`` queries; a
Python loop over positions is needed only for scheduled sampling and input feeding.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch
from torch import Tensor, nn
from torch.nn.utils.rnn import pack_padded_sequence, pad_packed_sequence

from nnblocks.errors import ShapeError, SpecError
from nnblocks.models._checks import is_none, positive_int, received
from nnblocks.models._stack import tie_weight, tied_groups
from nnblocks.registry import build, register
from nnblocks.spec import current_path

__all__ = ["RNNSeq2Seq"]

_CELLS: dict[str, Callable[..., nn.RNNBase]] = {"lstm": nn.LSTM, "gru": nn.GRU}
_NAME = "rnn_seq2seq"


def _check_options(
    path: str,
    src_vocab_size: Any,
    tgt_vocab_size: Any,
    dim: Any,
    layers: Any,
    cell: Any,
    bidirectional: bool,
    teacher_forcing: Any,
    share_embeddings: bool,
) -> tuple[int, int, int, int]:
    """The checked sizes ``(src_vocab_size, tgt_vocab_size, dim, layers)``, or a SpecError."""
    src_vocab_size = positive_int("src_vocab_size", src_vocab_size, model=_NAME)
    tgt_vocab_size = positive_int("tgt_vocab_size", tgt_vocab_size, model=_NAME)
    dim = positive_int("dim", dim, model=_NAME)
    layers = positive_int("layers", layers, model=_NAME)
    if cell not in _CELLS:
        raise SpecError(
            f"Received an invalid value for `cell` of model `{_NAME}`: expected one of "
            f"{sorted(_CELLS)}. Received: cell={cell!r}",
            path=path,
        )
    if bidirectional and dim % 2:
        raise SpecError(
            f"a bidirectional encoder splits `dim` between its two directions, so dim "
            f"must be even. Received: dim={dim}",
            path=path,
        )
    if not 0.0 <= float(teacher_forcing) <= 1.0:
        raise SpecError(
            "Received an invalid value for `teacher_forcing`: expected a float in "
            f"[0, 1]. Received: teacher_forcing={teacher_forcing!r}",
            path=path,
        )
    if share_embeddings and src_vocab_size != tgt_vocab_size:
        raise SpecError(
            "share_embeddings needs one vocabulary for source and target. Received: "
            f"src_vocab_size={src_vocab_size}, tgt_vocab_size={tgt_vocab_size}",
            path=path,
        )
    return src_vocab_size, tgt_vocab_size, dim, layers


@register("model", _NAME)
class RNNSeq2Seq(nn.Module):
    """LSTM/GRU encoder-decoder with a swappable attention slot and scheduled sampling.

    Args:
        src_vocab_size: source vocabulary size (offered by a seq2seq dataset's model_args).
        tgt_vocab_size: target vocabulary size.
        dim: embedding width and hidden size ``D`` of encoder and decoder.
        layers: stacked RNN layers in the encoder and in the decoder.
        cell: ``"lstm"`` or ``"gru"`` (both encoder and decoder).
        bidirectional: read the source in both directions; each direction then has
            ``D / 2`` units so that their concatenation is ``D`` wide (``dim`` must be even),
            and the decoder starts from the concatenated final states.
        embedding: embedding spec used for both sides (default ``"token"``), built with
            ``dim=D, vocab_size=..., padding_idx=pad_id``.
        src_embedding: embedding spec for the source only (overrides ``embedding``).
        tgt_embedding: embedding spec for the target only (overrides ``embedding``).
        share_embeddings: source and target embeddings hold the same parameters (needs
            equal vocabulary sizes and equal embedding specs).
        tie_embeddings: the output head uses the target embedding's ``.weight`` (Press &
            Wolf 2017); the embedding must be ``D`` wide.
        attention: ``"additive"`` (default), ``"multiplicative"``, any attention spec, or
            ``"none"``/``None`` for a plain encoder-decoder (Sutskever et al. 2014). Built
            with ``dim=D, heads=1``.
        input_feeding: feed the previous attentional state into the next decoder step
            (Luong et al. 2015, sec. 3.3). Costs a Python loop over positions even with
            full teacher forcing; ignored without attention.
        dropout: dropout on embeddings, between RNN layers and before the head (slot
            ``dropout``, a `regularization` part, besides the RNNs' own).
        teacher_forcing: initial value of ``model.teacher_forcing`` (see below).
        pad_id: padding token id; masks are computed from it. Padding must be on the right.
        bos_id: begin-of-sequence id (the first decoder input).
        eos_id: end-of-sequence id (where generation stops).
        head: head spec over the attentional state (slot ``head``; ``"linear"``, with a
            bias), giving ``[.., V_tgt]`` logits.

    Call arguments:
        src: ``[B, S]`` source token ids.
        tgt_in: ``[B, T]`` decoder inputs, the target shifted right and starting with BOS.

    Returns:
        logits ``[B, T, V_tgt]``.

    Teacher forcing: ``model.teacher_forcing`` is a float in ``[0, 1]`` that a callback may
    change between batches. In training, for every batch element and every position
    ``t >= 1`` independently, the decoder input is the ground truth ``tgt_in[:, t]`` with
    probability ``teacher_forcing`` and otherwise the model's own greedy prediction from
    step ``t - 1`` (scheduled sampling, Bengio et al. 2015); draws use torch's global
    generator, so seeded runs repeat. In eval mode ``forward`` always feeds the ground
    truth, so the validation loss is deterministic.

    Decoding protocol (docs/interfaces.md): ``bos_id``, ``eos_id``, ``pad_id``;
    ``state = model.begin(src)``; ``logits [B, V], state = model.step(prefix [B, t], state,
    use_cache=True)``. The RNN hidden state is the cache; every tensor in ``state`` is
    batch-first, so beam search can reorder it with ``index_select(0, ...)``.

    Raises:
        SpecError: bad sizes, unknown ``cell``, a ``teacher_forcing`` outside ``[0, 1]``,
            sharing or tying that the shapes do not allow, or a bad part in a slot (the
            registry names the slot and the kind it expects).
        ShapeError: (at call) token tensors that are not 2-D integer ids, or batch sizes
            that differ between ``src`` and ``tgt_in``.

    Example:
        >>> import nnblocks, torch
        >>> model = nnblocks.build({"name": "rnn_seq2seq", "src_vocab_size": 20,
        ...                         "tgt_vocab_size": 30, "dim": 16, "cell": "gru"})
        >>> model(torch.randint(3, 20, (2, 5)), torch.randint(3, 30, (2, 4))).shape
        torch.Size([2, 4, 30])
    """

    tied_parameters: list[tuple[str, ...]]

    def __init__(
        self,
        src_vocab_size: int,
        tgt_vocab_size: int,
        dim: int = 256,
        layers: int = 1,
        cell: str = "lstm",
        bidirectional: bool = False,
        embedding: Any = "token",
        src_embedding: Any = None,
        tgt_embedding: Any = None,
        share_embeddings: bool = False,
        tie_embeddings: bool = False,
        attention: Any = "additive",
        input_feeding: bool = False,
        dropout: float = 0.0,
        teacher_forcing: float = 1.0,
        pad_id: int = 0,
        bos_id: int = 1,
        eos_id: int = 2,
        head: Any = "linear",
    ):
        super().__init__()
        path = current_path() or _NAME
        src_vocab_size, tgt_vocab_size, dim, layers = _check_options(
            path, src_vocab_size, tgt_vocab_size, dim, layers, cell, bidirectional,
            teacher_forcing, share_embeddings,
        )  # fmt: skip
        self.dim, self.layers, self.cell = dim, layers, cell
        self.pad_id, self.bos_id, self.eos_id = int(pad_id), int(bos_id), int(eos_id)
        self.teacher_forcing = float(teacher_forcing)

        self._build_embeddings(
            embedding if src_embedding is None else src_embedding,
            embedding if tgt_embedding is None else tgt_embedding,
            src_vocab_size,
            tgt_vocab_size,
        )
        shared = self._share_embeddings(path) if share_embeddings else []
        self.input_feeding = bool(input_feeding) and not is_none(attention)
        self._build_rnns(bidirectional, dropout)
        self.attention = (
            None
            if is_none(attention)
            else build(attention, "attention", at="attention", dim=dim, heads=1)
        )
        # Luong et al. 2015, eq. 5: attentional state h~_t = tanh(W_c [c_t; h_t]).
        self.combine = nn.Linear(2 * dim, dim, bias=False) if self.attention is not None else None
        self.dropout = build({"name": "dropout", "p": dropout}, "regularization", at="dropout")
        self.head = build(head, "head", at="head", dim=dim, out_features=tgt_vocab_size, bias=True)
        if tie_embeddings:
            shared.append(self._tie_head(path, tgt_vocab_size))
        self.tied_parameters = tied_groups(self, shared)
        # Keys of the decoding state that change at every step (and their "0" initial copies).
        self._carry = (
            ["h"] + (["c"] if cell == "lstm" else []) + (["feed"] if self.input_feeding else [])
        )

    def _build_embeddings(
        self, src_spec: Any, tgt_spec: Any, src_vocab: int, tgt_vocab: int
    ) -> None:
        """Slots ``src_embedding`` and ``tgt_embedding``, ``dim`` wide, padding at ``pad_id``."""
        options = {"dim": self.dim, "padding_idx": self.pad_id}
        self.src_embedding = build(
            src_spec, "embedding", at="src_embedding", vocab_size=src_vocab, **options
        )
        self.tgt_embedding = build(
            tgt_spec, "embedding", at="tgt_embedding", vocab_size=tgt_vocab, **options
        )

    def _build_rnns(self, bidirectional: bool, dropout: float) -> None:
        """The torch RNNs in slots ``encoder`` and ``decoder`` (after the embeddings)."""
        dim, layers, rnn = self.dim, self.layers, _CELLS[self.cell]
        src_width = _embedding_width(self.src_embedding, dim)
        tgt_width = _embedding_width(self.tgt_embedding, dim)
        between = dropout if layers > 1 else 0.0  # torch warns about dropout on one layer
        self.encoder = rnn(
            src_width,
            dim // 2 if bidirectional else dim,
            layers,
            batch_first=True,
            bidirectional=bool(bidirectional),
            dropout=between,
        )
        self.decoder = rnn(
            tgt_width + (dim if self.input_feeding else 0),
            dim,
            layers,
            batch_first=True,
            dropout=between,
        )

    # ---- weight sharing -------------------------------------------------------------------

    def _share_embeddings(self, path: str) -> list[nn.Parameter]:
        # Parameters are shared, not the module: each embedding keeps one call site, and
        # the sharing is declared in `tied_parameters` for the reuse audit.
        src_params = dict(self.src_embedding.named_parameters())
        tgt_params = dict(self.tgt_embedding.named_parameters())
        if {k: v.shape for k, v in src_params.items()} != {
            k: v.shape for k, v in tgt_params.items()
        }:
            raise SpecError(
                "share_embeddings needs source and target embeddings with the same "
                f"parameters. Received: src {_shapes(src_params)}, tgt {_shapes(tgt_params)}",
                path=path,
            )
        for name, param in src_params.items():
            owner_name, _, leaf = name.rpartition(".")
            setattr(self.tgt_embedding.get_submodule(owner_name), leaf, param)
        return list(src_params.values())

    def _tie_head(self, path: str, vocab: int) -> nn.Parameter:
        weight = getattr(self.tgt_embedding, "weight", None)
        if not isinstance(weight, nn.Parameter) or tuple(weight.shape) != (vocab, self.dim):
            got = tuple(weight.shape) if isinstance(weight, Tensor) else type(weight).__name__
            raise SpecError(
                "tie_embeddings needs a target embedding with a `.weight` parameter of shape "
                f"[tgt_vocab_size, dim] = [{vocab}, {self.dim}]. Received: {got}",
                path=f"{path}.tgt_embedding",
            )
        return tie_weight(self.tgt_embedding, self.head, slot="head")

    # ---- encoder and decoder --------------------------------------------------------------

    def encode(self, src: Tensor) -> dict[str, Tensor]:
        """Encode ``src [B, S]``: memory ``[B, S, D]``, its mask ``[B, S]`` and start states."""
        mask = src != self.pad_id  # [B, S]
        x = self.dropout(self.src_embedding(src))  # [B, S, E]
        lengths = mask.sum(1)  # [B]
        S = src.shape[1]
        if bool((lengths == S).all()):
            memory, final = self.encoder(x)  # [B, S, D]
        else:
            # Packing keeps padding out of the final states (it matters most for the
            # backward direction, which would otherwise start on pads).
            packed = pack_padded_sequence(
                x, lengths.clamp(min=1).cpu(), batch_first=True, enforce_sorted=False
            )
            memory, final = self.encoder(packed)
            memory, _ = pad_packed_sequence(memory, batch_first=True, total_length=S)
        finals = final if isinstance(final, tuple) else (final,)
        if self.encoder.bidirectional:
            finals = tuple(_merge_directions(f) for f in finals)  # [L, B, D]
        # The decoder starts from the encoder's final states (Sutskever et al. 2014) and, with
        # input feeding, from a zero attentional state.
        feed = memory.new_zeros(src.shape[0], self.dim) if self.input_feeding else None
        hidden = finals if self.cell == "lstm" else finals[0]
        return {"memory": memory, "memory_mask": mask, **self._carry_to(hidden, feed)}

    def _attend(self, h: Tensor, memory: Tensor, mask: Tensor) -> Tensor:
        """Attentional state ``[B, T, D]`` for decoder outputs ``h [B, T, D]``."""
        if self.attention is None or self.combine is None:
            return h
        context = self.attention(h, context=memory, mask=mask)  # [B, T, D]
        return torch.tanh(self.combine(torch.cat([context, h], dim=-1)))

    def _decode(
        self, tokens: Tensor, memory: Tensor, mask: Tensor, hidden: Any, feed: Tensor | None
    ) -> tuple[Tensor, Any, Tensor | None]:
        """Run the decoder over given ``tokens [B, T]`` from ``hidden`` (torch's layout,
        ``[L, B, D]`` or an LSTM's pair); returns ``[B, T, D]``, the hidden state and the feed.
        """
        x = self.dropout(self.tgt_embedding(tokens))  # [B, T, E]
        if feed is None:
            out, hidden = self.decoder(x, hidden)  # [B, T, D]
            return self._attend(out, memory, mask), hidden, None
        outs = []
        for t in range(tokens.shape[1]):
            step_in = torch.cat([x[:, t : t + 1], feed[:, None]], dim=-1)  # [B, 1, E + D]
            out, hidden = self.decoder(step_in, hidden)  # [B, 1, D]
            out = self._attend(out, memory, mask)
            feed = out[:, 0]  # [B, D]
            outs.append(out)
        return torch.cat(outs, dim=1), hidden, feed

    def _carry_from(self, state: dict[str, Any], suffix: str = "") -> tuple[Any, Tensor | None]:
        """Batch-first state entries -> (hidden in torch's layout, feed)."""
        hidden = tuple(
            state[f"{k}{suffix}"].transpose(0, 1).contiguous()  # [L, B, D]
            for k in self._carry
            if k != "feed"
        )
        feed = state[f"feed{suffix}"] if self.input_feeding else None
        return (hidden if self.cell == "lstm" else hidden[0]), feed

    def _carry_to(self, hidden: Any, feed: Tensor | None) -> dict[str, Tensor]:
        """(hidden in torch's layout, feed) -> batch-first state entries (beams reorder them)."""
        parts = hidden if isinstance(hidden, tuple) else (hidden,)
        carry = {k: t.transpose(0, 1) for k, t in zip(("h", "c"), parts)}  # [B, L, D]
        if feed is not None:
            carry["feed"] = feed
        return carry

    # ---- forward --------------------------------------------------------------------------

    def forward(self, src: Tensor, tgt_in: Tensor) -> Tensor:
        """``src [B, S]``, ``tgt_in [B, T]`` -> logits ``[B, T, V_tgt]`` (see the class doc)."""
        self._check_tokens(src, "src")
        self._check_tokens(tgt_in, "tgt_in")
        if src.shape[0] != tgt_in.shape[0]:
            raise ShapeError(
                f"model `{_NAME}`: `src` and `tgt_in` must have the same batch size. "
                f"Received: src {tuple(src.shape)}, tgt_in {tuple(tgt_in.shape)}"
            )
        state = self.encode(src)
        memory, mask = state["memory"], state["memory_mask"]
        hidden, feed = self._carry_from(state)
        if self.training and self.teacher_forcing < 1.0:
            return self._forward_sampled(tgt_in, memory, mask, hidden, feed)
        out, _, _ = self._decode(tgt_in, memory, mask, hidden, feed)
        return self.head(self.dropout(out))  # [B, T, V]

    def _forward_sampled(
        self, tgt_in: Tensor, memory: Tensor, mask: Tensor, hidden: Any, feed: Tensor | None
    ) -> Tensor:
        # Scheduled sampling (Bengio et al. 2015): one draw per batch element and position.
        B, T = tgt_in.shape
        truth = torch.rand(B, T, device=tgt_in.device) < self.teacher_forcing  # [B, T]
        tokens = tgt_in[:, :1]  # [B, 1]: BOS is always given
        logits = []
        for t in range(T):
            out, hidden, feed = self._decode(tokens, memory, mask, hidden, feed)
            step_logits = self.head(self.dropout(out))  # [B, 1, V]
            logits.append(step_logits)
            if t + 1 < T:
                guess = step_logits.detach().argmax(-1)  # [B, 1]
                tokens = torch.where(truth[:, t + 1 : t + 2], tgt_in[:, t + 1 : t + 2], guess)
        return torch.cat(logits, dim=1)  # [B, T, V]

    # ---- decoding protocol ----------------------------------------------------------------

    def begin(self, src: Tensor | None = None) -> dict[str, Any]:
        """Encode the source once; returns the decoding state (batch-first tensors).

        Raises:
            ShapeError: ``src`` missing or not ``[B, S]`` integer ids.
        """
        if src is None:
            raise ShapeError(f"model `{_NAME}`: begin(src) needs the source token ids [B, S].")
        self._check_tokens(src, "src")
        state: dict[str, Any] = self.encode(src)
        for key in self._carry:
            state[f"{key}0"] = state[key]  # the start, for use_cache=False
        state["length"] = 0
        return state

    def step(
        self, prefix: Tensor, state: dict[str, Any], use_cache: bool = True
    ) -> tuple[Tensor, dict[str, Any]]:
        """Next-token logits ``[B, V]`` for ``prefix [B, t]`` (the whole prefix so far).

        With ``use_cache=True`` only the positions after ``state["length"]`` are run, from
        the cached RNN state; with ``use_cache=False`` the decoder reruns the whole prefix
        from the encoder's final states. The input ``state`` is not modified.

        Raises:
            ShapeError: ``prefix`` is not ``[B, t]`` integer ids, or holds no position that
                the cache does not already cover.
        """
        self._check_tokens(prefix, "prefix")
        start = int(state["length"]) if use_cache else 0
        new = prefix[:, start:]  # [B, t_new]
        if new.shape[1] == 0:
            raise ShapeError(
                f"model `{_NAME}`: step() got a prefix of length {prefix.shape[1]}, but the "
                f"cache already covers {start} positions; pass the whole prefix including "
                "the newest token."
            )
        hidden, feed = self._carry_from(state, "" if use_cache else "0")
        out, hidden, feed = self._decode(new, state["memory"], state["memory_mask"], hidden, feed)
        logits = self.head(self.dropout(out[:, -1]))  # [B, V]
        return logits, {**state, **self._carry_to(hidden, feed), "length": prefix.shape[1]}

    def _check_tokens(self, tokens: Any, name: str) -> None:
        if (
            not isinstance(tokens, Tensor)
            or tokens.dim() != 2
            or tokens.is_floating_point()
            or tokens.is_complex()
            or tokens.dtype == torch.bool
        ):
            raise ShapeError(
                f"model `{_NAME}`: expected `{name}` as token ids [B, T] of an integer dtype. "
                f"Received: {received(tokens)}"
            )


def _merge_directions(final: Tensor) -> Tensor:
    """``[2 L, B, H]`` (layer-major, forward then backward) -> ``[L, B, 2 H]``."""
    L2, B, H = final.shape
    return final.view(L2 // 2, 2, B, H).transpose(1, 2).reshape(L2 // 2, B, 2 * H)


def _embedding_width(embedding: nn.Module, default: int) -> int:
    weight = getattr(embedding, "weight", None)
    return int(weight.shape[-1]) if isinstance(weight, Tensor) and weight.dim() == 2 else default


def _shapes(params: dict[str, Tensor]) -> dict[str, tuple[int, ...]]:
    return {k: tuple(v.shape) for k, v in params.items()}
