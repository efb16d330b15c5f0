"""Ctrl-C and SIGTERM lose nothing: the step finishes, a checkpoint is written, the run
resumes bit-identical to one that was never interrupted (issue 13, item 3)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
import yaml

from nnblocks.data import TensorData
from nnblocks.io.safetensors_io import read_tensors
from nnblocks.train import Callback, Learner
from nnblocks.train.interrupt import TrainingInterrupted

HERE = Path(__file__).resolve().parent


def _data(n: int = 64) -> tuple[TensorData, TensorData]:
    g = torch.Generator().manual_seed(0)
    x, y = torch.randn(n, 4, generator=g), torch.randint(0, 3, (n,), generator=g)
    return TensorData(x[:48], y[:48]), TensorData(x[48:], y[48:])


def _learner(path: Path) -> Learner:
    torch.manual_seed(0)
    model = torch.nn.Sequential(
        torch.nn.Linear(4, 8), torch.nn.ReLU(), torch.nn.Dropout(0.3), torch.nn.Linear(8, 3)
    )
    return Learner(
        model,
        _data(),
        loss=F.cross_entropy,
        batch_size=8,
        progress=False,
        path=path,
        seed=1,
        audit="off",
    )


class _SignalAt(Callback):
    """Sends the process a signal during training step ``step`` (before its forward)."""

    def __init__(self, step: int, signum: int):
        self.step, self.signum = step, signum

    def before_batch(self, learn):
        if learn.training and learn.train_step == self.step:
            signal.raise_signal(self.signum)


@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM])
def test_a_signal_in_fit_saves_and_resumes_exactly(tmp_path, signum):
    reference = _learner(tmp_path / "ref")
    reference.fit(3)
    learn = _learner(tmp_path / "run")
    learn.add_callbacks(_SignalAt(8, signum))
    # What was installed before (SIG_IGN, not Python's default, under `nohup cmd &`).
    before = signal.getsignal(signal.SIGINT), signal.getsignal(signal.SIGTERM)
    with pytest.raises(TrainingInterrupted) as err:
        learn.fit(3)
    assert err.value.exit_code == 128 + signum and err.value.step == 9  # the step finished
    assert err.value.checkpoint == tmp_path / "run" / "checkpoints" / "last"
    after = signal.getsignal(signal.SIGINT), signal.getsignal(signal.SIGTERM)
    assert after == before  # handlers restored
    resumed = _learner(tmp_path / "run")
    resumed.fit(3, resume=tmp_path / "run" / "checkpoints" / "last")
    for a, b in zip(reference.model.state_dict().values(), resumed.model.state_dict().values()):
        assert torch.equal(a, b)


def _recipe(tmp_path: Path) -> Path:
    path = tmp_path / "pause.yaml"
    path.write_text(
        yaml.safe_dump(
            {
                "name": "pause",
                "seed": 2,
                "plugins": [str(HERE / "pause_plugin.py")],
                "data": {"name": "wine"},
                "model": {"name": "pause_mlp", "hidden": 8},
                "train": {"epochs": 3, "batch_size": 16, "lr": 0.01, "threads": 1},
            }
        )
    )
    return path


def _train(recipe: Path, out: Path, *extra: str, env: dict | None = None) -> subprocess.Popen:
    cmd = [
        sys.executable,
        "-m",
        "nnblocks.cli",
        "train",
        str(recipe),
        "--out",
        str(out),
        "--no-progress",
        *extra,
    ]
    full = dict(os.environ, OMP_NUM_THREADS="1", **(env or {}))
    return subprocess.Popen(
        cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=full
    )


@pytest.mark.slow
def test_sigint_and_sigterm_to_a_training_process_resume_bit_identical(tmp_path):
    recipe = _recipe(tmp_path)
    ref = _train(recipe, tmp_path / "ref")
    assert ref.wait(120) == 0, ref.stderr.read()
    expected = read_tensors(tmp_path / "ref" / "model" / "model.safetensors")
    for signum, code in ((signal.SIGINT, 130), (signal.SIGTERM, 143)):
        out, marker = tmp_path / f"run-{signum}", tmp_path / f"marker-{signum}"
        proc = _train(recipe, out, env={"NNB_PAUSE_MARKER": str(marker), "NNB_PAUSE_AT": "12"})
        deadline = time.monotonic() + 120
        while not marker.exists() and proc.poll() is None and time.monotonic() < deadline:
            time.sleep(0.05)
        assert marker.exists(), proc.stderr.read()
        proc.send_signal(signum)
        assert proc.wait(60) == code
        err = proc.stderr.read().strip()
        assert "Traceback" not in err
        last = err.splitlines()[-1]
        assert "interrupted by" in last and "--resume" in last and str(out) in last
        assert (out / "checkpoints" / "last" / "training.json").is_file()
        assert not (out / "metrics.json").exists()
        resumed = _train(recipe, out, "--resume")
        assert resumed.wait(120) == 0, resumed.stderr.read()
        got = read_tensors(out / "model" / "model.safetensors")
        assert got.keys() == expected.keys()
        for key in expected:
            assert torch.equal(got[key], expected[key]), key


@pytest.mark.slow
def test_a_second_run_into_a_busy_folder_refuses_naming_the_first(tmp_path):
    recipe = _recipe(tmp_path)
    out, marker = tmp_path / "run", tmp_path / "marker"
    first = _train(
        recipe,
        out,
        env={"NNB_PAUSE_MARKER": str(marker), "NNB_PAUSE_AT": "3", "NNB_PAUSE_SECONDS": "20"},
    )
    deadline = time.monotonic() + 120
    while not marker.exists() and first.poll() is None and time.monotonic() < deadline:
        time.sleep(0.05)
    assert marker.exists(), first.stderr.read()
    second = _train(recipe, out)
    assert second.wait(120) == 1
    err = second.stderr.read()
    assert "Traceback" not in err and f"process {first.pid}" in err and str(out) in err
    assert first.wait(120) == 0, first.stderr.read()  # the first run was not disturbed
    assert (out / "metrics.json").is_file()
