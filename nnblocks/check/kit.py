"""`check_part`: run a kind's contract on one part; `assert_contract`: the same in a test.

The kit builds the part small (``Part(dim=32, heads=4)`` for attention), runs every check of
the kind's contract on fresh copies, and records each outcome. A check that crashes is a
failure with the exception's message, never a crash of the kit.
"""

from __future__ import annotations

import os
import warnings
from collections.abc import Callable, Mapping
from typing import Any

import torch
from torch import nn

from nnblocks import registry
from nnblocks.check.against import compare_modules
from nnblocks.check.contracts import Context, Contract, Sizes, contract_for
from nnblocks.check.contracts.base import Check, Outcome
from nnblocks.check.report import Record, Report
from nnblocks.errors import SpecError
from nnblocks.spec import close_matches, normalize

__all__ = [
    "check_part",
    "assert_contract",
    "compare_parts",
    "make_context",
    "run_checks",
    "OPTIONS",
]

# option -> default; every option is also a flag of `nnblocks check`
OPTIONS: dict[str, Any] = {
    "slow": False,  # run torch.compile / torch.export / speed checks too
    "only": None,  # names of the checks to run (others are not reported)
    "against": None,  # a reference part: compare outputs and gradients (see against.py)
    "device": "cpu",
    "seed": 0,
    "dim": None,  # model width; default 32, or the width of a given instance
    "heads": None,  # attention heads; default 4, or those of a given instance
    "batch": 2,
    "length": 7,
    "context_length": 5,
}

_TORCH_DIR = os.path.dirname(torch.__file__)


def check_part(kind: str, part: Any, **options: Any) -> Report:
    """Run the contract of ``kind`` on ``part`` and report every check.

    Args:
        kind: the part's kind (``"attention"``, ``"norm"``, ...).
        part: a registered name (``"mha"``), a spec dict, a class or factory (built small,
            e.g. ``Part(dim=32, heads=4)``) or a ready ``nn.Module`` instance.
        **options: ``slow`` (run compile, export and speed checks), ``only`` (check names),
            ``against`` (a reference part with the same parameter names: compare outputs and
            gradients per dtype), ``device``, ``seed``, and sizes ``dim``, ``heads``,
            ``batch``, ``length``, ``context_length``.

    Returns:
        A `Report`; ``report.ok`` is False when any check failed. Capabilities the part
        does not offer (``cache=``, ``need_weights=``) are skipped, not failed.

    Raises:
        SpecError: unknown option, a kind the kit cannot check, or a part that cannot be built.
        RegistryError: unknown kind or part name.

    Example:
        >>> report = check_part("attention", "mha")
        >>> report.ok, report["causal_leakage"].status
        (True, 'pass')
    """
    settings = _settings(options)
    ctx = make_context(kind, part, settings)
    report = run_checks(ctx, only=settings["only"], seed=int(settings["seed"]))
    if settings["against"] is not None:
        reference = _resolve(kind, settings["against"], ctx.contract, ctx.sizes)[0]
        report.results.extend(
            compare_modules(ctx, reference, label=_label_of(kind, settings["against"]))
        )
    return report


def compare_parts(kind: str, part: Any, reference: Any, **options: Any) -> Report:
    """Compare ``part`` with ``reference`` (same parameter names and shapes) per dtype.

    Args:
        kind: the kind of both parts.
        part, reference: names, specs, classes or instances, as for `check_part`.
        **options: sizes and ``device``, as for `check_part`.

    Returns:
        A `Report` with one record per dtype (``against_float64``, ``against_float32``,
        ``against_bfloat16``), or a single failed ``against_parameters`` record when the
        parameters do not match.

    Example:
        >>> report = compare_parts("attention", "mha", {"name": "mha", "bias": True})
        >>> report.ok, [r.name for r in report]
        (True, ['against_float64', 'against_float32', 'against_bfloat16'])
    """
    settings = _settings(options)
    ctx = make_context(kind, part, settings)
    ref = _resolve(kind, reference, ctx.contract, ctx.sizes)[0]
    report = Report(f"{ctx.label} against {_label_of(kind, reference)}")
    report.results.extend(compare_modules(ctx, ref, label=_label_of(kind, reference)))
    return report


def assert_contract(kind: str, part: Any, **options: Any) -> Report:
    """Run `check_part` in a test and fail the test with the report's table on any failure.

    Example:
        >>> assert_contract("norm", "layer").ok  # in a test: fails it with the table
        True
    """
    __tracebackhide__ = True  # pytest shows the caller's line, not this one
    report = check_part(kind, part, **options)
    if not report.ok:
        names = ", ".join(r.name for r in report.failures)
        raise AssertionError(f"{report.title}: contract failed ({names})\n{report}")
    return report


def _settings(options: Mapping[str, Any]) -> dict[str, Any]:
    unknown = [k for k in options if k not in OPTIONS]
    if unknown:
        hints = [
            f"`{k}`" + (f" (did you mean `{m[0]}`?)" if (m := close_matches(k, OPTIONS)) else "")
            for k in unknown
        ]
        raise SpecError(
            f"unknown option {', '.join(hints)} for check_part. Known options: {', '.join(OPTIONS)}",
            path="check_part",
        )
    return {**OPTIONS, **options}


def make_context(kind: str, part: Any, settings: Mapping[str, Any]) -> Context:
    """Build (or take) the part and wrap it with what the checks need."""
    registry._check_kind(kind)
    contract = contract_for(kind)
    if contract is None:
        raise SpecError(
            f"the check kit has no contract for kind `{kind}` (its parts need whole-model "
            f"inputs or are not modules). Kinds it checks: {', '.join(_checkable())}",
            path="check_part",
        )
    sizes = _sizes(kind, part, settings)
    module, rebuild, factory = _resolve(kind, part, contract, sizes)
    device = torch.device(settings["device"])
    return Context(
        kind,
        module,
        contract,
        sizes=sizes,
        device=device,
        slow=bool(settings["slow"]),
        rebuild=rebuild,
        factory=factory,
        label=_label_of(kind, part),
    )


def _checkable() -> list[str]:
    from nnblocks.check.contracts import CONTRACTS

    return sorted(CONTRACTS)


def _sizes(kind: str, part: Any, settings: Mapping[str, Any]) -> Sizes:
    """Small sizes; a ready instance's own width and heads win over the defaults."""
    dim, heads = settings["dim"], settings["heads"]
    if isinstance(part, nn.Module):
        found_dim, found_heads = _width_of(part)
        relative = bool(getattr(part, "relative", False))
        if relative and found_dim is not None:
            # A relative position part is built per head: its `dim` is the head width.
            found_dim = found_dim * (found_heads or heads or 4)
        dim = dim if dim is not None else found_dim
        heads = heads if heads is not None else found_heads
    return Sizes(
        dim=dim if dim is not None else 32,
        heads=heads if heads is not None else 4,
        batch=int(settings["batch"]),
        length=int(settings["length"]),
        context_length=int(settings["context_length"]),
    )


def _width_of(module: nn.Module) -> tuple[int | None, int | None]:
    spec = getattr(module, "_nnblocks_spec", None) or {}
    dim = spec.get("dim")
    heads = spec.get("heads")
    for name in (
        "dim",
        "embed_dim",
        "d_model",
        "normalized_shape",
        "num_features",
        "embedding_dim",
    ):
        if dim is None and isinstance(getattr(module, name, None), int):
            dim = getattr(module, name)
    for name in ("heads", "num_heads", "n_heads"):
        if heads is None and isinstance(getattr(module, name, None), int):
            heads = getattr(module, name)
    return dim, heads


def _resolve(
    kind: str, part: Any, contract: Contract, sizes: Sizes
) -> tuple[nn.Module, Callable[..., nn.Module] | None, Any]:
    """(module, rebuild(**extra) or None, factory or None)."""
    if isinstance(part, nn.Module):
        spec = getattr(part, "_nnblocks_spec", None)
        if spec is not None:
            part_kind = registry.kind_of(part) or kind
            factory = registry.get_part(part_kind, spec["name"])
            return part, (lambda **extra: registry.build({**spec, **extra}, part_kind)), factory
        return part, None, type(part)
    if isinstance(part, (str, Mapping)):
        name, _ = normalize(part, path="check_part")
        factory = registry.get_entry(kind, name).factory
        module = registry.build(part, kind, **contract.defaults(sizes, factory))
        spec = registry.spec_of(module)
        return module, (lambda **extra: registry.build({**spec, **extra}, kind)), factory
    if callable(part):
        defaults = contract.defaults(sizes, part)
        module = registry.build(part, kind, **defaults)

        def rebuild(**extra: Any) -> nn.Module:
            return registry.build(part, kind, **{**defaults, **extra})

        return module, rebuild, part
    raise SpecError(
        "expected a part: a registered name, a spec dict, an nn.Module class or factory, or an "
        f"nn.Module instance. Received: {type(part).__name__}",
        path="check_part",
    )


def _label_of(kind: str, part: Any) -> str:
    if isinstance(part, str):
        return part if (":" in part or "/" in part) else f"{kind}:{part}"
    if isinstance(part, Mapping):
        return f"{kind}:{part.get('name')}"
    if isinstance(part, nn.Module):
        spec = getattr(part, "_nnblocks_spec", None)
        return f"{kind}:{spec['name']}" if spec else f"{kind}:{type(part).__name__}"
    return f"{kind}:{getattr(part, '__name__', repr(part))}"


def run_checks(ctx: Context, *, only: Any = None, seed: int = 0) -> Report:
    """Run the contract's checks on ``ctx`` and collect a report."""
    checks = ctx.contract.checks
    if only is not None:
        wanted = [only] if isinstance(only, str) else list(only)
        names = [c.name for c in checks]
        unknown = [n for n in wanted if n not in names]
        if unknown:
            raise SpecError(
                f"unknown check(s) {unknown} for kind `{ctx.kind}`. Checks: {', '.join(names)}",
                path="check_part.only",
            )
        checks = tuple(c for c in checks if c.name in wanted)
    report = Report(f"check {ctx.label}")
    devices = [ctx.device] if ctx.device.type == "cuda" else []
    for c in checks:
        if c.slow and not ctx.slow:
            report.add(c.name, "skip", "slow check: run with slow=True (--slow)")
            continue
        with torch.random.fork_rng(devices=devices), warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            torch.manual_seed(seed)  # each check sees the same inputs, whatever ran before
            report.results.append(_run_one(c, ctx, caught))
    return report


def _run_one(c: Check, ctx: Context, caught: list[warnings.WarningMessage]) -> Record:
    try:
        message = c.func(ctx) or ""
    except Outcome as outcome:
        return Record(c.name, outcome.status, str(outcome), outcome.details)
    except Exception as exc:  # a crashing check is a failed check, never a crashed kit
        where = _where(exc)
        return Record(c.name, "fail", f"crashed: {type(exc).__name__}: {exc}{where}")
    ours = [w for w in caught if not str(w.filename).startswith(_TORCH_DIR)]
    if ours:
        first = ours[0]
        return Record(
            c.name, "warn", f"{message} (but warned: {first.category.__name__}: {first.message})"
        )
    return Record(c.name, "pass", message)


def _where(exc: BaseException) -> str:
    """`` (at file.py:12)``: the innermost frame outside the kit and torch, for a crash."""
    kit_dir = os.path.dirname(os.path.abspath(__file__))
    tb = exc.__traceback__
    place = ""
    while tb is not None:
        filename = tb.tb_frame.f_code.co_filename
        if not filename.startswith((kit_dir, _TORCH_DIR)):
            place = f" (at {os.path.basename(filename)}:{tb.tb_lineno})"
        tb = tb.tb_next
    return place
