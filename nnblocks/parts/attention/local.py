"""`local`: sliding-window attention (Child et al. 2019; Beltagy et al. 2020, Longformer)."""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F

from nnblocks.parts.attention._base import AttendCall
from nnblocks.parts.attention._kernel import dot_product_attention
from nnblocks.parts.attention._masks import band_mask, safe_rows
from nnblocks.parts.attention.multihead import GroupedQueryAttention
from nnblocks.parts.boundary import check_positive_int
from nnblocks.registry import register

__all__ = ["LocalAttention"]

_is_exporting = getattr(torch.compiler, "is_exporting", lambda: False)  # older torch lacks it


def _exporting() -> bool:
    """Inside torch.export / ONNX export (either exporter), where sizes are symbolic.

    The blocked path pads to whole windows and reshapes by ``ceil(T / window)``; exported,
    those reshapes were fixed to the example's length (onnxruntime then failed with a
    reshape error at other lengths, issue 14). The banded mask path is exact at any length.
    """
    return bool(_is_exporting() or torch.jit.is_tracing() or torch.onnx.is_in_onnx_export())


@register("attention", "local")
class LocalAttention(GroupedQueryAttention):
    """Sliding-window attention: each query attends only the keys near it.

    Causal: query at position ``p`` attends keys ``p - window + 1 .. p`` (the ``window``
    most recent, itself included). Not causal: a symmetric band, ``|p - k| < window``
    (``window - 1`` keys on each side and itself). Long self-attention runs in blocks of
    ``window`` queries against their neighbouring blocks, so time and memory grow as
    ``T * window``, not ``T * T``; short inputs, cross-attention, weights, per-query masks and
    bias-producing positions (ALiBi) use one banded mask.

    Same projections and parameter names as `gqa`/`mha`, so weights copy across.

    Args:
        dim: model width; ``dim // heads`` is the head width.
        heads: number of query heads; must divide ``dim``.
        window: how many keys a query sees on each side (itself included); >= 1.
        kv_heads: number of key/value heads (grouped-query); None: as many as ``heads``.
        dropout: attention dropout probability, applied in training only.
        bias: whether the four projections have biases.
        position: a relative position spec (``"rotary"``, ``"alibi"``, ...), or None.
        head_dim, out_bias: as for `gqa` (head width other than ``dim // heads``; a bias
            on the output projection other than ``bias``).

    Call arguments:
        x: ``[B, Tq, dim]``.
        context: ``[B, Tk, dim]`` for cross-attention (positions ``0..Tk-1`` against
            query positions), or None.
        mask: bool, True = may attend: ``[B, Tk]``, ``[B, Tq, Tk]`` or broadcastable to
            ``[B, H, Tq, Tk]``; with a cache it covers all keys, cached and new.
        causal: one-sided window (see above) instead of the symmetric band.
        need_weights: also return the weights ``[B, H, Tq, Tk]``.
        cache: a dict (``{}`` at first). The cache keeps only the last ``window - 1``
            keys and values, all a causal step needs, so its memory is bounded.

    Returns:
        ``out [B, Tq, dim]``, plus ``weights`` and/or ``cache`` when asked. Query rows
        with no key in reach are zeros.

    Raises:
        ShapeError: wrong rank or width of ``x``/``context``, or a mask that does not fit.
        SpecError: (construction) ``window`` is not a positive integer, or bad heads.

    Example:
        >>> import torch, nnblocks
        >>> attn = nnblocks.build({"name": "local", "window": 4}, "attention", dim=32, heads=4)
        >>> attn(torch.randn(2, 16, 32), causal=True).shape
        torch.Size([2, 16, 32])
    """

    part_name = "local"

    def __init__(
        self,
        dim: int,
        heads: int,
        window: int = 128,
        kv_heads: int | None = None,
        dropout: float = 0.0,
        bias: bool = True,
        position: Any = None,
        head_dim: int | None = None,
        out_bias: bool | None = None,
    ):
        check_positive_int(window, "window", where=f"part `{self.part_name}`")
        super().__init__(
            dim,
            heads,
            kv_heads=heads if kv_heads is None else kv_heads,
            dropout=dropout,
            bias=bias,
            position=position,
            head_dim=head_dim,
            out_bias=out_bias,
        )
        self.window = window
        self.keep_keys = window - 1

    def extra_repr(self) -> str:
        return super().extra_repr() + f", window={self.window}"

    def _attend(
        self, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, call: AttendCall
    ) -> tuple[torch.Tensor, torch.Tensor | None, torch.Tensor | None]:
        allowed, bias, causal, q_start, k_start, need_weights, self_attention = call
        tq, tk, window = q.shape[2], k.shape[2], self.window
        blocked = (
            self_attention
            and q_start == k_start == 0
            and tq == tk > 2 * window
            and bias is None
            and not need_weights
            and (allowed is None or (allowed.shape[2] == 1 and allowed.shape[3] == tk))
            and not _exporting()  # exported, the band below keeps every size symbolic
        )
        if blocked:
            out, rows = self._attend_blocked(q, k, v, allowed, causal)
            return out, None, rows
        # The largest query-key distance decides whether the window cuts anything at all.
        reach_back = q_start + tq - 1 - k_start
        reach_ahead = 0 if causal else k_start + tk - 1 - q_start
        band: torch.Tensor | None = None
        if max(reach_back, reach_ahead) >= window:
            band = band_mask(tq, tk, q_start, k_start, window, causal, q.device)  # [Tq, Tk]
        return self._softmax_attend(q, k, v, call, band=band)

    def _attend_blocked(
        self,
        q: torch.Tensor,
        k: torch.Tensor,
        v: torch.Tensor,
        allowed: torch.Tensor | None,
        causal: bool,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Blocks of ``window`` queries against the blocks before (and after) them.

        Returns:
            ``(out [B, H, T, Dv], valid [B, 1, T, 1])``.
        """
        b, h, t, d = q.shape
        hkv, w = k.shape[1], self.window
        n = -(-t // w)  # blocks
        pad = n * w - t
        spans = 2 if causal else 3  # key blocks per query block: previous, own (, next)
        after = pad + (0 if causal else w)
        q = F.pad(q, (0, 0, 0, pad)).view(b, h, n, w, d)  # [B, H, N, W, Dh]
        kp = F.pad(k, (0, 0, w, after)).view(b, hkv, n + spans - 1, w, d)
        vp = F.pad(v, (0, 0, w, after)).view(b, hkv, n + spans - 1, w, v.shape[-1])
        k = torch.cat([kp[:, :, s : s + n] for s in range(spans)], dim=3)  # [B, Hkv, N, S*W, Dh]
        v = torch.cat([vp[:, :, s : s + n] for s in range(spans)], dim=3)
        # Keys that exist (and that a per-key mask lets through), cut into the same blocks.
        keys = allowed[:, :, 0, :] if allowed is not None else q.new_ones(1, 1, t, dtype=torch.bool)
        km = F.pad(keys, (w, after), value=False).view(*keys.shape[:2], n + spans - 1, w)
        km = torch.cat([km[:, :, s : s + n] for s in range(spans)], dim=3)  # [b, h, N, S*W]
        # Query a of block i sits at i*W + a, key c of its span at (i-1)*W + c.
        dist = (
            torch.arange(w, device=q.device)[:, None]
            + w
            - torch.arange(spans * w, device=q.device)[None, :]
        )  # [W, S*W]
        band = (dist >= 0) & (dist < w) if causal else dist.abs() < w
        mask = km[:, :, :, None, :] & band  # [b, h, N, W, S*W]
        # Blocks join the batch so the fused 4-D kernels apply.
        mask = mask.expand(b, mask.shape[1], n, w, spans * w).transpose(1, 2)
        mask = mask.reshape(b * n, -1, w, spans * w)  # [B*N, h, W, S*W]
        mask, valid = safe_rows(mask)
        out, _ = dot_product_attention(
            q.transpose(1, 2).reshape(b * n, h, w, d),
            k.transpose(1, 2).reshape(b * n, hkv, spans * w, d),
            v.transpose(1, 2).reshape(b * n, hkv, spans * w, v.shape[-1]),
            allowed=mask,
            is_causal=False,
            valid=valid,
            bias=None,
            dropout_p=self.dropout if self.training else 0.0,
            scale=self.scale,
            need_weights=False,
        )  # [B*N, H, W, Dh]
        out = out.view(b, n, h, w, -1).transpose(1, 2).reshape(b, h, n * w, -1)
        valid = valid.view(b, n, -1, w).any(dim=2).reshape(b, 1, n * w, 1)
        return out[:, :, :t], valid[:, :, :t]
