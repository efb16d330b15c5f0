"""Named seeds: a run's randomness split into its sources (Bouthillier et al. 2021).

A recipe's ``seed`` is an int (every source seeded with it, as before) or a mapping of the
three named sources::

    seed: {init: 1, data: 2, dropout: 3}

- ``init``: the global RNG while the model is built (weight initialisation);
- ``data``: the Learner's per-epoch shuffling order of the training data;
- ``dropout``: the global RNG from the first training step on (dropout, drop-path and
  random augmentation draw from it).

Holding two fixed and varying one measures how much of the spread that source alone causes
(``nnblocks ablate --vary-seed data``). Missing names in a mapping default to 0.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from nnblocks.errors import SpecError

__all__ = ["SEED_NAMES", "check_seed", "seed_values", "shift_seed"]

SEED_NAMES = ("init", "data", "dropout")


def check_seed(value: Any, *, path: str = "seed") -> None:
    """Raise SpecError unless ``value`` is an int or a mapping of named int seeds."""
    if isinstance(value, int) and not isinstance(value, bool):
        return
    if isinstance(value, Mapping):
        for key, v in value.items():
            if key not in SEED_NAMES:
                raise SpecError(
                    f"unknown seed `{key}`; the named seeds are {', '.join(SEED_NAMES)}",
                    path=f"{path}.{key}",
                )
            if not isinstance(v, int) or isinstance(v, bool):
                raise SpecError(f"expected an integer seed. Received: {v!r}", path=f"{path}.{key}")
        return
    raise SpecError(
        f"expected an integer seed or a mapping {{init, data, dropout}} of integers. "
        f"Received: {value!r}",
        path=path,
    )


def seed_values(value: Any) -> dict[str, int]:
    """``{"init", "data", "dropout"}`` of a recipe's seed (an int seeds all three)."""
    check_seed(value)
    if isinstance(value, Mapping):
        return {name: int(value.get(name, 0)) for name in SEED_NAMES}
    return dict.fromkeys(SEED_NAMES, int(value))


def shift_seed(value: Any, offset: int, vary: str = "all") -> Any:
    """The seed of the ``offset``-th repetition: every source moved (``vary="all"``; an int
    stays an int) or only the named one.

    Raises:
        SpecError: ``vary`` is not "all" or a seed name.
    """
    if vary != "all" and vary not in SEED_NAMES:
        raise SpecError(
            f"expected all or one of {', '.join(SEED_NAMES)}. Received: {vary!r}",
            path="vary_seed",
        )
    check_seed(value)
    if vary == "all" and not isinstance(value, Mapping):
        return int(value) + offset
    seeds = seed_values(value)
    for name in SEED_NAMES:
        if vary in ("all", name):
            seeds[name] += offset
    return seeds
