"""Recipes: one YAML file that fully describes data, model and training.

    seed: 0
    data:  {name: numbers, lang: de}                 # a dataset spec
    model: {name: transformer_seq2seq, dim: 128}     # a model spec
    train: {epochs: 10, lr: 3.0e-3, batch_size: 128}

Any key can be overridden by its dotted path (``model.decoder.self_attention=gqa``); the
value is read as YAML, so ``3e-3`` is a float and ``[1, 2]`` a list. A key that is not in
the recipe's schema fails before any training starts, naming the key and the known keys.
"""

from __future__ import annotations

import copy
import os
import re
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

import yaml
from pydantic import ValidationError

from nnblocks.errors import SpecError
from nnblocks.experiment.schema import RecipeSettings, section_fields, translate
from nnblocks.spec import check_arguments, close_matches, normalize

__all__ = [
    "Recipe",
    "TOP_LEVEL_KEYS",
    "TRAIN_KEYS",
    "load_recipe",
    "validate_recipe",
    "read_recipe_file",
    "parse_override",
    "read_value",
    "apply_overrides",
    "get_key",
    "dump_recipe",
]

# The keys and their meaning, read from the one schema (nnblocks.experiment.schema).
TOP_LEVEL_KEYS: dict[str, str] = section_fields("")
TRAIN_KEYS: dict[str, str] = section_fields("train")


class Recipe(dict):  # type: ignore[type-arg]
    """A validated recipe: its plain data (a dict, as written) plus the typed view.

    Built only by ``validate_recipe`` (``load_recipe``, ``apply_overrides``); change it with
    ``apply_overrides``, which validates the result again, not in place.

    Attributes:
        settings: the typed recipe (``settings.train.epochs`` is an int > 0, ...).
        source: the recipe file, or None for a recipe made in Python.
        folder: the folder relative paths in the recipe (plugins, data files) start from.
        lines: ``{dotted key: line in source}``.
        overridden: dotted keys set by ``--set`` (errors name the override, not the file).
    """

    settings: RecipeSettings
    source: Path | None
    folder: Path
    lines: dict[str, int]
    overridden: tuple[str, ...]

    def where(self, key: str) -> str:
        """The place of a dotted key in messages: ``--set key``, ``file:line: key`` or ``key``."""
        return _where(key, self.source, self.lines, self.overridden)


def _where(
    key: str, source: Path | None, lines: Mapping[str, int], overridden: Iterable[str]
) -> str:
    # The most specific place that knows the key: an override that set it (or set something
    # inside it), else the file line of the key or of its closest parent.
    overrides = list(overridden)
    probe = key
    while probe:
        hit = next((o for o in overrides if o == probe or o.startswith(probe + ".")), None)
        if hit is not None and (probe == key or hit == probe or probe not in lines):
            return (
                f"--set {hit}" if hit == key or hit.startswith(key + ".") else f"--set {hit}: {key}"
            )
        if probe in lines and source is not None:
            return f"{source}:{lines[probe]}: {key}"
        probe = probe.rpartition(".")[0]
    return f"{source}: {key}" if source is not None else key


# -- reading the file --------------------------------------------------------------------

# YAML 1.1 reads "3e-3" as a string; recipes mean a float (YAML 1.2 reads it so too).
_FLOAT = re.compile(r"^[-+]?(?:[0-9][0-9_]*)(?:\.[0-9_]*)?[eE][-+]?[0-9]+$")


class _RecipeLoader(yaml.SafeLoader):
    """safe_load that refuses a key given twice (naming both lines) and reads 1e-3 as a float."""

    source = "recipe"

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict[Any, Any]:
        seen: dict[Any, int] = {}
        for key_node, _ in node.value:
            if isinstance(key_node, yaml.ScalarNode):
                key = key_node.value
                line = key_node.start_mark.line + 1
                if key in seen:
                    raise SpecError(
                        f"the key `{key}` is given twice (first on line {seen[key]}); "
                        "expected each key once in a mapping",
                        path=f"{self.source}:{line}",
                    )
                seen[key] = line
        return super().construct_mapping(node, deep=deep)


_RecipeLoader.add_implicit_resolver("tag:yaml.org,2002:float", _FLOAT, list("-+0123456789"))


def _key_lines(node: Any, prefix: str, out: dict[str, int]) -> None:
    if isinstance(node, yaml.MappingNode):
        for key_node, value_node in node.value:
            if isinstance(key_node, yaml.ScalarNode):
                key = f"{prefix}.{key_node.value}" if prefix else str(key_node.value)
                out[key] = key_node.start_mark.line + 1
                _key_lines(value_node, key, out)
    elif isinstance(node, yaml.SequenceNode):
        for i, item in enumerate(node.value):
            key = f"{prefix}.{i}"
            out[key] = item.start_mark.line + 1
            _key_lines(item, key, out)


def read_recipe_file(path: str | os.PathLike[str]) -> tuple[Any, dict[str, int]]:
    """Parse a recipe file: ``(data, {dotted key: line})``.

    Raises:
        SpecError: a missing file, bytes that are not UTF-8, YAML syntax, or a repeated key,
            naming the file and the line.
    """
    file = Path(path)
    if not file.is_file():
        raise SpecError(f"recipe file not found: {file}", path=str(file))
    raw = file.read_bytes()
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = raw[: exc.start].count(b"\n") + 1
        raise SpecError(
            f"expected UTF-8 text. Received: the byte {raw[exc.start]:#04x} at offset {exc.start}",
            path=f"{file}:{line}",
        ) from None
    loader = _RecipeLoader(text)
    loader.source = str(file)
    try:
        node = loader.get_single_node()
        data = loader.construct_document(node) if node is not None else None
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        where = f"{file}:{mark.line + 1}" if mark is not None else str(file)
        raise SpecError(f"not valid YAML: {exc.problem or exc}", path=where) from None
    except yaml.YAMLError as exc:
        raise SpecError(f"not valid YAML: {exc}", path=str(file)) from None
    finally:
        loader.dispose()
    lines: dict[str, int] = {}
    _key_lines(node, "", lines)
    return data, lines


# -- validating --------------------------------------------------------------------------


def load_recipe(path: str | os.PathLike[str], overrides: Iterable[str] = ()) -> Recipe:
    """Read a recipe YAML file, apply ``KEY=VALUE`` overrides, and validate it once.

    Raises:
        SpecError: a missing or unreadable file, a value that does not fit the schema (type,
            range, allowed values, unknown key), an override that does not fit, or a dataset
            spec whose options the dataset does not take. The message names the file and
            line (or the ``--set`` override) and the key.
    """
    file = Path(path)
    data, lines = read_recipe_file(file)
    if not isinstance(data, dict):
        raise SpecError(
            f"a recipe must be a mapping with keys {sorted(TOP_LEVEL_KEYS)}. "
            f"Received: {type(data).__name__}",
            path=str(file),
        )
    data.setdefault("name", file.stem)
    pairs = [parse_override(o) for o in overrides]
    data = _set_all(data, pairs)
    recipe = validate_recipe(
        data,
        source=file,
        folder=file.resolve().parent,
        lines=lines,
        overridden=tuple(k for k, _ in pairs),
    )
    from nnblocks.plugins import export_to_env

    export_to_env(
        [
            str(recipe.folder / p) if p.endswith(".py") and (recipe.folder / p).exists() else p
            for p in recipe.settings.plugins
        ]
    )
    return recipe


def validate_recipe(
    recipe: Mapping[str, Any],
    *,
    where: str | None = None,
    source: str | os.PathLike[str] | None = None,
    folder: str | os.PathLike[str] | None = None,
    lines: Mapping[str, int] | None = None,
    overridden: Iterable[str] = (),
) -> Recipe:
    """Validate plain recipe data against the schema once: a ``Recipe``.

    The recipe's plugins are imported (they may register the dataset), then the dataset
    spec is checked against its part's signature. The model is checked by building it
    (``check_recipe``).

    Args:
        recipe: the plain data.
        where: a label for messages when there is no file (kept for old callers).
        source: the recipe file.
        folder: where relative paths start (default: the source's folder, else the cwd).
        lines: ``{dotted key: line}`` of the source.
        overridden: keys set by overrides.

    Raises:
        SpecError: the first problem found (the others are listed in the message).
    """
    if isinstance(recipe, Recipe) and not overridden and source is None:
        return recipe
    src = Path(source) if source is not None else (Path(where) if where else None)
    base = Path(folder) if folder is not None else (src.resolve().parent if src else Path.cwd())
    keys = tuple(overridden)
    line_map = dict(lines or {})

    def place(key: str) -> str:
        return _where(key, src, line_map, keys)

    data = dict(recipe)
    try:
        settings = RecipeSettings.model_validate(data)
    except ValidationError as exc:
        raise translate(exc, data, place) from None
    from nnblocks.plugins import import_plugins

    import_plugins(settings.plugins, base=base)
    if settings.data is not None:
        _check_dataset(settings.data, place("data"))
    out = Recipe(data)
    out.settings, out.source, out.folder = settings, src, base
    out.lines, out.overridden = line_map, keys
    return out


def _check_dataset(spec: Any, where: str) -> None:
    """The dataset exists and takes the options given (its signature), without building it."""
    from nnblocks.registry import get_entry

    name, options = normalize(spec, path=where)
    entry = get_entry("dataset", name)
    check_arguments(entry.factory, options, path=where, what=f"dataset `{entry.name}`")


def _unknown(key: str, known: Iterable[str]) -> str:
    match = close_matches(key, known)
    hint = f" Did you mean `{match[0]}`?" if match else ""
    return f"unknown key `{key}`.{hint} Known keys: {', '.join(sorted(known))}"


def parse_override(text: str) -> tuple[str, Any]:
    """``"train.lr=3e-3"`` -> ``("train.lr", 0.003)`` (the value is read as YAML)."""
    key, sep, raw = text.partition("=")
    key = key.strip()
    if not sep or not key:
        raise SpecError(f"an override is KEY=VALUE with a dotted key. Received: {text!r}")
    return key, read_value(raw, key=key)


def read_value(raw: str, *, key: str = "") -> Any:
    """A command-line value read as YAML (``"3e-3"`` -> 0.003, ``"[1, 2]"`` -> a list).

    Raises:
        SpecError: not valid YAML, naming ``key``.
    """
    try:
        # _RecipeLoader is a yaml.SafeLoader subclass (plain data only, as safe_load), which
        # also refuses repeated keys and reads 1e-3 as a float, like the recipe file itself.
        value = yaml.load(raw, Loader=_RecipeLoader) if raw.strip() else None  # noqa: S506
    except yaml.YAMLError as exc:
        raise SpecError(f"the value is not valid YAML: {exc}", path=key or None) from exc
    if isinstance(value, str) and _looks_like_float(value):
        value = float(value)  # YAML 1.1 reads "3e-3" as a string
    return value


def _looks_like_float(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return any(c in text for c in "eE.") and not text.strip().isalpha()


def get_key(recipe: Mapping[str, Any], dotted: str) -> Any:
    """The value at a dotted path; KeyError if absent."""
    node: Any = recipe
    for piece in dotted.split("."):
        if isinstance(node, list) and piece.isdigit():
            node = node[int(piece)]
        elif isinstance(node, Mapping) and piece in node:
            node = node[piece]
        else:
            raise KeyError(dotted)
    return node


def apply_overrides(recipe: Mapping[str, Any], overrides: Iterable[tuple[str, Any]]) -> Recipe:
    """A copy of ``recipe`` with each ``(dotted_key, value)`` set, validated again.

    Keys under ``model.`` and ``data.`` may add options the recipe does not spell out yet (the
    part's constructor decides whether it accepts them, checked when it is built); keys
    elsewhere must exist in the schema. A value that replaces a spec string by options
    (``model.decoder.self_attention.window=8`` where the slot holds ``"local"``) turns the
    string into ``{"name": "local", "window": 8}``.

    Raises:
        SpecError: an unknown key, or a value that does not fit the schema (naming the
            override).
    """
    pairs = list(overrides)
    out = _set_all(recipe, pairs)
    if isinstance(recipe, Recipe):
        return validate_recipe(
            out,
            source=recipe.source,
            folder=recipe.folder,
            lines=recipe.lines,
            overridden=recipe.overridden + tuple(k for k, _ in pairs),
        )
    return validate_recipe(out, overridden=tuple(k for k, _ in pairs))


def _set_all(recipe: Mapping[str, Any], overrides: Iterable[tuple[str, Any]]) -> dict[str, Any]:
    out = copy.deepcopy(dict(recipe))
    for key, value in overrides:
        pieces = key.split(".")
        if pieces[0] not in TOP_LEVEL_KEYS:
            raise SpecError(_unknown(pieces[0], TOP_LEVEL_KEYS), path=f"--set {key}")
        _set(out, pieces, value, full=key)
    return out


def _set(node: Any, pieces: list[str], value: Any, *, full: str) -> None:
    for i, piece in enumerate(pieces):
        last = i == len(pieces) - 1
        if isinstance(node, list):
            if not piece.isdigit() or int(piece) >= len(node):
                where = ".".join(pieces[:i])
                raise SpecError(f"`{where}` is a list; index it with 0..{len(node) - 1}", path=full)
            if last:
                node[int(piece)] = value
                return
            child = node[int(piece)]
            if isinstance(child, str):  # a spec given by name gains options
                child = node[int(piece)] = {"name": child}
        else:
            if last:
                node[piece] = value
                return
            child = node.get(piece)
            if child is None:
                child = node[piece] = {}
            elif isinstance(child, str):
                child = node[piece] = {"name": child}
        if not isinstance(child, (dict, list)):
            where = ".".join(pieces[: i + 1])
            raise SpecError(f"`{where}` holds {child!r}, which has no keys", path=full)
        node = child


def dump_recipe(recipe: Mapping[str, Any]) -> str:
    """The recipe as YAML text, in a stable key order."""
    return yaml.safe_dump(dict(recipe), sort_keys=False, default_flow_style=False)
