"""Activation checkpointing: memory kept for backward and step time, with and without (issue 14).

A small ``transformer_lm`` (dim 128, 4 heads, sequence 128, batch 8) at depths 4, 8 and 16,
trained one step at a time with AdamW, with ``checkpoint_activations="decoder.layers.*"``
and without. Memory: on CUDA, the peak allocated during a step; on CPU, the bytes of
tensors saved for backward during the forward pass (what checkpointing frees; the
process's resident size moves in steps too coarse to compare; the JSON adds one layer's
recompute for the checkpointed peak). Step time: median over
``--steps`` steps after a warm-up, the two variants interleaved. Losses of the first step
are compared too: checkpointing must not change them.

    python benchmarks/activation_checkpointing.py [--steps 5] [--depths 4 8 16]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time
from pathlib import Path
from typing import Any

import torch

import nnblocks
from nnblocks.train.activations import checkpoint_activations

DIM, HEADS, SEQ, BATCH, VOCAB = 128, 4, 128, 8, 512


def _model(depth: int, checkpointed: bool, device: torch.device) -> torch.nn.Module:
    torch.manual_seed(0)
    spec = {"name": "transformer_lm", "vocab_size": VOCAB, "dim": DIM, "heads": HEADS,
            "layers": depth, "max_len": SEQ}  # fmt: skip
    model = nnblocks.build(spec).to(device).train()
    if checkpointed:
        checkpoint_activations(model, "decoder.layers.*")
    return model


def _saved_bytes(model: torch.nn.Module, tokens: torch.Tensor) -> int:
    total = 0

    def pack(t: torch.Tensor) -> torch.Tensor:
        nonlocal total
        total += t.numel() * t.element_size()
        return t

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        model(tokens)
    return total


def _step(model: torch.nn.Module, opt: torch.optim.Optimizer, tokens: torch.Tensor) -> float:
    logits = model(tokens[:, :-1])
    loss = torch.nn.functional.cross_entropy(logits.flatten(0, 1), tokens[:, 1:].flatten())
    loss.backward()
    opt.step()
    opt.zero_grad(set_to_none=True)
    return float(loss.detach())


def measure(depth: int, steps: int, device: torch.device) -> dict[str, Any]:
    """Both variants at one depth: memory, step times (interleaved) and first losses."""
    g = torch.Generator().manual_seed(1)
    tokens = torch.randint(4, VOCAB, (BATCH, SEQ + 1), generator=g).to(device)
    runs: dict[bool, dict[str, Any]] = {}
    for ckpt in (False, True):
        model = _model(depth, ckpt, device)
        opt = torch.optim.AdamW(model.parameters(), lr=1e-3)
        if device.type == "cuda":
            torch.cuda.synchronize()
            torch.cuda.reset_peak_memory_stats()
        torch.manual_seed(2)
        first = _step(model, opt, tokens)  # also the warm-up
        memory = (
            torch.cuda.max_memory_allocated()
            if device.type == "cuda"
            else _saved_bytes(model, tokens[:, :-1])
        )
        runs[ckpt] = {
            "model": model,
            "opt": opt,
            "first_loss": first,
            "memory_bytes": memory,
            "times": [],
        }
    for _ in range(steps):
        for ckpt in (False, True):
            r = runs[ckpt]
            start = time.perf_counter()
            _step(r["model"], r["opt"], tokens)
            if device.type == "cuda":
                torch.cuda.synchronize()
            r["times"].append(time.perf_counter() - start)
    plain, ckpt = runs[False], runs[True]
    t_plain, t_ckpt = statistics.median(plain["times"]), statistics.median(ckpt["times"])
    return {
        "depth": depth,
        "memory_measure": "cuda peak allocated" if device.type == "cuda" else "saved for backward",
        "memory_mb": plain["memory_bytes"] / 2**20,
        "memory_mb_checkpointed": ckpt["memory_bytes"] / 2**20,
        "memory_ratio": ckpt["memory_bytes"] / plain["memory_bytes"],
        # On CPU: backward recomputes one layer at a time, so the checkpointed peak adds
        # about one layer's share of the plain run's saved tensors.
        "memory_mb_checkpointed_with_one_recomputed_layer": (
            ckpt["memory_bytes"] + (plain["memory_bytes"] - ckpt["memory_bytes"]) / depth
        )
        / 2**20,
        "step_s": t_plain,
        "step_s_checkpointed": t_ckpt,
        "time_ratio": t_ckpt / t_plain,
        "same_first_loss": plain["first_loss"] == ckpt["first_loss"],
    }


def run(
    depths: list[int] | None = None, steps: int = 5, device: str | None = None
) -> dict[str, Any]:
    """Measure every depth; returns rows plus the machine and load."""
    dev = torch.device(device or ("cuda" if torch.cuda.is_available() else "cpu"))
    if dev.type == "cpu":
        torch.set_num_threads(1)
    rows = [measure(d, steps, dev) for d in (depths or [4, 8, 16])]
    return {
        "rows": rows,
        "device": str(dev),
        "torch": torch.__version__,
        "threads": torch.get_num_threads(),
        "load_average": os.getloadavg(),
        "shape": {"dim": DIM, "heads": HEADS, "seq": SEQ, "batch": BATCH, "vocab": VOCAB},
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=5)
    parser.add_argument("--depths", type=int, nargs="*", default=[4, 8, 16])
    parser.add_argument("--device", default=None)
    parser.add_argument(
        "--json",
        default=str(Path(__file__).parent / "results" / "activation_checkpointing.json"),
    )
    args = parser.parse_args(argv)
    result = run(args.depths, args.steps, args.device)
    print(
        f"\n{'depth':>5}{'memory MB':>11}{'ckpt MB':>9}{'mem x':>7}{'step s':>9}{'ckpt s':>9}"
        f"{'time x':>8}  same loss   ({result['device']}, {result['rows'][0]['memory_measure']}, "
        f"load {result['load_average']})"
    )
    for r in result["rows"]:
        print(
            f"{r['depth']:>5}{r['memory_mb']:>11.1f}{r['memory_mb_checkpointed']:>9.1f}"
            f"{r['memory_ratio']:>7.2f}{r['step_s']:>9.3f}{r['step_s_checkpointed']:>9.3f}"
            f"{r['time_ratio']:>8.2f}  {r['same_first_loss']}"
        )
    Path(args.json).parent.mkdir(parents=True, exist_ok=True)
    Path(args.json).write_text(json.dumps(result, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
