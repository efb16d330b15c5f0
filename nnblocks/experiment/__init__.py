"""Rapid iteration: reproducible recipes, ablations over seeds, automatic search."""

from nnblocks.experiment.ablate import AblationResult, ablate
from nnblocks.experiment.recipe import Recipe, apply_overrides, load_recipe, parse_override
from nnblocks.experiment.run import (
    CheckedRecipe,
    RunResult,
    build_from_recipe,
    check_recipe,
    run_recipe,
)
from nnblocks.experiment.tune import TuneResult, tune

__all__ = [
    "AblationResult",
    "CheckedRecipe",
    "Recipe",
    "RunResult",
    "TuneResult",
    "ablate",
    "apply_overrides",
    "build_from_recipe",
    "check_recipe",
    "load_recipe",
    "parse_override",
    "run_recipe",
    "tune",
]
