"""A language-model corpus bigger than memory: peak memory and tokens/s (issue 19).

1. Tokenise the Python standard library's sources once (characters), then write a corpus of
   at least ``--gb`` GB of uint16 tokens by repeating those token streams in a seeded
   shuffled file order (``TokenWriter``: streamed, atomic, with a manifest), and a small
   corpus of ``--small-tokens`` tokens the same way.
2. Train the same small ``transformer_lm`` for ``--steps`` steps, each run in its own
   process so its peak resident memory (``ru_maxrss``) is its own:
   ``memory``: the small corpus as in-memory ``TensorData`` (``from_documents`` windows);
   ``mapped-small``: the small corpus memory-mapped (``TokenBlocks``);
   ``mapped-big``: the big corpus memory-mapped.
   Runs are interleaved ``--repeats`` times; tokens/s is the median.

The machine is shared: the load average is printed and stored with the figures.

    python benchmarks/big_corpus.py [--gb 2] [--steps 150] [--repeats 2] [--folder DIR] [--keep] [--reuse]
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import torch

MODEL = {"name": "transformer_lm", "dim": 64, "heads": 4, "layers": 2, "dropout": 0.0}
BLOCK, BATCH = 128, 32


def _stdlib_streams(max_files: int = 400) -> tuple[list[np.ndarray], object]:
    from nnblocks.data import CharTokenizer
    from nnblocks.data.datasets.python_source import stdlib_files

    files = stdlib_files()[:max_files]
    texts = [f.read_text(encoding="utf-8", errors="replace") for f in files]
    tok = CharTokenizer(min_freq=5).fit(texts)
    return [np.asarray(tok.encode(t, eos=True), dtype=np.uint16) for t in texts], tok


def write_corpus(folder: Path, n_tokens: int, seed: int) -> float:
    """Repeat the stdlib token streams (shuffled order) until ``n_tokens``; returns seconds."""
    from nnblocks.data import TokenWriter
    from nnblocks.io.atomic import atomic_files

    streams, tok = _stdlib_streams()
    rng = np.random.default_rng(seed)
    folder.mkdir(parents=True, exist_ok=True)
    start = time.perf_counter()
    with atomic_files(folder) as staging:
        writer = TokenWriter(staging, tok)  # type: ignore[arg-type]
        written = 0
        try:
            valid = np.concatenate(streams[:4])
            writer.add("valid", valid)
            while written < n_tokens:
                chunk = np.concatenate([streams[i] for i in rng.permutation(len(streams))[:64]])
                chunk = chunk[: n_tokens - written]
                writer.add("train", chunk)
                written += len(chunk)
            writer.finish()
        finally:
            writer.close()
    return time.perf_counter() - start


def run_phase(kind: str, folder: Path, steps: int) -> dict[str, float]:
    """Train ``steps`` steps in this process; returns tokens/s and peak memory."""
    import nnblocks
    from nnblocks.data import TensorData, from_token_corpus
    from nnblocks.train import CancelFit, Learner
    from nnblocks.train.callback import Callback

    torch.set_num_threads(1)
    rss_start = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    bundle = from_token_corpus(folder, block_size=BLOCK)
    data = bundle.train
    if kind == "memory":  # the same tokens as in-memory windows (the in-memory loader's path)
        stream = torch.from_numpy(np.array(bundle.train.stream.numpy(), dtype=np.int64))
        n = (len(stream) - 1) // BLOCK
        x = stream[: n * BLOCK].view(n, BLOCK).clone()  # [N, T]
        y = stream[1 : n * BLOCK + 1].view(n, BLOCK).clone()  # [N, T]
        del stream
        data = TensorData(x, y, names=["tokens", "next"])

    from nnblocks.train.loaders import TensorLoader

    loader = TensorLoader(data, BATCH, shuffle=True, seed=0)
    batches = min(len(loader), 2000)
    t0 = time.perf_counter()
    for i, _ in enumerate(loader):  # the loader alone: the per-batch cost of the data path
        if i + 1 >= batches:
            break
    loader_us = (time.perf_counter() - t0) / batches * 1e6

    class StopAfter(Callback):
        def __init__(self) -> None:
            self.t0 = 0.0
            self.seconds = 0.0

        def after_batch(self, learn):  # type: ignore[no-untyped-def]
            if learn.train_step == 10:  # warm-up steps are not timed
                self.t0 = time.perf_counter()
            if learn.train_step >= steps + 10:
                self.seconds = time.perf_counter() - self.t0
                raise CancelFit

    torch.manual_seed(0)
    model = nnblocks.build(MODEL, "model", **bundle.task.model_args)
    params_mb = sum(p.numel() * p.element_size() for p in model.parameters()) / 2**20
    stop = StopAfter()
    learn = Learner(
        model,
        {"train": data},
        loss=bundle.task.loss,
        metrics=[],
        batch_size=BATCH,
        lr=1e-3,
        progress=False,
        audit="off",
        callbacks=[stop],
    )
    learn.fit(1)
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    return {
        "tokens_per_s": steps * BATCH * BLOCK / stop.seconds,
        "loader_us_per_batch": loader_us,
        "peak_rss_mb": peak,
        "rss_before_data_mb": rss_start,
        "params_mb": params_mb,
        "corpus_tokens": int(sum(bundle.info["tokens"].values())),
    }


def _child(kind: str, folder: Path, steps: int) -> dict[str, float]:
    out = subprocess.run(
        [sys.executable, __file__, "--phase", kind, "--folder", str(folder), "--steps", str(steps)],
        capture_output=True,
        text=True,
        check=True,
        env={**os.environ, "OMP_NUM_THREADS": "1"},
    )
    return json.loads(out.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--gb", type=float, default=2.0)
    parser.add_argument("--small-tokens", type=int, default=4_000_000)
    parser.add_argument("--steps", type=int, default=150)
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--folder", default="/tmp/nnblocks_big_corpus")
    parser.add_argument("--keep", action="store_true", help="keep the corpora afterwards")
    parser.add_argument("--reuse", action="store_true", help="use corpora kept by --keep")
    parser.add_argument("--phase", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.phase:
        print(json.dumps(run_phase(args.phase, Path(args.folder), args.steps)))
        return
    root = Path(args.folder)
    big, small = root / "big", root / "small"
    big_tokens = int(args.gb * 1e9 / 2)  # uint16: 2 bytes a token
    load = {"before": os.getloadavg()}
    reuse = args.reuse and (big / "corpus.json").is_file() and (small / "corpus.json").is_file()
    write_big = 0.0 if reuse else write_corpus(big, big_tokens, seed=0)
    if not reuse:
        write_corpus(small, args.small_tokens, seed=1)
    size_gb = (big / "train.bin").stat().st_size / 1e9
    print(f"{size_gb:.2f} GB of tokens; written in {write_big:.0f} s (0: reused)")
    runs: dict[str, list[dict[str, float]]] = {"memory": [], "mapped-small": [], "mapped-big": []}
    for _ in range(args.repeats):
        for kind in runs:
            folder = big if kind == "mapped-big" else small
            runs[kind].append(_child(kind, folder, args.steps))
            print(kind, runs[kind][-1], "load", os.getloadavg())
    load["after"] = os.getloadavg()
    summary = {
        kind: {
            "tokens_per_s": statistics.median(r["tokens_per_s"] for r in rs),
            "peak_rss_mb": max(r["peak_rss_mb"] for r in rs),
            "loader_us_per_batch": statistics.median(r["loader_us_per_batch"] for r in rs),
            "corpus_tokens": rs[0]["corpus_tokens"],
            "params_mb": rs[0]["params_mb"],
        }
        for kind, rs in runs.items()
    }
    ratio = summary["mapped-small"]["tokens_per_s"] / summary["memory"]["tokens_per_s"]
    growth = summary["mapped-big"]["peak_rss_mb"] - summary["mapped-small"]["peak_rss_mb"]
    print(
        f"\n{'run':14} {'tokens':>14} {'tokens/s':>10} {'loader us/batch':>16} {'peak RSS MB':>12}"
    )
    for kind, s in summary.items():
        print(
            f"{kind:14} {s['corpus_tokens']:>14,} {s['tokens_per_s']:>10.0f} "
            f"{s['loader_us_per_batch']:>16.0f} {s['peak_rss_mb']:>12.0f}"
        )
    print(f"memory-mapped / in-memory tokens/s (same corpus): {ratio:.3f}")
    print(f"peak RSS, big corpus minus small corpus (both mapped): {growth:+.0f} MB")
    print(f"load average (1, 5, 15 min) before {load['before']}, after {load['after']}")
    result = {
        "corpus_gb": size_gb,
        "write_seconds": write_big,
        "steps": args.steps,
        "batch": BATCH,
        "block": BLOCK,
        "summary": summary,
        "runs": runs,
        "mapped_over_memory_tokens_per_s": ratio,
        "peak_rss_growth_mb": growth,
        "load_average": load,
        "cpu_count": os.cpu_count(),
        "torch_threads": 1,
    }
    out = Path(__file__).parent / "results" / "big_corpus.json"
    out.parent.mkdir(exist_ok=True)
    out.write_text(json.dumps(result, indent=1) + "\n")
    if not args.keep:
        shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    main()
