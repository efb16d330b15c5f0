"""The softmax attention kernel shared by the attention parts.

``prepare_mask`` turns (user mask, causal flag, sliding band) into what the kernel needs,
materialising a ``[Tq, Tk]`` matrix only when ``F.scaled_dot_product_attention`` cannot take
the causal flag itself. ``dot_product_attention`` calls the fused kernel unless the weights
are asked for; ``softmax_attention`` is the explicit path, also used by parts whose scores
are not dot products (additive attention).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from nnblocks.parts.attention._masks import causal_is_trivial, causal_mask, safe_rows

__all__ = ["prepare_mask", "dot_product_attention", "softmax_attention", "pack_outputs"]


def prepare_mask(
    tq: int,
    tk: int,
    *,
    mask: torch.Tensor | None,
    causal: bool,
    q_start: int,
    k_start: int,
    device: torch.device,
    fused: bool,
    band: torch.Tensor | None = None,
) -> tuple[torch.Tensor | None, bool, torch.Tensor | None]:
    """Combine the ways of masking into one bool mask, or the flag ``is_causal``.

    Args:
        tq, tk: numbers of queries and keys in this call.
        mask: the user's mask as ``[B|1, H|1, Tq|1, Tk]`` bool (see ``normalize_mask``).
        causal: a key's position must be at most its query's.
        q_start, k_start: positions of the first query and the first key.
        device: where to build a matrix, if one is needed.
        fused: the caller will use the fused kernel without a bias, so a plain causal
            pass may be left to ``is_causal=True`` (its flash and efficient kernels).
        band: ``[Tq, Tk]`` bool that already encodes the causal rule (sliding window).

    Returns:
        ``(allowed, is_causal, valid)``: a 4-D bool mask or None; the flag for the fused
        kernel; ``[B|1, H|1, Tq|1, 1]`` bool of rows that had a key (None: all had).
    """
    allowed = mask
    if band is not None:
        band = band[None, None]  # [1, 1, Tq, Tk]
        allowed = band if allowed is None else allowed & band
    elif causal and not causal_is_trivial(tq, tk, q_start, k_start):
        if fused and allowed is None and q_start == k_start and tq == tk:
            return None, True, None
        rule = causal_mask(tq, tk, q_start, k_start, device)[None, None]  # [1, 1, Tq, Tk]
        allowed = rule if allowed is None else allowed & rule
    if allowed is None:
        return None, False, None
    if mask is None and band is None:
        return allowed, False, None  # a causal rule alone leaves every row a key
    allowed, valid = safe_rows(allowed)
    return allowed, False, valid


def _additive_mask(
    allowed: torch.Tensor | None, bias: torch.Tensor | None, dtype: torch.dtype
) -> torch.Tensor | None:
    if bias is None:
        return allowed
    bias = bias.to(dtype)
    if allowed is None:
        return bias
    return bias.masked_fill(~allowed, float("-inf"))


def softmax_attention(
    scores: torch.Tensor,
    v: torch.Tensor,
    *,
    attn_mask: torch.Tensor | None,
    valid: torch.Tensor | None,
    dropout_p: float,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Explicit attention from scores: ``(softmax(scores + mask) @ v, weights)``.

    Args:
        scores: ``[B, H, Tq, Tk]``.
        v: ``[B, H, Tk, Dv]``.
        attn_mask: bool (True = may attend) or an additive float mask, broadcastable.
        valid: ``[..., Tq, 1]`` rows that had a key; the others get zero weights.
        dropout_p: dropout on the weights used for the output (the returned weights are
            the ones before dropout, so their rows sum to 1).

    Returns:
        ``(out [B, H, Tq, Dv], weights [B, H, Tq, Tk])``.
    """
    if attn_mask is not None:
        if attn_mask.dtype == torch.bool:
            scores = scores.masked_fill(~attn_mask, float("-inf"))
        else:
            scores = scores + attn_mask
    weights = torch.softmax(scores, dim=-1)
    if valid is not None:
        weights = weights.masked_fill(~valid, 0.0)
    used = F.dropout(weights, dropout_p) if dropout_p > 0 else weights
    return used @ v, weights


def dot_product_attention(
    q: torch.Tensor,
    k: torch.Tensor,
    v: torch.Tensor,
    *,
    allowed: torch.Tensor | None,
    is_causal: bool,
    valid: torch.Tensor | None,
    bias: torch.Tensor | None,
    dropout_p: float,
    scale: float | None,
    need_weights: bool,
) -> tuple[torch.Tensor, torch.Tensor | None]:
    """Scaled dot-product attention with grouped key/value heads.

    Args:
        q: ``[B, H, Tq, Dh]``; k, v: ``[B, Hkv, Tk, Dh]`` with ``Hkv`` dividing ``H``
            (query head ``h`` reads key/value head ``h // (H // Hkv)``).
        allowed, is_causal, valid: from ``prepare_mask`` (``is_causal`` only with the
            fused kernel: ``need_weights=False`` and no ``bias``).
        bias: None or an additive float bias broadcastable to ``[B, H, Tq, Tk]`` (ALiBi).
        dropout_p: attention dropout (0 outside training).
        scale: score scale; None is ``1 / sqrt(Dh)``.
        need_weights: also return the weights (explicit path, not the fused kernel).

    Returns:
        ``(out [B, H, Tq, Dh], weights [B, H, Tq, Tk] or None)``; rows without any key
        are zeros.
    """
    groups = q.shape[1] // k.shape[1]
    attn_mask = _additive_mask(allowed, bias, q.dtype)
    if not need_weights:
        extra = {"enable_gqa": True} if groups > 1 else {}
        out = F.scaled_dot_product_attention(
            q,
            k,
            v,
            attn_mask=attn_mask,
            dropout_p=dropout_p,
            is_causal=is_causal,
            scale=scale,
            **extra,
        )  # [B, H, Tq, Dh]
        weights = None
    else:
        if groups > 1:
            k = k.repeat_interleave(groups, dim=1)  # [B, H, Tk, Dh]
            v = v.repeat_interleave(groups, dim=1)
        factor = q.shape[-1] ** -0.5 if scale is None else scale
        scores = (q @ k.transpose(-2, -1)) * factor  # [B, H, Tq, Tk]
        out, weights = softmax_attention(
            scores, v, attn_mask=attn_mask, valid=valid, dropout_p=dropout_p
        )
    if valid is not None:
        out = out.masked_fill(~valid, 0.0)
    return out, weights


def pack_outputs(
    out: torch.Tensor, weights: torch.Tensor | None, cache: dict | None, need_weights: bool
):
    """``out``, ``(out, weights)``, ``(out, cache)`` or ``(out, weights, cache)``."""
    if not need_weights and cache is None:
        return out
    result: tuple = (out,)
    if need_weights:
        result += (weights,)
    if cache is not None:
        result += (cache,)
    return result
