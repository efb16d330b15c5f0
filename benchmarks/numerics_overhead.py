"""What `watch_numerics` costs per training step, against PyTorch's anomaly mode.

A small decoder-only Transformer (nnblocks' ``transformer_lm``: 4 layers, d=256, batches of
16 x 128 tokens; or a plain ``nn.TransformerEncoder`` of the same size with ``--plain``)
trains for a few steps three ways, alternating, in one run: plain, inside ``watch_numerics(model)``, and under
``torch.autograd.set_detect_anomaly(True)``. Nothing goes wrong in these steps: this is the
price of watching. Prints the time per step and the ratios to plain, and writes
``benchmarks/results/numerics_overhead.json``.

Goal (issue 6): under 10% overhead (anomaly mode costs about 3x and names only an op).

Usage::

    OMP_NUM_THREADS=1 python benchmarks/numerics_overhead.py [--rounds 8] [--plain]
"""

from __future__ import annotations

import argparse
import contextlib
import json
import platform
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

import nnblocks
from nnblocks.check import watch_numerics

ROOT = Path(__file__).resolve().parents[1]


class PlainLM(nn.Module):
    """Token embedding, nn.TransformerEncoder (causal), output head: no nnblocks parts."""

    def __init__(self, vocab: int, dim: int, heads: int, layers: int):
        super().__init__()
        self.embedding = nn.Embedding(vocab, dim)
        layer = nn.TransformerEncoderLayer(dim, heads, 4 * dim, dropout=0.0, batch_first=True)
        self.encoder = nn.TransformerEncoder(layer, layers, enable_nested_tensor=False)
        self.head = nn.Linear(dim, vocab)

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        T = tokens.shape[1]
        mask = nn.Transformer.generate_square_subsequent_mask(T)
        return self.head(self.encoder(self.embedding(tokens), mask=mask, is_causal=True))


def build_model(args: argparse.Namespace) -> nn.Module:
    if not args.plain and "transformer_lm" in nnblocks.list_parts("model"):
        spec = {
            "name": "transformer_lm",
            "vocab_size": args.vocab,
            "dim": args.dim,
            "heads": args.heads,
            "layers": args.layers,
        }
        return nnblocks.build(spec, "model")
    return PlainLM(args.vocab, args.dim, args.heads, args.layers)


@contextlib.contextmanager
def mode(name: str, model: nn.Module) -> Iterator[None]:
    if name == "watch_numerics":
        with watch_numerics(model):
            yield
    elif name == "detect_anomaly":
        with torch.autograd.set_detect_anomaly(True):
            yield
    else:
        yield


def run_steps(
    model: nn.Module, opt: torch.optim.Optimizer, batch: torch.Tensor, steps: int
) -> float:
    """CPU seconds of this thread per step (forward, loss, backward, optimizer step).

    Thread CPU time, not wall time: on a shared machine other processes steal the core at
    random, which wall time would charge to whichever mode was running.
    """
    start = time.thread_time()
    for _ in range(steps):
        logits = model(batch[:, :-1])
        loss = F.cross_entropy(logits.reshape(-1, logits.shape[-1]), batch[:, 1:].reshape(-1))
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
    return (time.thread_time() - start) / steps


def measure(names: list[str], step: Callable[[str], float], rounds: int) -> dict[str, float]:
    """Best seconds per step of each mode, the modes alternating round by round (so work
    elsewhere on the machine does not land on one mode only)."""
    best = {n: float("inf") for n in names}
    for _ in range(rounds):
        for n in names:
            best[n] = min(best[n], step(n))
    return best


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dim", type=int, default=256)
    parser.add_argument("--heads", type=int, default=4)
    parser.add_argument("--layers", type=int, default=4)
    parser.add_argument("--vocab", type=int, default=1000)
    parser.add_argument("--batch", type=int, default=16)
    parser.add_argument("--length", type=int, default=128)
    parser.add_argument("--steps", type=int, default=2, help="steps per timed run")
    parser.add_argument("--rounds", type=int, default=8, help="timed runs per mode (best kept)")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--plain", action="store_true", help="use nn.TransformerEncoder")
    parser.add_argument(
        "--out", type=Path, default=ROOT / "benchmarks" / "results" / "numerics_overhead.json"
    )
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)

    model = build_model(args).train()
    opt = torch.optim.AdamW(model.parameters(), lr=1e-4)
    batch = torch.randint(1, args.vocab, (args.batch, args.length + 1))
    names = ["plain", "watch_numerics", "detect_anomaly"]

    def step(name: str) -> float:
        with mode(name, model):
            return run_steps(model, opt, batch, args.steps)

    for name in names:  # warm-up: allocator, lazy initialisation
        step(name)
    best = measure(names, step, args.rounds)

    n_modules = sum(1 for _ in model.modules())
    print(
        f"{type(model).__name__}: {n_modules} modules, batch {args.batch} x {args.length}, "
        f"{args.threads} thread(s)"
    )
    print(f"{'mode':<16} {'CPU ms/step':>12} {'vs plain':>9}")
    for name in names:
        print(f"{name:<16} {best[name] * 1e3:>12.1f} {best[name] / best['plain']:>8.3f}x")
    overhead = best["watch_numerics"] / best["plain"] - 1
    print(
        f"watch_numerics overhead: {overhead:+.1%} (goal: under 10%); anomaly mode: "
        f"{best['detect_anomaly'] / best['plain']:.2f}x"
    )

    result = {
        "model": type(model).__name__,
        "modules": n_modules,
        "settings": vars(args) | {"out": str(args.out)},
        "seconds_per_step": best,
        "ratio_watch": best["watch_numerics"] / best["plain"],
        "ratio_anomaly": best["detect_anomaly"] / best["plain"],
        "torch": torch.__version__,
        "machine": platform.platform(),
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n")


if __name__ == "__main__":
    main()
