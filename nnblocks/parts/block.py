"""Contract and built-in parts of kind `block`.

Contract (one transformer layer):

- Construction: ``Part(dim, heads, attention="mha", cross_attention=None,
  feedforward="mlp", norm="layer", norm_placement="pre", dropout=0.0, drop_path=0.0,
  position=None, ...)``; every option but ``dim`` and ``heads`` has a default.
- Every sub-part is built through the registry in a named child slot, so each is
  swappable by spec: ``self_attention``, ``cross_attention``, ``feedforward``,
  ``self_attention_norm``, ``cross_attention_norm``, ``feedforward_norm``.
- Call: ``block(x, mask=None, causal=False, context=None, context_mask=None, cache=None)``:
  ``x`` ``[B, T, D]`` -> ``[B, T, D]``. ``mask`` and ``causal`` follow the attention
  contract (bool, True = may attend) for self-attention; ``context`` ``[B, S, D]`` and
  ``context_mask`` ``[B, S]`` feed the cross-attention.
- With ``cache`` (a dict, ``{}`` at the first step) the block returns ``(x, cache)`` and
  ``x`` holds only the new positions; the returned dict holds the attention caches
  (``{"self": {...}, "cross": {...}}``) and is what the caller passes at the next step.
  A cached step-by-step pass gives the outputs of one full pass.
- The block keeps the dtype and device of its input and has no state between calls.

Built-ins: ``transformer`` (Vaswani et al. 2017), pre- or post-norm.
"""

from __future__ import annotations

import inspect
from typing import Any

import torch
from torch import nn

from nnblocks.errors import ShapeError, SpecError
from nnblocks.parts._hooks import has_call_hooks
from nnblocks.parts.attention._base import KeyValueAttention
from nnblocks.parts.boundary import check_features, check_flag, check_slot_output
from nnblocks.registry import build, kind_of, register, spec_of
from nnblocks.spec import current_path, join_path

__all__ = ["TransformerBlock"]

_PLACEMENTS = ("pre", "post")


_TAKES: dict[tuple[type, str], bool] = {}


def _call_takes(module: nn.Module, argument: str) -> bool:
    """Whether ``module(...)`` accepts ``argument`` (how optional capabilities are detected).

    Memoised per class: a dictionary lookup per call instead of ``inspect.signature``, and
    still right after a part is swapped for one of another class.
    """
    key = (type(module), argument)
    takes = _TAKES.get(key)
    if takes is None:
        try:
            params = inspect.signature(module.forward).parameters
            takes = argument in params or any(p.kind is p.VAR_KEYWORD for p in params.values())
        except (TypeError, ValueError):
            takes = False
        _TAKES[key] = takes
    return takes


def _received(module: nn.Module, argument: str) -> bool:
    """Whether ``argument`` reached the constructor of a module built by ``nnblocks.build``."""
    if kind_of(module) is not None:
        return argument in spec_of(module)
    try:
        params = inspect.signature(type(module)).parameters
    except (TypeError, ValueError):
        return False
    return argument in params or any(p.kind is p.VAR_KEYWORD for p in params.values())


@register("block", "transformer")
class TransformerBlock(nn.Module):
    """One transformer layer: self-attention, optional cross-attention, feedforward.

    Each sub-layer sits on a residual branch, ``x + drop_path(dropout(f(x)))``. With
    ``norm_placement="pre"`` the branch input is normalised, ``x + f(norm(x))``: the
    residual stream stays unnormalised, which trains deep stacks without warm-up (Xiong et
    al. 2020) but needs a final norm after the last layer (the model's job). With
    ``"post"`` the sum is normalised, ``norm(x + f(x))``, as in the original transformer
    (Vaswani et al. 2017) and ``torch.nn.TransformerEncoderLayer``.

    Args:
        dim: model width D.
        heads: attention heads, offered to both attentions.
        attention: spec of the self-attention (slot ``self_attention``).
        cross_attention: spec of the cross-attention over ``context`` (slot
            ``cross_attention``); None for an encoder or decoder-only layer, a spec for an
            encoder-decoder's decoder layer.
        feedforward: spec of the position-wise network (slot ``feedforward``).
        norm: one norm spec for every norm slot (``self_attention_norm``,
            ``cross_attention_norm``, ``feedforward_norm``); a name, dict or class, so that
            each slot gets its own parameters.
        norm_placement: ``"pre"`` or ``"post"`` (see above).
        dropout: residual dropout on each sub-layer's output.
        drop_path: stochastic depth on each residual branch (Huang et al. 2016).
        position: a relative position spec (``"rotary"``, ``"alibi"``) handed to the
            self-attention's ``position=`` option. Cross-attention gets none: its queries
            and keys come from different sequences, so their distance means nothing.
        activation: an activation spec offered to the feedforward as a default (the
            feedforward spec's own ``activation`` wins); None leaves the feedforward's.

    Call arguments:
        x: ``[B, T, D]``; with a cache, only the new positions.
        mask: self-attention mask, bool, True = may attend: ``[B, Tk]`` per key,
            ``[B, T, Tk]`` or broadcastable to ``[B, H, T, Tk]``; with a cache it covers
            the cached and the new keys.
        causal: each position attends only to itself and earlier ones.
        context: ``[B, S, D]`` sequence for the cross-attention (required exactly when
            ``cross_attention`` is set).
        context_mask: cross-attention mask, ``[B, S]`` per context position (or 3-D/4-D).
        cache: a dict for incremental decoding, ``{}`` at the first step.

    Returns:
        ``[B, T, D]``; with ``cache``, ``(x, cache)`` where ``cache`` is a new dict
        ``{"self": ..., "cross": ...}`` to pass at the next step.

    Raises:
        SpecError: a bad sub-part spec (raised by that part, with its slot path), an
            unknown ``norm_placement``, a norm given as a ready module, ``position`` for a
            self-attention without a ``position=`` option, or ``cache`` with a
            self-attention that cannot decode incrementally.
        ShapeError: ``context`` missing while ``cross_attention`` is set, or given while it
            is not; wrong shapes (raised by the sub-parts).

    Example:
        >>> import torch, nnblocks
        >>> block = nnblocks.build("transformer", "block", dim=64, heads=4)
        >>> block(torch.randn(2, 7, 64), causal=True).shape
        torch.Size([2, 7, 64])
        >>> decoder_layer = nnblocks.build(
        ...     {"name": "transformer", "cross_attention": "mha", "feedforward": "swiglu"},
        ...     "block", dim=64, heads=4)
    """

    def __init__(
        self,
        dim: int,
        heads: int,
        attention: Any = "mha",
        cross_attention: Any = None,
        feedforward: Any = "mlp",
        norm: Any = "layer",
        norm_placement: str = "pre",
        dropout: float = 0.0,
        drop_path: float = 0.0,
        position: Any = None,
        activation: Any = None,
    ):
        super().__init__()
        self._path = current_path()  # the slot, for error messages at call time
        self._where = f"block part `transformer` at `{self._path}`" if self._path else "block part"
        self._dim = dim
        if norm_placement not in _PLACEMENTS:
            raise SpecError(
                "Received an invalid value for `norm_placement` of block part `transformer`: "
                f"expected 'pre' or 'post'. Received: norm_placement={norm_placement!r}",
                path=self._path or None,
            )
        if isinstance(norm, nn.Module):
            # One instance in two or three slots would share its parameters silently.
            raise SpecError(
                "`norm` of block part `transformer` fills several slots, so it must be a spec "
                "(a name, a dict or a class), not a ready module. "
                f"Received: {type(norm).__name__} instance",
                path=self._path or None,
            )
        self.norm_placement = norm_placement
        self._pre = norm_placement == "pre"

        # Attention first: it owns the dim/heads checks, reported at its slot.
        offered = {} if position is None else {"position": position}
        self.self_attention = build(
            attention, "attention", at="self_attention", dim=dim, heads=heads, **offered
        )
        if position is not None and (
            isinstance(attention, nn.Module) or not _received(self.self_attention, "position")
        ):
            why = (
                "is a ready module" if isinstance(attention, nn.Module) else "takes no `position=`"
            )
            raise SpecError(
                f"`position` is handed to the self-attention, but "
                f"{type(self.self_attention).__name__} {why}; give the position to an attention "
                f"that accepts one. Received: position={position!r}",
                path=join_path(self._path, "self_attention"),
            )
        self.self_attention_norm = build(norm, "norm", at="self_attention_norm", dim=dim)

        self.cross_attention: nn.Module | None = None
        self.cross_attention_norm: nn.Module | None = None
        if cross_attention is not None:
            self.cross_attention = build(
                cross_attention, "attention", at="cross_attention", dim=dim, heads=heads
            )
            self.cross_attention_norm = build(norm, "norm", at="cross_attention_norm", dim=dim)

        offered = {} if activation is None else {"activation": activation}
        self.feedforward = build(feedforward, "feedforward", at="feedforward", dim=dim, **offered)
        self.feedforward_norm = build(norm, "norm", at="feedforward_norm", dim=dim)

        # Parameter-free, so one module may serve every residual branch.
        self.dropout = build({"name": "dropout", "p": dropout}, "regularization", at="dropout")
        self.drop_path = build(
            {"name": "drop_path", "p": drop_path}, "regularization", at="drop_path"
        )

    def forward(
        self,
        x: torch.Tensor,
        mask: torch.Tensor | None = None,
        causal: bool = False,
        context: torch.Tensor | None = None,
        context_mask: torch.Tensor | None = None,
        cache: dict[str, Any] | None = None,
    ) -> torch.Tensor | tuple[torch.Tensor, dict[str, Any]]:
        check_features(x, "x", where=self._where, dim=self._dim)
        check_flag(causal, "causal", where=self._where)
        # Sub-parts read once into locals: each `self.<child>` is a Module.__getattr__ call,
        # and this runs once per layer and decoded token.
        attention, cross = self.self_attention, self.cross_attention
        if (context is None) != (cross is None):
            self._context_error(context)
        new_cache: dict[str, Any] | None = None
        if cache is not None:
            if not _call_takes(attention, "cache"):
                raise SpecError(
                    f"the self-attention ({type(attention).__name__}) has no `cache=` "
                    "argument, so this block cannot decode incrementally; call it without "
                    "`cache` or choose an attention that supports it.",
                    path=join_path(self._path, "self_attention") or None,
                )
            new_cache = {}

        # Self-attention sub-layer.  x: [B, T, D]
        norm = self.self_attention_norm
        h = norm(x) if self._pre else x
        if new_cache is None:
            h = attention(h, mask=mask, causal=causal)
        else:
            h, new_cache["self"] = attention(
                h,
                mask=mask,
                causal=causal,
                cache=cache.get("self", {}),  # type: ignore[union-attr]
            )
        x = self._residual(x, h, norm)

        # Cross-attention sub-layer over the context [B, S, D].
        if cross is not None:
            norm = self.cross_attention_norm
            assert norm is not None
            h = norm(x) if self._pre else x
            if new_cache is not None and _call_takes(cross, "cache"):
                h, new_cache["cross"] = cross(
                    h,
                    context=context,
                    mask=context_mask,
                    cache=cache.get("cross", {}),  # type: ignore[union-attr]
                )
            else:
                h = cross(h, context=context, mask=context_mask)
            x = self._residual(x, h, norm)

        # Feedforward sub-layer.
        norm = self.feedforward_norm
        h = norm(x) if self._pre else x
        x = self._residual(x, self.feedforward(h), norm)
        return x if new_cache is None else (x, new_cache)

    def can_step_directly(self) -> bool:
        """Whether ``step_directly`` may stand in for this block's cached decoding steps.

        It may when no hook would see the difference (none on the block, its norms, its
        attentions or its feedforward, and no global module hook), the block is in eval
        mode, the self-attention takes the short decoding path of ``KeyValueAttention``, and
        a cross-attention (an encoder-decoder's) takes a cache. Checked once per decoding
        call (``nnblocks.generate``).
        """
        attention, cross = self.self_attention, self.cross_attention
        parts = (
            self, self.self_attention_norm, attention, self.feedforward_norm, self.feedforward,
            cross, self.cross_attention_norm,
        )  # fmt: skip
        return (
            type(self).forward is TransformerBlock.forward  # a subclass may call otherwise
            and (cross is None or _call_takes(cross, "cache"))
            and not self.training
            and isinstance(attention, KeyValueAttention)
            and type(attention).forward is KeyValueAttention.forward
            and attention._can_step_in_place()
            and not any(has_call_hooks(part) for part in parts if part is not None)
        )

    def step_directly(
        self,
        x: torch.Tensor,
        cache: dict[str, Any],
        context: torch.Tensor | None = None,
        context_mask: torch.Tensor | None = None,
    ) -> tuple[torch.Tensor, dict[str, Any]] | None:
        """One cached decoding step, ``forward(x, causal=True, context=context,
        context_mask=context_mask, cache=cache)`` with ``x`` ``[B, 1, D]`` and no mask, or
        None when the cache is not yet allocated ahead (or the context does not fit the
        block: the module path then says why).

        The same calls as ``forward`` in the same order, so the same bits; what it leaves
        out is what ``can_step_directly`` made redundant for the whole decoding call:
        ``Module.__call__`` of the sub-parts (no hooks to run), the checks of the inputs
        (the first steps checked them and they keep their shapes), and the self-attention's
        choice of path (its short path, which every step after the first two takes). The
        cross-attention runs its own ``forward``, checks included.
        """
        state = cache.get("self")
        cross = self.cross_attention
        if (
            not isinstance(state, dict)
            or "filled" not in state
            or (context is None) != (cross is None)
        ):
            return None
        state = dict(state)  # a new dict per step, as the attention's forward returns
        new_cache: dict[str, Any] = {"self": state}
        norm = self.self_attention_norm
        h = norm.forward(x) if self._pre else x
        h = self.self_attention._step_in_place(h, state, state.get("offset", 0))
        x = self._residual(x, h, norm)
        if cross is not None:
            norm = self.cross_attention_norm
            assert norm is not None
            h = norm.forward(x) if self._pre else x
            h, new_cache["cross"] = cross.forward(
                h, context=context, mask=context_mask, cache=cache.get("cross", {})
            )
            x = self._residual(x, h, norm)
        norm = self.feedforward_norm
        h = norm.forward(x) if self._pre else x
        x = self._residual(x, self.feedforward.forward(h), norm)
        return x, new_cache

    def _residual(self, x: torch.Tensor, branch: torch.Tensor, norm: nn.Module) -> torch.Tensor:
        if not isinstance(branch, torch.Tensor) or branch.shape != x.shape:
            # A user part whose output does not fit would broadcast or fail inside `+`.
            slot = {
                id(self.self_attention_norm): "self_attention",
                id(self.cross_attention_norm): "cross_attention",
            }.get(id(norm), "feedforward")
            check_slot_output(branch, slot=join_path(self._path, slot) or slot, like=x)
        if self.training:  # regularization parts are the identity in eval: skip two calls
            branch = self.drop_path(self.dropout(branch))
        x = x + branch  # [B, T, D]
        return x if self._pre else norm(x)

    def _context_error(self, context: torch.Tensor | None) -> None:
        where = f" at `{self._path}`" if self._path else ""
        if context is None:
            raise ShapeError(
                f"block part `transformer`{where} has a cross-attention, so it expects "
                "`context` [B, S, D]. Received: context=None"
            )
        raise ShapeError(
            f"block part `transformer`{where} has no cross-attention (cross_attention=None), "
            f"so it takes no `context`. Received: context of shape {tuple(context.shape)}; "
            "build the block with a `cross_attention` spec to attend to it."
        )

    def extra_repr(self) -> str:
        return f"norm_placement={self.norm_placement!r}"
