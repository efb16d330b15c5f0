"""Weight mapping between a checkpoint's tensors and an nnblocks model's parameters.

A mapping is a list of ``Rule``: one nnblocks tensor made from one or more checkpoint
tensors by a fixed operation (copy, transpose, a slice of a fused tensor, a concatenation).
The same rules run both ways: ``load_weights`` (import) and ``export_weights`` (export).

Import streams: the model is built on the meta device, every rule's result shape is worked
out on meta tensors from the safetensors headers (a size mismatch fails before anything
large is allocated), the model is materialised once, and each parameter is filled from its
source tensors, which are read one at a time.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable, Sequence
from typing import TYPE_CHECKING, Any

import torch
from torch import nn

from nnblocks.errors import CheckpointError, SpecError

if TYPE_CHECKING:
    from nnblocks.interop._source import Source

__all__ = ["Rule", "Config", "copy", "plan_shapes", "load_weights", "export_weights", "materialise"]


@dataclasses.dataclass(frozen=True)
class Rule:
    """``target`` (an nnblocks state-dict name) made from ``sources`` (checkpoint names).

    Operations: ``"copy"`` (one source), ``"chunk"`` (piece ``index`` of ``parts`` equal
    pieces of the source along ``dim``: a fused query/key/value tensor), ``"cat"`` (the
    sources concatenated along ``dim``: gate and up projections). ``transpose`` then
    transposes the 2-D result (GPT-2 stores its projections as ``[in, out]``).
    """

    target: str
    sources: tuple[str, ...]
    op: str = "copy"
    dim: int = 0
    index: int = 0
    parts: int = 1
    transpose: bool = False

    def apply(self, tensors: Sequence[torch.Tensor]) -> torch.Tensor:
        if self.op == "cat":
            x = torch.cat(list(tensors), dim=self.dim)
        elif self.op == "chunk":
            x = tensors[0].chunk(self.parts, dim=self.dim)[self.index]
        else:
            x = tensors[0]
        return x.t() if self.transpose else x


def copy(target: str, source: str, *, transpose: bool = False) -> Rule:
    return Rule(target, (source,), transpose=transpose)


class Config:
    """A transformers config dict read with messages that name the config class and key."""

    def __init__(self, data: dict[str, Any], class_name: str, where: str):
        self.data, self.class_name, self.where = data, class_name, where

    def get(self, key: str, default: Any = None) -> Any:
        value = self.data.get(key, default)
        return default if value is None else value

    def require(self, key: str, kind: type | tuple[type, ...] = int) -> Any:
        value = self.data.get(key)
        if isinstance(value, bool) or not isinstance(value, kind):
            raise SpecError(
                f"{self.class_name}.{key}: expected {_kind_name(kind)}. Received: {value!r}",
                path=self.where,
            )
        return value

    def refuse(self, key: str, value: Any, supported: Iterable[Any]) -> SpecError:
        """The error for a value nnblocks cannot map (raise it)."""
        listed = ", ".join(str(s) for s in supported)
        return SpecError(
            f"{self.class_name}.{key} {value!r} is not supported; supported: {listed}",
            path=self.where,
        )

    def only(self, key: str, allowed: Sequence[Any], default: Any = None) -> Any:
        """The value of ``key`` (``default`` when absent), refused unless in ``allowed``."""
        value = self.data.get(key, default)
        if value not in allowed:
            raise self.refuse(key, value, allowed)
        return value


_KIND_NAMES = {"int": "an integer", "float": "a number", "str": "a string"}


def _kind_name(kind: type | tuple[type, ...]) -> str:
    kinds = kind if isinstance(kind, tuple) else (kind,)
    return " or ".join(_KIND_NAMES.get(k.__name__, k.__name__) for k in kinds)


def materialise(model: nn.Module, device: str | torch.device = "cpu") -> None:
    """Give a model built on the meta device real (uninitialised) storage, keeping ties."""
    groups = [tuple(g) for g in getattr(model, "tied_parameters", [])]
    saved = set(model.state_dict())
    unsaved = [n for n, _ in model.named_buffers() if n not in saved]
    if unsaved:  # to_empty would leave them uninitialised and no checkpoint fills them
        raise CheckpointError(
            "cannot import into a model with non-persistent buffers (nothing would fill "
            f"them): {', '.join(unsaved)}"
        )
    model.to_empty(device=device)
    for group in groups:
        shared = model.get_parameter(group[0])
        for name in group[1:]:
            owner, _, attr = name.rpartition(".")
            setattr(model.get_submodule(owner), attr, shared)


def _targets(model: nn.Module) -> dict[str, torch.Tensor]:
    """Every tensor the mapping must fill: parameters (tied ones once) and saved buffers."""
    return dict(model.state_dict(keep_vars=True))


def plan_shapes(
    model: nn.Module, source: Source, rules: Sequence[Rule], optional: set[str]
) -> None:
    """Check names and shapes from the headers alone, before any data is read.

    Raises:
        CheckpointError: missing or left-over checkpoint tensors, nnblocks tensors no rule
            fills, or a rule whose result does not have the parameter's shape.
    """
    have = set(source.shapes)
    used = {name for rule in rules for name in rule.sources}
    missing = sorted(used - have)
    if missing:
        raise CheckpointError(
            f"{source.where}: the {source.architecture} mapping needs tensors the checkpoint "
            f"lacks: {', '.join(missing[:20])}{' ...' if len(missing) > 20 else ''}"
        )
    left = sorted(have - used - optional)
    if left:
        raise CheckpointError(
            f"{source.where}: tensors the {source.architecture} mapping does not use (a "
            f"config option it does not know?): {', '.join(left[:20])}"
            f"{' ...' if len(left) > 20 else ''}"
        )
    targets = _targets(model)
    tied = {n for g in getattr(model, "tied_parameters", []) for n in g[1:]}
    filled = {rule.target for rule in rules}
    unfilled = sorted(set(targets) - filled - tied)
    unknown = sorted(filled - set(targets))
    if unfilled or unknown:
        raise CheckpointError(
            f"{source.where}: the {source.architecture} mapping does not fit the nnblocks "
            f"model: parameters without a source: {', '.join(unfilled) or 'none'}; "
            f"targets the model lacks: {', '.join(unknown) or 'none'}"
        )
    for rule in rules:
        fake = [torch.empty(source.shapes[s], device="meta") for s in rule.sources]
        try:
            got = tuple(rule.apply(fake).shape)
        except RuntimeError as exc:
            raise CheckpointError(
                f"{source.where}: cannot make `{rule.target}` from "
                f"{', '.join(rule.sources)} (shapes {[tuple(f.shape) for f in fake]}): {exc}"
            ) from None
        want = tuple(targets[rule.target].shape)
        if got != want:
            raise CheckpointError(
                f"{source.where}: `{', '.join(rule.sources)}` has shape "
                f"{[source.shapes[s] for s in rule.sources]}, which gives {list(got)} for "
                f"`{rule.target}`; the config's sizes expect {list(want)}. The config and "
                "the weights disagree."
            )


def load_weights(model: nn.Module, source: Source, rules: Sequence[Rule]) -> None:
    """Fill a materialised model's tensors from the checkpoint, one rule at a time."""
    targets = _targets(model)
    with torch.no_grad():
        for rule in rules:
            target = targets[rule.target].detach()
            if _read_direct(source, rule, target):
                continue
            value = rule.apply([source.read(s) for s in rule.sources])
            target.copy_(value)  # converts dtype; the temporary is then freed


def _read_direct(source: Source, rule: Rule, target: torch.Tensor) -> bool:
    """Read the sources straight into ``target`` when the rule only copies or stacks rows."""
    if rule.transpose or rule.op == "chunk":
        return False
    if rule.op == "copy":
        return source.read_into(rule.sources[0], target)
    if rule.dim != 0:
        return False
    sizes = [source.shapes[s][0] if source.shapes[s] else 0 for s in rule.sources]
    pieces = target.split(sizes, dim=0)  # rows of a contiguous tensor: contiguous views
    if not all(source.read_into(s, piece) for s, piece in zip(rule.sources, pieces)):
        target.copy_(rule.apply([source.read(s) for s in rule.sources]))
    return True


def export_weights(model: nn.Module, rules: Sequence[Rule]) -> dict[str, torch.Tensor]:
    """Checkpoint tensors from an nnblocks model: every rule run backwards.

    Returns:
        checkpoint name -> contiguous CPU tensor.
    """
    state = model.state_dict()
    by_source: dict[str, list[Rule]] = {}
    for rule in rules:
        for name in rule.sources:
            by_source.setdefault(name, []).append(rule)
    out: dict[str, torch.Tensor] = {}
    for name, used_by in by_source.items():
        first = used_by[0]

        def back(rule: Rule) -> torch.Tensor:
            x = state[rule.target].detach().cpu()
            return x.t() if rule.transpose else x

        if first.op == "chunk":
            pieces = sorted(used_by, key=lambda r: r.index)
            value = torch.cat([back(r) for r in pieces], dim=first.dim)
        elif first.op == "cat":
            value = back(first).chunk(len(first.sources), dim=first.dim)[first.sources.index(name)]
        else:
            value = back(first)
        out[name] = value.contiguous().clone()
    return out
