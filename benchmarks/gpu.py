"""The GPU section of ``make bench``: bf16 training with the Learner, MFU, SDPA's kernel,
``hybridize="auto"`` and decoding, on one CUDA device.

- **Peaks**: bf16 and fp32 (TF32 off) matmul FLOP/s measured in this run (8192^2 x 8192,
  best of a second's runs), the denominators of model FLOPs utilisation (MFU).
- **Training**: the Learner with its defaults (bf16 autocast where the device supports it,
  one-cycle, NaN guard, metrics) against the same nanoGPT-style model in a hand-written
  bf16 autocast loop (``lm_train.PlainGPT``, parameter counts asserted equal), interleaved
  epoch by epoch; tokens/s and MFU = tokens/s x (6 N + 12 L T D) / measured bf16 peak
  (Kaplan et al. 2020; PaLM appendix B).
- **Attention kernel**: which ``scaled_dot_product_attention`` kernel the nnblocks model
  ran in a bf16 forward and backward (flash, memory-efficient, cuDNN or the math fallback),
  read from the profiler.
- **hybridize="auto"**: what it chose for a training step and the times it measured.
- **Decoding**: ``benchmarks/decode.py``'s greedy cases on the device, against transformers.

Usage::

    python benchmarks/gpu.py [--quick] [--device cuda]

``--device cpu`` runs the same code on the CPU (a smoke test of the section; its figures
mean nothing for a GPU).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F

import nnblocks
from nnblocks.data import TensorData
from nnblocks.train import Learner

sys.path.insert(0, str(Path(__file__).resolve().parent))  # the sibling section programs
import decode  # noqa: E402
from lm_train import PlainGPT, count, flops_per_token, matmul_peak, nnblocks_gpt  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
VOCAB = 1000


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _lm_models(cfg: dict[str, int], seq: int, device: torch.device) -> tuple[Any, Any]:

    torch.manual_seed(0)
    ours = nnblocks_gpt(max_len=seq, **cfg).to(device)
    plain = PlainGPT(max_len=seq, **cfg).to(device)
    assert count(ours) == count(plain), "parameter counts differ"
    return ours, plain


def _plain_epoch(model: Any, opt: Any, x: torch.Tensor, y: torch.Tensor, batch: int) -> None:
    """One epoch of the hand-written bf16 autocast loop (shuffled by randperm indexing)."""
    device = x.device
    for idx in torch.randperm(len(x), device=device).split(batch):
        with torch.autocast(device.type, dtype=torch.bfloat16):
            logits = model(x[idx])
        loss = F.cross_entropy(logits.float().flatten(0, 1), y[idx].flatten())
        loss.backward()
        opt.step()
        opt.zero_grad(set_to_none=True)


def training(device: torch.device, quick: bool, peak: float) -> dict[str, Any]:
    """Learner (defaults) against the plain bf16 loop on a GPT-style model."""
    cfg = (
        {"dim": 256, "layers": 4, "heads": 4} if quick else {"dim": 768, "layers": 12, "heads": 12}
    )
    seq, batch, rows = (64, 8, 64) if quick else (1024, 16, 512)
    ours, plain = _lm_models(cfg, seq, device)
    gen = torch.Generator().manual_seed(0)
    tokens = torch.randint(0, VOCAB, (rows, seq + 1), generator=gen).to(device)
    x, y = tokens[:, :-1].contiguous(), tokens[:, 1:].contiguous()
    # The Learner gets host tensors and moves them itself (pinned, non-blocking), as a
    # user's data would arrive; the plain loop indexes tensors already on the device.
    xc, yc = x.cpu(), y.cpu()
    learn = Learner(
        ours, (TensorData(xc, yc), TensorData(xc[:batch], yc[:batch])),
        nnblocks.data.SequenceCrossEntropy(-1),
        batch_size=batch, progress=False, audit="off", device=device, seed=0,
    )  # fmt: skip
    opt = torch.optim.AdamW(plain.parameters(), lr=1e-3, fused=device.type == "cuda")
    learn.fit(1)  # warm-up: kernels chosen, memory allocated
    _plain_epoch(plain, opt, x, y, batch)
    spent = {"nnblocks": float("inf"), "plain": float("inf")}
    for _ in range(1 if quick else 3):  # interleaved rounds, best kept
        for name in spent:
            _sync(device)
            t = time.perf_counter()
            learn.fit(1) if name == "nnblocks" else _plain_epoch(plain, opt, x, y, batch)
            _sync(device)
            spent[name] = min(spent[name], time.perf_counter() - t)
    n = sum(p.numel() for p in plain.parameters())
    flops = flops_per_token(n, cfg["dim"], cfg["layers"], seq)
    # The Learner's epoch also runs validation (one batch); it is counted against it.
    tps = {k: rows * seq / s for k, s in spent.items()}
    precision = next(
        (cb.dtype for cb in learn.cbs.callbacks if type(cb).__name__ == "MixedPrecision"), None
    )
    return {
        **cfg, "seq": seq, "batch": batch, "parameters": n, "tokens_per_s": tps,
        "nnblocks_over_plain": tps["nnblocks"] / tps["plain"],
        "mfu_vs_measured_bf16_peak": {k: v * flops / peak for k, v in tps.items()},
        "learner_autocast": str(precision),
    }  # fmt: skip


def attention_kernel(device: torch.device) -> dict[str, Any]:
    """Names of the SDPA kernels a bf16 forward+backward of nnblocks' ``mha`` model ran."""
    from torch.profiler import ProfilerActivity, profile

    spec = {"name": "transformer_lm", "vocab_size": 64, "dim": 128, "heads": 4, "layers": 1,
            "max_len": 512, "self_attention": "mha"}  # fmt: skip
    model = nnblocks.build(spec).to(device).train()
    tokens = torch.randint(4, 64, (2, 512), device=device)
    activities = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if device.type == "cuda" else [])
    with profile(activities=activities) as prof, torch.autocast(device.type, dtype=torch.bfloat16):
        model(tokens).float().sum().backward()
    names = sorted({e.name for e in prof.events() if "scaled_dot_product" in e.name})
    fused = [n for n in names if any(k in n for k in ("flash", "efficient", "cudnn"))]
    return {
        "kernels": names,
        "fused": bool(fused),
        "math_fallback": any("math" in n for n in names),
    }


def hybridize_auto(device: torch.device, quick: bool) -> dict[str, Any]:
    """What ``hybridize(mode="auto")`` chose for a training step of a GPT-style model."""
    from nnblocks.hybrid import hybridize

    cfg = {"dim": 128, "layers": 2, "heads": 4} if quick else {"dim": 512, "layers": 6, "heads": 8}
    seq = 64 if quick else 512
    ours, _ = _lm_models(cfg, seq, device)
    ours.train()
    x = torch.randint(0, VOCAB, (8, seq), device=device)
    y = torch.randint(0, VOCAB, (8, seq), device=device)
    result = hybridize(
        ours, (x,), "auto", targets=(y,),
        loss_fn=lambda logits, t: F.cross_entropy(logits.flatten(0, 1), t.flatten()),
    )  # fmt: skip
    return {
        "chose": result.mode, "eager_s": result.eager_s, "compiled_s": result.compiled_s,
        "compile_s": result.compile_s, "reason": result.reason, **cfg, "seq": seq,
    }  # fmt: skip


def decoding(device: torch.device, quick: bool) -> list[dict[str, Any]]:
    ours, theirs, _ = decode.build_pair()
    ours = ours.to(device)
    theirs = theirs.to(device) if theirs is not None else None
    tokens, rounds = (16, 1) if quick else (128, 3)
    return [
        decode.case(ours, theirs, batch=b, beam_size=1, tokens=tokens, rounds=rounds,
                    uncached=True, device=device)
        for b in (1, 8)
    ]  # fmt: skip


def run(quick: bool = False, device: str = "cuda") -> dict[str, Any]:
    """Every part of the section on ``device``; the JSON document ``run_all`` renders."""
    dev = torch.device(device)
    size, seconds = (512, 0.2) if quick else (8192, 1.0)
    torch.backends.cuda.matmul.allow_tf32 = False  # the fp32 peak is plain fp32
    peaks = {
        name: matmul_peak(seconds, device=dev, dtype=dtype, size=size)
        for name, dtype in (("bf16", torch.bfloat16), ("fp32", torch.float32))
    }
    return {
        "benchmark": "gpu",
        "device": torch.cuda.get_device_name(dev) if dev.type == "cuda" else str(dev),
        "bf16_supported": dev.type == "cuda" and torch.cuda.is_bf16_supported(),
        "matmul_peak_flops": peaks,
        "training": training(dev, quick, peaks["bf16"]),
        "attention_kernel": attention_kernel(dev),
        "hybridize_auto": hybridize_auto(dev, quick),
        "decoding": decoding(dev, quick),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--device", default="cuda")
    args = parser.parse_args()
    doc = run(args.quick, args.device)
    print(json.dumps(doc, indent=1, default=str))
    out = ROOT / "benchmarks" / "results" / "gpu.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(doc, indent=1, default=str) + "\n")


if __name__ == "__main__":
    main()
