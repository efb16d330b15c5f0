"""Two torchrun "nodes" on this machine (c10d rendezvous on 127.0.0.1, one process each):
the same result as one node, a killed rank restarted by ``--max-restarts`` from the last
checkpoint, and ``nnblocks train`` unchanged under torchrun."""

from __future__ import annotations

import json
import math
import socket
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import yaml

from nnblocks.io import read_tensors

sys.path.insert(0, str(Path(__file__).parent))
from fsdp_launch import SCRIPT, env, run, torchrun, train  # noqa: E402

pytestmark = pytest.mark.slow
LOSS_RTOL = 1e-5  # as tests/train/test_fsdp.py: float32 summation order only


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _two_nodes(out: Path, *extra: str, restarts: int = 0) -> dict:
    """Launch two torchrun agents ("nodes") that meet at one c10d rendezvous."""
    out.mkdir(parents=True)
    port = _free_port()
    launch = [
        *torchrun(), "--nnodes=2", "--nproc_per_node=1", "--rdzv-backend=c10d",
        f"--rdzv-endpoint=127.0.0.1:{port}", "--rdzv-id=nnblocks-test",
        f"--max-restarts={restarts}", str(SCRIPT), str(out), "fsdp", *extra,
    ]  # fmt: skip
    nodes = [
        subprocess.Popen(
            launch, env=env(), stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
        )
        for _ in range(2)
    ]
    logs = [node.communicate(timeout=900)[0] for node in nodes]
    assert [n.returncode for n in nodes] == [0, 0], "\n---\n".join(log[-3000:] for log in logs)
    return json.loads((out / "losses.json").read_text())


@pytest.fixture(scope="module")
def single(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, list[float]]:
    out = tmp_path_factory.mktemp("single")
    return out, train(out, "none")["losses"]


def _same_weights(a: Path, b: Path) -> None:
    wa, wb = read_tensors(a / "final.safetensors"), read_tensors(b / "final.safetensors")
    assert wa.keys() == wb.keys()
    for k in wa:
        assert torch.allclose(wa[k], wb[k], atol=1e-5, rtol=0), (k, (wa[k] - wb[k]).abs().max())


def test_two_nodes_train_to_the_result_of_one(
    single: tuple[Path, list[float]], tmp_path: Path
) -> None:
    one_dir, one = single
    got = _two_nodes(tmp_path / "nodes")
    assert got["start"] == 0 and got["losses"] == pytest.approx(one, rel=LOSS_RTOL)
    _same_weights(one_dir, tmp_path / "nodes")


def test_killed_rank_restarts_from_the_last_checkpoint(
    single: tuple[Path, list[float]], tmp_path: Path
) -> None:
    one_dir, one = single
    # Rank 1 dies at step 10 on the first attempt; the checkpoint of step 9 (every 3) is
    # the last one, so the restarted round resumes there.
    got = _two_nodes(tmp_path / "killed", "--kill-at", "10", restarts=1)
    assert got["start"] == 9
    assert got["losses"] == pytest.approx(one[9:], rel=LOSS_RTOL)
    _same_weights(one_dir, tmp_path / "killed")
    assert [p.name for p in (tmp_path / "killed" / "ckpt").iterdir()] == ["last"]


def _recipe(folder: Path, strategy: str | None) -> Path:
    path = folder / f"wine_{strategy}.yaml"
    train = {"epochs": 2, "batch_size": 32, "threads": 1}
    if strategy is not None:
        train["strategy"] = strategy
    recipe = {
        "name": "wine_torchrun",
        "data": {"name": "wine"},
        # No batch norm: its statistics are per process under DDP and FSDP (no SyncBatchNorm),
        # so one process and two would train differently by design. No `layers.N`: one unit.
        "model": {"name": "mlp", "hidden": [8], "norm": None},
        "train": train,
    }
    path.write_text(yaml.safe_dump(recipe))
    return path


_CLI = ["-m", "nnblocks.cli", "train", "--no-progress"]
_TWO = ["--standalone", "--nproc_per_node=2"]


@pytest.fixture(scope="module")
def ddp_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """`nnblocks train` of a recipe with no distributed setting, launched by torchrun."""
    folder = tmp_path_factory.mktemp("wine")
    run([*torchrun(), *_TWO, *_CLI, str(_recipe(folder, None)), "--out", str(folder / "run")])
    return folder / "run"


def test_nnblocks_train_runs_unchanged_under_torchrun(ddp_run: Path) -> None:
    metrics = json.loads((ddp_run / "metrics.json").read_text())
    assert metrics["epochs_run"] == 2 and math.isfinite(metrics["valid_loss"])
    assert len((ddp_run / "history.csv").read_text().splitlines()) == 3  # header + 2 epochs
    assert (ddp_run / "model" / "model.safetensors").is_file()
    assert (ddp_run / "checkpoints" / "last" / "model.safetensors").is_file()


def test_nnblocks_train_with_fsdp_matches_ddp(ddp_run: Path, tmp_path: Path) -> None:
    # Against DDP on 2 processes, not 1: wine's splits (115 and 27 rows) are odd, so the last
    # global batch is padded by wrapping around under 2 processes (as DistributedSampler).
    out = tmp_path / "fsdp"
    run([*torchrun(), *_TWO, *_CLI, str(_recipe(tmp_path, "fsdp")), "--out", str(out)])
    ddp = json.loads((ddp_run / "metrics.json").read_text())
    fsdp = json.loads((out / "metrics.json").read_text())
    for key in ("train_loss", "valid_loss", "test_loss"):
        assert fsdp[key] == pytest.approx(ddp[key], rel=LOSS_RTOL), key
    # The model folder holds the whole weights, gathered from the shards.
    w1 = read_tensors(ddp_run / "model" / "model.safetensors")
    w2 = read_tensors(out / "model" / "model.safetensors")
    assert w1.keys() == w2.keys()
    assert all(torch.allclose(w1[k], w2[k], atol=1e-5, rtol=0) for k in w1)
    assert (out / "checkpoints" / "last" / "sharded" / ".metadata").is_file()
