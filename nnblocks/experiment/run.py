"""Run one recipe: build data and model, train with the Learner, evaluate, write a run folder.

A run folder holds everything needed to trust and repeat the result::

    recipe.yaml       the resolved recipe (overrides applied)
    environment.json  versions, device, threads, seed, determinism
    history.csv       one row per epoch
    metrics.json      final metrics, parameter count, step time, peak memory (written last)
    loss_curves.png   training and validation loss
    model/            nnblocks.save(model): spec.json + model.safetensors + manifest.json
    checkpoints/      training checkpoints (best/last), for `--resume`
"""

from __future__ import annotations

import dataclasses
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

from nnblocks.errors import SpecError
from nnblocks.experiment.environment import describe_environment, seed_after_build, seed_everything
from nnblocks.experiment.recipe import dump_recipe, validate_recipe
from nnblocks.experiment.seeds import seed_values
from nnblocks.registry import build
from nnblocks.spec import spec_path
from nnblocks.train.callback import Callback

__all__ = ["RunResult", "run_recipe", "build_from_recipe", "default_run_dir"]

log = logging.getLogger(__name__)


@dataclasses.dataclass
class RunResult:
    """What a finished run produced."""

    folder: Path | None
    metrics: dict[str, Any]
    model: torch.nn.Module
    learner: Any
    data: Any


def default_run_dir(recipe: Mapping[str, Any]) -> Path:
    stamp = time.strftime("%Y%m%d-%H%M%S")
    return Path("runs") / f"{recipe.get('name', 'run')}-{stamp}"


def build_from_recipe(
    recipe: Mapping[str, Any], *, device: str | None = None
) -> tuple[Any, torch.nn.Module]:
    """Build the recipe's data bundle and model (the model gets the task's model_args).

    Raises:
        SpecError: the recipe lacks `data` or `model`, or a spec in them is wrong (the
            message names the key, e.g. `model.decoder.self_attention`).
    """
    for key in ("data", "model"):
        if key not in recipe:
            raise SpecError(f"the recipe needs a `{key}` section.", path=key)
    data = load_data(recipe)
    task = getattr(data, "task", None)
    model_args = dict(getattr(task, "model_args", {}) or {})
    with spec_path("model"):
        if device == "meta":
            with torch.device("meta"):
                model = build(recipe["model"], "model", **model_args)
        else:
            model = build(recipe["model"], "model", **model_args)
    return data, model


_DATA_CACHE: dict[str, Any] = {}


def _data_key(spec: Any) -> str:
    return json.dumps(spec, sort_keys=True, default=str)


def load_data(recipe: Mapping[str, Any]) -> Any:
    """Build the recipe's data bundle, reusing one already built in this process."""
    if "data" not in recipe:
        raise SpecError("the recipe needs a `data` section.", path="data")
    key = _data_key(recipe["data"])
    if key not in _DATA_CACHE:
        with spec_path("data"):
            _DATA_CACHE.clear()  # keep one bundle: they can be large
            _DATA_CACHE[key] = build(recipe["data"], "dataset")
    return _DATA_CACHE[key]


def check_recipe(recipe: Mapping[str, Any]) -> Any:
    """Fail fast, before training starts: build the data and the model (on the meta device,
    so no memory is spent). Returns the data bundle for the run to reuse."""
    validate_recipe(recipe)
    if "model" not in recipe:
        raise SpecError("the recipe needs a `model` section.", path="model")
    data = load_data(recipe)
    model_args = dict(getattr(getattr(data, "task", None), "model_args", {}) or {})
    with spec_path("model"), torch.device("meta"):
        build(recipe["model"], "model", **model_args)
    return data


def _callbacks(recipe: Mapping[str, Any], folder: Path | None, model: torch.nn.Module) -> list[Any]:
    from nnblocks.train import CSVLogger, EarlyStopping, SaveCheckpoint, TeacherForcing

    train = recipe.get("train") or {}
    cbs: list[Any] = [_StepTimer()]
    monitor = train.get("monitor")
    if folder is not None:
        cbs.append(CSVLogger(folder / "history.csv"))
        if train.get("checkpoint", True):
            cbs.append(SaveCheckpoint(folder / "checkpoints", monitor=monitor or "valid_loss"))
    if train.get("early_stopping"):
        cbs.append(
            EarlyStopping(monitor=monitor or "valid_loss", patience=int(train["early_stopping"]))
        )
    tf = train.get("teacher_forcing")
    if tf is not None:
        if not hasattr(model, "teacher_forcing"):
            raise SpecError(
                f"teacher forcing is set, but the model ({type(model).__name__}) has no "
                "`teacher_forcing` attribute to control.",
                path="train.teacher_forcing",
            )
        options = tf if isinstance(tf, Mapping) else {"mode": "constant", "start": float(tf)}
        cbs.append(TeacherForcing(**options))
    if train.get("time_limit"):
        cbs.append(_TimeLimit(float(train["time_limit"])))
    return cbs


def _learner_kwargs(train: Mapping[str, Any]) -> dict[str, Any]:
    keys = (
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
    )
    return {k: train[k] for k in keys if k in train}


def run_recipe(
    recipe: Mapping[str, Any],
    folder: str | os.PathLike[str] | None = None,
    *,
    progress: bool = True,
    resume: bool = False,
    extra_callbacks: list[Any] | None = None,
) -> RunResult:
    """Train ``recipe`` and write its run folder (``folder=None``: write nothing).

    Args:
        recipe: a recipe dict (see ``nnblocks.experiment.recipe``).
        folder: the run folder; created if missing.
        progress: show the progress bar.
        resume: continue from ``folder/checkpoints/last`` when it exists.
        extra_callbacks: more Learner callbacks (e.g. Optuna's pruning reporter).

    Returns:
        A RunResult with the final metrics (also in ``metrics.json``).
    """
    from nnblocks.train import Learner

    validate_recipe(recipe)
    train = dict(recipe.get("train") or {})
    seed = recipe.get("seed", 0)  # an int, or named seeds: see nnblocks.experiment.seeds
    if train.get("threads"):
        torch.set_num_threads(int(train["threads"]))
    deterministic = bool(train.get("deterministic", False))
    seed_everything(seed_values(seed)["init"], deterministic=deterministic)
    # Absolute: the Learner resolves relative callback paths against its own path.
    out = Path(folder).absolute() if folder is not None else None
    if out is not None:
        out.mkdir(parents=True, exist_ok=True)
        _write_text(out / "recipe.yaml", dump_recipe(recipe))
        _write_json(
            out / "environment.json", describe_environment(seed, deterministic=deterministic)
        )

    data, model = build_from_recipe(recipe)
    seed_after_build(seed)
    callbacks = _callbacks(recipe, out, model) + list(extra_callbacks or [])
    learner = Learner(
        model,
        data,
        **_learner_kwargs(train),
        callbacks=callbacks,
        progress=progress,
        path=out,
        seed=seed_values(seed)["data"],  # the data seed orders the training batches
    )
    last = out / "checkpoints" / "last" if out is not None else None
    start = time.perf_counter()
    learner.fit(
        int(train.get("epochs", 1)), resume=last if resume and last and last.exists() else None
    )
    train_seconds = time.perf_counter() - start

    metrics = _final_metrics(learner, data, train)
    timer = next(cb for cb in callbacks if isinstance(cb, _StepTimer))
    metrics.update(
        params=sum(p.numel() for p in {id(p): p for p in model.parameters()}.values()),
        step_time=timer.step_time,
        train_seconds=train_seconds,
        peak_memory_mb=_peak_memory_mb(),
        epochs_run=len(learner.history),
        seed=seed,
    )
    if out is not None:
        import nnblocks

        nnblocks.save(model, out / "model")
        if hasattr(data, "save_state"):  # tokenizers and fitted statistics, beside the weights
            data.save_state(out / "model")
        _write_json(out / "metrics.json", metrics)  # last: its presence marks a finished run
    shown = int(train.get("show", 0))
    if shown:
        learner.show_results(
            shown, split="test" if getattr(data, "test", None) is not None else None
        )
    return RunResult(out, metrics, model, learner, data)


def _final_metrics(learner: Any, data: Any, train: Mapping[str, Any]) -> dict[str, Any]:
    metrics: dict[str, Any] = {}
    if learner.history:
        for key, value in learner.history[-1].items():
            if isinstance(value, (int, float)) and not isinstance(value, bool):
                metrics[key] = float(value)
    task = getattr(data, "task", None)
    evaluate = getattr(task, "evaluate", None)
    if callable(evaluate):
        split = "test" if getattr(data, "test", None) is not None else "valid"
        options = dict(train.get("evaluate") or {})
        for key, value in evaluate(learner.model, split=split, **options).items():
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
