"""`Learner`: a model, its data, a loss and the loop that fits them, with good defaults.

Works on any ``nn.Module``. Defaults: AdamW on a fused kernel, a one-cycle schedule, a
progress bar, metrics on the validation set, a NaN/Inf guard, training data shuffled by a
seeded permutation per epoch and validation/test data never shuffled.
"""

from __future__ import annotations

import contextlib
import copy
import logging
import math
import os
from collections.abc import Callable, Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

import torch
from torch import nn

from nnblocks.errors import DataError, TrainingError
from nnblocks.freezing import freeze, frozen_norms, unfreeze
from nnblocks.train import distributed, inference
from nnblocks.train.activations import checkpoint_activations
from nnblocks.train.callback import Callback, CallbackTable
from nnblocks.train.callbacks.checkpoint import SaveCheckpoint
from nnblocks.train.callbacks.grad_accumulation import GradientAccumulation
from nnblocks.train.callbacks.grad_clip import GradientClip
from nnblocks.train.callbacks.loss_curves import LossCurves
from nnblocks.train.callbacks.mixed_precision import MixedPrecision, resolve_precision
from nnblocks.train.callbacks.nan_guard import NanGuard
from nnblocks.train.callbacks.progress import Progress
from nnblocks.train.callbacks.schedule import ParamScheduler, one_cycle_scheduler
from nnblocks.train.checkpoint import (
    load_model_weights,
    load_training_state,
    save_training_state,
)
from nnblocks.train.interrupt import catch_signals
from nnblocks.train.loaders import make_loader
from nnblocks.train.loop import Loop
from nnblocks.train.lr_find import lr_find
from nnblocks.train.metrics import MetricSet
from nnblocks.train.optim import make_optimizer, set_lr
from nnblocks.train.preflight import audit_first_batch, check_first_batch
from nnblocks.train.resolve import LOSSES, resolve_loss, split_data
from nnblocks.train.results import show_results
from nnblocks.train.schedules import make_schedule

__all__ = ["Learner", "LOSSES"]

log = logging.getLogger(__name__)


class Learner(Loop):
    """Fit ``model`` to ``data`` with ``loss``, reporting ``metrics``.

    Args:
        model: any ``nn.Module``. It is called as ``model(*batch[:n_inputs])``.
        data: a DataBundle (``.train``, ``.valid``, ``.test``, ``.task``), a ``(train,
            valid)`` tuple or a dict with ``train``/``valid``/``test``. Each split is a
            ``nnblocks.data.TensorData`` (the fast path), a torch ``Dataset`` or a ready
            ``DataLoader``.
        loss: ``loss(output, *batch[n_inputs:]) -> scalar``: a function, an ``nn.Module``
            or a name in ``LOSSES``; default: the data's task loss.
        metrics: names (``"accuracy"``), torchmetrics Metrics or functions, computed on the
            validation set; default: the data's task metrics.
        opt: optimizer name, class, function or instance (see ``make_optimizer``).
        lr: peak learning rate: a float, ``slice(lo, hi)`` across parameter groups, or a list.
        wd: weight decay (not applied to biases and norm weights).
        batch_size: global batch size (split across processes under torchrun).
        valid_batch_size: batch size for evaluation (default: ``2 * batch_size``).
        param_groups: how to split parameters for discriminative learning rates (see
            ``nnblocks.train.optim.split_groups``).
        schedule: the learning-rate schedule ``fit`` uses: ``"one_cycle"`` (with momentum
            cycling), ``"cosine"``, ``"constant"``, ``"linear"``, a Schedule, or ``None``.
        clip_grad: clip the global gradient norm to this value.
        mixed_precision: ``"auto"`` (bf16 autocast on a CUDA device that supports it, else
            none), ``None``, ``"bf16"`` (CPU and CUDA) or ``"fp16"`` (CUDA, with a gradient
            scaler).
        grad_accumulation: accumulate gradients over this many batches per step.
        callbacks: more callbacks.
        progress: show a progress bar (plain lines when not in a terminal or when CI=true).
        nan_guard: stop at the first non-finite loss, naming the epoch and batch.
        path: folder for files the run writes (``loss_curves.png`` after each fit, the
            lr_find plot); ``None``: none.
        device: default: ``cuda:LOCAL_RANK`` when CUDA is available, else CPU.
        seed: seeds the training order (default: drawn from torch's global RNG).
        n_inputs: how many leading batch tensors go to the model (default: the training
            data's ``n_inputs``, else 1).
        train_metrics: also compute the metrics on training batches.
        audit: run ``nnblocks.check.audit_reuse`` on the first batch: ``"warn"``,
            ``"error"`` or ``"off"``.
        debug: run under ``nnblocks.check.numerics.watch_numerics`` (names the first module
            that produces NaN/Inf, forward or backward).
        hybridize: ``"eager"`` (default: torch.compile costs tens of seconds and does not
            always pay on CPU), ``"compile"`` (compile after checking it gives the same
            outputs) or ``"auto"`` (time eager against compiled on the first training batch
            and keep the faster); see ``nnblocks.hybrid.hybridize``.
        num_workers: DataLoader workers for non-tensor datasets (default: picked by cores).
        checkpoint_activations: glob pattern(s) over module names (``"decoder.layers.*"``):
            the matching modules recompute their activations in the backward pass instead
            of keeping them (``torch.utils.checkpoint``, non-reentrant), trading compute
            for memory; same losses and gradients.
        strategy: how the model is spread over the processes of a torchrun launch:
            ``None`` or ``"ddp"`` (DistributedDataParallel: a full copy per process) or
            ``"fsdp"`` (FSDP2: parameters, gradients and optimizer state sharded across
            processes; needs 2 or more; see ``nnblocks.train.fsdp``).
        fsdp_wrap: with ``"fsdp"``, glob(s) over module paths that each form one sharding
            unit (default: each Transformer layer, ``....layers.N``).

    Raises:
        DataError: data in a form the Learner does not accept.
        TrainingError: no loss, unknown names, bad options.

    Example:
        >>> learn = Learner(model, (TensorData(x, y), TensorData(xv, yv)),
        ...                 loss="cross_entropy", metrics=["accuracy"])
        >>> learn.fit(5, lr=3e-3)
        >>> learn.evaluate()
    """

    def __init__(
        self,
        model: nn.Module,
        data: Any,
        loss: Any = None,
        metrics: Any = None,
        *,
        opt: Any = "adamw",
        lr: float | slice | Sequence[float] = 1e-3,
        wd: float = 0.01,
        batch_size: int = 64,
        valid_batch_size: int | None = None,
        param_groups: Any = None,
        schedule: Any = "one_cycle",
        clip_grad: float | None = None,
        mixed_precision: str | None = "auto",
        grad_accumulation: int = 1,
        callbacks: Iterable[Callback] = (),
        progress: bool = True,
        nan_guard: bool = True,
        path: str | os.PathLike[str] | None = None,
        device: str | torch.device | None = None,
        seed: int | None = None,
        n_inputs: int | None = None,
        train_metrics: bool = False,
        audit: str = "warn",
        debug: bool = False,
        num_workers: int | None = None,
        hybridize: str = "eager",
        checkpoint_activations: str | Sequence[str] | None = None,
        strategy: str | None = None,
        fsdp_wrap: str | Sequence[str] | None = None,
    ):
        _check_options(model, hybridize, audit)
        # Before any process group is formed: a bad strategy fails on every rank at once.
        self.strategy = distributed.check_strategy(strategy, fsdp_wrap, model, batch_size)
        self.fsdp_wrap = fsdp_wrap
        self.hybridize_mode, self.audit, self.debug = hybridize, audit, debug
        self.hybrid: Any = None  # what hybridize chose, after the first fit
        self._set_data(data, loss, metrics, train_metrics, n_inputs)
        self._place_model(model, device, checkpoint_activations)
        self.opt_spec, self.lr, self.wd, self.param_groups = opt, lr, wd, param_groups
        self.batch_size = batch_size
        self.valid_batch_size = valid_batch_size or 2 * batch_size
        self.schedule = schedule
        self.path = Path(path) if path is not None else None
        self.seed = seed
        self.num_workers = num_workers
        self.opt = None  # type: ignore[assignment]  # built on the first fit
        self._reset_loop_state()
        self.cbs = CallbackTable(
            self._default_callbacks(
                progress, nan_guard, clip_grad, mixed_precision, grad_accumulation
            )
        )
        self.cbs.add(*callbacks)

    def _set_data(
        self, data: Any, loss: Any, metrics: Any, train_metrics: bool, n_inputs: int | None
    ) -> None:
        """Splits, task, loss and metrics: what the data asks for unless given."""
        self.splits, self.task = split_data(data)
        if self.splits["train"] is None:
            raise DataError("the data has no training split (`train` is None).")
        self.loss_func = resolve_loss(loss, self.task)
        specs = metrics if metrics is not None else getattr(self.task, "metrics", None)
        self.metrics = MetricSet(specs)
        # Training metrics get their own copies: a Metric object must not mix both phases.
        self.train_metrics = MetricSet(copy.deepcopy(specs) if train_metrics else None)
        self.n_inputs = (
            n_inputs if n_inputs is not None else getattr(self.splits["train"], "n_inputs", 1)
        )

    def _place_model(self, model: nn.Module, device: Any, checkpointed: Any) -> None:
        """Device, DDP wrapper or FSDP shards, activation checkpointing: how the model runs."""
        self.dist, self.device = distributed.setup(device)
        self.model = model.to(self.device)
        self.checkpointed = checkpoint_activations(self.model, checkpointed)
        self.train_model = distributed.wrap_model(
            self.model, self.device, self.strategy, self.fsdp_wrap
        )

    def _reset_loop_state(self) -> None:
        """The loop's counters and records (documented on ``Loop``), before any fit."""
        self.autocast: Any = contextlib.nullcontext()
        self.scaler: Any = None
        self.step_fn: Callable[[], Any] = self._plain_step
        self.history: list[dict[str, Any]] = []
        self.loss_log: list[torch.Tensor] = []
        self.epoch_losses: list[torch.Tensor] = []
        self.frozen_bn: list[nn.Module] = []
        self.fit_seed = 0
        self.pending_resume: dict[str, Any] | None = None
        self._fits = 0
        self._fit_callbacks: list[Callback] = []
        self.epoch = self.iter = self.train_step = self.n_iter = 0
        self.n_epochs = self.total_steps = 0
        self.start_epoch = self.start_iter = 0
        self.next_position = (0, 0)
        self.training = False
        self.loaders: dict[str, Any] = {}
        self.error: BaseException | None = None

    # -- setup ---------------------------------------------------------------------------

    def _default_callbacks(
        self,
        progress: bool,
        nan_guard: bool,
        clip_grad: float | None,
        mixed_precision: str | None,
        grad_accumulation: int,
    ) -> list[Callback]:

        out: list[Callback] = []
        precision = resolve_precision(mixed_precision, self.device)
        if precision is not None:
            out.append(MixedPrecision(precision))
        if grad_accumulation != 1:
            out.append(GradientAccumulation(grad_accumulation))
        if clip_grad is not None:
            out.append(GradientClip(clip_grad))
        if nan_guard:
            out.append(NanGuard())
        if self.path is not None and self.dist.rank == 0:
            out.append(LossCurves())
        if progress and self.dist.rank == 0:
            out.append(Progress())
        return out

    def _plain_step(self) -> None:
        self.opt.step()

    @property
    def inputs(self) -> tuple[Any, ...]:
        """The current batch's model inputs, ``batch[:n_inputs]``."""
        return self.batch[: self.n_inputs]

    @property
    def targets(self) -> tuple[Any, ...]:
        """The current batch's targets, ``batch[n_inputs:]``."""
        return self.batch[self.n_inputs :]

    def add_callbacks(self, *callbacks: Callback) -> None:
        """Add callbacks (ordered by their ``order``)."""
        self.cbs.add(*callbacks)

    def remove_callbacks(self, *callbacks: Callback) -> None:
        self.cbs.remove(*callbacks)

    def make_loader(self, data: Any, *, train: bool = False, batch_size: int | None = None) -> Any:
        """A loader for ``data`` as the Learner batches it (sharded under torchrun)."""
        return make_loader(
            data,
            batch_size or (self.batch_size if train else self.valid_batch_size),
            shuffle=train,
            seed=self.fit_seed if train else 0,
            rank=self.dist.rank,
            world_size=self.dist.world_size,
            device=self.device,
            collate_fn=getattr(self.splits.get("train"), "collate", None)
            or getattr(self.task, "collate", None),
            num_workers=self.num_workers,
        )

    def _ensure_optimizer(self) -> torch.optim.Optimizer:
        if self.opt is None:
            self.opt = make_optimizer(
                self.model, self.opt_spec, lr=self.lr, wd=self.wd, param_groups=self.param_groups
            )
        return self.opt

    def _draw_seed(self) -> int:
        if self.seed is not None:
            # A new order for each fit() on the same Learner, still fixed by `seed`.
            return (int(self.seed) * 1_000_003 + self._fits) % 2**62
        seed = int(torch.randint(0, 2**62, (1,)).item())
        return int(distributed.broadcast_object(seed))  # every process shuffles alike

    def _prepare_fit(self, epochs: int, lr: Any, schedule: Any) -> None:
        if not isinstance(epochs, int) or epochs < 1:
            raise TrainingError(f"epochs must be a positive integer. Received: epochs={epochs!r}")
        self._ensure_optimizer()
        # Norms frozen in eval mode (train_bn="eval"), by the Learner or by a plain freeze().
        self.frozen_bn = frozen_norms(self.model)
        if lr is not None:
            self.lr = lr
        set_lr(self.opt, self.lr)
        self.fit_seed = self._draw_seed()
        self._fits += 1
        self.loaders = {"train": self.make_loader(self.splits["train"], train=True)}
        for split in ("valid", "test"):
            if self.splits.get(split) is not None:
                self.loaders[split] = self.make_loader(self.splits[split])
        self.n_epochs = epochs
        self.n_iter = len(self.loaders["train"])
        if self.n_iter == 0:
            raise DataError(
                f"the training data has {_length(self.splits['train'])} samples: fewer than one "
                f"batch of {self.batch_size}."
            )
        self.total_steps = epochs * self.n_iter
        self.epoch = self.iter = self.train_step = 0
        self.start_epoch = self.start_iter = 0
        self.history, self.loss_log, self.epoch_losses = [], [], []
        self._fit_callbacks = self._schedule_callbacks(
            schedule if schedule is not None else self.schedule
        )
        self.cbs.add(*self._fit_callbacks)

    def _schedule_callbacks(self, schedule: Any) -> list[Callback]:

        if schedule is None or schedule == "none":
            return []
        if isinstance(schedule, Callback):
            return [schedule]
        if schedule == "one_cycle":
            return [one_cycle_scheduler()]
        if isinstance(schedule, Mapping) and schedule.get("name") == "one_cycle":
            return [one_cycle_scheduler(**{k: v for k, v in schedule.items() if k != "name"})]
        return [ParamScheduler(lr=make_schedule(schedule))]

    # -- fit -----------------------------------------------------------------------------

    def fit(
        self,
        epochs: int,
        lr: float | slice | Sequence[float] | None = None,
        *,
        resume: str | os.PathLike[str] | None = None,
        schedule: Any = None,
    ) -> list[dict[str, Any]]:
        """Train for ``epochs`` epochs.

        Args:
            epochs: how many passes over the training data.
            lr: peak learning rate(s) for this fit (default: the Learner's ``lr``).
            resume: a training checkpoint folder to continue from exactly (weights,
                optimizer, schedule, RNG states, position in the epoch), or ``"auto"``: the
                last checkpoint of a ``SaveCheckpoint`` callback if one exists (for restarts
                under ``torchrun --max-restarts``).
            schedule: this fit's schedule (default: the Learner's ``schedule``).

        Returns:
            ``history``: one dict per epoch (train_loss, valid_loss, metrics, lr).

        Raises:
            DataError: data and model disagree (checked on the first batch, before any step).
            TrainingError: a non-finite loss (naming epoch and batch), a failing callback
                (naming it and the event), or bad options.
            CheckpointError: ``resume`` names a missing or corrupt checkpoint.
            TrainingInterrupted: SIGINT or SIGTERM arrived; the step finished and a
                checkpoint was written (``nnblocks.train.interrupt``).
        """
        self._prepare_fit(epochs, lr, schedule)
        try:
            # SIGINT/SIGTERM: finish the step, checkpoint, raise TrainingInterrupted.
            with catch_signals(self):
                if resume is not None:
                    self._resume(resume)
                self._preflight()
                with self._debug_context():
                    self._run_fit()
        finally:
            self.cbs.remove(*self._fit_callbacks)
        return self.history

    def fit_one_cycle(
        self,
        epochs: int,
        lr_max: float | slice | Sequence[float] | None = None,
        *,
        pct_start: float = 0.25,
        div: float = 25.0,
        final_div: float = 1e4,
        moms: tuple[float, float] | None = (0.95, 0.85),
        resume: str | os.PathLike[str] | None = None,
    ) -> list[dict[str, Any]]:
        """Train with the one-cycle policy (Smith & Topin 2017): see ``schedules.OneCycle``.

        Args:
            epochs: passes over the training data.
            lr_max: the peak learning rate(s).
            pct_start: fraction of the steps spent warming up.
            div: the start is ``lr_max / div``.
            final_div: the end is ``lr_max / (div * final_div)``.
            moms: momentum (Adam's beta1) high and low, cycled inversely; ``None``: fixed.
            resume: as in ``fit``.
        """

        sched = one_cycle_scheduler(pct_start=pct_start, div=div, final_div=final_div, moms=moms)
        return self.fit(epochs, lr_max, resume=resume, schedule=sched)

    def _debug_context(self) -> Any:
        if not self.debug:
            return contextlib.nullcontext()
        from nnblocks.check.numerics import watch_numerics  # kept off the light import path

        return watch_numerics(self.model)

    def _preflight(self) -> None:
        loader = self.loaders["train"]
        loader.set_epoch(0, 0)
        with torch.random.fork_rng(devices=[]):
            first = next(iter(loader))
        train = self.splits["train"]
        full = None
        if hasattr(train, "tensors") and len(train.tensors) > self.n_inputs:
            full = train.tensors[self.n_inputs]
        check_first_batch(
            self.model,
            self.loss_func,
            first,
            self.n_inputs,
            full_targets=full,
            autocast=self.autocast_for_check(),
        )
        audit_first_batch(self.model, first[: self.n_inputs], self.audit)
        if self.hybridize_mode != "eager" and self.hybrid is None:
            self._hybridize(first)

    def _hybridize(self, first: tuple[Any, ...]) -> None:
        """Compile when it pays: decided once, on the first training batch."""
        from nnblocks.hybrid import hybridize

        result = hybridize(
            self.train_model,
            tuple(first[: self.n_inputs]),
            self.hybridize_mode,
            loss_fn=self.loss_func,
            targets=tuple(first[self.n_inputs :]),
        )
        log.info("hybridize=%s: %s", self.hybridize_mode, result.reason)
        self.hybrid = result
        self.train_model = result.model  # type: ignore[assignment]  # an OptimizedModule is an nn.Module

    def autocast_for_check(self) -> Any:

        for cb in self.cbs.find(MixedPrecision):
            return cb.context(self.device)
        return None

    def _resume(self, resume: str | os.PathLike[str]) -> None:

        if resume == "auto":
            found = [cb.last_path(self) for cb in self.cbs.find(SaveCheckpoint)]
            found = [p for p in found if p is not None and p.exists()]
            if not found:
                log.info("resume='auto': no checkpoint yet, starting from scratch")
                return
            resume = found[0]
        load_training_state(self, resume)

    # -- saving --------------------------------------------------------------------------

    def save_checkpoint(self, path: str | os.PathLike[str]) -> Path | None:
        """Save the full training state to the folder ``path`` (atomically; rank 0 writes).

        Returns:
            The folder (``None`` on ranks other than 0).
        """

        return save_training_state(self, path)

    def load_checkpoint(self, path: str | os.PathLike[str], *, weights_only: bool = True) -> None:
        """Load a checkpoint's weights (``weights_only``) or full training state into this Learner.

        Loading only weights leaves every RNG untouched.
        """

        if weights_only:
            load_model_weights(self.model, path)
        else:
            self._ensure_optimizer()
            load_training_state(self, path)

    # -- freezing ------------------------------------------------------------------------

    def freeze(self, *patterns: str, train_bn: bool | str = True) -> list[str]:
        """Freeze the modules whose names match ``patterns`` (slots or globs); see ``freeze.freeze``."""
        names = freeze(self.model, *patterns, train_bn=train_bn)
        self.frozen_bn = frozen_norms(self.model)
        return names

    def unfreeze(self, *patterns: str) -> list[str]:
        """Make the matching modules (all when no pattern) trainable again."""
        names = unfreeze(self.model, *patterns)
        self.frozen_bn = frozen_norms(self.model)
        return names

    def fine_tune(
        self,
        epochs: int,
        freeze_epochs: int = 1,
        base_lr: float | None = None,
        lr_mult: float = 10.0,
        **options: Any,
    ) -> list[dict[str, Any]]:
        """Train the new parameters (head, or what surgery inserted), then all with
        discriminative rates; one cycle in both phases. See ``nnblocks.train.fine_tune``."""
        from nnblocks.train.fine_tune import fine_tune

        return fine_tune(self, epochs, freeze_epochs, base_lr, lr_mult, **options)

    # -- using the model -----------------------------------------------------------------

    def predict(
        self, data: Any = None, *, with_targets: bool = False, batch_size: int | None = None
    ) -> Any:
        """Model outputs over ``data`` in order, in eval and inference mode.

        Args:
            data: ``"train"``/``"valid"``/``"test"`` (default: test, else valid), a TensorData,
                a Dataset, a DataLoader, or a tensor of inputs.
            with_targets: also return the targets.
            batch_size: default: ``valid_batch_size``.

        Returns:
            The outputs concatenated over batches (a list of per-batch outputs when their
            shapes differ, e.g. trimmed sequences), on the CPU; with ``with_targets``, a pair
            ``(outputs, targets)``.

        Raises:
            DataError: an unknown or missing split.
        """

        return inference.predict(self, data, with_targets=with_targets, batch_size=batch_size)

    def get_preds(
        self,
        data: Any = None,
        *,
        step: Any = None,
        with_loss: bool = False,
        batch_size: int | None = None,
        concat: bool = True,
    ) -> tuple[Any, ...]:
        """Run the model over ``data`` in order: the one path every evaluation takes.

        The same loaders and batch function as training, in eval mode under inference mode
        and the Learner's autocast, never shuffled, callbacks quiet; the Learner's state
        and the model's train/eval modes are as before afterwards.

        Args:
            data: a split name (default: test, else valid), a TensorData, a Dataset, a
                DataLoader, or a tensor of inputs.
            step: ``step(model, batch, n_inputs) -> prediction`` instead of the model's
                output (a task's ``predict_step``: greedy decoding for seq2seq).
            with_loss: also return the loss of each batch.
            batch_size: default: ``valid_batch_size``.
            concat: join the batches (a list of per-batch values where shapes differ);
                ``False``: per-batch lists.

        Returns:
            ``(predictions, targets)`` (one tensor, or a tuple, of targets), plus the
            per-batch losses with ``with_loss``; on the CPU.

        Raises:
            DataError: an unknown or missing split.
        """

        outs, tgts, losses = inference.batches(self, data, step, with_loss, batch_size)
        if concat:
            out, targets, loss = inference.joined(outs, tgts, losses)
            return (out, targets, loss) if with_loss else (out, targets)
        return (outs, tgts, losses) if with_loss else (outs, tgts)

    def task_metrics(self, split: Any = "test", **options: Any) -> dict[str, Any]:
        """The task's own evaluation (``task.evaluate``: exact match of greedy decoding,
        F1, R²...) of the model on ``split``, fed by ``get_preds``; ``{}`` without a task.

        Args:
            split: a split name of the task (incl. the bundle's extra ones) or data.
            **options: passed to ``task.evaluate`` (``batch_size``, ``decode``, ``limit``...).
        """

        return inference.task_metrics(self, split, **options)

    def evaluate(self, data: Any = None, *, batch_size: int | None = None) -> dict[str, float]:
        """Loss and metrics on ``data`` (default: the test split, else valid), plus the task's
        own evaluation (``task.evaluate(model, split)``, e.g. exact match of greedy decoding)
        when ``data`` names a split; the task's values win where names clash.

        Returns:
            ``{"loss": ..., metric: ..., **task metrics}``.

        Raises:
            DataError: an unknown or missing split.
        """

        return inference.evaluate(self, data, batch_size=batch_size)

    def show_results(self, n: int = 8, split: str | None = None) -> Any:
        """Show ``n`` examples of ``split`` with the model's predictions (a rich table).

        Uses the task's ``decode_example(inputs, targets, output)`` when it has one.
        """

        return show_results(self, n, split)

    def show_callbacks(self) -> Any:
        """Print which callbacks run at each event, in order; returns the rich Table.

        ``fit`` adds its schedule (a ``ParamScheduler``) for the length of the fit only.
        """
        from rich.console import Console
        from rich.table import Table

        table = Table(title="callbacks by event")
        table.add_column("event")
        table.add_column("callbacks (in order)")
        for event, names in self.cbs.table():
            table.add_row(event, ", ".join(names))
        Console().print(table)
        return table

    def lr_find(self, **kwargs: Any) -> Any:
        """Sweep the learning rate exponentially; see ``nnblocks.train.lr_find.lr_find``."""

        return lr_find(self, **kwargs)

    def recent_loss(self, n: int = 20) -> float:
        """Mean of the last ``n`` training losses of this epoch (reads the device once)."""
        if not self.epoch_losses:
            return math.nan
        return float(torch.stack([x.float() for x in self.epoch_losses[-n:]]).mean())

    def __repr__(self) -> str:
        return (
            f"Learner({type(self.model).__name__}, device={self.device}, batch_size={self.batch_size}, "
            f"callbacks=[{', '.join(cb.name for cb in self.cbs.callbacks)}])"
        )


def _check_options(model: Any, hybridize: str, audit: str) -> None:
    """Refuse bad arguments before anything is built or moved."""
    if not isinstance(model, nn.Module):
        raise TrainingError(
            f"Received an invalid model: expected an nn.Module. Received: {type(model).__name__}"
        )
    if hybridize not in ("eager", "auto", "compile"):
        raise TrainingError(
            f"hybridize must be 'eager', 'auto' or 'compile'. Received: hybridize={hybridize!r}"
        )
    if audit not in ("warn", "error", "off"):
        raise TrainingError(f"audit must be 'warn', 'error' or 'off'. Received: audit={audit!r}")


def _length(data: Any) -> str:
    try:
        return str(len(data))
    except TypeError:
        return "an unknown number of"
