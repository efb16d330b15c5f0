"""Kinds, parts and `build(spec)`.

A *kind* is a family of interchangeable components with one written contract (the docstring
of ``nnblocks.parts.<kind>``). A *part* is one registered implementation of a kind. Parts are
registered with a decorator and built from specs::

    @nnblocks.register("attention", "my_attention")
    class MyAttention(nn.Module):
        def __init__(self, dim, heads, dropout=0.0): ...

    attn = nnblocks.build({"name": "my_attention", "dropout": 0.1}, kind="attention",
                          dim=256, heads=8)

Third-party packages add parts through the entry-point group ``nnblocks.parts``: each entry
point names a module (importing it registers its parts) or a function (called once).
"""

from __future__ import annotations

import dataclasses
import fnmatch
import importlib
import importlib.metadata
import inspect
import logging
import threading
from collections.abc import Callable
from typing import Any, TypeVar

from torch import nn

from nnblocks.errors import NNBlocksError, RegistryError, SpecError
from nnblocks.spec import (
    _signature,
    check_arguments,
    close_matches,
    current_path,
    describe_arguments,
    normalize,
    spec_path,
    split_name,
)

__all__ = [
    "Kind",
    "Part",
    "add_kind",
    "kinds",
    "register",
    "unregister",
    "build",
    "list_parts",
    "get_part",
    "get_entry",
    "contract_of",
    "spec_of",
    "kind_of",
    "add_build_hook",
]

log = logging.getLogger(__name__)

ENTRY_POINT_GROUP = "nnblocks.parts"
T = TypeVar("T")


@dataclasses.dataclass(frozen=True)
class Kind:
    """A family of interchangeable parts. ``builds_modules``: parts must be nn.Modules.

    ``contract`` names the module whose docstring is the kind's written contract (default
    ``nnblocks.parts.<name>``); ``contract_of(kind)`` reads it.
    """

    name: str
    summary: str
    builds_modules: bool = True
    contract: str = ""


@dataclasses.dataclass(frozen=True)
class Part:
    """One registered implementation of a kind."""

    kind: str
    name: str
    factory: Callable[..., Any]
    source: str  # the top-level package that registered it (names the plugin to install)

    @property
    def summary(self) -> str:
        """The first line of the part's own docstring; "" when it has none.

        ``inspect.getdoc`` would hand an undocumented class its base class's text (an
        ``nn.Module`` subclass would show torch's docstring), so only the part's own is read.
        """
        own = vars(self.factory).get("__doc__") if inspect.isclass(self.factory) else None
        doc = (
            inspect.cleandoc(own or "")
            if inspect.isclass(self.factory)
            else inspect.getdoc(self.factory)
        )
        return doc.strip().splitlines()[0] if doc and doc.strip() else ""

    @property
    def arguments(self) -> str:
        return describe_arguments(self.factory)


_KINDS: dict[str, Kind] = {}
_PARTS: dict[str, dict[str, Part]] = {}
_lock = threading.RLock()
_loaded = False
_loading = False
_data_loaded = False

_BUILTIN_KINDS = [
    Kind(
        "attention",
        "mixes information across positions: part(x, context=None, mask=None, causal=False) -> [B, Tq, D]",
    ),
    Kind(
        "position",
        "position information: absolute (added to embeddings) or relative (handed to attention)",
    ),
    Kind("norm", "normalises features: part(x) -> same shape; LayerNorm, RMSNorm, BatchNorm"),
    Kind("feedforward", "position-wise network: part(x [B, T, D]) -> [B, T, D]"),
    Kind("activation", "element-wise non-linearity: part(x) -> same shape"),
    Kind("embedding", "token ids [B, T] -> vectors [B, T, D]"),
    Kind("head", "maps features to outputs: part(x [..., D]) -> [..., out_features]"),
    Kind("regularization", "train-time noise such as dropout and drop-path: part(x) -> same shape"),
    Kind(
        "block",
        "one transformer layer: block(x, mask=None, causal=False, context=None, context_mask=None)",
    ),
    Kind("model", "a whole architecture assembled from slots", contract="nnblocks.models"),
    Kind(
        "dataset",
        "a one-line loader of data with its task",
        builds_modules=False,
        contract="nnblocks.data.registered",
    ),
    Kind(
        "transform",
        "preprocessing or augmentation fitted on the training split",
        builds_modules=False,
        contract="nnblocks.data.transforms",
    ),
    Kind(
        "tokenizer",
        "text <-> token ids with pad/bos/eos/unk specials",
        builds_modules=False,
        contract="nnblocks.data.tokenizers",
    ),
]
for _k in _BUILTIN_KINDS:
    _KINDS[_k.name] = _k
    _PARTS[_k.name] = {}

# Modules whose import registers the built-in parts and build hooks; imported on first
# lookup, as plugins are (nnblocks.surgery adds the hook that replays "surgery" records).
_BUILTIN_MODULES = [
    "nnblocks.parts",
    "nnblocks.models",
    "nnblocks.interop.torch_stacks",  # the feature-sequence stacks that from_torch builds
    "nnblocks.surgery",
]
# The data kinds' parts, imported only when one of these kinds is looked up (or every kind
# is), so that building an attention or a model does not import the data package.
_DATA_KINDS = ("dataset", "transform", "tokenizer")
_DATA_MODULES = ["nnblocks.data.registered"]

# spec key -> hook(built_object, value, path=spec_path), run after the part is constructed.
_BUILD_HOOKS: dict[str, Callable[..., Any]] = {}


def add_kind(name: str, summary: str, *, builds_modules: bool = True, contract: str = "") -> Kind:
    """Declare a new kind of part (a family with its own contract).

    ``contract``: the module whose docstring states the contract (shown by
    ``nnblocks parts KIND`` and the reference pages).
    """
    with _lock:
        if name in _KINDS:
            raise RegistryError(f"Kind `{name}` already exists.")
        kind = Kind(name, summary, builds_modules, contract)
        _KINDS[name] = kind
        _PARTS[name] = {}
        return kind


def contract_of(kind: str) -> str:
    """The written contract of ``kind``: its contract module's docstring, else its summary."""
    entry = _KINDS[_check_kind(kind)]
    module = entry.contract or f"nnblocks.parts.{entry.name}"
    try:
        doc = inspect.getdoc(importlib.import_module(module))
    except ImportError:
        doc = None
    return doc or entry.summary


def add_build_hook(key: str, hook: Callable[..., Any]) -> None:
    """Handle the spec key ``key`` after construction: ``hook(obj, value, path=...)``.

    The key is taken out of the spec's options before the part is built (unless the part
    takes an argument of that name) and handed to the hook with the built object. This is
    how ``nnblocks.surgery`` replays its ``"surgery"`` records without the registry
    knowing surgery: a hook registered twice for one key keeps the last.
    """
    with _lock:
        _BUILD_HOOKS[key] = hook


def kinds() -> list[Kind]:
    """All declared kinds."""
    _ensure_loaded()
    return list(_KINDS.values())


def _check_kind(kind: str, *, path: str = "") -> str:
    if kind not in _KINDS:
        match = close_matches(kind, _KINDS)
        hint = f" Did you mean `{match[0]}`?" if match else ""
        where = f"at `{path}`: " if path else ""
        raise RegistryError(
            f"{where}unknown kind `{kind}`.{hint} Known kinds: {', '.join(sorted(_KINDS))}"
        )
    return kind


def _source_of(obj: Any) -> str:
    module = getattr(obj, "__module__", None) or "unknown"
    return module.split(".")[0]


def register(kind: str, name: str | None = None, *, override: bool = False) -> Callable[[T], T]:
    """Decorator: register an nn.Module class (or a factory) as part ``name`` of ``kind``.

    Args:
        kind: an existing kind (see ``nnblocks.registry.kinds()``).
        name: the part's name; defaults to the lower-cased class or function name.
        override: replace an existing part of that name instead of failing.

    Raises:
        RegistryError: unknown kind, or the name is taken and ``override`` is False.
    """
    _check_kind(kind)

    def decorator(factory: T) -> T:
        if not callable(factory):
            raise RegistryError(
                f"register({kind!r}, {name!r}) expects a class or a factory function. "
                f"Received: {factory!r}"
            )
        part_name = name or getattr(factory, "__name__", "").lower()
        if not part_name or any(c in part_name for c in "/:"):
            raise RegistryError(f"Invalid part name {part_name!r}: no '/', ':' or empty names.")
        source = _source_of(factory)
        if source != "nnblocks":
            # Load the built-ins first, so a clash with one is reported here (or overrides
            # it) instead of breaking the lazy import of the built-ins later.
            _ensure_loaded(kind)
        with _lock:
            existing = _PARTS[kind].get(part_name)
            if existing is not None and existing.factory is not factory and not override:
                raise RegistryError(
                    f"Part `{kind}/{part_name}` is already registered (by {existing.source}). "
                    "Pass override=True to replace it, or choose another name."
                )
            if existing is not None and override:
                log.info("replacing part %s/%s", kind, part_name)
            _PARTS[kind][part_name] = Part(kind, part_name, factory, source)
        return factory

    return decorator


def unregister(kind: str, name: str) -> None:
    """Remove part ``kind``/``name`` (tests and notebooks that re-define a part).

    Raises:
        RegistryError: no such part.
    """
    _find(kind, name)
    with _lock:
        del _PARTS[kind][name]


def _load_entry_points() -> None:
    try:
        eps = importlib.metadata.entry_points(group=ENTRY_POINT_GROUP)
    except Exception as exc:  # a broken environment must not stop built-ins from working
        log.warning("could not read entry points %s: %s", ENTRY_POINT_GROUP, exc)
        return
    for ep in eps:
        try:
            obj = ep.load()
            if callable(obj) and not inspect.isclass(obj) and not inspect.ismodule(obj):
                obj()
        except Exception as exc:
            log.warning(
                "nnblocks plugin `%s` (%s) failed to load and is skipped: %s",
                ep.name,
                ep.value,
                exc,
            )


def _ensure_loaded(kind: str | None = None) -> None:
    """Import built-in parts and plugins once (lazily, so `import nnblocks` stays light).

    ``kind``: the kind about to be looked up; the data kinds' modules are imported only for
    those kinds (or for ``None``: every kind).
    """
    global _loaded, _loading, _data_loaded
    if _loading or (_loaded and (_data_loaded or (kind is not None and kind not in _DATA_KINDS))):
        return
    with _lock:
        if _loading:
            return
        _loading = True
        try:
            if not _loaded:
                for module in _BUILTIN_MODULES:
                    importlib.import_module(module)
                _load_entry_points()
                _loaded = True
            if not _data_loaded and (kind is None or kind in _DATA_KINDS):
                for module in _DATA_MODULES:
                    importlib.import_module(module)
                _data_loaded = True
        finally:
            _loading = False


def _find(kind: str | None, name: str, *, path: str = "") -> Part:
    qualified = split_name(name)[0]
    _ensure_loaded(qualified if qualified is not None else kind)
    qualified_kind, part_name = split_name(name)
    if qualified_kind is not None:
        _check_kind(qualified_kind, path=path)
        if kind is not None and qualified_kind != kind:
            raise SpecError(
                f"the slot holds a `{kind}` part, but the spec names `{name}`, "
                f"a `{qualified_kind}`. Known {kind} parts: {', '.join(sorted(_PARTS[kind]))}",
                path=path,
            )
        kind = qualified_kind
    if kind is None:
        hits = [parts[part_name] for parts in _PARTS.values() if part_name in parts]
        if len(hits) == 1:
            return hits[0]
        if len(hits) > 1:
            raise SpecError(
                f"`{part_name}` is a part of several kinds ({', '.join(h.kind for h in hits)}); "
                f"write it as `kind/{part_name}` or pass kind=.",
                path=path,
            )
        every = [f"{k}/{n}" for k, parts in _PARTS.items() for n in parts]
        match = close_matches(part_name, [n for parts in _PARTS.values() for n in parts])
        hint = f" Did you mean `{match[0]}`?" if match else ""
        raise RegistryError(
            f"{'at `' + path + '`: ' if path else ''}no part named `{part_name}`.{hint} "
            f"Known parts: {', '.join(sorted(every))}"
        )
    _check_kind(kind, path=path)
    part = _PARTS[kind].get(part_name)
    if part is None:
        # A part of another kind with this name: say so, it is the likelier mistake.
        elsewhere = [k for k, parts in _PARTS.items() if part_name in parts]
        match = close_matches(part_name, _PARTS[kind])
        hint = f" Did you mean `{match[0]}`?" if match else ""
        other = (
            f" (`{part_name}` is a part of kind {', '.join(f'`{k}`' for k in elsewhere)}, "
            f"not `{kind}`.)"
            if elsewhere
            else ""
        )
        raise RegistryError(
            f"{'at `' + path + '`: ' if path else ''}unknown {kind} part `{part_name}`.{hint}{other} "
            f"Known {kind} parts: {', '.join(sorted(_PARTS[kind])) or '(none)'}"
        )
    return part


def get_entry(kind: str | None, name: str) -> Part:
    """The registry entry (kind, name, factory, source) of a part."""
    return _find(kind, name)


def get_part(kind: str, name: str) -> Callable[..., Any]:
    """The class or factory registered as ``kind``/``name``.

    Raises:
        RegistryError: unknown kind or part, naming the kind's parts and the closest match.
    """
    return _find(kind, name).factory


def list_parts(kind: str | None = None, pattern: str | None = None) -> list[str]:
    """Names of registered parts, sorted.

    With ``kind``: that kind's part names. Without: ``"kind/name"`` for every part.
    ``pattern`` filters with shell wildcards (``"*attention*"``).
    """
    _ensure_loaded(kind)
    if kind is not None:
        _check_kind(kind)
        names = sorted(_PARTS[kind])
    else:
        names = sorted(f"{k}/{n}" for k, parts in _PARTS.items() for n in parts)
    if pattern:
        names = [n for n in names if fnmatch.fnmatch(n, pattern)]
    return names


def _construct(
    factory: Callable[..., Any],
    options: dict[str, Any],
    defaults: dict[str, Any],
    *,
    path: str,
    what: str,
) -> Any:
    # Defaults offered by the caller (dim, heads) are passed only where the part takes them,
    # so a part that needs no `heads` can still sit in a slot that offers one.
    accepted = _accepted_names(factory)
    kwargs = {k: v for k, v in defaults.items() if accepted is None or k in accepted}
    kwargs.update(options)
    check_arguments(factory, kwargs, path=path, what=what)
    try:
        return factory(**kwargs), kwargs
    except NNBlocksError:  # already names what went wrong (a DataError, a ShapeError...)
        raise
    except (TypeError, ValueError) as exc:
        # The part rejected its arguments: re-raise with the place and what was passed.
        shown = ", ".join(f"{k}={v!r}" for k, v in kwargs.items() if _short(v))
        raise SpecError(
            f"{what} could not be built with ({shown}): {exc}", path=path or None
        ) from exc


def _short(value: Any) -> bool:
    return isinstance(value, (bool, int, float, str, type(None)))


def _accepted_names(factory: Callable[..., Any]) -> set[str] | None:
    sig = _signature(factory)
    if sig is None:
        return None
    params = sig.parameters.values()
    if any(p.kind is p.VAR_KEYWORD for p in params):
        return None
    return {p.name for p in params if p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY)}


def build(
    spec: Any, kind: str | None = None, *, at: str | int | None = None, **defaults: Any
) -> Any:
    """Build a part from a spec.

    Args:
        spec: a part name, ``{"name": ..., **options}``, an nn.Module class or factory, or a
            ready nn.Module (returned as is).
        kind: the kind the result must belong to (a slot's kind). Optional for a unique name.
        at: the slot name, appended to the spec path shown in errors
            (``model.decoder.layers.0.self_attention``).
        **defaults: arguments the caller offers (``dim=256, heads=8``); the spec's own options
            override them, and the ones the part does not accept are not passed.

    Returns:
        The built object. A module built from a name or dict remembers its spec
        (``nnblocks.spec_of(module)``), which ``build`` turns back into the same architecture.

    Raises:
        SpecError: bad spec shape, unknown or missing argument, wrong kind for the slot.
        RegistryError: unknown kind or part name (with the closest match).
    """
    with spec_path(at) as path:
        if isinstance(spec, nn.Module):
            return spec
        if kind is not None:
            _check_kind(kind, path=path)
        if inspect.isclass(spec) or (callable(spec) and not isinstance(spec, (str, dict))):
            what = getattr(spec, "__name__", repr(spec))
            obj, kwargs = _construct(spec, {}, defaults, path=path, what=what)
            _check_result(obj, kind, path=path, what=what)
            entry = _entry_of(spec, kind)
            if entry is not None:  # a registered class can report its spec (and be saved)
                _remember(obj, entry, kwargs)
            return obj
        name, options = normalize(spec, path=path)
        part = _find(kind, name, path=path)
        what = f"{part.kind} part `{part.name}`"
        hooked = _take_hooked(part.factory, options)
        obj, kwargs = _construct(part.factory, options, defaults, path=path, what=what)
        _check_result(obj, part.kind, path=path, what=what)
        _remember(obj, part, kwargs)
        for key, value in hooked.items():
            # e.g. swaps recorded by nnblocks.surgery, replayed so a saved model rebuilds
            # as it was (the hook puts its key back into the remembered spec).
            _BUILD_HOOKS[key](obj, value, path=path)
        return obj


def _entry_of(factory: Any, kind: str | None) -> Part | None:
    """The registry entry of a class or factory, if it is registered (in ``kind``)."""
    _ensure_loaded(kind)
    kinds = [kind] if kind is not None else list(_PARTS)
    for k in kinds:
        for part in _PARTS[k].values():
            if part.factory is factory:
                return part
    return None


def _take_hooked(factory: Callable[..., Any], options: dict[str, Any]) -> dict[str, Any]:
    """Pop the options a build hook handles (``"surgery"``), unless the part takes them."""
    keys = [k for k in _BUILD_HOOKS if k in options]
    if not keys:
        return {}
    accepted = _accepted_names(factory)
    return {k: options.pop(k) for k in keys if accepted is None or k not in accepted}


def _check_result(obj: Any, kind: str | None, *, path: str, what: str) -> None:
    if kind is not None and _KINDS[kind].builds_modules and not isinstance(obj, nn.Module):
        raise SpecError(
            f"{what} must build an nn.Module for a `{kind}` slot. Received: {type(obj).__name__}",
            path=path or what,
        )


def _remember(obj: Any, part: Part, kwargs: dict[str, Any]) -> None:
    spec = {"name": part.name, **kwargs}
    try:
        obj._nnblocks_spec = spec
        obj._nnblocks_kind = part.kind
    except AttributeError:  # objects with __slots__ cannot remember; spec_of says so
        pass


def spec_of(obj: Any) -> dict[str, Any]:
    """The spec a part or model was built from; ``build(spec_of(m), kind_of(m))`` rebuilds it.

    Raises:
        SpecError: the object was not built by ``nnblocks.build`` from a name or dict spec.
    """
    spec = getattr(obj, "_nnblocks_spec", None)
    if spec is None:
        raise SpecError(
            f"{type(obj).__name__} was not built from a spec by nnblocks.build, so it has no "
            "spec to report. Build it with nnblocks.build(name_or_dict) or register its class.",
            path=current_path() or type(obj).__name__,
        )
    return _deep_copy(spec)


def kind_of(obj: Any) -> str | None:
    """The kind a built part belongs to, or None if it was not built from a spec."""
    return getattr(obj, "_nnblocks_kind", None)


def _deep_copy(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _deep_copy(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_deep_copy(v) for v in value]
    if isinstance(value, tuple):
        return tuple(_deep_copy(v) for v in value)
    return value
