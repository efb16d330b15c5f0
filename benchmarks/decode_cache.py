"""How much faster decoding is with the attention caches than without.

A 4-layer, d=256 decoder-only model (``recipes/lm_tiny.yaml``) generates 256 tokens
greedily, once reusing its caches (each step runs only the new position) and once
recomputing the whole prefix every step. Both runs must give the same tokens. Prints the
times and the ratio and writes ``benchmarks/results/decode_cache.json``.

Goal (issue 4): at least 5x on CPU.

Usage::

    OMP_NUM_THREADS=1 python benchmarks/decode_cache.py [--tokens 256] [--batch 1]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import time
from pathlib import Path

import torch
import yaml

import nnblocks
from nnblocks import generate

ROOT = Path(__file__).resolve().parents[1]


def build_model(vocab_size: int) -> torch.nn.Module:
    spec = yaml.safe_load((ROOT / "recipes" / "lm_tiny.yaml").read_text())["model"]
    model = nnblocks.build(spec, vocab_size=vocab_size).eval()
    model.eos_id = -1  # never produced: every run generates all the tokens asked for
    return model


def best_time(fn, repeats: int) -> tuple[float, torch.Tensor]:
    """The fastest of ``repeats`` runs (the least disturbed by other work on the machine)."""
    best, out = float("inf"), torch.empty(0)
    for _ in range(repeats):
        start = time.perf_counter()
        out = fn()
        best = min(best, time.perf_counter() - start)
    return best, out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tokens", type=int, default=256, help="tokens to generate")
    parser.add_argument("--batch", type=int, default=1, help="sequences decoded at once")
    parser.add_argument("--vocab", type=int, default=1000, help="vocabulary size")
    parser.add_argument("--repeats", type=int, default=3, help="runs per setting (best kept)")
    parser.add_argument("--threads", type=int, default=1, help="torch threads")
    parser.add_argument(
        "--out", type=Path, default=ROOT / "benchmarks" / "results" / "decode_cache.json"
    )
    args = parser.parse_args()

    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    model = build_model(args.vocab)
    params = sum(p.numel() for p in model.parameters())

    def run(use_cache: bool) -> torch.Tensor:
        return generate.greedy(
            model, batch_size=args.batch, max_new_tokens=args.tokens, use_cache=use_cache
        )

    run(True)  # warm-up: first-call allocations and lazy imports
    cached_s, cached = best_time(lambda: run(True), args.repeats)
    uncached_s, uncached = best_time(lambda: run(False), args.repeats)
    same = bool(torch.equal(cached, uncached))
    ratio = uncached_s / cached_s
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else None

    rows = [
        ("model", f"transformer_lm, 4 layers, d 256, {params:,} parameters (recipes/lm_tiny.yaml)"),
        (
            "generated",
            f"{args.tokens} tokens x batch {args.batch}, greedy, {args.threads} thread(s)",
        ),
        ("with cache", f"{cached_s:.3f} s ({1000 * cached_s / args.tokens:.2f} ms/token)"),
        ("without cache", f"{uncached_s:.3f} s ({1000 * uncached_s / args.tokens:.2f} ms/token)"),
        ("speedup", f"{ratio:.1f}x (goal >= 5x)"),
        ("same tokens", str(same)),
        ("machine load", f"{load:.1f} (1-minute load average)" if load is not None else "n/a"),
    ]
    width = max(len(k) for k, _ in rows)
    for key, value in rows:
        print(f"{key:<{width}}  {value}")

    args.out.parent.mkdir(parents=True, exist_ok=True)
    result = {
        "benchmark": "decode_cache",
        "model": "recipes/lm_tiny.yaml",
        "parameters": params,
        "tokens": args.tokens,
        "batch": args.batch,
        "threads": args.threads,
        "cached_seconds": cached_s,
        "uncached_seconds": uncached_s,
        "speedup": ratio,
        "goal": 5.0,
        "same_tokens": same,
        "load_average_1min": load,
        "cpu_count": os.cpu_count(),
        "torch": torch.__version__,
        "machine": platform.machine(),
        "processor": platform.processor() or platform.machine(),
    }
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    print(f"wrote {args.out.relative_to(ROOT) if args.out.is_relative_to(ROOT) else args.out}")
    if not same:
        raise SystemExit("cached and uncached decoding gave different tokens")


if __name__ == "__main__":
    main()
