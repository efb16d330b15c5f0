"""`KeyValueAttention`: the call path shared by the softmax attention parts.

A subclass says how queries, keys and values are made (``_queries``, ``_keys_values``), how
heads become the output (``_output``) and, if it is not plain scaled dot-product attention,
how they are combined (``_attend``). This base does the rest of the contract once: checks
at the boundary, cross-attention, the decoding cache, relative positions and masks.
"""

from __future__ import annotations

from typing import Any, NamedTuple

import torch
from torch import nn

from nnblocks._tracing import tracing as _tracing
from nnblocks.errors import ShapeError, SpecError
from nnblocks.parts.attention._cache import cached_keys, write_ahead
from nnblocks.parts.attention._checks import check_cache, check_sequence, shape_of
from nnblocks.parts.attention._kernel import dot_product_attention, pack_outputs, prepare_mask
from nnblocks.parts.attention._masks import normalize_mask
from nnblocks.parts.boundary import check_flag
from nnblocks.registry import build
from nnblocks.spec import current_path

__all__ = ["AttendCall", "KeyValueAttention", "build_relative_position"]


def build_relative_position(
    part: str, position: Any, head_dim: int, heads: int
) -> nn.Module | None:
    """Build an attention part's ``position=`` option: a relative position part, or None.

    Raises:
        SpecError: the spec names an absolute position part (those belong to the model's
            position slot, not to attention).
    """
    if position is None:
        return None
    module = build(position, "position", at="position", dim=head_dim, heads=heads)
    if not getattr(module, "relative", False):
        raise SpecError(
            f"attention part `{part}` takes a relative position part in `position=` "
            f"(e.g. 'rotary' or 'alibi'). Received: {type(module).__name__}, an absolute "
            "part; put absolute positions in the model's position slot instead.",
            path=current_path() or None,
        )
    return module


class AttendCall(NamedTuple):
    """What one call asks of ``_attend`` besides ``q``, ``k`` and ``v`` (one bundle, so
    every subclass's ``_attend`` reads the same fields and none repeats the list)."""

    allowed: torch.Tensor | None  # bool [B|1, H|1, Tq|1, Tk], True = may attend; or None
    bias: torch.Tensor | None  # additive scores from a relative position part, or None
    causal: bool
    q_start: int  # position of the first query (the cache offset)
    k_start: int  # position of the first key (a windowed cache dropped the earlier ones)
    need_weights: bool
    self_attention: bool  # no context: queries and keys come from the same sequence


class KeyValueAttention(nn.Module):
    """Base of attention parts that score queries against cached keys and values.

    Subclasses call ``_setup`` in ``__init__`` and define ``_queries(x) -> [B, H, Tq, Dh]``,
    ``_keys_values(src) -> ([B, Hkv, Tk, Dh], [B, Hkv, Tk, Dv])`` and
    ``_output(o [B, Tq, H * Dv]) -> [B, Tq, dim]``.

    Cache layout (every tensor batch-first): ``k``, ``v`` (self-attention keys and values,
    ``[B, Hkv, T, Dh]``; from the second step on buffers allocated ahead, of which the first
    ``filled`` positions hold keys, see ``_cache.py``), ``context_k``, ``context_v``
    (projected context, cross-attention), ``offset`` (int, positions decoded so far).
    """

    part_name = "attention"
    keep_keys: int | None = None  # how many keys a cache keeps (None: all)
    position: Any  # a relative position part (any module with `adjust`), or None

    def _setup(
        self,
        dim: int,
        heads: int,
        kv_heads: int,
        head_dim: int,
        dropout: float,
        scale: float | None,
        position: Any = None,
    ) -> None:
        self.dim = dim
        self.heads = heads
        self.kv_heads = kv_heads
        self.head_dim = head_dim
        self.dropout = float(dropout)
        self.scale = scale
        self.position = build_relative_position(self.part_name, position, head_dim, heads)

    def extra_repr(self) -> str:
        return f"dim={self.dim}, heads={self.heads}, kv_heads={self.kv_heads}"

    # -- to be defined by subclasses --------------------------------------------------------
    def _queries(self, x: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def _keys_values(self, src: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        raise NotImplementedError

    def _output(self, o: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def _split_heads(self, t: torch.Tensor, heads: int | None = None) -> torch.Tensor:
        """``[B, T, n * Dh] -> [B, n, T, Dh]``, ``n`` = ``heads`` (None: the query heads)."""
        b, n, _ = t.shape
        return t.view(b, n, heads or self.heads, self.head_dim).transpose(1, 2)

    def _attend(
        self, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, call: AttendCall
    ) -> tuple[torch.Tensor, torch.Tensor | None, torch.Tensor | None]:
        """Scaled dot-product attention.

        Returns:
            ``(out [B, H, Tq, Dv], weights or None, valid)``: ``valid`` is None or
            ``[B|1, H|1, Tq, 1]`` bool, False for query rows that had no key to attend.
        """
        return self._softmax_attend(q, k, v, call)

    def _prepare_mask(
        self,
        q: torch.Tensor,
        k: torch.Tensor,
        call: AttendCall,
        *,
        fused: bool,
        band: torch.Tensor | None = None,
    ) -> tuple[torch.Tensor | None, bool, torch.Tensor | None]:
        """The call's mask, causality (and a sliding-window ``band``) as one, see ``prepare_mask``."""
        return prepare_mask(
            q.shape[2],
            k.shape[2],
            mask=call.allowed,
            causal=call.causal,
            q_start=call.q_start,
            k_start=call.k_start,
            device=q.device,
            fused=fused,
            band=band,
        )

    def _softmax_attend(
        self,
        q: torch.Tensor,
        k: torch.Tensor,
        v: torch.Tensor,
        call: AttendCall,
        band: torch.Tensor | None = None,
    ) -> tuple[torch.Tensor, torch.Tensor | None, torch.Tensor | None]:
        """Masks (and a sliding-window ``band``) combined, then the softmax kernel."""
        fused = not call.need_weights and call.bias is None
        allowed, is_causal, valid = self._prepare_mask(q, k, call, fused=fused, band=band)
        out, weights = dot_product_attention(
            q,
            k,
            v,
            allowed=allowed,
            is_causal=is_causal,
            valid=valid,
            bias=call.bias,
            dropout_p=self.dropout if self.training else 0.0,
            scale=self.scale,
            need_weights=call.need_weights,
        )
        return out, weights, valid

    # -- the shared call path ----------------------------------------------------------------
    def forward(
        self,
        x: torch.Tensor,
        context: torch.Tensor | None = None,
        mask: torch.Tensor | None = None,
        causal: bool = False,
        *,
        need_weights: bool = False,
        cache: dict[str, Any] | None = None,
    ) -> Any:
        part = self.part_name
        check_flag(causal, "causal", where=f"attention part `{part}`")
        batch, tq = check_sequence(part, "x", x, self.dim)
        state = None if cache is None else check_cache(part, cache)
        offset = 0 if state is None else state.get("offset", 0)
        if state is not None and self._steps_in_place(state, context, mask, need_weights, tq):
            return self._step_in_place(x, state, offset), state
        q = self._queries(x)  # [B, H, Tq, Dh]
        if context is None:
            q, k, v, bias, k_start = self._self_keys(x, q, offset, state)
            tk_all = offset + tq  # the mask covers every key, cached or new
        else:
            check_sequence(part, "context", context, self.dim, batch=batch)
            q, k, v, bias = self._cross_keys(context, q, offset, state)
            k_start, tk_all = 0, k.shape[2]
        allowed = normalize_mask(
            part, mask, batch=batch, heads=self.heads, tq=tq, tk=tk_all, device=x.device
        )
        if allowed is not None and k.shape[2] < tk_all and allowed.shape[-1] != 1:
            allowed = allowed[..., tk_all - k.shape[2] :]  # keys a windowed cache let go
        call = AttendCall(allowed, bias, causal, offset, k_start, need_weights, context is None)
        out, weights, valid = self._attend(q, k, v, call)  # [B, H, Tq, Dv]
        out = self._output(out.transpose(1, 2).reshape(batch, tq, -1))  # [B, Tq, D]
        if valid is not None:
            # A row that attended nothing is zero after the projection too (no bias leaks
            # in), so in a residual block it leaves its input as it was.
            out = out.masked_fill(~valid.any(dim=1), 0.0)
        if state is not None:
            state["offset"] = offset + tq
        return pack_outputs(out, weights, state, need_weights)

    def _steps_in_place(
        self,
        state: dict[str, Any],
        context: torch.Tensor | None,
        mask: torch.Tensor | None,
        need_weights: bool,
        tq: int,
    ) -> bool:
        """Whether this call is a plain decoding step: one new query over a cache whose
        buffers are allocated ahead, with nothing to mask (every cached key is earlier),
        no weights asked for, and nothing a subclass or autograd would do differently.

        Decoding calls this case once per layer and token, where the general path's many
        small calls cost as much as the arithmetic; ``_step_in_place`` does the same
        operations in the same order, so the outputs are the same bits.
        """
        if tq != 1 or context is not None or mask is not None or need_weights:
            return False
        return (
            "filled" in state
            and self._can_step_in_place()
            and not torch.is_grad_enabled()
            and not _tracing()
        )

    def _can_step_in_place(self) -> bool:
        """What ``_steps_in_place`` asks of the part itself, whatever the call: no key
        window, the softmax ``_attend`` of this class, and a position part (if any) that
        adjusts cached keys from an int offset."""
        position = self.position
        return (
            self.keep_keys is None
            and type(self)._attend is KeyValueAttention._attend
            and (position is None or hasattr(position, "adjust_cached_from"))
        )

    def _step_in_place(self, x: torch.Tensor, state: dict[str, Any], offset: int) -> torch.Tensor:
        """The decoding step of ``_steps_in_place``: ``x`` ``[B, 1, dim]`` -> ``[B, 1, dim]``;
        ``state`` gets the new key and value and the next offset."""
        self._check_cached(state, x, offset)
        q = self._queries(x)  # [B, H, 1, Dh]
        k, v = self._keys_values(x)  # [B, Hkv, 1, Dh]
        position = self.position
        if position is not None:
            q, k, _ = position.adjust_cached_from(q, k, offset)
        k, v = write_ahead(state, k, v)  # every key so far
        out, _ = dot_product_attention(
            q,
            k,
            v,
            allowed=None,
            is_causal=False,
            valid=None,
            bias=None,
            dropout_p=self.dropout if self.training else 0.0,
            scale=self.scale,
            need_weights=False,
        )  # [B, H, 1, Dv]: nothing to mask, the fused kernel
        state["offset"] = offset + 1
        return self._output(out.transpose(1, 2).reshape(x.shape[0], 1, -1))  # [B, 1, dim]

    def _positions(self, start: int, length: int, device: torch.device) -> torch.Tensor:
        return torch.arange(start, start + length, device=device)

    def _self_keys(
        self, x: torch.Tensor, q: torch.Tensor, offset: int, state: dict[str, Any] | None
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor | None, int]:
        """Keys and values of self-attention, appended to the cache; and the first key's position."""
        k, v = self._keys_values(x)  # [B, Hkv, Tq, Dh]
        tq = x.shape[1]
        position = self.position
        if state is None:
            bias = None
            if position is not None:
                pos = self._positions(0, tq, x.device)
                q, k, bias = position.adjust(q, k, pos, pos)
            return q, k, v, bias, 0
        k_start = offset - (self._check_cached(state, x, offset) if "k" in state else 0)
        if position is not None and hasattr(position, "adjust_cached_from"):
            # The same, with positions as an int (rotary slices its cos/sin table).
            q, k, bias = position.adjust_cached_from(q, k, offset)
            k, v = self._append(state, k, v)
            return q, k, v, bias, k_start
        q_pos = self._positions(offset, tq, x.device) if position is not None else None
        bias = None
        if position is not None and hasattr(position, "adjust_cached"):
            # Keys adjusted once and cached (rotary rotates each key by its own position).
            k_pos = self._positions(k_start, offset + tq - k_start, x.device)
            q, k, bias = position.adjust_cached(q, k, q_pos, k_pos)
            k, v = self._append(state, k, v)
        else:
            k, v = self._append(state, k, v)
            if position is not None:  # any other relative part sees all raw keys each step
                k_pos = self._positions(k_start, k.shape[2], x.device)
                q, k, bias = position.adjust(q, k, q_pos, k_pos)
        return q, k, v, bias, k_start

    def _check_cached(self, state: dict[str, Any], x: torch.Tensor, offset: int) -> int:
        """How many keys the cache holds (its buffers may be longer than that)."""
        previous = state["k"]
        if (
            not isinstance(previous, torch.Tensor)
            or previous.dim() != 4
            or previous.shape[0] != x.shape[0]
        ):
            raise ShapeError(
                f"attention part `{self.part_name}`: the cache does not fit this call: "
                f"expected cached keys [B={x.shape[0]}, Hkv, T<={offset}, Dh] from an earlier "
                f"step of the same batch. Received: cache['k'] of shape {shape_of(previous)}"
            )
        held = cached_keys(state)
        if held > offset:
            raise ShapeError(
                f"attention part `{self.part_name}`: the cache does not fit this call: it "
                f"holds {held} keys but covers only offset={offset} positions. Pass the "
                "dict the part returned at the previous step."
            )
        return held

    def _append(
        self, state: dict[str, Any], k: torch.Tensor, v: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Cached + new keys and values; the cache keeps the last ``keep_keys`` of them."""
        keep = self.keep_keys
        if keep is not None or "k" not in state or k.requires_grad or _tracing():
            # A window is short, a first step has nothing to extend, autograd must not
            # see a buffer written in place, and an exported step returns its cache as
            # outputs: concatenation serves these cases.
            if "k" in state:
                k = torch.cat([state["k"], k], dim=2)  # [B, Hkv, T_cached + T_new, Dh]
                v = torch.cat([state["v"], v], dim=2)
            if keep is None or k.shape[2] <= keep:
                state["k"], state["v"] = k, v
            else:
                state["k"], state["v"] = k[:, :, k.shape[2] - keep :], v[:, :, v.shape[2] - keep :]
            state.pop("filled", None)
            return k, v
        return write_ahead(state, k, v)

    def _cross_keys(
        self,
        context: torch.Tensor,
        q: torch.Tensor,
        offset: int,
        state: dict[str, Any] | None,
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor | None]:
        """Keys and values of the context; a cache keeps them projected after the first step."""
        if state is not None and "context_k" in state:
            k, v = state["context_k"], state["context_v"]
            if k.shape[0] != context.shape[0] or k.shape[2] != context.shape[1]:
                raise ShapeError(
                    f"attention part `{self.part_name}`: the cache holds a projected context "
                    f"of shape [B={k.shape[0]}, Tk={k.shape[2]}]; pass the same context at "
                    f"every step. Received: context of shape {shape_of(context)}"
                )
        else:
            k, v = self._keys_values(context)  # [B, Hkv, Tk, Dh]
            if state is not None:
                state["context_k"], state["context_v"] = k, v
        bias = None
        if self.position is not None:
            q_pos = self._positions(offset, q.shape[2], q.device)
            k_pos = self._positions(0, k.shape[2], q.device)
            q, k, bias = self.position.adjust(q, k, q_pos, k_pos)
        return q, k, v, bias
