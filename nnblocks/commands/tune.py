"""`nnblocks tune RECIPE --trials N [--storage URL]`: search the recipe's `tune.space`."""

from __future__ import annotations

import argparse
from typing import Any

from rich.console import Console
from rich.table import Table

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
    console.print(trials_table(result.study))
    console.print(f"best value {result.best_value:.4f} with {result.best_params}")
    console.print(f"{result.n_complete} complete, {result.n_pruned} pruned trials")
    console.print(
        f"best recipe: {result.best_recipe} (run it with `nnblocks train {result.best_recipe}`)"
    )
    return 0


def _short_names(keys: list[str]) -> dict[str, str]:
    """Dotted keys -> their last piece where that is unambiguous (narrow columns)."""
    last = [k.rpartition(".")[2] for k in keys]
    return {k: (short if last.count(short) == 1 else k) for k, short in zip(keys, last)}


def _cell(value: object) -> str:
    if isinstance(value, float):
        return f"{value:.4g}"
    return "" if value is None else str(value)


def trials_table(study: Any) -> Table:
    """One row per trial: number, state, value and each searched setting. Rich shrinks and
    folds the columns to the console's width, so the table fits the terminal."""
    keys = sorted({k for t in study.trials for k in t.params})
    names = _short_names(keys)
    table = Table(title=f"study {study.study_name}: trials")
    table.add_column("trial", justify="right")
    table.add_column("state")
    table.add_column("value", justify="right")
    for key in keys:
        table.add_column(names[key], overflow="fold")
    for trial in study.trials:
        state = trial.state.name.lower()
        table.add_row(
            str(trial.number),
            state,
            _cell(trial.value),
            *(_cell(trial.params.get(k)) for k in keys),
        )
    return table
