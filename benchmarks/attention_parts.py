"""Attention parts: forward+backward time and peak memory of every registered attention.

Each part is built at ``dim=64, heads=4`` and run causally on one sequence at lengths 512
to 8192. On CPU a length whose run took longer than the time budget stops that part (the
longer lengths are listed as skipped, with the reason). Peak memory is the largest amount
of tensor memory alive during the call above what was alive before it, from the
profiler's allocation records (CPU) or ``torch.cuda.max_memory_allocated`` (CUDA). Writes
a PNG chart of time against length.

Usage::

    OMP_NUM_THREADS=1 python benchmarks/attention_parts.py [--quick]
"""

from __future__ import annotations

import argparse
import json
import os
import time
from pathlib import Path
from typing import Any

import torch

import nnblocks

ROOT = Path(__file__).resolve().parents[1]
EXTRA = {"parallel": {"branches": ["mha", "local"]}, "sequential": {"parts": ["mha", "gqa"]}}


def build(name: str, dim: int, heads: int) -> torch.nn.Module:
    return nnblocks.build({"name": name, **EXTRA.get(name, {})}, "attention", dim=dim, heads=heads)


def _fwd_bwd(part: torch.nn.Module, x: torch.Tensor) -> None:
    part(x, causal=True).sum().backward()


def peak_cpu_bytes(part: torch.nn.Module, x: torch.Tensor) -> int:
    """Largest running sum of the profiler's allocation records during one call."""
    from torch.profiler import ProfilerActivity, profile

    with profile(activities=[ProfilerActivity.CPU], profile_memory=True) as prof:
        _fwd_bwd(part, x)
    alive = peak = 0
    events = sorted(prof.events(), key=lambda e: e.time_range.start)
    for event in events:
        alive += event.self_cpu_memory_usage
        peak = max(peak, alive)
    return peak


def measure(name: str, lengths: list[int], budget: float, dim: int = 64) -> dict[str, Any]:
    torch.manual_seed(0)
    part = build(name, dim, 4)
    rows, skipped = [], None
    for length in lengths:
        if skipped is not None:
            rows.append({"length": length, "skipped": skipped})
            continue
        x = torch.randn(1, length, dim, requires_grad=True)
        _fwd_bwd(part, x)  # warm-up at this size
        t = time.perf_counter()
        _fwd_bwd(part, x)
        seconds = time.perf_counter() - t
        if torch.cuda.is_available() and x.is_cuda:
            peak = torch.cuda.max_memory_allocated()
        else:
            peak = peak_cpu_bytes(part, x)
        rows.append({"length": length, "seconds": seconds, "peak_bytes": peak})
        if seconds > budget:
            skipped = f"length {length} took {seconds:.1f} s > budget {budget:.1f} s"
    return {"part": name, "rows": rows}


def chart(results: list[dict[str, Any]], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4.5))
    for r in results:
        pts = [(row["length"], row["seconds"]) for row in r["rows"] if "seconds" in row]
        if pts:
            ax.plot(*zip(*pts), marker="o", label=r["part"])
    ax.set(xscale="log", yscale="log", xlabel="sequence length", ylabel="forward+backward (s)")
    ax.set_title("attention parts, dim 64, 4 heads, batch 1, causal")
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def run(quick: bool = False) -> dict[str, Any]:
    lengths = [128, 256] if quick else [512, 1024, 2048, 4096, 8192]
    budget = 0.5 if quick else 4.0
    results = [measure(name, lengths, budget) for name in nnblocks.list_parts("attention")]
    png = ROOT / "benchmarks" / "attention_parts.png"
    png.parent.mkdir(parents=True, exist_ok=True)
    chart(results, png)
    return {"benchmark": "attention_parts", "dim": 64, "heads": 4, "batch": 1,
            "budget_seconds": budget, "results": results, "chart": str(png.relative_to(ROOT)),
            "load_average_1min": os.getloadavg()[0]}  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true")
    doc = run(parser.parse_args().quick)
    out = ROOT / "benchmarks" / "results" / "attention_parts.json"
    out.write_text(json.dumps(doc, indent=1) + "\n")
    for r in doc["results"]:
        print(r["part"], [row.get("seconds", row.get("skipped")) for row in r["rows"]])


if __name__ == "__main__":
    main()
