"""Kind `position`: where each token sits. This docstring is its contract.

Two families, told apart by the class attribute ``relative``.

Absolute parts (``relative = False``: ``none``, ``sinusoidal``, ``learned``) add position
information to the embeddings::

    part = Part(dim, max_len=...)
    y = part(x, offset=0)                 # x [B, T, dim] -> [B, T, dim]
    y = part(x, positions=positions)      # positions [B, T] long: each token's own position

``offset`` is the position of ``x[:, 0]`` (used while decoding one step at a time).
``positions``, when given, replaces ``offset``: row ``b`` token ``t`` gets position
``positions[b, t]`` (a left-padded row counts from its first real token, as Hugging Face
models do with ``position_ids``). A sequence reaching past ``max_len`` raises ``ShapeError``
naming the part and ``max_len``.

Relative parts (``relative = True``: ``rotary``, ``alibi``) are handed to attention through
its ``position=`` option and built there with ``dim=head_dim, heads=heads``::

    q, k, bias = part.adjust(q, k, q_pos, k_pos)
    # q [B, H, Tq, Dh], k [B, Hkv, Tk, Dh] (Hkv may be fewer than H: grouped-query),
    # q_pos [Tq], k_pos [Tk] long positions; bias is None or an additive float bias
    # broadcastable to [B, H, Tq, Tk], in q's dtype.

Optionally, for decoding with a cache::

    q, k_new, bias = part.adjust_cached(q, k_new, q_pos, k_pos)
    # k_new holds only the newest keys, at positions k_pos[-k_new.shape[2]:]; bias covers
    # all of k_pos. Keys returned here are cached as they are, so define it only when a
    # key's adjustment depends on nothing but the key and its own position.

Attention parts use ``adjust_cached`` when it exists; otherwise they cache raw keys and call
``adjust`` on all of them at every step (correct for any relative part, only slower).
Relative parts called like absolute ones (``part(x, offset, positions)``) return ``x`` unchanged: a model
whose position slot holds a relative part adds nothing to its embeddings.

Every part keeps the dtype and device of its input.
"""

from __future__ import annotations

import functools
import math
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from nnblocks._tracing import tracing as _tracing
from nnblocks.errors import ShapeError
from nnblocks.parts._docs import shared_sections
from nnblocks.parts.attention._checks import check_option, shape_of
from nnblocks.parts.boundary import check_positive_int, is_positive_int
from nnblocks.registry import register

__all__ = [
    "NoPosition",
    "SinusoidalPosition",
    "LearnedPosition",
    "RotaryPosition",
    "ALiBiPosition",
    "alibi_slopes",
]


def _check_positions(part: str, x: torch.Tensor, positions: object, max_len: int) -> None:
    if (
        not isinstance(positions, torch.Tensor)
        or positions.shape != x.shape[:2]
        or positions.dtype not in (torch.int64, torch.int32)
    ):
        raise ShapeError(
            f"position part `{part}`: expected `positions` as integer positions [B, T] = "
            f"{list(x.shape[:2])} (one per token of x). Received: {shape_of(positions)}"
            + (f" of dtype {positions.dtype}" if isinstance(positions, torch.Tensor) else "")
        )
    if positions.numel() and not _tracing_now():
        low, high = torch.aminmax(positions)
        if bool((low < 0) | (high >= max_len)):  # one host sync, only with explicit positions
            raise ShapeError(
                f"position part `{part}`: expected `positions` in [0, max_len={max_len}). "
                f"Received: positions from {int(low)} to {int(high)}. Build the part with a "
                "larger `max_len`."
            )


def _tracing_now() -> bool:
    return bool(torch.compiler.is_compiling() or torch.jit.is_tracing())


def _check_absolute_input(part: str, x: object, dim: int, offset: object, max_len: int) -> None:
    if not isinstance(x, torch.Tensor) or x.dim() != 3 or x.shape[-1] != dim:
        raise ShapeError(
            f"position part `{part}`: expected `x` of shape [B, T, {dim}] (batch, time, "
            f"dim={dim}). Received: x of shape {shape_of(x)}"
        )
    # torch.SymInt: a symbolic offset while torch.export traces a decoding step.
    if not isinstance(offset, (int, torch.SymInt)) or isinstance(offset, bool) or offset < 0:
        raise ShapeError(
            f"position part `{part}`: expected `offset` to be a non-negative int. "
            f"Received: offset={offset!r}"
        )
    if offset + x.shape[1] > max_len:
        raise ShapeError(
            f"position part `{part}`: positions {offset}..{offset + x.shape[1] - 1} reach past "
            f"max_len={max_len}. Received: x of shape {shape_of(x)} with offset={offset}. "
            "Build the part with a larger `max_len`."
        )


@register("position", "none")
class NoPosition(nn.Module):
    """No position information: returns ``x`` unchanged (for order-free inputs, or ablations).

    Args:
        dim: model width (accepted for the common signature; unused).
        max_len: accepted for the common signature; unused: ``.max_len`` is None (no limit).

    Call arguments:
        x: ``[B, T, dim]``.
        offset: position of ``x[:, 0]``; unused.
        positions: ``[B, T]`` positions; unused.

    Returns:
        ``x`` itself.

    Example:
        >>> import torch, nnblocks
        >>> pos = nnblocks.build("none", "position", dim=8)
        >>> x = torch.randn(2, 3, 8)
        >>> bool((pos(x) == x).all())
        True
    """

    relative = False

    def __init__(self, dim: int | None = None, max_len: int | None = None):
        super().__init__()
        self.dim, self.max_len = dim, None  # no position, so no last one

    def forward(
        self, x: torch.Tensor, offset: int = 0, positions: torch.Tensor | None = None
    ) -> torch.Tensor:
        return x


_TABLE_DOC = """
    Call arguments:
        x: ``[B, T, dim]``.
        offset: position of ``x[:, 0]``.
        positions: ``[B, T]`` long, each token's position (replaces ``offset``), or None.

    Returns:
        ``x`` plus the table's rows ``offset`` to ``offset + T - 1`` (rows ``positions``
        when given), ``[B, T, dim]``; a fixed table's rows take x's dtype first.

    Raises:
        ShapeError: ``x`` is not ``[B, T, dim]``, or ``offset + T > max_len``.
        SpecError: (construction) ``dim`` or ``max_len`` not a positive integer.
"""


class _TablePosition(nn.Module):
    """The call path of the absolute parts that add row ``p`` of a ``[max_len, D]`` table.

    A subclass sets ``part_name``, passes ``dim`` and ``max_len`` to ``__init__`` and returns
    its table from ``_table()``; ``cast`` says whether the rows take x's dtype (a fixed float32 table) or
    stay as they are (a parameter, which autocast and type promotion handle).
    """

    relative = False
    part_name = ""
    cast = False

    def __init__(self, dim: int, max_len: int):
        super().__init__()
        check_positive_int(dim, "dim", where=f"part `{self.part_name}`")
        check_positive_int(max_len, "max_len", where=f"part `{self.part_name}`")
        self.dim, self.max_len = dim, max_len

    def _table(self) -> torch.Tensor:  # [max_len, D]
        raise NotImplementedError

    def extra_repr(self) -> str:
        return f"dim={self.dim}, max_len={self.max_len}"

    def forward(
        self, x: torch.Tensor, offset: int = 0, positions: torch.Tensor | None = None
    ) -> torch.Tensor:
        part = self.part_name
        if positions is not None:
            _check_absolute_input(part, x, self.dim, 0, self.max_len)
            _check_positions(part, x, positions, self.max_len)
            rows = F.embedding(positions, self._table())  # [B, T, D]
        else:
            _check_absolute_input(part, x, self.dim, offset, self.max_len)
            rows = self._table()[offset : offset + x.shape[1]]  # [T, D]
        return x + (rows.to(x.dtype) if self.cast else rows)  # [B, T, D]


@register("position", "sinusoidal")
@shared_sections(_TABLE_DOC)
class SinusoidalPosition(_TablePosition):
    """Fixed sinusoids added to the embeddings (Vaswani et al. 2017, section 3.5).

    ``PE[p, 2i] = sin(p / base^(2i / dim))``, ``PE[p, 2i + 1] = cos(p / base^(2i / dim))``.
    The table is a buffer that is not saved in checkpoints (it is rebuilt from the spec).

    Args:
        dim: model width.
        max_len: longest sequence (offset included) the table covers.
        base: wavelength base; 10000 in the paper.

    Example:
        >>> import torch, nnblocks
        >>> pos = nnblocks.build("sinusoidal", "position", dim=8, max_len=16)
        >>> pos(torch.zeros(1, 4, 8), offset=2).shape
        torch.Size([1, 4, 8])
    """

    part_name = "sinusoidal"
    cast = True
    table: torch.Tensor

    def __init__(self, dim: int, max_len: int = 2048, base: float = 10000.0):
        super().__init__(dim, max_len)
        self.base = base
        position = torch.arange(max_len, dtype=torch.float64)[:, None]  # [L, 1]
        rates = base ** (-torch.arange(0, dim, 2, dtype=torch.float64) / dim)  # [ceil(D/2)]
        angles = position * rates  # [L, ceil(D/2)]
        table = torch.zeros(max_len, dim, dtype=torch.float64)
        table[:, 0::2] = torch.sin(angles)
        table[:, 1::2] = torch.cos(angles[:, : dim // 2])
        self.register_buffer("table", table.float(), persistent=False)  # [L, D]

    def _table(self) -> torch.Tensor:
        return self.table


@register("position", "learned")
@shared_sections(_TABLE_DOC)
class LearnedPosition(_TablePosition):
    """A learned vector per position, added to the embeddings (Gehring et al. 2017; GPT, BERT).

    Args:
        dim: model width.
        max_len: number of positions with a vector (offset included).
        init_std: standard deviation of the normal initialisation.

    Parameters: ``weight`` ``[max_len, dim]``.

    Example:
        >>> import torch, nnblocks
        >>> pos = nnblocks.build("learned", "position", dim=8, max_len=16)
        >>> pos.weight.shape
        torch.Size([16, 8])
    """

    part_name = "learned"

    def __init__(self, dim: int, max_len: int = 2048, init_std: float = 0.02):
        super().__init__(dim, max_len)
        self.weight = nn.Parameter(torch.randn(max_len, dim) * init_std)  # [L, D]

    def _table(self) -> torch.Tensor:
        return self.weight


@register("position", "rotary")
class RotaryPosition(nn.Module):
    """Rotary position embedding, RoPE (Su et al. 2021, RoFormer).

    Rotates each pair of query/key features by an angle proportional to the position, so
    ``q_i . k_j`` depends on positions only through ``i - j``. Features are paired as
    ``(x[d], x[d + Dh/2])`` (the "rotate half" layout of GPT-NeoX), a fixed permutation of
    the paper's adjacent pairs with the same property. Angles are computed in float32 (float64
    for float64 inputs) and have no length limit.

    Args:
        dim: head width ``Dh`` (attention passes it); must be even.
        heads: accepted for the common signature; unused.
        base: wavelength base; 10000 in the paper.
        scaling: None, or a dict that stretches the rotation frequencies for contexts longer
            than the training one: ``{"type": "linear", "factor": f}`` divides every
            frequency by ``f`` (position interpolation, Chen et al. 2023);
            ``{"type": "llama3", "factor": f, "low_freq_factor": l, "high_freq_factor": h,
            "original_max_position_embeddings": n}`` divides only the low frequencies
            (wavelength above ``n / l``) by ``f``, keeps the high ones (below ``n / h``) and
            interpolates smoothly between (Meta's Llama 3.1).

    Call arguments (``adjust``):
        q: ``[B, H, Tq, Dh]``; k: ``[B, Hkv, Tk, Dh]``; q_pos ``[Tq]``, k_pos ``[Tk]`` long.

    Returns:
        ``(q, k, None)`` with q and k rotated.

    Raises:
        SpecError: (construction) ``dim`` is not a positive even integer, ``base`` is not
            above 1, or ``scaling`` has an unknown type or a missing or bad value.

    Example:
        >>> import torch, nnblocks
        >>> attn = nnblocks.build({"name": "mha", "position": "rotary"}, "attention",
        ...                       dim=32, heads=4)
        >>> attn(torch.randn(2, 5, 32), causal=True).shape
        torch.Size([2, 5, 32])
    """

    relative = True

    def __init__(
        self,
        dim: int,
        heads: int | None = None,
        base: float = 10000.0,
        scaling: dict[str, Any] | None = None,
    ):
        super().__init__()
        ok = is_positive_int(dim) and dim % 2 == 0
        check_option("rotary", "dim", dim, ok, "a positive even integer (the head width)")
        ok = isinstance(base, (int, float)) and not isinstance(base, bool) and base > 1
        check_option("rotary", "base", base, ok, "a number greater than 1")
        self.dim, self.heads, self.base = dim, heads, float(base)
        self.scaling = _check_scaling(scaling)
        # cos/sin tables per (device, dtype): derived values, not state (never saved).
        self._tables: dict[tuple[torch.device, torch.dtype], tuple[torch.Tensor, torch.Tensor]] = {}

    def extra_repr(self) -> str:
        extra = f", scaling={self.scaling}" if self.scaling else ""
        return f"dim={self.dim}, base={self.base}{extra}"

    def _rates(self, device: torch.device, work: torch.dtype) -> torch.Tensor:
        """Rotation frequencies ``base^(-2i/Dh)`` ``[Dh/2]``, scaled as ``scaling`` says."""
        half = self.dim // 2
        rates = self.base ** (-torch.arange(0, half, device=device, dtype=work) / half)
        if self.scaling is None:
            return rates
        factor = float(self.scaling["factor"])
        if self.scaling["type"] == "linear":
            return rates / factor
        # llama3: by wavelength 2*pi/rate against the original context length.
        context = float(self.scaling["original_max_position_embeddings"])
        low, high = float(self.scaling["low_freq_factor"]), float(self.scaling["high_freq_factor"])
        wavelength = 2 * math.pi / rates
        scaled = torch.where(wavelength > context / low, rates / factor, rates)
        smooth = (context / wavelength - low) / (high - low)
        middle = ~(wavelength < context / high) & ~(wavelength > context / low)
        return torch.where(middle, (1 - smooth) * scaled / factor + smooth * scaled, scaled)

    def forward(
        self, x: torch.Tensor, offset: int = 0, positions: torch.Tensor | None = None
    ) -> torch.Tensor:
        return x

    def _rotate(self, x: torch.Tensor, pos: torch.Tensor) -> torch.Tensor:
        self._check_width(x)
        if _tracing() or pos.numel() == 0:
            return self._turn_halves(x, *self._angles(pos, x.dtype, x.device))
        cos, sin = self._table(int(pos.max()) + 1, x)
        return self._turn(x, cos.index_select(0, pos), sin.index_select(0, pos))

    def _check_width(self, x: torch.Tensor) -> None:
        if x.shape[-1] != self.dim:
            raise ShapeError(
                f"position part `rotary`: expected heads of width dim={self.dim}. "
                f"Received: a tensor of shape {shape_of(x)}"
            )

    def _turn_halves(self, x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
        """The rotation from half-width ``cos``, ``sin`` ``[T, Dh/2]`` (traced graphs)."""
        half = self.dim // 2
        x1, x2 = x[..., :half], x[..., half:]
        return torch.cat([x1 * cos - x2 * sin, x2 * cos + x1 * sin], dim=-1)

    def _turn(self, x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
        """The rotation from full-width tables ``[cos, cos]`` and ``[-sin, sin]`` ``[T, Dh]``.

        ``x * cos + roll(x) * sin`` computes ``x1 cos - x2 sin`` and ``x2 cos + x1 sin`` with
        the same roundings as ``_turn_halves`` (negation is exact), in four operations.
        """
        return x * cos + x.roll(self.dim // 2, dims=-1) * sin

    def _table(self, longest: int, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Full-width ``[cos, cos]`` and ``[-sin, sin]`` ``[L, Dh]`` of positions ``0 .. L-1``.

        Decoding asks for one position per step; the table of every position up to the
        longest seen is computed once (the same arithmetic, so the same values) and kept
        per device and dtype. Traced graphs compute the angles instead (no stored tensors).
        """
        key = (x.device, x.dtype)
        table = self._tables.get(key)
        if table is None or table[0].shape[0] < longest:
            size = max(longest, 2 * (0 if table is None else table[0].shape[0]), 256)
            cos, sin = self._angles(torch.arange(size, device=x.device), x.dtype, x.device)
            table = torch.cat([cos, cos], dim=-1), torch.cat([-sin, sin], dim=-1)
            self._tables[key] = table
        return table

    def _angles(
        self, pos: torch.Tensor, dtype: torch.dtype, device: torch.device
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Half-width ``cos``, ``sin`` ``[T, Dh/2]`` of the angles at ``pos``."""
        work = torch.float64 if dtype == torch.float64 else torch.float32
        rates = self._rates(device, work)  # [Dh/2]
        angles = pos.to(work)[:, None] * rates[None, :]  # [T, Dh/2]
        return angles.cos().to(dtype), angles.sin().to(dtype)

    def adjust(
        self, q: torch.Tensor, k: torch.Tensor, q_pos: torch.Tensor, k_pos: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor, None]:
        """Rotate queries and keys by their positions; no bias."""
        return self._rotate(q, q_pos), self._rotate(k, k_pos), None

    def adjust_cached_from(
        self, q: torch.Tensor, k_new: torch.Tensor, start: int
    ) -> tuple[torch.Tensor, torch.Tensor, None]:
        """``adjust_cached`` when the queries and the new keys both start at ``start``.

        The decoding step's case: positions as an int let the table be sliced (a view)
        instead of indexed, with no position tensor made and no value read back.
        """
        t = q.shape[2]
        if _tracing():
            pos = torch.arange(start, start + t, device=q.device)
            return self._rotate(q, pos), self._rotate(k_new, pos), None
        self._check_width(q)
        cos, sin = self._table(start + t, q)
        cos, sin = cos[start : start + t], sin[start : start + t]  # [T, Dh]
        return self._turn(q, cos, sin), self._turn(k_new, cos, sin), None

    def adjust_cached(
        self, q: torch.Tensor, k_new: torch.Tensor, q_pos: torch.Tensor, k_pos: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor, None]:
        """Rotate queries and only the newest keys (the cached ones are rotated already)."""
        return (
            self._rotate(q, q_pos),
            self._rotate(k_new, k_pos[k_pos.shape[0] - k_new.shape[2] :]),
            None,
        )


_SCALING_KEYS = {
    "linear": ("factor",),
    "llama3": ("factor", "low_freq_factor", "high_freq_factor", "original_max_position_embeddings"),
}


def _check_scaling(scaling: Any) -> dict[str, Any] | None:
    """The ``scaling`` option of `rotary` as a plain dict, or a SpecError naming the problem."""
    if scaling is None:
        return None
    kind = str(scaling.get("type")) if isinstance(scaling, dict) else ""
    supported = ", ".join(_SCALING_KEYS)
    check_option(
        "rotary",
        "scaling",
        scaling,
        kind in _SCALING_KEYS,
        f'None or a dict with "type" one of: {supported}',
    )
    for key in _SCALING_KEYS[kind]:
        value = scaling.get(key)
        ok = isinstance(value, (int, float)) and not isinstance(value, bool) and value > 0
        check_option("rotary", f"scaling.{key}", value, ok, f"a positive number ({kind} scaling)")
    if kind == "llama3":
        ok = scaling["high_freq_factor"] > scaling["low_freq_factor"]
        check_option(
            "rotary", "scaling.high_freq_factor", scaling["high_freq_factor"], ok,
            "a number above low_freq_factor",
        )  # fmt: skip
    unknown = set(scaling) - {"type", *_SCALING_KEYS[kind]}
    check_option(
        "rotary", "scaling", scaling, not unknown,
        f"only the keys type, {', '.join(_SCALING_KEYS[kind])} for {kind} scaling",
    )  # fmt: skip
    return dict(scaling)


@functools.lru_cache(maxsize=64)
def alibi_slopes(heads: int) -> tuple[float, ...]:
    """ALiBi head slopes (Press et al. 2022, section 3).

    For ``n`` a power of two: the geometric sequence starting at and with ratio
    ``2^(-8/n)`` (8 heads: 1/2, 1/4, ..., 1/256). Otherwise, the slopes of the closest
    smaller power of two ``m``, followed by every other slope of ``2m`` (the authors'
    reference implementation).
    """

    def powers(n: int) -> list[float]:
        start = 2.0 ** (-8.0 / n)
        return [start ** (i + 1) for i in range(n)]

    if heads & (heads - 1) == 0:
        return tuple(powers(heads))
    closest = 2 ** math.floor(math.log2(heads))
    return tuple(powers(closest) + powers(2 * closest)[0::2][: heads - closest])


@register("position", "alibi")
class ALiBiPosition(nn.Module):
    """Attention with linear biases, ALiBi (Press et al. 2022).

    Adds ``-slope_h * |i - j|`` to the score of query ``i`` and key ``j`` in head ``h``:
    the paper's causal bias, extended symmetrically so the part also serves bidirectional
    attention (a causal mask hides the other half anyway). Queries and keys are unchanged,
    and there is no length limit.

    Args:
        dim: head width (accepted for the common signature; unused).
        heads: number of query heads (attention passes it); None: read from ``q`` at each
            call.

    Call arguments (``adjust``):
        q: ``[B, H, Tq, Dh]``; k: ``[B, Hkv, Tk, Dh]``; q_pos ``[Tq]``, k_pos ``[Tk]`` long.

    Returns:
        ``(q, k, bias)`` with ``bias`` ``[1, H, Tq, Tk]`` in q's dtype.

    Raises:
        ShapeError: ``q`` has a number of heads other than ``heads``.
        SpecError: (construction) ``heads`` not a positive integer.

    Example:
        >>> import torch, nnblocks
        >>> attn = nnblocks.build({"name": "gqa", "kv_heads": 2, "position": "alibi"},
        ...                       "attention", dim=32, heads=4)
        >>> attn(torch.randn(2, 5, 32), causal=True).shape
        torch.Size([2, 5, 32])
    """

    relative = True

    def __init__(self, dim: int | None = None, heads: int | None = None):
        super().__init__()
        if heads is not None:
            check_positive_int(heads, "heads", where="part `alibi`")
        self.dim, self.heads = dim, heads

    def extra_repr(self) -> str:
        return f"heads={self.heads}"

    def forward(
        self, x: torch.Tensor, offset: int = 0, positions: torch.Tensor | None = None
    ) -> torch.Tensor:
        return x

    def bias(
        self, heads: int, q_pos: torch.Tensor, k_pos: torch.Tensor, dtype: torch.dtype
    ) -> torch.Tensor:
        """``[1, H, Tq, Tk]``: ``-slope_h * |q_pos - k_pos|``."""
        if self.heads is not None and heads != self.heads:
            raise ShapeError(
                f"position part `alibi`: expected queries with heads={self.heads}. "
                f"Received: {heads} heads"
            )
        slopes = torch.tensor(alibi_slopes(heads), device=q_pos.device)  # [H]
        distance = (q_pos[:, None] - k_pos[None, :]).abs().float()  # [Tq, Tk]
        return (-slopes[:, None, None] * distance).to(dtype)[None]  # [1, H, Tq, Tk]

    def adjust(
        self, q: torch.Tensor, k: torch.Tensor, q_pos: torch.Tensor, k_pos: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Queries and keys unchanged; the linear bias for these positions."""
        return q, k, self.bias(q.shape[1], q_pos, k_pos, q.dtype)

    def adjust_cached(
        self, q: torch.Tensor, k_new: torch.Tensor, q_pos: torch.Tensor, k_pos: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """As ``adjust``: keys are untouched, the bias covers all of ``k_pos``."""
        return q, k_new, self.bias(q.shape[1], q_pos, k_pos, q.dtype)
