"""`nnblocks ablate RECIPE --vary KEY=V1,V2 [--vary ...] --seeds 3 [--jobs N]`."""

from __future__ import annotations

import argparse

from nnblocks.commands._common import add_overrides, wide_console
from nnblocks.experiment.ablate import StatOptions, ablate, describe_test
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
    parser.add_argument(
        "--seeds",
        type=_seeds,
        default=3,
        help="seeds per variant (default 3), or auto: add seeds to undecided variants",
    )
    parser.add_argument(
        "--max-seeds", type=int, default=10, help="seed budget per variant of --seeds auto"
    )
    parser.add_argument(
        "--vary-seed",
        default="all",
        choices=["all", "init", "data", "dropout"],
        help="which named seed changes between repetitions (default all)",
    )
    parser.add_argument(
        "--adjust",
        default="holm",
        choices=["holm", "bonferroni", "bh", "fdr", "none"],
        help="p-value adjustment across the variants (default holm)",
    )
    parser.add_argument(
        "--omnibus",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="with holm/bonferroni, an all-variants test must reject too (closed test; default on)",
    )
    parser.add_argument(
        "--pairing",
        default="auto",
        choices=["auto", "paired", "unpaired"],
        help="paired test when seeds match (auto, default), always, or never (Welch)",
    )
    parser.add_argument("--alpha", type=float, default=0.05, help="significance level")
    parser.add_argument(
        "--power", type=float, default=0.8, help="power for the minimal detectable difference"
    )
    parser.add_argument(
        "--storage", help="run-table database URL shared by workers (default sqlite in --out)"
    )
    parser.add_argument(
        "--heartbeat", type=float, default=10.0, help="seconds between a worker's heartbeats"
    )
    parser.add_argument(
        "--overwrite", action="store_true", help="replace runs made from a different recipe"
    )
    parser.add_argument("--jobs", type=int, default=1, help="runs at a time (default 1)")
    parser.add_argument(
        "--out", help="folder for the runs and the table (default runs/ablate-NAME)"
    )
    parser.add_argument(
        "--metric", help="the compared metric (default: train.monitor or a test metric)"
    )
    add_overrides(parser, help="override a recipe key for every variant")


def _seeds(text: str) -> int | str:
    if text == "auto":
        return text
    try:
        return int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected an integer or auto, got {text!r}") from None


def run(args: argparse.Namespace) -> int:
    options = StatOptions(
        adjust=args.adjust,
        pairing=args.pairing,
        alpha=args.alpha,
        power=args.power,
        omnibus=args.omnibus,
    )
    result = ablate(
        args.recipe,
        args.vary,
        seeds=args.seeds,
        max_seeds=args.max_seeds,
        jobs=args.jobs,
        folder=args.out,
        metric=args.metric,
        overrides=args.overrides,
        options=options,
        vary_seed=args.vary_seed,
        storage=args.storage,
        overwrite=args.overwrite,
        heartbeat=args.heartbeat,
    )
    out = wide_console(width=260)  # logs and CI: wide enough that the table does not fold
    out.print(to_rich(result.rows, result.metric, title=f"ablation: {result.metric}"))
    out.print(f"significance: {describe_test(options)}")
    for w in result.warnings:
        out.print(f"[yellow]warning:[/] {w}")
    for f in result.failed:
        out.print(f"[red]failed run:[/] {f.splitlines()[0]}")
    out.print(
        f"table: {result.folder / 'table.md'}, {result.folder / 'table.csv'}; "
        f"chart: {result.folder / 'chart.png'}"
    )
    return 1 if result.failed else 0
