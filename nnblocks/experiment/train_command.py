"""`nnblocks train RECIPE [--set KEY=VALUE ...]`: train a recipe and write its run folder."""

from __future__ import annotations

import argparse
import json
import logging
import os
from pathlib import Path

from nnblocks.experiment.recipe import load_recipe
from nnblocks.experiment.run import check_recipe, default_run_dir, run_recipe

log = logging.getLogger(__name__)


def configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("recipe", help="a recipe YAML file")
    parser.add_argument(
        "--set",
        dest="overrides",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="override a recipe key by its dotted path, e.g. model.dim=256 or train.lr=3e-3",
    )
    parser.add_argument("--seed", type=int, help="override the recipe's seed")
    parser.add_argument("--out", help="run folder (default: runs/NAME-TIMESTAMP)")
    parser.add_argument(
        "--resume", action="store_true", help="continue from the run folder's last checkpoint"
    )
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")
    parser.add_argument("--json", action="store_true", help="print the final metrics as JSON")


def run(args: argparse.Namespace) -> int:
    overrides = list(args.overrides)
    if args.seed is not None:
        overrides.append(f"seed={args.seed}")
    recipe = load_recipe(args.recipe, overrides)  # every key validated, once
    checked = check_recipe(recipe)  # data and model built before training starts
    folder = Path(args.out) if args.out else default_run_dir(recipe)
    progress = not args.no_progress and os.environ.get("NNBLOCKS_PROGRESS", "1") != "0"
    result = run_recipe(checked, folder, progress=progress, resume=args.resume)
    if args.json:
        print(json.dumps(result.metrics, indent=2, sort_keys=True))
    else:
        _print_summary(result.metrics, folder)
    return 0


def _print_summary(metrics: dict, folder: Path) -> None:
    from rich.console import Console
    from rich.table import Table

    table = Table(title=f"run: {folder}")
    table.add_column("metric")
    table.add_column("value", justify="right")
    for key in sorted(metrics):
        value = metrics[key]
        table.add_row(key, f"{value:.4f}" if isinstance(value, float) else str(value))
    Console().print(table)
