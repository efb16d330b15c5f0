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

import math
from collections.abc import Callable, Iterator, Mapping, Sequence
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

__all__ = [
    "Task",
    "ClassificationTask",
    "MultiLabelTask",
    "RegressionTask",
    "Seq2SeqTask",
    "LanguageModelTask",
    "SequenceClassificationTask",
]

Renderer = Callable[[Sequence[torch.Tensor]], str]


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

    def batches(self, data: Any, batch_size: int) -> Iterator[tuple[torch.Tensor, ...]]:
        """Batches of ``data`` in order (TensorData by slicing; other datasets by a DataLoader)."""
        if isinstance(data, TensorData):
            plain = data.plain() if hasattr(data, "plain") else data  # never augment evaluation
            for start in range(0, len(plain), batch_size):
                yield plain[start : start + batch_size]
            return
        from torch.utils.data import DataLoader

        yield from DataLoader(data, batch_size=batch_size, shuffle=False, collate_fn=self.collate)

    @staticmethod
    def _n_inputs(data: Any) -> int:
        return int(getattr(data, "n_inputs", 1))

    def outputs(
        self, model: nn.Module, split: str | Any, *, batch_size: int = 256, device: Any = None
    ) -> Iterator[tuple[tuple[torch.Tensor, ...], Any]]:
        """Run ``model`` over a split in eval mode; yields ``(batch on device, output)``."""
        data = self.split_data(split)
        n_inputs = self._n_inputs(data)
        device = _device_of(model) if device is None else torch.device(device)
        was_training = model.training
        model.eval()
        try:
            with torch.inference_mode():
                for batch in self.batches(data, batch_size):
                    batch = tuple(t.to(device) for t in batch)
                    yield batch, model(*batch[:n_inputs])
        finally:
            model.train(was_training)

    def evaluate(
        self,
        model: nn.Module,
        split: str | Any = "test",
        *,
        batch_size: int = 512,
        device: Any = None,
    ) -> dict[str, float]:
        """Task-level metrics of ``model`` on a split (after training).

        Args:
            model: the trained model (run in eval mode; its mode is restored after).
            split: a split name (``"test"``, ``"valid"``, ``"long"``...) or data.
            batch_size: examples per forward pass.
            device: where to run (default: the model's device).
        """
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

    def evaluate(
        self,
        model: nn.Module,
        split: str | Any = "test",
        *,
        batch_size: int = 512,
        device: Any = None,
    ) -> dict[str, float]:
        """Accuracy, macro F1 and mean loss of ``model`` on a split.

        Returns:
            ``{"accuracy", "f1_macro", "loss", "n"}``.
        """
        from torchmetrics.functional.classification import multiclass_accuracy, multiclass_f1_score

        logits, targets = [], []
        for batch, out in self.outputs(model, split, batch_size=batch_size, device=device):
            logits.append(out.float())
            targets.append(batch[-1])
        if not logits:
            raise DataError(f"cannot evaluate on the `{split}` split: it is empty.")
        out, y = torch.cat(logits), torch.cat(targets)
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

    def evaluate(
        self,
        model: nn.Module,
        split: str | Any = "test",
        *,
        batch_size: int = 512,
        device: Any = None,
    ) -> dict[str, float]:
        """Per-decision accuracy, macro F1 and exact (whole-set) match on a split."""
        from torchmetrics.functional.classification import multilabel_accuracy, multilabel_f1_score

        logits, targets = [], []
        for batch, out in self.outputs(model, split, batch_size=batch_size, device=device):
            logits.append(out.float())
            targets.append(batch[-1])
        out, y = torch.cat(logits), torch.cat(targets).long()
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

    def evaluate(
        self,
        model: nn.Module,
        split: str | Any = "test",
        *,
        batch_size: int = 512,
        device: Any = None,
    ) -> dict[str, float]:
        """MSE, MAE and R² in the targets' original units (averaged over targets)."""
        from torchmetrics.functional import mean_absolute_error, mean_squared_error, r2_score

        preds, targets = [], []
        for batch, out in self.outputs(model, split, batch_size=batch_size, device=device):
            preds.append(out.float().reshape(len(out), -1))
            targets.append(batch[-1].float().reshape(len(out), -1))
        p, y = self._original(torch.cat(preds)), self._original(torch.cat(targets))
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
                "pad_id": tgt.pad_id,
                "bos_id": tgt.bos_id,
                "eos_id": tgt.eos_id,
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
        ids = output.argmax(-1) if output.is_floating_point() else output
        return self.tgt_tokenizer.decode(ids)

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
        batch_size: int = 512,
        device: Any = None,
        decode: Callable[..., torch.Tensor] | None = None,
        limit: int | None = None,
    ) -> dict[str, float]:
        """Exact match of decoded sequences, plus teacher-forced loss and token accuracy.

        Args:
            model: a model with the decoding protocol (docs/interfaces.md).
            split: a split name or data.
            batch_size: sequences decoded at once.
            device: where to run (default: the model's device).
            decode: ``decode(model, src, max_new_tokens=...) -> ids [B, L]``; default
                ``nnblocks.generate.greedy`` (pass a beam search to compare).
            limit: evaluate only the first ``limit`` examples.

        Returns:
            ``{"exact_match", "token_accuracy", "loss", "n"}``.
        """
        from torchmetrics.classification import MulticlassAccuracy

        data = self.split_data(split)
        if limit is not None:
            data = data.subset(torch.arange(min(limit, len(data))))
        tok = self.tgt_tokenizer
        acc = None
        hits, total, loss_sum, tokens = 0, 0, 0.0, 0
        for batch, logits in self.outputs(model, data, batch_size=batch_size, device=device):
            src, _, tgt_out = batch
            if acc is None:
                acc = MulticlassAccuracy(
                    num_classes=logits.shape[-1], average="micro", ignore_index=tok.pad_id
                ).to(logits.device)
            acc.update(logits.argmax(-1), tgt_out)
            real = int((tgt_out != tok.pad_id).sum())
            loss_sum += float(self.loss(logits.float(), tgt_out)) * real
            tokens += real
            with torch.inference_mode():
                # tgt_out's width covers the longest target and its EOS: enough to judge every row
                generated = self.generate(
                    model, src, max_new_tokens=tgt_out.shape[1], decode=decode
                )
            match = exact_match(
                generated, tgt_out, bos_id=tok.bos_id, eos_id=tok.eos_id, pad_id=tok.pad_id
            )
            hits += int(match.sum())
            total += len(match)
        if total == 0:
            raise DataError(f"cannot evaluate on the `{split}` split: it is empty.")
        assert acc is not None
        return {
            "exact_match": hits / total,
            "token_accuracy": float(acc.compute()),
            "loss": loss_sum / max(tokens, 1),
            "n": total,
        }

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

    def __init__(self, tokenizer: Any, *, block_size: int):
        super().__init__(
            model_args={
                "vocab_size": tokenizer.vocab_size,
                "pad_id": tokenizer.pad_id,
                "bos_id": tokenizer.bos_id,
                "eos_id": tokenizer.eos_id,
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
        ids = output.argmax(-1) if output.is_floating_point() else output
        return self.tokenizer.decode(ids, stop_at_eos=False)

    def evaluate(
        self,
        model: nn.Module,
        split: str | Any = "test",
        *,
        batch_size: int = 64,
        device: Any = None,
    ) -> dict[str, float]:
        """Mean loss per token, perplexity (exp of the loss) and next-token accuracy."""
        from torchmetrics.classification import MulticlassAccuracy

        acc = None
        loss_sum, tokens = 0.0, 0
        for batch, logits in self.outputs(model, split, batch_size=batch_size, device=device):
            target = batch[-1]
            if acc is None:
                acc = MulticlassAccuracy(
                    num_classes=logits.shape[-1],
                    average="micro",
                    ignore_index=self.tokenizer.pad_id,
                ).to(logits.device)
            acc.update(logits.argmax(-1), target)
            real = int((target != self.tokenizer.pad_id).sum())
            loss_sum += float(self.loss(logits.float(), target)) * real
            tokens += real
        if acc is None:
            raise DataError(f"cannot evaluate on the `{split}` split: it is empty.")
        loss = loss_sum / max(tokens, 1)
        return {
            "loss": loss,
            "perplexity": math.exp(min(loss, 50.0)),
            "accuracy": float(acc.compute()),
            "tokens": tokens,
        }

    def describe(self) -> dict[str, Any]:
        return {**super().describe(), "tokenizer": self.tokenizer.to_dict()}
