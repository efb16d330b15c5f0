"""Attention combinators: `parallel` and `sequential`.

Both are ordinary attention parts (``Part(dim, heads, **options)``, called as
``part(x, context=None, mask=None, causal=False)``) built from other attention specs, so
"run a new attention beside the old one" or "after the old one" is a one-line spec change
in any attention slot::

    self_attention: {name: parallel, branches: [mha, {name: local, window: 32}], merge: gate}

Capabilities follow the inner parts: the combinator takes ``cache=`` only when every inner
part does, and ``need_weights=`` only when every inner part does, so a caller that detects
capabilities from the signature (docs/interfaces.md) sees the truth. The inner parts are
slots ``branches.N`` (parallel) and ``parts.N`` (sequential).
"""

from __future__ import annotations

import inspect
from collections.abc import Sequence
from typing import Any

import torch
from torch import nn

from nnblocks.errors import ShapeError, SpecError
from nnblocks.registry import build, register
from nnblocks.spec import current_path, join_path

__all__ = ["parallel", "sequential", "Parallel", "Sequential"]

_MERGES = ("sum", "gate", "concat")
_STARTS = ("equal", "first")


def _takes(module: nn.Module, name: str) -> bool:
    return name in inspect.signature(module.forward).parameters


def _build_inner(
    specs: Any, *, slot: str, dim: int, heads: int, position: Any, part: str
) -> list[nn.Module]:
    path = join_path(current_path(), slot)
    if isinstance(specs, (str, dict)) or not isinstance(specs, Sequence) or len(specs) < 1:
        raise SpecError(
            f"Received an invalid value for `{slot}` of attention part `{part}`: expected a "
            f"list of attention specs. Received: {slot}={specs!r:.80}",
            path=path or None,
        )
    offered: dict[str, Any] = {"dim": dim, "heads": heads}
    if position is not None:  # offered, so parts without `position=` are still welcome
        offered["position"] = position
    return [build(spec, "attention", at=f"{slot}.{i}", **offered) for i, spec in enumerate(specs)]


def _mean_weights(
    weights: list[torch.Tensor], coefficients: list[torch.Tensor] | None = None
) -> torch.Tensor:
    """Average the inner parts' weights ``[B, H, Tq, Tk]`` (over heads too if H differs)."""
    if any(w.shape != weights[0].shape for w in weights):
        weights = [w.mean(dim=1, keepdim=True) for w in weights]  # [B, 1, Tq, Tk]
    if coefficients is None:
        return torch.stack(weights).mean(dim=0)
    return sum(c * w for c, w in zip(coefficients, weights))  # type: ignore[return-value]


class _Combinator(nn.Module):
    """Shared plumbing: the inner parts, the width check, calling with capabilities."""

    part_name = ""
    inner_slot = ""

    def __init__(self, dim: int, inner: list[nn.Module]):
        super().__init__()
        self.dim = dim
        setattr(self, self.inner_slot, nn.ModuleList(inner))
        self._path = current_path()

    def _get_name(self) -> str:  # print(model) shows Parallel, not the capability variant
        return self.part_name.capitalize()

    @property
    def inner(self) -> nn.ModuleList:
        return getattr(self, self.inner_slot)

    def _check_input(self, x: torch.Tensor) -> None:
        if x.dim() != 3 or x.shape[-1] != self.dim:
            where = f" at `{self._path}`" if self._path else ""
            raise ShapeError(
                f"attention part `{self.part_name}`{where}: expected x [B, T, {self.dim}]. "
                f"Received: shape {tuple(x.shape)}"
            )

    @staticmethod
    def _call(
        part: nn.Module,
        x: torch.Tensor,
        context: torch.Tensor | None,
        mask: torch.Tensor | None,
        causal: bool,
        need_weights: bool,
        cache: dict[str, Any] | None,
    ) -> tuple[torch.Tensor, torch.Tensor | None, dict[str, Any] | None]:
        kwargs: dict[str, Any] = {}
        if need_weights:
            kwargs["need_weights"] = True
        if cache is not None:
            kwargs["cache"] = cache
        result = part(x, context=context, mask=mask, causal=causal, **kwargs)
        if need_weights and cache is not None:
            return result[0], result[1], result[2]
        if need_weights:
            return result[0], result[1], None
        if cache is not None:
            return result[0], None, result[1]
        return result, None, None

    def _inner_caches(self, cache: dict[str, Any] | None) -> list[dict[str, Any] | None]:
        if cache is None:
            return [None] * len(self.inner)
        return list(cache.get(self.inner_slot) or [{} for _ in self.inner])

    def _run(self, x, context, mask, causal, need_weights, cache):  # type: ignore[no-untyped-def]
        raise NotImplementedError

    @staticmethod
    def _pack(out, weights, cache, need_weights, cached):  # type: ignore[no-untyped-def]
        if need_weights and cached:
            return out, weights, cache
        if need_weights:
            return out, weights
        if cached:
            return out, cache
        return out


class Parallel(_Combinator):
    """Runs attention parts side by side on the same input and merges their outputs.

    Built by the registered factory ``parallel`` (see its docstring); the class is public
    for ``isinstance`` checks.
    """

    part_name = "parallel"
    inner_slot = "branches"

    def __init__(self, dim: int, branches: list[nn.Module], merge: str, start: str = "equal"):
        super().__init__(dim, branches)
        self.merge = merge
        self.start = start
        n = len(branches)
        if merge == "gate" and start == "first":
            # out = b0 + sum_i tanh(g_i(x)) * b_i with g zero-initialised: at insertion the
            # output is exactly the first (trained) branch's, and the new branches join as
            # their gates move (the tanh gating of Flamingo, Alayrac et al. 2022).
            self.gate = nn.Linear(dim, n - 1)
            nn.init.zeros_(self.gate.weight)
            nn.init.zeros_(self.gate.bias)
        elif merge == "gate":
            # Starts at equal weights (zero logits), so a new branch joins gradually.
            self.gate = nn.Linear(dim, n)
            nn.init.zeros_(self.gate.weight)
            nn.init.zeros_(self.gate.bias)
        elif merge == "concat":
            # No bias: a fully masked query row must still come out as zeros.
            self.proj = nn.Linear(n * dim, dim, bias=False)
            if start == "first":  # [I, 0, ..., 0]: the first branch passes through unchanged
                with torch.no_grad():
                    self.proj.weight.zero_()
                    self.proj.weight[:, :dim].copy_(torch.eye(dim))

    def _run(self, x, context, mask, causal, need_weights, cache):  # type: ignore[no-untyped-def]
        self._check_input(x)
        outs, weights, caches = [], [], []
        for part, inner_cache in zip(self.inner, self._inner_caches(cache)):
            out, w, c = self._call(part, x, context, mask, causal, need_weights, inner_cache)
            outs.append(out)  # [B, Tq, D]
            weights.append(w)
            caches.append(c)
        coefficients = None
        if self.merge == "sum":
            merged = torch.stack(outs).sum(dim=0)  # [B, Tq, D]
        elif self.merge == "gate" and self.start == "first":
            gate = torch.tanh(self.gate(x))  # [B, Tq, N-1], per query position
            merged = outs[0] + sum(gate[..., i - 1 : i] * out for i, out in enumerate(outs) if i)
            scale = torch.cat([torch.ones_like(gate[..., :1]), gate.abs()], dim=-1)  # [B, Tq, N]
            scale = scale / scale.sum(dim=-1, keepdim=True)  # weights rows still sum to 1
            coefficients = [scale[:, None, :, i, None] for i in range(len(outs))]  # [B,1,Tq,1]
        elif self.merge == "gate":
            gate = torch.softmax(self.gate(x), dim=-1)  # [B, Tq, N], per query position
            merged = sum(gate[..., i : i + 1] * out for i, out in enumerate(outs))
            coefficients = [gate[:, None, :, i, None] for i in range(len(outs))]  # [B,1,Tq,1]
        else:
            merged = self.proj(torch.cat(outs, dim=-1))  # [B, Tq, N*D] -> [B, Tq, D]
        mean = _mean_weights(weights, coefficients) if need_weights else None
        return merged, mean, {self.inner_slot: caches}

    def extra_repr(self) -> str:
        start = f", start={self.start!r}" if self.start != "equal" else ""
        return f"{self.dim}, merge={self.merge!r}{start}"


class Sequential(_Combinator):
    """Applies attention parts one after another. Built by the registered factory
    ``sequential`` (see its docstring); the class is public for ``isinstance`` checks."""

    part_name = "sequential"
    inner_slot = "parts"

    def __init__(self, dim: int, parts: list[nn.Module], residual: bool):
        super().__init__(dim, parts)
        self.residual = residual

    def _run(self, x, context, mask, causal, need_weights, cache):  # type: ignore[no-untyped-def]
        self._check_input(x)
        h, update = x, None
        weights, caches = [], []
        for part, inner_cache in zip(self.inner, self._inner_caches(cache)):
            out, w, c = self._call(part, h, context, mask, causal, need_weights, inner_cache)
            weights.append(w)
            caches.append(c)
            if self.residual:
                update = out if update is None else update + out
                h = x + update  # what the next part reads
            else:
                h = out
        # With residual, return the total update (not x + update): the enclosing block adds
        # its own residual connection, which must not count x twice.
        result = update if self.residual else h
        mean = _mean_weights(weights) if need_weights else None
        return result, mean, {self.inner_slot: caches}

    def extra_repr(self) -> str:
        return f"{self.dim}, residual={self.residual}"


# One forward signature per capability set, so that `inspect.signature` tells a caller
# exactly what the inner parts support. Each is written once and mixed into both
# combinators: `_VARIANTS[(Parallel, cache, weights)]` is e.g. `_ParallelCache`.
class _Plain:
    def forward(self, x, context=None, mask=None, causal=False):  # type: ignore[no-untyped-def]
        return self._run(x, context, mask, causal, False, None)[0]


class _Cache:
    def forward(self, x, context=None, mask=None, causal=False, cache=None):  # type: ignore[no-untyped-def]
        out, _, new = self._run(x, context, mask, causal, False, cache)
        return self._pack(out, None, new, False, cache is not None)


class _Weights:
    def forward(self, x, context=None, mask=None, causal=False, need_weights=False):  # type: ignore[no-untyped-def]
        out, w, _ = self._run(x, context, mask, causal, need_weights, None)
        return self._pack(out, w, None, need_weights, False)


class _Full:
    def forward(  # type: ignore[no-untyped-def]
        self, x, context=None, mask=None, causal=False, need_weights=False, cache=None
    ):
        out, w, new = self._run(x, context, mask, causal, need_weights, cache)
        return self._pack(out, w, new, need_weights, cache is not None)


_FORWARDS = {
    (False, False): _Plain,
    (True, False): _Cache,
    (False, True): _Weights,
    (True, True): _Full,
}


def _variant(base: type[_Combinator], forward: type) -> type[_Combinator]:
    name = f"_{base.__name__}{forward.__name__[1:]}"
    cls = type(name, (forward, base), {"__module__": __name__, "__qualname__": name})
    globals()[name] = cls  # a module attribute, so that pickle finds the class by name
    return cls


_VARIANTS: dict[tuple[type, bool, bool], type[_Combinator]] = {
    (base, cache, weights): _variant(base, forward)
    for base in (Parallel, Sequential)
    for (cache, weights), forward in _FORWARDS.items()
}


def _with_capabilities(base: type[_Combinator], cache: bool, weights: bool) -> type[_Combinator]:
    return _VARIANTS[(base, cache, weights)]


def _capabilities(inner: list[nn.Module]) -> tuple[bool, bool]:
    return all(_takes(m, "cache") for m in inner), all(_takes(m, "need_weights") for m in inner)


@register("attention", "parallel")
def parallel(
    dim: int,
    heads: int,
    branches: Sequence[Any] = ("mha", "mha"),
    merge: str = "sum",
    position: Any = None,
    start: str = "equal",
) -> Parallel:
    """Runs two or more attention parts on the same input and merges their outputs.

    Every branch sees the same ``x``, ``context``, ``mask`` and ``causal``; each keeps its
    own cache (``cache["branches"][i]``).

    Args:
        dim: model width D.
        heads: offered to every branch (a branch spec may set its own).
        branches: attention specs, one per branch (slots ``branches.0``, ``branches.1``...).
        merge: ``"sum"`` adds the outputs; ``"gate"`` mixes them with softmax weights
            computed per query position from ``x`` by a learned linear gate (initialised to
            equal weights); ``"concat"`` concatenates them and projects ``N*D -> D``
            (no bias, so fully masked rows stay zero).
        position: a relative position spec offered to every branch that takes ``position=``.
        start: ``"equal"``: the merge starts from equal weights; ``"first"``: it starts
            as the first branch alone, so a trained part wrapped as ``branches.0`` keeps
            its outputs exactly (``nnblocks.surgery.beside``). With ``merge="gate"`` the
            output is then ``b0 + sum_i tanh(g_i(x)) * b_i`` with zero-initialised gates
            ``g``; with ``"concat"`` the projection starts as ``[I, 0, ...]``; ``"sum"``
            cannot start as one branch and is rejected.

    Call arguments:
        x: ``[B, Tq, D]``; context: ``[B, Tk, D]`` or None; mask: bool, True = may attend
        (2-, 3- or 4-D, see the attention contract); causal: bool flag.
        need_weights (when every branch has it): also return the branches' attention
        weights averaged (gate-weighted with ``merge="gate"``; averaged over heads too when
        branches differ in head count) - a diagnostic, rows still sum to 1.
        cache (when every branch has it): ``{}`` at the first step, then the returned dict.

    Returns:
        ``[B, Tq, D]``; with ``need_weights`` and/or ``cache``: ``(out, weights)``,
        ``(out, cache)`` or ``(out, weights, cache)``.

    Raises:
        SpecError: fewer than one branch, an unknown merge or start, a branch that is not
            attention.
        ShapeError: ``x`` is not ``[B, T, D]`` (a branch names its own shape errors).

    Example:
        >>> attn = nnblocks.build({"name": "parallel", "branches": ["mha", "mha"],
        ...                        "merge": "gate"}, "attention", dim=32, heads=4)
        >>> attn(torch.randn(2, 5, 32), causal=True).shape
        torch.Size([2, 5, 32])
    """
    if merge not in _MERGES:
        raise SpecError(
            f"Received an invalid value for `merge` of attention part `parallel`: expected one "
            f"of {', '.join(_MERGES)}. Received: merge={merge!r}",
            path=current_path() or None,
        )
    if start not in _STARTS or (start == "first" and merge == "sum"):
        raise SpecError(
            "Received an invalid value for `start` of attention part `parallel`: expected "
            f'one of {", ".join(_STARTS)} ("first" with merge gate or concat). '
            f"Received: start={start!r}, merge={merge!r}",
            path=current_path() or None,
        )
    inner = _build_inner(
        branches, slot="branches", dim=dim, heads=heads, position=position, part="parallel"
    )
    if start == "first" and len(inner) < 2:
        raise SpecError(
            'attention part `parallel` with start="first" needs at least two branches (the '
            f"first and a new one). Received: {len(inner)} branch(es)",
            path=current_path() or None,
        )
    cls = _with_capabilities(Parallel, *_capabilities(inner))
    return cls(dim, inner, merge, start)  # type: ignore[call-arg,return-value]


@register("attention", "sequential")
def sequential(
    dim: int,
    heads: int,
    parts: Sequence[Any] = ("mha", "mha"),
    residual: bool = True,
    position: Any = None,
) -> Sequential:
    """Applies attention parts one after another, each reading the previous one's result.

    With ``residual=True`` part ``i`` reads ``h_i = x + a_1 + ... + a_{i-1}`` (``a_j`` the
    output of part ``j``) and the combinator returns the total update
    ``a_1 + ... + a_n`` - not ``x`` plus it, because the enclosing block adds its own
    residual connection. With ``residual=False`` it is plain composition,
    ``a_n(...a_2(a_1(x)))``. ``context``, ``mask`` and ``causal`` go to every part; the
    keys of a self-attention part are its own input ``h_i``. As in any stack of attention
    layers, a mask holds for each part, not for the composition: with a 3-D mask that hides
    key ``k`` from query ``i`` but not from query ``j``, information from ``k`` can reach
    ``i`` through ``j``'s output of an earlier part. Padding (2-D) masks and ``causal``
    compose without such leaks.

    Args:
        dim: model width D.
        heads: offered to every part (a part spec may set its own).
        parts: attention specs, applied in order (slots ``parts.0``, ``parts.1``...).
        residual: add each part's output to the running stream (see above).
        position: a relative position spec offered to every part that takes ``position=``.

    Call arguments:
        As for ``parallel``; ``need_weights`` (when every part has it) returns the parts'
        weights averaged (a diagnostic), ``cache`` keeps one cache per part
        (``cache["parts"][i]``).

    Returns:
        ``[B, Tq, D]``; with ``need_weights`` and/or ``cache``: ``(out, weights)``,
        ``(out, cache)`` or ``(out, weights, cache)``.

    Raises:
        SpecError: no parts, or a part that is not attention.
        ShapeError: ``x`` is not ``[B, T, D]``.

    Example:
        >>> attn = nnblocks.build({"name": "sequential", "parts": ["mha", "mha"]},
        ...                       "attention", dim=32, heads=4)
        >>> attn(torch.randn(2, 5, 32)).shape
        torch.Size([2, 5, 32])
    """
    inner = _build_inner(
        parts, slot="parts", dim=dim, heads=heads, position=position, part="sequential"
    )
    cls = _with_capabilities(Sequential, *_capabilities(inner))
    return cls(dim, inner, bool(residual))  # type: ignore[call-arg,return-value]
