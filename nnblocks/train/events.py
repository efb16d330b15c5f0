"""The training loop's events and the exceptions that let a callback cancel part of it.

The loop is nested: fit -> epoch -> train / validate -> batch, and a batch runs forward ->
loss, then (training only) backward -> step. Validation batches go through the same batch
function as training batches, so they fire forward and loss events too (``learn.training``
tells them apart). Each level fires ``before_<level>`` and ``after_<level>``; the levels a
callback may cancel fire ``after_cancel_<level>`` and then ``after_<level>`` when cancelled.
This list is the single source of truth: the Learner precomputes, for every event, the
callbacks that override it, so an event nobody overrides costs a lookup and no call.

=====================  =========================================================
event                  the Learner's state a callback may read or change
=====================  =========================================================
before_fit             ``n_epochs``, ``total_steps``, ``opt``, ``loaders``
before_epoch           ``epoch``
before_train           model in train mode; ``n_iter``
before_batch           ``batch`` (replace it to change what the model sees)
before_forward         ``inputs``
after_forward          ``pred`` (replace it to change what the loss sees)
before_loss            ``pred``, ``targets``
after_loss             ``loss`` (replace it to change what is recorded/back-propagated)
before_backward        ``loss_grad`` (what ``backward`` runs on; scale it here)
after_backward         gradients in ``.grad``
before_step            raise ``CancelStep`` to skip this step and keep the gradients
after_step             parameters updated (unless the step was cancelled), gradients
                       cleared
after_batch            ``iter`` is this batch's index; ``train_step`` counts it
after_train            ``train_loss`` of the epoch
before_validate        model in eval mode (batches run under inference mode)
after_validate         ``valid_loss``, ``valid_metrics``
after_epoch            ``history[-1]`` holds the epoch's row; set ``stop_training``
                       to end the fit after this epoch
after_fit              training finished (also after ``CancelFit``)
=====================  =========================================================

Cancel exceptions: ``CancelBatch`` (skip the rest of a batch), ``CancelStep`` (skip the
optimizer step and the zeroing of gradients), ``CancelTrain``, ``CancelValidate``,
``CancelEpoch`` and ``CancelFit`` (stop training cleanly; ``after_fit`` still runs).
"""

from __future__ import annotations


class CancelBatch(Exception):
    """Raised by a callback to skip the rest of the current batch."""


class CancelStep(Exception):
    """Raised in ``before_step`` to skip the optimizer step and keep the gradients."""


class CancelTrain(Exception):
    """Raised by a callback to end the training phase of the current epoch."""


class CancelValidate(Exception):
    """Raised by a callback to skip (the rest of) validation."""


class CancelEpoch(Exception):
    """Raised by a callback to end the current epoch."""


class CancelFit(Exception):
    """Raised by a callback to stop training; ``after_fit`` still runs."""


# The nested levels of the loop and the cancel exception of each (None: cannot be cancelled).
STEPS: dict[str, type[Exception] | None] = {
    "fit": CancelFit,
    "epoch": CancelEpoch,
    "train": CancelTrain,
    "validate": CancelValidate,
    "batch": CancelBatch,
    "forward": None,
    "loss": None,
    "backward": None,
    "step": CancelStep,
}

EVENTS: tuple[str, ...] = tuple(
    event
    for step, cancel in STEPS.items()
    for event in (
        (f"before_{step}", f"after_{step}")
        + ((f"after_cancel_{step}",) if cancel is not None else ())
    )
)

# Every cancel exception: they pass through a callback's error wrapping to the loop.
CANCELS: tuple[type[Exception], ...] = tuple(c for c in STEPS.values() if c is not None)
