"""`TeacherForcing`: schedule how often a seq2seq decoder is fed the ground truth.

Scheduled sampling (Bengio et al. 2015, "Scheduled Sampling for Sequence Prediction with
Recurrent Neural Networks") starts with full teacher forcing and decays it so the model
learns to continue from its own predictions. The paper's decays, with ``i`` the training
step (or epoch) and ``T`` the total:

- linear:           ``eps_i = max(end, start - c * i)``, ``c = (start - end) / T`` by default
- exponential:      ``eps_i = max(end, start * k ** i)``, ``k < 1`` (default: 1% of start at T)
- inverse sigmoid:  ``eps_i = end + (start - end) * k / (k + exp(i / k))``, ``k >= 1``
                    (default: the midpoint at T / 2)

plus ``constant`` and ``dynamic``: lower teacher forcing by ``step`` after each validation
that improves the monitored value, and raise it by ``step`` after ``patience`` validations
that do not (the model gets help back when it stalls).

The schedule reaches the model in one of two ways (``method``):

- ``"attribute"`` (default): the callback sets a float attribute on the model
  (``model.teacher_forcing``), the contract of the RNN seq2seq model, which samples its
  own predictions step by step; any model holding such an attribute works.
- ``"two_pass"``: scheduled sampling for decoders that see the whole target at once (the
  encoder-decoder Transformer), in two decoder passes (Mihaylova & Martins 2019,
  "Scheduled Sampling for Transformers"): a first pass ``model(src, tgt_in)`` without
  gradients gives the model's greedy prediction at every position; each input token after
  BOS is then kept with probability ``eps_i`` and otherwise replaced by the prediction for
  that position, and the training step (second pass, loss, backward) runs on the mixed
  input. It uses only the model's public forward, so any model called as
  ``model(src, tgt_in) -> logits [B, T, V]`` works; padding stays padding.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, Any

from nnblocks.errors import TrainingError
from nnblocks.train.callback import Callback
from nnblocks.train.callbacks.early_stopping import Monitor

if TYPE_CHECKING:
    from nnblocks.train.learner import Learner

__all__ = ["TeacherForcing", "teacher_forcing_value"]

_MODES = ("constant", "linear", "exponential", "inverse_sigmoid", "dynamic")
_METHODS = ("attribute", "two_pass")


def _inverse_sigmoid_k(total: float) -> float:
    """The k with k * ln(k) = total / 2: the inverse sigmoid crosses its midpoint halfway."""
    target = max(total / 2, 1e-9)
    lo, hi = 1.0, max(2.0, target + 2)
    for _ in range(100):  # bisection: k ln k is increasing for k >= 1
        mid = (lo + hi) / 2
        if mid * math.log(mid) < target:
            lo = mid
        else:
            hi = mid
    return max(1.0, (lo + hi) / 2)


def teacher_forcing_value(
    mode: str, i: float, total: float, start: float, end: float, k: float | None
) -> float:
    """The scheduled teacher-forcing ratio at step ``i`` of ``total`` (see the module docs)."""
    if mode == "constant":
        return start
    if mode == "linear":
        c = k if k is not None else (start - end) / max(total, 1)
        return max(end, start - c * i)
    if mode == "exponential":
        kk = k if k is not None else 0.01 ** (1 / max(total, 1))
        return max(end, start * kk**i)
    if mode == "inverse_sigmoid":
        kk = k if k is not None else _inverse_sigmoid_k(total)
        return end + (start - end) * kk / (kk + math.exp(min(i / kk, 700.0)))
    raise TrainingError(
        f"unknown teacher forcing mode {mode!r}; expected one of {', '.join(_MODES)}"
    )


class TeacherForcing(Callback):
    """Set ``model.<attr>`` to a scheduled teacher-forcing ratio in [0, 1].

    Args:
        mode: ``"constant"``, ``"linear"``, ``"exponential"``, ``"inverse_sigmoid"`` or
            ``"dynamic"``.
        start: the ratio at the start (1.0 = always feed the ground truth).
        end: the floor of the decays; the lower bound in dynamic mode.
        k: the decay constant of the chosen curve (see the module docs); ``None`` picks one
            that spreads the decay over the whole fit.
        per: ``"batch"`` (``i`` counts training steps) or ``"epoch"``.
        attr: the model attribute to set.
        valid_value: the ratio during validation (``None``: leave the training value).
        monitor, mode_monitor: dynamic mode: the history column and ``"min"``/``"max"``/``"auto"``.
        step: dynamic mode: how much one decision lowers or raises the ratio.
        patience: dynamic mode: validations without improvement before raising it.
        high: dynamic mode: the upper bound.
        method: ``"attribute"`` (set ``model.<attr>``) or ``"two_pass"`` (scheduled
            sampling in two decoder passes; see the module docs).
        pad_id: ``"two_pass"``: the padding id (default: ``model.pad_id``, else 0).

    Raises:
        TrainingError: an unknown mode or method; at ``before_fit``, a model without
            ``attr`` (``"attribute"``) or data with other than two model inputs
            (``"two_pass"``).

    Example:
        >>> learn.add_callbacks(TeacherForcing("inverse_sigmoid", end=0.2))
    """

    order = 15

    def __init__(
        self,
        mode: str = "linear",
        start: float = 1.0,
        end: float = 0.0,
        k: float | None = None,
        *,
        per: str = "batch",
        attr: str = "teacher_forcing",
        valid_value: float | None = 1.0,
        monitor: str = "valid_loss",
        mode_monitor: str = "auto",
        step: float = 0.05,
        patience: int = 1,
        high: float = 1.0,
        method: str = "attribute",
        pad_id: int | None = None,
    ):
        if method not in _METHODS:
            raise TrainingError(
                f"TeacherForcing method must be one of {', '.join(_METHODS)}. Received: {method!r}"
            )
        self.method, self.pad_id = method, pad_id
        if mode not in _MODES:
            raise TrainingError(
                f"TeacherForcing mode must be one of {', '.join(_MODES)}. Received: {mode!r}"
            )
        if per not in ("batch", "epoch"):
            raise TrainingError(f"TeacherForcing per must be 'batch' or 'epoch'. Received: {per!r}")
        if not (0.0 <= end <= 1.0 and 0.0 <= start <= 1.0):
            raise TrainingError(
                f"teacher forcing ratios must be in [0, 1]. Received: start={start}, end={end}"
            )
        self.mode, self.start, self.end, self.k = mode, start, end, k
        self.per, self.attr, self.valid_value = per, attr, valid_value
        self.tracker = Monitor(monitor, mode_monitor)
        self.step, self.patience, self.high = step, patience, high
        self.value = start
        self.wait = 0
        self._saved: float | None = None

    def _set(self, learn: Learner, value: float) -> None:
        if self.method == "attribute":
            setattr(learn.model, self.attr, float(value))

    def before_fit(self, learn: Learner) -> None:
        if self.method == "two_pass" and learn.n_inputs != 2:
            raise TrainingError(
                "TeacherForcing(method='two_pass') mixes the decoder input of a model called "
                f"as model(src, tgt_in), but the data gives the model {learn.n_inputs} "
                "input(s). Expected n_inputs=2."
            )
        if self.method == "attribute" and not hasattr(learn.model, self.attr):
            raise TrainingError(
                f"TeacherForcing sets `model.{self.attr}`, but {type(learn.model).__name__} has no "
                f"attribute `{self.attr}`. Give the model a float attribute `{self.attr}` (1.0 = "
                "always feed the ground truth) that its forward pass reads."
            )
        self.value, self.wait, self.tracker.best = self.start, 0, None
        self._set(learn, self.value)

    def current(self, learn: Learner) -> float:
        """The ratio for the present training step."""
        if self.mode == "dynamic":
            return self.value
        if self.per == "batch":
            i, total = learn.train_step, learn.total_steps
        else:
            i, total = learn.epoch, learn.n_epochs
        return teacher_forcing_value(self.mode, i, total, self.start, self.end, self.k)

    def before_batch(self, learn: Learner) -> None:
        if learn.training:
            self.value = self.current(learn)
            self._set(learn, self.value)
            if self.method == "two_pass" and self.value < 1.0:
                src, tgt_in, *rest = learn.batch
                learn.batch = (src, self.mix(learn.model, src, tgt_in, self.value), *rest)

    def mix(self, model: Any, src: Any, tgt_in: Any, keep: float) -> Any:
        """``tgt_in`` with each token after BOS replaced, with probability ``1 - keep``, by
        the model's greedy prediction for that position (first of the two passes).

        Args:
            model: called as ``model(src, tgt_in) -> [B, T, V]``.
            src: ``[B, S]``; tgt_in: ``[B, T]`` (BOS first).
            keep: the probability of keeping a gold token.

        Returns:
            The mixed decoder input ``[B, T]``.
        """
        import torch

        with torch.no_grad():
            guess = model(src, tgt_in).argmax(-1)  # [B, T]: position t predicts token t+1
        predicted = torch.cat([tgt_in[:, :1], guess[:, :-1]], dim=1)  # the input at t
        pad = self.pad_id if self.pad_id is not None else int(getattr(model, "pad_id", 0))
        gold = torch.rand(tgt_in.shape, device=tgt_in.device) < keep
        gold[:, 0] = True  # BOS stays
        gold |= tgt_in == pad  # padding stays padding (and masked as such)
        return torch.where(gold, tgt_in, predicted)

    def before_validate(self, learn: Learner) -> None:
        if self.valid_value is not None:
            self._set(learn, self.valid_value)

    def after_validate(self, learn: Learner) -> None:
        if self.mode == "dynamic":
            value = learn.valid_metrics.get(
                self.tracker.monitor,
                learn.valid_loss if self.tracker.monitor == "valid_loss" else None,
            )
            if value is None:
                raise TrainingError(
                    f"TeacherForcing(dynamic) monitors `{self.tracker.monitor}`, which validation "
                    f"does not report. It reports: valid_loss, {', '.join(learn.valid_metrics)}"
                )
            if self.tracker.improved(float(value)):
                self.value, self.wait = max(self.end, self.value - self.step), 0
            else:
                self.wait += 1
                if self.wait >= self.patience:
                    self.value, self.wait = min(self.high, self.value + self.step), 0
        self._set(learn, self.value)

    def after_epoch(self, learn: Learner) -> None:
        learn.history[-1]["teacher_forcing"] = self.value

    def state_dict(self) -> dict[str, Any]:
        return {"value": self.value, "wait": self.wait, "best": self.tracker.best}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.value = float(state["value"])
        self.wait = int(state["wait"])
        self.tracker.best = state["best"]
