"""`nnblocks.pipeline(folder)`: a saved model and its tokenizers, text in, text out.

The one path from text to a model's answer: ``nnblocks.pipeline``, ``nnblocks predict`` and
``nnblocks generate`` all go through it, so nobody has to piece together ``load``,
``load_data_state``, ``encode(bos=..., eos=...)`` and ``greedy``::

    translate = nnblocks.pipeline("runs/numbers_de")
    translate("twenty two")              # -> "zweiundzwanzig"
    translate(["one", "two"])            # -> ["eins", "zwei"]

Where the tokenizers come from decides how text is encoded:

- a folder saved by a recipe run keeps its data state (``data.json``: the task and the
  tokenizers nnblocks fitted), so text is encoded exactly as the training data was: a
  seq2seq source without specials; a language-model prompt after an EOS, the document
  boundary the model saw in training (documents end with EOS, nothing starts with BOS);
- a folder with only ``tokenizer.json`` (a pretrained tokenizer, e.g. from
  ``nnblocks import``) uses the tokenizer's own specials; a prompt starts with BOS, as the
  decoding protocol does.

By task: ``seq2seq`` translates (greedy, sampling or beam search) and returns the target
without BOS/EOS; ``lm`` continues the prompt and returns prompt and continuation;
``sequence_classification`` returns the class name.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch
from torch import nn

from nnblocks import generate
from nnblocks.data.bundle import DATA_STATE_FILE, load_data_state
from nnblocks.data.tokenizers.pretrained import TOKENIZER_FILE, PretrainedTokenizer
from nnblocks.errors import DataError, SpecError
from nnblocks.io import load

__all__ = ["Pipeline", "pipeline", "folder_tokenizers", "TEXT_TASKS", "METHODS"]

TEXT_TASKS = ("seq2seq", "lm", "sequence_classification")
METHODS = {  # decoding method -> the options it takes
    "greedy": set(),
    "sample": {"temperature", "top_k", "top_p", "generator"},
    "beam": {"beam_size", "length_penalty"},
}


def _model_folder(folder: str | os.PathLike[str]) -> Path:
    """A saved model folder, or the ``model/`` folder inside a run folder."""
    path = Path(folder)
    inner = path / "model"
    return inner if inner.is_dir() and not (path / "model.safetensors").exists() else path


def folder_tokenizers(folder: str | os.PathLike[str]) -> dict[str, Any]:
    """The tokenizers saved in a model folder, by role (``src``, ``tgt``, ``text``...).

    ``data.json`` wins (the exact tokenizers nnblocks fitted); else ``tokenizer.json`` is
    the ``text`` tokenizer.

    Raises:
        DataError: the folder has neither (naming both files), or one is unreadable.
    """
    path = _model_folder(folder)
    if (path / DATA_STATE_FILE).is_file():
        tokenizers = dict(load_data_state(path)["tokenizers"])
        if tokenizers:
            return tokenizers
    if (path / TOKENIZER_FILE).is_file():
        return {"text": PretrainedTokenizer.from_folder(path)}
    raise DataError(
        f"`{path}` holds no tokenizer: expected `{DATA_STATE_FILE}` (a recipe run, or "
        f"nnblocks.save(..., data=bundle)) or `{TOKENIZER_FILE}` (nnblocks.save(..., "
        "tokenizer=...) or nnblocks import). Save the model with its data or tokenizer."
    )


class Pipeline:
    """A model with its tokenizers: ``pipe(text)`` -> text, ``pipe([texts])`` -> [texts].

    Args:
        model: a model; put in eval mode.
        tokenizers: by role: ``src``/``tgt`` for seq2seq, one (any role) otherwise.
        task: the task's name (``seq2seq``, ``lm``, ``sequence_classification``); default:
            ``seq2seq`` for a model with a source vocabulary, else ``lm``.
        classes: class names (classification).
        trained_on_documents: the model learnt from nnblocks documents (prompts start
            after an EOS); False: prompts start with BOS (pretrained tokenizers).
        method: ``"greedy"``, ``"sample"`` or ``"beam"``.
        max_new_tokens: most tokens to generate (default: the model's limit).
        **options: the method's options (``temperature``, ``top_k``, ``top_p``,
            ``generator``; ``beam_size``, ``length_penalty``).

    Raises:
        SpecError: a task that does not map text to text, a bad method or option.
    """

    def __init__(
        self,
        model: nn.Module,
        tokenizers: dict[str, Any],
        *,
        task: str | None = None,
        classes: Sequence[Any] = (),
        trained_on_documents: bool = False,
        method: str = "greedy",
        max_new_tokens: int | None = None,
        **options: Any,
    ):
        if not tokenizers:
            raise DataError("a pipeline needs the model's tokenizers (by role: src, tgt, text).")
        seq2seq = "src" in tokenizers or getattr(model, "src_vocab_size", None) is not None
        self.task = task or ("seq2seq" if seq2seq else "lm")
        if self.task not in TEXT_TASKS:
            raise SpecError(
                f"a pipeline maps text to text; the model was trained for `{self.task}`, "
                f"expected one of: {', '.join(TEXT_TASKS)}",
                path="pipeline",
            )
        self.model = model.eval()
        self.src = (
            tokenizers.get("src") or tokenizers.get("text") or next(iter(tokenizers.values()))
        )
        self.tgt = tokenizers.get("tgt") or self.src
        self.classes = [str(c) for c in classes]
        self.trained_on_documents = trained_on_documents
        self.search = _search(method)
        self.options = _decode_options(method, options)
        self.max_new_tokens = max_new_tokens

    @classmethod
    def from_folder(cls, folder: str | os.PathLike[str], **options: Any) -> Pipeline:
        """The model, tokenizers and task saved in ``folder`` (a run or model folder)."""
        path = _model_folder(folder)
        tokenizers = folder_tokenizers(path)
        task: dict[str, Any] = {}
        if (path / DATA_STATE_FILE).is_file():
            task = dict(load_data_state(path)["task"])
        return cls(
            load(path),
            tokenizers,
            task=task.get("name"),
            classes=task.get("classes", ()),
            trained_on_documents=task.get("name") == "lm",
            **options,
        )

    def encode(self, texts: Sequence[str]) -> torch.Tensor:
        """Texts -> the model's input ids ``[B, T]`` (right-padded), as the training data was."""
        start = self._start_id()
        rows = [list(self.src.encode(t)) for t in texts]
        if start is not None:  # a pretrained tokenizer may have added the BOS itself
            rows = [r if r[:1] == [start] else [start, *r] for r in rows]
        longest = max(len(r) for r in rows)
        pad = self.src.pad_id if self.src.pad_id is not None else 0
        ids = torch.full((len(rows), longest), int(pad), dtype=torch.long)
        for i, row in enumerate(rows):
            ids[i, : len(row)] = torch.tensor(row, dtype=torch.long)
        return ids.to(_device(self.model))

    def _start_id(self) -> int | None:
        if self.task != "lm":
            return None
        # nnblocks documents end with EOS, so a document starts right after one.
        name = "eos_id" if self.trained_on_documents else "bos_id"
        value = getattr(self.model, name, None)
        if isinstance(value, (list, tuple)):  # several EOS ids (Llama 3): the first
            value = value[0] if value else None
        return None if value is None else int(value)

    @torch.inference_mode()
    def __call__(self, text: str | Sequence[str]) -> str | list[str]:
        texts = [text] if isinstance(text, str) else list(text)
        if not texts or not all(isinstance(t, str) for t in texts):
            raise SpecError(
                f"expected a text or a non-empty list of texts. Received: {type(text).__name__}",
                path="pipeline",
            )
        outputs = self._run(texts)
        return outputs[0] if isinstance(text, str) else outputs

    def _run(self, texts: list[str]) -> list[str]:
        if self.task == "sequence_classification":
            logits = self.model(self.encode(texts))  # [B, C]
            return [self._class(int(i)) for i in logits.argmax(-1)]
        if self.task == "seq2seq":
            out = self._generate(self.encode(texts), None)  # [B, 1 + n]: BOS first
            return [str(self.tgt.decode(row[1:])) for row in out]
        # lm: one prompt at a time, so no prompt is padded before its continuation.
        results = []
        for t in texts:
            prompt = self.encode([t])
            out = self._generate(None, prompt)
            skip = 1 if prompt[0, 0].item() == self._start_id() else 0
            results.append(str(self.src.decode(out[0, skip:])))
        return results

    def _generate(self, src: torch.Tensor | None, prefix: torch.Tensor | None) -> torch.Tensor:
        inputs: dict[str, Any] = {"prefix": prefix} if prefix is not None else {}
        return self.search(
            self.model, src, max_new_tokens=self.max_new_tokens, **inputs, **self.options
        )

    def _class(self, index: int) -> str:
        return self.classes[index] if index < len(self.classes) else str(index)

    def __repr__(self) -> str:
        return f"Pipeline(task={self.task}, model={type(self.model).__name__})"


def _search(method: str) -> Any:
    if method not in METHODS:
        raise SpecError(
            f"Received an invalid value for `method`: expected one of {list(METHODS)}. "
            f"Received: method={method!r}",
            path="pipeline",
        )
    return getattr(generate, method)


def _decode_options(method: str, options: dict[str, Any]) -> dict[str, Any]:
    unknown = set(options) - set().union(*METHODS.values())
    if unknown:
        raise SpecError(
            f"unknown decoding option(s) {sorted(unknown)}; `{method}` takes: "
            f"{sorted(METHODS[method]) or 'none'}",
            path="pipeline",
        )
    return {k: v for k, v in options.items() if k in METHODS[method] and v is not None}


def _device(model: nn.Module) -> torch.device:
    return next((p.device for p in model.parameters()), torch.device("cpu"))


def pipeline(
    folder: str | os.PathLike[str],
    *,
    method: str = "greedy",
    max_new_tokens: int | None = None,
    device: str | torch.device | None = None,
    **options: Any,
) -> Pipeline:
    """Load a saved model with its tokenizers as a text-to-text function.

    Args:
        folder: a run folder (``runs/NAME``) or a model folder (``nnblocks.save``,
            ``nnblocks import``) holding ``data.json`` or ``tokenizer.json``.
        method: ``"greedy"`` (default), ``"sample"`` or ``"beam"``.
        max_new_tokens: most tokens to generate (default: the model's limit).
        device: where to run (default: where the weights load, the CPU).
        **options: the decoding method's options (``temperature``, ``top_k``, ``top_p``,
            ``generator``; ``beam_size``, ``length_penalty``).

    Returns:
        A ``Pipeline``: ``pipe("text") -> "text"``, ``pipe([...]) -> [...]``.

    Raises:
        DataError: the folder holds no tokenizer (naming the files it looked for).
        SpecError: the model's task does not map text to text; a bad method or option.
        CheckpointError: the weights are missing or corrupt.

    Example:
        >>> translate = nnblocks.pipeline("runs/numbers_de")            # doctest: +SKIP
        >>> translate("twenty two")                                     # doctest: +SKIP
        'zweiundzwanzig'
    """
    pipe = Pipeline.from_folder(folder, method=method, max_new_tokens=max_new_tokens, **options)
    if device is not None:
        pipe.model.to(device)
    return pipe
