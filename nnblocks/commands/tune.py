"""`nnblocks tune RECIPE --trials N [--storage URL]`: search the recipe's `tune.space`."""

from __future__ import annotations

import argparse

from rich.console import Console

from nnblocks.commands._common import add_overrides
from nnblocks.experiment.tune import tune


def configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("recipe", help="a recipe YAML file with a `tune:` section")
    parser.add_argument(
        "--trials", type=int, default=20, help="finished trials the study should hold"
    )
    parser.add_argument(
        "--storage",
        help="Optuna storage URL shared by workers: sqlite:///FILE (default: in the output "
        "folder) or postgresql://USER@HOST/DB for many machines",
    )
    parser.add_argument("--study", help="study name (default: the recipe's name)")
    parser.add_argument("--out", help="output folder (default runs/tune-NAME)")
    parser.add_argument(
        "--timeout", type=float, help="stop starting trials after this many seconds"
    )
    parser.add_argument(
        "--overwrite",
        action="store_true",
        help="replace a study of this name made from another recipe or search space",
    )
    add_overrides(parser, help="override a recipe key for every trial")


def run(args: argparse.Namespace) -> int:
    result = tune(
        args.recipe,
        args.trials,
        storage=args.storage,
        study_name=args.study,
        folder=args.out,
        overrides=args.overrides,
        timeout=args.timeout,
        overwrite=args.overwrite,
    )
    console = Console()
    console.print(f"best value {result.best_value:.4f} with {result.best_params}")
    console.print(f"{result.n_complete} complete, {result.n_pruned} pruned trials")
    console.print(
        f"best recipe: {result.best_recipe} (run it with `nnblocks train {result.best_recipe}`)"
    )
    return 0
