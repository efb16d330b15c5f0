"""`nnblocks ablate RECIPE --vary KEY=V1,V2 [--vary ...] --seeds 3 [--jobs N]`."""

from __future__ import annotations

import argparse

from rich.console import Console

from nnblocks.experiment.ablate import ablate
from nnblocks.experiment.table import to_rich


def configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("recipe", help="a recipe YAML file")
    parser.add_argument(
        "--vary",
        action="append",
        default=[],
        metavar="KEY=V1,V2",
        help="a recipe key and the values to try; the first is the baseline",
    )
    parser.add_argument("--seeds", type=int, default=3, help="seeds per variant (default 3)")
    parser.add_argument("--jobs", type=int, default=1, help="runs at a time (default 1)")
    parser.add_argument(
        "--out", help="folder for the runs and the table (default runs/ablate-NAME)"
    )
    parser.add_argument(
        "--metric", help="the compared metric (default: train.monitor or a test metric)"
    )
    parser.add_argument(
        "--set",
        dest="overrides",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="override a recipe key for every variant",
    )


def run(args: argparse.Namespace) -> int:
    result = ablate(
        args.recipe,
        args.vary,
        seeds=args.seeds,
        jobs=args.jobs,
        folder=args.out,
        metric=args.metric,
        overrides=args.overrides,
    )
    console = Console()
    if not console.is_terminal:  # logs and CI: wide enough that the table does not fold
        console = Console(width=160)
    console.print(to_rich(result.rows, result.metric, title=f"ablation: {result.metric}"))
    console.print("significance: Welch's t-test against the baseline (first variant), alpha=0.05")
    for w in result.warnings:
        console.print(f"[yellow]warning:[/] {w}")
    for f in result.failed:
        console.print(f"[red]failed run:[/] {f.splitlines()[0]}")
    console.print(
        f"table: {result.folder / 'table.md'}, {result.folder / 'table.csv'}; "
        f"chart: {result.folder / 'chart.png'}"
    )
    return 1 if result.failed else 0
