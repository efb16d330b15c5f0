"""Kind `attention`: mixes information across positions. This docstring is its contract.

Construction::

    part = Part(dim, heads, **options)        # every option has a default

Call::

    out = part(x, context=None, mask=None, causal=False)             # [B, Tq, dim]
    out, weights = part(x, ..., need_weights=True)                    # weights [B, H, Tq, Tk]
    out, cache = part(x, ..., cache=cache)                            # incremental decoding
    out, weights, cache = part(x, ..., need_weights=True, cache=cache)

- ``x`` is ``[B, Tq, dim]``; ``context`` is ``[B, Tk, dim]`` for cross-attention, or None
  (self-attention: the keys are ``x``).
- ``mask`` is bool, True = may attend: 2-D ``[B, Tk]`` per key (padding); 3-D
  ``[B, Tq, Tk]``; 4-D broadcastable to ``[B, H, Tq, Tk]``. (``torch.nn.MultiheadAttention``
  uses the opposite, True = blocked.)
- ``causal=True`` is a flag, never a matrix passed in: query ``i`` attends keys at positions
  ``<= i``, offset by the cached length, so the fused kernels can be used.
- Optional capabilities are keyword parameters of ``forward``, detected with
  ``inspect.signature``: ``cache``, ``need_weights``; and the constructor option
  ``position`` (a relative position part: rotary, ALiBi).
- Cache: the caller passes a dict, ``{}`` at the first step, and must use the dict the part
  returns (the one passed in is not changed). Every tensor in it has batch first (beam
  search reorders it with ``index_select(0, ...)``); other values are ints
  (``offset``: positions decoded so far). With a cache, ``x`` holds only the new
  positions and the mask covers all keys, cached and new (``[B, T_cached + T_new]``).
  Cross-attention may keep the projected context in the cache. A step-by-step decode
  gives the same outputs as one causal pass.
- Query rows with no key to attend return zeros, never NaN (and finite gradients).
- The output keeps the input's dtype and device.
- A wrong rank or width of ``x``, ``context`` or ``mask`` raises ``ShapeError`` naming the part.

Built-in parts: ``mha``, ``gqa``, ``mqa`` (multihead.py), ``local`` (sliding window),
``linear`` (kernelized, O(T)), ``additive`` (Bahdanau), ``multiplicative`` (Luong), and the
combinators ``parallel`` and ``sequential`` (combine.py).

Example:
    >>> import torch, nnblocks
    >>> attn = nnblocks.build("mha", "attention", dim=32, heads=4)
    >>> x = torch.randn(2, 6, 32)
    >>> out, cache = attn(x[:, :1], causal=True, cache={})
    >>> out, cache = attn(x[:, 1:2], causal=True, cache=cache)
    >>> cache["offset"]
    2
"""

from nnblocks.parts.attention import combine  # noqa: F401  (registers parallel, sequential)
from nnblocks.parts.attention.additive import AdditiveAttention
from nnblocks.parts.attention.linear import LinearAttention
from nnblocks.parts.attention.local import LocalAttention
from nnblocks.parts.attention.multihead import (
    GroupedQueryAttention,
    MultiHeadAttention,
    MultiQueryAttention,
)
from nnblocks.parts.attention.multiplicative import MultiplicativeAttention

__all__ = [
    "MultiHeadAttention",
    "GroupedQueryAttention",
    "MultiQueryAttention",
    "LocalAttention",
    "LinearAttention",
    "AdditiveAttention",
    "MultiplicativeAttention",
]
