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
    seeds: list[int] = dataclasses.field(default_factory=list)  # the seed of each value
    problem: str = ""  # the baseline's bad input, in words (variants: comparison.problem)

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


def _interval(ci: tuple[float, float]) -> str:
    if any(math.isnan(v) for v in ci):
        return "-"
    return f"[{ci[0]:+.4f}, {ci[1]:+.4f}]"


def _verdict(row: Row, metric: str) -> str:
    c = row.comparison
    if c is None:
        return row.problem or "baseline"
    if c.significant:  # say which way: "significant" alone hides a regression
        better = (c.diff > 0) == higher_is_better(metric)
        return f"{'better' if better else 'worse'}: {c.verdict}"
    return c.verdict


def _cells(row: Row, metric: str) -> list[str]:
    head = [
        ("* " if row.best else "") + row.label,
        f"{_fmt(row.mean, '.4f')} ± {_fmt(row.std, '.4f')}",
        str(len(row.values)),
    ]
    tail = [
        _verdict(row, metric),
        f"{row.params:,}" if row.params is not None else "-",
        _fmt(None if row.step_time is None else row.step_time * 1000, ".2f"),
        _fmt(row.peak_memory_mb, ".0f"),
    ]
    c = row.comparison
    if c is None:  # the baseline
        return head + [""] * 9 + tail
    stat = [
        _fmt(c.diff, "+.4f"),
        _interval(c.ci),
        _interval(c.ci_boot),
        f"{c.effect_name}={c.effect:+.2f}" if c.effect_name else "",
        c.test,
        _fmt(c.p, ".3g"),
        _fmt(c.p_adjusted, ".3g"),
        _fmt(c.wilcoxon_p, ".3g"),
        _fmt(c.mdd, ".4f"),
    ]
    return head + stat + tail


HEADERS = [
    "variant",
    "{metric} (mean ± std)",
    "seeds",
    "Δ vs baseline",
    "{level} CI (t)",
    "{level} CI (bootstrap)",
    "effect",
    "test",
    "p",
    "adj. p",
    "Wilcoxon p",
    "MDD",
    "verdict",
    "params",
    "step ms",
    "peak MB",
]
_LEFT = {0, 7, 12}  # text columns


def _headers(metric: str, rows: Sequence[Row] = ()) -> list[str]:
    # The intervals' level is 1 - alpha of the tests (not always 95%: `--seeds auto` tests
    # each look at alpha / looks).
    tested = [r.comparison for r in rows if r.comparison is not None and not r.comparison.problem]
    alpha = tested[0].alpha if tested else 0.05
    level = f"{100 * (1 - alpha):.4g}%"
    return [h.format(metric=metric, level=level) for h in HEADERS]


def to_rich(rows: Sequence[Row], metric: str, title: str = "ablation"):
    """A rich Table ('*' marks the best variant)."""
    from rich.table import Table

    table = Table(title=title)
    for i, h in enumerate(_headers(metric, rows)):
        table.add_column(h, justify="left" if i in _LEFT else "right")
    for row in rows:
        table.add_row(*_cells(row, metric), style="bold" if row.best else None)
    return table


def to_markdown(rows: Sequence[Row], metric: str) -> str:
    headers = _headers(metric, rows)
    lines = ["| " + " | ".join(headers) + " |", "|" + "|".join(" --- " for _ in headers) + "|"]
    lines += ["| " + " | ".join(_cells(r, metric)) + " |" for r in rows]
    return "\n".join(lines) + "\n"


CSV_HEADERS = [
    "variant",
    "{metric}_mean",
    "{metric}_std",
    "seeds",
    "diff",
    "ci_low",
    "ci_high",
    "boot_low",
    "boot_high",
    "effect",
    "effect_name",
    "test",
    "p_value",
    "p_adjusted",
    "adjustment",
    "wilcoxon_p",
    "omnibus_p",
    "mdd",
    "verdict",
    "params",
    "step_time_s",
    "peak_memory_mb",
    "best",
]


def to_csv(rows: Sequence[Row], metric: str) -> str:
    buf = io.StringIO()
    writer = csv.writer(buf)
    writer.writerow([h.format(metric=metric) for h in CSV_HEADERS])
    for r in rows:
        c = r.comparison
        stat = (
            [""] * 13
            if c is None
            else [
                c.diff,
                *c.ci,
                *c.ci_boot,
                c.effect,
                c.effect_name,
                c.test,
                c.p,
                c.p_adjusted,
                c.adjustment,
                c.wilcoxon_p,
                c.omnibus_p,
                c.mdd,
            ]
        )
        writer.writerow(
            [
                r.label,
                r.mean,
                r.std,
                len(r.values),
                *stat,
                _verdict(r, metric),
                r.params,
                r.step_time,
                r.peak_memory_mb,
                r.best,
            ]
        )
    return buf.getvalue()


def _mean_interval(values: Sequence[float], alpha: float = 0.05) -> float:
    """Half-width of the t interval of a mean (0 with fewer than two values)."""
    from scipy import stats

    n = len(values)
    if n < 2:
        return 0.0
    return float(stats.t.ppf(1 - alpha / 2, n - 1) * summarize(values)[1] / math.sqrt(n))


def _once(seen: set[str], label: str) -> str | None:
    """A legend label the first time only."""
    if label in seen:
        return None
    seen.add(label)
    return label


def bar_chart(rows: Sequence[Row], metric: str, path: Path, title: str = "ablation") -> Path:
    """Two panels saved as PNG: each variant's mean with its 95% interval and every seed as a
    dot; and each difference from the baseline with its t and bootstrap intervals (a forest
    plot: an interval that crosses the zero line is not a detected difference)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    width = max(8.0, 1.6 * len(rows) + 4)
    fig, (ax, fx) = plt.subplots(1, 2, figsize=(width, 4.2))
    xs = list(range(len(rows)))
    colors = ["tab:orange" if r.best else "tab:blue" for r in rows]
    half = [_mean_interval(r.values) for r in rows]
    ax.errorbar(xs, [r.mean for r in rows], yerr=half, fmt="none", ecolor="0.3", capsize=5)
    ax.scatter(xs, [r.mean for r in rows], color=colors, s=60, zorder=3, marker="D")
    for x, row in zip(xs, rows):  # every seed as a dot: three seeds are few, show them all
        ax.plot([x] * len(row.values), row.values, "k.", alpha=0.6)
    ax.set_xticks(xs)
    ax.set_xticklabels([r.label for r in rows], rotation=30, ha="right")
    ax.set_ylabel(f"{metric}\n(mean, 95% CI; dots: seeds)")
    ax.set_title(title)
    if _unit_interval(metric):  # an interval may reach past 1 or 0; the metric cannot
        low, high = ax.get_ylim()
        ax.set_ylim(max(low, 0.0), min(high, 1.0))
    compared = [r for r in rows if r.comparison is not None]
    ys = list(range(len(compared)))
    seen: set[str] = set()
    for y, row in zip(ys, compared):
        c = row.comparison
        assert c is not None  # filtered above
        if not math.isnan(c.ci[0]):
            fx.plot(c.ci, [y + 0.1] * 2, color="tab:blue", lw=3, label=_once(seen, "t"))
        if not math.isnan(c.ci_boot[0]):
            fx.plot(
                c.ci_boot, [y - 0.1] * 2, color="tab:green", lw=1.5, label=_once(seen, "bootstrap")
            )
        if not math.isnan(c.diff):
            fx.plot([c.diff], [y], "ko")
    fx.axvline(0.0, color="0.5", ls="--", lw=1)
    fx.set_ylim(-0.6, len(compared) - 0.4)  # the intervals sit close to their point
    fx.set_yticks(ys)
    fx.set_yticklabels([r.label for r in compared])
    fx.set_xlabel(f"difference from baseline in {metric} (95% CI)")
    fx.set_title("vs baseline")
    if fx.get_legend_handles_labels()[0]:  # no interval at all: nothing to explain
        fx.legend(loc="best", fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110, bbox_inches="tight")  # no title or label is clipped
    plt.close(fig)
    return path


# Metrics that live in [0, 1] (so the chart's axis stays inside it).
_UNIT_METRICS = ("accuracy", "exact_match", "f1", "precision", "recall", "auc")


def _unit_interval(metric: str) -> bool:
    name = metric.lower()
    return any(name.endswith(m) or f"{m}_" in name for m in _UNIT_METRICS) and "loss" not in name
