"""Forgetting: how much of task 1 a model keeps after learning task 2 (issue 12).

Two task pairs, three seeds, four strategies (``nnblocks.train.continual``):

- split digits, class-incremental: the built-in CNN learns digits 0-4 (5-way head), then
  the head grows to 10 outputs (``nnblocks.surgery.grow``, old rows kept) and it learns
  5-9. Task-1 accuracy is 10-way accuracy on the test images of 0-4.
- number words: a small ``transformer_seq2seq`` learns English -> German number words
  (``numbers``, 0..999, 600 training pairs), then English -> French, with one target vocabulary for both.
  Accuracy is greedy exact match on each language's test numbers.

Strategies on task 2: ``naive`` (plain fine-tuning), ``rehearsal`` (a reservoir of
``--buffer`` task-1 examples, half of each batch), ``ewc`` (Fisher from task 1's
training data), ``lwf`` (distillation from the task-1 model). Task 1 is trained once per
seed and shared by the four.

    python benchmarks/continual.py [--seeds 3] [--pairs digits numbers]

Writes ``benchmarks/results/continual.{md,json,png}`` (``continual_<pair>.*`` for one
pair). Measured with the defaults, one pair per process (2 CPU cores shared with other
jobs, load ~12: digits 248 s, numbers 506 s), mean +- std over seeds 0-2:

| task pair | strategy | task 1 after task 2 | task 2 |
| --- | --- | --- | --- |
| digits | (task 1 alone) | 0.996 +- 0.003 | |
| digits | naive | 0.000 +- 0.000 | 0.996 +- 0.003 |
| digits | rehearsal | 0.974 +- 0.011 | 0.994 +- 0.005 |
| digits | ewc | 0.000 +- 0.000 | 0.994 +- 0.005 |
| digits | lwf | 0.057 +- 0.031 | 0.994 +- 0.005 |
| numbers | (task 1 alone) | 0.380 +- 0.120 | |
| numbers | naive | 0.000 +- 0.000 | 0.244 +- 0.027 |
| numbers | rehearsal | 0.369 +- 0.056 | 0.336 +- 0.083 |
| numbers | ewc | 0.000 +- 0.000 | 0.253 +- 0.024 |
| numbers | lwf | 0.000 +- 0.000 | 0.342 +- 0.025 |

Class-incremental, as in the literature (van de Ven et al. 2022): only rehearsal keeps the
old task; EWC (lambda 100, not tuned) and LwF barely help when the task label is not given.
The number-word budget is small (task 1 alone reaches 0.38 exact match).
"""

from __future__ import annotations

import argparse
import copy
import json
import os
import statistics
import time
from pathlib import Path

import torch

import nnblocks
from nnblocks import surgery
from nnblocks.data import TensorData
from nnblocks.generate import greedy
from nnblocks.train import Learner
from nnblocks.train.continual import EWC, LwF, Rehearsal

STRATEGIES = ("naive", "rehearsal", "ewc", "lwf")
OUT = Path(__file__).parent / "results"
CNN = {"name": "cnn", "stages": [[32, 1], [64, 1]], "norm": "batch", "in_channels": 1}
SEQ = {
    "name": "transformer_seq2seq",
    "dim": 64,
    "heads": 4,
    "encoder_layers": 2,
    "decoder_layers": 2,
}


# --- split digits ---------------------------------------------------------------------


def classes(data, wanted):
    x, y = data.tensors
    keep = torch.isin(y, torch.tensor(list(wanted)))
    return TensorData(x[keep], y[keep])


def digits_pair(seed, epochs):
    bundle = nnblocks.build("digits", "dataset")
    tasks = [classes(bundle.train, range(0, 5)), classes(bundle.train, range(5, 10))]
    tests = [classes(bundle.test, range(0, 5)), classes(bundle.test, range(5, 10))]
    torch.manual_seed(seed)
    model = nnblocks.build({**CNN, "num_classes": 5}, "model")

    def grow(m):
        surgery.grow(m, "head", 10)

    def score(m, test):
        m.eval()
        x, y = test.tensors
        with torch.no_grad():
            return float((m(x).argmax(-1) == y).float().mean())

    return model, tasks, tests, grow, score, {"lr": 3e-3, "epochs": epochs, "loss": "cross_entropy"}


# --- number words ---------------------------------------------------------------------


def _numbers(lang, seed):
    return nnblocks.build(
        {"name": "numbers", "lang": lang, "train_size": 600, "valid_size": 50,
         "test_size": 150, "long_size": 0, "long_min_words": None, "max_number": 999,
         "seed": seed},
        "dataset",
    )  # fmt: skip


def numbers_pair(seed, epochs):
    de, fr = _numbers("de", seed), _numbers("fr", seed + 1)
    src_de, src_fr = de.task.src_tokenizer.vocab, fr.task.src_tokenizer.vocab
    tgt_de, tgt_fr = de.task.tgt_tokenizer.vocab, fr.task.tgt_tokenizer.vocab
    src = src_de + [t for t in src_fr if t not in src_de]  # one vocabulary per side
    tgt = tgt_de + [t for t in tgt_fr if t not in tgt_de]

    def remap(data, src_vocab, tgt_vocab):
        s = torch.tensor([src.index(t) for t in src_vocab])
        t = torch.tensor([tgt.index(w) for w in tgt_vocab])
        a, b, c = data.tensors
        return TensorData(s[a], t[b], t[c], n_inputs=2, trim={0: 0, 1: 0, 2: 0})

    tasks = [remap(de.train, src_de, tgt_de), remap(fr.train, src_fr, tgt_fr)]
    tests = [remap(de.test, src_de, tgt_de), remap(fr.test, src_fr, tgt_fr)]
    torch.manual_seed(seed)
    longest = max(de.task.model_args["max_len"], fr.task.model_args["max_len"])
    args = {
        **de.task.model_args,
        "src_vocab_size": len(src),
        "tgt_vocab_size": len(tgt),
        "max_len": longest,
    }
    model = nnblocks.build({**SEQ, **args}, "model")

    def score(m, test):
        m.eval()
        src_ids, _, gold = test.tensors
        with torch.no_grad():
            out = greedy(m, src_ids, max_new_tokens=gold.shape[1])[:, 1:]
        hits = 0
        for pred, ref in zip(out.tolist(), gold.tolist()):
            hits += _until_eos(pred) == _until_eos(ref)
        return hits / len(gold)

    return model, tasks, tests, None, score, {"lr": 3e-3, "epochs": epochs, "loss": de.task.loss}


def _until_eos(ids):
    out = []
    for i in ids:
        if i == 2:  # EOS: the same id for every nnblocks tokenizer
            break
        out.append(i)
    return out


# --- the run --------------------------------------------------------------------------


def run_pair(make, seed, epochs, buffer, ewc_lambda):
    model, tasks, tests, grow, score, opts = make(seed, epochs)

    def fit(m, data, cbs):
        learn = Learner(
            m, (data, None), opts["loss"], batch_size=32, progress=False, audit="off",
            seed=seed, callbacks=cbs,
        )  # fmt: skip
        learn.fit_one_cycle(opts["epochs"], opts["lr"])
        return learn

    collect, ewc = Rehearsal(size=buffer, seed=seed), EWC(ewc_lambda)
    fit(model, tasks[0], [collect, ewc])
    first = score(model, tests[0])
    rows = {}
    for strategy in STRATEGIES:
        m = copy.deepcopy(model)
        if grow is not None:
            grow(m)
        cbs = {
            "naive": [],
            "rehearsal": [Rehearsal(copy.deepcopy(collect.buffer), fraction=0.5)],
            "ewc": [EWC(ewc_lambda, penalties=ewc.penalties, consolidate=False)],
            "lwf": [LwF(alpha=1.0, temperature=2.0)],
        }[strategy]
        fit(m, tasks[1], cbs)
        rows[strategy] = {"task1": score(m, tests[0]), "task2": score(m, tests[1])}
    return first, rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--pairs", nargs="+", default=["digits", "numbers"])
    parser.add_argument("--digits-epochs", type=int, default=4)
    parser.add_argument("--numbers-epochs", type=int, default=8)
    parser.add_argument("--buffer", type=int, default=200)
    parser.add_argument("--ewc-lambda", type=float, default=100.0)
    args = parser.parse_args()
    torch.set_num_threads(1)
    makers = {
        "digits": (digits_pair, args.digits_epochs),
        "numbers": (numbers_pair, args.numbers_epochs),
    }
    start = time.perf_counter()
    results: dict[str, dict] = {}
    for pair in args.pairs:
        make, epochs = makers[pair]
        per_seed = [
            run_pair(make, s, epochs, args.buffer, args.ewc_lambda) for s in range(args.seeds)
        ]
        results[pair] = {
            "task1_before": [f for f, _ in per_seed],
            **{
                k: {m: [rows[k][m] for _, rows in per_seed] for m in ("task1", "task2")}
                for k in STRATEGIES
            },
        }
    load = os.getloadavg()
    table = render(results, args, load, time.perf_counter() - start)
    print(table)
    OUT.mkdir(exist_ok=True)
    stem = "continual" if len(args.pairs) > 1 else f"continual_{args.pairs[0]}"
    (OUT / f"{stem}.md").write_text(table + "\n")
    (OUT / f"{stem}.json").write_text(
        json.dumps({"args": vars(args), "load": load, "results": results}, indent=1)
    )
    chart(results, OUT / f"{stem}.png")


def _ms(values):
    return f"{statistics.mean(values):.3f} +- {statistics.pstdev(values):.3f}"


def render(results, args, load, seconds):
    lines = [
        f"Continual learning, {args.seeds} seeds, buffer {args.buffer}, EWC lambda "
        f"{args.ewc_lambda}, LwF alpha 1 T 2; load {load[0]:.1f}; {seconds:.0f} s",
        "",
        "| task pair | strategy | task 1 after task 2 | task 2 |",
        "| --- | --- | --- | --- |",
    ]
    for pair, res in results.items():
        lines.append(f"| {pair} | (task 1 alone) | {_ms(res['task1_before'])} | |")
        for s in STRATEGIES:
            lines.append(f"| {pair} | {s} | {_ms(res[s]['task1'])} | {_ms(res[s]['task2'])} |")
    return "\n".join(lines)


def chart(results, path):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, len(results), figsize=(5 * len(results), 3.4), squeeze=False)
    for ax, (pair, res) in zip(axes[0], results.items()):
        xs = range(len(STRATEGIES))
        for offset, key, color in ((-0.2, "task1", "#4c72b0"), (0.2, "task2", "#dd8452")):
            means = [statistics.mean(res[s][key]) for s in STRATEGIES]
            stds = [statistics.pstdev(res[s][key]) for s in STRATEGIES]
            ax.bar([x + offset for x in xs], means, 0.4, yerr=stds, capsize=3, color=color,
                   label="task 1 after task 2" if key == "task1" else "task 2")  # fmt: skip
        ax.axhline(
            statistics.mean(res["task1_before"]), color="gray", ls="--", lw=1, label="task 1 before"
        )
        ax.set_xticks(list(xs), STRATEGIES)
        ax.set_ylim(0, 1)
        ax.set_title(pair)
        ax.set_ylabel("accuracy" if pair == "digits" else "exact match")
    axes[0][0].legend(fontsize=7, loc="upper right")
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


if __name__ == "__main__":
    main()
