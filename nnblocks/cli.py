"""The `nnblocks` command: a thin face over functions usable from Python.

Every subcommand is a module of ``nnblocks.commands`` with two functions:
``configure(parser)`` adds its arguments and ``run(args) -> int`` calls the Python function
that does the work. An error a user caused prints one line (``error: ...``) and exits 1;
an interrupted run exits 128 + the signal's number (130 for Ctrl-C), without a traceback.
"""

from __future__ import annotations

import argparse
import importlib
import logging
import sys

from nnblocks.errors import NNBlocksError

# subcommand -> (module, one-line help)
COMMANDS = {
    "parts": ("nnblocks.commands.parts", "list kinds and parts with their arguments"),
    "check": ("nnblocks.commands.check", "run the contract test kit on a part"),
    "audit": ("nnblocks.commands.audit", "audit module reuse in a recipe's model or a checkpoint"),
    "train": ("nnblocks.commands.train", "train a recipe"),
    "ablate": ("nnblocks.commands.ablate", "run an ablation grid over seeds"),
    "tune": ("nnblocks.commands.tune", "search settings with Optuna"),
    "export": ("nnblocks.commands.export", "export a saved model or a recipe's model to ONNX"),
    "predict": ("nnblocks.commands.predict", "a trained model's output for each text"),
    "generate": ("nnblocks.commands.generate", "generate text from a saved model and a prompt"),
    "import": ("nnblocks.commands.import_model", "import a Hugging Face folder as an nnblocks one"),
}


def make_parser(command: str | None = None) -> argparse.ArgumentParser:
    """The parser; only ``command``'s module is imported (a broken one breaks no other)."""
    parser = argparse.ArgumentParser(prog="nnblocks", description=__doc__.splitlines()[0])
    parser.add_argument("-v", "--verbose", action="store_true", help="log debug messages")
    parser.add_argument(
        "--plugin",
        action="append",
        default=[],
        metavar="FILE_OR_MODULE",
        help="import a Python file or module that registers parts (repeatable)",
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name, (module_name, help_text) in COMMANDS.items():
        p = sub.add_parser(name, help=help_text, description=help_text)
        if name != command:
            continue
        module = importlib.import_module(module_name)
        module.configure(p)
        p.set_defaults(_run=module.run)
    return parser


def _chosen(argv: list[str]) -> str | None:
    return next((a for a in argv if a in COMMANDS), None)


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    parser = make_parser(_chosen(argv))
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.INFO, format="%(levelname)s %(message)s"
    )
    if args.command is None:
        parser.print_help()
        return 2
    try:
        from nnblocks.plugins import export_to_env, import_plugins, plugins_from_env

        plugins_from_env()
        import_plugins(args.plugin)
        export_to_env(args.plugin)  # child processes (ablation runs) import them too
        return int(args._run(args) or 0)
    except NNBlocksError as exc:
        code = getattr(exc, "exit_code", None)  # TrainingInterrupted: exit as the signal does
        print(f"error: {exc}" if code is None else str(exc), file=sys.stderr)
        return 1 if code is None else int(code)
    except KeyboardInterrupt:  # Ctrl-C outside training (building data, say): nothing to save
        print("interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
