"""Is a difference between a variant and the baseline real? Tests, intervals, power.

What runs, and why:

- **Paired** when the variant ran with seeds the baseline also ran (the default grid: every
  variant uses the baseline's seeds, so seed ``s`` has the same initialisation and data
  order in both). The per-seed differences remove the seed's own effect, which is usually
  the largest source of spread (Bouthillier et al. 2021, "Accounting for Variance in Machine
  Learning Benchmarks"). Paired t-test on the differences, with the Wilcoxon signed-rank
  test beside it as a check that does not assume normality (with 5 pairs its smallest
  two-sided p is 0.0625, so it is a check, never the verdict).
- **Welch's t-test** (Welch 1947) when the runs cannot be paired: no equal-variance
  assumption.
- **Many variants**: the p-values of one ablation are adjusted together (Holm 1979 by
  default; Bonferroni, Benjamini-Hochberg or none on request) and the adjusted value
  decides the verdict, so five variants do not find a "significant" difference by chance in
  a fifth of all ablations. With Holm or Bonferroni and two or more variants, an omnibus
  test of all of them is the closed test's first step (``omnibus.py``): a variant is
  significant when its adjusted p and the omnibus p are both below alpha (its closed-test
  p is ``max(p_adjusted, omnibus_p)``), still at most alpha family-wise.
- **Intervals and effect sizes**: a t interval of the difference, a percentile bootstrap
  interval beside it (resampling the pairs, or each side separately when unpaired: the
  stratified bootstrap of Agarwal et al. 2021, `rliable`, with the variant as stratum), and
  a standardised effect size (Cohen's d_z for pairs, Hedges' g otherwise).
- **Power**: the minimal detectable difference (MDD), the smallest true difference the
  observed spread and seed count detect with the chosen power at the level the correction
  leaves for one test, from the noncentral t distribution.

Every statistic is computed with scipy's distributions (no hand-rolled incomplete beta).
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from nnblocks.errors import SpecError
from nnblocks.experiment.omnibus import omnibus_test

__all__ = [
    "ADJUSTMENTS",
    "MIN_SEEDS",
    "Comparison",
    "adjust_pvalues",
    "compare",
    "compare_all",
    "minimal_detectable_difference",
    "paired",
    "power",
    "summarize",
    "welch",
]

MIN_SEEDS = 3  # below this per variant (pairs when paired), no verdict is given
ADJUSTMENTS = ("holm", "bonferroni", "bh", "fdr", "none")
N_BOOT = 2000  # bootstrap resamples; the interval's Monte-Carlo error is ~1% of its width


@dataclasses.dataclass(frozen=True)
class Comparison:
    """One variant against the baseline. Numbers are nan where they could not be computed
    (``problem`` then says why, and ``significant`` is None)."""

    diff: float  # mean(variant) - mean(baseline); paired: mean of per-seed differences
    test: str  # "paired t", "Welch t", or "-" when no test ran
    n: int  # pairs (paired) or the smaller group size (Welch)
    t: float = math.nan
    p: float = math.nan  # raw two-sided p-value
    p_adjusted: float = math.nan  # after the correction across variants; decides the verdict
    wilcoxon_p: float = math.nan  # paired only: Wilcoxon signed-rank, two-sided
    ci: tuple[float, float] = (math.nan, math.nan)  # t interval of diff at 1 - alpha
    ci_boot: tuple[float, float] = (math.nan, math.nan)  # percentile bootstrap interval
    effect: float = math.nan  # Cohen's d_z (paired) or Hedges' g (Welch)
    effect_name: str = ""
    mdd: float = math.nan  # minimal detectable difference at (level, power)
    significant: bool | None = None  # None: no verdict (too few seeds, bad input)
    problem: str = ""  # why no verdict was given, in words
    adjustment: str = "none"
    alpha: float = 0.05
    omnibus_p: float = math.nan  # the closed test's first step (see omnibus.py), if it ran
    omnibus_test: str = ""

    @property
    def verdict(self) -> str:
        if self.problem:
            return self.problem
        p = self.p_adjusted if not math.isnan(self.p_adjusted) else self.p
        name = "p" if self.adjustment == "none" else f"{self.adjustment} p"
        why = f"{name}={p:.3g}"
        if not math.isnan(self.omnibus_p):
            why += f"; all-variants {self.omnibus_test} p={self.omnibus_p:.3g}"
        return f"{'significant' if self.significant else 'not significant'} ({why})"


def summarize(values: Sequence[float]) -> tuple[float, float]:
    """Mean and sample standard deviation (0.0 for a single value, nan for none)."""
    n = len(values)
    if n == 0:
        return math.nan, math.nan
    mean = sum(values) / n
    if n == 1:
        return mean, 0.0
    var = sum((v - mean) ** 2 for v in values) / (n - 1)
    return mean, math.sqrt(var)


def power(effect: float, n: int, *, alpha: float = 0.05, paired: bool = True) -> float:
    """Power of the two-sided t-test for a standardised effect.

    Args:
        effect: true difference / standard deviation (of the differences when paired, of
            each group when unpaired with equal groups).
        n: pairs (paired) or runs per group (unpaired, equal groups).
        alpha: the test's level.
        paired: one-sample test on differences (df n-1, noncentrality effect*sqrt(n)) or
            two equal groups (df 2n-2, noncentrality effect*sqrt(n/2)).

    Returns:
        The probability that the test rejects, P(|T| > t_crit) under the noncentral t.
    """

    df = n - 1 if paired else 2 * n - 2
    return _two_sided_power(effect * math.sqrt(n if paired else n / 2), df, alpha)


def _power_se(delta: float, se: float, df: float, alpha: float) -> float:
    return _two_sided_power(delta / se, df, alpha)


def _two_sided_power(nc: float, df: float, alpha: float) -> float:
    from scipy import stats

    crit = stats.t.ppf(1 - alpha / 2, df)
    # P(T < -c | nc) is computed as P(T > c | -nc): scipy's nct.cdf far in the lower tail
    # can return nan (seen with df=2, nc=8), its sf there is a clean 0.
    return float(stats.nct.sf(crit, df, nc) + stats.nct.sf(crit, df, -nc))


def minimal_detectable_difference(
    se: float, df: float, *, alpha: float = 0.05, target_power: float = 0.8
) -> float:
    """The true difference a two-sided t-test with standard error ``se`` and ``df`` degrees
    of freedom detects with probability ``target_power`` at level ``alpha``.

    Solves power(delta) = target with the noncentral t (Cohen 1988, ch. 2), so it agrees
    with ``statsmodels.stats.power.TTestPower.solve_power`` times the standard deviation.
    """
    from scipy import optimize

    if not (se > 0 and df > 0) or math.isnan(se):
        return math.nan
    hi = se
    while _power_se(hi, se, df, alpha) < target_power:  # bracket the root
        hi *= 2
    return float(optimize.brentq(lambda d: _power_se(d, se, df, alpha) - target_power, 0.0, hi))


def _bootstrap(samples: tuple[np.ndarray, ...], paired: bool, alpha: float, seed: int) -> tuple:
    from scipy import stats

    def diff_of_means(*xs: np.ndarray, axis: int = -1) -> np.ndarray:
        if len(xs) == 1:
            return np.mean(xs[0], axis=axis)
        return np.mean(xs[0], axis=axis) - np.mean(xs[1], axis=axis)

    result = stats.bootstrap(
        samples,
        diff_of_means,
        n_resamples=N_BOOT,
        confidence_level=1 - alpha,
        method="percentile",  # BCa is unstable with 3-5 values; percentile as in rliable
        paired=paired,
        vectorized=True,
        rng=np.random.default_rng(seed),
    )
    return (float(result.confidence_interval.low), float(result.confidence_interval.high))


def paired(
    variant: Sequence[float],
    baseline: Sequence[float],
    *,
    alpha: float = 0.05,
    target_power: float = 0.8,
    mdd_alpha: float | None = None,
    seed: int = 0,
    extras: bool = True,
) -> Comparison:
    """Paired comparison of ``variant[i]`` with ``baseline[i]`` (the same seed ``i``).

    Args:
        variant, baseline: metric values, one per seed, in the same seed order.
        alpha: the level of the test and of the intervals (1 - alpha).
        target_power: the power at which the minimal detectable difference is stated.
        mdd_alpha: the per-test level the MDD assumes (default ``alpha``; a correction
            across variants makes it smaller).
        seed: the bootstrap's random seed (results are reproducible).
        extras: compute the bootstrap interval, the Wilcoxon check and the MDD (the slow
            parts; simulations of the verdict turn them off, it does not depend on them).

    Returns:
        A Comparison with test "paired t" (verdict from the raw p until ``compare_all``
        adjusts it).
    """
    from scipy import stats

    if len(variant) != len(baseline):
        raise ValueError("paired samples must have the same length")  # internal invariant
    d = np.asarray(variant, dtype=float) - np.asarray(baseline, dtype=float)
    n = len(d)
    mean = float(d.mean()) if n else math.nan
    if n < MIN_SEEDS:
        return Comparison(mean, "-", n, problem=f"too few seeds ({n}, need {MIN_SEEDS}+)")
    sd = float(d.std(ddof=1))
    if sd == 0.0:  # every seed moved by the same amount: no spread to test against
        same = mean == 0.0
        return Comparison(
            mean,
            "-",
            n,
            ci=(mean, mean),
            ci_boot=(mean, mean),
            problem=(
                "identical on every seed" if same else f"differs by {mean:+.4g} on every seed"
            ),
        )
    se = sd / math.sqrt(n)
    res = stats.ttest_rel(variant, baseline)
    low, high = stats.t.interval(1 - alpha, n - 1, loc=mean, scale=se)
    wil = math.nan
    if extras:
        with np.errstate(all="ignore"):
            wil = float(stats.wilcoxon(d).pvalue) if np.any(d != 0) else 1.0
    p = float(res.pvalue)
    return Comparison(
        diff=mean,
        test="paired t",
        n=n,
        t=float(res.statistic),
        p=p,
        p_adjusted=p,
        wilcoxon_p=wil,
        ci=(float(low), float(high)),
        ci_boot=_bootstrap((d,), True, alpha, seed) if extras else (math.nan, math.nan),
        effect=mean / sd,  # Cohen's d_z: the mean difference in units of its own spread
        effect_name="d_z",
        mdd=minimal_detectable_difference(
            se, n - 1, alpha=mdd_alpha or alpha, target_power=target_power
        )
        if extras
        else math.nan,
        significant=p < alpha,
        alpha=alpha,
    )


def welch(
    variant: Sequence[float],
    baseline: Sequence[float],
    *,
    alpha: float = 0.05,
    target_power: float = 0.8,
    mdd_alpha: float | None = None,
    seed: int = 0,
    extras: bool = True,
) -> Comparison:
    """Two-sided Welch's t-test of ``variant`` against ``baseline`` (unpaired runs).

    Args and Returns: as ``paired``; the effect size is Hedges' g (the pooled-SD
    standardised difference with the small-sample correction J = 1 - 3 / (4N - 9)).
    """
    from scipy import stats

    m1, s1 = summarize(variant)
    m0, s0 = summarize(baseline)
    diff = m1 - m0
    n1, n0 = len(variant), len(baseline)
    n = min(n1, n0)
    if n < MIN_SEEDS:
        return Comparison(diff, "-", n, problem=f"too few seeds ({n}, need {MIN_SEEDS}+)")
    if s1 == 0.0 and s0 == 0.0:
        same = diff == 0.0
        return Comparison(
            diff, "-", n, problem="identical" if same else f"differs by {diff:+.4g}, no spread"
        )
    res = stats.ttest_ind(variant, baseline, equal_var=False)
    v1, v0 = s1**2 / n1, s0**2 / n0
    se = math.sqrt(v1 + v0)
    df = (v1 + v0) ** 2 / (v1**2 / (n1 - 1) + v0**2 / (n0 - 1))  # Welch-Satterthwaite
    low, high = stats.t.interval(1 - alpha, df, loc=diff, scale=se)
    pooled = math.sqrt(((n1 - 1) * s1**2 + (n0 - 1) * s0**2) / (n1 + n0 - 2))
    p = float(res.pvalue)
    return Comparison(
        diff=diff,
        test="Welch t",
        n=n,
        t=float(res.statistic),
        p=p,
        p_adjusted=p,
        ci=(float(low), float(high)),
        ci_boot=_bootstrap(
            (np.asarray(variant, float), np.asarray(baseline, float)), False, alpha, seed
        )
        if extras
        else (math.nan, math.nan),
        effect=(1 - 3 / (4 * (n1 + n0) - 9)) * diff / pooled,  # Hedges' g
        effect_name="g",
        mdd=minimal_detectable_difference(
            se, df, alpha=mdd_alpha or alpha, target_power=target_power
        )
        if extras
        else math.nan,
        significant=p < alpha,
        alpha=alpha,
    )


def adjust_pvalues(pvalues: Sequence[float], method: str = "holm") -> list[float]:
    """Adjusted p-values for a family of tests (the same values statsmodels'
    ``multipletests`` returns): Holm's step-down (1979), Bonferroni, Benjamini-Hochberg
    step-up ("bh" or "fdr", 1995), or "none".

    Raises:
        SpecError: an unknown method.
    """
    if method not in ADJUSTMENTS:
        raise SpecError(
            f"expected an adjustment in {list(ADJUSTMENTS)}. Received: {method!r}",
            path="adjust",
        )
    p = np.asarray(pvalues, dtype=float)
    m = len(p)
    if m == 0 or method == "none":
        return [float(v) for v in p]
    if method == "bonferroni":
        return [float(v) for v in np.minimum(1.0, p * m)]
    order = np.argsort(p, kind="stable")
    ranked = p[order]
    if method == "holm":  # step-down: the i-th smallest (0-based) times (m - i), made monotone
        adj = np.maximum.accumulate(np.minimum(1.0, ranked * (m - np.arange(m))))
    else:  # BH step-up: the i-th smallest times m / (i + 1), monotone from the top
        adj = np.minimum.accumulate((ranked * m / np.arange(1, m + 1))[::-1])[::-1]
        adj = np.minimum(1.0, adj)
    out = np.empty(m)
    out[order] = adj
    return [float(v) for v in out]


def _per_test_alpha(alpha: float, method: str, m: int) -> float:
    # The level the strictest step of the correction leaves for one test: what the MDD uses.
    return alpha / m if method in ("holm", "bonferroni") and m > 1 else alpha


def compare(
    variant: Mapping[Any, float | None],
    baseline: Mapping[Any, float | None],
    *,
    pairing: str = "auto",
    alpha: float = 0.05,
    target_power: float = 0.8,
    mdd_alpha: float | None = None,
    seed: int = 0,
    extras: bool = True,
) -> Comparison:
    """Compare runs keyed by seed; ``None`` marks a run that lacks the metric.

    Args:
        variant, baseline: ``{seed: value or None}``.
        pairing: "auto" (paired when every variant seed also ran for the baseline),
            "paired" (refuse when it cannot pair), or "unpaired" (Welch).
        alpha, target_power, mdd_alpha, seed, extras: as ``paired``.

    Returns:
        A Comparison; bad input (missing metric, different seed sets under "paired", too few
        seeds) gives one with ``problem`` set and no numbers that could mislead.
    """
    if pairing not in ("auto", "paired", "unpaired"):
        raise SpecError(
            f"expected pairing auto, paired or unpaired. Received: {pairing!r}", path="pairing"
        )
    missing = sorted(str(s) for s, v in variant.items() if v is None)
    if missing:
        return Comparison(
            math.nan, "-", 0, problem=f"metric missing in seed(s) {', '.join(missing)}"
        )
    lacking = sorted(str(s) for s in variant if s in baseline and baseline[s] is None)
    if lacking:
        return Comparison(
            math.nan, "-", 0, problem=f"baseline lacks the metric in seed(s) {', '.join(lacking)}"
        )
    base = _present(baseline)
    options: dict[str, Any] = {
        "alpha": alpha,
        "target_power": target_power,
        "mdd_alpha": mdd_alpha,
        "seed": seed,
        "extras": extras,
    }
    can_pair = bool(variant) and set(variant) <= set(base)
    if pairing == "paired" and not can_pair:
        extra = sorted(str(s) for s in set(variant) - set(base))
        return Comparison(
            math.nan,
            "-",
            0,
            problem=f"cannot pair: the baseline has no run for seed(s) {', '.join(extra)}",
        )
    if pairing != "unpaired" and can_pair:
        seeds = sorted(variant)
        return paired(
            [float(variant[s]) for s in seeds],  # type: ignore[arg-type]
            [float(base[s]) for s in seeds],
            **options,
        )
    return welch([float(v) for v in variant.values()], list(base.values()), **options)  # type: ignore[arg-type]


def compare_all(
    variants: Sequence[Mapping[Any, float | None]],
    baseline: Mapping[Any, float | None],
    *,
    adjust: str = "holm",
    pairing: str = "auto",
    alpha: float = 0.05,
    target_power: float = 0.8,
    extras: bool = True,
    omnibus: bool = True,
) -> list[Comparison]:
    """Compare every variant with the baseline and adjust the p-values across them.

    Args:
        variants: ``{seed: value}`` for each non-baseline variant.
        baseline: ``{seed: value}`` of the baseline.
        adjust: "holm" (default), "bonferroni", "bh"/"fdr" or "none".
        pairing, alpha, target_power, extras: as ``compare``.
        omnibus: with "holm" or "bonferroni" and two or more tested variants, make an
            omnibus test of all of them the closed test's first step (``omnibus.py``).

    Returns:
        One Comparison per variant; ``significant`` is ``p_adjusted < alpha`` and, where the
        omnibus test ran, ``omnibus_p < alpha``.

    Raises:
        SpecError: an unknown ``adjust`` or ``pairing``, or ``alpha``/``target_power``
            outside (0, 1).
    """
    for name, value in (("alpha", alpha), ("power", target_power)):
        if not 0 < value < 1:
            raise SpecError(f"expected a number in (0, 1). Received: {name}={value!r}", path=name)
    adjust_pvalues([], adjust)  # validates the method before any work
    level = _per_test_alpha(alpha, adjust, len(variants))
    raw = [
        compare(
            v,
            baseline,
            pairing=pairing,
            alpha=alpha,
            target_power=target_power,
            mdd_alpha=level,
            seed=i,
            extras=extras,
        )
        for i, v in enumerate(variants)
    ]
    tested = [i for i, c in enumerate(raw) if not c.problem]
    adjusted = adjust_pvalues([raw[i].p for i in tested], adjust)
    gate_p, gate = math.nan, ""
    if omnibus and adjust in ("holm", "bonferroni") and len(tested) > 1:
        gate_p, gate = omnibus_test(
            [_present(variants[i]) for i in tested],
            _present(baseline),
            paired=all(raw[i].test == "paired t" for i in tested),
        )
    gate_open = math.isnan(gate_p) or gate_p < alpha
    out = list(raw)
    for i, p_adj in zip(tested, adjusted):
        out[i] = dataclasses.replace(
            raw[i],
            p_adjusted=p_adj,
            significant=gate_open and p_adj < alpha,
            adjustment=adjust,
            omnibus_p=gate_p,
            omnibus_test=gate,
        )
    return out


def _present(runs: Mapping[Any, float | None]) -> dict[Any, float]:
    return {s: float(v) for s, v in runs.items() if v is not None}
