"""``make bench``: run every benchmark and write ``benchmarks/results.md`` and ``results.json``.

Each section is a program of its own (``benchmarks/<section>.py``) that measures nnblocks
and its reference side by side in one run and returns ratios; this runner calls them in
turn, writes their JSON beside ``results.md`` and renders the tables. A section whose peer
is not installed lists it as skipped. The GPU section runs only where CUDA is present.

Usage::

    OMP_NUM_THREADS=1 python benchmarks/run_all.py [--quick] [--full] [--only decode ...]
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import sys
import tempfile
import time
import traceback
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))  # the section programs are modules of this folder

import attention_parts  # noqa: E402
import decode  # noqa: E402
import gpu  # noqa: E402
import lm_train  # noqa: E402
import loop_overhead  # noqa: E402
import quality  # noqa: E402

SECTIONS = ("loop_overhead", "lm_train", "attention_parts", "decode", "quality", "gpu")


def _loop_overhead(quick: bool, full: bool) -> dict[str, Any]:
    """benchmarks/loop_overhead.py's own entry point; its JSON is the section's result."""
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "loop.json"
        argv = ["--json", str(out)] + (
            ["--epochs", "1", "--repeats", "1"] if quick else ["--repeats", "5"]
        )
        loop_overhead.main(argv)
        return json.loads(out.read_text())


def _gpu(quick: bool, full: bool) -> dict[str, Any]:
    if not torch.cuda.is_available():
        return {"not_run": "no CUDA device on this machine: the GPU section (bf16, SDPA flash, "
                "compile, MFU) did not run"}  # fmt: skip
    return gpu.run(quick=quick)


RUNNERS: dict[str, Callable[[bool, bool], dict[str, Any]]] = {
    "loop_overhead": _loop_overhead,
    "lm_train": lambda quick, full: lm_train.run(quick),
    "attention_parts": lambda quick, full: attention_parts.run(quick),
    "decode": lambda quick, full: decode.run(quick=quick),
    "quality": lambda quick, full: quality.run(full=full, quick=quick),
    "gpu": _gpu,
}


def machine() -> dict[str, Any]:
    return {
        "date_utc": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M"),
        "machine": f"{platform.machine()}, {platform.processor() or 'unknown cpu'}, "
        f"{os.cpu_count()} cores, {platform.system()} {platform.release()}",
        "python": platform.python_version(),
        "torch": torch.__version__,
        "threads": torch.get_num_threads(),
        "OMP_NUM_THREADS": os.environ.get("OMP_NUM_THREADS"),
        "cuda": torch.cuda.get_device_name() if torch.cuda.is_available() else None,
        "load_average_start": [round(v, 2) for v in os.getloadavg()],
    }


def _table(header: list[str], rows: list[list[Any]]) -> list[str]:
    def cell(v: Any) -> str:
        return f"{v:.3g}" if isinstance(v, float) else str(v)

    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    return lines + ["| " + " | ".join(cell(v) for v in row) + " |" for row in rows]


def _md_loop(doc: dict[str, Any]) -> list[str]:
    rows = doc.get("rows", [])
    keys = [k for k in (rows[0] if rows else {}) if not isinstance(rows[0][k], (list, dict))]
    out = _table(keys, [[r[k] for k in keys] for r in rows])
    out += [f"- skipped: {name}: {why}" for name, why in doc.get("skipped", {}).items()]
    return out


def _md_lm(doc: dict[str, Any]) -> list[str]:
    out = [f"fp32 matmul peak measured in this run: {doc['fp32_matmul_peak_flops'] / 1e9:.1f} "
           "GFLOP/s (1024^3 matmul). Parameter counts asserted equal.", ""]  # fmt: skip
    rows = [
        [r["size"], r["dim"], r["layers"], r["seq"], r["parameters"],
         round(r["tokens_per_s"]["nnblocks"]), round(r["tokens_per_s"]["plain"]),
         r["throughput_ratio"], r["fraction_of_fp32_peak"]["nnblocks"],
         r["fraction_of_fp32_peak"]["plain"]]
        for r in doc["results"]
    ]  # fmt: skip
    return out + _table(
        ["size", "dim", "layers", "seq", "params", "nnblocks tok/s", "plain tok/s",
         "nnblocks / plain", "nnblocks frac. of peak", "plain frac. of peak"], rows)  # fmt: skip


def _md_attention(doc: dict[str, Any]) -> list[str]:
    lengths = [row["length"] for row in doc["results"][0]["rows"]]
    rows = []
    for r in doc["results"]:
        cells = []
        for row in r["rows"]:
            if "seconds" in row:
                cells.append(f"{row['seconds'] * 1e3:.0f} ms / {row['peak_bytes'] / 2**20:.1f} MiB")
            else:
                cells.append("skipped")
        rows.append([r["part"], *cells])
    notes = sorted(
        {row["skipped"] for r in doc["results"] for row in r["rows"] if "skipped" in row}
    )
    out = [f"dim {doc['dim']}, {doc['heads']} heads, batch {doc['batch']}, causal; forward+"
           f"backward time / peak tensor memory; time budget {doc['budget_seconds']} s per "
           f"length: ![chart]({Path(doc['chart']).name})", ""]  # fmt: skip
    out += _table(["part", *map(str, lengths)], rows)
    return out + [f"- {note}: longer lengths of that part skipped" for note in notes]


def _md_decode(doc: dict[str, Any]) -> list[str]:
    cfg = doc["config"]
    out = [f"Llama-style model, {doc['parameters']:,} parameters (d {cfg['hidden_size']}, "
           f"{cfg['num_hidden_layers']} layers, {cfg['num_attention_heads']} heads, "
           f"{cfg['num_key_value_heads']} kv heads, vocab {cfg['vocab_size']}); the same random "
           "weights in transformers' LlamaForCausalLM and nnblocks; prompt of 8 tokens."]  # fmt: skip
    out.append("Tokens/s: the best timed call of each run, taking turns; a cached run is timed "
               "three times as often as an uncached one, and the cache speedup compares the "
               "uncached calls with the cached calls of the same turns. The plain loop is the same "
               "model's greedy decoding written by hand on its state dict (F.linear, a cache "
               "allocated once, SDPA; benchmarks/plain_llama_decode.py): what is left over it "
               "is the library's own cost.")  # fmt: skip
    if doc["transformers_skipped"]:
        out.append(f"transformers: skipped ({doc['transformers_skipped']})")
    out.append("")
    rows = []
    for r in doc["results"]:
        tps = r["tokens_per_s"]
        rows.append([
            r["decode"], r["batch"], r["tokens"], round(tps["nnblocks"]),
            round(tps["nnblocks_uncached"]), round(tps["transformers"]) if "transformers" in tps else "skipped",
            r.get("vs_transformers", "skipped"),
            round(tps["plain"]) if "plain" in tps else "-", r.get("vs_plain", "-"),
            r["cache_speedup"], r.get("same_tokens_as_transformers", "-"),
            r.get("same_tokens_as_plain", "-"), r["same_tokens_uncached"],
        ])  # fmt: skip
    out += _table(["decoding", "batch", "new tokens", "nnblocks tok/s", "uncached tok/s",
                   "transformers tok/s", "nnblocks / transformers", "plain loop tok/s",
                   "nnblocks / plain loop", "cache speedup", "same tokens as transformers",
                   "same tokens as plain loop", "cached = uncached"], rows)  # fmt: skip
    for r in doc["results"]:
        d = r.get("differences")
        if d:
            likelier = "at least as" if d["nnblocks_at_least_as_likely"] else "less"
            pairs = ", ".join(f"{a:.2f} vs {b:.2f}" for a, b in
                              zip(d["nnblocks_logprob"], d["transformers_logprob"]))  # fmt: skip
            out.append(f"- {r['decode']}, batch {r['batch']}: rows {d['rows']} differ; there "
                       f"nnblocks' hypothesis is {likelier} likely (log-probability under the "
                       f"model, nnblocks vs transformers: {pairs})")  # fmt: skip
    c = doc["cache_at_length"]
    return out + ["", f"Cache speedup, greedy, batch 1, {c['tokens']} tokens: "
                  f"**{c['cache_speedup']:.2f}x** (goal 5x); same tokens: {c['same_tokens_uncached']}."]  # fmt: skip


def _md_quality(doc: dict[str, Any]) -> list[str]:
    rows = []
    for r in doc["results"]:
        shown = {k: v for k, v in r.get("metrics", {}).items() if k.startswith("test_")}
        metrics = ", ".join(f"{k} {v:.4g}" if isinstance(v, float) else f"{k} {v}"
                            for k, v in shown.items())  # fmt: skip
        seconds = f"{r['seconds']:.0f} s" if "seconds" in r else ""
        rows.append([r["recipe"], r.get("epochs", ""), metrics, seconds, r["status"]])
    return _table(["recipe", "epochs", "final metrics", "time to metric", "status"], rows)


def _md_gpu(doc: dict[str, Any]) -> list[str]:
    peaks, t = doc["matmul_peak_flops"], doc["training"]
    k, h = doc["attention_kernel"], doc["hybridize_auto"]
    out = [f"{doc['device']}; measured matmul peak: bf16 {peaks['bf16'] / 1e12:.1f} TFLOP/s, "
           f"fp32 {peaks['fp32'] / 1e12:.1f} TFLOP/s.", ""]  # fmt: skip
    out += _table(
        ["model", "seq", "batch", "params", "nnblocks tok/s", "plain tok/s", "nnblocks / plain",
         "nnblocks MFU", "plain MFU", "Learner autocast"],
        [[f"d {t['dim']}, {t['layers']} layers", t["seq"], t["batch"], t["parameters"],
          round(t["tokens_per_s"]["nnblocks"]), round(t["tokens_per_s"]["plain"]),
          t["nnblocks_over_plain"], t["mfu_vs_measured_bf16_peak"]["nnblocks"],
          t["mfu_vs_measured_bf16_peak"]["plain"], t["learner_autocast"]]],
    )  # fmt: skip
    out += ["", f"SDPA kernels run by `mha` (bf16 forward+backward): {', '.join(k['kernels'])}; "
            f"fused: {k['fused']}, math fallback: {k['math_fallback']}.",
            f"`hybridize=\"auto\"` on a training step (d {h['dim']}, {h['layers']} layers, seq "
            f"{h['seq']}): chose **{h['chose']}** ({h['reason']}).", ""]  # fmt: skip
    rows = [[r["batch"], round(r["tokens_per_s"]["nnblocks"]),
             round(r["tokens_per_s"].get("transformers", 0)) or "skipped",
             r.get("vs_transformers", "skipped"), r["cache_speedup"]]
            for r in doc["decoding"]]  # fmt: skip
    return out + _table(
        ["greedy batch", "nnblocks tok/s", "transformers tok/s", "nnblocks / transformers",
         "cache speedup"], rows)  # fmt: skip


RENDER = {"loop_overhead": _md_loop, "lm_train": _md_lm, "attention_parts": _md_attention,
          "decode": _md_decode, "quality": _md_quality, "gpu": _md_gpu}  # fmt: skip
TITLES = {"loop_overhead": "Loop overhead (small MLP)", "lm_train": "Language-model training",
          "attention_parts": "Attention parts", "decode": "Decoding",
          "quality": "Quality (recipes)", "gpu": "GPU"}  # fmt: skip


def render(doc: dict[str, Any]) -> str:
    m = doc["machine"]
    lines = [
        "# nnblocks benchmarks", "",
        f"Written by `make bench` ({'quick mode' if doc['quick'] else 'full budget' if doc['full'] else 'default budget'}) "
        f"on {m['date_utc']} UTC in {doc['seconds'] / 60:.1f} min. Every figure is measured in this "
        "run, side by side with its reference; ratios above 1 favour nnblocks unless the "
        "column says otherwise.", "",
        f"- machine: {m['machine']}", f"- python {m['python']}, torch {m['torch']}",
        f"- threads: torch {m['threads']}, OMP_NUM_THREADS={m['OMP_NUM_THREADS']}",
        f"- load average (1, 5, 15 min) at the start: {m['load_average_start']}, at the end: "
        f"{doc['load_average_end']} (the machine is shared: figures are as measured under that load)",
        f"- GPU: {m['cuda'] or 'none: the GPU section did not run'}", "",
    ]  # fmt: skip
    for name in doc["order"]:
        section = doc["sections"][name]
        lines += [f"## {TITLES[name]}", ""]
        if "error" in section:
            lines += [f"Failed: `{section['error']}`", ""]
        elif isinstance(section.get("not_run", section.get("skipped")), str):
            lines += [f"Not run: {section.get('not_run', section.get('skipped'))}", ""]
        else:
            lines += [*RENDER[name](section), ""]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="a smoke run of every section")
    parser.add_argument("--full", action="store_true", help="train every recipe fully")
    parser.add_argument("--only", nargs="+", choices=SECTIONS, default=list(SECTIONS))
    parser.add_argument("--out", type=Path, default=HERE / "results.md")
    parser.add_argument("--render", action="store_true", help="rewrite --out from its JSON")
    args = parser.parse_args(argv)
    if args.render:
        args.out.write_text(render(json.loads(args.out.with_suffix(".json").read_text())) + "\n")
        return 0
    start = time.perf_counter()
    doc: dict[str, Any] = {"machine": machine(), "quick": args.quick, "full": args.full,
                           "order": args.only, "sections": {}}  # fmt: skip
    for name in args.only:
        print(f"== {name}", flush=True)
        t = time.perf_counter()
        try:
            doc["sections"][name] = RUNNERS[name](args.quick, args.full)
        except Exception as exc:  # one broken section must not hide the others
            traceback.print_exc()
            doc["sections"][name] = {"error": f"{type(exc).__name__}: {exc}"}
        doc["sections"][name]["section_seconds"] = time.perf_counter() - t
    doc["seconds"] = time.perf_counter() - start
    doc["load_average_end"] = [round(v, 2) for v in os.getloadavg()]
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.with_suffix(".json").write_text(json.dumps(doc, indent=1, default=str) + "\n")
    args.out.write_text(render(doc) + "\n")
    print(f"wrote {args.out} in {doc['seconds'] / 60:.1f} min")
    return 0


if __name__ == "__main__":
    sys.exit(main())
