"""BatchNorm and fine-tuning: which policy for the norms of a frozen body (issue 12).

The built-in CNN (BatchNorm, stages [[32, 1], [64, 1]]) is pretrained on the digits 0-4
(scikit-learn's 8x8 digits, every training image of those classes), then a fresh 5-way head
is fitted to the digits 5-9 from a few examples (``--shots`` per class) with:

- ``stats``:  frozen body, running statistics updating (affine parameters frozen);
- ``affine``: frozen body, BatchNorm affine parameters trainable and statistics updating
  (fastai's ``train_bn=True``);
- ``eval``:   frozen body, BatchNorm in eval mode (nothing in the body moves);
- ``full``:   full fine-tuning (every parameter trainable);
- ``fine_tune``: ``Learner.fine_tune`` (1/6 of the epochs head-only with its default
  policy, then everything with discriminative rates), for reference.

Same steps, one-cycle schedule and learning rate for all; accuracy on every test image of
5-9; three seeds (pretraining, the few-shot draw and the head's init all follow the seed).

    python benchmarks/bn_finetune.py [--seeds 3] [--shots 10] [--epochs 30]

Writes ``benchmarks/results/bn_finetune.{md,json,png}``.

Measured (2 CPU cores shared with other jobs, load average ~8; 10 shots per class, 30
epochs, seeds 0-2; the CNN scores 0.996 on 0-4 after pretraining), accuracy on the 179 test
images of 5-9, mean +- std over seeds:

| policy | accuracy on 5-9 |
| --- | --- |
| stats | 0.611 +- 0.025 |
| affine | 0.657 +- 0.023 |
| eval | 0.642 +- 0.028 |
| full | 0.952 +- 0.011 |
| fine_tune | 0.844 +- 0.000 (0.844 each: 151/179 three times, different errors) |

With the body frozen, keeping the BatchNorm affine parameters trainable (fastai's default)
is best, eval mode second and updating only the statistics worst - the gaps are about one
standard deviation. Far larger is the gap to training the body at all: with classes this
new and this few examples, full fine-tuning wins, and ``fine_tune`` with fastai's
``lr_mult=100`` left the body too slow (0.667 with two layer groups, 0.775 with three);
``lr_mult=10`` (now the default) gives 0.844, ``lr_mult=3`` gave 0.924.

``Learner.fine_tune`` uses the best frozen-body policy of this table for its first phase
(``nnblocks.train.fine_tune.DEFAULT_TRAIN_BN``).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import time
from pathlib import Path

import torch

import nnblocks
from nnblocks.data import TensorData
from nnblocks.train import Learner

POLICIES = ("stats", "affine", "eval", "full", "fine_tune")
MODEL = {"name": "cnn", "stages": [[32, 1], [64, 1]], "norm": "batch", "in_channels": 1}
OUT = Path(__file__).parent / "results"


def subset(
    data: TensorData, classes: range, *, shots: int | None = None, seed: int = 0
) -> TensorData:
    """The examples of ``classes`` (labels shifted to start at 0), ``shots`` per class if given."""
    x, y = data.tensors
    keep = []
    g = torch.Generator().manual_seed(seed)
    for c in classes:
        idx = (y == c).nonzero().flatten()
        if shots is not None:
            idx = idx[torch.randperm(len(idx), generator=g)[:shots]]
        keep.append(idx)
    idx = torch.cat(keep)
    return TensorData(x[idx], y[idx] - classes.start)


def learner(model: torch.nn.Module, train: TensorData, seed: int, batch_size: int) -> Learner:
    return Learner(
        model, (train, None), "cross_entropy", batch_size=batch_size, progress=False,
        audit="off", seed=seed,
    )  # fmt: skip


def accuracy(model: torch.nn.Module, data: TensorData) -> float:
    model.eval()
    x, y = data.tensors
    with torch.no_grad():
        return float((model(x).argmax(-1) == y).float().mean())


def pretrain(bundle, seed: int, epochs: int) -> torch.nn.Module:
    torch.manual_seed(seed)
    model = nnblocks.build({**MODEL, "num_classes": 5}, "model")
    learner(model, subset(bundle.train, range(0, 5)), seed, 64).fit_one_cycle(epochs, 3e-3)
    return model


def adapt(pretrained, bundle, policy: str, seed: int, shots: int, epochs: int) -> float:
    model = nnblocks.build({**MODEL, "num_classes": 5}, "model")
    model.load_state_dict(pretrained.state_dict())
    torch.manual_seed(seed + 100)
    model.head.reset_parameters()  # a new head for the new classes
    learn = learner(model, subset(bundle.train, range(5, 10), shots=shots, seed=seed), seed, 16)
    if policy == "fine_tune":  # the two phases, same total epochs; phase two peaks at 3e-3
        learn.fine_tune(epochs - epochs // 6, freeze_epochs=epochs // 6, base_lr=6e-3)
    elif policy == "full":
        learn.fit_one_cycle(epochs, 3e-3)
    else:
        learn.freeze(train_bn=policy)
        learn.unfreeze("head")
        learn.fit_one_cycle(epochs, 3e-3)
    return accuracy(model, subset(bundle.test, range(5, 10)))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--shots", type=int, default=10)
    parser.add_argument("--epochs", type=int, default=30)
    parser.add_argument("--pretrain-epochs", type=int, default=6)
    args = parser.parse_args()
    torch.set_num_threads(1)
    start = time.perf_counter()
    bundle = nnblocks.build("digits", "dataset")
    scores: dict[str, list[float]] = {p: [] for p in POLICIES}
    source = []
    for seed in range(args.seeds):
        pretrained = pretrain(bundle, seed, args.pretrain_epochs)
        source.append(accuracy(pretrained, subset(bundle.test, range(0, 5))))
        for policy in POLICIES:
            scores[policy].append(adapt(pretrained, bundle, policy, seed, args.shots, args.epochs))
    load = os.getloadavg()
    rows = [
        f"| {p} | {statistics.mean(v):.3f} +- {statistics.pstdev(v):.3f} | "
        f"{', '.join(f'{a:.3f}' for a in v)} |"
        for p, v in scores.items()
    ]
    table = "\n".join(
        [
            f"BN fine-tuning: CNN pretrained on digits 0-4 (test accuracy "
            f"{statistics.mean(source):.3f}), {args.shots} examples per class of 5-9, "
            f"{args.epochs} epochs, {args.seeds} seeds; load {load[0]:.1f}; "
            f"{time.perf_counter() - start:.0f} s",
            "",
            "| policy | accuracy on 5-9 (mean +- std) | per seed |",
            "| --- | --- | --- |",
            *rows,
        ]
    )
    print(table)
    OUT.mkdir(exist_ok=True)
    (OUT / "bn_finetune.md").write_text(table + "\n")
    (OUT / "bn_finetune.json").write_text(
        json.dumps({"args": vars(args), "load": load, "source": source, "scores": scores}, indent=1)
    )
    chart(scores, OUT / "bn_finetune.png", args)


def chart(scores: dict[str, list[float]], path: Path, args: argparse.Namespace) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(5, 3.2))
    names = list(scores)
    means = [statistics.mean(scores[n]) for n in names]
    stds = [statistics.pstdev(scores[n]) for n in names]
    ax.bar(
        names,
        means,
        yerr=stds,
        capsize=4,
        color=["#4c72b0", "#55a868", "#c44e52", "#8172b2", "#937860"],
    )
    for i, values in enumerate(scores.values()):
        ax.scatter([i] * len(values), values, color="black", s=10, zorder=3)
    ax.set_ylabel("test accuracy, digits 5-9")
    ax.set_ylim(0, 1)
    ax.set_title(f"frozen-body BN policy, {args.shots} shots/class, {args.seeds} seeds")
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


if __name__ == "__main__":
    main()
