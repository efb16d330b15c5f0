"""Is a difference between two variants real? Welch's t-test over seeds.

Welch's t-test (Welch 1947) compares two means without assuming equal variances; with runs
over a handful of seeds that is the honest default. With fewer than three seeds per side
the test has almost no power, so the verdict says "too few seeds" instead of guessing.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Sequence

__all__ = ["MIN_SEEDS", "Comparison", "summarize", "welch"]

MIN_SEEDS = 3  # below this per variant, no verdict is given


@dataclasses.dataclass(frozen=True)
class Comparison:
    """Welch's t-test of a variant against the baseline."""

    diff: float  # mean(variant) - mean(baseline)
    t: float
    p: float  # two-sided p-value; nan when not computable
    significant: bool | None  # None: too few seeds for a verdict
    verdict: str


def summarize(values: Sequence[float]) -> tuple[float, float]:
    """Mean and sample standard deviation (0.0 for a single value)."""
    n = len(values)
    if n == 0:
        return math.nan, math.nan
    mean = sum(values) / n
    if n == 1:
        return mean, 0.0
    var = sum((v - mean) ** 2 for v in values) / (n - 1)
    return mean, math.sqrt(var)


def welch(
    variant: Sequence[float], baseline: Sequence[float], *, alpha: float = 0.05
) -> Comparison:
    """Two-sided Welch's t-test of ``variant`` against ``baseline`` at level ``alpha``."""
    from scipy import stats  # scipy's t distribution: no hand-rolled incomplete beta

    m1, s1 = summarize(variant)
    m0, s0 = summarize(baseline)
    diff = m1 - m0
    if min(len(variant), len(baseline)) < 2:
        return Comparison(diff, math.nan, math.nan, None, "too few seeds (need 2+)")
    if s1 == 0.0 and s0 == 0.0:
        same = diff == 0.0
        return Comparison(
            diff,
            math.nan,
            1.0 if same else 0.0,
            None if same else True,
            "identical" if same else "differs (no variance)",
        )
    result = stats.ttest_ind(list(variant), list(baseline), equal_var=False)
    t, p = float(result.statistic), float(result.pvalue)
    if min(len(variant), len(baseline)) < MIN_SEEDS:
        return Comparison(diff, t, p, None, f"p={p:.3f}, too few seeds for a verdict")
    significant = p < alpha
    word = "significant" if significant else "not significant"
    return Comparison(diff, t, p, significant, f"{word} (p={p:.3f})")
