"""One test of "every variant is the same as the baseline": the first step of the closed
test that decides an ablation's verdicts.

Holm's procedure is the closed test whose local test of every intersection of hypotheses
is Bonferroni's (Marcus, Peritz & Gabriel 1976). Rejecting the intersection of all of them
only when an omnibus test rejects it too keeps every local test at level alpha, so the
family-wise error stays at most alpha whatever the omnibus test assumes; what it gains is
that five variants that are the same part under five names are far less often called
different (the variants' differences share the baseline's runs, so their tests move
together; the omnibus test looks at that spread once). A variant's closed-test adjusted p
is then ``max(holm_p, omnibus_p)``.

- **Paired** (every compared variant ran the same seeds as the baseline): the
  repeated-measures ANOVA F test with seeds as blocks (the same F statsmodels' ``AnovaRM``
  gives), over the seeds that every compared variant and the baseline share.
- **Unpaired**: the Alexander-Govern test (scipy), which, like Welch's t-test, does not
  assume equal variances.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

__all__ = ["omnibus_test", "repeated_measures_f"]

MIN_BLOCKS = 3  # seeds shared by every compared variant; fewer gives no omnibus test


def repeated_measures_f(table: np.ndarray) -> tuple[float, float]:
    """``(F, p)`` of the one-way repeated-measures ANOVA of ``table`` (seeds x conditions).

    With no residual spread (every seed moved each condition by the same amount), p is 0
    when the conditions differ and 1 when they do not.
    """
    from scipy import stats

    n, k = table.shape
    grand = table.mean()
    ss_conditions = n * float(((table.mean(axis=0) - grand) ** 2).sum())
    ss_seeds = k * float(((table.mean(axis=1) - grand) ** 2).sum())
    ss_error = float(((table - grand) ** 2).sum()) - ss_conditions - ss_seeds
    df1, df2 = k - 1, (k - 1) * (n - 1)
    if ss_error <= 1e-12 * max(ss_conditions + ss_seeds, 1e-300):
        return (math.inf, 0.0) if ss_conditions > 0 else (0.0, 1.0)
    f = (ss_conditions / df1) / (ss_error / df2)
    return f, float(stats.f.sf(f, df1, df2))


def omnibus_test(
    variants: Sequence[Mapping[Any, float]], baseline: Mapping[Any, float], *, paired: bool
) -> tuple[float, str]:
    """``(p, name)`` of the omnibus test that baseline and ``variants`` are all alike.

    Args:
        variants: ``{seed: value}`` of each compared variant (values present, not None).
        baseline: ``{seed: value}`` of the baseline.
        paired: seeds are blocks (repeated-measures F) rather than independent runs.

    Returns:
        The p-value and the test's name; ``(nan, "")`` where no omnibus test can run (fewer
        than ``MIN_BLOCKS`` shared seeds, or no spread at all in the unpaired case): the
        verdicts then rest on the correction alone.
    """
    from scipy import stats

    if paired:
        shared = set(baseline).intersection(*(set(v) for v in variants))
        seeds = sorted(shared, key=str)
        if len(seeds) < MIN_BLOCKS:
            return math.nan, ""
        table = np.array([[float(run[s]) for run in (baseline, *variants)] for s in seeds])
        return repeated_measures_f(table)[1], "repeated-measures F"
    groups = [np.asarray(list(run.values()), dtype=float) for run in (baseline, *variants)]
    if any(len(g) < 2 or float(g.std()) == 0.0 for g in groups):
        return math.nan, ""
    return float(stats.alexandergovern(*groups).pvalue), "Alexander-Govern"
