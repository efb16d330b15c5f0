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
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

import yaml

from nnblocks.errors import SpecError
from nnblocks.experiment.seeds import check_seed
from nnblocks.spec import close_matches

__all__ = [
    "TOP_LEVEL_KEYS",
    "TRAIN_KEYS",
    "load_recipe",
    "parse_override",
    "read_value",
    "apply_overrides",
    "get_key",
    "dump_recipe",
]

TOP_LEVEL_KEYS = {
    "name": "a short name for the run folder",
    "seed": "random seed: an int, or named seeds {init, data, dropout}",
    "data": "dataset spec: {name: ..., options}",
    "model": "model spec: {name: ..., slots and options}",
    "train": "training settings (see TRAIN_KEYS)",
    "eval": "evaluation settings after training",
    "tune": "search space for `nnblocks tune`: {dotted.key: {choices | low/high}}",
    "description": "free text",
    "plugins": "Python files or modules to import first (they register user parts)",
}

# Training settings a recipe may hold, with their types (for --set checks) and meaning. Names
# follow the Learner's arguments where one exists.
TRAIN_KEYS: dict[str, tuple[type | tuple[type, ...], str]] = {
    "epochs": (int, "passes over the training data"),
    "lr": ((int, float), "peak learning rate"),
    "batch_size": (int, "samples per step"),
    "valid_batch_size": ((int, type(None)), "samples per evaluation step"),
    "opt": ((str, dict), "optimizer: adamw (default), adam, sgd"),
    "wd": ((int, float), "decoupled weight decay"),
    "schedule": ((str, dict, type(None)), "one_cycle (default), constant, cosine, linear"),
    "clip_grad": ((int, float, type(None)), "clip the global gradient norm to this value"),
    "grad_accumulation": (int, "batches whose gradients are summed before an update"),
    "mixed_precision": ((str, type(None)), "null (fp32), bf16, fp16 (CUDA)"),
    "loss": ((str, type(None)), "loss name; default: the task's loss"),
    "metrics": ((list, type(None)), "metric names; default: the task's metrics"),
    "monitor": ((str, type(None)), "history column for early stopping and the best checkpoint"),
    "early_stopping": ((int, type(None)), "patience in epochs; null = off"),
    "teacher_forcing": ((dict, int, float, type(None)), "teacher-forcing schedule (RNN seq2seq)"),
    "time_limit": ((int, float, type(None)), "stop training after this many seconds"),
    "threads": ((int, type(None)), "torch threads; null = torch's default"),
    "deterministic": (bool, "use deterministic algorithms"),
    "audit": (str, "warn (default), error or off: the reuse audit on the first batch"),
    "hybridize": (str, "eager (default), compile, or auto: compile when it pays"),
    "checkpoint": (bool, "save best/last training checkpoints in the run folder"),
    "evaluate": ((dict, type(None)), "options for the task's evaluation after training"),
    "show": (int, "how many test examples to print after training"),
}


def load_recipe(path: str | os.PathLike[str], overrides: Iterable[str] = ()) -> dict[str, Any]:
    """Read a recipe YAML file (safe_load) and apply ``KEY=VALUE`` overrides.

    Raises:
        SpecError: missing or unreadable file, not a mapping, unknown top-level or train key,
            or an override that does not fit the recipe.
    """
    file = Path(path)
    if not file.is_file():
        raise SpecError(f"recipe file not found: {file}", path=str(file))
    try:
        recipe = yaml.safe_load(file.read_text(encoding="utf-8"))
    except yaml.YAMLError as exc:
        raise SpecError(f"not valid YAML: {exc}", path=str(file)) from exc
    if not isinstance(recipe, dict):
        raise SpecError(
            f"a recipe must be a mapping with keys {sorted(TOP_LEVEL_KEYS)}. "
            f"Received: {type(recipe).__name__}",
            path=str(file),
        )
    recipe.setdefault("name", file.stem)
    validate_recipe(recipe, where=str(file))
    plugins = recipe.get("plugins") or []
    if not isinstance(plugins, list) or not all(isinstance(p, str) for p in plugins):
        raise SpecError("expected a list of file paths or module names", path=f"{file}: plugins")
    from nnblocks.plugins import export_to_env, import_plugins

    import_plugins(plugins, base=file.resolve().parent)
    export_to_env(
        [
            str(file.resolve().parent / p)
            if p.endswith(".py") and (file.resolve().parent / p).exists()
            else p
            for p in plugins
        ]
    )
    return apply_overrides(recipe, [parse_override(o) for o in overrides])


def validate_recipe(recipe: Mapping[str, Any], *, where: str = "recipe") -> None:
    """Check top-level and train keys (model and data keys are checked by building them)."""
    for key in recipe:
        if key not in TOP_LEVEL_KEYS:
            raise SpecError(_unknown(key, TOP_LEVEL_KEYS), path=f"{where}: {key}")
    for section in ("data", "model"):
        if section in recipe and not isinstance(recipe[section], (str, Mapping)):
            raise SpecError(
                f"expected a spec (a name or a mapping with `name`). "
                f"Received: {type(recipe[section]).__name__}",
                path=f"{where}: {section}",
            )
    train = recipe.get("train") or {}
    if not isinstance(train, Mapping):
        raise SpecError("expected a mapping of training settings.", path=f"{where}: train")
    for key, value in train.items():
        _check_train_value(key, value, path=f"{where}: train.{key}")


def _check_train_value(key: str, value: Any, *, path: str) -> None:
    if key not in TRAIN_KEYS:
        raise SpecError(_unknown(key, TRAIN_KEYS), path=path)
    types, meaning = TRAIN_KEYS[key]
    if isinstance(value, bool) and bool not in (types if isinstance(types, tuple) else (types,)):
        ok = False
    else:
        ok = isinstance(value, types)
    if not ok:
        names = types if isinstance(types, tuple) else (types,)
        raise SpecError(
            f"expected {' or '.join(t.__name__ for t in names)} ({meaning}). "
            f"Received: {value!r} ({type(value).__name__})",
            path=path,
        )


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
        value = yaml.safe_load(raw) if raw.strip() else None
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


def apply_overrides(
    recipe: Mapping[str, Any], overrides: Iterable[tuple[str, Any]]
) -> dict[str, Any]:
    """A copy of ``recipe`` with each ``(dotted_key, value)`` set.

    Keys under ``model.`` and ``data.`` may add options the recipe does not spell out yet (the
    part's constructor decides whether it accepts them, checked when it is built); keys
    elsewhere must exist in the schema. A value that replaces a spec string by options
    (``model.decoder.self_attention.window=8`` where the slot holds ``"local"``) turns the
    string into ``{"name": "local", "window": 8}``.

    Raises:
        SpecError: unknown top-level or train key, or a value of the wrong type.
    """
    out = copy.deepcopy(dict(recipe))
    for key, value in overrides:
        pieces = key.split(".")
        head = pieces[0]
        if head not in TOP_LEVEL_KEYS:
            raise SpecError(_unknown(head, TOP_LEVEL_KEYS), path=key)
        if head == "train":
            if len(pieces) != 2:
                raise SpecError(
                    f"train settings are one level deep (train.KEY). Known keys: "
                    f"{', '.join(sorted(TRAIN_KEYS))}",
                    path=key,
                )
            _check_train_value(pieces[1], value, path=key)
        if key == "seed":
            check_seed(value, path=key)
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
