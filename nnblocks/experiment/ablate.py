"""Ablation: run a grid of recipe variants over several seeds and say which differences are real.

Each (variant, seed) run is a separate `nnblocks train` process writing its own run folder.
The runs are rows of a run table (``nnblocks.experiment.storage``; an SQLite file in the
ablation folder by default, any database URL with ``storage=``), so runs go in parallel
(``jobs`` threads, or many worker processes on many machines sharing one database), an
interrupted ablation resumes, and a run is reused only when its recorded fingerprint (a hash
of the whole resolved recipe and the plugins' code) equals the one asked for.

``seeds="auto"`` adds seeds to the variants not yet significant (an interval straddling zero,
or a verdict the correction held back), at a few planned looks up to ``max_seeds``; each
look tests at ``alpha / K`` for K planned looks (a Bonferroni bound over the looks, which
keeps the chance of any false positive across all looks at most alpha; cf. Armitage,
McPherson & Rowe 1969 for how repeated looks without it inflate the error, and Pocock 1977
for a less conservative group-sequential boundary).
"""

from __future__ import annotations

import concurrent.futures
import dataclasses
import functools
import json
import logging
import math
import os
import shutil
import socket
import subprocess
import sys
import threading
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from nnblocks.errors import NNBlocksError, SpecError
from nnblocks.experiment.fingerprint import recipe_fingerprint
from nnblocks.experiment.grid import Variant, expand_grid, parse_vary
from nnblocks.experiment.recipe import apply_overrides, load_recipe
from nnblocks.experiment.run import CheckedRecipe, check_recipe
from nnblocks.experiment.seeds import SEED_NAMES, seed_values, shift_seed
from nnblocks.experiment.stats import MIN_SEEDS, compare_all
from nnblocks.experiment.storage import RunStore, open_store
from nnblocks.experiment.table import Row, bar_chart, higher_is_better, to_csv, to_markdown

__all__ = ["AblationResult", "StatOptions", "ablate", "pick_metric", "summarize_ablation"]

log = logging.getLogger(__name__)


@dataclasses.dataclass
class AblationResult:
    """The table rows (baseline first), the compared metric and where files went."""

    rows: list[Row]
    metric: str
    folder: Path
    failed: list[str]
    warnings: list[str]


@dataclasses.dataclass(frozen=True)
class Cell:
    """One run of the grid: a variant at one seed, and the fingerprint it must match."""

    variant: int  # index into the grid (0 = baseline)
    seed: int  # the varied seed's number: the folder is VARIANT/seed-N
    sets: tuple[str, ...]  # --set overrides for `nnblocks train`
    folder: Path
    fingerprint: str

    @property
    def key(self) -> str:
        return f"{self.folder.parent.name}/{self.folder.name}"


def _yaml_value(value: Any) -> str:
    return json.dumps(value) if not isinstance(value, str) else value


def _child_dies_with_parent() -> None:  # pragma: no cover - runs in the child
    # Linux: a worker killed with SIGKILL takes its training child with it, so a run that is
    # claimed again never races an orphan writing the same folder.
    try:
        import ctypes
        import signal

        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG
    except (OSError, AttributeError):
        pass


def _run_one(
    recipe_path: Path,
    cell: Cell,
    threads: int,
    on_beat: Any = None,
    every: float = 10.0,
) -> str | None:
    """Train one run in a child process (calling ``on_beat`` every ``every`` seconds while
    it trains; it returns False when the claim was lost); returns an error text or None."""
    folder = cell.folder
    folder.mkdir(parents=True, exist_ok=True)
    cmd = [sys.executable, "-m", "nnblocks.cli", "train", str(recipe_path), "--out", str(folder)]
    cmd.append("--no-progress")
    if (folder / "checkpoints" / "last").exists():  # a run claimed again continues
        cmd.append("--resume")
    for o in cell.sets:
        cmd += ["--set", o]
    env = dict(os.environ, OMP_NUM_THREADS=str(threads), NNBLOCKS_PROGRESS="0")
    linux = sys.platform.startswith("linux")
    with open(folder / "log.txt", "a", encoding="utf-8") as logf:
        proc = subprocess.Popen(
            cmd,
            stdout=logf,
            stderr=subprocess.STDOUT,
            env=env,
            preexec_fn=_child_dies_with_parent if linux else None,  # noqa: PLW1509
        )
        while True:
            try:
                proc.wait(timeout=every)
                break
            except subprocess.TimeoutExpired:
                if on_beat is not None and on_beat() is False:
                    proc.kill()
                    proc.wait()
                    return f"{folder}: claimed by another worker after a missed heartbeat"
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


@dataclasses.dataclass
class _Plan:
    """What every cell of the grid is: recipe, variants, seeds, folders, fingerprints."""

    recipe_file: Path
    base: dict[str, Any]
    variants: list[Variant]
    overrides: tuple[str, ...]
    vary_seed: str
    out: Path

    @property
    def first_seed(self) -> int:
        values = seed_values(self.base.get("seed", 0))
        return values["init" if self.vary_seed == "all" else self.vary_seed]

    def cell(self, variant: int, seed: int) -> Cell:
        v = self.variants[variant]
        value = shift_seed(self.base.get("seed", 0), seed - self.first_seed, self.vary_seed)
        resolved = apply_overrides(self.base, [*v.overrides, ("seed", value)])
        sets = [*self.overrides, *(f"{k}={_yaml_value(x)}" for k, x in v.overrides)]
        sets.append(f"seed={json.dumps(value)}")
        folder = self.out / v.slug / f"seed-{seed}"
        return Cell(variant, seed, tuple(sets), folder, recipe_fingerprint(resolved))

    def cells(self, seeds: Sequence[Sequence[int]]) -> list[Cell]:
        return [self.cell(i, s) for i, vs in enumerate(seeds) for s in vs]


def _register(store: RunStore, cells: Sequence[Cell], overwrite: bool) -> None:
    """Add the cells to the run table; refuse (or with ``overwrite`` replace) runs that were
    made from a different recipe into the same folder."""
    rows = [(c.key, c.fingerprint, {"folder": str(c.folder)}) for c in cells]
    conflicts = store.add(rows)
    stale = [c for c in cells if not _folder_matches(c)]  # folders from before the table
    keys = sorted(set(conflicts) | {c.key for c in stale})
    if keys and not overwrite:
        raise SpecError(
            f"{len(keys)} run(s) in {cells[0].folder.parent.parent} were made from a different "
            f"recipe (or before fingerprints were recorded), e.g. {', '.join(keys[:3])}. "
            "Expected the same resolved recipe and plugin code to reuse them. Ablate into a "
            "new --out, or pass --overwrite to replace them",
            path="--out",
        )
    if keys:
        log.warning("--overwrite: replacing %d run(s) made from another recipe", len(keys))
        store.remove(keys)
        for c in cells:
            if c.key in keys and c.folder.exists():
                shutil.rmtree(c.folder)
        store.add(rows)
    for c in cells:  # the folder records which recipe it holds
        c.folder.mkdir(parents=True, exist_ok=True)
        (c.folder / "fingerprint.txt").write_text(c.fingerprint + "\n", encoding="utf-8")


def _folder_matches(cell: Cell) -> bool:
    """A run folder that exists holds this cell's recipe (or nothing yet)."""
    mark = cell.folder / "fingerprint.txt"
    if mark.exists():
        return mark.read_text(encoding="utf-8").strip() == cell.fingerprint
    return (
        not (cell.folder / "metrics.json").exists() and not (cell.folder / "recipe.yaml").exists()
    )


def _work(
    store: RunStore,
    plan: _Plan,
    cells: Sequence[Cell],
    jobs: int,
    heartbeat: float,
) -> list[str]:
    """Claim and train runs among ``cells`` with ``jobs`` threads until all are settled;
    returns the error texts of runs that failed here."""
    by_key = {c.key: c for c in cells}
    keys = list(by_key)
    threads = max(1, (os.cpu_count() or 1) // jobs)
    failed: list[str] = []

    def loop(slot: int) -> None:
        worker = f"{socket.gethostname()}:{os.getpid()}:{slot}"
        while True:
            claim = store.claim(worker, keys)
            if claim is None:
                if store.settled(keys):
                    return
                threading.Event().wait(heartbeat)  # others hold the rest; one may go stale
                continue
            cell = by_key[claim.cell]
            err = _run_one(
                plan.recipe_file,
                cell,
                threads,
                on_beat=functools.partial(store.heartbeat, cell.key, worker),
                every=heartbeat,
            )
            metrics_file = cell.folder / "metrics.json"
            if err is None and metrics_file.exists():
                store.finish(cell.key, worker, json.loads(metrics_file.read_text("utf-8")))
            else:
                err = err or f"{cell.folder}: finished without metrics.json"
                log.error("run failed: %s", err)
                failed.append(err)
                store.finish(cell.key, worker, None, error=err)

    with concurrent.futures.ThreadPoolExecutor(max_workers=jobs) as pool:
        for fut in [pool.submit(loop, i) for i in range(jobs)]:
            fut.result()
    return failed


def _looks(max_seeds: int) -> list[int]:
    """Planned seed counts of ``--seeds auto``: MIN_SEEDS, then up to three more looks."""
    if max_seeds <= MIN_SEEDS:
        return [max_seeds]
    step = max(1, math.ceil((max_seeds - MIN_SEEDS) / 3))
    return sorted({*range(MIN_SEEDS, max_seeds, step), max_seeds})


def ablate(
    recipe_path: str | os.PathLike[str],
    vary: Sequence[str],
    *,
    seeds: int | str = 3,
    max_seeds: int = 10,
    jobs: int = 1,
    folder: str | os.PathLike[str] | None = None,
    metric: str | None = None,
    overrides: Sequence[str] = (),
    options: StatOptions | None = None,
    vary_seed: str = "all",
    storage: str | None = None,
    overwrite: bool = False,
    heartbeat: float = 10.0,
) -> AblationResult:
    """Run every variant of the grid over seeds and compare each with the baseline.

    Args:
        recipe_path: the recipe YAML file.
        vary: ``"KEY=V1,V2"`` strings; the grid is their product, the first values the baseline.
        seeds: seeds per variant (the recipe's seed, +1, +2, ...), or ``"auto"``: start with
            MIN_SEEDS and add seeds to undecided variants at planned looks up to ``max_seeds``.
        max_seeds: the budget per variant of ``seeds="auto"``.
        jobs: runs at a time in this process (each gets ``cores // jobs`` threads).
        folder: where run folders and the table go (default ``runs/ablate-NAME``).
        metric: the compared metric (default: ``pick_metric``).
        overrides: ``KEY=VALUE`` applied to every variant.
        options: the statistics (adjustment, pairing, level, power); see ``StatOptions``.
        vary_seed: which seed changes from run to run: ``"all"`` (default), or one named
            seed (``"init"``, ``"data"``, ``"dropout"``) with the others held fixed.
        storage: a database URL for the run table (default: SQLite in ``folder``); workers
            on other machines run the same command with the same URL to share the grid.
        overwrite: replace runs in ``folder`` that were made from a different recipe.
        heartbeat: seconds between a worker's heartbeats; a run whose worker missed
            twelve of them is claimed again.

    Returns:
        An AblationResult; also writes ``table.md``, ``table.csv``, ``chart.png`` and
        ``summary.json`` in ``folder``.

    Raises:
        SpecError: a varied key or value that does not fit the recipe (checked for every
            variant before any run starts), bad counts, a folder holding runs of another
            recipe (without ``overwrite``), or an unreachable ``storage``.
    """
    options = _check_arguments(seeds, max_seeds, jobs, heartbeat, vary_seed, options)
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
    plan = _Plan(recipe_file, base, variants, tuple(overrides), vary_seed, out.absolute())
    url = storage or f"sqlite:///{(out / 'runs.db').resolve()}"
    store = open_store(url, out.absolute().name, timeout=12 * heartbeat)
    looks = _looks(max_seeds) if seeds == "auto" else [int(seeds)]
    return _run_looks(plan, store, looks, options, jobs, heartbeat, metric, overwrite)


def _check_arguments(
    seeds: int | str,
    max_seeds: int,
    jobs: int,
    heartbeat: float,
    vary_seed: str,
    options: StatOptions | None,
) -> StatOptions:
    """Every argument of ``ablate`` checked before any run starts; returns the options."""
    auto = seeds == "auto"
    if not auto and (not isinstance(seeds, int) or isinstance(seeds, bool) or seeds < 1):
        raise SpecError(
            f"expected a positive number of seeds or 'auto'. Received: seeds={seeds!r}",
            path="--seeds",
        )
    if jobs < 1 or (auto and max_seeds < MIN_SEEDS) or heartbeat <= 0:
        raise SpecError(
            f"expected jobs >= 1, max_seeds >= {MIN_SEEDS} and heartbeat > 0. Received: "
            f"jobs={jobs}, max_seeds={max_seeds}, heartbeat={heartbeat}",
            path="--jobs/--max-seeds/--heartbeat",
        )
    if vary_seed != "all" and vary_seed not in SEED_NAMES:
        raise SpecError(
            f"expected all or one of {', '.join(SEED_NAMES)}. Received: {vary_seed!r}",
            path="--vary-seed",
        )
    options = options or StatOptions()
    compare_all(
        [],
        {},
        adjust=options.adjust,
        pairing=options.pairing,
        alpha=options.alpha,
        target_power=options.power,
        omnibus=options.omnibus,
    )  # validates the options up front
    return options


def _run_looks(
    plan: _Plan,
    store: RunStore,
    looks: list[int],
    options: StatOptions,
    jobs: int,
    heartbeat: float,
    metric: str | None,
    overwrite: bool,
) -> AblationResult:
    """Run the grid at each planned look (one look for a fixed seed count), growing the
    undecided variants' seeds, and return the last look's result."""
    level = options.alpha / len(looks)  # Bonferroni over the planned looks
    look_options = dataclasses.replace(options, alpha=level)
    first = plan.first_seed
    counts = [looks[0]] * len(plan.variants)
    failed: list[str] = []
    notes = []
    if len(looks) > 1:
        notes.append(
            f"--seeds auto: looks at {looks} seeds; each tests at alpha/{len(looks)}="
            f"{level:.4g} (Bonferroni over looks), intervals at {100 * (1 - level):.4g}%"
        )
    for look in range(len(looks)):
        seed_lists = [list(range(first, first + c)) for c in counts]
        cells = plan.cells(seed_lists)
        _register(store, cells, overwrite)
        log.info("look %d: %d runs of %d variants", look + 1, len(cells), len(plan.variants))
        failed += _work(store, plan, cells, jobs, heartbeat)
        result = _summarize_from_store(store, plan, seed_lists, metric, failed, look_options, notes)
        if look + 1 == len(looks):
            return result
        grow = [i for i, r in enumerate(result.rows) if i and _undecided(r)]
        if not grow:
            return result
        nxt = looks[look + 1]
        for i in grow:
            counts[i] = nxt
        counts[0] = max(counts)  # the baseline runs every seed a variant runs: pairs stay
    raise AssertionError("unreachable")  # pragma: no cover


def _undecided(row: Row) -> bool:
    # Not yet significant: the interval straddles zero, or it does not but the correction
    # or the all-variants test held the verdict back (more seeds can settle both).
    c = row.comparison
    return c is not None and (
        c.problem.startswith("too few") or (not c.problem and not c.significant)
    )


def _summarize_from_store(
    store: RunStore,
    plan: _Plan,
    seed_lists: list[list[int]],
    metric: str | None,
    failed: list[str],
    options: StatOptions,
    notes: Sequence[str],
) -> AblationResult:
    rows = store.rows()
    results = []
    for i, seeds in enumerate(seed_lists):
        runs = {}
        for s in seeds:
            row = rows.get(plan.cell(i, s).key)
            runs[s] = row["metrics"] if row and row["state"] == "done" else None
        results.append(runs)
    errors = [r["error"] for r in rows.values() if r["state"] == "failed" and r["error"]]
    return summarize_ablation(
        plan.out,
        plan.base,
        plan.variants,
        seed_lists,
        metric=metric,
        failed=sorted(set(failed) | set(errors)),
        options=options,
        results=results,
        notes=notes,
    )


@dataclasses.dataclass(frozen=True)
class StatOptions:
    """How variants are compared (see ``nnblocks.experiment.stats``)."""

    adjust: str = "holm"  # holm, bonferroni, bh/fdr, none: across the variants of one ablation
    pairing: str = "auto"  # auto (paired when seeds match), paired, unpaired
    alpha: float = 0.05
    power: float = 0.8  # the power at which the minimal detectable difference is stated
    omnibus: bool = True  # the all-variants test as the closed test's first step (holm/bonferroni)


def read_runs(out: Path, variants: Sequence[Variant], seeds: Sequence[Sequence[int]]) -> list:
    """``[{seed: metrics dict or None}]`` per variant, from the run folders' metrics.json."""
    results = []
    for variant, vseeds in zip(variants, seeds):
        runs: dict[int, dict[str, Any] | None] = {}
        for s in vseeds:
            path = out / variant.slug / f"seed-{s}" / "metrics.json"
            runs[s] = json.loads(path.read_text(encoding="utf-8")) if path.exists() else None
        results.append(runs)
    return results


def _values(runs: dict[int, Any], metric: str) -> dict[int, float | None]:
    """Finished runs' metric by seed; None where a finished run lacks it."""
    out: dict[int, float | None] = {}
    for s, m in runs.items():
        if m is not None:
            value = m.get(metric)
            out[s] = float(value) if isinstance(value, (int, float)) else None
    return out


def summarize_ablation(
    out: Path,
    base: dict[str, Any],
    variants: Sequence[Variant],
    seeds: int | Sequence[Sequence[int]],
    *,
    metric: str | None = None,
    failed: list[str] | None = None,
    options: StatOptions | None = None,
    results: list[dict[int, Any]] | None = None,
    notes: Sequence[str] = (),
) -> AblationResult:
    """Compare every variant with the baseline, write the table, the chart and a summary.

    Args:
        out: the ablation folder (tables are written there).
        base: the recipe (for its name and seed).
        variants: the grid, baseline first.
        seeds: seeds per variant (the recipe's seed, +1, ...) or the seed list of each.
        metric: the compared metric (default ``pick_metric``).
        failed: failed runs' messages, reported beside the table.
        options: the statistics' settings.
        results: ``[{seed: metrics or None}]`` per variant (default: read the run folders).
        notes: more lines for the summary (e.g. the looks of ``--seeds auto``).
    """
    options = options or StatOptions()
    if isinstance(seeds, int):
        first_seed = seed_values(base.get("seed", 0))["init"]
        seeds = [list(range(first_seed, first_seed + seeds))] * len(variants)
    results = results if results is not None else read_runs(out, variants, seeds)
    first = next((m for r in results for m in r.values() if m is not None), None)
    if first is None:
        raise NNBlocksError(
            f"no run of the ablation in {out} finished; see the log.txt files there"
        )
    metric = metric or pick_metric(first, base)
    per_variant = [_values(r, metric) for r in results]
    warnings = list(notes)
    if min(len(v) for v in seeds) < MIN_SEEDS:
        warnings.append(
            f"{min(len(v) for v in seeds)} seed(s) per variant: too few for a significance "
            f"verdict (need {MIN_SEEDS}+)."
        )
    comparisons = compare_all(
        per_variant[1:],
        per_variant[0],
        adjust=options.adjust,
        pairing=options.pairing,
        alpha=options.alpha,
        target_power=options.power,
        omnibus=options.omnibus,
    )
    rows: list[Row] = []
    for i, (variant, runs, values) in enumerate(zip(variants, results, per_variant)):
        done = [m for m in runs.values() if m is not None]
        row = Row(
            label=variant.label,
            values=[v for v in values.values() if v is not None],
            seeds=[s for s, v in values.items() if v is not None],
            params=done[0].get("params") if done else None,
            step_time=_mean([m.get("step_time") for m in done]),
            peak_memory_mb=_mean([m.get("peak_memory_mb") for m in done]),
            comparison=comparisons[i - 1] if i else None,
        )
        lacking = sorted(s for s, v in values.items() if v is None)
        if i == 0 and lacking:
            row.problem = f"baseline: metric missing in seed(s) {', '.join(map(str, lacking))}"
        rows.append(row)
    finished = [r for r in rows if r.values]
    if finished:
        pick = max if higher_is_better(metric) else min
        pick(finished, key=lambda r: r.mean).best = True
    _write_outputs(out, base, rows, metric, options, warnings, failed or [])
    return AblationResult(rows, metric, out, failed or [], warnings)


def describe_test(options: StatOptions) -> str:
    """One line that says which tests ran and how the verdict was reached."""
    adjust = {
        "holm": "Holm",
        "bonferroni": "Bonferroni",
        "bh": "Benjamini-Hochberg",
        "fdr": "Benjamini-Hochberg",
        "none": "no",
    }[options.adjust]
    closed = (
        "; with 2+ variants, a closed test whose first step is an all-variants test "
        "(repeated-measures F when paired, Alexander-Govern otherwise) that must reject too"
        if options.omnibus and options.adjust in ("holm", "bonferroni")
        else ""
    )
    return (
        f"paired t-test where variant and baseline share seeds (Wilcoxon signed-rank beside "
        f"it), Welch's t-test otherwise; two-sided, alpha={options.alpha}, {adjust} "
        f"adjustment across variants{closed}; 95% CIs (t and percentile bootstrap); MDD at "
        f"power {options.power}"
    )


def _write_outputs(
    out: Path,
    base: dict[str, Any],
    rows: list[Row],
    metric: str,
    options: StatOptions,
    warnings: list[str],
    failed: list[str],
) -> None:
    name = base.get("name", "recipe")
    test = describe_test(options)
    text = f"## ablation of {name}: {metric}\n\n{test}.\n\n" + to_markdown(rows, metric)
    (out / "table.md").write_text(text, encoding="utf-8")
    (out / "table.csv").write_text(to_csv(rows, metric), encoding="utf-8")
    bar_chart(rows, metric, out / "chart.png", title=f"{name}: {metric}")
    summary = {
        "metric": metric,
        "test": test,
        "options": dataclasses.asdict(options),
        "warnings": warnings,
        "rows": [
            {
                "variant": r.label,
                "seeds": r.seeds,
                "values": r.values,
                "mean": r.mean,
                "std": r.std,
                "params": r.params,
                "step_time": r.step_time,
                "peak_memory_mb": r.peak_memory_mb,
                "best": r.best,
                "comparison": None if r.comparison is None else dataclasses.asdict(r.comparison),
                "p_value": None if r.comparison is None else r.comparison.p,
                "verdict": r.problem or "baseline"
                if r.comparison is None
                else r.comparison.verdict,
            }
            for r in rows
        ],
        "failed": failed,
    }
    (out / "summary.json").write_text(json.dumps(summary, indent=2, default=str), encoding="utf-8")


def _mean(values: list[Any]) -> float | None:
    nums = [float(v) for v in values if isinstance(v, (int, float))]
    return sum(nums) / len(nums) if nums else None
