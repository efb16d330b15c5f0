"""Benchmark: eager against torch.compile, as ``nnblocks.hybrid.hybridize`` measures it.

For a few models built from the registry, times the eager and the compiled version side by
side in one run (interleaved, median of ``--repeats``), for inference (eval mode, forward
only) and for a training step (forward and backward), and prints what ``hybridize("auto")``
chooses. The ratio ``eager / compiled`` is the number to read: above 1 compiled is faster.
Absolute times depend on the machine and its load; ratios measured side by side do not
depend on load nearly as much.

Usage::

    python benchmarks/hybridize.py                    # CPU, all models
    python benchmarks/hybridize.py --device cuda --models transformer_lm --batch 64
    python benchmarks/hybridize.py --json /tmp/hybridize.json   # default: results/hybridize.json

Compiling takes from seconds (small models on GPU) to a minute (on a loaded CPU) per model
and mode.
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
import time
from pathlib import Path
from typing import Any

import torch
from rich.console import Console
from rich.table import Table

import nnblocks
from nnblocks.hybrid import hybridize

VOCAB = 256


def make_model(name: str, size: str) -> tuple[torch.nn.Module, tuple[torch.Tensor, ...], Any]:
    """A model, an example batch of inputs and a loss function ``loss(out)``."""
    dim, layers = (64, 2) if size == "small" else (256, 4)
    if name == "mlp":
        model = nnblocks.build(
            {"name": "mlp", "in_features": 32, "out_features": 10, "hidden": [dim, dim]}, "model"
        )
        return model, (torch.randn(BATCH, 32),), lambda out: out.logsumexp(-1).mean()
    if name == "transformer_lm":
        model = nnblocks.build(
            {"name": "transformer_lm", "vocab_size": VOCAB, "dim": dim, "heads": 4,
             "layers": layers, "pad_id": None, "dropout": 0.0}
        )  # fmt: skip
        tokens = torch.randint(3, VOCAB, (BATCH, LENGTH))
        return model, (tokens,), lambda out: out.logsumexp(-1).mean()
    if name == "attention":
        model = nnblocks.build("mha", "attention", dim=dim, heads=4)
        return model, (torch.randn(BATCH, LENGTH, dim),), lambda out: out.square().mean()
    raise SystemExit(f"unknown model {name!r}; choose from mlp, transformer_lm, attention")


def run(name: str, size: str, device: str, repeats: int) -> list[dict[str, Any]]:
    model, inputs, loss = make_model(name, size)
    model = model.to(device)
    inputs = tuple(t.to(device) for t in inputs)
    rows = []
    for phase in ("inference", "training"):
        torch._dynamo.reset()  # each phase pays its own compilation, as a fresh run would
        model.train(phase == "training")
        start = time.perf_counter()
        result = hybridize(
            model, inputs, "auto", loss_fn=(lambda out: loss(out)) if phase == "training" else None,
            warmup=3, repeats=repeats,
        )  # fmt: skip
        rows.append(
            {
                "model": name, "size": size, "phase": phase, "device": device,
                "eager_ms": None if result.eager_s is None else result.eager_s * 1e3,
                "compiled_ms": None if result.compiled_s is None else result.compiled_s * 1e3,
                "ratio": result.speedup, "compile_s": result.compile_s,
                "max_diff": result.max_diff, "chosen": result.mode, "reason": result.reason,
                "wall_s": time.perf_counter() - start,
            }
        )  # fmt: skip
    return rows


def main(argv: list[str] | None = None) -> int:
    global BATCH, LENGTH
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", nargs="+", default=["mlp", "attention", "transformer_lm"])
    parser.add_argument("--size", choices=["small", "medium"], default="small")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--length", type=int, default=64)
    parser.add_argument("--repeats", type=int, default=20)
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads")
    parser.add_argument(
        "--json", type=Path, default=Path(__file__).parent / "results" / "hybridize.json",
        help="write the rows here",
    )  # fmt: skip
    args = parser.parse_args(argv)
    BATCH, LENGTH = args.batch, args.length
    if args.threads:
        torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    rows = [row for name in args.models for row in run(name, args.size, args.device, args.repeats)]

    table = Table(title=f"eager vs torch.compile ({args.device}, batch {BATCH}, length {LENGTH})")
    for column in ("model", "phase", "eager ms", "compiled ms", "eager/compiled", "compile s",
                   "max |diff|", "hybridize chooses"):  # fmt: skip
        table.add_column(column, justify="left" if column in ("model", "phase") else "right")
    for r in rows:
        table.add_row(
            f"{r['model']} ({r['size']})", r["phase"],
            _fmt(r["eager_ms"]), _fmt(r["compiled_ms"]), _fmt(r["ratio"], "x{:.2f}"),
            _fmt(r["compile_s"], "{:.1f}"), _fmt(r["max_diff"], "{:.1e}"), r["chosen"],
        )  # fmt: skip
    Console(width=None if sys.stdout.isatty() else 120).print(table)
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        meta = {
            "torch": torch.__version__, "python": platform.python_version(),
            "machine": platform.machine(), "threads": torch.get_num_threads(),
            "cuda": torch.cuda.get_device_name() if args.device.startswith("cuda") else None,
        }  # fmt: skip
        args.json.write_text(json.dumps({"meta": meta, "rows": rows}, indent=1) + "\n")
    return 0


def _fmt(value: float | None, template: str = "{:.3g}") -> str:
    return "-" if value is None else template.format(value)


BATCH, LENGTH = 32, 64

if __name__ == "__main__":
    sys.exit(main())
