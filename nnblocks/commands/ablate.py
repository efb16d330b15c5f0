"""`nnblocks ablate RECIPE --vary KEY=V1,V2 [--vary ...] --seeds 3 [--jobs N]`."""

from __future__ import annotations

import argparse

from nnblocks.commands._common import add_overrides, wide_console
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
    add_overrides(parser, help="override a recipe key for every variant")


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
    out = wide_console(width=160)
    out.print(to_rich(result.rows, result.metric, title=f"ablation: {result.metric}"))
    out.print("significance: Welch's t-test against the baseline (first variant), alpha=0.05")
    for w in result.warnings:
        out.print(f"[yellow]warning:[/] {w}")
    for f in result.failed:
        out.print(f"[red]failed run:[/] {f.splitlines()[0]}")
    out.print(
        f"table: {result.folder / 'table.md'}, {result.folder / 'table.csv'}; "
        f"chart: {result.folder / 'chart.png'}"
    )
    return 1 if result.failed else 0
