"""Image folders read from their files: step time with and without worker processes (issue 19).

Writes ``--images`` random JPEG images (``--pixels`` square, two classes) into a folder,
loads it with ``from_image_folder(decode="files", augment=[random_crop, flip])`` — every
example decoded, resized and augmented when a batch needs it — and trains a small CNN for
``--steps`` steps with the Learner's ``DataLoader`` path, once with ``num_workers=0`` (all in
the training process) and once with the automatic choice (``None``: ``min(4, cores - 1)``
workers; pinned memory on CUDA). Runs alternate ``--repeats`` times; the median step time is
reported. With few free cores (a shared machine) workers compete with the training process
for them: the load average is stored beside the figures.

    python benchmarks/image_workers.py [--images 512] [--pixels 128] [--steps 30] [--repeats 2]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np
import torch


def write_images(root: Path, n: int, pixels: int) -> None:
    from PIL import Image

    rng = np.random.default_rng(0)
    for c in ("a", "b"):
        (root / c).mkdir(parents=True, exist_ok=True)
    for i in range(n):
        img = rng.integers(0, 255, (pixels, pixels, 3), dtype=np.uint8)
        Image.fromarray(img).save(root / ("a", "b")[i % 2] / f"{i}.jpg", quality=90)


def step_time(bundle, workers: int | None, steps: int, device: str) -> float:  # type: ignore[no-untyped-def]
    import nnblocks
    from nnblocks.train import CancelFit, Learner
    from nnblocks.train.callback import Callback

    class Timer(Callback):
        def __init__(self) -> None:
            self.t0, self.seconds = 0.0, 0.0

        def after_batch(self, learn):  # type: ignore[no-untyped-def]
            if learn.train_step == 3:  # worker start-up and the first batches are not timed
                self.t0 = time.perf_counter()
            if learn.train_step >= steps + 3:
                self.seconds = time.perf_counter() - self.t0
                raise CancelFit

    torch.manual_seed(0)
    model = nnblocks.build(
        {"name": "cnn", "stages": [[16, 1], [32, 1]]}, "model", **bundle.task.model_args
    )
    timer = Timer()
    learn = Learner(
        model,
        {"train": bundle.train},
        loss=bundle.task.loss,
        metrics=[],
        batch_size=32,
        progress=False,
        audit="off",
        num_workers=workers,
        device=device,
        callbacks=[timer],
    )
    learn.fit(10_000)  # epochs until the timer stops the fit after `steps` timed steps
    if not timer.seconds:
        raise RuntimeError("the fit ended before the timed steps: raise --images or lower --steps")
    return timer.seconds / steps


def main() -> None:
    from nnblocks.data import from_image_folder

    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--images", type=int, default=512)
    parser.add_argument("--pixels", type=int, default=128)
    parser.add_argument("--size", type=int, default=64, help="side after resizing")
    parser.add_argument("--steps", type=int, default=30)
    parser.add_argument("--repeats", type=int, default=2)
    args = parser.parse_args()
    torch.set_num_threads(1)
    device = "cuda" if torch.cuda.is_available() else "cpu"
    root = Path(tempfile.mkdtemp(prefix="nnblocks_images_"))
    try:
        write_images(root, args.images, args.pixels)
        bundle = from_image_folder(
            root, size=args.size, decode="files", augment=["random_crop", "flip"]
        )
        load = {"before": os.getloadavg()}
        times: dict[str, list[float]] = {"workers=0": [], "workers=auto": []}
        for _ in range(args.repeats):
            times["workers=0"].append(step_time(bundle, 0, args.steps, device))
            times["workers=auto"].append(step_time(bundle, None, args.steps, device))
            print({k: v[-1] for k, v in times.items()}, "load", os.getloadavg())
        load["after"] = os.getloadavg()
    finally:
        shutil.rmtree(root, ignore_errors=True)
    auto_workers = max(0, min(4, (os.cpu_count() or 1) - 1))
    median = {k: statistics.median(v) for k, v in times.items()}
    print(f"\nstep time (batch 32, {args.size}px from {args.pixels}px JPEGs, {device}):")
    for k, v in median.items():
        print(f"  {k:13} {v * 1000:8.1f} ms")
    print(f"  auto = {auto_workers} worker(s) on {os.cpu_count()} cores")
    print(f"  speed-up with workers: {median['workers=0'] / median['workers=auto']:.2f}x")
    print(f"load average before {load['before']}, after {load['after']}")
    out = Path(__file__).parent / "results" / "image_workers.json"
    out.parent.mkdir(exist_ok=True)
    out.write_text(
        json.dumps(
            {
                "step_seconds": median,
                "runs": times,
                "auto_workers": auto_workers,
                "cpu_count": os.cpu_count(),
                "device": device,
                "images": args.images,
                "pixels": args.pixels,
                "size": args.size,
                "load_average": load,
            },
            indent=1,
        )
        + "\n"
    )


if __name__ == "__main__":
    main()
