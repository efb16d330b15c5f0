"""How much faster decoding is with the attention caches than without.

A 4-layer, d=256 decoder-only model (``recipes/lm_tiny.yaml``) generates 256 tokens
greedily, once reusing its caches (each step runs only the new position) and once
recomputing the whole prefix every step, for one and for several sequences at once. Both
runs must give the same tokens. Prints the times and ratios (wall clock and process CPU
time) and writes ``benchmarks/results/decode_cache.json``.

Goal (issue 4): at least 5x on CPU. The ratio grows with ``--batch`` (a cached step of one
sequence is bound by reading the weights, a recomputed prefix is an efficient matmul).

Usage::

    OMP_NUM_THREADS=1 python benchmarks/decode_cache.py [--tokens 256] [--batch 1 4]
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


def best_time(fn, repeats: int) -> tuple[float, float, torch.Tensor]:
    """The fastest of ``repeats`` runs, in wall-clock and in process CPU seconds.

    On a shared machine the wall clock also counts time spent waiting for a core; the CPU
    time of this (single-threaded) process does not, so it is the steadier of the two.
    """
    wall, cpu, out = float("inf"), float("inf"), torch.empty(0)
    for _ in range(repeats):
        start_wall, start_cpu = time.perf_counter(), time.process_time()
        out = fn()
        wall = min(wall, time.perf_counter() - start_wall)
        cpu = min(cpu, time.process_time() - start_cpu)
    return wall, cpu, out


def measure(model: torch.nn.Module, batch: int, tokens: int, repeats: int) -> dict:
    """Cached and uncached greedy decoding of ``batch`` sequences, side by side."""

    def run(use_cache: bool) -> torch.Tensor:
        return generate.greedy(model, batch_size=batch, max_new_tokens=tokens, use_cache=use_cache)

    run(True)  # warm-up: first-call allocations and lazy imports
    cached_s, cached_cpu, cached = best_time(lambda: run(True), repeats)
    uncached_s, uncached_cpu, uncached = best_time(lambda: run(False), repeats)
    return {
        "batch": batch,
        "cached_seconds": cached_s,
        "uncached_seconds": uncached_s,
        "speedup": uncached_s / cached_s,
        "cached_cpu_seconds": cached_cpu,
        "uncached_cpu_seconds": uncached_cpu,
        "speedup_cpu_time": uncached_cpu / cached_cpu,
        "same_tokens": bool(torch.equal(cached, uncached)),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tokens", type=int, default=256, help="tokens to generate")
    parser.add_argument(
        "--batch", type=int, nargs="+", default=[1, 4], help="sequences decoded at once"
    )
    parser.add_argument("--vocab", type=int, default=1000, help="vocabulary size")
    parser.add_argument("--repeats", type=int, default=2, help="runs per setting (best kept)")
    parser.add_argument("--threads", type=int, default=1, help="torch threads")
    parser.add_argument(
        "--out", type=Path, default=ROOT / "benchmarks" / "results" / "decode_cache.json"
    )
    args = parser.parse_args()

    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    model = build_model(args.vocab)
    params = sum(p.numel() for p in model.parameters())
    print(
        f"transformer_lm, 4 layers, d 256, {params:,} parameters (recipes/lm_tiny.yaml): "
        f"{args.tokens} tokens, greedy, {args.threads} thread(s), best of {args.repeats}"
    )
    header = f"{'batch':>5}  {'cached s':>9}  {'uncached s':>10}  {'speedup':>8}  {'CPU-time speedup':>16}  same tokens"
    print(header)
    results = []
    for batch in args.batch:
        r = measure(model, batch, args.tokens, args.repeats)
        results.append(r)
        print(
            f"{batch:>5}  {r['cached_seconds']:>9.3f}  {r['uncached_seconds']:>10.3f}  "
            f"{r['speedup']:>7.1f}x  {r['speedup_cpu_time']:>15.1f}x  {r['same_tokens']}"
        )
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else None
    print(
        f"goal: >= 5x; machine load {load if load is None else round(load, 1)} on {os.cpu_count()} cores"
    )

    args.out.parent.mkdir(parents=True, exist_ok=True)
    document = {
        "benchmark": "decode_cache",
        "model": "recipes/lm_tiny.yaml",
        "parameters": params,
        "tokens": args.tokens,
        "threads": args.threads,
        "repeats": args.repeats,
        "goal": 5.0,
        "results": results,
        "load_average_1min": load,
        "cpu_count": os.cpu_count(),
        "torch": torch.__version__,
        "machine": platform.machine(),
    }
    args.out.write_text(json.dumps(document, indent=2) + "\n")
    print(f"wrote {args.out.relative_to(ROOT) if args.out.is_relative_to(ROOT) else args.out}")
    if not all(r["same_tokens"] for r in results):
        raise SystemExit("cached and uncached decoding gave different tokens")


if __name__ == "__main__":
    main()
