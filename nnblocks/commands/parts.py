"""`nnblocks parts [KIND]`: list kinds and parts with their arguments and one-line docs."""

from __future__ import annotations

import argparse

from rich.panel import Panel
from rich.table import Table

from nnblocks import registry
from nnblocks.commands._common import wide_console


def configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("kind", nargs="?", help="only this kind (e.g. attention)")
    parser.add_argument("--pattern", help="shell wildcard on part names, e.g. '*q*'")


def parts_table(kind: str | None = None, pattern: str | None = None) -> Table:
    """A rich table of parts: kind, name, arguments, summary."""
    kinds = [registry._check_kind(kind)] if kind else [k.name for k in registry.kinds()]
    table = Table(title=f"nnblocks parts{': ' + kind if kind else ''}")
    for column in ("kind", "part", "arguments", "summary"):
        table.add_column(column, overflow="fold")
    for k in kinds:
        for name in registry.list_parts(k, pattern):
            entry = registry.get_entry(k, name)
            table.add_row(k, name, entry.arguments, entry.summary or "[dim](undocumented)[/dim]")
    return table


def run(args: argparse.Namespace) -> int:
    console = wide_console(width=160)
    if args.kind is None and args.pattern is None:
        kinds = Table(title="nnblocks kinds")
        kinds.add_column("kind")
        kinds.add_column("parts", justify="right")
        kinds.add_column("contract", overflow="fold")
        for k in registry.kinds():
            kinds.add_row(k.name, str(len(registry.list_parts(k.name))), k.summary)
        console.print(kinds)
    if args.kind is not None and args.pattern is None:  # the kind's written contract first
        console.print(Panel(registry.contract_of(args.kind), title=f"contract of `{args.kind}`"))
    console.print(parts_table(args.kind, args.pattern))
    return 0
