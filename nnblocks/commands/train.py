"""`nnblocks train RECIPE [--set KEY=VALUE ...]`: train a recipe and write its run folder.

Everything is checked before anything is written: the recipe (every key, once), the run
folder (not in use, no finished run unless ``--overwrite``, a checkpoint for ``--resume``),
the data and the model. Ctrl-C or SIGTERM during training saves a checkpoint and exits
with 130 / 143 and one line that says how to resume. A finished run prints its metrics,
where its views are (loss curves, TensorBoard logs, model card) and, last, one sentence
with the headline metric (``nnblocks.commands.train_summary``).
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import shlex
import sys
from pathlib import Path

from nnblocks.commands._common import add_overrides
from nnblocks.commands.train_summary import headline, summary_rows, view_paths
from nnblocks.experiment.folder import check_folder
from nnblocks.experiment.recipe import Recipe, load_recipe
from nnblocks.experiment.run import check_recipe, default_run_dir, run_recipe
from nnblocks.train.interrupt import TrainingInterrupted

log = logging.getLogger(__name__)


def configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("recipe", help="a recipe YAML file")
    add_overrides(
        parser, "override a recipe key by its dotted path, e.g. model.dim=256 or train.lr=3e-3"
    )
    parser.add_argument("--seed", type=int, help="override the recipe's seed")
    parser.add_argument("--out", help="run folder (default: runs/NAME-TIMESTAMP)")
    parser.add_argument(
        "--resume", action="store_true", help="continue from the run folder's last checkpoint"
    )
    parser.add_argument(
        "--overwrite", action="store_true", help="replace a finished run in the run folder"
    )
    parser.add_argument(
        "--from",
        dest="start_from",
        metavar="RUN_OR_CHECKPOINT",
        help="continue the model of a finished run (or a training checkpoint) on this recipe's data",
    )
    parser.add_argument(
        "--tensorboard",
        action="store_true",
        help="write TensorBoard logs into the run folder's tensorboard/ (train.tensorboard=true)",
    )
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")
    parser.add_argument("--json", action="store_true", help="print the final metrics as JSON")


def run(args: argparse.Namespace) -> int:
    overrides = list(args.overrides)
    if args.seed is not None:
        overrides.append(f"seed={args.seed}")
    if args.tensorboard:
        overrides.append("train.tensorboard=true")
    recipe = load_recipe(args.recipe, overrides)  # every key validated, once
    folder = Path(args.out) if args.out else default_run_dir(recipe)
    check_folder(folder, resume=args.resume, overwrite=args.overwrite)  # writes nothing
    checked = check_recipe(recipe)  # data and model built before training starts
    progress = not args.no_progress and os.environ.get("NNBLOCKS_PROGRESS", "1") != "0"
    try:
        result = run_recipe(
            checked,
            folder,
            progress=progress,
            resume=args.resume,
            overwrite=args.overwrite,
            start_from=args.start_from,
        )
    except TrainingInterrupted as exc:
        print(f"{exc}; resume with: {_resume_command(args, folder)}", file=sys.stderr)
        return exc.exit_code
    if args.json:
        print(json.dumps(result.metrics, indent=2, sort_keys=True))
    else:
        _print_summary(result.metrics, recipe, folder)
    return 0


def _resume_command(args: argparse.Namespace, folder: Path) -> str:
    words = ["nnblocks", "train", args.recipe, "--out", str(folder), "--resume"]
    for o in args.overrides:
        words += ["--set", o]
    if args.seed is not None:
        words += ["--seed", str(args.seed)]
    if args.tensorboard:
        words.append("--tensorboard")
    return shlex.join(words)


def _print_summary(metrics: dict, recipe: Recipe, folder: Path) -> None:
    from rich.console import Console
    from rich.table import Table

    table = Table(title=f"run: {folder}")
    table.add_column("metric")
    table.add_column("value", justify="right")
    for name, text in summary_rows(metrics):
        table.add_row(name, text)
    console = Console()
    console.print(table)
    views = view_paths(folder)
    width = max((len(what) for what, _ in views), default=0) + 1
    for what, where in views:
        console.print(f"{what + ':':<{width}} {where}", highlight=False, soft_wrap=True)
    name = recipe.get("name") or folder.name
    console.print(headline(metrics, recipe, name), highlight=False, soft_wrap=True)
