"""The generated ``README.md`` of a saved model: a model card in the community's format.

YAML front matter (``library_name: nnblocks`` and tags, the fields the Hugging Face Hub
reads to list and filter models), then what a reader needs to trust and reuse the model:
its parameter count, a table of its slots and the parts in them, the metrics and the recipe
it was trained with, and how to load it.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from typing import Any

import yaml
from torch import nn

from nnblocks.registry import kind_of, spec_of

__all__ = ["CARD_NAME", "model_card", "slot_rows"]

CARD_NAME = "README.md"
_MAX_SLOT_ROWS = 200
_TAGGED_KINDS = (
    "attention",
    "position",
    "norm",
    "feedforward",
    "block",
)  # a 96-layer model lists its first slots, then says how many more


def slot_rows(model: nn.Module) -> list[tuple[str, str, str]]:
    """``(slot path, kind, part name)`` for every module built from a spec (the model
    itself is the slot ``""``), in ``named_modules`` order."""
    rows = []
    for path, module in model.named_modules(remove_duplicate=False):
        kind = kind_of(module)
        if kind is not None:
            rows.append((path or "(model)", kind, str(spec_of(module).get("name", "?"))))
    return rows


def _count(model: nn.Module) -> tuple[int, int]:
    params = {id(p): p for p in model.parameters()}.values()  # tied weights counted once
    return sum(p.numel() for p in params), sum(p.numel() for p in params if p.requires_grad)


def _value(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.4g}"
    return str(value).replace("|", "\\|")


def _front_matter(model: nn.Module, task: str | None) -> str:
    name = str(spec_of(model).get("name", type(model).__name__))
    # The parts a researcher filters by (which attention, position scheme, norm, ...).
    parts = sorted({part for _, kind, part in slot_rows(model) if kind in _TAGGED_KINDS})
    tags = ["nnblocks", name, *([task] if task else []), *parts]
    meta = {"library_name": "nnblocks", "tags": list(dict.fromkeys(tags))}
    return "---\n" + yaml.safe_dump(meta, sort_keys=False) + "---\n"


def model_card(
    model: nn.Module,
    *,
    recipe: Mapping[str, Any] | None = None,
    metrics: Mapping[str, Any] | None = None,
    task: str | None = None,
    files: Iterable[str] = (),
) -> str:
    """The text of ``README.md`` for ``model``.

    Args:
        model: a model built from a spec.
        recipe: the recipe it was trained with (shown as YAML).
        metrics: final metrics (a table).
        task: the task's name (a tag), e.g. ``"lm"``.
        files: the other files of the folder (listed under "Files").

    Returns:
        Markdown with YAML front matter.
    """
    from nnblocks import __version__

    name = str(spec_of(model).get("name", type(model).__name__))
    total, trainable = _count(model)
    lines = [
        _front_matter(model, task),
        f"# {name}",
        "",
        f"A `{name}` model saved by nnblocks {__version__}: {total:,} parameters "
        f"({trainable:,} trainable). Every slot below holds a registered part and can be "
        "swapped (`nnblocks.surgery.swap`).",
        "",
        "## Load",
        "",
        "```python",
        "import nnblocks",
        'model = nnblocks.load("path/to/this/folder")',
        "```",
        "",
        "## Slots",
        "",
        "| slot | kind | part |",
        "| --- | --- | --- |",
    ]
    rows = slot_rows(model)
    lines += [f"| `{p}` | {k} | `{n}` |" for p, k, n in rows[:_MAX_SLOT_ROWS]]
    if len(rows) > _MAX_SLOT_ROWS:
        lines.append(f"| ... | {len(rows) - _MAX_SLOT_ROWS} more | |")
    if metrics:
        lines += ["", "## Metrics", "", "| metric | value |", "| --- | --- |"]
        lines += [f"| {k} | {_value(v)} |" for k, v in sorted(metrics.items())]
    if recipe:
        plain = json.loads(json.dumps(dict(recipe), default=str))  # YAML of plain data only
        lines += ["", "## Recipe", "", "```yaml", yaml.safe_dump(plain, sort_keys=False).rstrip()]
        lines += ["```"]
    shown = sorted(files)
    if shown:
        lines += ["", "## Files", ""] + [f"- `{f}`" for f in ["model.safetensors", *shown]]
    return "\n".join(lines) + "\n"
