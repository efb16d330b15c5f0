"""Ablation: run a grid of recipe variants over several seeds and say which differences are real.

Each (variant, seed) run is a separate `nnblocks train` process writing its own run folder,
so runs can go in parallel (``jobs``) and an interrupted ablation resumes by skipping every
run whose ``metrics.json`` exists.
"""

from __future__ import annotations

import concurrent.futures
import dataclasses
import json
import logging
import os
import subprocess
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from nnblocks.errors import NNBlocksError, SpecError
from nnblocks.experiment.grid import Variant, expand_grid, parse_vary
from nnblocks.experiment.recipe import apply_overrides, load_recipe
from nnblocks.experiment.run import CheckedRecipe, check_recipe
from nnblocks.experiment.stats import MIN_SEEDS, welch
from nnblocks.experiment.table import Row, bar_chart, higher_is_better, to_csv, to_markdown

__all__ = ["AblationResult", "ablate", "pick_metric"]

log = logging.getLogger(__name__)


@dataclasses.dataclass
class AblationResult:
    """The table rows (baseline first), the compared metric and where files went."""

    rows: list[Row]
    metric: str
    folder: Path
    failed: list[str]
    warnings: list[str]


def _yaml_value(value: Any) -> str:
    return json.dumps(value) if not isinstance(value, str) else value


def _run_one(
    recipe_path: Path, overrides: Sequence[str], seed: int, folder: Path, threads: int
) -> str | None:
    """Train one run in a child process; returns an error text or None."""
    folder.mkdir(parents=True, exist_ok=True)
    cmd = [
        sys.executable,
        "-m",
        "nnblocks.cli",
        "train",
        str(recipe_path),
        "--seed",
        str(seed),
        "--out",
        str(folder),
        "--no-progress",
    ]
    if (folder / "checkpoints" / "last").is_dir():
        cmd.append("--resume")  # an interrupted run continues; a new one starts
    for o in overrides:
        cmd += ["--set", o]
    env = dict(os.environ, OMP_NUM_THREADS=str(threads), NNBLOCKS_PROGRESS="0")
    with open(folder / "log.txt", "w", encoding="utf-8") as logf:
        proc = subprocess.run(cmd, stdout=logf, stderr=subprocess.STDOUT, env=env, check=False)
    if proc.returncode != 0:
        tail = (folder / "log.txt").read_text(encoding="utf-8", errors="replace")[-800:]
        return f"{folder}: exit {proc.returncode}\n{tail}"
    return None


def pick_metric(metrics: dict[str, Any], recipe: dict[str, Any]) -> str:
    """The compared metric: train.monitor, else a test metric, else valid_loss."""
    monitor = (recipe.get("train") or {}).get("monitor")
    if monitor and monitor in metrics:
        return monitor
    for prefix in ("test_", "valid_"):
        # A language model is judged by perplexity (its token accuracy would sort first).
        if isinstance(metrics.get(f"{prefix}perplexity"), (int, float)):
            return f"{prefix}perplexity"
        for key in sorted(metrics):
            if (
                key.startswith(prefix)
                and not key.endswith("loss")
                and isinstance(metrics[key], (int, float))
            ):
                return key
    return "valid_loss"


def ablate(
    recipe_path: str | os.PathLike[str],
    vary: Sequence[str],
    *,
    seeds: int = 3,
    jobs: int = 1,
    folder: str | os.PathLike[str] | None = None,
    metric: str | None = None,
    overrides: Sequence[str] = (),
) -> AblationResult:
    """Run every variant of the grid with ``seeds`` seeds and compare them with the baseline.

    Args:
        recipe_path: the recipe YAML file.
        vary: ``"KEY=V1,V2"`` strings; the grid is their product, the first values the baseline.
        seeds: seeds per variant (the recipe's seed, +1, +2, ...).
        jobs: runs at a time (each gets ``cores // jobs`` threads).
        folder: where run folders and the table go (default ``runs/ablate-NAME``).
        metric: the compared metric (default: ``pick_metric``).
        overrides: ``KEY=VALUE`` applied to every variant.

    Returns:
        An AblationResult; also writes ``table.md``, ``table.csv``, ``chart.png`` and
        ``summary.json`` in ``folder``.

    Raises:
        SpecError: a varied key or value that does not fit the recipe (checked for every
            variant before any run starts), or ``seeds < 1``.
    """
    if seeds < 1 or jobs < 1:
        raise SpecError(f"seeds and jobs must be at least 1. Received: seeds={seeds}, jobs={jobs}")
    recipe_file = Path(recipe_path)
    base = load_recipe(recipe_file, overrides)
    variants = expand_grid([parse_vary(v) for v in vary]) if vary else [Variant(())]
    checked: CheckedRecipe | None = None
    for variant in variants:  # fail before training anything (models on meta: no memory)
        try:
            trial = apply_overrides(base, variant.overrides)
            data = (
                checked.data
                if checked and trial.get("data") == checked.recipe.get("data")
                else None
            )
            checked = check_recipe(trial, device="meta", data=data)
        except NNBlocksError as exc:
            raise SpecError(f"variant `{variant.label}` does not fit the recipe: {exc}") from exc
    out = Path(folder) if folder else Path("runs") / f"ablate-{base.get('name', recipe_file.stem)}"
    out.mkdir(parents=True, exist_ok=True)
    base_seed = int(base.get("seed", 0))
    threads = max(1, (os.cpu_count() or 1) // jobs)
    todo = []
    for variant in variants:
        for i in range(seeds):
            run_dir = out / variant.slug / f"seed-{base_seed + i}"
            if (run_dir / "metrics.json").exists():
                continue  # finished earlier: resume skips it
            sets = list(overrides) + [f"{k}={_yaml_value(v)}" for k, v in variant.overrides]
            todo.append((sets, base_seed + i, run_dir))
    log.info("%d variants x %d seeds: %d runs to do", len(variants), seeds, len(todo))
    failed: list[str] = []
    with concurrent.futures.ThreadPoolExecutor(max_workers=jobs) as pool:
        futures = [pool.submit(_run_one, recipe_file, sets, s, d, threads) for sets, s, d in todo]
        for fut in concurrent.futures.as_completed(futures):
            err = fut.result()
            if err:
                log.error("run failed: %s", err)
                failed.append(err)
    return summarize_ablation(out, base, variants, seeds, metric=metric, failed=failed)


def summarize_ablation(
    out: Path,
    base: dict[str, Any],
    variants: Sequence[Variant],
    seeds: int,
    *,
    metric: str | None = None,
    failed: list[str] | None = None,
) -> AblationResult:
    """Read the finished runs, compare with the baseline, write the table and the chart."""
    base_seed = int(base.get("seed", 0))
    results: list[list[dict[str, Any]]] = []
    for variant in variants:
        runs = []
        for i in range(seeds):
            path = out / variant.slug / f"seed-{base_seed + i}" / "metrics.json"
            if path.exists():
                runs.append(json.loads(path.read_text(encoding="utf-8")))
        results.append(runs)
    first = next((r[0] for r in results if r), None)
    if first is None:
        raise NNBlocksError(
            f"no run of the ablation in {out} finished; see the log.txt files there"
        )
    metric = metric or pick_metric(first, base)
    warnings = []
    if seeds < MIN_SEEDS:
        warnings.append(
            f"{seeds} seed(s) per variant: too few for a significance verdict (need {MIN_SEEDS}+)."
        )
    rows: list[Row] = []
    baseline_values = [float(m[metric]) for m in results[0] if m.get(metric) is not None]
    for variant, runs in zip(variants, results):
        values = [float(m[metric]) for m in runs if m.get(metric) is not None]
        row = Row(
            label=variant.label,
            values=values,
            params=runs[0].get("params") if runs else None,
            step_time=_mean([m.get("step_time") for m in runs]),
            peak_memory_mb=_mean([m.get("peak_memory_mb") for m in runs]),
        )
        if rows and values and baseline_values:  # the first variant is the baseline
            row.comparison = welch(values, baseline_values)
        rows.append(row)
    finished = [r for r in rows if r.values]
    if finished:
        pick = max if higher_is_better(metric) else min
        pick(finished, key=lambda r: r.mean).best = True
    title = f"ablation of {base.get('name', 'recipe')}: {metric}, Welch's t-test vs baseline"
    (out / "table.md").write_text(f"## {title}\n\n" + to_markdown(rows, metric), encoding="utf-8")
    (out / "table.csv").write_text(to_csv(rows, metric), encoding="utf-8")
    bar_chart(rows, metric, out / "chart.png", title=f"{base.get('name', 'recipe')}: {metric}")
    summary = {
        "metric": metric,
        "test": "Welch's t-test, two-sided, alpha=0.05",
        "warnings": warnings,
        "rows": [
            {
                "variant": r.label,
                "values": r.values,
                "mean": r.mean,
                "std": r.std,
                "params": r.params,
                "step_time": r.step_time,
                "peak_memory_mb": r.peak_memory_mb,
                "best": r.best,
                "p_value": None if r.comparison is None else r.comparison.p,
                "verdict": "baseline" if r.comparison is None else r.comparison.verdict,
            }
            for r in rows
        ],
        "failed": failed or [],
    }
    (out / "summary.json").write_text(json.dumps(summary, indent=2, default=str), encoding="utf-8")
    return AblationResult(rows, metric, out, failed or [], warnings)


def _mean(values: list[Any]) -> float | None:
    nums = [float(v) for v in values if isinstance(v, (int, float))]
    return sum(nums) / len(nums) if nums else None
