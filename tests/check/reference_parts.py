"""Small correct parts of every kind, written here from their definitions, and broken twins.

The kit is tested on these as well as on the built-ins, so its tests do not depend on the
built-in parts being right. Each broken part differs from a correct one by one fault.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

# ---- norm ----


class LayerNormRef(nn.Module):
    """LayerNorm over the last axis (Ba et al. 2016)."""

    def __init__(self, dim: int, eps: float = 1e-5):
        super().__init__()
        self.weight = nn.Parameter(torch.ones(dim))
        self.bias = nn.Parameter(torch.zeros(dim))
        self.eps = eps

    def forward(self, x):
        mean = x.mean(-1, keepdim=True)
        var = x.var(-1, keepdim=True, unbiased=False)
        return (x - mean) / torch.sqrt(var + self.eps) * self.weight + self.bias


class RMSNormRef(nn.Module):
    """RMSNorm over the last axis (Zhang & Sennrich 2019)."""

    def __init__(self, dim: int, eps: float = 1e-6):
        super().__init__()
        self.weight = nn.Parameter(torch.ones(dim))
        self.eps = eps

    def forward(self, x):
        return x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + self.eps) * self.weight


class RMSNormInPlace(RMSNormRef):
    """Fault: normalises its input in place (the pre-norm block's residual then changes)."""

    def forward(self, x):
        scale = torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + self.eps)
        return x.mul_(scale).mul_(self.weight) if not x.requires_grad else x * scale * self.weight


class BatchNormRef(nn.Module):
    """BatchNorm over every axis but the last (features last)."""

    def __init__(self, dim: int):
        super().__init__()
        self.bn = nn.BatchNorm1d(dim)

    def forward(self, x):
        shape = x.shape
        return self.bn(x.reshape(-1, shape[-1])).reshape(shape)


class NormOverTime(LayerNormRef):
    """Fault: statistics over the time axis instead of the features."""

    def forward(self, x):
        mean = x.mean(-2, keepdim=True)
        var = x.var(-2, keepdim=True, unbiased=False)
        return (x - mean) / torch.sqrt(var + self.eps) * self.weight + self.bias


class FrozenBatchNorm(BatchNormRef):
    """Fault: BatchNorm whose running statistics never move (momentum 0)."""

    def __init__(self, dim: int):
        super().__init__(dim)
        self.bn.momentum = 0.0


# ---- position ----


class SinusoidalRef(nn.Module):
    """Absolute sinusoidal positions added to x (Vaswani et al. 2017)."""

    relative = False

    def __init__(self, dim: int, max_len: int = 128):
        super().__init__()
        pos = torch.arange(max_len)[:, None]
        freq = torch.exp(torch.arange(0, dim, 2) * (-math.log(10000.0) / dim))
        table = torch.zeros(max_len, dim)
        table[:, 0::2] = torch.sin(pos * freq)
        table[:, 1::2] = torch.cos(pos * freq)
        self.register_buffer("table", table, persistent=False)

    def forward(self, x, offset: int = 0):
        return x + self.table[offset : offset + x.shape[1]].to(x.dtype)


class OffsetIgnored(SinusoidalRef):
    """Fault: `offset` is accepted but ignored (decoding restarts positions at 0)."""

    def forward(self, x, offset: int = 0):
        return super().forward(x, 0)


class RotaryRef(nn.Module):
    """Rotary positions (Su et al. 2021): rotate q and k by their absolute positions."""

    relative = True

    def __init__(self, dim: int, heads: int = 1, max_len: int = 128, base: float = 10000.0):
        super().__init__()
        self.register_buffer(
            "inv_freq", base ** (-torch.arange(0, dim, 2).float() / dim), persistent=False
        )

    def rotate(self, t, pos):
        angles = pos[:, None].to(t.dtype) * self.inv_freq.to(t.dtype)  # [T, Dh/2]
        cos, sin = angles.cos(), angles.sin()
        a, b = t[..., 0::2], t[..., 1::2]
        return torch.stack([a * cos - b * sin, a * sin + b * cos], -1).flatten(-2)

    def adjust(self, q, k, q_pos, k_pos):
        return self.rotate(q, q_pos), self.rotate(k, k_pos), None


class AbsoluteBias(RotaryRef):
    """Fault: a bias that grows with the query's absolute position (not shift invariant)."""

    def adjust(self, q, k, q_pos, k_pos):
        bias = 0.1 * q_pos[:, None].to(q.dtype).expand(len(q_pos), len(k_pos))
        return q, k, bias


# ---- feedforward, activation, embedding, regularization ----


class MLPRef(nn.Module):
    def __init__(self, dim: int, hidden: int | None = None):
        super().__init__()
        self.up = nn.Linear(dim, hidden or 4 * dim)
        self.down = nn.Linear(hidden or 4 * dim, dim)

    def forward(self, x):
        return self.down(F.gelu(self.up(x)))


class MixesPositions(MLPRef):
    """Fault: a running sum over time sneaks information across positions."""

    def forward(self, x):
        return super().forward(x.cumsum(1))


class ClampsInPlace(MLPRef):
    """Fault: clamps its input in place before the first projection."""

    def forward(self, x):
        return super().forward(x.clamp_(-1.0, 1.0) if not x.requires_grad else x.clamp(-1, 1))


class GeluRef(nn.Module):
    def forward(self, x):
        return F.gelu(x)


class SoftmaxActivation(nn.Module):
    """Fault: not element-wise (normalises over the last axis)."""

    def forward(self, x):
        return torch.softmax(x, -1)


class EmbeddingRef(nn.Module):
    def __init__(self, dim: int, vocab_size: int, padding_idx: int | None = None):
        super().__init__()
        self.table = nn.Embedding(vocab_size, dim, padding_idx=padding_idx)

    @property
    def weight(self):
        return self.table.weight

    def forward(self, ids):
        return self.table(ids)


class DropoutRef(nn.Module):
    def __init__(self, p: float = 0.1):
        super().__init__()
        self.p = p

    def forward(self, x):
        return F.dropout(x, self.p, self.training)


class InPlaceRelu(nn.Module):
    """torch's memory-saving `inplace=True`: fine on an intermediate, so only a warning."""

    def forward(self, x):
        return F.relu(x, inplace=not x.requires_grad)


class NoisyInEval(DropoutRef):
    """Fault: drops values in eval mode too."""

    def forward(self, x):
        return F.dropout(x, self.p, True)
