"""`nnblocks predict FOLDER TEXT...`: a trained model's output for each text, one per line.

A thin face over ``nnblocks.pipeline``: translate, continue or classify, as the model's
task says (``nnblocks/text_pipeline.py``).
"""

from __future__ import annotations

import argparse

from nnblocks.text_pipeline import pipeline


def configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("folder", help="a run folder (runs/NAME) or the model folder inside it")
    parser.add_argument("texts", nargs="+", metavar="TEXT", help="the inputs")
    parser.add_argument("--method", choices=("greedy", "beam"), default="greedy")
    parser.add_argument("--max-new-tokens", type=int, help="most tokens to generate")


def run(args: argparse.Namespace) -> int:
    pipe = pipeline(args.folder, method=args.method, max_new_tokens=args.max_new_tokens)
    for output in pipe(list(args.texts)):
        print(output)
    return 0
