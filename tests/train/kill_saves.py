"""SIGKILL a process while it saves training checkpoints, at random moments.

Run as a script in a fresh interpreter (``python kill_saves.py FOLDER ROUNDS``): it forks
savers from a process with no foreign threads, since fork() from a test runner that has
started thread pools (ONNX Runtime, tokenizers, OpenMP) can hang the child. Exits 0 when
after every kill the last complete checkpoint loads, verifies and is one whole save, and no
temporary file sits at a final path; else prints what broke and exits 1.
"""

from __future__ import annotations

import os
import random
import signal
import sys
import time
from pathlib import Path

import torch
from torch import nn

from nnblocks.data import TensorData
from nnblocks.train import Learner, load_model_weights
from nnblocks.train.checkpoint import MODEL_FILE, STATE_FILE, TRAINING_FILE, read_training_document


def _net() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(4, 8), nn.ReLU(), nn.Linear(8, 3))


def _learner() -> Learner:
    g = torch.Generator().manual_seed(0)
    y = torch.randint(0, 3, (96,), generator=g)
    x = 4.0 * torch.eye(3, 4)[y] + torch.randn(96, 4, generator=g)
    data = (TensorData(x, y), TensorData(x[:32], y[:32]))
    return Learner(_net(), data, loss="cross_entropy", batch_size=8, progress=False, audit="off")


def kill_rounds(folder: Path, rounds: int) -> str | None:
    learn = _learner()
    learn.fit(1)
    path = folder / "ck"
    t0 = time.perf_counter()
    learn.save_checkpoint(path)
    save_s = time.perf_counter() - t0
    original = [p.detach().clone() for p in learn.model.parameters()]
    original_step = learn.train_step
    rng = random.Random(0)
    children_seen = 0
    for round_ in range(rounds):
        pid = os.fork()
        if pid == 0:  # child: save again and again; checkpoint k has every weight == k
            try:
                k = original_step + 1
                while True:
                    with torch.no_grad():
                        for p in learn.model.parameters():
                            p.fill_(float(k))
                    learn.train_step = k
                    learn.save_checkpoint(path)
                    k += 1
            finally:
                os._exit(0)
        time.sleep(rng.uniform(0.2, 2.0) * save_s)
        if round_ == rounds - 1 and children_seen == 0:
            # The random moments may all fall before the child's first save completes;
            # let the last round see one complete save before the kill.
            deadline = time.perf_counter() + 60
            while time.perf_counter() < deadline:
                try:
                    if read_training_document(path)["train_step"] != original_step:
                        break
                except Exception:  # the folder is being swapped right now
                    pass
                time.sleep(0.01)
        os.kill(pid, signal.SIGKILL)
        os.waitpid(pid, 0)
        doc = read_training_document(path)  # some complete checkpoint always verifies
        model = load_model_weights(_net(), path)
        params = [p.detach() for p in model.parameters()]
        if all(torch.equal(p, q) for p, q in zip(params, original)):
            if doc["train_step"] != original_step:
                return f"round {round_}: original weights with train_step {doc['train_step']}"
        else:
            children_seen += 1
            values = {float(v) for p in params for v in p.flatten()}
            if values != {float(doc["train_step"])}:
                return f"round {round_}: weights {sorted(values)[:3]} from another save than step {doc['train_step']}"
        final = {p.name for p in path.iterdir()}
        if final != {MODEL_FILE, STATE_FILE, TRAINING_FILE, "manifest.json"}:
            return f"round {round_}: files at the final path: {sorted(final)}"
    if children_seen == 0:
        return "no kill landed after a completed save"
    return None


if __name__ == "__main__":
    torch.set_num_threads(1)
    error = kill_rounds(Path(sys.argv[1]), int(sys.argv[2]))
    if error:
        print(error)
        sys.exit(1)
    print(f"{sys.argv[2]} rounds: every kill left one whole, verified checkpoint")
