"""The ablation table: rich in the terminal, markdown and CSV on disk, a bar chart as PNG."""

from __future__ import annotations

import csv
import dataclasses
import io
import math
from collections.abc import Sequence
from pathlib import Path

from nnblocks.experiment.stats import Comparison, summarize

__all__ = ["Row", "higher_is_better", "to_rich", "to_markdown", "to_csv", "bar_chart"]


@dataclasses.dataclass
class Row:
    """One variant's results over seeds."""

    label: str
    values: list[float]  # the compared metric, one per finished seed
    params: int | None
    step_time: float | None  # seconds per training step (mean over seeds)
    peak_memory_mb: float | None
    comparison: Comparison | None = None  # None for the baseline
    best: bool = False

    @property
    def mean(self) -> float:
        return summarize(self.values)[0]

    @property
    def std(self) -> float:
        return summarize(self.values)[1]


def higher_is_better(metric: str) -> bool:
    """Loss-like names (loss, error, perplexity, mse, mae) are minimised; the rest maximised."""
    low = metric.lower()
    return not any(w in low for w in ("loss", "error", "perplexity", "ppl", "mse", "mae", "rmse"))


def _fmt(value: float | None, spec: str) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "-"
    return format(value, spec)


def _cells(row: Row, metric: str) -> list[str]:
    verdict = "baseline" if row.comparison is None else row.comparison.verdict
    diff = "" if row.comparison is None else f"{row.comparison.diff:+.4f}"
    return [
        ("* " if row.best else "") + row.label,
        f"{_fmt(row.mean, '.4f')} ± {_fmt(row.std, '.4f')}",
        str(len(row.values)),
        diff,
        verdict,
        f"{row.params:,}" if row.params is not None else "-",
        _fmt(None if row.step_time is None else row.step_time * 1000, ".2f"),
        _fmt(row.peak_memory_mb, ".0f"),
    ]


HEADERS = [
    "variant",
    "{metric} (mean ± std)",
    "seeds",
    "Δ vs baseline",
    "verdict",
    "params",
    "step ms",
    "peak MB",
]


def _headers(metric: str) -> list[str]:
    return [h.format(metric=metric) for h in HEADERS]


def to_rich(rows: Sequence[Row], metric: str, title: str = "ablation"):
    """A rich Table ('*' marks the best variant)."""
    from rich.table import Table

    table = Table(title=title)
    for i, h in enumerate(_headers(metric)):
        table.add_column(h, justify="left" if i in (0, 4) else "right")
    for row in rows:
        table.add_row(*_cells(row, metric), style="bold" if row.best else None)
    return table


def to_markdown(rows: Sequence[Row], metric: str) -> str:
    headers = _headers(metric)
    lines = ["| " + " | ".join(headers) + " |", "|" + "|".join(" --- " for _ in headers) + "|"]
    lines += ["| " + " | ".join(_cells(r, metric)) + " |" for r in rows]
    return "\n".join(lines) + "\n"


def to_csv(rows: Sequence[Row], metric: str) -> str:
    buf = io.StringIO()
    writer = csv.writer(buf)
    writer.writerow(
        [
            "variant",
            f"{metric}_mean",
            f"{metric}_std",
            "seeds",
            "diff",
            "p_value",
            "verdict",
            "params",
            "step_time_s",
            "peak_memory_mb",
            "best",
        ]
    )
    for r in rows:
        c = r.comparison
        writer.writerow(
            [
                r.label,
                r.mean,
                r.std,
                len(r.values),
                "" if c is None else c.diff,
                "" if c is None else c.p,
                "baseline" if c is None else c.verdict,
                r.params,
                r.step_time,
                r.peak_memory_mb,
                r.best,
            ]
        )
    return buf.getvalue()


def bar_chart(rows: Sequence[Row], metric: str, path: Path, title: str = "ablation") -> Path:
    """A bar chart of mean ± std per variant, saved as PNG."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(max(4.0, 1.2 * len(rows) + 2), 4))
    xs = range(len(rows))
    colors = ["tab:orange" if r.best else "tab:blue" for r in rows]
    ax.bar(xs, [r.mean for r in rows], yerr=[r.std for r in rows], capsize=4, color=colors)
    for x, row in zip(xs, rows):  # every seed as a dot: three seeds are few, show them all
        ax.plot([x] * len(row.values), row.values, "k.", alpha=0.6)
    ax.set_xticks(list(xs))
    ax.set_xticklabels([r.label for r in rows], rotation=30, ha="right")
    ylabel = f"{metric}\n(mean ± std, dots: seeds)"
    values = [v for r in rows for v in r.values]
    if values:
        lo, hi = (
            min(values + [r.mean - r.std for r in rows]),
            max(values + [r.mean + r.std for r in rows]),
        )
        span = hi - lo
        # Near-equal scores far from zero would look identical on an axis from 0: zoom in.
        if lo > 0 and 0 < span < 0.5 * abs(hi):
            ax.set_ylim(lo - 0.5 * span, hi + 0.5 * span)
            title += " (axis zoomed, not from 0)"
    ax.set_ylabel(ylabel)
    ax.set_title(title)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path
