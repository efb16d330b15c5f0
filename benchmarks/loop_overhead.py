"""Per-step overhead of the Learner against hand-written loops and peer libraries (issue 14).

Same 3-layer MLP (64-128-128-10), 16,384 in-memory training samples, Adam, batch 64, one
thread. Every loop also measures accuracy on 2,048 validation samples after each epoch (the
Learner through its torchmetrics "accuracy" metric). Variants run interleaved (the order
rotates every repeat), ``--repeats`` times each (the loops of this process, which carry the
targets, three times as often); the table shows the median time per epoch,
the ratio to the plain DataLoader loop and to the randperm-index loop, and a JSON copy goes
to ``benchmarks/results/loop_overhead.json`` with the machine, threads and load average.

Sections:

- plain DataLoader loop; plain randperm-index loop (the floor: batches by indexing);
- the Learner with its defaults (fused AdamW, one-cycle schedule, progress bar, NaN guard,
  metrics); with the plain loops' optimizer (single-tensor Adam, no weight decay) and every
  default on (target: within 1.10x the randperm loop); with that optimizer and every default
  callback off (target: within 1.03x);
- Lightning, fastai and Keras 3 (torch backend), when installed, each in its own process
  beside its own plain-loop references (run in this process, the peers slowed the
  Learner's rows by ~15% and not the plain loops'); a missing one is listed as skipped.

    python benchmarks/loop_overhead.py [--epochs 2] [--repeats 3] [--no-peers]
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


def _clock() -> tuple[float, float]:
    return time.perf_counter(), time.process_time()


def _since(start: tuple[float, float]) -> tuple[float, float]:
    """(wall, CPU) seconds since ``start``. CPU time counts this process only, so on a
    loaded machine it is the steadier measure of the work a loop does."""
    wall, cpu = _clock()
    return wall - start[0], cpu - start[1]


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


def plain_dataloader(data: tuple[torch.Tensor, ...], epochs: int) -> tuple[float, float]:
    """What a researcher writes: DataLoader(TensorDataset), Adam, zero_grad/backward/step."""
    from torch.utils.data import DataLoader, TensorDataset

    x, y, xv, yv = data
    model = make_model()
    opt = torch.optim.Adam(model.parameters(), lr=LR)
    train = DataLoader(TensorDataset(x, y), batch_size=BATCH, shuffle=True)
    valid = DataLoader(TensorDataset(xv, yv), batch_size=2 * BATCH)
    start = _clock()
    for _ in range(epochs):
        model.train()
        for xb, yb in train:
            loss = F.cross_entropy(model(xb), yb)
            opt.zero_grad()
            loss.backward()
            opt.step()
        _valid_accuracy(model, lambda: valid)
    return _since(start)


def plain_index(data: tuple[torch.Tensor, ...], epochs: int) -> tuple[float, float]:
    """A hand-written loop that batches by indexing with one randperm per epoch."""
    x, y, xv, yv = data
    model = make_model()
    opt = torch.optim.Adam(model.parameters(), lr=LR)
    start = _clock()
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
    return _since(start)


def _learner(data: tuple[torch.Tensor, ...], epochs: int, **options: object) -> tuple[float, float]:
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
        audit="off",
        **options,  # type: ignore[arg-type]
    )
    start = _clock()
    learn.fit(epochs)
    return _since(start)


def _plain_adam(groups: object, lr: float) -> torch.optim.Optimizer:
    # What the plain loops build: torch's default Adam on CPU (single-tensor kernel).
    return torch.optim.Adam(groups, lr=lr, foreach=False)  # type: ignore[arg-type]


def learner_default(data: tuple[torch.Tensor, ...], epochs: int) -> tuple[float, float]:
    """nnblocks Learner with every default (fused AdamW, one-cycle, progress, NaN guard)."""
    return _learner(data, epochs)


def learner_same_kernel(data: tuple[torch.Tensor, ...], epochs: int) -> tuple[float, float]:
    """The plain loops' optimizer (single-tensor Adam, no weight decay), every default on."""
    return _learner(data, epochs, opt=_plain_adam, wd=0.0)


def learner_bare(data: tuple[torch.Tensor, ...], epochs: int) -> tuple[float, float]:
    """The plain loops' optimizer and every default callback off (no schedule, bar, guard)."""
    return _learner(
        data, epochs, opt=_plain_adam, wd=0.0, schedule=None, progress=False, nan_guard=False
    )


def lightning(data: tuple[torch.Tensor, ...], epochs: int) -> tuple[float, float]:
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
    start = _clock()
    trainer.fit(Module(), train, valid)
    return _since(start)


def fastai(data: tuple[torch.Tensor, ...], epochs: int) -> tuple[float, float]:
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
    start = _clock()
    learn.fit(epochs, LR)
    return _since(start)


def keras3(data: tuple[torch.Tensor, ...], epochs: int) -> tuple[float, float]:
    """Keras 3 on its torch backend: the same MLP, Adam, batch 64, accuracy on validation."""
    os.environ.setdefault("KERAS_BACKEND", "torch")
    import keras

    if keras.backend.backend() != "torch":
        raise ImportError("keras is not on its torch backend", name="keras[torch backend]")
    x, y, xv, yv = (t.numpy() for t in data)
    keras.utils.set_random_seed(0)
    model = keras.Sequential(
        [
            keras.Input((D_IN,)),
            keras.layers.Dense(128, activation="relu"),
            keras.layers.Dense(128, activation="relu"),
            keras.layers.Dense(CLASSES),
        ]
    )
    model.compile(
        optimizer=keras.optimizers.Adam(LR),
        loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
        metrics=["accuracy"],
    )
    start = _clock()
    model.fit(
        x, y, batch_size=BATCH, epochs=epochs, validation_data=(xv, yv), shuffle=True, verbose=0
    )
    return _since(start)


VARIANTS: dict[str, Callable[[tuple[torch.Tensor, ...], int], tuple[float, float]]] = {
    "plain DataLoader loop": plain_dataloader,
    "plain randperm-index loop": plain_index,
    "nnblocks Learner (defaults)": learner_default,
    "nnblocks Learner (same kernel, defaults on)": learner_same_kernel,
    "nnblocks Learner (same kernel, callbacks off)": learner_bare,
    "Lightning": lightning,
    "fastai": fastai,
    "Keras 3 (torch backend)": keras3,
}
PEERS = ("Lightning", "fastai", "Keras 3 (torch backend)")
# The targets of issue 14 (ratio to the randperm-index loop).
TARGETS = {
    "nnblocks Learner (same kernel, defaults on)": 1.10,
    "nnblocks Learner (same kernel, callbacks off)": 1.03,
}


def _machine() -> dict[str, object]:
    import platform

    return {
        "torch": torch.__version__,
        "python": platform.python_version(),
        "cpu": platform.processor() or platform.machine(),
        "cores": os.cpu_count(),
        "threads": torch.get_num_threads(),
        "load_average": os.getloadavg(),
    }


def _peer_in_own_process(name: str, epochs: int, repeats: int) -> dict[str, object]:
    """Time one peer beside the two plain loops in a fresh interpreter.

    Importing and running the peers patches global state (measured: the nnblocks rows got
    ~15% slower once Lightning, fastai and Keras had run in the same process, the plain
    loops did not), so each peer gets its own process with its own plain-loop references.
    """
    import subprocess
    import tempfile

    refs = ["plain DataLoader loop", "plain randperm-index loop"]
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "peer.json"
        cmd = [sys.executable, __file__, "--in-process", "--epochs", str(epochs)]
        cmd += ["--repeats", str(repeats), "--json", str(out), "--only", *refs, name]
        subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        return json.loads(out.read_text())


def run(
    epochs: int = 2,
    repeats: int = 3,
    peers: bool = True,
    only: list[str] | None = None,
    in_process: bool = False,
) -> dict[str, object]:
    """Time every variant side by side; returns the rows, skipped peers and the machine.

    The plain loops and the Learner run interleaved in this process; each peer runs in its
    own process beside its own plain-loop references (see ``_peer_in_own_process``), unless
    ``in_process``.
    """
    if peers and not in_process:
        # The rows that carry the targets (1.03x, 1.10x) are cheap, and a median ratio must
        # resolve a few percent on a noisy machine: they get three times the repeats.
        result = run(epochs, 3 * repeats, peers=False, only=only)
        rows, skipped = result["rows"], result["skipped"]
        for name in PEERS:
            if only and name not in only:
                continue
            del skipped[name]  # type: ignore[attr-defined]
            try:
                peer = _peer_in_own_process(name, epochs, repeats)
            except Exception as exc:  # noqa: BLE001  # a peer that fails is reported, not faked
                skipped[name] = f"failed: {exc}"  # type: ignore[index]
                continue
            skipped.update(peer["skipped"])  # type: ignore[attr-defined]
            for row in peer["rows"]:  # type: ignore[attr-defined]
                if row["loop"] == name:
                    rows.append({**row, "process": "own, with its own plain-loop references"})  # type: ignore[attr-defined]
        return result
    torch.set_num_threads(1)
    os.environ.setdefault("CI", "true")  # plain progress lines: no terminal redraws in the timing
    data = make_data()
    names = [n for n in VARIANTS if (peers or n not in PEERS) and (not only or n in only)]
    skipped = {n: "--no-peers" for n in VARIANTS if not peers and n in PEERS}
    if only:
        skipped = {n: v for n, v in skipped.items() if n in only}
    for name in list(names):  # warm-up (imports, allocator) and availability
        try:
            VARIANTS[name](data, 1)
        except ImportError as exc:
            skipped[name] = f"not installed ({exc.name})"
            names.remove(name)
    load_before = os.getloadavg()
    times: dict[str, list[tuple[float, float]]] = {n: [] for n in names}
    for r in range(repeats):
        shift = r % len(names)  # rotate the order so no variant always runs first
        for name in names[shift:] + names[:shift]:
            wall, cpu = VARIANTS[name](data, epochs)
            times[name].append((wall / epochs, cpu / epochs))
    rows = []
    for name, runs in times.items():
        row: dict[str, object] = {"loop": name, "target_ratio_to_index_loop": TARGETS.get(name)}
        for clock, k in (("wall", 0), ("cpu", 1)):
            t = statistics.median(r[k] for r in runs)
            row[f"{clock}_seconds_per_epoch"] = t
            row[f"{clock}_seconds_per_step"] = t / (N_TRAIN // BATCH)
            # Ratios of runs next to each other in time (the same repeat), then their median:
            # a burst of load from elsewhere hits both sides of a ratio.
            for ref, key in (
                ("plain DataLoader loop", "ratio"),
                ("plain randperm-index loop", "ratio_to_index_loop"),
            ):
                if ref in times:
                    pairs = [a[k] / b[k] for a, b in zip(runs, times[ref])]
                    row[f"{clock}_{key}"] = statistics.median(pairs)
                    # Fastest against fastest: interference only ever adds time (timeit's rule).
                    fastest = min(r[k] for r in times[ref])
                    row[f"{clock}_min_{key}"] = min(r[k] for r in runs) / fastest
        row["runs"] = runs
        rows.append(row)
    machine = {**_machine(), "load_average_before": load_before}
    return {"rows": rows, "skipped": skipped, "epochs": epochs, "repeats": repeats, **machine}


def print_table(result: dict[str, object]) -> None:
    print(
        f"\n{'loop':<46}{'wall s/ep':>10}{'cpu s/ep':>9}{'vs DL':>7}{'vs idx':>8}"
        f"{'min idx':>9}{'target':>8}   (torch {result['torch']}, {result['threads']} thread, load {result['load_average']})"
    )
    nan = float("nan")
    for row in result["rows"]:  # type: ignore[attr-defined]
        target = row["target_ratio_to_index_loop"]
        print(
            f"{row['loop']:<46}{row['wall_seconds_per_epoch']:>10.3f}"
            f"{row['cpu_seconds_per_epoch']:>9.3f}{row.get('cpu_ratio', nan):>7.2f}"
            f"{row.get('cpu_ratio_to_index_loop', nan):>8.3f}"
            f"{row.get('cpu_min_ratio_to_index_loop', nan):>9.3f}"
            f"{'<= ' + format(target, '.2f') if target else '':>8}"
        )
    print(
        "ratios: CPU time; 'vs DL', 'vs idx': median over repeats of runs side by side; "
        "'min idx': fastest run against the index loop's fastest (wall clock in the JSON)"
    )
    for name, why in result["skipped"].items():  # type: ignore[attr-defined]
        print(f"{name:<48}   skipped: {why}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--no-peers", action="store_true", help="skip Lightning, fastai, Keras")
    parser.add_argument("--only", nargs="*", help="variant names to run (default: all)")
    parser.add_argument("--in-process", action="store_true", help="run peers in this process")
    parser.add_argument(
        "--json", default=str(Path(__file__).parent / "results" / "loop_overhead.json")
    )
    args = parser.parse_args(argv)
    result = run(
        args.epochs,
        args.repeats,
        peers=not args.no_peers,
        only=args.only,
        in_process=args.in_process,
    )
    print_table(result)
    Path(args.json).parent.mkdir(parents=True, exist_ok=True)
    Path(args.json).write_text(json.dumps(result, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
