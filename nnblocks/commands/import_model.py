"""`nnblocks import SOURCE OUT`: a Hugging Face model folder as an nnblocks model folder.

The weights are read by ``nnblocks.interop.from_transformers`` (safetensors and
``config.json`` parsed directly; nothing from the folder runs), the tokenizer
(``tokenizer.json``) is carried over, and the result is written by ``nnblocks.save`` with
its model card. A table of the slots (and the part in each) is printed: those are the
places ``nnblocks.surgery.swap`` or a recipe's ``surgery`` can change.
"""

from __future__ import annotations

import argparse
import os
from pathlib import Path

from rich.table import Table
from torch import nn

from nnblocks.commands._common import wide_console
from nnblocks.errors import SpecError

__all__ = ["configure", "import_folder", "run", "slot_table"]


def configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("source", help="a Hugging Face model folder (config.json + safetensors)")
    parser.add_argument("out", help="the nnblocks model folder to write")


def import_folder(source: str | os.PathLike[str], out: str | os.PathLike[str]) -> nn.Module:
    """Import ``source`` with ``from_transformers`` and save it to ``out`` (with its tokenizer).

    Returns:
        The imported model.

    Raises:
        SpecError: this nnblocks has no ``from_transformers``, or the importer refuses the
            architecture (naming it); CheckpointError: missing or bad files.
    """
    import nnblocks
    from nnblocks.data.tokenizers.pretrained import TOKENIZER_FILE, PretrainedTokenizer

    try:  # imported here: the Hugging Face importer is an optional part of nnblocks.interop
        from nnblocks.interop import from_transformers  # type: ignore[attr-defined]
    except ImportError as exc:
        raise SpecError(
            "this nnblocks has no nnblocks.interop.from_transformers to import with.",
            path="nnblocks import",
        ) from exc
    source = Path(source)
    model = from_transformers(str(source))
    tokenizer = None
    if (source / TOKENIZER_FILE).is_file():
        tokenizer = PretrainedTokenizer.from_folder(source)
    nnblocks.save(model, out, tokenizer=tokenizer)
    return model


def slot_table(model: nn.Module, title: str = "slots") -> Table:
    """A rich table: every slot's path, kind, part and parameter count."""
    from nnblocks.io.model_card import slot_rows

    table = Table(title=title)
    for column in ("slot", "kind", "part"):
        table.add_column(column, overflow="fold")
    table.add_column("parameters", justify="right")
    modules = dict(model.named_modules(remove_duplicate=False))
    for path, kind, part in slot_rows(model):
        module = modules["" if path == "(model)" else path]
        count = sum(p.numel() for p in {id(p): p for p in module.parameters()}.values())
        table.add_row(path, kind, part, f"{count:,}")
    return table


def run(args: argparse.Namespace) -> int:
    model = import_folder(args.source, args.out)
    console = wide_console(width=160)
    console.print(slot_table(model, title=f"{args.source} -> {args.out}"))
    return 0
