"""The ablation statistics, checked against scipy and statsmodels on fixed inputs, and by
simulation (synthetic metric values, no training)."""

import math

import numpy as np
import pytest

from nnblocks.errors import SpecError
from nnblocks.experiment import omnibus
from nnblocks.experiment import stats as st

scipy_stats = pytest.importorskip("scipy.stats")
sm_multitest = pytest.importorskip("statsmodels.stats.multitest")
sm_power = pytest.importorskip("statsmodels.stats.power")
sm_meta = pytest.importorskip("statsmodels.stats.meta_analysis")

VARIANT = [0.912, 0.905, 0.921, 0.899, 0.917]
BASELINE = [0.901, 0.903, 0.908, 0.894, 0.902]
OTHER = [0.88, 0.93, 0.86, 0.91]


def test_paired_t_matches_scipy():
    c = st.paired(VARIANT, BASELINE)
    ref = scipy_stats.ttest_rel(VARIANT, BASELINE)
    assert c.test == "paired t" and c.n == 5
    assert c.t == pytest.approx(ref.statistic, rel=1e-12)
    assert c.p == pytest.approx(ref.pvalue, rel=1e-12)
    ci = ref.confidence_interval(0.95)
    assert c.ci == pytest.approx((ci.low, ci.high), rel=1e-10)
    d = np.subtract(VARIANT, BASELINE)
    assert c.diff == pytest.approx(d.mean())
    assert c.effect_name == "d_z" and c.effect == pytest.approx(d.mean() / d.std(ddof=1))
    assert c.wilcoxon_p == pytest.approx(scipy_stats.wilcoxon(d).pvalue)


def test_welch_matches_scipy_and_hedges_g_matches_statsmodels():
    c = st.welch(OTHER, BASELINE)
    ref = scipy_stats.ttest_ind(OTHER, BASELINE, equal_var=False)
    assert c.test == "Welch t"
    assert c.t == pytest.approx(ref.statistic, rel=1e-12)
    assert c.p == pytest.approx(ref.pvalue, rel=1e-12)
    ci = ref.confidence_interval(0.95)
    assert c.ci == pytest.approx((ci.low, ci.high), rel=1e-10)
    g, _ = sm_meta.effectsize_smd(
        np.mean(OTHER), np.std(OTHER, ddof=1), 4, np.mean(BASELINE), np.std(BASELINE, ddof=1), 5
    )
    assert c.effect_name == "g" and c.effect == pytest.approx(g, rel=1e-12)


@pytest.mark.parametrize(
    "method,sm_name",
    [("holm", "holm"), ("bonferroni", "bonferroni"), ("bh", "fdr_bh"), ("fdr", "fdr_bh")],
)
def test_adjustments_match_statsmodels(method, sm_name):
    for p in ([0.01, 0.04, 0.03, 0.20, 0.04], [0.001, 0.5, 0.049], [0.3], [0.02, 0.02, 0.9, 0.011]):
        ours = st.adjust_pvalues(p, method)
        ref = sm_multitest.multipletests(p, alpha=0.05, method=sm_name)[1]
        assert ours == pytest.approx(list(ref), rel=1e-12)
    assert st.adjust_pvalues([0.01, 0.2], "none") == [0.01, 0.2]
    with pytest.raises(SpecError, match="holm"):
        st.adjust_pvalues([0.1], "sidak-ish")


@pytest.mark.parametrize("n", [3, 5, 10])
def test_power_and_mdd_match_statsmodels(n):
    for effect in (0.5, 1.0, 2.0):
        ref = sm_power.TTestPower().power(effect_size=effect, nobs=n, alpha=0.05)
        assert st.power(effect, n) == pytest.approx(ref, rel=1e-6)
        ref_ind = sm_power.TTestIndPower().power(effect_size=effect, nobs1=n, alpha=0.05, ratio=1)
        assert st.power(effect, n, paired=False) == pytest.approx(ref_ind, rel=1e-6)
    sd = 0.013
    d_min = sm_power.TTestPower().solve_power(nobs=n, alpha=0.05, power=0.8)
    mdd = st.minimal_detectable_difference(sd / math.sqrt(n), n - 1, alpha=0.05, target_power=0.8)
    assert mdd == pytest.approx(d_min * sd, rel=1e-4)


def test_welch_mdd_matches_statsmodels_for_equal_groups():
    rng = np.random.default_rng(3)
    a = rng.normal(0, 1, 6)
    b = a[::-1] + 0.3  # the same spread, so Welch's df equals the pooled df (2n - 2)
    c = st.welch(list(a), list(b), target_power=0.9)
    sd = np.std(a, ddof=1)
    d_min = sm_power.TTestIndPower().solve_power(nobs1=6, alpha=0.05, power=0.9, ratio=1)
    assert c.mdd == pytest.approx(d_min * sd, rel=1e-4)


def test_bootstrap_interval_is_scipys_stratified_bootstrap():
    c = st.paired(VARIANT, BASELINE, seed=7)
    d = np.subtract(VARIANT, BASELINE)
    ref = scipy_stats.bootstrap(
        (d,), np.mean, n_resamples=st.N_BOOT, method="percentile", rng=np.random.default_rng(7)
    ).confidence_interval
    assert c.ci_boot == pytest.approx((ref.low, ref.high))
    # An independent plain resampling of the pairs agrees up to Monte-Carlo error.
    rng = np.random.default_rng(0)
    means = d[rng.integers(0, 5, (20000, 5))].mean(axis=1)
    low, high = np.percentile(means, [2.5, 97.5])
    width = high - low
    assert abs(c.ci_boot[0] - low) < 0.1 * width and abs(c.ci_boot[1] - high) < 0.1 * width
    # Unpaired: each side is resampled on its own (the variant is the stratum).
    w = st.welch(OTHER, BASELINE, seed=1)
    means = np.array(OTHER)[rng.integers(0, 4, (20000, 4))].mean(1) - np.array(BASELINE)[
        rng.integers(0, 5, (20000, 5))
    ].mean(1)
    low, high = np.percentile(means, [2.5, 97.5])
    assert abs(w.ci_boot[0] - low) < 0.1 * (high - low)
    assert abs(w.ci_boot[1] - high) < 0.1 * (high - low)


def test_compare_all_pairs_when_seeds_match_and_adjusts():
    base = dict(enumerate(BASELINE))
    better = {s: v + 0.02 + 0.001 * s for s, v in base.items()}
    noise = {s: v + (0.004 if s % 2 else -0.003) for s, v in base.items()}
    shuffled = dict(zip(range(10, 15), VARIANT))  # other seeds: cannot pair -> Welch
    out = st.compare_all([better, noise, shuffled], base)
    assert [c.test for c in out] == ["paired t", "paired t", "Welch t"]
    raw = [c.p for c in out]
    ref = sm_multitest.multipletests(raw, method="holm")[1]
    assert [c.p_adjusted for c in out] == pytest.approx(list(ref))
    assert [c.significant for c in out] == [p < 0.05 for p in ref]
    assert out[0].significant and "holm p=" in out[0].verdict
    # The MDD is stated at the level Holm leaves for the strictest test: alpha / 3.
    d = np.subtract(list(noise.values()), BASELINE)
    mdd = st.minimal_detectable_difference(d.std(ddof=1) / math.sqrt(5), 4, alpha=0.05 / 3)
    assert out[1].mdd == pytest.approx(mdd)


def test_adjusted_p_decides_the_verdict():
    base = {s: 0.0 for s in range(5)}
    # raw p = 0.03 and 0.04 pass at 0.05 alone, Holm makes both 0.06: not significant.
    variants = [_with_p(0.03), _with_p(0.04)]
    raw = [st.compare(v, base).p for v in variants]
    assert raw == pytest.approx([0.03, 0.04], abs=1e-6)
    assert all(st.compare(v, base).significant for v in variants)
    out = st.compare_all(variants, base)
    assert [c.significant for c in out] == [False, False]
    assert out[0].p_adjusted == pytest.approx(0.06, abs=1e-5)
    none = st.compare_all(variants, base, adjust="none")
    assert [c.significant for c in none] == [True, True]


def _with_p(p, n=5):
    """Paired values against zeros whose t-test gives two-sided p (values -t ... scaled)."""
    t = scipy_stats.t.isf(p / 2, n - 1)
    z = np.array([-2.0, -1.0, 0.0, 1.0, 2.0])  # mean 0, sd sqrt(2.5)
    values = z + t * math.sqrt(2.5) / math.sqrt(n)
    return dict(enumerate(values.tolist()))


def test_bad_input_is_reported_per_variant_not_computed():
    base = dict(enumerate(BASELINE))
    missing = {0: 0.9, 1: None, 2: 0.91, 3: 0.9, 4: 0.92}
    other_seeds = {s + 5: v for s, v in base.items()}
    few = {0: 0.9, 1: 0.91}
    out = st.compare_all(
        [missing, other_seeds, few, dict(enumerate(VARIANT))], base, pairing="paired"
    )
    assert "metric missing in seed(s) 1" in out[0].verdict and out[0].significant is None
    assert "cannot pair" in out[1].verdict and "5" in out[1].verdict
    assert "too few seeds (2, need 3+)" in out[2].verdict
    for c in out[:3]:
        assert math.isnan(c.p) and math.isnan(c.p_adjusted) and math.isnan(c.ci[0])
    assert out[3].test == "paired t"  # the one good variant is still tested (family of one)
    assert out[3].p_adjusted == pytest.approx(out[3].p)
    lacking = st.compare(dict(enumerate(VARIANT)), {**base, 2: None})
    assert "baseline lacks the metric in seed(s) 2" in lacking.verdict
    with pytest.raises(SpecError, match="pairing"):
        st.compare_all([base], base, pairing="sometimes")
    with pytest.raises(SpecError, match="alpha"):
        st.compare_all([base], base, alpha=1.5)


def test_no_spread_is_said_in_words():
    base = dict(enumerate([0.5] * 4))
    same = st.compare(base, base)
    shifted = st.compare({s: v + 0.1 for s, v in base.items()}, base)
    assert same.significant is None and "identical" in same.verdict
    assert "+0.1 on every seed" in shifted.verdict


# --- simulations (the done-when of issue 18) -----------------------------------------------

REPS = 200


def _simulate_identical(rng, n_variants=5, seeds=5):
    """Five variants that are the same part under five names: each seed moves every variant
    alike (initialisation, data order) plus run-to-run noise."""
    seed_effect = rng.normal(0.0, 1.0, seeds)
    runs = [seed_effect + rng.normal(0.0, 0.3, seeds) for _ in range(n_variants + 1)]
    base = dict(enumerate(runs[0].tolist()))
    return [dict(enumerate(r.tolist())) for r in runs[1:]], base


def test_five_identical_variants_are_rarely_called_significant():
    """Five variants that are the same part under five names: none significant in at least
    95% of 200 ablations (issue 18).

    Holm alone keeps the family-wise error at most 5% but, with the five tests sharing the
    baseline's runs, measures 4.8% over 3,000 ablations of this model: a 200-ablation
    sample of a correct 5% procedure falls below 95% clean about one time in three. The
    default closed test adds the all-variants repeated-measures F test as its first step
    (still at most 5% family-wise) and measures 1.5%, so the bar holds with a wide margin;
    the binomial check says the 200 ablations give no evidence the error exceeds 5%, while
    the uncorrected tests do.
    """
    rng = np.random.default_rng(2026)
    clean = raw_clean = 0
    for _ in range(REPS):
        variants, base = _simulate_identical(rng)
        clean += not any(c.significant for c in st.compare_all(variants, base, extras=False))
        raw = st.compare_all(variants, base, adjust="none", extras=False)
        raw_clean += not any(c.significant for c in raw)
    print(
        f"identical variants: no false positive in {clean}/{REPS} ablations (closed Holm), "
        f"{raw_clean}/{REPS} uncorrected"
    )
    assert clean >= 0.95 * REPS
    holm = scipy_stats.binomtest(REPS - clean, REPS, 0.05, alternative="greater")
    none = scipy_stats.binomtest(REPS - raw_clean, REPS, 0.05, alternative="greater")
    assert holm.pvalue > 0.01
    assert none.pvalue < 0.01 and raw_clean < clean


def test_repeated_measures_f_matches_statsmodels():
    sm_anova = pytest.importorskip("statsmodels.stats.anova")
    pd = pytest.importorskip("pandas")
    rng = np.random.default_rng(5)
    table = rng.normal(0, 1, (6, 1)) + rng.normal(0, 0.4, (6, 4))  # seeds x conditions
    table[:, 2] += 0.5
    frame = pd.DataFrame(
        [{"seed": s, "cond": c, "y": table[s, c]} for s in range(6) for c in range(4)]
    )
    ref = sm_anova.AnovaRM(frame, "y", "seed", within=["cond"]).fit().anova_table
    f, p = omnibus.repeated_measures_f(table)
    assert f == pytest.approx(ref["F Value"].iloc[0])
    assert p == pytest.approx(ref["Pr > F"].iloc[0])
    # Unpaired runs get the Alexander-Govern test over every group.
    groups = [dict(enumerate(rng.normal(m, 1, 5))) for m in (0.0, 0.0, 1.0)]
    p_ag, name = omnibus.omnibus_test(groups[1:], groups[0], paired=False)
    ref_ag = scipy_stats.alexandergovern(*[list(g.values()) for g in groups]).pvalue
    assert name == "Alexander-Govern" and p_ag == pytest.approx(ref_ag)


def test_omnibus_step_can_hold_back_a_holm_verdict():
    # One of five variants reaches Holm's bar by a hair while the family barely moves:
    # the all-variants F test does not reject, so the closed test gives no verdict of
    # difference; the Holm p itself is unchanged (the statsmodels value).
    rng = np.random.default_rng(3)
    for _ in range(2000):
        variants, base = _simulate_identical(rng)
        plain = st.compare_all(variants, base, extras=False, omnibus=False)
        if any(c.significant for c in plain):
            gated = st.compare_all(variants, base, extras=False)
            if not any(c.significant for c in gated):
                break
    else:
        pytest.fail("no ablation where the omnibus step held back a Holm verdict")
    assert [c.p_adjusted for c in gated] == [c.p_adjusted for c in plain]
    assert gated[0].omnibus_p >= 0.05 and gated[0].omnibus_test == "repeated-measures F"
    assert "all-variants repeated-measures F p=" in gated[0].verdict
    one = st.compare_all(variants[:1], base, extras=False)  # a family of one: no omnibus step
    assert math.isnan(one[0].omnibus_p)


def test_bit_identical_variants_are_never_significant():
    # The same part under five names with the same seeds trains to the same numbers.
    rng = np.random.default_rng(0)
    for _ in range(20):
        base = dict(enumerate(rng.normal(0.8, 0.05, 5).tolist()))
        out = st.compare_all([dict(base) for _ in range(5)], base)
        assert all(c.significant is None and "identical" in c.verdict for c in out)


@pytest.mark.parametrize("effect", [1.0, 2.0])
def test_detection_rate_agrees_with_analytic_power(effect):
    rng = np.random.default_rng(int(effect * 100) + 18)
    seeds, sd_d = 5, 0.01
    hits = 0
    for _ in range(REPS):
        baseline = rng.normal(0.8, 0.05, seeds)  # a large seed effect, removed by pairing
        variant = baseline + rng.normal(effect * sd_d, sd_d, seeds)
        (c,) = st.compare_all([dict(enumerate(variant))], dict(enumerate(baseline)), extras=False)
        assert c.test == "paired t"
        hits += bool(c.significant)
    rate = hits / REPS
    analytic = st.power(effect, seeds)
    print(f"effect {effect} SD, {seeds} seeds: detected {rate:.1%}, analytic power {analytic:.1%}")
    assert abs(rate - analytic) <= 0.05
