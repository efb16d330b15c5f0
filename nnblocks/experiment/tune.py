"""Automatic search of architecture and training settings with Optuna.

The study lives in a database (SQLite in the output folder by default), so a killed search
resumes where it stopped, and several workers on several machines can share one study
through a database server (``storage="postgresql://..."``). Poor trials are pruned from
their per-epoch validation metric (median pruner).
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import logging
import os
import warnings
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from nnblocks.errors import NNBlocksError, SpecError
from nnblocks.experiment.fingerprint import recipe_fingerprint
from nnblocks.experiment.recipe import apply_overrides, dump_recipe, load_recipe
from nnblocks.experiment.run import check_recipe, run_recipe
from nnblocks.experiment.seeds import seed_values
from nnblocks.experiment.space import Dimension, parse_space
from nnblocks.experiment.storage import database_url
from nnblocks.experiment.table import higher_is_better
from nnblocks.train.interrupt import TrainingInterrupted

__all__ = ["TuneResult", "tune"]

log = logging.getLogger(__name__)


@dataclasses.dataclass
class TuneResult:
    best_value: float
    best_params: dict[str, Any]
    best_recipe: Path
    folder: Path
    n_complete: int
    n_pruned: int
    study: Any


def _optuna() -> Any:
    try:
        import optuna
    except ImportError as exc:
        raise NNBlocksError("`nnblocks tune` needs Optuna: pip install 'nnblocks[search]'") from exc
    return optuna


def _reporter(trial: Any, metric: str) -> Any:
    """A Learner callback that reports the metric each epoch and stops a pruned trial."""
    from nnblocks.train import Callback, CancelFit

    class OptunaReporter(Callback):
        order = 75  # after metrics are in the epoch's history, before checkpoints

        def __init__(self) -> None:
            self.pruned = False

        def after_epoch(self, learn: Any) -> None:
            row = learn.history[-1] if learn.history else {}
            if metric not in row:
                raise SpecError(
                    f"cannot report `{metric}` to the study: the epoch's history has {sorted(row)}",
                    path="tune.metric",
                )
            trial.report(float(row[metric]), step=learn.epoch)
            if trial.should_prune():
                self.pruned = True
                raise CancelFit

    return OptunaReporter()


def _storage(optuna: Any, url: str) -> Any:
    """An RDBStorage for ``url``; an unreachable database fails before any trial.

    Raises:
        SpecError: the URL cannot be parsed or the database cannot be reached.
    """
    import sqlalchemy

    try:
        return _rdb(optuna, database_url(url))
    except (sqlalchemy.exc.SQLAlchemyError, ImportError, ValueError) as exc:
        raise SpecError(
            "cannot open the study database. Expected a reachable SQLAlchemy database URL. "
            f"Received: {url!r} ({type(exc).__name__}: {str(exc).splitlines()[0]})",
            path="--storage",
        ) from exc


def _rdb(optuna: Any, url: str) -> Any:
    # Heartbeats let a resumed study retry trials whose worker was killed mid-trial.
    import optuna.storages as storages

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        if hasattr(storages, "RetryHeartbeatStaleTrialCallback"):  # optuna >= 4.9
            return storages.RDBStorage(
                url,
                heartbeat_interval=30,
                grace_period=90,
                heartbeat_stale_trial_callback=storages.RetryHeartbeatStaleTrialCallback(
                    max_retry=1
                ),
            )
        return storages.RDBStorage(
            url,
            heartbeat_interval=30,
            grace_period=90,
            failed_trial_callback=storages.RetryFailedTrialCallback(max_retry=1),
        )


def tune(
    recipe_path: str | os.PathLike[str],
    trials: int,
    *,
    storage: str | None = None,
    study_name: str | None = None,
    folder: str | os.PathLike[str] | None = None,
    overrides: Sequence[str] = (),
    timeout: float | None = None,
    progress: bool = False,
    overwrite: bool = False,
) -> TuneResult:
    """Search the recipe's `tune.space` until the study holds ``trials`` finished trials.

    Args:
        recipe_path: a recipe with a `tune:` section (see ``nnblocks.experiment.space``).
        trials: finished (complete or pruned) trials the study should hold; a resumed
            study runs only the missing ones.
        storage: an Optuna storage URL; default ``sqlite:///FOLDER/study.db``.
        study_name: default: the recipe's name.
        folder: output folder (trial run folders, best recipe, plots); default
            ``runs/tune-NAME``.
        overrides: ``KEY=VALUE`` applied before sampling.
        timeout: stop starting new trials after this many seconds.
        overwrite: delete an existing study of this name made from another recipe or
            search space, instead of refusing.

    Returns:
        A TuneResult; writes ``best_recipe.yaml``, ``history.png`` and ``importance.png``.

    Raises:
        SpecError: an empty or malformed search space, a searched key that does not fit
            the recipe (checked with each dimension's first value before any training), or
            an existing study of this name made from another recipe or search space.
    """
    optuna = _optuna()
    recipe = load_recipe(recipe_path, overrides)
    dims = parse_space(recipe)
    _check_dimensions(recipe, dims)
    metric, direction = _metric_direction(recipe)
    name = study_name or str(recipe.get("name", Path(recipe_path).stem))
    out = Path(folder) if folder else Path("runs") / f"tune-{name}"
    out.mkdir(parents=True, exist_ok=True)
    url = storage or f"sqlite:///{(out / 'study.db').resolve()}"
    study = _open_study(
        optuna, recipe, url, name, direction, overwrite=overwrite, shared=storage is not None
    )

    interrupted: list[TrainingInterrupted] = []
    objective = _objective(optuna, recipe, dims, metric, out, progress, interrupted)

    finished = _finished(study, optuna)
    remaining = max(0, trials - finished)
    log.info("study %s: %d finished, running %d more", name, finished, remaining)
    if remaining:
        # Workers sharing one study stop together once it holds `trials` finished trials
        # (each worker's own count would overshoot by the others' trials).
        states = (optuna.trial.TrialState.COMPLETE, optuna.trial.TrialState.PRUNED)
        stop = optuna.study.MaxTrialsCallback(trials, states=states)
        study.optimize(
            objective, n_trials=remaining, timeout=timeout, catch=(NNBlocksError,), callbacks=[stop]
        )
    if interrupted:
        raise interrupted[0]
    return _report(study, optuna, recipe, dims, out)


def _objective(
    optuna: Any,
    recipe: dict[str, Any],
    dims: Sequence[Dimension],
    metric: str,
    out: Path,
    progress: bool,
    interrupted: list[TrainingInterrupted],
) -> Callable[[Any], float]:
    """The study's objective: one trial trains the sampled recipe and returns its `metric`.

    A Ctrl-C / SIGTERM inside a trial is kept in ``interrupted`` and stops the whole study.
    """

    def objective(trial: Any) -> float:
        values = [(d.key, d.sample(trial)) for d in dims]
        trial_recipe = apply_overrides(recipe, values)
        trial_recipe.pop("tune", None)
        reporter = _reporter(trial, metric)
        try:
            result = run_recipe(
                trial_recipe,
                out / f"trial-{trial.number:04d}",
                progress=progress,
                extra_callbacks=[reporter],
            )
        except TrainingInterrupted as exc:  # Ctrl-C / SIGTERM stops the study, not one trial
            interrupted.append(exc)
            trial.study.stop()
            raise
        if reporter.pruned:
            raise optuna.TrialPruned()
        value = result.metrics.get(metric)
        if value is None:
            raise SpecError(
                f"the run has no `{metric}`; it has {sorted(result.metrics)}", path="tune.metric"
            )
        return float(value)

    return objective


def _metric_direction(recipe: dict[str, Any]) -> tuple[str, str]:
    """`tune.metric` (default train.monitor, else valid_loss) and its direction."""
    tune_cfg = recipe.get("tune") or {}
    metric = tune_cfg.get("metric") or (recipe.get("train") or {}).get("monitor") or "valid_loss"
    default = "maximize" if higher_is_better(metric) else "minimize"
    return metric, tune_cfg.get("direction") or default


def _open_study(
    optuna: Any,
    recipe: dict[str, Any],
    url: str,
    name: str,
    direction: str,
    *,
    overwrite: bool,
    shared: bool,
) -> Any:
    """Create or load the study, checking that it was made from this recipe and space."""
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    rdb = _storage(optuna, url)
    if overwrite:
        _delete_study(optuna, rdb, name)
    study = optuna.create_study(
        study_name=name,
        storage=rdb,
        direction=direction,
        load_if_exists=True,
        pruner=optuna.pruners.MedianPruner(n_startup_trials=2, n_warmup_steps=1),
    )
    _check_same_study(study, recipe, name)
    # The sampler's seed: the recipe's, moved on by the trials already there (a resumed study
    # does not replay its first suggestions) and, for a shared storage, by the process id,
    # so workers that start together do not all suggest the same parameters.
    seed = seed_values(recipe.get("seed", 0))["init"] + len(study.trials)
    study.sampler = optuna.samplers.TPESampler(seed=seed + (os.getpid() if shared else 0))
    return study


def _fingerprints(recipe: dict[str, Any]) -> tuple[str, str]:
    """The fingerprint of the recipe without its `tune` section, and of the search space."""
    plain = {k: v for k, v in recipe.items() if k != "tune"}
    space = dict(recipe.get("tune") or {})
    return recipe_fingerprint(plain), json.dumps(space, sort_keys=True, default=str)


def _check_same_study(study: Any, recipe: dict[str, Any], name: str) -> None:
    """A study is resumed only with the recipe and search space it was made from."""
    asked, space = _fingerprints(recipe)
    attrs = study.user_attrs
    if "nnblocks_recipe" not in attrs:
        if study.trials:  # made before fingerprints were recorded: cannot tell
            raise SpecError(
                f"study `{name}` holds {len(study.trials)} trial(s) but no record of the recipe "
                "it was made from. Expected a study made by this version. Use a new --study or "
                "--out, or --overwrite to replace it",
                path="--study",
            )
        study.set_user_attr("nnblocks_recipe", asked)
        study.set_user_attr("nnblocks_space", space)
        return
    if attrs.get("nnblocks_space") != space:
        raise SpecError(
            f"the search space of study `{name}` changed. Expected the space it was made with: "
            f"{attrs.get('nnblocks_space')}. Received: {space}. Use a new --study or --out, or "
            "--overwrite to replace the study",
            path="tune.space",
        )
    if attrs["nnblocks_recipe"] != asked:
        raise SpecError(
            f"study `{name}` was made from a different recipe (or plugin code); its trials "
            "would be counted as runs of this one. Use a new --study or --out, or --overwrite "
            "to replace the study",
            path="--study",
        )


def _delete_study(optuna: Any, storage: Any, name: str) -> None:
    with contextlib.suppress(KeyError):  # no such study yet
        optuna.delete_study(study_name=name, storage=storage)


def _check_dimensions(recipe: dict[str, Any], dims: Sequence[Dimension]) -> None:
    probe = []
    for d in dims:
        if d.choices is not None:
            probe.append((d.key, d.choices[0]))
        else:
            probe.append((d.key, int(d.low) if d.kind == "int" else float(d.low)))  # type: ignore[arg-type]
    trial_recipe = apply_overrides(recipe, probe)
    trial_recipe.pop("tune", None)
    first = check_recipe(trial_recipe, device="meta")
    for d in dims:  # every categorical choice must build too (models on meta: no memory)
        if d.choices is not None:
            for choice in d.choices[1:]:
                variant = apply_overrides(trial_recipe, [(d.key, choice)])
                same = variant.get("data") == first.recipe.get("data")
                check_recipe(variant, device="meta", data=first.data if same else None)


def _finished(study: Any, optuna: Any) -> int:
    states = (optuna.trial.TrialState.COMPLETE, optuna.trial.TrialState.PRUNED)
    return len(study.get_trials(deepcopy=False, states=states))


def _report(
    study: Any, optuna: Any, recipe: dict[str, Any], dims: Sequence[Dimension], out: Path
) -> TuneResult:
    complete = study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.COMPLETE,))
    pruned = study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.PRUNED,))
    if not complete:
        raise NNBlocksError(f"no trial of study `{study.study_name}` completed; see {out}")
    best = study.best_trial
    params = {k: Dimension.decode(v) for k, v in best.params.items()}
    best_recipe = apply_overrides(recipe, list(params.items()))
    best_recipe.pop("tune", None)
    path = out / "best_recipe.yaml"
    header = f"# best of {len(complete)} complete trials: {study.best_value}\n"
    path.write_text(header + dump_recipe(best_recipe), encoding="utf-8")
    _plots(study, optuna, out, enough=len(complete) >= 2 and len(dims) >= 1)
    return TuneResult(float(study.best_value), params, path, out, len(complete), len(pruned), study)


def _plots(study: Any, optuna: Any, out: Path, *, enough: bool) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from optuna.visualization import matplotlib as ovm

    with warnings.catch_warnings():  # Optuna marks its matplotlib plots experimental
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        _save(plt, ovm.plot_optimization_history(study), out / "history.png")
        if enough:
            try:
                _save(plt, ovm.plot_param_importances(study), out / "importance.png")
            except (RuntimeError, ValueError) as exc:  # e.g. all trials share one value
                log.warning("no parameter-importance plot: %s", exc)


def _save(plt: Any, ax: Any, path: Path) -> None:
    figure = ax.get_figure()
    figure.savefig(path, dpi=110, bbox_inches="tight")
    plt.close(figure)
