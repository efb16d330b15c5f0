"""Language-model training: nnblocks ``transformer_lm`` against the same model written plainly.

The plain model follows nanoGPT's ``model.py`` layout (token and position tables, pre-norm
blocks with a fused qkv projection, a 4x GELU MLP, final LayerNorm, head tied to the token
table); the nnblocks model is built from its spec with the same choices. Their parameter
counts must be equal (asserted). Both train with AdamW (fused off, foreach on) on the same
random tokens, interleaved step by step; tokens/s and the fraction of this machine's fp32
matmul peak (measured in the same run with a 1024^3 matmul) are reported, with the model
FLOPs per token estimated as ``6 N + 12 L T D`` (Kaplan et al. 2020; PaLM appendix B).

Usage::

    OMP_NUM_THREADS=1 python benchmarks/lm_train.py [--quick]
"""

from __future__ import annotations

import argparse
import json
import math
import os
import time
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

import nnblocks

ROOT = Path(__file__).resolve().parents[1]
VOCAB = 1000
SIZES = {
    "small": {"dim": 128, "layers": 2, "heads": 4},
    "medium": {"dim": 256, "layers": 4, "heads": 4},
}


class PlainBlock(nn.Module):
    def __init__(self, dim: int, heads: int):
        super().__init__()
        self.heads = heads
        self.ln_1, self.ln_2 = nn.LayerNorm(dim), nn.LayerNorm(dim)
        self.c_attn, self.c_proj = nn.Linear(dim, 3 * dim), nn.Linear(dim, dim)
        self.fc, self.proj = nn.Linear(dim, 4 * dim), nn.Linear(4 * dim, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        B, T, C = x.shape
        q, k, v = self.c_attn(self.ln_1(x)).split(C, dim=2)
        q, k, v = (t.view(B, T, self.heads, C // self.heads).transpose(1, 2) for t in (q, k, v))
        y = F.scaled_dot_product_attention(q, k, v, is_causal=True)  # (B, nh, T, hs)
        x = x + self.c_proj(y.transpose(1, 2).reshape(B, T, C))
        return x + self.proj(F.gelu(self.fc(self.ln_2(x))))


class PlainGPT(nn.Module):
    """nanoGPT's GPT, without dropout: the reference a library model is measured against."""

    def __init__(self, dim: int, layers: int, heads: int, max_len: int):
        super().__init__()
        self.wte, self.wpe = nn.Embedding(VOCAB, dim), nn.Embedding(max_len, dim)
        self.h = nn.ModuleList(PlainBlock(dim, heads) for _ in range(layers))
        self.ln_f = nn.LayerNorm(dim)
        self.lm_head = nn.Linear(dim, VOCAB, bias=False)
        self.lm_head.weight = self.wte.weight  # weight tying (Press & Wolf 2017)

    def forward(self, idx: torch.Tensor) -> torch.Tensor:
        pos = torch.arange(idx.shape[1], device=idx.device)
        x = self.wte(idx) + self.wpe(pos)
        for block in self.h:
            x = block(x)
        return self.lm_head(self.ln_f(x))


def nnblocks_gpt(dim: int, layers: int, heads: int, max_len: int) -> nn.Module:
    return nnblocks.build(
        {"name": "transformer_lm", "vocab_size": VOCAB, "dim": dim, "heads": heads,
         "layers": layers, "max_len": max_len, "position": "learned", "self_attention": "mha",
         "feedforward": "mlp", "norm": "layer", "dropout": 0.0, "tie_embeddings": True,
         "pad_id": None}
    )  # fmt: skip


def count(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())  # tied weights counted once


def matmul_peak(
    seconds: float = 1.0,
    *,
    device: torch.device | str = "cpu",
    dtype: torch.dtype = torch.float32,
    size: int = 1024,
) -> float:
    """Measured matmul FLOP/s of ``size^3`` products in ``dtype`` on ``device`` (best of
    ``seconds``' runs; CUDA is synchronised around each)."""
    device = torch.device(device)

    def sync() -> None:
        if device.type == "cuda":
            torch.cuda.synchronize(device)

    a = torch.randn(size, size, device=device, dtype=dtype)
    b = torch.randn(size, size, device=device, dtype=dtype)
    a @ b
    sync()
    best, end = float("inf"), time.perf_counter() + seconds
    while time.perf_counter() < end:
        t = time.perf_counter()
        a @ b
        sync()
        best = min(best, time.perf_counter() - t)
    return 2 * size**3 / best


def flops_per_token(parameters: int, dim: int, layers: int, seq: int) -> int:
    """Training FLOPs per token of a GPT-style model, ``6 N + 12 L T D`` with N the
    non-embedding parameters (Kaplan et al. 2020; PaLM appendix B)."""
    non_embedding = parameters - VOCAB * dim - seq * dim
    return 6 * non_embedding + 12 * layers * seq * dim


def case(size: str, seq: int, steps: int, batch: int, peak: float) -> dict[str, Any]:
    cfg = SIZES[size]
    torch.manual_seed(0)
    ours = nnblocks_gpt(max_len=seq, **cfg)
    plain = PlainGPT(max_len=seq, **cfg)
    n_ours, n_plain = count(ours), count(plain)
    assert n_ours == n_plain, f"parameter counts differ: nnblocks {n_ours}, plain {n_plain}"
    data = torch.randint(0, VOCAB, (steps + 1, batch, seq + 1))
    models = {"nnblocks": ours, "plain": plain}
    optims = {
        k: torch.optim.AdamW(m.parameters(), lr=1e-4, foreach=True) for k, m in models.items()
    }

    def step(name: str, i: int) -> None:
        x, y = data[i, :, :-1], data[i, :, 1:]
        loss = F.cross_entropy(models[name](x).flatten(0, 1), y.flatten())
        loss.backward()
        optims[name].step()
        optims[name].zero_grad(set_to_none=True)

    spent = {k: 0.0 for k in models}
    for name in models:
        step(name, steps)  # warm-up
    for i in range(steps):
        for name in models:  # interleaved, so load falls on both alike
            t = time.perf_counter()
            step(name, i)
            spent[name] += time.perf_counter() - t
    flops = flops_per_token(n_ours, cfg["dim"], cfg["layers"], seq)
    tps = {k: steps * batch * seq / s for k, s in spent.items()}
    return {
        "size": size, **cfg, "seq": seq, "batch": batch, "steps": steps, "parameters": n_ours,
        "tokens_per_s": tps, "throughput_ratio": tps["nnblocks"] / tps["plain"],
        "fraction_of_fp32_peak": {k: v * flops / peak for k, v in tps.items()},
    }  # fmt: skip


def run(quick: bool = False) -> dict[str, Any]:
    peak = matmul_peak(0.3 if quick else 1.0)
    seqs = (32, 64) if quick else (128, 256)
    steps = 2 if quick else 8
    rows = [case(size, seq, steps, 4 if quick else 8, peak) for size in SIZES for seq in seqs]
    return {"benchmark": "lm_train", "fp32_matmul_peak_flops": peak, "results": rows,
            "load_average_1min": os.getloadavg()[0]}  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true")
    args = parser.parse_args()
    doc = run(args.quick)
    for r in doc["results"]:
        print(r["size"], r["seq"], f"{r['throughput_ratio']:.3f}", r["tokens_per_s"])
    out = ROOT / "benchmarks" / "results" / "lm_train.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(doc, indent=1) + "\n")
    assert math.isfinite(doc["fp32_matmul_peak_flops"])


if __name__ == "__main__":
    main()
