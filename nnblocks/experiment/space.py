"""A search space declared in a recipe's `tune:` section, sampled through an Optuna trial.

    tune:
      metric: valid_loss          # optional: default train.monitor, else valid_loss
      direction: minimize         # optional: inferred from the metric's name
      space:
        model.decoder.self_attention: [mha, gqa, linear]   # a list: one of these
        model.dim: {int: [64, 256], step: 64}              # an integer range
        train.lr: {float: [1.0e-4, 1.0e-2], log: true}     # a float range
        model.dropout: {float: [0.0, 0.3]}

Any recipe key can be searched: a part slot, a width, a depth, the learning rate, the
tokenizer of the data.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

from nnblocks.errors import SpecError

__all__ = ["Dimension", "parse_space"]


class Dimension:
    """One searched key: categorical choices, or an int/float range."""

    def __init__(self, key: str, decl: Any):
        self.key = key
        self.choices: list[Any] | None = None
        self.kind = "categorical"
        self.low: float = 0.0
        self.high: float = 0.0
        self.step: Any = None
        self.log = False
        where = f"tune.space.{key}"
        if isinstance(decl, list):
            if not decl:
                raise SpecError("an empty list of choices", path=where)
            self.choices = decl
            return
        if isinstance(decl, Mapping):
            unknown = set(decl) - {"int", "float", "step", "log", "choices"}
            if unknown:
                raise SpecError(
                    f"unknown keys {sorted(unknown)}; a range is {{int: [lo, hi]}} or "
                    "{float: [lo, hi], log: true}, choices a list",
                    path=where,
                )
            if "choices" in decl:
                return self.__init__(key, list(decl["choices"]))  # type: ignore[misc]
            for kind in ("int", "float"):
                if kind in decl:
                    bounds = decl[kind]
                    if not (isinstance(bounds, list) and len(bounds) == 2):
                        raise SpecError(f"expected [low, high]. Received: {bounds!r}", path=where)
                    low, high = bounds
                    if (
                        not (isinstance(low, (int, float)) and isinstance(high, (int, float)))
                        or low > high
                    ):
                        raise SpecError(
                            f"expected numbers with low <= high. Received: {bounds!r}", path=where
                        )
                    self.kind, self.low, self.high = kind, low, high
                    self.step, self.log = decl.get("step"), bool(decl.get("log", False))
                    if self.log and low <= 0:
                        raise SpecError("a log range needs low > 0", path=where)
                    return
        raise SpecError(
            "expected a list of choices, {int: [lo, hi]} or {float: [lo, hi], log: true}. "
            f"Received: {decl!r}",
            path=where,
        )

    def sample(self, trial: Any) -> Any:
        if self.kind == "int":
            return trial.suggest_int(
                self.key, int(self.low), int(self.high), step=int(self.step or 1), log=self.log
            )
        if self.kind == "float":
            return trial.suggest_float(
                self.key, float(self.low), float(self.high), step=self.step, log=self.log
            )
        assert self.choices is not None
        if all(c is None or isinstance(c, (bool, int, float, str)) for c in self.choices):
            return trial.suggest_categorical(self.key, self.choices)
        # Optuna stores only plain scalars: choose among JSON labels of the specs.
        labels = [json.dumps(c, sort_keys=True) for c in self.choices]
        return json.loads(trial.suggest_categorical(self.key, labels))

    @staticmethod
    def decode(value: Any) -> Any:
        """A stored parameter value back to a recipe value."""
        if isinstance(value, str) and value[:1] in "{[":
            try:
                return json.loads(value)
            except json.JSONDecodeError:
                return value
        return value


def parse_space(recipe: Mapping[str, Any]) -> list[Dimension]:
    """The searched dimensions of a recipe's `tune.space`.

    Raises:
        SpecError: no `tune.space`, an empty space, or a malformed dimension.
    """
    tune = recipe.get("tune") or {}
    if not isinstance(tune, Mapping):
        raise SpecError("expected a mapping with `space`", path="tune")
    unknown = set(tune) - {"space", "metric", "direction", "pruner", "sampler"}
    if unknown:
        raise SpecError(
            f"unknown keys {sorted(unknown)}; known: direction, metric, pruner, sampler, space",
            path="tune",
        )
    space = tune.get("space")
    if not space:
        raise SpecError(
            "the search space is empty: declare `tune: {space: {KEY: [choices] | {int|float: [lo, hi]}}}` "
            "in the recipe",
            path="tune.space",
        )
    if not isinstance(space, Mapping):
        raise SpecError("expected a mapping of recipe keys to choices or ranges", path="tune.space")
    return [Dimension(key, decl) for key, decl in space.items()]
