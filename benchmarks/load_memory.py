"""Peak memory of ``nnblocks.load``: meta-device check + materialise against build-then-copy.

A random ``transformer_lm`` of about ``--mb`` megabytes (fp32) is saved once; each way of
loading it then runs in a fresh interpreter, which reports its peak resident memory
(``VmHWM``, anonymous and file-backed pages) and time (``load, 2nd``: the second load in one process, without
the one-time imports the first pays). ``baseline`` is the interpreter with torch and nnblocks imported
and the model's spec read; ``load`` is ``nnblocks.load``; ``build+copy`` is what loading did
before (build with random initialisation, then ``load_state_dict`` from the file). After
loading, every parameter is read once, so pages of a memory-mapped file count as well.

    python benchmarks/load_memory.py [--mb 200]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

CHILD = r"""
import json, sys, time
import torch, nnblocks
from nnblocks.io import read_tensors
folder, how = sys.argv[1], sys.argv[2]
doc = json.loads(open(folder + "/config.json").read())
t0 = time.perf_counter()
if how == "load":
    model = nnblocks.load(folder)
elif how == "load, 2nd":  # without the one-time imports (normal_ on meta imports dynamo)
    model = nnblocks.load(folder)
    del model
    t0 = time.perf_counter()
    model = nnblocks.load(folder)
elif how == "build+copy":
    model = nnblocks.build(doc["spec"], doc["kind"])
    model.load_state_dict(read_tensors(folder + "/model.safetensors"))
seconds = time.perf_counter() - t0
if how != "baseline":  # touch every weight: mapped pages count once they are read
    total = sum(float(p.detach().double().sum()) for p in model.parameters())
# VmHWM, not ru_maxrss: ru_maxrss survives exec, so a child would report its parent's peak.
hwm = next(int(l.split()[1]) for l in open("/proc/self/status") if l.startswith("VmHWM"))
print(json.dumps({"peak_mb": hwm / 1024,
                  "seconds": seconds}))
"""


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--mb", type=float, default=200.0, help="checkpoint size to write")
    args = parser.parse_args()
    import nnblocks

    dim = 512
    layers = max(1, round(args.mb * 2**20 / 4 / (12 * dim * dim)))
    spec = {"name": "transformer_lm", "vocab_size": 1000, "dim": dim, "heads": 8,
            "layers": layers, "position": "rotary"}  # fmt: skip
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp) / "model"
        nnblocks.save(nnblocks.build(spec), folder)
        size_mb = (folder / "model.safetensors").stat().st_size / 2**20
        env = {**os.environ, "OMP_NUM_THREADS": "1"}
        rows = {}
        for how in ("baseline", "load", "load, 2nd", "build+copy"):
            out = subprocess.run(
                [sys.executable, "-c", CHILD, str(folder), how],
                capture_output=True, text=True, check=True, env=env,
            )  # fmt: skip
            rows[how] = json.loads(out.stdout.strip().splitlines()[-1])
    base = rows["baseline"]["peak_mb"]
    print(f"checkpoint {size_mb:.0f} MB ({layers} layers); load average {os.getloadavg()}")
    print(f"{'way':<12} {'peak MB':>9} {'above baseline':>15} {'x checkpoint':>13} {'s':>6}")
    for how, row in rows.items():
        extra = row["peak_mb"] - base
        print(f"{how:<12} {row['peak_mb']:9.0f} {extra:15.0f} {extra / size_mb:13.2f} "
              f"{row['seconds']:6.2f}")  # fmt: skip


if __name__ == "__main__":
    main()
