"""Peak memory of `nnblocks.interop.from_transformers` on a ~500 MB Llama-style checkpoint.

Writes a random checkpoint in the Hugging Face layout (config.json + model.safetensors,
written directly with safetensors, so transformers is not needed), then imports it in a
fresh interpreter and reports the peak resident memory the import added, as a multiple of
the checkpoint's size. The goal (issue 11): at most 1.3x the checkpoint plus the
interpreter, i.e. the weights are streamed into a model materialised once, not held twice.

    PYTHONPATH=. python benchmarks/import_memory.py [--size-mb 500]

Writes ``benchmarks/results/import_memory.json``.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

import torch
from safetensors.torch import save_file

ROOT = Path(__file__).resolve().parents[1]

_CHILD = r"""
import sys, time
import torch, nnblocks.interop
def status_mb(field):
    # /proc: VmHWM is this process's own peak (getrusage's ru_maxrss survives exec, so it
    # would report the parent's peak); VmRSS the current resident size.
    for line in open("/proc/self/status"):
        if line.startswith(field + ":"):
            return int(line.split()[1]) / 1024
def peak_mb():
    return status_mb("VmHWM")
base = status_mb("VmRSS")
start = time.perf_counter()
model = nnblocks.interop.from_transformers(sys.argv[1])
seconds = time.perf_counter() - start
params = sum(p.numel() * p.element_size() for p in model.parameters()) / 2**20
print(f"{base:.1f} {peak_mb():.1f} {params:.1f} {seconds:.2f}")
"""


def llama_config(size_mb: int) -> dict:
    """A Llama config whose float32 weights are about ``size_mb`` MB."""
    dim, vocab, hidden = 1024, 32000, 2816
    per_layer = 4 * (2 * dim * dim + 2 * 512 * dim) + 4 * 3 * dim * hidden  # attention, MLP
    fixed = 4 * 2 * vocab * dim  # untied embedding and head
    layers = max(1, round((size_mb * 2**20 - fixed) / per_layer))
    return {
        "architectures": ["LlamaForCausalLM"], "model_type": "llama", "vocab_size": vocab,
        "hidden_size": dim, "intermediate_size": hidden, "num_hidden_layers": layers,
        "num_attention_heads": 16, "num_key_value_heads": 8, "max_position_embeddings": 2048,
        "rms_norm_eps": 1e-6, "rope_parameters": {"rope_type": "default", "rope_theta": 1e4},
        "tie_word_embeddings": False, "bos_token_id": 1, "eos_token_id": 2,
    }  # fmt: skip


def write_checkpoint(folder: Path, config: dict) -> int:
    """Random weights with Llama's tensor names; returns the file size in bytes."""
    dim, hidden, kv = config["hidden_size"], config["intermediate_size"], 512
    shapes = {"model.embed_tokens.weight": (config["vocab_size"], dim),
              "lm_head.weight": (config["vocab_size"], dim), "model.norm.weight": (dim,)}  # fmt: skip
    for i in range(config["num_hidden_layers"]):
        p = f"model.layers.{i}."
        shapes.update({
            p + "self_attn.q_proj.weight": (dim, dim), p + "self_attn.k_proj.weight": (kv, dim),
            p + "self_attn.v_proj.weight": (kv, dim), p + "self_attn.o_proj.weight": (dim, dim),
            p + "mlp.gate_proj.weight": (hidden, dim), p + "mlp.up_proj.weight": (hidden, dim),
            p + "mlp.down_proj.weight": (dim, hidden), p + "input_layernorm.weight": (dim,),
            p + "post_attention_layernorm.weight": (dim,),
        })  # fmt: skip
    generator = torch.Generator().manual_seed(0)
    tensors = {k: torch.randn(s, generator=generator) * 0.02 for k, s in shapes.items()}
    save_file(tensors, str(folder / "model.safetensors"), metadata={"format": "pt"})
    del tensors  # not held while the child runs
    (folder / "config.json").write_text(json.dumps(config))
    return (folder / "model.safetensors").stat().st_size


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size-mb", type=int, default=500)
    parser.add_argument(
        "--out", type=Path, default=ROOT / "benchmarks" / "results" / "import_memory.json"
    )
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        size = write_checkpoint(folder, llama_config(args.size_mb)) / 2**20
        env = {**os.environ, "OMP_NUM_THREADS": "1"}
        out = subprocess.run(
            [sys.executable, "-c", _CHILD, str(folder)],
            capture_output=True, text=True, env=env, check=True,
        ).stdout.split()  # fmt: skip
    base, peak, params, seconds = (float(x) for x in out)
    added = peak - base
    print(f"checkpoint           {size:8.1f} MB")
    print(f"interpreter (before) {base:8.1f} MB RSS (torch and nnblocks imported)")
    print(f"peak during import   {peak:8.1f} MB  (+{added:.1f} MB)")
    print(f"model weights        {params:8.1f} MB")
    print(f"ratio added / checkpoint: {added / size:.2f}x  (goal <= 1.30x)")
    print(f"import took {seconds:.1f} s; load average {os.getloadavg()[0]:.1f}")
    result = {
        "benchmark": "import_memory",
        "checkpoint_mb": round(size, 1),
        "interpreter_rss_mb": round(base, 1),
        "peak_rss_mb": round(peak, 1),
        "added_mb": round(added, 1),
        "ratio": round(added / size, 3),
        "goal": 1.3,
        "import_seconds": round(seconds, 2),
        "load_average": round(os.getloadavg()[0], 2),
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    if added / size > 1.3:
        sys.exit(f"peak memory {added / size:.2f}x the checkpoint is over the goal of 1.3x")


if __name__ == "__main__":
    main()
