"""`nnblocks check KIND:NAME`: run the contract test kit and print its table.

Exits 0 when every check passed (warnings and skips allowed), 1 on any failure. A part in
the user's own file or package is checked with ``--module``: importing it registers its
parts, and NAME may also be a class defined there (registered or not)::

    nnblocks check attention:mha
    nnblocks check attention:MyAttention --module my_attention.py --against mha
"""

from __future__ import annotations

import argparse
import importlib
import importlib.util
import json
import sys
from pathlib import Path
from types import ModuleType
from typing import Any

from nnblocks import registry
from nnblocks.check.kit import check_part
from nnblocks.commands._common import wide_console
from nnblocks.errors import RegistryError, SpecError
from nnblocks.spec import split_name

__all__ = ["configure", "run", "import_user_module", "resolve_part"]


def configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("part", metavar="KIND:NAME", help="the part to check, e.g. attention:mha")
    parser.add_argument(
        "--against",
        metavar="REF",
        help="a part of the same kind with the same parameter names (e.g. mha): load the same "
        "weights into both and report the largest differences per dtype",
    )
    parser.add_argument(
        "--module",
        action="append",
        default=[],
        metavar="PATH_OR_MODULE",
        help="import this file (my_parts.py) or module (pkg.parts) first; repeatable",
    )
    parser.add_argument(
        "--slow", action="store_true", help="also torch.compile, torch.export, speed vs mha"
    )
    parser.add_argument("--only", nargs="+", metavar="CHECK", help="run only these checks")
    parser.add_argument("--device", default="cpu", help="device to run the checks on")
    parser.add_argument("--dim", type=int, help="model width the part is built with (default 32)")
    parser.add_argument("--heads", type=int, help="attention heads (default 4)")
    parser.add_argument("--json", action="store_true", help="print the report as JSON")


def import_user_module(target: str) -> ModuleType:
    """Import a ``.py`` file by path or a module by dotted name (registering its parts).

    Raises:
        SpecError: the file does not exist or the import fails.
    """
    path = Path(target)
    try:
        if target.endswith(".py") or path.exists():
            if not path.is_file():
                raise SpecError(f"no such file: {target}", path="--module")
            name = f"nnblocks_user_{path.stem}"
            spec = importlib.util.spec_from_file_location(name, path)
            if spec is None or spec.loader is None:
                raise SpecError(f"cannot import {target} as a Python file", path="--module")
            module = importlib.util.module_from_spec(spec)
            sys.modules[name] = module  # dataclasses and pickling look modules up by name
            spec.loader.exec_module(module)
            return module
        return importlib.import_module(target)
    except SpecError:
        raise
    except Exception as exc:  # the user's code failed to import: say which and why
        raise SpecError(
            f"importing {target} failed: {type(exc).__name__}: {exc}", path="--module"
        ) from exc


def resolve_part(kind: str, name: str, modules: list[ModuleType]) -> Any:
    """A registered name, or else a class or factory called ``name`` in one of ``modules``."""
    try:
        registry.get_part(kind, name)
        return name
    except RegistryError:
        for module in modules:
            if callable(getattr(module, name, None)):
                return getattr(module, name)
        raise


def _split(text: str, *, where: str) -> tuple[str, str]:
    kind, name = split_name(text)
    if kind is None:
        raise SpecError(f"expected KIND:NAME, e.g. attention:mha. Received: {text!r}", path=where)
    return kind, name


def run(args: argparse.Namespace) -> int:
    modules = [import_user_module(m) for m in args.module]
    kind, name = _split(args.part, where="nnblocks check")
    part = resolve_part(kind, name, modules)
    against = None
    if args.against:
        ref_kind, ref_name = split_name(args.against)
        if ref_kind is not None and ref_kind != kind:
            raise SpecError(
                f"--against must be a {kind} part. Received: {args.against}", path="--against"
            )
        against = resolve_part(kind, ref_name, modules)
    options: dict[str, Any] = {"slow": args.slow, "device": args.device, "against": against}
    for key in ("only", "dim", "heads"):
        if getattr(args, key) is not None:
            options[key] = getattr(args, key)
    report = check_part(kind, part, **options)
    if args.json:
        print(json.dumps(report.to_dict(), indent=2))
    else:
        console = wide_console(width=120)
        console.print(report.table())
    return 0 if report.ok else 1
