"""A tiny language model trained alone or under torchrun by test_fsdp*.py / test_multinode*.py.

Not a test itself. Usage::

    python fsdp_script.py OUT_DIR STRATEGY [--stop-at N] [--resume DIR] [--kill-at N]

STRATEGY is ``none``, ``ddp`` or ``fsdp``. The global batch is 8 sequences of 12 tokens;
3 epochs of 6 batches. Rank 0 writes OUT_DIR/losses.json (the loss of every step, averaged
over processes: the global batch's loss) and OUT_DIR/final.safetensors (the full weights).
``--stop-at N`` stops cleanly after step N (a checkpoint of step N is in OUT_DIR/ckpt/last);
``--resume DIR`` continues from the checkpoint DIR; ``--kill-at N`` kills rank 1 at step N
on the first torchrun attempt only (``fit(resume="auto")`` then continues after restart).
"""

import argparse
import json
import os
import signal
from pathlib import Path

import torch
import torch.nn.functional as F

import nnblocks
from nnblocks.data import TensorData
from nnblocks.io import write_tensors
from nnblocks.train import Callback, CancelFit, Learner, SaveCheckpoint
from nnblocks.train.distributed import all_reduce_sum
from nnblocks.train.fsdp import full_state_dict

VOCAB, T = 32, 12


def lm_loss(logits: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    return F.cross_entropy(logits.flatten(0, 1), y.flatten())  # [B*T, V] vs [B*T]


def tokens(n: int, seed: int) -> TensorData:
    g = torch.Generator().manual_seed(seed)
    # A learnable rule: each token is the previous one plus 3 (mod VOCAB), from a random start.
    start = torch.randint(0, VOCAB, (n, 1), generator=g)
    seq = (start + 3 * torch.arange(T + 1)) % VOCAB  # [n, T+1]
    return TensorData(seq[:, :-1], seq[:, 1:], n_inputs=1)


class GlobalLosses(Callback):
    """The loss of each step over the whole global batch (the mean of the equal shards)."""

    order = 85  # before StopOrKill: the step it stops at is recorded

    def __init__(self) -> None:
        self.losses: list[float] = []

    def after_batch(self, learn) -> None:  # type: ignore[no-untyped-def]
        if learn.training:
            total = all_reduce_sum(learn.loss.detach().float().reshape(1))
            self.losses.append(float(total) / learn.dist.world_size)


class StopOrKill(Callback):
    order = 90  # after SaveCheckpoint (80): the checkpoint of this step is written first

    def __init__(self, stop_at: int | None, kill_at: int | None) -> None:
        self.stop_at, self.kill_at = stop_at, kill_at

    def after_batch(self, learn) -> None:  # type: ignore[no-untyped-def]
        if not learn.training:
            return
        attempt = int(os.environ.get("TORCHELASTIC_RESTART_COUNT", "0"))
        if self.kill_at == learn.train_step and learn.dist.rank == 1 and attempt == 0:
            os.kill(os.getpid(), signal.SIGKILL)
        if self.stop_at == learn.train_step:
            raise CancelFit()


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("out", type=Path)
    parser.add_argument("strategy", choices=["none", "ddp", "fsdp"])
    parser.add_argument("--stop-at", type=int)
    parser.add_argument("--kill-at", type=int)
    parser.add_argument("--resume")
    args = parser.parse_args()
    torch.set_num_threads(1)
    torch.manual_seed(0)
    model = nnblocks.build(
        {
            "name": "transformer_lm",
            "vocab_size": VOCAB,
            "dim": 16,
            "heads": 2,
            "layers": 2,
            "max_len": T,
            "dropout": 0.0,
            # No attention biases: the key bias gets a gradient that is zero up to rounding
            # (softmax ignores a shift shared by all keys), and Adam turns that noise into
            # full-size steps, so its weights would differ between runs by design.
            "self_attention": {"name": "mha", "bias": False},
        },
        kind="model",
    )
    losses = GlobalLosses()
    callbacks = [
        SaveCheckpoint(args.out / "ckpt", every_n_steps=3, save_best=False),
        StopOrKill(args.stop_at, args.kill_at),
        losses,
    ]
    strategy = None if args.strategy == "none" else args.strategy
    learn = Learner(
        model,
        (tokens(48, seed=0), tokens(16, seed=1)),
        lm_loss,
        metrics=[],
        batch_size=8,
        seed=1,
        lr=3e-3,
        progress=False,
        audit="off",
        callbacks=callbacks,
        strategy=strategy,
    )
    learn.fit(3, resume=args.resume or "auto")
    state = full_state_dict(learn.model)  # every rank takes part in the gathering
    if learn.dist.rank == 0:
        write_tensors(args.out / "final.safetensors", {k: v.clone() for k, v in state.items()})
        steps = {"start": learn.train_step - len(losses.losses)}  # > 0 after a resume
        (args.out / "losses.json").write_text(json.dumps({**steps, "losses": losses.losses}))
        history = [{k: v for k, v in h.items() if isinstance(v, float)} for h in learn.history]
        (args.out / "history.json").write_text(json.dumps(history))


if __name__ == "__main__":
    main()
