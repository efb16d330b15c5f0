"""`linear`: kernelized linear attention (Katharopoulos et al. 2020, "Transformers are RNNs")."""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from nnblocks.errors import NNBlocksError, ShapeError
from nnblocks.parts.attention._checks import (
    check_cache,
    check_heads,
    check_sequence,
    shape_of,
)
from nnblocks.parts.attention._kernel import pack_outputs
from nnblocks.parts.attention._masks import normalize_mask
from nnblocks.parts.boundary import check_flag, check_positive_int
from nnblocks.registry import register

__all__ = ["LinearAttention"]


def _feature_map(x: torch.Tensor) -> torch.Tensor:
    # elu(x) + 1 keeps features positive, so every normaliser is a sum of positive terms
    # (Katharopoulos et al. 2020, section 3.2.1).
    return F.elu(x) + 1.0


def _safe_divide(num: torch.Tensor, den: torch.Tensor) -> torch.Tensor:
    """``num / den`` where a zero normaliser (no key to attend) gives a zero row."""
    return num / den.masked_fill(den == 0, 1.0)


def _global_sums(
    k: torch.Tensor, v: torch.Tensor, s0: torch.Tensor | None, z0: torch.Tensor | None
) -> tuple[torch.Tensor, torch.Tensor]:
    s = k.transpose(-2, -1) @ v  # [B, H, Dk, Dv]
    z = k.sum(dim=2)  # [B, H, Dk]
    if s0 is not None and z0 is not None:
        s, z = s + s0, z + z0
    return s, z


def _read_out(
    q: torch.Tensor, s: torch.Tensor, z: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor]:
    """Outputs ``[B, H, T, Dv]`` and normalisers ``[B, H, T]`` from the sums."""
    den = (q @ z[..., None]).squeeze(-1)  # [B, H, T]
    return _safe_divide(q @ s, den[..., None]), den


def _causal_chunks(
    q: torch.Tensor,
    k: torch.Tensor,
    v: torch.Tensor,
    s0: torch.Tensor | None,
    z0: torch.Tensor | None,
    chunk: int,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """Causal linear attention in chunks: exact within a chunk, prefix sums across chunks.

    The chunkwise form (as in Hua et al. 2022, FLASH) is vectorised over chunks: memory is
    ``T * chunk + (T / chunk) * Dk * Dv``, linear in ``T``, and no loop runs over time.

    Returns:
        ``(out [B, H, T, Dv], s [B, H, Dk, Dv], z [B, H, Dk], den [B, H, T])``: outputs,
        the running sums after the last position (the state a cache carries on) and the
        normalisers (zero where a query had no key).
    """
    b, h, t, dk = q.shape
    dv = v.shape[-1]
    c = min(chunk, t)
    n = -(-t // c)
    pad = n * c - t
    if pad:  # padded keys are zero features: they add nothing to any sum
        q, k, v = (F.pad(a, (0, 0, 0, pad)) for a in (q, k, v))
    qc, kc, vc = q.view(b, h, n, c, dk), k.view(b, h, n, c, dk), v.view(b, h, n, c, dv)
    s_chunk = kc.transpose(-2, -1) @ vc  # [B, H, N, Dk, Dv]
    z_chunk = kc.sum(dim=3)  # [B, H, N, Dk]
    s_through, z_through = s_chunk.cumsum(dim=2), z_chunk.cumsum(dim=2)
    s_before = F.pad(s_through[:, :, :-1], (0, 0, 0, 0, 1, 0))  # sums of earlier chunks
    z_before = F.pad(z_through[:, :, :-1], (0, 0, 1, 0))
    s_last, z_last = s_through[:, :, -1], z_through[:, :, -1]
    if s0 is not None and z0 is not None:
        s_before, z_before = s_before + s0[:, :, None], z_before + z0[:, :, None]
        s_last, z_last = s_last + s0, z_last + z0
    scores = (qc @ kc.transpose(-2, -1)).tril()  # [B, H, N, C, C], within the chunk
    num = qc @ s_before + scores @ vc  # [B, H, N, C, Dv]
    den = (qc * z_before[:, :, :, None, :]).sum(-1) + scores.sum(-1)  # [B, H, N, C]
    out = _safe_divide(num, den[..., None]).reshape(b, h, n * c, dv)[:, :, :t]
    return out, s_last, z_last, den.reshape(b, h, n * c)[:, :, :t]


@register("attention", "linear")
class LinearAttention(nn.Module):
    """Linear attention: softmax replaced by a kernel, so cost grows as T, not T * T.

    Katharopoulos et al. 2020: ``out_i = phi(q_i) S / (phi(q_i) z)`` with
    ``S = sum_j phi(k_j) v_j^T``, ``z = sum_j phi(k_j)`` and ``phi = elu + 1``. Causal
    attention uses prefix sums (computed in chunks); decoding with a cache carries only
    ``S`` and ``z``, so each step costs the same however long the prefix.

    Limits: masks must be per key (``[B, Tk]``, or 3-D/4-D with a query axis of size 1);
    a mask that differs per query raises ShapeError. ``causal=True`` with a ``context`` is
    not supported. ``need_weights`` is supported without a cache. No ``position=`` option.
    Half-precision inputs are computed in float32 inside (the sums run over all positions).

    Args:
        dim: model width; ``dim // heads`` is the head width.
        heads: number of heads; must divide ``dim``.
        bias: whether the four projections have biases.
        chunk: positions per chunk of the causal pass (memory ``T * chunk``).

    Parameters: ``q_proj``, ``k_proj``, ``v_proj``, ``out_proj`` (``nn.Linear``).

    Call arguments:
        x: ``[B, Tq, dim]``.
        context: ``[B, Tk, dim]`` for cross-attention, or None.
        mask: per-key bool mask, True = may attend. With a cache it covers all keys; keys
            already summed into the cache keep the mask they had when they were added.
        causal: query ``i`` attends keys ``<= i`` (offset by the cache).
        need_weights: also return the weights ``[B, H, Tq, Tk]`` (``phi(q) phi(k)^T``
            normalised; quadratic, for inspection only).
        cache: a dict (``{}`` at first) holding the running sums ``S``, ``z``
            (``context_S``, ``context_z`` for cross-attention: the context is summed once,
            with the mask of the first step).

    Returns:
        ``out [B, Tq, dim]``, plus ``weights`` and/or ``cache`` when asked. Query rows
        with no key to attend are zeros.

    Raises:
        ShapeError: wrong rank or width of ``x``/``context``, a per-query mask, or
            ``causal=True`` with a ``context``.
        NNBlocksError: ``need_weights=True`` together with a cache.
        SpecError: (construction) ``heads`` does not divide ``dim``, or a bad ``chunk``.

    Example:
        >>> import torch, nnblocks
        >>> attn = nnblocks.build("linear", "attention", dim=32, heads=4)
        >>> attn(torch.randn(2, 100, 32), causal=True).shape
        torch.Size([2, 100, 32])
    """

    part_name = "linear"

    def __init__(self, dim: int, heads: int, bias: bool = True, chunk: int = 64):
        super().__init__()
        check_heads(self.part_name, dim, heads)
        check_positive_int(chunk, "chunk", where=f"part `{self.part_name}`")
        self.dim, self.heads, self.head_dim, self.chunk = dim, heads, dim // heads, chunk
        self.q_proj = nn.Linear(dim, dim, bias=bias)
        self.k_proj = nn.Linear(dim, dim, bias=bias)
        self.v_proj = nn.Linear(dim, dim, bias=bias)
        self.out_proj = nn.Linear(dim, dim, bias=bias)

    def extra_repr(self) -> str:
        return f"dim={self.dim}, heads={self.heads}, chunk={self.chunk}"

    def _heads(self, t: torch.Tensor, work: torch.dtype) -> torch.Tensor:
        b, n, _ = t.shape
        return t.view(b, n, self.heads, self.head_dim).transpose(1, 2).to(work)  # [B, H, T, Dh]

    def _key_mask(
        self, mask: torch.Tensor | None, x: torch.Tensor, tk: int, work: torch.dtype
    ) -> torch.Tensor | None:
        allowed = normalize_mask(
            self.part_name,
            mask,
            batch=x.shape[0],
            heads=self.heads,
            tq=x.shape[1],
            tk=tk,
            device=x.device,
        )
        if allowed is None:
            return None
        if allowed.shape[2] != 1:
            raise ShapeError(
                f"attention part `{self.part_name}`: expected a per-key mask, [B, Tk] or with a "
                "query axis of size 1 ([B, 1, Tk], [B, H, 1, Tk]): linear attention never forms "
                "the per-query score matrix such a mask needs (use causal=True for causal "
                f"masking). Received: mask of shape {shape_of(mask)}"
            )
        return allowed[:, :, 0, :, None].to(work)  # [b, h, Tk, 1]

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
        if context is not None:
            check_sequence(part, "context", context, self.dim, batch=batch)
            if causal:
                raise ShapeError(
                    f"attention part `{part}`: expected causal=False with a `context` "
                    "(causal cross-attention is not supported). Received: causal=True"
                )
        state = None if cache is None else check_cache(part, cache)
        if need_weights and state is not None:
            raise NNBlocksError(
                f"attention part `{part}`: need_weights=True cannot be combined with a cache: "
                "the cache keeps running sums, not the keys the weights are made of. "
                "Received: need_weights=True, cache=dict"
            )
        offset = 0 if state is None else state.get("offset", 0)
        work = torch.float32 if x.dtype in (torch.float16, torch.bfloat16) else x.dtype
        q = _feature_map(self._heads(self.q_proj(x), work))  # [B, H, Tq, Dh]
        src = x if context is None else context
        tk = offset + tq if context is None else context.shape[1]
        keep = self._key_mask(mask, x, tk, work)
        weights = None
        if context is not None and state is not None and "context_S" in state:
            s, z = state["context_S"], state["context_z"]
            self._check_state(s, batch)
            out, den = _read_out(q, s, z)
        else:
            k = _feature_map(self._heads(self.k_proj(src), work))  # [B, H, Tk_new, Dh]
            v = self._heads(self.v_proj(src), work)
            if keep is not None:  # a masked key contributes nothing to any sum
                k = k * keep[:, :, keep.shape[2] - k.shape[2] :]
            if need_weights:
                out, weights, den = self._explicit(q, k, v, causal)
            elif context is not None:
                s, z = _global_sums(k, v, None, None)
                out, den = _read_out(q, s, z)
                if state is not None:
                    state["context_S"], state["context_z"] = s, z
            else:
                s0, z0 = (state.get("S"), state.get("z")) if state is not None else (None, None)
                if s0 is not None:
                    self._check_state(s0, batch)
                if causal:
                    out, s, z, den = _causal_chunks(q, k, v, s0, z0, self.chunk)
                else:
                    s, z = _global_sums(k, v, s0, z0)
                    out, den = _read_out(q, s, z)
                if state is not None:
                    state["S"], state["z"] = s, z
        out = out.to(x.dtype).transpose(1, 2).reshape(batch, tq, self.dim)
        out = self.out_proj(out)  # [B, Tq, D]
        if mask is not None or state is not None:  # rows that attended nothing stay zero
            out = out.masked_fill(~(den != 0).any(dim=1)[..., None], 0.0)
        if state is not None:
            state["offset"] = offset + tq
        if weights is not None:
            weights = weights.to(x.dtype)
        return pack_outputs(out, weights, state, need_weights)

    def _explicit(
        self, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, causal: bool
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        scores = q @ k.transpose(-2, -1)  # [B, H, Tq, Tk], non-negative
        if causal:
            scores = scores.tril()
        den = scores.sum(-1)  # [B, H, Tq]
        weights = _safe_divide(scores, den[..., None])
        return weights @ v, weights, den

    def _check_state(self, s: Any, batch: int) -> None:
        if not isinstance(s, torch.Tensor) or s.dim() != 4 or s.shape[0] != batch:
            raise ShapeError(
                f"attention part `{self.part_name}`: the cache does not fit this call: expected "
                f"running sums [B={batch}, H, Dh, Dh] from an earlier step of the same batch. "
                f"Received: {shape_of(s)}"
            )
