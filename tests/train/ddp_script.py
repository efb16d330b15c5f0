"""A training script run alone or under torchrun by test_distributed.py (not a test itself).

Usage: python ddp_script.py OUT_DIR [KILL_AT_STEP]
Trains a tiny model with a global batch of 16 and writes OUT_DIR/final.safetensors (rank 0).
With KILL_AT_STEP, rank 1 kills itself at that step on the first attempt only.
"""

import os
import signal
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).parent))

from conftest import TinyNet, blobs  # noqa: E402

from nnblocks.io import write_tensors  # noqa: E402
from nnblocks.train import Callback, Learner, SaveCheckpoint  # noqa: E402


class KillRank1(Callback):
    def __init__(self, step: int):
        self.step = step

    def after_batch(self, learn) -> None:  # type: ignore[no-untyped-def]
        attempt = int(os.environ.get("TORCHELASTIC_RESTART_COUNT", "0"))
        if (
            learn.training
            and learn.dist.rank == 1
            and attempt == 0
            and learn.train_step == self.step
        ):
            os.kill(os.getpid(), signal.SIGKILL)


class RecordStart(Callback):
    """Writes the step a run starts from (non-zero when it resumed a checkpoint)."""

    def __init__(self, out: Path):
        self.out = out

    def before_fit(self, learn) -> None:  # type: ignore[no-untyped-def]
        attempt = os.environ.get("TORCHELASTIC_RESTART_COUNT", "0")
        (self.out / f"start{attempt}-rank{learn.dist.rank}").write_text(str(learn.train_step))


def main() -> None:
    torch.set_num_threads(1)
    out = Path(sys.argv[1])
    kill = int(sys.argv[2]) if len(sys.argv) > 2 else None
    torch.manual_seed(0)
    callbacks = [SaveCheckpoint(out / "ckpt", every_n_steps=3, save_best=False), RecordStart(out)]
    if kill is not None:
        callbacks.append(KillRank1(kill))
    learn = Learner(
        TinyNet(p=0.0),
        (blobs(128), blobs(40, seed=1)),
        "cross_entropy",
        metrics={"acc": lambda o, y: (o.argmax(1) == y).float().mean()},
        batch_size=16,
        seed=1,
        progress=False,
        audit="off",
        lr=1e-2,
        callbacks=callbacks,
    )
    learn.fit(3, resume="auto")
    if learn.dist.rank == 0:
        write_tensors(out / "final.safetensors", learn.model.state_dict())
        (out / "valid.txt").write_text(
            f"{learn.history[-1]['valid_loss']!r} {learn.history[-1]['acc']!r}"
        )


if __name__ == "__main__":
    main()
