"""Run one recipe: build data and model, train with the Learner, evaluate, write a run folder.

A run folder holds everything needed to trust and repeat the result::

    recipe.yaml       the resolved recipe (overrides applied)
    environment.json  versions, device, threads, seed, determinism
    history.csv       one row per epoch
    metrics.json      final metrics, parameter count, step time, peak memory (written last)
    loss_curves.png   training and validation loss
    tensorboard/      TensorBoard event files (with `train.tensorboard: true`)
    model/            nnblocks.save(model): config.json + model.safetensors + data.json
                      (+ tokenizer.json) + README.md + manifest.json
    continual/        what a `continual:` run keeps for the next task's `--from`
    checkpoints/      training checkpoints (best/last), for `--resume`
"""

from __future__ import annotations

import dataclasses
import importlib.util
import json
import logging
import math
import os
import resource
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch

from nnblocks.data.paths import data_root
from nnblocks.errors import CheckpointError, SpecError
from nnblocks.experiment.continue_run import Previous, continue_model, previous_run
from nnblocks.experiment.environment import (
    describe_environment,
    seed_after_build,
    seed_everything,
)
from nnblocks.experiment.folder import claim_folder
from nnblocks.experiment.model_source import FROM_KEY, build_recipe_model, is_from_checkpoint
from nnblocks.experiment.recipe import Recipe, dump_recipe, validate_recipe
from nnblocks.experiment.seeds import seed_values
from nnblocks.registry import build
from nnblocks.spec import spec_path
from nnblocks.train.callback import Callback
from nnblocks.train.continual import continual_callbacks
from nnblocks.train.continual import save_state as save_continual_state
from nnblocks.train.distributed import is_main
from nnblocks.train.fsdp import gathered_model

__all__ = [
    "CheckedRecipe",
    "RunResult",
    "run_recipe",
    "check_recipe",
    "build_from_recipe",
    "default_run_dir",
    "TENSORBOARD_DIR",
]

log = logging.getLogger(__name__)

# The run folder's subfolder for TensorBoard event files (`tensorboard --logdir` it).
TENSORBOARD_DIR = "tensorboard"


@dataclasses.dataclass
class RunResult:
    """What a finished run produced."""

    folder: Path | None
    metrics: dict[str, Any]
    model: torch.nn.Module
    learner: Any
    data: Any


@dataclasses.dataclass
class CheckedRecipe:
    """A recipe that passed every check, with the data and the model built from it.

    ``check_recipe`` makes it; ``run_recipe`` trains it without building anything again.
    A model built on the meta device (``check_recipe(..., device="meta")``, to check many
    variants without spending memory) cannot be trained: ``run_recipe`` builds that one anew.
    """

    recipe: Recipe
    data: Any
    model: torch.nn.Module

    @property
    def on_meta(self) -> bool:
        return any(p.is_meta for p in self.model.parameters())


def default_run_dir(recipe: Mapping[str, Any]) -> Path:
    stamp = time.strftime("%Y%m%d-%H%M%S")
    return Path("runs") / f"{recipe.get('name') or 'run'}-{stamp}"


def build_data(recipe: Mapping[str, Any], *, root: str | os.PathLike[str] | None = None) -> Any:
    """Build the recipe's data bundle.

    Paths in the data section are relative to ``root`` (default: the recipe's folder) and
    must stay inside it unless the dataset says ``allow_outside`` (``nnblocks.data.paths``).
    """
    checked = validate_recipe(recipe)
    if checked.get("data") is None:
        raise SpecError("the recipe needs a `data` section.", path="data")
    with spec_path("data"), data_root(Path(root or checked.folder).resolve()):
        return build(checked["data"], "dataset")


def _build_model(recipe: Recipe, data: Any, device: str | None) -> torch.nn.Module:
    """The recipe's model: built from its spec, or loaded ``from`` a checkpoint and swapped."""
    model_args = dict(getattr(getattr(data, "task", None), "model_args", {}) or {})
    spec = recipe["model"]
    if is_from_checkpoint(spec) and isinstance(spec[FROM_KEY], str):
        start = Path(spec[FROM_KEY]).expanduser()
        # A relative `from` starts at the recipe's folder, like every path in a recipe (kept
        # as written when nothing is there, so the error names what the recipe says).
        if not start.is_absolute() and (recipe.folder / start).exists():
            spec = {**spec, FROM_KEY: str(recipe.folder / start)}
    return build_recipe_model(spec, model_args, device=device)


def _seed(recipe: Recipe) -> None:
    train = recipe.settings.train
    if train.threads:
        torch.set_num_threads(train.threads)
    # The init seed while the model is built (named seeds: nnblocks.experiment.seeds).
    seed_everything(seed_values(recipe.get("seed", 0))["init"], deterministic=train.deterministic)


def check_recipe(
    recipe: Mapping[str, Any],
    *,
    device: str | None = None,
    data: Any = None,
    root: str | os.PathLike[str] | None = None,
) -> CheckedRecipe:
    """Every check a recipe needs before training starts; builds its data and model once.

    The recipe is validated against the schema (once: a ``Recipe`` passes through), the
    random state is seeded, the data is built (unless given), the model is built with the
    task's ``model_args`` as defaults, and the options that depend on them (the task's
    evaluation options, teacher forcing) are checked.

    Args:
        recipe: a ``Recipe`` (``load_recipe``) or plain recipe data.
        device: ``"meta"`` builds the model without memory (a check only: ``run_recipe``
            builds such a model again); default: a real model, ready to train.
        data: an already built data bundle for this recipe's data section.
        root: the folder data paths start from (default: the recipe file's folder).

    Returns:
        A CheckedRecipe (recipe, data, model) for ``run_recipe``.

    Raises:
        SpecError: a missing section or a spec that does not build (naming the key).
    """
    checked = validate_recipe(recipe)
    for key in ("data", "model"):
        if checked.get(key) is None:
            raise SpecError(f"the recipe needs a `{key}` section.", path=checked.where(key))
    if device != "meta":
        _seed(checked)
    if data is None:
        data = build_data(checked, root=root)
    model = _build_model(checked, data, device)
    _check_evaluation(checked, data)
    _check_teacher_forcing(checked, model)
    _check_tensorboard(checked)
    return CheckedRecipe(checked, data, model)


def build_from_recipe(
    recipe: Mapping[str, Any],
    *,
    device: str | None = None,
    root: str | os.PathLike[str] | None = None,
) -> tuple[Any, torch.nn.Module]:
    """Build the recipe's data bundle and model (the model gets the task's model_args).

    Raises:
        SpecError: the recipe lacks `data` or `model`, or a spec in them is wrong (the
            message names the key, e.g. `model.decoder.self_attention`).
    """
    checked = check_recipe(recipe, device=device, root=root)
    return checked.data, checked.model


def _evaluation_options(recipe: Recipe) -> dict[str, Any]:
    return {**(recipe.settings.train.evaluate or {}), **(recipe.settings.eval or {})}


def _check_evaluation(recipe: Recipe, data: Any) -> None:
    options = _evaluation_options(recipe)
    evaluate = getattr(getattr(data, "task", None), "evaluate", None)
    if not options or not callable(evaluate):
        return
    from nnblocks.spec import check_arguments

    key = "eval" if recipe.settings.eval else "train.evaluate"
    # model and split are the run's to give; the rest must be the evaluation's options.
    check_arguments(
        evaluate,
        {"model": None, "split": "test", **options},
        path=recipe.where(key),
        what=f"the evaluation of the `{getattr(data.task, 'name', 'task')}` task",
    )


def _check_teacher_forcing(recipe: Recipe, model: torch.nn.Module) -> None:
    tf = (recipe.get("train") or {}).get("teacher_forcing")
    two_pass = isinstance(tf, Mapping) and tf.get("method") == "two_pass"
    if tf is not None and not two_pass and not hasattr(model, "teacher_forcing"):
        raise SpecError(
            f"teacher forcing is set, but the model ({type(model).__name__}) has no "
            "`teacher_forcing` attribute to control (method: two_pass samples through "
            "its forward instead).",
            path=recipe.where("train.teacher_forcing"),
        )


def _check_tensorboard(recipe: Recipe) -> None:
    # Checked here, not when the logger starts: by then the run folder is already written.
    if recipe.settings.train.tensorboard and importlib.util.find_spec("tensorboard") is None:
        raise SpecError(
            "Received an invalid value for `train.tensorboard`, expected false when the "
            "`tensorboard` package is not installed (pip install 'nnblocks[logging]'). "
            "Received: train.tensorboard=true",
            path=recipe.where("train.tensorboard"),
        )


def _callbacks(recipe: Recipe, folder: Path | None) -> list[Any]:
    from nnblocks.train import (
        CSVLogger,
        EarlyStopping,
        SaveCheckpoint,
        TeacherForcing,
        TensorBoardLogger,
    )

    train = recipe.settings.train
    cbs: list[Any] = [_StepTimer()]
    monitor = train.monitor or "valid_loss"
    if train.tensorboard and folder is None:
        log.warning("train.tensorboard is on, but this run writes no folder: no TensorBoard logs")
    if folder is not None:
        cbs.append(CSVLogger(folder / "history.csv"))
        if train.tensorboard:
            cbs.append(TensorBoardLogger(folder / TENSORBOARD_DIR))
        if train.checkpoint is not False:
            every = train.checkpoint if train.checkpoint is not True else None
            cbs.append(
                SaveCheckpoint(
                    folder / "checkpoints",
                    monitor=monitor,
                    every_n_steps=every.every_n_steps if every else None,
                    every_n_minutes=every.every_n_minutes if every else None,
                )
            )
    stop = train.early_stopping
    if stop is not None:
        if isinstance(stop, int):
            cbs.append(EarlyStopping(monitor=monitor, patience=stop))
        else:
            options = stop.model_dump()
            cbs.append(EarlyStopping(**{**options, "monitor": options["monitor"] or monitor}))
    tf = (recipe.get("train") or {}).get("teacher_forcing")
    if tf is not None:
        forcing = tf if isinstance(tf, Mapping) else {"mode": "constant", "start": float(tf)}
        cbs.append(TeacherForcing(**forcing))
    if train.time_limit:
        cbs.append(_TimeLimit(float(train.time_limit)))
    return cbs


# Recipe train keys passed to the Learner as they are (the plain values, as written).
_LEARNER_KEYS = (
    "lr",
    "batch_size",
    "valid_batch_size",
    "opt",
    "wd",
    "schedule",
    "clip_grad",
    "grad_accumulation",
    "mixed_precision",
    "loss",
    "metrics",
    "audit",
    "hybridize",
    "checkpoint_activations",
    "strategy",
    "fsdp_wrap",
)


def _learner_kwargs(train: Mapping[str, Any]) -> dict[str, Any]:
    return {k: train[k] for k in _LEARNER_KEYS if k in train}


def run_recipe(
    recipe: Mapping[str, Any] | CheckedRecipe,
    folder: str | os.PathLike[str] | None = None,
    *,
    progress: bool = True,
    resume: bool = False,
    overwrite: bool = False,
    extra_callbacks: list[Any] | None = None,
    start_from: str | os.PathLike[str] | None = None,
    root: str | os.PathLike[str] | None = None,
) -> RunResult:
    """Train ``recipe`` and write its run folder (``folder=None``: write nothing).

    The folder is held for this run alone while it writes (``experiment.folder``): a second
    run into it fails at once, a finished run in it is kept unless ``overwrite``, and
    ``resume`` continues only the same run.

    Args:
        recipe: a CheckedRecipe (``check_recipe``: its data and model are used as built),
            a ``Recipe`` or plain recipe data (checked here first).
        folder: the run folder; created if missing.
        progress: show the progress bar.
        resume: continue from ``folder/checkpoints/last`` (which must exist).
        overwrite: replace a run already in ``folder``.
        extra_callbacks: more Learner callbacks (e.g. Optuna's pruning reporter).
        start_from: a finished run folder or a training checkpoint folder whose model this
            run continues on the recipe's data (``nnblocks train --from``); the recipe's
            ``continual:`` section then reads the state that run kept.
        root: the folder data paths start from (default: the recipe file's folder).

    Returns:
        A RunResult with the final metrics (also in ``metrics.json``).

    Raises:
        SpecError: the recipe does not pass ``check_recipe``.
        RunFolderError: the folder is in use, holds a finished run, or another run.
        CheckpointError: ``resume`` without a checkpoint in the folder.
        TrainingInterrupted: SIGINT/SIGTERM; a checkpoint to resume from was written.
    """
    previous = previous_run(start_from) if start_from is not None else None  # checked first
    checked = recipe if isinstance(recipe, CheckedRecipe) else check_recipe(recipe, root=root)
    if checked.on_meta:
        checked = check_recipe(checked.recipe, data=checked.data)
    if previous is not None:
        model = continue_model(
            previous, checked.model, checked.data, checked.recipe.get("continual") or {}
        )
        checked = CheckedRecipe(checked.recipe, checked.data, model)
    if folder is None:
        if resume:
            raise CheckpointError("--resume needs the run folder to resume from")
        return _train(
            checked, None, progress=progress, resume=False, extra=extra_callbacks, previous=previous
        )
    # Absolute: the Learner resolves relative callback paths against its own path.
    out = Path(folder).absolute()
    if not is_main():  # under torchrun rank 0 holds and writes the folder; the others train
        return _train(
            checked, out, progress=False, resume=resume, extra=extra_callbacks, previous=previous
        )
    with claim_folder(
        out,
        checked.recipe,
        resume=resume,
        overwrite=overwrite,
        model_spec=_spec_document(checked.model),
    ):
        return _train(
            checked, out, progress=progress, resume=resume, extra=extra_callbacks, previous=previous
        )


def _spec_document(model: torch.nn.Module) -> Any:
    from nnblocks.io.spec_file import dump_spec_document, spec_document

    try:
        return json.loads(dump_spec_document(spec_document(model)))
    except CheckpointError:
        return None  # not built from a spec: nothing to compare a checkpoint with


def _train(
    checked: CheckedRecipe,
    out: Path | None,
    *,
    progress: bool,
    resume: bool,
    extra: list[Any] | None,
    previous: Previous | None = None,
) -> RunResult:
    from nnblocks.train import Learner

    spec, data, model = checked.recipe, checked.data, checked.model
    train, seed = spec.settings.train, spec.get("seed", 0)  # an int or named seeds
    if out is not None and is_main():
        if not resume:  # a resumed run keeps the recipe it started with
            _write_text(out / "recipe.yaml", dump_recipe(spec))
        _write_json(
            out / "environment.json",
            describe_environment(seed, deterministic=train.deterministic),
        )
    continual = (
        continual_callbacks(spec["continual"], previous.root if previous else None)
        if spec.get("continual") is not None
        else []
    )
    callbacks = _callbacks(spec, out) + continual + list(extra or [])
    seed_after_build(seed)  # the dropout seed from the first step on
    learner = Learner(
        model,
        data,
        **_learner_kwargs(spec.get("train") or {}),
        callbacks=callbacks,
        progress=progress,
        path=out,
        seed=seed_values(seed)["data"],  # the data seed orders the training batches
    )
    start = time.perf_counter()
    last = out / "checkpoints" / "last" if out is not None and resume else None
    if train.fine_tune is not None:
        options = train.fine_tune.model_dump(exclude_unset=True)  # Learner defaults otherwise
        learner.fine_tune(**{"epochs": train.epochs, **options})
    else:
        learner.fit(train.epochs, resume=last)
    train_seconds = time.perf_counter() - start

    metrics = _final_metrics(learner, data, _evaluation_options(spec))
    timer = next(cb for cb in callbacks if isinstance(cb, _StepTimer))
    metrics.update(
        params=sum(p.numel() for p in {id(p): p for p in model.parameters()}.values()),
        step_time=timer.step_time,
        train_seconds=train_seconds,
        peak_memory_mb=_peak_memory_mb(),
        epochs_run=len(learner.history),
        seed=seed,
    )
    whole = gathered_model(model)  # every process: under fsdp the weights gather on rank 0
    if out is not None and is_main():
        import nnblocks

        # Tokenizers and fitted statistics go beside the weights; the card shows the recipe.
        assert whole is not None  # rank 0 holds the gathered model
        nnblocks.save(whole, out / "model", data=data, recipe=spec, metrics=metrics)
        if continual:
            save_continual_state(out, continual)  # for the next task's --from
        _write_json(out / "metrics.json", metrics)  # last: its presence marks a finished run
    if train.show:
        learner.show_results(
            train.show, split="test" if getattr(data, "test", None) is not None else None
        )
    return RunResult(out, metrics, model, learner, data)


def _final_metrics(learner: Any, data: Any, options: Mapping[str, Any]) -> dict[str, Any]:
    metrics: dict[str, Any] = {}
    if learner.history:
        for key, value in learner.history[-1].items():
            if isinstance(value, (int, float)) and not isinstance(value, bool):
                metrics[key] = float(value)
    task = getattr(data, "task", None)
    evaluate = getattr(task, "evaluate", None)
    if callable(evaluate):
        split = "test" if getattr(data, "test", None) is not None else "valid"
        for key, value in learner.task_metrics(split, **options).items():
            metrics[f"{split}_{key}" if not key.startswith(split) else key] = _plain(value)
    return metrics


def _plain(value: Any) -> Any:
    if isinstance(value, torch.Tensor):
        return value.item() if value.numel() == 1 else value.tolist()
    if isinstance(value, float) and math.isnan(value):
        return None
    return value


def _peak_memory_mb() -> float:
    if torch.cuda.is_available():
        return torch.cuda.max_memory_allocated() / 2**20
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux


def _write_text(path: Path, text: str) -> None:
    from nnblocks.io.atomic import atomic_write_text

    atomic_write_text(path, text)


def _write_json(path: Path, value: Any) -> None:
    _write_text(path, json.dumps(value, indent=2, sort_keys=True, default=str) + "\n")


class _StepTimer(Callback):
    """Mean wall time per optimizer step over the training phases (validation excluded)."""

    order = 0

    def __init__(self) -> None:
        self.seconds = 0.0
        self.steps = 0
        self._t0 = 0.0
        self._step0 = 0

    def before_train(self, learn: Any) -> None:
        self._t0, self._step0 = time.perf_counter(), learn.train_step

    def after_train(self, learn: Any) -> None:
        self.seconds += time.perf_counter() - self._t0
        self.steps += learn.train_step - self._step0

    @property
    def step_time(self) -> float | None:
        return self.seconds / self.steps if self.steps else None


class _TimeLimit(Callback):
    """Stop training (cleanly, after the current batch) once a time budget is spent."""

    order = 5

    def __init__(self, seconds: float) -> None:
        self.seconds = seconds
        self._start = 0.0
        self.reached = False

    def before_fit(self, learn: Any) -> None:
        self._start, self.reached = time.perf_counter(), False

    def after_batch(self, learn: Any) -> None:
        if learn.training and time.perf_counter() - self._start > self.seconds:
            from nnblocks.train import CancelTrain

            log.info("time limit of %.0f s reached; validating and stopping", self.seconds)
            self.reached = True
            raise CancelTrain  # the epoch still validates, so the run ends with metrics

    def after_epoch(self, learn: Any) -> None:
        if self.reached:
            from nnblocks.train import CancelFit

            raise CancelFit
