"""Specs: plain data that says which part to build and with what arguments.

A spec is one of

- a name, ``"gqa"`` (optionally kind-qualified: ``"attention/gqa"`` or ``"attention:gqa"``),
- a dict, ``{"name": "gqa", "heads": 8, "kv_heads": 2}``,
- an ``nn.Module`` subclass or a factory callable (constructed with the given arguments),
- a ready ``nn.Module`` instance (used as is).

This module normalises specs, checks arguments against the constructor's signature and keeps
the *spec path* (``model.decoder.self_attention``) that every error message names.
"""

from __future__ import annotations

import contextlib
import contextvars
import difflib
import inspect
from collections.abc import Callable, Iterator, Mapping
from typing import Any

from nnblocks.errors import SpecError

__all__ = [
    "current_path",
    "join_path",
    "spec_path",
    "split_name",
    "normalize",
    "check_arguments",
    "describe_arguments",
    "close_matches",
    "is_plain_data",
]

_PATH: contextvars.ContextVar[str] = contextvars.ContextVar("nnblocks_spec_path", default="")


def join_path(*parts: str | int | None) -> str:
    """Join spec path pieces with dots, skipping empty ones."""
    return ".".join(str(p) for p in parts if p is not None and str(p) != "")


def current_path() -> str:
    """The spec path of the build in progress ('' at top level)."""
    return _PATH.get()


@contextlib.contextmanager
def spec_path(name: str | int | None) -> Iterator[str]:
    """Push ``name`` onto the spec path for nested builds; yields the full path."""
    full = join_path(_PATH.get(), name)
    token = _PATH.set(full)
    try:
        yield full
    finally:
        _PATH.reset(token)


def split_name(name: str) -> tuple[str | None, str]:
    """``"attention/gqa"`` or ``"attention:gqa"`` -> ``("attention", "gqa")``; ``"gqa"`` -> ``(None, "gqa")``."""
    for sep in ("/", ":"):
        if sep in name:
            kind, _, part = name.partition(sep)
            return kind.strip(), part.strip()
    return None, name.strip()


def normalize(spec: Any, *, path: str = "") -> tuple[str, dict[str, Any]]:
    """Turn a name or dict spec into ``(name, options)``; options are a fresh dict."""
    if isinstance(spec, str):
        if not spec.strip():
            raise SpecError("expected a part name, received an empty string.", path=path)
        return spec, {}
    if isinstance(spec, Mapping):
        if "name" not in spec:
            raise SpecError(
                "a dict spec needs a `name` key naming the part, e.g. "
                f'{{"name": "mha", ...}}. Received keys: {sorted(spec)}',
                path=path,
            )
        name = spec["name"]
        if not isinstance(name, str):
            raise SpecError(f"`name` must be a string. Received: name={name!r}", path=path)
        return name, {k: v for k, v in spec.items() if k != "name"}
    raise SpecError(
        "expected a spec: a part name, a dict with `name`, an nn.Module class or instance. "
        f"Received: {type(spec).__name__} {spec!r:.80}",
        path=path,
    )


def _signature(factory: Callable[..., Any]) -> inspect.Signature | None:
    if inspect.isclass(factory) and factory.__init__ is object.__init__ or _plain_module(factory):
        return inspect.Signature([])  # a Module subclass without its own __init__ takes nothing
    target = factory.__init__ if inspect.isclass(factory) else factory  # type: ignore[misc]
    try:
        sig = inspect.signature(target)
    except (TypeError, ValueError):
        return None
    params = list(sig.parameters.values())
    if inspect.isclass(factory) and params and params[0].name == "self":
        params = params[1:]
    return sig.replace(parameters=params)


def _plain_module(factory: Any) -> bool:
    from torch import nn

    return (
        inspect.isclass(factory)
        and issubclass(factory, nn.Module)
        and (factory.__init__ is nn.Module.__init__)
    )


def describe_arguments(factory: Callable[..., Any]) -> str:
    """``"dim, heads, dropout=0.0, bias=True"``: the arguments a part accepts."""
    sig = _signature(factory)
    if sig is None:
        return "(unknown)"
    out = []
    for p in sig.parameters.values():
        if p.kind is p.VAR_POSITIONAL:
            out.append(f"*{p.name}")
        elif p.kind is p.VAR_KEYWORD:
            out.append(f"**{p.name}")
        elif p.default is p.empty:
            out.append(p.name)
        else:
            out.append(f"{p.name}={p.default!r}")
    return ", ".join(out)


def check_arguments(
    factory: Callable[..., Any], kwargs: Mapping[str, Any], *, path: str, what: str
) -> None:
    """Fail with a SpecError if ``kwargs`` has unknown names or misses required ones."""
    sig = _signature(factory)
    if sig is None:
        return
    params = sig.parameters
    takes_any = any(p.kind is p.VAR_KEYWORD for p in params.values())
    named = {n: p for n, p in params.items() if p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY)}
    accepted = describe_arguments(factory)
    if not takes_any:
        unknown = [k for k in kwargs if k not in named]
        if unknown:
            hints = []
            for k in unknown:
                match = close_matches(k, named)
                hints.append(f"`{k}`" + (f" (did you mean `{match[0]}`?)" if match else ""))
            raise SpecError(
                f"unknown argument {', '.join(hints)} for {what}. Accepted arguments: {accepted}",
                path=path,
            )
    missing = [n for n, p in named.items() if p.default is p.empty and n not in kwargs]
    if missing:
        raise SpecError(
            f"missing required argument {', '.join(f'`{m}`' for m in missing)} for {what}. "
            f"Accepted arguments: {accepted}",
            path=path,
        )


def close_matches(word: str, candidates: Any, n: int = 3) -> list[str]:
    """Names in ``candidates`` that look like ``word`` (for 'did you mean' hints)."""
    return difflib.get_close_matches(word, list(candidates), n=n, cutoff=0.6)


def is_plain_data(value: Any) -> bool:
    """True when ``value`` can be written as JSON (what a saved spec must be)."""
    if value is None or isinstance(value, (bool, int, float, str)):
        return True
    if isinstance(value, (list, tuple)):
        return all(is_plain_data(v) for v in value)
    if isinstance(value, Mapping):
        return all(isinstance(k, str) and is_plain_data(v) for k, v in value.items())
    return False
