"""The training loop on one screen: every level runs through ``_with_events``.

fit -> epoch -> train / validate -> batch -> forward, loss (, backward, step). Training,
validation and ``get_preds`` share one batch function (``_do_batch``); a *phase* says which
model runs, whether gradients flow and what each batch records. Events that no callback
overrides cost a dictionary lookup, never a call; nothing is read back from the device
per batch; gradients are cleared with ``set_to_none=True``. These are the Learner's loop
methods, kept apart from its setup (``nnblocks.train.learner``).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch

from nnblocks.train.checkpoint import apply_pending_resume
from nnblocks.train.distributed import all_reduce_sum
from nnblocks.train.events import EVENTS, STEPS

__all__ = ["Loop", "Phase"]


class _Never(Exception):
    """The cancel exception of levels that cannot be cancelled (forward, loss, backward)."""


# level -> (before event, after event, cancel event, cancel exception)
_WRAPPED: dict[str, tuple[str, str, str, type[BaseException]]] = {
    step: (f"before_{step}", f"after_{step}", f"after_cancel_{step}", exc or _Never)
    for step, exc in STEPS.items()
}


def _nothing() -> None:
    pass


# Passes outside fit (get_preds, evaluate) run with no callback and leave this state as it was.
_QUIET: dict[str, tuple[Any, ...]] = {event: () for event in EVENTS}
_PASS_STATE = (
    "phase", "training", "n_iter", "iter", "batch", "pred", "loss", "n_inputs",
    "valid_loss", "valid_metrics",
)  # fmt: skip


class Phase:
    """What one pass over a loader does: train, validate, or gather predictions.

    Args:
        loader: the batches.
        model: the module that runs (the DDP wrapper while training, else the model itself).
        training: gradients, backward and step (and train mode) or none of them.
        record: called after the loss level of each batch (what the phase keeps).
        loss: compute the loss (``get_preds`` without ``with_loss`` skips it).
        step: ``step(model, batch, n_inputs) -> pred`` in place of ``model(*inputs)``.
    """

    __slots__ = ("loader", "model", "training", "record", "loss", "step")

    def __init__(
        self,
        loader: Any,
        model: torch.nn.Module,
        *,
        training: bool,
        record: Callable[[], None],
        loss: bool = True,
        step: Callable[..., Any] | None = None,
    ):
        self.loader, self.model, self.training = loader, model, training
        self.record, self.loss, self.step = record, loss, step


class Loop:
    """The loop methods of ``Learner``; the state below is what callbacks read and change."""

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
    phase: Phase  # the pass in progress
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
    error: BaseException | None  # why the fit failed (None while it runs or when it succeeded)
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
    epoch_losses: list[torch.Tensor]  # this epoch's per-step losses, still on their device
    next_position: tuple[int, int]  # (epoch, batch) a checkpoint saved now resumes at
    frozen_bn: list[torch.nn.Module]

    # -- the one event helper ------------------------------------------------------------

    def _call(self, event: str) -> None:
        self.cbs.call(self.cbs.hooks[event], event, self)

    def _fire(self, event: str) -> None:
        if self.cbs.hooks[event]:
            self.cbs.call(self.cbs.hooks[event], event, self)

    def _with_events(
        self, fn: Callable[[], None], step: str, then: Callable[[], Any] | None = None
    ) -> None:
        """``before_<step>``, ``fn``, ``then`` (bookkeeping the after-event sees), ``after_<step>``.

        The step's cancel exception skips the rest of ``fn`` and fires ``after_cancel_<step>``.
        ``after_fit`` runs even when the fit fails, with ``error`` set, so callbacks close
        their bars and files; other levels stop at an error (nothing is saved from it).
        """
        before, after, cancelled, exc = _WRAPPED[step]
        hooks = self.cbs.hooks
        try:
            if hooks[before]:
                self._call(before)
            fn()
        except exc:
            if hooks[cancelled]:
                self._call(cancelled)
        except BaseException as error:
            if step == "fit":
                self.error = error
                self._fire(after)
            raise
        if then is not None:
            then()
        if hooks[after]:
            self._call(after)

    # -- fit, epoch, phases --------------------------------------------------------------

    def _run_fit(self) -> None:
        self.error = None
        self._with_events(self._do_fit, "fit")

    def _do_fit(self) -> None:
        # A resumed run gets its callback and RNG states back only now, after the
        # callbacks have set themselves up in before_fit.
        apply_pending_resume(self)  # type: ignore[arg-type]
        self.stop_training = False
        for epoch in range(self.start_epoch, self.n_epochs):
            self.epoch = epoch
            self._with_events(self._do_epoch, "epoch")
            self.start_iter = 0
            if self.stop_training:  # set by a callback (early stopping) to stop after an epoch
                break

    def _do_epoch(self) -> None:
        if self.start_iter == 0:
            self.epoch_losses = []
        if self.train_metrics:
            self.train_metrics.reset()
        self._enter(
            Phase(self.loaders["train"], self.train_model, training=True, record=self._record_train)
        )
        self._with_events(self._run_phase, "train", self._end_train)
        if self.loaders.get("valid") is not None:
            self._validate(self.loaders["valid"])
            self._with_events(self._run_phase, "validate", self._end_validate)  # type: ignore[arg-type]
        self._record_epoch()
        self.next_position = (self.epoch + 1, 0)

    def _enter(self, phase: Phase) -> None:
        """Start a phase: the one place that sets train or eval mode and positions the loader."""
        self.phase, self.training = phase, phase.training
        loader = phase.loader
        if phase.training:
            loader.set_epoch(self.epoch, self.start_iter)
        else:
            loader.set_epoch(0, 0)
        self.n_iter = len(loader)
        phase.model.train(phase.training)
        for m in self.frozen_bn:  # BatchNorm frozen with train_bn=False keeps its statistics
            m.eval()

    def _run_phase(self) -> None:
        loader = self.phase.loader
        with torch.inference_mode(not self.training):
            for i, batch in enumerate(loader, loader.start):
                self.iter, self.batch = i, batch
                self._with_events(self._do_batch, "batch", self._count_batch)

    # -- the one batch function (train, validate, get_preds) -----------------------------

    def _do_batch(self) -> None:
        self._with_events(self._do_forward, "forward")
        if self.phase.loss:
            self._with_events(self._do_loss, "loss")
        self.phase.record()
        if self.training:
            self._with_events(self._do_backward, "backward")
            self._with_events(self._do_step, "step")

    def _do_forward(self) -> None:
        n, step = self.n_inputs, self.phase.step
        with self.autocast:
            if step is None:
                self.pred = self.phase.model(*self.batch[:n])
            else:
                self.pred = step(self.phase.model, self.batch, n)

    def _do_loss(self) -> None:
        with self.autocast:
            self.loss = self.loss_func(self.pred, *self.batch[self.n_inputs :])

    def _do_backward(self) -> None:
        self.loss_grad.backward()

    def _do_step(self) -> None:
        self.step_fn()
        self.opt.zero_grad(set_to_none=True)

    def _count_batch(self) -> None:
        if self.training:  # after_batch sees this batch counted (checkpoints resume after it)
            self.train_step += 1
            self.next_position = (self.epoch, self.iter + 1)

    # -- what the phases record ----------------------------------------------------------

    def _record_train(self) -> None:
        self.loss_grad = self.loss  # what backward runs on; before_backward may scale it
        self.epoch_losses.append(self.loss.detach())
        if self.train_metrics:
            with torch.no_grad():
                self.train_metrics.update(self.pred, self.batch[self.n_inputs :])

    def _end_train(self) -> None:
        self.train_loss = self._epoch_loss()

    def _epoch_loss(self) -> float:
        if not self.epoch_losses:
            return float("nan")
        losses = torch.stack([x.float() for x in self.epoch_losses])
        self.loss_log.append(losses.cpu())
        total = all_reduce_sum(
            torch.stack([losses.sum(), torch.tensor(float(losses.numel()), device=losses.device)])
        )
        return float(total[0] / total[1])

    def _validate(self, loader: Any) -> None:
        """Enter an evaluation phase over ``loader``: sample-weighted loss and metrics."""
        self._loss_sum: torch.Tensor | None = None
        self._loss_count = 0
        self.metrics.reset()
        self._enter(Phase(loader, self.model, training=False, record=self._record_valid))

    def _record_valid(self) -> None:
        size = _batch_size(self.batch)
        value = self.loss.detach().float() * size
        self._loss_sum = value if self._loss_sum is None else self._loss_sum + value
        self._loss_count += size
        self.metrics.update(self.pred, self.batch[self.n_inputs :])

    def _end_validate(self) -> tuple[float, dict[str, float]]:
        """``valid_loss`` and ``valid_metrics``, reduced over processes."""
        total = self._loss_sum
        device = total.device if total is not None else torch.device("cpu")
        pair = torch.stack(
            [
                total if total is not None else torch.zeros((), device=device),
                torch.tensor(float(self._loss_count), device=device),
            ]
        )
        pair = all_reduce_sum(pair)
        self.valid_loss = float(pair[0] / pair[1]) if float(pair[1]) > 0 else float("nan")
        self.valid_metrics = self.metrics.compute() if self.metrics else {}
        return self.valid_loss, self.valid_metrics

    # -- passes outside fit (get_preds, evaluate) ----------------------------------------

    def _quiet_pass(self, enter: Callable[[], None], then: Callable[[], Any]) -> Any:
        """``enter`` a phase, run it through the batch function without callbacks, return
        ``then()``; the loop's state and the modules' train/eval modes are restored after."""
        saved = {k: self.__dict__[k] for k in _PASS_STATE if k in self.__dict__}
        modes = [(m, m.training) for m in self.model.modules()]
        hooks, self.cbs.hooks = self.cbs.hooks, _QUIET
        try:
            enter()
            self._run_phase()
            return then()
        finally:
            self.cbs.hooks = hooks
            for k in _PASS_STATE:
                self.__dict__.pop(k, None)
            self.__dict__.update(saved)
            for m, mode in modes:
                m.training = mode

    def _gather(
        self, loader: Any, *, step: Any = None, with_loss: bool = False, n_inputs: int | None = None
    ) -> tuple[list[Any], list[tuple[Any, ...]], list[torch.Tensor]]:
        """Per-batch outputs, targets and (``with_loss``) losses over ``loader``, on the CPU."""
        outs: list[Any] = []
        targets: list[tuple[Any, ...]] = []
        losses: list[torch.Tensor] = []

        def record() -> None:
            outs.append(_to_cpu(self.pred))
            targets.append(_to_cpu(tuple(self.batch[self.n_inputs :])))
            if with_loss:
                losses.append(self.loss.detach().float().cpu())

        def enter() -> None:
            if n_inputs is not None:
                self.n_inputs = n_inputs
            self._enter(
                Phase(loader, self.model, training=False, record=record, loss=with_loss, step=step)
            )

        self._quiet_pass(enter, _nothing)
        return outs, targets, losses

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


def _to_cpu(x: Any) -> Any:
    if isinstance(x, torch.Tensor):
        return x.detach().cpu()
    if isinstance(x, (tuple, list)):
        return type(x)(_to_cpu(v) for v in x)
    if isinstance(x, dict):
        return {k: _to_cpu(v) for k, v in x.items()}
    return x


def _batch_size(batch: tuple[Any, ...]) -> int:
    for t in batch:
        if isinstance(t, torch.Tensor) and t.dim() > 0:
            return int(t.shape[0])
    return 1
