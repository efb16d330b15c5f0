"""What the Transformer models share: a stack of `block` parts, per-layer overrides, masks,
token checks and weight tying.

Private: the public names are the registered models (`transformer_lm`,
`transformer_seq2seq`, `transformer_classifier`); see ``nnblocks/models/transformer.py``.
"""

from __future__ import annotations

import dataclasses
import inspect
import re
from collections.abc import Callable, Mapping, Sequence
from typing import Any, NamedTuple

import torch
from torch import nn

from nnblocks._tracing import tracing as _tracing
from nnblocks.errors import RegistryError, ShapeError, SpecError
from nnblocks.models._checks import positive_int, received
from nnblocks.parts.boundary import check_probability
from nnblocks.registry import build, get_entry
from nnblocks.spec import close_matches, current_path, join_path, normalize

__all__ = [
    "LAYER_OPTIONS",
    "ENCODER_OPTIONS",
    "DECODER_OPTIONS",
    "Stack",
    "StackPlan",
    "plan_stacks",
    "TransformerStack",
    "build_blocks",
    "build_final_norm",
    "new_positions",
    "position_limit",
    "parse_overrides",
    "is_relative_position",
    "check_tokens",
    "key_mask",
    "tie_weight",
    "tied_groups",
    "final_norm_spec",
    "embed",
    "check_inputs",
    "input_masks",
    "padded_positions",
    "supports_cache",
]

# Model options that may change per layer (besides `block`, the block part itself), and
# the `block` argument each one fills.
LAYER_OPTIONS = {
    "self_attention": "attention",
    "cross_attention": "cross_attention",
    "feedforward": "feedforward",
    "norm": "norm",
    "norm_placement": "norm_placement",
    "dropout": "dropout",
    "drop_path": "drop_path",
}

# What a layer override may set in an encoder stack, and in a decoder of an encoder-decoder.
ENCODER_OPTIONS = {"block", *(k for k in LAYER_OPTIONS if k != "cross_attention")}
DECODER_OPTIONS = {"block", *LAYER_OPTIONS}

_WHERE = "the transformer model"  # what an option error names, with the spec path
_SELECTOR = re.compile(r"^\s*(\d+)\s*(?:-\s*(\d+)\s*)?$")
_INT_DTYPES = (torch.int64, torch.int32, torch.int16, torch.int8, torch.uint8)


def final_norm_spec(final_norm: Any, norm: Any, norm_placement: Any) -> Any:
    """The norm spec after the last layer: ``"auto"`` puts one after pre-norm stacks only.

    Pre-norm layers leave their residual stream un-normalised, so the stack needs a final
    norm (GPT-2's ``ln_f``, Radford et al. 2019); post-norm layers end with a norm already
    (Vaswani et al. 2017). ``True`` uses ``norm``, ``False``/None none, anything else is
    a norm spec.
    """
    if norm_placement not in ("pre", "post"):
        raise SpecError(
            'Received an invalid value for `norm_placement`: expected "pre" or "post". '
            f"Received: norm_placement={norm_placement!r}",
            path=current_path() or None,
        )
    if isinstance(final_norm, str) and final_norm == "auto":
        return norm if norm_placement == "pre" else None
    if final_norm is True:
        return norm
    if final_norm is False or final_norm is None:
        return None
    return final_norm


def embed(
    tokens: torch.Tensor,
    embedding: nn.Module,
    position: nn.Module | None,
    dropout: nn.Module | None,
    offset: int = 0,
    *,
    positions: torch.Tensor | None = None,
    token_type_ids: torch.Tensor | None = None,
    norm: nn.Module | None = None,
) -> torch.Tensor:
    """Token vectors with absolute positions added, normalised (optional) and dropped out.

    Args:
        tokens: ``[B, T]`` ids.
        offset: position of ``tokens[:, 0]`` when ``positions`` is None.
        positions: ``[B, T]`` each token's position, or None (``offset`` onwards).
        token_type_ids: ``[B, T]`` segment ids handed to the embedding part, or None.
        norm: a norm over the sum of the embeddings (BERT's embedding LayerNorm), or None.
    """
    if token_type_ids is None:
        x = embedding(tokens)  # [B, T, D]
    else:
        x = embedding(tokens, token_type_ids=token_type_ids)  # [B, T, D]
    if position is not None:
        if positions is None:
            x = position(x, offset=offset)  # [B, T, D]
        else:
            x = position(x, positions=positions)  # [B, T, D]
    if norm is not None:
        x = norm(x)
    if dropout is not None and dropout.training:  # the identity in eval: skip the call
        x = dropout(x)
    return x


def check_inputs(
    tokens: torch.Tensor,
    attention_mask: Any,
    position_ids: Any,
    token_type_ids: Any = None,
    *,
    model: str,
    mask_name: str = "attention_mask",
) -> None:
    """ShapeError naming the model unless the optional inputs fit ``tokens`` ``[B, T]``."""
    named = (
        (mask_name, attention_mask, "bool or 0/1 integers"),
        ("position_ids", position_ids, "integer positions"),
        ("token_type_ids", token_type_ids, "integer token types"),
    )
    for name, value, what in named:
        if value is None:
            continue
        ok = isinstance(value, torch.Tensor) and value.shape == tokens.shape
        if ok and name != mask_name:
            ok = value.dtype in _INT_DTYPES
        elif ok:  # the mask
            ok = value.dtype == torch.bool or value.dtype in _INT_DTYPES
        if not ok:
            raise ShapeError(
                f"model `{model}`: expected `{name}` as {what} of the tokens' shape "
                f"{list(tokens.shape)}. Received: {received(value)}"
            )


def padded_positions(mask: torch.Tensor) -> torch.Tensor:
    """``[B, T]`` positions counted from each row's first real token (0 on left padding).

    What Hugging Face's generation derives from ``attention_mask``, so a left-padded row
    gets the positions it would have alone.
    """
    return (mask.long().cumsum(dim=-1) - 1).clamp(min=0)


def input_masks(
    tokens: torch.Tensor,
    pad_id: int | None,
    attention_mask: torch.Tensor | None,
    position_ids: torch.Tensor | None,
    *,
    absolute: bool,
    model: str,
) -> tuple[torch.Tensor | None, torch.Tensor | None]:
    """The key mask and the token positions of a forward pass.

    Without ``attention_mask`` the mask comes from ``pad_id`` (as it always has) and
    positions run 0..T-1. With it, positions count from each row's first real token unless
    ``position_ids`` says otherwise. Relative position parts (rotary, ALiBi) see positions
    inside attention as 0..T-1; their scores depend on distances only, so any ``position_ids``
    that shift each row by a constant give the same result, and others are refused.

    Returns:
        ``(mask [B, T] bool or None, positions [B, T] long or None)``; positions are None
        when there is no absolute position part to take them or they are the default.

    Raises:
        SpecError: ``position_ids`` that are not a per-row shift of 0..T-1 with a relative
            position part.
    """
    if attention_mask is None:
        mask = key_mask(tokens, pad_id)
    else:
        mask = attention_mask.bool()  # [B, T]
        if not _tracing() and bool(mask.all()):
            mask = None  # the fused causal kernels take no mask
    positions = position_ids
    if positions is None and attention_mask is not None and mask is not None:
        positions = padded_positions(mask)
    if positions is None or absolute:
        return mask, positions if absolute else None
    if position_ids is not None and not _tracing():
        shift = position_ids - torch.arange(tokens.shape[1], device=tokens.device)  # [B, T]
        real = torch.ones_like(tokens, dtype=torch.bool) if mask is None else mask
        low = shift.masked_fill(~real, torch.iinfo(shift.dtype).max).amin(dim=1, keepdim=True)
        if bool(((shift != low) & real).any()):
            raise SpecError(
                f"model `{model}` has a relative position part (rotary, ALiBi), which sees "
                "positions as distances inside attention: expected `position_ids` that "
                "count up by one along each row's real tokens (any start). Received: "
                "position_ids with other steps; use an absolute position part for them.",
                path=current_path() or None,
            )
    return mask, None


def _layers_of(selector: str, n_layers: int, path: str) -> list[int]:
    """``"*"`` | ``"3"`` | ``"0-3"`` (inclusive) | a comma list of those -> layer indices."""
    if selector.strip() == "*":
        return list(range(n_layers))
    found: list[int] = []
    for piece in selector.split(","):
        match = _SELECTOR.match(piece)
        if match is None:
            raise SpecError(
                "a layer override key selects layers as `3`, `0-3` (inclusive), `*` or a comma "
                f'list such as `0,2,5-7`. Received: "{selector}"',
                path=path,
            )
        first = int(match.group(1))
        last = int(match.group(2)) if match.group(2) is not None else first
        if first > last or last >= n_layers:
            raise SpecError(
                f"layers `{piece.strip()}` do not exist: the stack has {n_layers} layers "
                f"(0-{n_layers - 1}).",
                path=path,
            )
        found.extend(range(first, last + 1))
    return found


class Stack(NamedTuple):
    """One stack of a Transformer model as the model's options give it (for ``plan_stacks``).

    Attributes:
        option: the model option that counts its layers (``"layers"``, ``"encoder_layers"``).
        layers: that option's value (checked to be an integer >= 0).
        allowed: the options a layer override may set (``ENCODER_OPTIONS``/``DECODER_OPTIONS``).
        options: the model's options for every layer of it (``decoder: {...}``), or None.
    """

    option: str
    layers: Any
    allowed: set[str]
    options: Mapping[str, Any] | None


@dataclasses.dataclass(frozen=True)
class StackPlan:
    """What the Transformer models work out before building their slots (one preamble).

    Attributes:
        dim, heads, max_len: the model's width, attention heads and longest sequence, checked.
        layers: stack name -> its number of layers, checked.
        options: the model-level layer options (``block`` and the keys of ``LAYER_OPTIONS``),
            rates checked.
        per_layer: stack name -> one dict of overridden options per layer.
        position: the model's position spec.
        relative: the relative position spec handed to every self-attention, or None.
        final_norm: the norm spec after each stack's last layer, or None.
    """

    dim: int
    heads: int
    max_len: int
    layers: dict[str, int]
    options: dict[str, Any]
    per_layer: dict[str, list[dict[str, Any]]]
    position: Any
    relative: Any
    final_norm: Any

    def embedding(self, spec: Any, *, at: str, vocab_size: int, pad_id: int | None) -> nn.Module:
        """A token embedding slot, ``dim`` wide (``padding_idx`` is the model's ``pad_id``)."""
        return build(
            spec, "embedding", at=at, dim=self.dim, vocab_size=vocab_size, padding_idx=pad_id
        )

    def absolute_position(self, *, at: str) -> nn.Module | None:
        """The position slot ``at`` added to the embeddings; None for a relative or no scheme."""
        if self.position is None or self.relative is not None:
            return None
        return build(self.position, "position", at=at, dim=self.dim, max_len=self.max_len)

    def dropout(self) -> nn.Module | None:
        """The embedding dropout (a `regularization` part in slot `dropout`); None when the
        rate is 0."""
        p = self.options["dropout"]
        if p == 0:
            return None
        return build({"name": "dropout", "p": p}, "regularization", at="dropout")

    def build(self, name: str, **extra: Any) -> TransformerStack:
        """Build stack ``name`` (slots ``name.layers.N``, ``name.final_norm``); ``extra``
        adds stack options (``cross_attention`` for a decoder that reads an encoder)."""
        layers = build_blocks(
            f"{name}.layers", self.layers[name], dim=self.dim, heads=self.heads,
            options={**self.options, **extra}, per_layer=self.per_layer[name],
            position=self.relative,
        )  # fmt: skip
        norm = build_final_norm(self.final_norm, at=f"{name}.final_norm", dim=self.dim)
        return TransformerStack(layers, norm)


def plan_stacks(
    *,
    dim: Any,
    heads: Any,
    max_len: Any,
    block: Any,
    self_attention: Any,
    feedforward: Any,
    norm: Any,
    norm_placement: str,
    dropout: float,
    drop_path: float,
    final_norm: Any,
    position: Any,
    layer_overrides: Mapping[str, Any] | None,
    stacks: Mapping[str, Stack],
) -> StackPlan:
    """The shared preamble of the Transformer models: sizes, options, overrides, positions,
    norm.

    Args:
        dim, heads, max_len: the model's width, heads and longest sequence.
        block, self_attention, feedforward, norm, norm_placement, dropout, drop_path: the
            model's options for every layer.
        final_norm: the model's ``final_norm`` option (see ``final_norm_spec``).
        position: the model's position spec (relative ones go to attention).
        layer_overrides: the model's ``layer_overrides``.
        stacks: stack name -> what the model's options say about it.

    Raises:
        SpecError: a bad size, rate, override, position or norm option, naming its spec path.
    """
    path = current_path()
    dim = positive_int("dim", dim)
    max_len = positive_int("max_len", max_len)
    heads = positive_int("heads", heads)
    layers = {s: positive_int(st.option, st.layers, minimum=0) for s, st in stacks.items()}
    options = {  # what every layer starts from, before its overrides
        "block": block,
        "self_attention": self_attention,
        "feedforward": feedforward,
        "norm": norm,
        "norm_placement": norm_placement,
        "dropout": check_probability(dropout, "dropout", where=_WHERE),
        "drop_path": check_probability(drop_path, "drop_path", where=_WHERE),
    }
    per_layer = parse_overrides(
        stack_overrides(
            layer_overrides, {s: st.options for s, st in stacks.items()}, path=join_path(path)
        ),
        {s: (layers[s], st.allowed) for s, st in stacks.items()},
        path=join_path(path, "layer_overrides"),
    )
    relative = is_relative_position(position, path=join_path(path, "position"))
    return StackPlan(
        dim=dim,
        heads=heads,
        max_len=max_len,
        layers=layers,
        options=options,
        per_layer=per_layer,
        position=position,
        relative=position if relative else None,
        final_norm=final_norm_spec(final_norm, norm, norm_placement),
    )


def stack_overrides(
    layer_overrides: Mapping[str, Any] | None,
    stacks: Mapping[str, Mapping[str, Any] | None],
    *,
    path: str,
) -> Mapping[str, Any] | None:
    """Merge stack-wide options (``decoder: {self_attention: gqa}``) in front of
    ``layer_overrides``, as ``"decoder.*"`` entries, so per-layer entries still win.

    Raises:
        SpecError: a stack-wide option that is not a dict.
    """
    merged: dict[str, Any] = {}
    for name, options in stacks.items():
        if options is None:
            continue
        if not isinstance(options, Mapping):
            raise SpecError(
                f"`{name}` holds options for every layer of the {name} stack, e.g. "
                f'{{"self_attention": "gqa"}}. Received: {options!r:.80}',
                path=join_path(path, name),
            )
        if options:
            merged[f"{name}.*"] = dict(options)
    if not merged:
        return layer_overrides
    if layer_overrides is not None and not isinstance(layer_overrides, Mapping):
        return layer_overrides  # parse_overrides reports it
    merged.update(layer_overrides or {})
    return merged


def parse_overrides(
    overrides: Mapping[str, Any] | None,
    stacks: Mapping[str, tuple[int, set[str]]],
    *,
    path: str,
) -> dict[str, list[dict[str, Any]]]:
    """Turn ``layer_overrides`` into per-layer option dicts for each stack.

    Args:
        overrides: ``{"[stack.]selector": {option: value}}`` (see ``transformer.py``).
            Entries apply in order; a later entry wins for an option both set.
        stacks: stack name -> (number of layers, options a layer of it may override).
            With one stack the ``stack.`` prefix may be left out.
        path: the spec path of ``layer_overrides`` for messages.

    Returns:
        stack name -> one dict per layer with that layer's overridden options.

    Raises:
        SpecError: a malformed key, an unknown stack or layer, an unknown option.
    """
    result: dict[str, list[dict[str, Any]]] = {
        s: [{} for _ in range(n)] for s, (n, _) in stacks.items()
    }
    if overrides is None:
        return result
    if not isinstance(overrides, Mapping):
        raise SpecError(
            '`layer_overrides` maps layers to options, e.g. {"0-3": {"self_attention": '
            f'"local"}}}}. Received: {type(overrides).__name__}',
            path=path,
        )
    names = list(stacks)
    for key, options in overrides.items():
        at = join_path(path, key)
        if not isinstance(key, str):
            # A saved spec is JSON, whose keys are strings; YAML reads `0:` as an int.
            raise SpecError(
                'a layer override key is a string such as "0", "0-3" or "*" (quote numbers '
                f"in YAML). Received: {key!r} ({type(key).__name__})",
                path=at,
            )
        stack, _, selector = key.rpartition(".")
        if not stack:
            if len(names) > 1:
                raise SpecError(
                    f"this model has several stacks ({', '.join(names)}): prefix the layers "
                    f'with one, e.g. "{names[0]}.{selector}".',
                    path=at,
                )
            stack = names[0]
        if stack not in stacks:
            raise SpecError(f"unknown stack `{stack}`. This model has: {', '.join(names)}", path=at)
        n_layers, allowed = stacks[stack]
        if not isinstance(options, Mapping):
            raise SpecError(
                "a layer override is a dict of layer options, e.g. "
                f'{{"self_attention": "local"}}. Received: {options!r:.80}',
                path=at,
            )
        for option in options:
            if option not in allowed:
                match = close_matches(option, allowed)
                hint = f" Did you mean `{match[0]}`?" if match else ""
                raise SpecError(
                    f"a layer of `{stack}` has no option `{option}`.{hint} "
                    f"Options a layer override may set: {', '.join(sorted(allowed))}",
                    path=at,
                )
        for i in _layers_of(selector, n_layers, at):
            result[stack][i].update(options)
    return result


def is_relative_position(spec: Any, *, path: str) -> bool:
    """True when a position spec names a relative scheme (handed to attention, not added)."""
    if spec is None:
        return False
    if isinstance(spec, (str, Mapping)):
        name, _ = normalize(spec, path=path)
        try:
            factory = get_entry("position", name).factory
        except RegistryError as exc:
            raise RegistryError(f"at `{path}`: {exc}") from None
        return bool(getattr(factory, "relative", False))
    return bool(getattr(spec, "relative", False))


def supports_cache(layer: nn.Module) -> bool:
    """Whether a block, and the self-attention inside it, take a ``cache=`` argument.

    A cross-attention without a cache is fine: the block then recomputes it each step.
    """
    modules = [layer]
    attention = getattr(layer, "self_attention", None)
    if isinstance(attention, nn.Module):
        modules.append(attention)
    return all("cache" in inspect.signature(m.forward).parameters for m in modules)


class TransformerStack(nn.Module):
    """A stack of `block` parts with an optional final norm (slots `layers.N`, `final_norm`).

    Call arguments:
        x: ``[B, T, D]``.
        mask: ``[B, T_keys]`` bool key mask (True = may attend) or None.
        causal: each position attends only to itself and earlier ones.
        context: ``[B, S, D]`` encoder output for cross-attention, or None.
        context_mask: ``[B, S]`` bool key mask of ``context`` or None.
        caches: None, or one cache dict per layer (``{}`` at the first step).

    Returns:
        ``(x [B, T, D], caches)``; ``caches`` is None when none was passed.
    """

    # While a model decodes: each layer's `step_directly`, or None for a layer that takes
    # the module path (nnblocks/models/_direct_steps.py sets it for one decoding call).
    direct_steps: list[Callable[..., Any] | None] | None = None

    def __init__(self, layers: Sequence[nn.Module], final_norm: nn.Module | None):
        super().__init__()
        self.layers = nn.ModuleList(layers)
        self.final_norm = final_norm
        self.cacheable = all(supports_cache(layer) for layer in self.layers)

    def forward(
        self,
        x: torch.Tensor,
        mask: torch.Tensor | None = None,
        causal: bool = False,
        context: torch.Tensor | None = None,
        context_mask: torch.Tensor | None = None,
        caches: list[dict[str, Any]] | None = None,
    ) -> tuple[torch.Tensor, list[dict[str, Any]] | None]:
        new_caches = None
        if caches is None:
            for layer in self.layers:
                x = layer(x, mask=mask, causal=causal, context=context, context_mask=context_mask)
        else:
            new_caches = []
            for layer, step, cache in zip(self.layers, self._steps(x, mask), caches):
                stepped = None if step is None else step(x, cache, context, context_mask)
                if stepped is None:
                    stepped = layer(
                        x,
                        mask=mask,
                        causal=causal,
                        context=context,
                        context_mask=context_mask,
                        cache=cache,
                    )
                x, cache = stepped
                new_caches.append(cache)
        if self.final_norm is not None:
            x = self.final_norm(x)
        return x, new_caches  # [B, T, D]

    def _steps(
        self, x: torch.Tensor, mask: torch.Tensor | None
    ) -> Sequence[Callable[..., Any] | None]:
        """Per layer, its direct step for this cached call, or None for the module path."""
        direct = self.direct_steps
        if (
            direct is None
            or mask is not None
            or x.shape[1] != 1
            or _tracing()  # a graph of the step records what `forward` does
        ):
            return [None] * len(self.layers)
        return direct


def build_blocks(
    prefix: str,
    n_layers: int,
    *,
    dim: int,
    heads: int,
    options: Mapping[str, Any],
    per_layer: Sequence[Mapping[str, Any]] | None = None,
    position: Any = None,
) -> list[nn.Module]:
    """Build blocks in slots ``prefix.0 .. prefix.{n-1}``.

    Args:
        prefix: the slot path of the layer list (``decoder.layers``, or ``layers``).
        n_layers: number of blocks.
        dim, heads: offered to every block.
        options: the model-level layer options (``block`` and any keys of
            ``LAYER_OPTIONS``). A float ``drop_path`` is the rate of the last layer, and
            layer ``i`` gets ``drop_path * (i + 1) / n_layers`` (the linear rule of Huang
            et al. 2016).
        per_layer: overrides for each layer (from ``parse_overrides``), or None; an
            override's ``drop_path`` is used as given.
        position: a relative position spec handed to every block, or None.
    """
    layers = []
    for i in range(n_layers):
        merged = dict(options)
        drop_path = merged.get("drop_path")
        if isinstance(drop_path, (int, float)) and not isinstance(drop_path, bool):
            merged["drop_path"] = drop_path * (i + 1) / n_layers
        if per_layer is not None:
            merged.update(per_layer[i])
        block_spec = merged.pop("block")
        kwargs: dict[str, Any] = {LAYER_OPTIONS[k]: v for k, v in merged.items()}
        if position is not None:
            kwargs["position"] = position
        layers.append(
            build(block_spec, "block", at=f"{prefix}.{i}", dim=dim, heads=heads, **kwargs)
        )
    return layers


def build_final_norm(spec: Any, *, at: str, dim: int) -> nn.Module | None:
    """The norm after a stack's last layer in slot ``at``; None when ``spec`` is None."""
    return None if spec is None else build(spec, "norm", at=at, dim=dim)


def position_limit(position: nn.Module | None) -> int | None:
    """The ``max_len`` of an absolute position part (None: no part, or no limit); what is
    not an int is ignored where it is read (``nnblocks.generate``)."""
    return getattr(position, "max_len", None)


def new_positions(prefix: torch.Tensor, state: Mapping[str, Any], *, model: str) -> int:
    """How many positions of a decoding ``prefix`` ``[B, t]`` the caches in ``state`` cover.

    Raises:
        ShapeError: the prefix holds no position beyond those.
    """
    seen = int(state["length"])
    if prefix.shape[1] <= seen:
        raise ShapeError(
            f"model `{model}`: step expected a prefix longer than the {seen} "
            f"cached positions. Received: prefix of shape {tuple(prefix.shape)}"
        )
    return seen


def check_tokens(tokens: Any, *, model: str, arg: str = "tokens") -> None:
    """ShapeError naming the model unless ``tokens`` is an integer tensor ``[B, T]``."""
    if not isinstance(tokens, torch.Tensor) or tokens.dim() != 2 or tokens.dtype not in _INT_DTYPES:
        raise ShapeError(
            f"model `{model}`: expected `{arg}` as integer token ids [B, T] (torch.long). "
            f"Received: {received(tokens)}"
        )


def key_mask(tokens: torch.Tensor, pad_id: int | None) -> torch.Tensor | None:
    """``[B, T]`` bool, True at real tokens; None when nothing is padding.

    Leaving the mask out when there is no padding lets attention use the fused causal
    kernels (``is_causal=True``); the check costs one reduction per forward.
    """
    if pad_id is None:
        return None
    mask = tokens != pad_id  # [B, T]
    if _tracing():
        return mask  # a data-dependent branch would be frozen into an exported graph
    if bool(mask.all()):
        return None
    return mask


def tie_weight(source: nn.Module, target: nn.Module, *, slot: str) -> nn.Parameter:
    """Make ``target`` use ``source.weight`` in place of its own ``.weight``.

    The target's Parameter is replaced wherever the target holds it (``head.weight`` or a
    projection inside the head), so any head part exposing ``.weight`` can be tied.

    Returns:
        The shared Parameter.

    Raises:
        SpecError: either part has no ``.weight`` Parameter, or the shapes differ.
    """
    path = join_path(current_path(), slot) or None
    weight = getattr(source, "weight", None)
    old = getattr(target, "weight", None)
    for value, what, module in ((weight, "the embedding", source), (old, f"`{slot}`", target)):
        if not isinstance(value, nn.Parameter):
            raise SpecError(
                f"tying needs {what} to expose a `.weight` Parameter; {type(module).__name__} "
                "has none. Set tie_embeddings to false or choose a part that has one.",
                path=path,
            )
    assert isinstance(weight, nn.Parameter) and isinstance(old, nn.Parameter)  # for mypy
    if weight.shape != old.shape:
        raise SpecError(
            f"cannot tie `{slot}` to the embedding: expected a weight of shape "
            f"{tuple(weight.shape)}. Received: {tuple(old.shape)}",
            path=path,
        )
    for module in target.modules():
        for name, param in list(module._parameters.items()):
            if param is old:
                setattr(module, name, weight)
    return weight


def tied_groups(model: nn.Module, params: Sequence[nn.Parameter]) -> list[tuple[str, ...]]:
    """One tuple of names (as ``model.named_parameters`` spells them) per shared Parameter.

    This is what a model stores as ``model.tied_parameters``: the sharing it declares on
    purpose, which the reuse audit accepts.
    """
    names: dict[int, list[str]] = {id(p): [] for p in params}
    for name, param in model.named_parameters(remove_duplicate=False):
        if id(param) in names:
            names[id(param)].append(name)
    return [tuple(n) for n in names.values() if len(n) > 1]
