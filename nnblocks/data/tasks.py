"""Tasks: what the data asks of a model — its loss, metrics, model arguments, evaluation.

A dataset part returns a ``DataBundle`` whose ``.task`` is one of these. The Learner takes
``task.loss`` and ``task.metrics`` as defaults; a recipe builds the model with
``task.model_args`` as defaults (``num_classes``, ``vocab_size``, ``pad_id``...);
``task.evaluate(model, split="test")`` gives the task-level numbers after training; and
``task.decode_example(sample, prediction)`` turns tensors back into what a person reads.

=========================  =========================================  ==========================
task (``.name``)           batch (inputs..., targets...)              loss / training metric
=========================  =========================================  ==========================
classification             ``x [B, ...]``, ``y [B]`` long             cross-entropy / accuracy
multilabel                 ``x [B, ...]``, ``y [B, L]`` float 0/1      BCE with logits / accuracy
regression                 ``x [B, ...]``, ``y [B, K]`` float          MSE / MAE (original units)
seq2seq                    ``src [B, S]``, ``tgt_in [B, T]``, ``tgt_out [B, T]``   CE ignoring pad / token acc.
lm                         ``tokens [B, T]``, ``next [B, T]``          CE ignoring pad / token acc.
sequence_classification    ``tokens [B, T]``, ``y [B]``                cross-entropy / accuracy
=========================  =========================================  ==========================
"""

from __future__ import annotations

import functools
import math
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import torch
from torch import nn

from nnblocks.data.losses_and_metrics import (
    MeanAbsoluteError,
    MultiLabelAccuracy,
    SequenceCrossEntropy,
    TokenAccuracy,
)
from nnblocks.data.tensors import TensorData
from nnblocks.errors import DataError

Renderer = Callable[[Sequence[torch.Tensor]], str]
# gather(data, step, batch_size) -> (per-batch step values, per-batch target tuples)
Gather = Callable[..., tuple[Any, ...]]


class Task:
    """Base of every task.

    Attributes:
        name: ``"classification"``, ``"multilabel"``, ``"regression"``, ``"seq2seq"``,
            ``"lm"`` or ``"sequence_classification"``.
        loss: ``loss(output, *targets) -> 0-d tensor``.
        metrics: per-batch metrics for the Learner (names or callables).
        model_args: defaults offered to the model spec.
        input_kind: ``"image"``, ``"table"``, ``"tokens"`` or ``"vector"`` (for display).
        collate: a collate function for data that is not a ``TensorData`` (or None).
    """

    name = "task"
    collate: Callable[..., Any] | None = None
    eval_batch_size = 512  # ``evaluate``'s default examples per forward pass

    def __init__(
        self,
        *,
        model_args: Mapping[str, Any] | None = None,
        input_kind: str = "vector",
        render_input: Renderer | None = None,
    ):
        self.model_args: dict[str, Any] = dict(model_args or {})
        self.input_kind = input_kind
        self._render_input = render_input
        self._splits: dict[str, Any] = {}
        self.loss: Callable[..., torch.Tensor] = nn.MSELoss()
        self.metrics: list[Any] = []

    # -- data access ----------------------------------------------------------------------
    def bind(self, splits: Mapping[str, Any]) -> None:
        """Attach the bundle's splits, so ``evaluate(model, split="test")`` finds them."""
        self._splits = {k: v for k, v in splits.items() if v is not None}

    def split_data(self, split: str | Any) -> Any:
        """The data of a split name (``"test"``), or ``split`` itself if it is data.

        Raises:
            DataError: an unknown split name.
        """
        if not isinstance(split, str):
            return split
        if split not in self._splits:
            raise DataError(
                f"task `{self.name}` has no `{split}` split. Known splits: {sorted(self._splits) or '(none)'}"
            )
        return self._splits[split]

    @staticmethod
    def _n_inputs(data: Any) -> int:
        return int(getattr(data, "n_inputs", 1))

    def predict_step(self, model: nn.Module, batch: Sequence[Any], n_inputs: int) -> Any:
        """The prediction a person reads for one batch (``show_results``): the model's output.

        Args:
            model: the model (in eval mode, under inference mode).
            batch: inputs then targets, on the model's device.
            n_inputs: how many of ``batch`` are inputs.
        """
        return model(*batch[:n_inputs])

    def predictions(
        self,
        model: nn.Module,
        data: Any,
        step: Callable[..., Any],
        *,
        batch_size: int,
        device: Any = None,
        gather: Gather | None = None,
    ) -> tuple[list[Any], list[tuple[torch.Tensor, ...]]]:
        """Per-batch ``step(model, batch, n_inputs)`` values and targets over ``data``, in order.

        Args:
            model: the model.
            data: the split's data.
            step: what to compute per batch (small values: a task reduces logits in it).
            batch_size: examples per batch.
            device: where to run without ``gather`` (default: the model's device).
            gather: ``gather(data, step, batch_size) -> (values, targets)``: the Learner's
                ``get_preds`` (its loaders, batch function, autocast), which
                ``Learner.evaluate`` and recipes pass. Without it (a bare model) the
                batches are taken in order here, in eval mode.
        """
        if gather is not None:
            values, targets = gather(data, step, batch_size)[:2]
            return list(values), list(targets)
        return _in_order(model, data, step, batch_size, device, self.collate)

    def evaluate(
        self,
        model: nn.Module,
        split: str | Any = "test",
        *,
        batch_size: int | None = None,
        device: Any = None,
        gather: Gather | None = None,
    ) -> dict[str, float]:
        """Task-level metrics of ``model`` on a split (after training), from its predictions.

        Args:
            model: the trained model (run in eval mode; its mode is restored after).
            split: a split name (``"test"``, ``"valid"``, ``"long"``...) or data.
            batch_size: examples per forward pass (default: ``eval_batch_size``).
            device: where to run without ``gather`` (default: the model's device).
            gather: where the predictions come from (see ``predictions``).

        Returns:
            the task's metrics (its ``_score``): classification ``accuracy, f1_macro, loss,
            n``; multilabel ``accuracy, f1_macro, exact_match, n``; regression ``mse, mae,
            r2, n`` (original units); lm ``loss, perplexity, accuracy, tokens``; seq2seq
            ``exact_match, token_accuracy, loss, n``.

        Raises:
            DataError: an unknown or empty split.
        """
        values, targets = self._eval_predictions(
            model, split, self.split_data(split), self._eval_step,
            batch_size=batch_size, device=device, gather=gather,
        )  # fmt: skip
        return self._score(values, targets)

    def _eval_predictions(
        self,
        model: nn.Module,
        split: str | Any,
        data: Any,
        step: Callable[..., Any],
        *,
        batch_size: int | None,
        device: Any,
        gather: Gather | None,
    ) -> tuple[list[Any], list[tuple[torch.Tensor, ...]]]:
        """``predictions`` for ``evaluate``: ``split`` names the data in the error if empty."""
        values, targets = self.predictions(
            model, data, step, batch_size=batch_size or self.eval_batch_size, device=device,
            gather=gather,
        )  # fmt: skip
        if not values:
            raise DataError(f"cannot evaluate on the `{split}` split: it is empty.")
        return values, targets

    def _eval_step(self, model: nn.Module, batch: Sequence[Any], n_inputs: int) -> Any:
        """One batch's share of ``evaluate`` (default: the model's output)."""
        return model(*batch[:n_inputs])

    def _score(
        self, values: list[Any], targets: list[tuple[torch.Tensor, ...]]
    ) -> dict[str, float]:
        """The task's numbers from the per-batch ``_eval_step`` values and targets."""
        raise NotImplementedError

    # -- display --------------------------------------------------------------------------
    def render_input(self, inputs: Sequence[torch.Tensor]) -> str:
        if self._render_input is not None:
            return self._render_input(inputs)
        x = inputs[0]
        if self.input_kind == "image":
            return f"image {list(x.shape)}"
        values = x.flatten().tolist()
        shown = ", ".join(f"{v:.3g}" if isinstance(v, float) else str(v) for v in values[:8])
        return f"[{shown}{', ...' if len(values) > 8 else ''}]"

    def render_target(self, targets: Sequence[torch.Tensor]) -> str:
        return str(targets[0].tolist())

    def render_prediction(self, output: torch.Tensor) -> str:
        return str(output.tolist())

    def decode_example(
        self,
        sample: Sequence[torch.Tensor],
        prediction: torch.Tensor | None = None,
        *,
        n_inputs: int | None = None,
    ) -> dict[str, str]:
        """Turn one example (and the model's output for it) into readable strings.

        Args:
            sample: the example's tensors, inputs then targets (``data[i]``), no batch axis.
            prediction: the model's output for this example, no batch axis (logits or, for
                seq2seq, generated ids), or None.
            n_inputs: how many of ``sample`` are inputs (default: the bound data's).

        Returns:
            ``{"input": ..., "target": ..., "prediction": ...}`` (no "prediction" without one).
        """
        if n_inputs is None:
            n_inputs = self._n_inputs(next(iter(self._splits.values()), None))
        out = {"input": self.render_input(sample[:n_inputs])}
        if len(sample) > n_inputs:
            out["target"] = self.render_target(sample[n_inputs:])
        if prediction is not None:
            out["prediction"] = self.render_prediction(prediction)
        return out

    def describe(self) -> dict[str, Any]:
        """Plain data about the task (saved beside a model)."""
        return {"name": self.name, "model_args": dict(self.model_args)}

    def __repr__(self) -> str:
        args = ", ".join(f"{k}={v!r}" for k, v in self.model_args.items())
        return f"{type(self).__name__}({args})"


def _device_of(model: nn.Module) -> torch.device:
    for p in model.parameters():
        return p.device
    for b in model.buffers():
        return b.device
    return torch.device("cpu")


def _outputs_and_targets(
    outputs: list[torch.Tensor], targets: list[tuple[torch.Tensor, ...]]
) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-batch outputs and targets -> all outputs (float) and last targets, on one device."""
    out = torch.cat([o.float() for o in outputs])
    return out, torch.cat([t[-1] for t in targets]).to(out.device)


def _in_order(
    model: nn.Module,
    data: Any,
    step: Callable[..., Any],
    batch_size: int,
    device: Any,
    collate: Any,
) -> tuple[list[Any], list[tuple[torch.Tensor, ...]]]:
    """``predictions`` for a bare model (no Learner): batches in order, eval mode."""
    n_inputs = int(getattr(data, "n_inputs", 1))
    device = _device_of(model) if device is None else torch.device(device)
    if isinstance(data, TensorData):
        plain = data.plain() if hasattr(data, "plain") else data  # never augment evaluation
        batches: Any = (plain[i : i + batch_size] for i in range(0, len(plain), batch_size))
    else:
        from torch.utils.data import DataLoader

        batches = DataLoader(data, batch_size=batch_size, shuffle=False, collate_fn=collate)
    values, targets = [], []
    was_training = model.training
    model.eval()
    try:
        with torch.inference_mode():
            for batch in batches:
                batch = tuple(t.to(device) for t in batch)
                values.append(step(model, batch, n_inputs))
                targets.append(batch[n_inputs:])
    finally:
        model.train(was_training)
    return values, targets


def _labels(labels: Sequence[Any] | None, n: int) -> list[str]:
    return [str(c) for c in labels] if labels is not None else [str(i) for i in range(n)]


class ClassificationTask(Task):
    """Single-label classification: one class per example.

    Args:
        num_classes: number of classes (the model's output width).
        classes: class names, index = label id (default "0", "1", ...).
        label_smoothing: of the cross-entropy loss (Szegedy et al. 2016).
        model_args: further model defaults (``in_features``, ``in_channels``...).
        input_kind, render_input: how inputs are shown.

    Example:
        >>> task = ClassificationTask(3, classes=["a", "b", "c"])
        >>> task.render_prediction(torch.tensor([0.1, 2.0, 0.3]))
        'b (0.75)'
    """

    name = "classification"

    def __init__(
        self,
        num_classes: int,
        *,
        classes: Sequence[Any] | None = None,
        label_smoothing: float = 0.0,
        model_args: Mapping[str, Any] | None = None,
        input_kind: str = "vector",
        render_input: Renderer | None = None,
    ):
        super().__init__(
            model_args={"num_classes": num_classes, **(model_args or {})},
            input_kind=input_kind,
            render_input=render_input,
        )
        self.num_classes = num_classes
        self.classes = _labels(classes, num_classes)
        self.loss = nn.CrossEntropyLoss(label_smoothing=label_smoothing)
        self.metrics = ["accuracy"]

    def render_target(self, targets: Sequence[torch.Tensor]) -> str:
        return self.classes[int(targets[0])]

    def render_prediction(self, output: torch.Tensor) -> str:
        probs = output.float().softmax(-1)
        k = int(probs.argmax())
        return f"{self.classes[k]} ({float(probs[k]):.2f})"

    def _score(
        self, values: list[Any], targets: list[tuple[torch.Tensor, ...]]
    ) -> dict[str, float]:
        """Accuracy, macro F1 and mean loss: ``{"accuracy", "f1_macro", "loss", "n"}``."""
        from torchmetrics.functional.classification import multiclass_accuracy, multiclass_f1_score

        out, y = _outputs_and_targets(values, targets)
        c = self.num_classes
        return {
            "accuracy": float(multiclass_accuracy(out, y, num_classes=c, average="micro")),
            "f1_macro": float(multiclass_f1_score(out, y, num_classes=c, average="macro")),
            "loss": float(nn.functional.cross_entropy(out, y)),
            "n": len(y),
        }

    def describe(self) -> dict[str, Any]:
        return {**super().describe(), "classes": list(self.classes)}


class SequenceClassificationTask(ClassificationTask):
    """Classification of a token sequence (``tokens [B, T]`` -> ``[B, C]``).

    Args:
        num_classes, classes, label_smoothing: as ``ClassificationTask``.
        tokenizer: the input tokenizer (decodes inputs; gives ``vocab_size`` and ``pad_id``).
        max_len: the longest input sequence (offered as the model's ``max_len``).
    """

    name = "sequence_classification"

    def __init__(
        self,
        num_classes: int,
        *,
        tokenizer: Any,
        classes: Sequence[Any] | None = None,
        label_smoothing: float = 0.0,
        max_len: int | None = None,
    ):
        args: dict[str, Any] = {"vocab_size": tokenizer.vocab_size, "pad_id": tokenizer.pad_id}
        if max_len is not None:
            args["max_len"] = max_len
        super().__init__(
            num_classes,
            classes=classes,
            label_smoothing=label_smoothing,
            model_args=args,
            input_kind="tokens",
            render_input=lambda inputs: tokenizer.decode(inputs[0]),
        )
        self.tokenizer = tokenizer

    def describe(self) -> dict[str, Any]:
        return {**super().describe(), "tokenizer": self.tokenizer.to_dict()}


class MultiLabelTask(Task):
    """Multi-label classification: any subset of ``labels`` per example (targets 0/1).

    Args:
        labels: label names (the model's output width is ``len(labels)``).
        threshold: decision threshold on the sigmoid.
        model_args, input_kind, render_input: as ``ClassificationTask``.
    """

    name = "multilabel"

    def __init__(
        self,
        labels: Sequence[Any],
        *,
        threshold: float = 0.5,
        model_args: Mapping[str, Any] | None = None,
        input_kind: str = "vector",
        render_input: Renderer | None = None,
    ):
        super().__init__(
            model_args={"num_classes": len(labels), **(model_args or {})},
            input_kind=input_kind,
            render_input=render_input,
        )
        self.labels = [str(x) for x in labels]
        self.threshold = threshold
        self.loss = nn.BCEWithLogitsLoss()
        self.metrics = [MultiLabelAccuracy(threshold)]

    def _names(self, chosen: torch.Tensor) -> str:
        names = [self.labels[i] for i in chosen.nonzero().flatten().tolist()]
        return ";".join(names) if names else "(none)"

    def render_target(self, targets: Sequence[torch.Tensor]) -> str:
        return self._names(targets[0] > 0.5)

    def render_prediction(self, output: torch.Tensor) -> str:
        return self._names(torch.sigmoid(output.float()) > self.threshold)

    def _score(
        self, values: list[Any], targets: list[tuple[torch.Tensor, ...]]
    ) -> dict[str, float]:
        """Per-decision accuracy, macro F1 and exact (whole-set) match: ``{"accuracy",
        "f1_macro", "exact_match", "n"}``."""
        from torchmetrics.functional.classification import multilabel_accuracy, multilabel_f1_score

        out, y = _outputs_and_targets(values, targets)
        y = y.long()
        n, th = len(self.labels), self.threshold
        exact = ((torch.sigmoid(out) > self.threshold) == (y > 0)).all(1).float().mean()
        return {
            "accuracy": float(
                multilabel_accuracy(out.sigmoid(), y, num_labels=n, threshold=th, average="micro")
            ),
            "f1_macro": float(
                multilabel_f1_score(out.sigmoid(), y, num_labels=n, threshold=th, average="macro")
            ),
            "exact_match": float(exact),
            "n": len(y),
        }

    def describe(self) -> dict[str, Any]:
        return {**super().describe(), "labels": list(self.labels), "threshold": self.threshold}


class RegressionTask(Task):
    """Regression of one or several continuous targets (``y [B, K]``).

    Targets are usually normalised with training statistics (``target_scaler``, a fitted
    ``Normalize``) so the loss is well scaled; the MAE metric and ``evaluate`` report in
    the original units.

    Args:
        target_names: the K target names (the model's ``out_features``).
        target_scaler: the fitted target normalisation, or None.
        model_args, input_kind, render_input: as ``ClassificationTask``.
    """

    name = "regression"

    def __init__(
        self,
        target_names: Sequence[str],
        *,
        target_scaler: Any = None,
        model_args: Mapping[str, Any] | None = None,
        input_kind: str = "vector",
        render_input: Renderer | None = None,
    ):
        super().__init__(
            model_args={"out_features": len(target_names), **(model_args or {})},
            input_kind=input_kind,
            render_input=render_input,
        )
        self.target_names = list(target_names)
        self.target_scaler = target_scaler
        self.loss = nn.MSELoss()
        scale = target_scaler.std.flatten() if target_scaler is not None else None
        self.metrics = [MeanAbsoluteError(scale)]

    def _original(self, y: torch.Tensor) -> torch.Tensor:
        return self.target_scaler.inverse(y) if self.target_scaler is not None else y

    def _show(self, y: torch.Tensor) -> str:
        values = self._original(y.float().reshape(1, -1))[0].tolist()
        return ", ".join(f"{n}={v:.4g}" for n, v in zip(self.target_names, values))

    def render_target(self, targets: Sequence[torch.Tensor]) -> str:
        return self._show(targets[0])

    def render_prediction(self, output: torch.Tensor) -> str:
        return self._show(output)

    def _score(
        self, values: list[Any], targets: list[tuple[torch.Tensor, ...]]
    ) -> dict[str, float]:
        """MSE, MAE and R² in the targets' original units (averaged over targets):
        ``{"mse", "mae", "r2", "n"}``."""
        from torchmetrics.functional import mean_absolute_error, mean_squared_error, r2_score

        out, y = _outputs_and_targets(values, targets)
        out, y = out.reshape(len(out), -1), y.float().reshape(len(y), -1)  # [N, K]
        p, y = self._original(out), self._original(y)
        return {
            "mse": float(mean_squared_error(p, y)),
            "mae": float(mean_absolute_error(p, y)),
            "r2": float(r2_score(p, y)) if len(y) > 1 else math.nan,
            "n": len(y),
        }

    def describe(self) -> dict[str, Any]:
        scaler = self.target_scaler.to_dict() if self.target_scaler is not None else None
        return {**super().describe(), "target_names": self.target_names, "target_scaler": scaler}


def _cut_at_eos(ids: torch.Tensor, eos_id: int, pad_id: int, *, mark_pad: bool) -> torch.Tensor:
    """``[B, L]`` ids -> the same with everything after the first EOS set to pad.

    The EOS itself is kept, so a sequence cut short before its EOS does not match. With
    ``mark_pad`` a pad *generated* before the EOS becomes -1, so it counts as a wrong token
    instead of silently matching the target's padding.
    """
    is_eos = (ids == eos_id).long()
    after = (is_eos.cumsum(1) - is_eos) > 0  # strictly after the first EOS
    if mark_pad:
        ids = ids.masked_fill((ids == pad_id) & ~after, -1)
    return ids.masked_fill(after, pad_id)


def _token_ids(output: torch.Tensor) -> torch.Tensor:
    """Token ids from logits ``[..., V]`` (argmax), or ``output`` itself if it holds ids."""
    return output.argmax(-1) if output.is_floating_point() else output


def _special_ids(tokenizer: Any) -> dict[str, Any]:
    """The ``pad_id``, ``bos_id`` and ``eos_id`` a token model takes from its tokenizer."""
    return {"pad_id": tokenizer.pad_id, "bos_id": tokenizer.bos_id, "eos_id": tokenizer.eos_id}


def _token_step(
    loss: Callable[..., torch.Tensor], logits: torch.Tensor, target: torch.Tensor, pad_id: int
) -> dict[str, Any]:
    """A token task's per-batch values for ``evaluate`` (small, so no logits are kept).

    Args:
        loss: the task's loss (a mean over non-pad tokens).
        logits: ``[B, T, V]``.
        target: ``[B, T]`` ids, ``pad_id`` where there is no token.
    """
    real = (target != pad_id).sum()
    return {
        "ids": logits.argmax(-1),
        "target": target,
        "classes": logits.shape[-1],
        "loss_sum": loss(logits.float(), target) * real,
        "tokens": real,
    }


def _token_accuracy(values: list[dict[str, Any]], pad_id: int) -> float:
    """Micro accuracy of predicted ids over non-pad target tokens, from per-batch values."""
    from torchmetrics.classification import MulticlassAccuracy

    classes = max(int(v["classes"]) for v in values)
    acc = MulticlassAccuracy(num_classes=classes, average="micro", ignore_index=pad_id)
    for v in values:
        acc.update(v["ids"].cpu(), v["target"].cpu())
    return float(acc.compute())


def exact_match(
    generated: torch.Tensor, target: torch.Tensor, *, bos_id: int, eos_id: int, pad_id: int
) -> torch.Tensor:
    """``[B]`` bool: generated ids equal the target ids up to EOS.

    Args:
        generated: ``[B, L]`` ids from a decoder; a leading BOS column is ignored.
        target: ``[B, T]`` reference ids (``tgt_out``: ending with EOS, then pad).
    """
    if generated.shape[1] and bool((generated[:, 0] == bos_id).all()):
        generated = generated[:, 1:]
    g = _cut_at_eos(generated, eos_id, pad_id, mark_pad=True)
    t = _cut_at_eos(target, eos_id, pad_id, mark_pad=False)
    width = max(g.shape[1], t.shape[1])
    g = nn.functional.pad(g, (0, width - g.shape[1]), value=pad_id)
    t = nn.functional.pad(t, (0, width - t.shape[1]), value=pad_id)
    return (g == t).all(dim=1)


class Seq2SeqTask(Task):
    """Sequence to sequence: ``(src, tgt_in, tgt_out)`` with ``n_inputs=2``.

    ``tgt_in`` starts with BOS, ``tgt_out`` is the same sequence shifted left, ending with
    EOS; padding fills the rest. The model sees ``(src, tgt_in)`` (teacher forcing) and
    returns logits ``[B, T, V]``; the loss is cross-entropy over non-pad target tokens.

    Args:
        src_tokenizer, tgt_tokenizer: fitted tokenizers (shared specials: pad 0, bos 1,
            eos 2, unk 3).
        max_len: the longest source or target sequence of any split (offered as the
            model's ``max_len``, so position tables cover every split).
        label_smoothing: of the loss.
    """

    name = "seq2seq"

    def __init__(
        self, src_tokenizer: Any, tgt_tokenizer: Any, *, max_len: int, label_smoothing: float = 0.0
    ):
        tgt = tgt_tokenizer
        super().__init__(
            model_args={
                "src_vocab_size": src_tokenizer.vocab_size,
                "tgt_vocab_size": tgt.vocab_size,
                **_special_ids(tgt),
                "max_len": max_len,
            },
            input_kind="tokens",
        )
        self.src_tokenizer, self.tgt_tokenizer = src_tokenizer, tgt_tokenizer
        self.loss = SequenceCrossEntropy(tgt.pad_id, label_smoothing=label_smoothing)
        self.metrics = [TokenAccuracy(tgt.pad_id)]

    def render_input(self, inputs: Sequence[torch.Tensor]) -> str:
        return self.src_tokenizer.decode(inputs[0])

    def render_target(self, targets: Sequence[torch.Tensor]) -> str:
        return self.tgt_tokenizer.decode(targets[-1])

    def render_prediction(self, output: torch.Tensor) -> str:
        return self.tgt_tokenizer.decode(_token_ids(output))

    def decode_example(
        self,
        sample: Sequence[torch.Tensor],
        prediction: torch.Tensor | None = None,
        *,
        n_inputs: int | None = None,
    ) -> dict[str, str]:
        return super().decode_example(
            sample, prediction, n_inputs=2 if n_inputs is None else n_inputs
        )

    def generate(
        self,
        model: nn.Module,
        src: torch.Tensor,
        *,
        max_new_tokens: int,
        decode: Callable[..., torch.Tensor] | None = None,
    ) -> torch.Tensor:
        """Decode ``src [B, S]`` with ``decode(model, src, max_new_tokens=...)`` (greedy by default)."""
        if decode is None:
            from nnblocks.generate import greedy

            decode = greedy
        return decode(model, src, max_new_tokens=max_new_tokens)

    def evaluate(
        self,
        model: nn.Module,
        split: str | Any = "test",
        *,
        batch_size: int | None = None,
        device: Any = None,
        decode: Callable[..., torch.Tensor] | None = None,
        limit: int | None = None,
        gather: Gather | None = None,
    ) -> dict[str, float]:
        """Exact match of decoded sequences, plus teacher-forced loss and token accuracy.

        Args:
            model: a model with the decoding protocol (docs/interfaces.md).
            split: a split name or data.
            batch_size: sequences decoded at once.
            device: where to run without ``gather`` (default: the model's device).
            gather: where the predictions come from (see ``Task.predictions``).
            decode: ``decode(model, src, max_new_tokens=...) -> ids [B, L]``; default
                ``nnblocks.generate.greedy`` (pass a beam search to compare).
            limit: evaluate only the first ``limit`` examples.

        Returns:
            ``{"exact_match", "token_accuracy", "loss", "n"}``.
        """
        data = self.split_data(split)
        if limit is not None:
            data = data.subset(torch.arange(min(limit, len(data))))
        step = functools.partial(self._eval_step, decode=decode)
        values, targets = self._eval_predictions(
            model, split, data, step, batch_size=batch_size, device=device, gather=gather
        )
        return self._score(values, targets)

    def _score(
        self, values: list[Any], targets: list[tuple[torch.Tensor, ...]]
    ) -> dict[str, float]:
        """Exact match, token accuracy and loss from the per-batch ``_eval_step`` values."""
        match = torch.cat([v["match"] for v in values])
        tokens = sum(int(v["tokens"]) for v in values)
        return {
            "exact_match": float(match.float().mean()),
            "token_accuracy": _token_accuracy(values, self.tgt_tokenizer.pad_id),
            "loss": float(sum(v["loss_sum"] for v in values)) / max(tokens, 1),
            "n": len(match),
        }

    def _eval_step(
        self,
        model: nn.Module,
        batch: Sequence[torch.Tensor],
        n_inputs: int,
        *,
        decode: Callable[..., torch.Tensor] | None = None,
    ) -> dict[str, Any]:
        """One batch's share of ``evaluate``: small values, so no logits are kept."""
        src, tgt_out, tok = batch[0], batch[-1], self.tgt_tokenizer
        logits = model(*batch[:n_inputs])  # teacher-forced [B, T, V]
        # tgt_out's width covers the longest target and its EOS: enough to judge every row
        generated = self.generate(model, src, max_new_tokens=tgt_out.shape[1], decode=decode)
        match = exact_match(
            generated, tgt_out, bos_id=tok.bos_id, eos_id=tok.eos_id, pad_id=tok.pad_id
        )
        return {**_token_step(self.loss, logits, tgt_out, tok.pad_id), "match": match}

    def predict_step(self, model: nn.Module, batch: Sequence[Any], n_inputs: int) -> Any:
        """What greedy decoding answers (not teacher-forced logits): ids ``[B, L]``."""
        width = batch[-1].shape[1] + 1 if len(batch) > n_inputs else self.model_args["max_len"]
        return self.generate(model, batch[0], max_new_tokens=width)

    def describe(self) -> dict[str, Any]:
        return {
            **super().describe(),
            "src_tokenizer": self.src_tokenizer.to_dict(),
            "tgt_tokenizer": self.tgt_tokenizer.to_dict(),
        }


class LanguageModelTask(Task):
    """Next-token prediction: ``(tokens [B, T], next [B, T])``, ``next`` = tokens shifted left.

    Args:
        tokenizer: the fitted tokenizer.
        block_size: tokens per example (offered as the model's ``max_len``).
    """

    name = "lm"
    eval_batch_size = 64  # [B, T, V] logits per batch: fewer rows than a classifier's

    def __init__(self, tokenizer: Any, *, block_size: int):
        super().__init__(
            model_args={
                "vocab_size": tokenizer.vocab_size,
                **_special_ids(tokenizer),
                "max_len": block_size,
            },
            input_kind="tokens",
        )
        self.tokenizer = tokenizer
        self.block_size = block_size
        self.loss = SequenceCrossEntropy(tokenizer.pad_id)
        self.metrics = [TokenAccuracy(tokenizer.pad_id)]

    def render_input(self, inputs: Sequence[torch.Tensor]) -> str:
        return self.tokenizer.decode(inputs[0], stop_at_eos=False)

    def render_target(self, targets: Sequence[torch.Tensor]) -> str:
        return self.tokenizer.decode(targets[0], stop_at_eos=False)

    def render_prediction(self, output: torch.Tensor) -> str:
        return self.tokenizer.decode(_token_ids(output), stop_at_eos=False)

    def _score(
        self, values: list[Any], targets: list[tuple[torch.Tensor, ...]]
    ) -> dict[str, float]:
        """Mean loss per token, perplexity (exp of the loss) and next-token accuracy:
        ``{"loss", "perplexity", "accuracy", "tokens"}``."""
        tokens = sum(int(v["tokens"]) for v in values)
        loss_sum = float(sum(v["loss_sum"] for v in values))
        loss = loss_sum / max(tokens, 1)
        return {
            "loss": loss,
            "perplexity": math.exp(min(loss, 50.0)),
            "accuracy": _token_accuracy(values, self.tokenizer.pad_id),
            "tokens": tokens,
        }

    def _eval_step(
        self, model: nn.Module, batch: Sequence[torch.Tensor], n_inputs: int
    ) -> dict[str, Any]:
        """One batch's share of ``evaluate``: small values, so no logits are kept."""
        logits = model(*batch[:n_inputs])  # [B, T, V]
        return _token_step(self.loss, logits, batch[-1], self.tokenizer.pad_id)

    def describe(self) -> dict[str, Any]:
        return {**super().describe(), "tokenizer": self.tokenizer.to_dict()}
