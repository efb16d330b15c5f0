"""The training loop: fit -> epoch -> train / validate -> batch, each through one event helper.

These are the Learner's loop methods, kept apart from its setup so the whole loop reads top
to bottom in one sitting. The per-batch path does only what a hand-written loop does plus
one list append (the loss, still on its device): events without callbacks are skipped by
a dictionary lookup, nothing is read back from the device, gradients are cleared with
``set_to_none=True``.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch

from nnblocks.train.checkpoint import apply_pending_resume
from nnblocks.train.distributed import all_reduce_sum
from nnblocks.train.events import (
    CancelBatch,
    CancelEpoch,
    CancelFit,
    CancelStep,
    CancelTrain,
    CancelValidate,
)

__all__ = ["Loop"]

# step -> (before event, after event, cancel event, cancel exception)
_WRAPPED: dict[str, tuple[str, str, str, type[Exception]]] = {
    step: (f"before_{step}", f"after_{step}", f"after_cancel_{step}", exc)
    for step, exc in (
        ("fit", CancelFit),
        ("epoch", CancelEpoch),
        ("train", CancelTrain),
        ("validate", CancelValidate),
    )
}


class Loop:
    """The loop methods of ``Learner`` (see ``nnblocks.train.learner``)."""

    # The loop's state, set up by the Learner; callbacks read and change it.
    cbs: Any  # CallbackTable
    model: torch.nn.Module  # the model itself
    train_model: torch.nn.Module  # the model, inside DDP when distributed
    opt: torch.optim.Optimizer
    loss_func: Callable[..., torch.Tensor]
    metrics: Any  # MetricSet (validation)
    train_metrics: Any  # MetricSet (training, empty unless asked)
    loaders: dict[str, Any]  # "train", "valid", "test"
    autocast: Any  # the context forward and loss run in
    step_fn: Callable[[], Any]  # the optimizer step (replaced by fp16 mixed precision)
    scaler: Any  # GradScaler for fp16, else None
    n_inputs: int
    n_epochs: int
    n_iter: int  # batches in the current phase
    total_steps: int
    epoch: int
    iter: int  # index of the current batch in its phase
    train_step: int  # training batches done in this fit
    start_epoch: int
    start_iter: int
    training: bool
    stop_training: bool
    batch: tuple[Any, ...]
    pred: Any
    loss: torch.Tensor
    loss_grad: torch.Tensor
    grad_norm: torch.Tensor  # set by GradientClip
    train_loss: float
    valid_loss: float
    valid_metrics: dict[str, float]
    history: list[dict[str, Any]]
    loss_log: list[torch.Tensor]  # per-step training losses of finished epochs (CPU)
    _losses: list[torch.Tensor]  # this epoch's per-step losses, still on their device
    _frozen_bn: list[torch.nn.Module]
    _next_pos: tuple[int, int]
    _pending_resume: dict[str, Any] | None

    def _fire(self, event: str) -> None:
        hooks = self.cbs.hooks[event]
        if hooks:
            self.cbs.call(hooks, event, self)

    def _call(self, event: str) -> None:
        self.cbs.call(self.cbs.hooks[event], event, self)

    def _with_events(self, fn: Callable[[], None], step: str) -> None:
        before, after, cancelled, exc = _WRAPPED[step]
        try:
            self._fire(before)
            fn()
        except exc:
            self._fire(cancelled)
        self._fire(after)

    # -- fit and epoch -------------------------------------------------------------------

    def _run_fit(self) -> None:
        self.error: BaseException | None = None
        try:
            self._fire("before_fit")
            # A resumed run gets its callback and RNG states back only now, after the
            # callbacks have set themselves up in before_fit.
            apply_pending_resume(self)  # type: ignore[arg-type]
            self._do_fit()
        except CancelFit:
            self._fire("after_cancel_fit")
        except BaseException as exc:
            self.error = exc
            raise
        finally:
            # after_fit always runs (closing progress bars, files); `learn.error` tells a
            # callback whether the run failed, so nothing is saved from a failed run.
            self._fire("after_fit")

    def _do_fit(self) -> None:
        self.stop_training = False
        for epoch in range(self.start_epoch, self.n_epochs):
            self.epoch = epoch
            self._with_events(self._do_epoch, "epoch")
            self.start_iter = 0
            if self.stop_training:  # set by a callback (early stopping) to stop after an epoch
                break

    def _do_epoch(self) -> None:
        loader = self.loaders["train"]
        loader.set_epoch(self.epoch, self.start_iter)
        self.n_iter = len(loader)
        if self.start_iter == 0:
            self._losses = []
        self.training = True
        self.train_model.train()
        self._freeze_bn_stats()
        self._with_events(self._do_train, "train")
        if self.loaders.get("valid") is not None:
            self.training = False
            self.model.eval()
            self._with_events(self._do_validate, "validate")
        self._record_epoch()
        self._next_pos = (self.epoch + 1, 0)  # where a checkpoint saved now resumes

    # -- training ------------------------------------------------------------------------

    def _do_train(self) -> None:
        loader = self.loaders["train"]
        if self.train_metrics:
            self.train_metrics.reset()
        hooks, call = self.cbs.hooks, self._call
        for i, batch in enumerate(loader, self.start_iter):
            self.iter = i
            self.batch = batch
            try:
                if hooks["before_batch"]:
                    call("before_batch")
                self._train_batch(hooks)
            except CancelBatch:
                call("after_cancel_batch")
            self.train_step += 1
            self._next_pos = (self.epoch, i + 1)
            if hooks["after_batch"]:
                call("after_batch")
        self.train_loss = self._epoch_loss()

    def _train_batch(self, hooks: dict[str, tuple[Any, ...]]) -> None:
        # Events without callbacks are skipped by a lookup, not a call: this path runs once
        # per step and must cost no more than a hand-written loop.
        call = self._call
        n = self.n_inputs
        if hooks["before_forward"]:
            call("before_forward")
        with self.autocast:
            self.pred = self.train_model(*self.batch[:n])
            if hooks["after_forward"]:
                call("after_forward")
            if hooks["before_loss"]:
                call("before_loss")
            self.loss = self.loss_func(self.pred, *self.batch[n:])
        if hooks["after_loss"]:
            call("after_loss")
        self._losses.append(self.loss.detach())
        if self.train_metrics:
            with torch.no_grad():
                self.train_metrics.update(self.pred, self.batch[n:])
        self.loss_grad = self.loss
        if hooks["before_backward"]:
            call("before_backward")
        self.loss_grad.backward()
        if hooks["after_backward"]:
            call("after_backward")
        try:
            if hooks["before_step"]:
                call("before_step")
            self.step_fn()
            if hooks["after_step"]:
                call("after_step")
            self.opt.zero_grad(set_to_none=True)
        except CancelStep:
            call("after_cancel_step")

    def _epoch_loss(self) -> float:
        if not self._losses:
            return float("nan")
        losses = torch.stack([x.float() for x in self._losses])
        self.loss_log.append(losses.cpu())
        total = all_reduce_sum(
            torch.stack([losses.sum(), torch.tensor(float(losses.numel()), device=losses.device)])
        )
        return float(total[0] / total[1])

    # -- validation ----------------------------------------------------------------------

    def _do_validate(self) -> None:
        self.valid_loss, self.valid_metrics = self._evaluate_loader(
            self.loaders["valid"], fire=True
        )

    def _evaluate_loader(self, loader: Any, *, fire: bool) -> tuple[float, dict[str, float]]:
        """Loss (sample-weighted mean) and metrics over ``loader``, reduced over processes."""
        self.training = False
        model = self.model  # the module itself: no DDP synchronisation while evaluating
        model.eval()
        loader.set_epoch(0, 0)
        self.n_iter = len(loader)
        self.metrics.reset()
        n = self.n_inputs
        total: torch.Tensor | None = None
        count = 0
        hooks = self.cbs.hooks
        with torch.inference_mode():
            for i, batch in enumerate(loader):
                self.iter = i
                self.batch = batch
                try:
                    if fire and hooks["before_batch"]:
                        self._fire("before_batch")
                    with self.autocast:
                        self.pred = model(*self.batch[:n])
                        if fire and hooks["after_forward"]:
                            self._fire("after_forward")
                        self.loss = self.loss_func(self.pred, *self.batch[n:])
                    if fire and hooks["after_loss"]:
                        self._fire("after_loss")
                    size = _batch_size(self.batch)
                    value = self.loss.detach().float() * size
                    total = value if total is None else total + value
                    count += size
                    self.metrics.update(self.pred, self.batch[n:])
                except CancelBatch:
                    if fire:
                        self._fire("after_cancel_batch")
                if fire and hooks["after_batch"]:
                    self._fire("after_batch")
        device = total.device if total is not None else torch.device("cpu")
        pair = torch.stack(
            [
                total if total is not None else torch.zeros((), device=device),
                torch.tensor(float(count), device=device),
            ]
        )
        pair = all_reduce_sum(pair)
        loss = float(pair[0] / pair[1]) if float(pair[1]) > 0 else float("nan")
        return loss, self.metrics.compute() if self.metrics else {}

    # -- the epoch's record --------------------------------------------------------------

    def _record_epoch(self) -> None:
        row: dict[str, Any] = {
            "epoch": self.epoch,
            "train_loss": getattr(self, "train_loss", float("nan")),
        }
        if self.train_metrics:
            row.update({f"train_{k}": v for k, v in self.train_metrics.compute().items()})
        if self.loaders.get("valid") is not None:
            row["valid_loss"] = self.valid_loss
            row.update(self.valid_metrics)
        row["lr"] = self.opt.param_groups[-1]["lr"]
        self.history.append(row)

    def _freeze_bn_stats(self) -> None:
        # BatchNorm layers frozen with train_bn=False keep their running statistics.
        for m in self._frozen_bn:
            m.eval()


def _batch_size(batch: tuple[Any, ...]) -> int:
    for t in batch:
        if isinstance(t, torch.Tensor) and t.dim() > 0:
            return int(t.shape[0])
    return 1
