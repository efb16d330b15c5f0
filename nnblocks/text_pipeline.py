"""`nnblocks.pipeline(folder)`: a trained model and its tokenizers, text in, text out.

A saved model folder (or a run folder holding ``model/``) keeps its data state beside the
weights: the task and its fitted tokenizers. The pipeline encodes text exactly as the
training data was encoded, runs the model and decodes the result, so nobody has to piece
together ``load``, ``load_data_state``, ``encode(bos=..., eos=...)`` and ``greedy``::

    translate = nnblocks.pipeline("runs/numbers_de")
    translate("twenty two")              # -> "zweiundzwanzig"
    translate(["one", "two"])            # -> ["eins", "zwei"]

What a call does depends on the task the model was trained for:

- ``seq2seq``: the source is encoded without specials (as the data sources do), decoded
  with greedy search (or ``decode="beam"``), and the target returned without BOS/EOS;
- ``lm``: the prompt is continued; training documents end with EOS, so a prompt starts
  after one (the document boundary the model saw), and the prompt plus its continuation
  is returned;
- ``classification`` / ``sequence_classification``: the class name.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import torch
from torch import nn

from nnblocks import generate
from nnblocks.data.bundle import DATA_STATE_FILE, load_data_state
from nnblocks.data.tokenizers import tokenizer_from_dict
from nnblocks.errors import DataError, SpecError
from nnblocks.io import load

__all__ = ["Pipeline", "pipeline"]

TEXT_TASKS = ("seq2seq", "lm", "sequence_classification")


def _model_folder(folder: str | Path) -> Path:
    """A saved model folder, or the ``model/`` folder inside a run folder."""
    path = Path(folder)
    if (path / "model" / DATA_STATE_FILE).is_file():
        return path / "model"
    if (path / DATA_STATE_FILE).is_file():
        return path
    raise DataError(
        f"`{path}` holds no data state (`{DATA_STATE_FILE}`): expected a model saved by a "
        "recipe run (`runs/NAME` or `runs/NAME/model`), whose tokenizers are kept beside the "
        "weights. A model saved with nnblocks.save alone has none: pass it tokenizers."
    )


class Pipeline:
    """A model with its tokenizers: ``pipe(text)`` -> text, ``pipe([texts])`` -> [texts].

    Args:
        model: the model (put in eval mode).
        task: the data state's task description (``{"name": ..., ...}``).
        tokenizers: ``{role: Tokenizer}`` (``src``/``tgt`` for seq2seq, one for the others).
        decode: ``"greedy"`` or ``"beam"`` (seq2seq and lm).
        max_new_tokens: most tokens to generate (default: the model's limit).
    """

    def __init__(
        self,
        model: nn.Module,
        task: dict[str, Any],
        tokenizers: dict[str, Any],
        *,
        decode: str = "greedy",
        max_new_tokens: int | None = None,
    ):
        self.task = str(task.get("name"))
        if self.task not in TEXT_TASKS:
            raise SpecError(
                f"a pipeline maps text to text; the model was trained for `{self.task}`, "
                f"expected one of: {', '.join(TEXT_TASKS)}",
                path="pipeline",
            )
        if decode not in ("greedy", "beam"):
            raise SpecError(
                f"expected decode='greedy' or 'beam'. Received: {decode!r}", path="pipeline"
            )
        self.model = model.eval()
        self.classes = [str(c) for c in task.get("classes", [])]
        self.decode = decode
        self.max_new_tokens = max_new_tokens
        self.src, self.tgt = _roles(self.task, task, tokenizers)

    def encode(self, texts: Sequence[str]) -> torch.Tensor:
        """Texts -> the model's input ids ``[B, T]``, encoded as the training data was."""
        if self.task == "lm":
            # Training documents end with EOS, so a document starts right after one.
            rows = [[self.src.eos_id, *self.src.encode(t)] for t in texts]
        else:
            rows = [self.src.encode(t) for t in texts]
        longest = max(len(r) for r in rows)
        ids = torch.full((len(rows), longest), self.src.pad_id, dtype=torch.long)
        for i, row in enumerate(rows):
            ids[i, : len(row)] = torch.tensor(row, dtype=torch.long)
        return ids.to(_device(self.model))

    @torch.inference_mode()
    def __call__(self, text: str | Sequence[str]) -> str | list[str]:
        single = isinstance(text, str)
        texts = [text] if isinstance(text, str) else list(text)
        if not texts or not all(isinstance(t, str) for t in texts):
            raise SpecError(
                f"expected a text or a non-empty list of texts. Received: {type(text).__name__}",
                path="pipeline",
            )
        outputs = self._run(texts)
        return outputs[0] if single else outputs

    def _run(self, texts: list[str]) -> list[str]:
        if self.task == "sequence_classification":
            logits = self.model(self.encode(texts))  # [B, C]
            return [self._class(int(i)) for i in logits.argmax(-1)]
        if self.task == "seq2seq":
            out = self._generate(src=self.encode(texts))  # [B, 1 + n]: BOS first
            return [self.tgt.decode(row[1:]) for row in out]
        # lm: one prompt at a time, so no row is padded on the left of its continuation.
        results = []
        for t in texts:
            prompt = self.encode([t])
            out = self._generate(prefix=prompt)
            results.append(t + self.src.decode(out[0, prompt.shape[1] :]))
        return results

    def _generate(self, **inputs: Any) -> torch.Tensor:
        search: Callable[..., torch.Tensor] = (
            generate.beam if self.decode == "beam" else generate.greedy
        )
        return search(self.model, max_new_tokens=self.max_new_tokens, **inputs)

    def _class(self, index: int) -> str:
        return self.classes[index] if index < len(self.classes) else str(index)

    def __repr__(self) -> str:
        return f"Pipeline(task={self.task}, model={type(self.model).__name__})"


def _roles(task_name: str, task: dict[str, Any], tokenizers: dict[str, Any]) -> tuple[Any, Any]:
    """(input tokenizer, output tokenizer) for the task."""
    if task_name == "seq2seq":
        try:
            return tokenizers["src"], tokenizers["tgt"]
        except KeyError as exc:
            raise DataError(
                f"the data state of a seq2seq model lacks the `{exc.args[0]}` tokenizer"
            ) from exc
    if tokenizers:
        tok = next(iter(tokenizers.values()))
    elif isinstance(task.get("tokenizer"), dict):
        tok = tokenizer_from_dict(task["tokenizer"])
    else:
        raise DataError(f"the data state of the `{task_name}` model holds no tokenizer")
    return tok, tok


def _device(model: nn.Module) -> torch.device:
    return next((p.device for p in model.parameters()), torch.device("cpu"))


def pipeline(
    folder: str | Path,
    *,
    decode: str = "greedy",
    max_new_tokens: int | None = None,
    device: str | torch.device | None = None,
) -> Pipeline:
    """Load a trained model with its tokenizers as a text-to-text function.

    Args:
        folder: a run folder (``runs/NAME``) or the model folder inside it.
        decode: ``"greedy"`` (default) or ``"beam"``.
        max_new_tokens: most tokens to generate (default: the model's limit).
        device: where to run (default: CPU).

    Returns:
        A ``Pipeline``: ``pipe("text") -> "text"``, ``pipe([...]) -> [...]``.

    Raises:
        DataError: the folder has no data state (tokenizers), naming the folder.
        SpecError: the model's task does not map text to text.
        CheckpointError: the weights are missing or corrupt.

    Example:
        >>> translate = nnblocks.pipeline("runs/numbers_de")            # doctest: +SKIP
        >>> translate("twenty two")                                     # doctest: +SKIP
        'zweiundzwanzig'
    """
    path = _model_folder(folder)
    state = load_data_state(path)
    model = load(path)
    if device is not None:
        model = model.to(device)
    return Pipeline(
        model,
        state["task"],
        state["tokenizers"],
        decode=decode,
        max_new_tokens=max_new_tokens,
    )
