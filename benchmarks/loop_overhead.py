"""Per-step overhead of the Learner against hand-written PyTorch loops (issue 5).

Same 3-layer MLP (64-128-128-10), 16,384 in-memory training samples, Adam, batch 64, one
thread. Every loop also measures accuracy on 2,048 validation samples after each epoch (the
Learner through its torchmetrics "accuracy" metric, with its progress bar on). Variants run
interleaved, ``--repeats`` times each; the table shows the median time per epoch and the
ratio to the plain DataLoader loop, and a JSON copy is written next to this file.

    python benchmarks/loop_overhead.py [--epochs 2] [--repeats 3]

Peers (Lightning, fastai) are timed too when they are installed.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

N_TRAIN, N_VALID, D_IN, CLASSES, BATCH, LR = 16384, 2048, 64, 10, 64, 1e-3


def make_data() -> tuple[torch.Tensor, ...]:
    g = torch.Generator().manual_seed(0)
    x = torch.randn(N_TRAIN + N_VALID, D_IN, generator=g)
    w = torch.randn(D_IN, CLASSES, generator=g)
    y = (x @ w).argmax(1)
    return x[:N_TRAIN], y[:N_TRAIN], x[N_TRAIN:], y[N_TRAIN:]


def make_model() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(
        nn.Linear(D_IN, 128), nn.ReLU(), nn.Linear(128, 128), nn.ReLU(), nn.Linear(128, CLASSES)
    )


def _valid_accuracy(model: nn.Module, batches: Callable[[], object]) -> float:
    model.eval()
    hits = total = 0
    with torch.no_grad():
        for xb, yb in batches():  # type: ignore[attr-defined]
            hits += int((model(xb).argmax(1) == yb).sum())
            total += len(yb)
    model.train()
    return hits / total


def plain_dataloader(data: tuple[torch.Tensor, ...], epochs: int) -> float:
    """What a researcher writes: DataLoader(TensorDataset), Adam, zero_grad/backward/step."""
    from torch.utils.data import DataLoader, TensorDataset

    x, y, xv, yv = data
    model = make_model()
    opt = torch.optim.Adam(model.parameters(), lr=LR)
    train = DataLoader(TensorDataset(x, y), batch_size=BATCH, shuffle=True)
    valid = DataLoader(TensorDataset(xv, yv), batch_size=2 * BATCH)
    start = time.perf_counter()
    for _ in range(epochs):
        model.train()
        for xb, yb in train:
            loss = F.cross_entropy(model(xb), yb)
            opt.zero_grad()
            loss.backward()
            opt.step()
        _valid_accuracy(model, lambda: valid)
    return time.perf_counter() - start


def plain_index(data: tuple[torch.Tensor, ...], epochs: int) -> float:
    """A hand-written loop that batches by indexing with one randperm per epoch."""
    x, y, xv, yv = data
    model = make_model()
    opt = torch.optim.Adam(model.parameters(), lr=LR)
    start = time.perf_counter()
    for _ in range(epochs):
        model.train()
        perm = torch.randperm(N_TRAIN)
        for i in range(0, N_TRAIN, BATCH):
            idx = perm[i : i + BATCH]
            loss = F.cross_entropy(model(x[idx]), y[idx])
            opt.zero_grad()
            loss.backward()
            opt.step()
        _valid_accuracy(
            model,
            lambda: (
                (xv[i : i + 2 * BATCH], yv[i : i + 2 * BATCH]) for i in range(0, N_VALID, 2 * BATCH)
            ),
        )
    return time.perf_counter() - start


def _learner(data: tuple[torch.Tensor, ...], epochs: int, **options: object) -> float:
    from nnblocks.data import TensorData
    from nnblocks.train import Learner

    x, y, xv, yv = data
    learn = Learner(
        make_model(),
        (TensorData(x, y), TensorData(xv, yv)),
        loss="cross_entropy",
        metrics=["accuracy"],
        lr=LR,
        batch_size=BATCH,
        progress=True,
        audit="off",
        **options,  # type: ignore[arg-type]
    )
    start = time.perf_counter()
    learn.fit(epochs)
    return time.perf_counter() - start


def learner_adam(data: tuple[torch.Tensor, ...], epochs: int) -> float:
    """nnblocks Learner with Adam and no weight decay, as the plain loops (its defaults
    otherwise: fused kernel, one-cycle schedule, NaN guard)."""
    return _learner(data, epochs, opt="adam", wd=0.0)


def learner_default(data: tuple[torch.Tensor, ...], epochs: int) -> float:
    """nnblocks Learner with every default (AdamW)."""
    return _learner(data, epochs)


def learner_unfused(data: tuple[torch.Tensor, ...], epochs: int) -> float:
    """nnblocks Learner with the same Adam kernel as the plain loops (no fused/foreach)."""
    return _learner(
        data, epochs, opt=lambda groups, lr: torch.optim.Adam(groups, lr=lr, foreach=False)
    )


def lightning(data: tuple[torch.Tensor, ...], epochs: int) -> float:
    import lightning as L  # noqa: N812
    import torchmetrics
    from torch.utils.data import DataLoader, TensorDataset

    x, y, xv, yv = data

    class Module(L.LightningModule):
        def __init__(self) -> None:
            super().__init__()
            self.net = make_model()
            self.acc = torchmetrics.Accuracy(task="multiclass", num_classes=CLASSES)

        def training_step(self, batch, _):  # type: ignore[no-untyped-def]
            xb, yb = batch
            loss = F.cross_entropy(self.net(xb), yb)
            self.log("loss", loss, prog_bar=True)
            return loss

        def validation_step(self, batch, _):  # type: ignore[no-untyped-def]
            xb, yb = batch
            self.acc(self.net(xb), yb)
            self.log("acc", self.acc, prog_bar=True)

        def configure_optimizers(self):  # type: ignore[no-untyped-def]
            return torch.optim.Adam(self.parameters(), lr=LR)

    trainer = L.Trainer(
        max_epochs=epochs,
        accelerator="cpu",
        devices=1,
        logger=False,
        enable_checkpointing=False,
        enable_model_summary=False,
        num_sanity_val_steps=0,
    )
    train = DataLoader(TensorDataset(x, y), batch_size=BATCH, shuffle=True)
    valid = DataLoader(TensorDataset(xv, yv), batch_size=2 * BATCH)
    start = time.perf_counter()
    trainer.fit(Module(), train, valid)
    return time.perf_counter() - start


def fastai(data: tuple[torch.Tensor, ...], epochs: int) -> float:
    from fastai.data.core import DataLoaders
    from fastai.learner import Learner as FastLearner
    from fastai.metrics import accuracy
    from fastai.optimizer import Adam
    from torch.utils.data import DataLoader, TensorDataset

    x, y, xv, yv = data
    dls = DataLoaders(
        DataLoader(TensorDataset(x, y), batch_size=BATCH, shuffle=True),
        DataLoader(TensorDataset(xv, yv), batch_size=2 * BATCH),
    )
    learn = FastLearner(
        dls, make_model(), loss_func=F.cross_entropy, opt_func=Adam, metrics=accuracy
    )
    start = time.perf_counter()
    learn.fit(epochs, LR)
    return time.perf_counter() - start


VARIANTS: dict[str, Callable[[tuple[torch.Tensor, ...], int], float]] = {
    "plain DataLoader loop": plain_dataloader,
    "plain randperm-index loop": plain_index,
    "nnblocks Learner (Adam)": learner_adam,
    "nnblocks Learner (defaults, AdamW)": learner_default,
    "nnblocks Learner (unfused Adam)": learner_unfused,
    "Lightning": lightning,
    "fastai": fastai,
}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument(
        "--json", default=str(Path(__file__).parent / "results" / "loop_overhead.json")
    )
    args = parser.parse_args(argv)
    torch.set_num_threads(1)
    os.environ.setdefault("CI", "true")  # plain progress lines: no terminal redraws in the timing
    data = make_data()
    times: dict[str, list[float]] = {}
    skipped: dict[str, str] = {}
    for name, fn in VARIANTS.items():  # warm-up (imports, allocator) and availability
        try:
            fn(data, 1)
        except ImportError as exc:
            skipped[name] = f"not installed ({exc.name})"
    for _ in range(args.repeats):
        for name, fn in VARIANTS.items():
            if name not in skipped:
                times.setdefault(name, []).append(fn(data, args.epochs) / args.epochs)
    base = statistics.median(times["plain DataLoader loop"])
    print(f"\n{'loop':<38}{'s/epoch':>10}{'ratio':>8}   (torch {torch.__version__}, 1 thread)")
    rows = []
    for name, values in times.items():
        t = statistics.median(values)
        rows.append({"loop": name, "seconds_per_epoch": t, "ratio": t / base, "runs": values})
        print(f"{name:<38}{t:>10.3f}{t / base:>8.2f}")
    for name, why in skipped.items():
        print(f"{name:<38}{'':>10}{'':>8}   {why}")
    Path(args.json).write_text(
        json.dumps({"rows": rows, "skipped": skipped, "epochs": args.epochs}, indent=1)
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
