"""The grid of an ablation: `--vary KEY=V1,V2` lists expanded into variants."""

from __future__ import annotations

import dataclasses
import itertools
import re
from collections.abc import Iterable, Sequence
from typing import Any

import yaml

from nnblocks.errors import SpecError
from nnblocks.experiment.recipe import read_value

__all__ = ["Variant", "parse_vary", "expand_grid"]


@dataclasses.dataclass(frozen=True)
class Variant:
    """One point of the grid: the overrides it applies and a folder-safe name."""

    overrides: tuple[tuple[str, Any], ...]

    @property
    def label(self) -> str:
        return ", ".join(f"{k.split('.')[-1]}={_show(v)}" for k, v in self.overrides) or "recipe"

    @property
    def slug(self) -> str:
        text = "__".join(f"{k}={_show(v)}" for k, v in self.overrides) or "recipe"
        return re.sub(r"[^A-Za-z0-9_.=-]+", "-", text)[:150]


def _show(value: Any) -> str:
    if isinstance(value, dict):
        return str(value.get("name", value))
    return str(value)


def parse_vary(text: str) -> tuple[str, list[Any]]:
    """``"model.norm=layer,rms"`` -> ``("model.norm", ["layer", "rms"])``.

    Values are read as YAML; a value holding commas can be given as a YAML list:
    ``model.dims=[[64,64],[128]]``.
    """
    key, sep, raw = text.partition("=")
    key = key.strip()
    if not sep or not key or not raw.strip():
        raise SpecError(f"--vary takes KEY=V1,V2,... Received: {text!r}")
    raw = raw.strip()
    if raw.startswith("["):
        try:
            values = yaml.safe_load(raw)
        except yaml.YAMLError as exc:
            raise SpecError(f"the list of values is not valid YAML: {exc}", path=key) from exc
        if not isinstance(values, list):
            raise SpecError(f"expected a list of values. Received: {raw!r}", path=key)
    else:
        values = [read_value(v, key=key) for v in raw.split(",")]
    if not values:
        raise SpecError("--vary needs at least one value", path=key)
    return key, values


def expand_grid(varies: Sequence[tuple[str, list[Any]]]) -> list[Variant]:
    """All combinations, the first value of each key first (that variant is the baseline)."""
    keys = [k for k, _ in varies]
    if len(set(keys)) != len(keys):
        raise SpecError(f"a key is varied twice: {keys}")
    combos: Iterable[tuple[Any, ...]] = itertools.product(*(vals for _, vals in varies))
    return [Variant(tuple(zip(keys, combo))) for combo in combos]
