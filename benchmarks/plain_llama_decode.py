"""Greedy decoding of a Llama-style model written plainly: the decoding benchmark's floor.

What a careful hand-written loop does on the CPU: the weights as a state dict, ``F.linear``,
``F.rms_norm``, rotary tables made once, a key/value cache allocated for the whole call and
written in place, and ``scaled_dot_product_attention`` with grouped key/value heads. No
modules, no checks, no hooks: the time left is the arithmetic and torch's own dispatch, so
nnblocks' ratio to it is the cost of the library around the same operations.

It reads the state dict of the benchmark's nnblocks model (``decoder.layers.N.
self_attention.q_proj.weight``..., SwiGLU's gate and up rows in one ``up`` matrix) and the
config dict of ``decode.py``, so works without transformers.
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F

__all__ = ["greedy"]


def _rotary_tables(config: dict[str, Any], length: int) -> tuple[torch.Tensor, torch.Tensor]:
    head = config["hidden_size"] // config["num_attention_heads"]
    inv = 1.0 / (config["rope_theta"] ** (torch.arange(0, head, 2, dtype=torch.float32) / head))
    angles = torch.arange(length, dtype=torch.float32)[:, None] * inv[None]  # [T, Dh/2]
    angles = torch.cat([angles, angles], -1)  # [T, Dh]
    return angles.cos(), angles.sin()


def _rotate(x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
    """Llama's rotary embedding with ``rotate_half``: ``x`` ``[B, H, T, Dh]``."""
    x1, x2 = x.chunk(2, -1)
    return x * cos + torch.cat([-x2, x1], -1) * sin


def greedy(
    state: dict[str, torch.Tensor], config: dict[str, Any], prompt: torch.Tensor, new: int
) -> torch.Tensor:
    """``[B, T0 + new]``: ``prompt`` and ``new`` greedily chosen tokens."""
    w = state
    batch, length = prompt.shape
    layers, eps = config["num_hidden_layers"], config["rms_norm_eps"]
    heads, kv_heads = config["num_attention_heads"], config["num_key_value_heads"]
    head = config["hidden_size"] // heads
    cos_table, sin_table = _rotary_tables(config, length + new)
    keys = [torch.empty(batch, kv_heads, length + new, head) for _ in range(layers)]
    values = [torch.empty(batch, kv_heads, length + new, head) for _ in range(layers)]
    tokens = torch.empty(batch, length + new, dtype=prompt.dtype)
    tokens[:, :length] = prompt
    ids, start = prompt, 0
    with torch.no_grad():
        for step in range(new):
            t = ids.shape[1]
            end = start + t
            x = F.embedding(ids, w["embedding.weight"])  # [B, t, D]
            cos, sin = cos_table[start:end], sin_table[start:end]
            for i in range(layers):
                p = f"decoder.layers.{i}."
                h = F.rms_norm(x, x.shape[-1:], w[p + "self_attention_norm.weight"], eps)
                q = F.linear(h, w[p + "self_attention.q_proj.weight"])
                k = F.linear(h, w[p + "self_attention.k_proj.weight"])
                v = F.linear(h, w[p + "self_attention.v_proj.weight"])
                q = _rotate(q.view(batch, t, heads, head).transpose(1, 2), cos, sin)
                k = _rotate(k.view(batch, t, kv_heads, head).transpose(1, 2), cos, sin)
                keys[i][:, :, start:end] = k
                values[i][:, :, start:end] = v.view(batch, t, kv_heads, head).transpose(1, 2)
                out = F.scaled_dot_product_attention(
                    q, keys[i][:, :, :end], values[i][:, :, :end], is_causal=t > 1, enable_gqa=True
                )  # [B, H, t, Dh]
                out = out.transpose(1, 2).reshape(batch, t, heads * head)
                x = x + F.linear(out, w[p + "self_attention.out_proj.weight"])
                h = F.rms_norm(x, x.shape[-1:], w[p + "feedforward_norm.weight"], eps)
                gate, up = F.linear(h, w[p + "feedforward.up.weight"]).chunk(2, -1)
                x = x + F.linear(F.silu(gate) * up, w[p + "feedforward.down.weight"])
            last = F.rms_norm(x[:, -1], x.shape[-1:], w["decoder.final_norm.weight"], eps)  # [B, D]
            ids = F.linear(last, w["head.weight"]).argmax(-1, keepdim=True)  # [B, 1]
            tokens[:, length + step] = ids[:, 0]
            start = end
    return tokens
