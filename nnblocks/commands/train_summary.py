"""What `nnblocks train` prints at the end: the metrics table, where the views are, the headline.

The table shows ``metrics.json`` as a reader wants it: counts as integers, and without the
rows that say nothing about the result (the rules are in ``summary_rows``). ``--json``
prints ``metrics.json`` unchanged.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from nnblocks.experiment.ablate import pick_metric
from nnblocks.experiment.run import TENSORBOARD_DIR

__all__ = ["headline", "summary_rows", "view_paths", "format_value"]

# Rows of the final epoch's history that are no result of the run:
# `epoch` is the last epoch's index, the same fact as `epochs_run` under a second name;
# `lr` is where the schedule ended (near 0 for one-cycle), a setting kept in history.csv.
_DROPPED = frozenset({"epoch", "lr"})

# Keys the run itself adds (run.py), and history keys that are no validation metric.
_OWN_KEYS = frozenset(
    {"params", "step_time", "train_seconds", "peak_memory_mb", "epochs_run", "seed"}
)
_NOT_VALID_METRICS = frozenset({"teacher_forcing"})

# Count-like names: an integral float among them is shown as an integer.
_COUNT_WORDS = ("n", "tokens", "params", "seed", "epochs_run", "steps", "count")

# Metrics that are fractions of 1, shown as percentages in the headline.
_FRACTION_WORDS = ("accuracy", "exact_match", "f1", "precision", "recall", "auroc", "iou")

# How words of a metric name are written in the headline.
_WORDS = {"r2": "R²", "mae": "MAE", "mse": "MSE", "rmse": "RMSE", "f1": "F1", "bleu": "BLEU"}


def _is_count(key: str) -> bool:
    return any(key == w or key.endswith(f"_{w}") for w in _COUNT_WORDS)


def format_value(key: str, value: Any) -> str:
    """One table cell: integers (and integral counts) without decimals, floats to 4 digits.

    Args:
        key: the metric's name (``test_n`` is a count, ``test_accuracy`` is not).
        value: the metric's value as ``metrics.json`` holds it.

    Returns:
        The text of the cell; ``n/a`` for a missing value (NaN is stored as null).
    """
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "n/a"
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return str(value)
    if isinstance(value, int) or (_is_count(key) and value.is_integer()):
        return f"{int(value):,}"
    return f"{value:#.4g}"


def summary_rows(metrics: Mapping[str, Any]) -> list[tuple[str, str]]:
    """The rows of the final table, sorted by name, as (name, text).

    Dropped: ``epoch`` (repeats ``epochs_run``) and ``lr`` (the schedule's last value).
    A metric of the last epoch's validation (the history names it without a prefix, e.g.
    ``accuracy``) is shown as ``valid_accuracy``, and dropped when the task's own
    evaluation of the validation split already gives ``valid_accuracy``.

    Args:
        metrics: the run's final metrics (``metrics.json``).

    Returns:
        (row name, cell text) pairs.
    """
    rows: dict[str, str] = {}
    for key, value in metrics.items():
        if key in _DROPPED:
            continue
        name = key
        if (
            key not in _OWN_KEYS
            and key not in _NOT_VALID_METRICS
            and not key.startswith(("train_", "valid_", "test_"))
        ):
            name = f"valid_{key}"
            if name in metrics:
                continue  # the same validation metric under a second name
        rows[name] = format_value(name, value)
    return sorted(rows.items())


def view_paths(folder: Path) -> list[tuple[str, str]]:
    """Where the run's views are, for those the run wrote: (what, path or command)."""
    views = [
        ("loss curves", folder / "loss_curves.png"),
        ("TensorBoard", folder / TENSORBOARD_DIR),
        ("model card", folder / "model" / "README.md"),
    ]
    out = []
    for what, path in views:
        if path.exists():
            text = f"tensorboard --logdir {path}" if what == "TensorBoard" else str(path)
            out.append((what, text))
    return out


def _metric_words(key: str) -> str:
    return " ".join(_WORDS.get(word, word) for word in key.split("_"))


def _metric_value(key: str, value: Any) -> str:
    if not isinstance(value, (int, float)) or isinstance(value, bool):
        return "n/a" if value is None else str(value)
    if any(w in key.split("_") or w in key for w in _FRACTION_WORDS) and 0 <= value <= 1:
        return f"{100 * value:.1f}%"
    return f"{value:.4g}"


def _duration(seconds: float) -> str:
    minutes, secs = divmod(round(seconds), 60)
    hours, minutes = divmod(minutes, 60)
    return f"{hours}:{minutes:02d}:{secs:02d}" if hours else f"{minutes}:{secs:02d}"


def headline(metrics: Mapping[str, Any], recipe: Mapping[str, Any], name: str) -> str:
    """One sentence: the run's headline metric, its epochs and its training time.

    The metric is the one ablations compare (``pick_metric``: ``train.monitor``, else the
    task's evaluation on the test split, else on the validation split, else ``valid_loss``).

    Args:
        metrics: the run's final metrics.
        recipe: the recipe the run trained.
        name: the run's name (the recipe's ``name``).

    Returns:
        e.g. ``"numbers_de: test exact match 99.8% after 3 epochs (2:02)."``
    """
    key = pick_metric(dict(metrics), dict(recipe))
    text = f"{name}: {_metric_words(key)} {_metric_value(key, metrics.get(key))}"
    epochs = metrics.get("epochs_run")
    if isinstance(epochs, int):
        text += f" after {epochs} epoch{'s' if epochs != 1 else ''}"
    seconds = metrics.get("train_seconds")
    if isinstance(seconds, (int, float)):
        text += f" ({_duration(seconds)})"
    return text + "."
