"""Training checkpoints: exact resume, atomic writes under SIGKILL, corruption detection."""

from __future__ import annotations

import json
import os
import random
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from nnblocks.errors import CheckpointError, TrainingError
from nnblocks.train import Callback, Learner, SaveCheckpoint, load_model_weights
from nnblocks.train.checkpoint import (
    MODEL_FILE,
    STATE_FILE,
    TRAINING_FILE,
    read_training_document,
    rng_state,
)

from .conftest import Recorder, TinyNet, blobs, ce_ignoring_ids


class Crash(Callback):
    """Simulates a crash (an exception escaping the loop) after a given training step."""

    def __init__(self, at_step: int):
        self.at_step = at_step

    def after_batch(self, learn) -> None:  # type: ignore[no-untyped-def]
        if learn.training and learn.train_step == self.at_step:
            raise RuntimeError("simulated crash")


def _learner(callbacks=(), seed_model: int = 0, **kw):  # type: ignore[no-untyped-def]
    torch.manual_seed(seed_model)
    model = TinyNet()
    options = dict(
        loss=ce_ignoring_ids,
        batch_size=8,
        grad_accumulation=3,
        progress=False,
        audit="off",
        lr=3e-2,
    )
    options.update(kw)
    return Learner(
        model,
        (blobs(96, ids=True), blobs(24, seed=1, ids=True)),
        callbacks=list(callbacks),
        **options,
    )


def _opt_tensors(learn: Learner) -> dict[str, torch.Tensor]:
    out = {}
    for i, state in learn.opt.state_dict()["state"].items():
        for k, v in state.items():
            out[f"{i}.{k}"] = v
    return out


def test_resume_mid_epoch_mid_accumulation_is_bit_identical(tmp_path: Path) -> None:
    # Uninterrupted reference run (seed drawn from the global RNG, dropout active).
    torch.manual_seed(0)
    ref = Recorder()
    a = _learner([ref])
    a.fit(3)

    # The same run, checkpointing every 7 steps and crashing at step 17.
    torch.manual_seed(0)
    before = Recorder()
    saver = SaveCheckpoint(tmp_path, every_n_steps=7, save_last=False, save_best=False)
    b = _learner([before, saver, Crash(17)])
    with pytest.raises(TrainingError, match="Crash.*after_batch"):
        b.fit(3)
    doc = read_training_document(tmp_path / "last")
    assert (doc["train_step"], doc["epoch"], doc["iter"]) == (14, 1, 2)  # mid-epoch
    assert doc["iter"] % 3 != 0  # mid gradient accumulation: pending gradients saved

    # A fresh process state: another model init, another global RNG state.
    torch.manual_seed(1234)
    after = Recorder()
    c = _learner([after], seed_model=99)
    c.fit(3, resume=tmp_path / "last")

    assert before.losses[:14] + after.losses == ref.losses  # exact floats
    assert before.ids[:14] + after.ids == ref.ids  # same samples, same order
    seen = [i for batch in ref.ids[:12] for i in batch]
    assert sorted(seen) == list(range(96))  # an epoch sees every sample once
    for (name, p), q in zip(a.model.named_parameters(), c.model.parameters()):
        assert torch.equal(p, q), name
    sa, sc = _opt_tensors(a), _opt_tensors(c)
    assert sa.keys() == sc.keys()
    for k in sa:
        assert torch.equal(sa[k], sc[k]), k
    assert [r["train_loss"] for r in a.history] == [r["train_loss"] for r in c.history]


def test_resume_at_epoch_boundary_and_auto(tmp_path: Path) -> None:
    torch.manual_seed(0)
    ref = Recorder()
    _learner([ref], grad_accumulation=1, path=tmp_path / "ref").fit(2)

    torch.manual_seed(0)
    first = Recorder()
    saver = SaveCheckpoint("ckpt", save_best=False)
    b = _learner([first, saver, Crash(13)], grad_accumulation=1, path=tmp_path / "run")
    with pytest.raises(TrainingError):
        b.fit(2)
    second = Recorder()
    c = _learner(
        [second, SaveCheckpoint("ckpt", save_best=False)],
        grad_accumulation=1,
        path=tmp_path / "run",
        seed_model=5,
    )
    c.fit(2, resume="auto")  # finds run/ckpt/last (saved after epoch 0)
    assert first.losses[:12] + second.losses == ref.losses


def test_resume_auto_without_checkpoint_starts_fresh(tmp_path: Path) -> None:
    rec = Recorder()
    learn = _learner([rec, SaveCheckpoint(tmp_path / "none")], grad_accumulation=1)
    learn.fit(1, resume="auto")
    assert len(rec.losses) == 12


def _save_one(tmp_path: Path) -> tuple[Learner, Path]:
    learn = _learner(grad_accumulation=1)
    learn.fit(1)
    return learn, learn.save_checkpoint(tmp_path / "ck")  # type: ignore[return-value]


def test_checkpoint_layout_and_weights_for_inference_leave_rng_alone(tmp_path: Path) -> None:
    learn, path = _save_one(tmp_path)
    assert {p.name for p in path.iterdir()} >= {
        MODEL_FILE,
        STATE_FILE,
        TRAINING_FILE,
        "manifest.json",
    }
    doc = json.loads((path / TRAINING_FILE).read_text())
    assert {"rng", "optimizer", "seed", "epoch", "iter", "history"} <= set(doc)
    random.random(), np.random.rand(), torch.rand(1)  # move every RNG somewhere arbitrary
    fresh = TinyNet()
    before = rng_state()
    load_model_weights(fresh, path)
    assert rng_state() == before
    for p, q in zip(learn.model.parameters(), fresh.parameters()):
        assert torch.equal(p, q)


@pytest.mark.parametrize("damage", ["flip", "truncate"])
@pytest.mark.parametrize("name", [MODEL_FILE, STATE_FILE, TRAINING_FILE])
def test_corruption_is_detected_naming_the_file(tmp_path: Path, damage: str, name: str) -> None:
    learn, path = _save_one(tmp_path)
    target = path / name
    raw = bytearray(target.read_bytes())
    if damage == "flip":
        raw[len(raw) // 2] ^= 0x01
    else:
        raw = raw[: len(raw) - 7]
    target.write_bytes(bytes(raw))
    with pytest.raises(CheckpointError, match=name.replace(".", r"\.")):
        learn.fit(1, resume=path)
    with pytest.raises(CheckpointError, match=name.replace(".", r"\.")):
        read_training_document(path) if name == TRAINING_FILE else load_model_weights(
            TinyNet(), path
        )


def test_missing_checkpoint_names_the_folder(tmp_path: Path) -> None:
    learn = _learner(grad_accumulation=1)
    with pytest.raises(CheckpointError, match="nothing-here"):
        learn.fit(1, resume=tmp_path / "nothing-here")


def _snapshot(folder: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted(folder.iterdir())}


def test_save_into_read_only_folder_keeps_old_checkpoint(tmp_path: Path) -> None:
    learn, path = _save_one(tmp_path)
    old = _snapshot(path)
    learn.fit(1)  # new weights to save
    chattr = shutil.which("chattr")
    locked = (
        chattr is not None
        and subprocess.run([chattr, "+i", str(tmp_path)], capture_output=True).returncode == 0
    )
    try:
        if not locked:  # root ignores permission bits: simulate the refusal at the write path
            import nnblocks.train.checkpoint as ck

            def refuse(*a, **k):  # type: ignore[no-untyped-def]
                raise PermissionError(13, "Permission denied")

            mp = pytest.MonkeyPatch()
            mp.setattr(ck.os, "mkdir", refuse)
        with pytest.raises(CheckpointError, match="ck"):
            learn.save_checkpoint(path)
    finally:
        if locked:
            subprocess.run([chattr, "-i", str(tmp_path)], check=True)
        else:
            mp.undo()
    assert _snapshot(path) == old
    assert [p.name for p in tmp_path.iterdir()] == ["ck"]  # no temporary folder left


def test_nan_loss_stops_naming_epoch_and_batch_and_saves_nothing(tmp_path: Path) -> None:
    class PoisonAt(Callback):
        def after_loss(self, learn) -> None:  # type: ignore[no-untyped-def]
            if learn.training and learn.epoch == 1 and learn.iter == 5:
                learn.loss = learn.loss * float("nan")

    saver = SaveCheckpoint(tmp_path, every_n_steps=4, save_best=False)
    learn = _learner([PoisonAt(), saver], grad_accumulation=1)
    with pytest.raises(TrainingError, match=r"epoch 1, batch 5"):
        learn.fit(3)
    doc = read_training_document(tmp_path / "last")
    assert doc["train_step"] <= 16  # the last save came before the NaN (step 17)
    weights = load_model_weights(TinyNet(), tmp_path / "last")
    assert all(torch.isfinite(p).all() for p in weights.parameters())


def _kill_rounds(tmp_path: Path, rounds: int) -> None:
    # In a fresh interpreter: fork() from this test process, which other tests have given
    # thread pools, can hang the child (a known hazard of fork with threads).
    script = Path(__file__).with_name("kill_saves.py")
    env = dict(os.environ, OMP_NUM_THREADS="1")
    proc = subprocess.run(
        [sys.executable, str(script), str(tmp_path), str(rounds)],
        capture_output=True, text=True, env=env, timeout=600, check=False,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stdout + proc.stderr[-2000:]


def test_sigkill_while_saving_fast(tmp_path: Path) -> None:
    _kill_rounds(tmp_path, 8)


@pytest.mark.slow
def test_sigkill_while_saving_50_moments(tmp_path: Path) -> None:
    _kill_rounds(tmp_path, 50)
