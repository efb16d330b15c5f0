"""`nnblocks generate FOLDER --prompt TEXT`: text in, text out, from a saved model.

A thin face over ``nnblocks.pipeline`` (``nnblocks/text_pipeline.py``): the model comes
from ``nnblocks.load(FOLDER)`` and its tokenizers from the same folder (``data.json``, the
tokenizers nnblocks fitted, or ``tokenizer.json``, a pretrained one). A language model
continues the prompt; an encoder-decoder translates it.
"""

from __future__ import annotations

import argparse
import os
from typing import Any

import torch

from nnblocks.text_pipeline import METHODS, Pipeline, folder_tokenizers, pipeline

__all__ = ["configure", "folder_tokenizers", "generate_text", "run"]


def configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("folder", help="a model folder written by nnblocks.save or nnblocks import")
    parser.add_argument("--prompt", required=True, help="the text to continue or translate")
    parser.add_argument("--max-new-tokens", type=int, help="most tokens to generate")
    parser.add_argument("--method", choices=list(METHODS), default="greedy", help="decoding")
    parser.add_argument("--temperature", type=float, default=1.0, help="sampling temperature")
    parser.add_argument("--top-k", type=int, help="sample among the k most likely tokens")
    parser.add_argument("--top-p", type=float, help="nucleus sampling probability")
    parser.add_argument("--beam-size", type=int, default=4, help="beam search width")
    parser.add_argument("--seed", type=int, default=0, help="seed for sampling")


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
        model: a model folder, or a model with the decoding protocol (then ``tokenizers``).
        prompt: the text.
        tokenizers: by role; default: the folder's (:func:`folder_tokenizers`).
        method: ``"greedy"``, ``"sample"`` or ``"beam"``.
        max_new_tokens: most tokens to generate.
        **options: the method's options (see ``nnblocks.text_pipeline.METHODS``).

    Returns:
        The prompt and its continuation (a language model), or the translation.
    """
    if isinstance(model, (str, os.PathLike)) and tokenizers is None:
        pipe = pipeline(model, method=method, max_new_tokens=max_new_tokens, **options)
    else:
        if isinstance(model, (str, os.PathLike)):
            import nnblocks

            model = nnblocks.load(model)
        pipe = Pipeline(
            model, tokenizers or {}, method=method, max_new_tokens=max_new_tokens, **options
        )
    return str(pipe(prompt))


def run(args: argparse.Namespace) -> int:
    options: dict[str, Any] = {}
    if args.method == "sample":
        options = {
            "temperature": args.temperature,
            "top_k": args.top_k,
            "top_p": args.top_p,
            "generator": torch.Generator().manual_seed(args.seed),
        }
    elif args.method == "beam":
        options = {"beam_size": args.beam_size}
    print(
        generate_text(
            args.folder,
            args.prompt,
            method=args.method,
            max_new_tokens=args.max_new_tokens,
            **options,
        )
    )
    return 0
