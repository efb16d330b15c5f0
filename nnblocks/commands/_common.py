"""What several subcommands share: the ``--set`` option and a console for tables.

Private to ``nnblocks.commands``.
"""

from __future__ import annotations

import argparse

from rich.console import Console

__all__ = ["add_overrides", "wide_console"]


def add_overrides(parser: argparse.ArgumentParser, help: str) -> None:
    """``--set KEY=VALUE`` (repeatable) into ``args.overrides``: recipe keys to override."""
    parser.add_argument(
        "--set",
        dest="overrides",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help=help,
    )


def wide_console(width: int = 160) -> Console:
    """A rich Console; off a terminal (logs, CI) ``width`` columns wide, so that tables do
    not fold to the 80 columns rich assumes there."""
    out = Console()
    return out if out.is_terminal else Console(width=width)
