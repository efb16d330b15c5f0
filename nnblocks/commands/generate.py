"""`nnblocks generate FOLDER --prompt TEXT`: text in, text out, from a saved model.

The model comes from ``nnblocks.load(FOLDER)``; its tokenizer from the same folder:
``data.json`` (the tokenizers nnblocks fitted, by role) or ``tokenizer.json`` (a pretrained
one, e.g. from an imported Hugging Face folder). A language model continues the prompt; an
encoder-decoder (a ``src`` tokenizer, or a model with a source vocabulary) translates it.
"""

from __future__ import annotations

import argparse
import os
from pathlib import Path
from typing import Any

import torch

from nnblocks.errors import DataError, SpecError

__all__ = ["configure", "folder_tokenizers", "generate_text", "run"]

_METHODS = ("greedy", "sample", "beam")


def configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("folder", help="a model folder written by nnblocks.save or nnblocks import")
    parser.add_argument("--prompt", required=True, help="the text to continue or translate")
    parser.add_argument("--max-new-tokens", type=int, help="most tokens to generate")
    parser.add_argument("--method", choices=_METHODS, default="greedy", help="decoding method")
    parser.add_argument("--temperature", type=float, default=1.0, help="sampling temperature")
    parser.add_argument("--top-k", type=int, help="sample among the k most likely tokens")
    parser.add_argument("--top-p", type=float, help="nucleus sampling probability")
    parser.add_argument("--beam-size", type=int, default=4, help="beam search width")
    parser.add_argument("--seed", type=int, default=0, help="seed for sampling")


def folder_tokenizers(folder: str | os.PathLike[str]) -> dict[str, Any]:
    """The tokenizers saved in a model folder, by role (``text``, ``src``, ``tgt``).

    ``data.json`` wins (the exact tokenizers nnblocks fitted); else ``tokenizer.json`` is
    the ``text`` tokenizer.

    Raises:
        DataError: the folder has neither (naming both files), or one is unreadable.
    """
    from nnblocks.data import load_data_state
    from nnblocks.data.tokenizers.pretrained import TOKENIZER_FILE, PretrainedTokenizer
    from nnblocks.io import DATA_NAME

    folder = Path(folder)
    if (folder / DATA_NAME).is_file():
        tokenizers = dict(load_data_state(folder)["tokenizers"])
        if tokenizers:
            return tokenizers
    if (folder / TOKENIZER_FILE).is_file():
        return {"text": PretrainedTokenizer.from_folder(folder)}
    raise DataError(
        f"`{folder}` holds no tokenizer: expected `{DATA_NAME}` (saved with nnblocks.save(..., "
        f"data=bundle)) or `{TOKENIZER_FILE}`. Save the model with its data or tokenizer."
    )


def _decode_options(method: str, options: dict[str, Any]) -> dict[str, Any]:
    allowed = {
        "greedy": set(),
        "sample": {"temperature", "top_k", "top_p", "generator"},
        "beam": {"beam_size", "length_penalty"},
    }
    if method not in allowed:
        raise SpecError(
            f"Received an invalid value for `method`: expected one of {list(_METHODS)}. "
            f"Received: method={method!r}"
        )
    return {k: v for k, v in options.items() if k in allowed[method] and v is not None}


def generate_text(
    model: Any,
    prompt: str,
    *,
    tokenizers: dict[str, Any] | None = None,
    method: str = "greedy",
    max_new_tokens: int | None = None,
    **options: Any,
) -> str:
    """Continue (language model) or translate (encoder-decoder) ``prompt``.

    Args:
        model: a model with the decoding protocol, or a folder to ``nnblocks.load``.
        prompt: the text.
        tokenizers: by role; default: the folder's (:func:`folder_tokenizers`).
        method: ``"greedy"``, ``"sample"`` or ``"beam"``.
        max_new_tokens: most tokens to generate.
        **options: the method's options (``temperature``, ``top_k``, ``top_p``,
            ``generator``; ``beam_size``, ``length_penalty``).

    Returns:
        The prompt and its continuation (a language model), or the translation.

    Raises:
        DataError: no tokenizer; SpecError: a bad method; CheckpointError: a bad folder.
    """
    import nnblocks
    from nnblocks import generate

    if isinstance(model, (str, os.PathLike)):
        tokenizers = tokenizers or folder_tokenizers(model)
        model = nnblocks.load(model)
    if not tokenizers:
        raise DataError("generate_text needs the model's tokenizers (by role: text, src, tgt).")
    decode = getattr(generate, method, None) if method in _METHODS else None
    kwargs = _decode_options(method, options)
    device = next((p.device for p in model.parameters()), torch.device("cpu"))
    seq2seq = "src" in tokenizers or getattr(model, "src_vocab_size", None) is not None
    if seq2seq:
        src_tok: Any = tokenizers.get("src") or tokenizers.get("text")
        tgt_tok: Any = tokenizers.get("tgt") or src_tok
        src = torch.tensor([src_tok.encode(prompt)], device=device)  # as the data encodes it
        out = decode(model, src, max_new_tokens=max_new_tokens, **kwargs)  # type: ignore[misc]
        return str(tgt_tok.decode(out[0, 1:]))
    tok = tokenizers.get("text") or next(iter(tokenizers.values()))
    ids = tok.encode(prompt)
    bos = int(model.bos_id)
    if not ids or ids[0] != bos:  # the decoding protocol starts every prefix with BOS
        ids = [bos, *ids]
    prefix = torch.tensor([ids], device=device)
    out = decode(model, prefix=prefix, max_new_tokens=max_new_tokens, **kwargs)  # type: ignore[misc]
    # Without the BOS: where BOS and EOS are one token (GPT-2), decoding would stop there.
    return str(tok.decode(out[0, 1:]))


def run(args: argparse.Namespace) -> int:
    generator = torch.Generator().manual_seed(args.seed)
    text = generate_text(
        args.folder,
        args.prompt,
        method=args.method,
        max_new_tokens=args.max_new_tokens,
        temperature=args.temperature,
        top_k=args.top_k,
        top_p=args.top_p,
        generator=generator,
        beam_size=args.beam_size,
    )
    print(text)
    return 0
