"""The grid, the statistics and the table of an ablation (no training here)."""

import json

import pytest

from nnblocks.errors import SpecError
from nnblocks.experiment.ablate import summarize_ablation
from nnblocks.experiment.grid import expand_grid, parse_vary
from nnblocks.experiment.stats import summarize, welch
from nnblocks.experiment.table import higher_is_better


def test_parse_vary_reads_values_as_yaml():
    assert parse_vary("model.norm=layer,rms") == ("model.norm", ["layer", "rms"])
    assert parse_vary("train.lr=1e-3,3e-3") == ("train.lr", [0.001, 0.003])
    assert parse_vary("model.hidden=[[8],[16, 16]]") == ("model.hidden", [[8], [16, 16]])
    with pytest.raises(SpecError):
        parse_vary("model.norm")


def test_grid_is_the_product_with_the_baseline_first():
    grid = expand_grid([("a", [1, 2]), ("b", ["x", "y", "z"])])
    assert len(grid) == 6
    assert grid[0].overrides == (("a", 1), ("b", "x"))
    assert len({v.slug for v in grid}) == 6
    with pytest.raises(SpecError, match="twice"):
        expand_grid([("a", [1]), ("a", [2])])


def test_summary_statistics():
    mean, std = summarize([1.0, 2.0, 3.0])
    assert mean == 2.0 and std == pytest.approx(1.0)


def test_welch_separates_clear_differences_and_not_noise():
    clear = welch([0.90, 0.91, 0.92, 0.905], [0.80, 0.81, 0.79, 0.805])
    assert clear.significant is True and clear.p < 0.001
    noise = welch([0.80, 0.82, 0.79, 0.81], [0.81, 0.80, 0.82, 0.79])
    assert noise.significant is False
    few = welch([0.9, 0.91], [0.8, 0.81])
    assert few.significant is None and "too few" in few.verdict


def test_direction_of_metrics():
    assert higher_is_better("test_exact_match")
    assert not higher_is_better("valid_loss")
    assert not higher_is_better("perplexity")


def _fake_runs(folder, label_values):
    from nnblocks.experiment.grid import Variant

    variants = []
    for key_value, values in label_values:
        variant = Variant((("model.norm", key_value),))
        variants.append(variant)
        for seed, v in enumerate(values):
            run = folder / variant.slug / f"seed-{seed}"
            run.mkdir(parents=True)
            metrics = {
                "test_accuracy": v,
                "valid_loss": 1 - v,
                "params": 100,
                "step_time": 0.01,
                "peak_memory_mb": 300.0,
            }
            (run / "metrics.json").write_text(json.dumps(metrics))
    return variants


def test_summarize_marks_best_and_writes_files(tmp_path):
    variants = _fake_runs(tmp_path, [("layer", [0.80, 0.81, 0.79]), ("rms", [0.90, 0.91, 0.92])])
    result = summarize_ablation(tmp_path, {"name": "t", "seed": 0}, variants, 3)
    assert result.metric == "test_accuracy"
    assert [r.best for r in result.rows] == [False, True]
    assert result.rows[0].comparison is None  # the baseline
    assert result.rows[1].comparison.significant is True
    for name in ("table.md", "table.csv", "chart.png", "summary.json"):
        assert (tmp_path / name).stat().st_size > 0
    table = (tmp_path / "table.md").read_text()
    assert "norm=rms" in table and "significant" in table


def test_summarize_warns_when_seeds_are_too_few(tmp_path):
    variants = _fake_runs(tmp_path, [("layer", [0.8, 0.81]), ("rms", [0.9, 0.91])])
    result = summarize_ablation(tmp_path, {"name": "t", "seed": 0}, variants, 2)
    assert result.warnings and "too few" in result.warnings[0]
    assert result.rows[1].comparison.significant is None
