"""DDP under torchrun on CPU (gloo): same result as one process, restart after a killed rank."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from nnblocks.io import read_tensors

SCRIPT = Path(__file__).with_name("ddp_script.py")
pytestmark = pytest.mark.slow


def _env() -> dict[str, str]:
    env = dict(os.environ, OMP_NUM_THREADS="1", PYTHONPATH=str(Path(__file__).parents[2]))
    # torchrun shares its rendezvous store with the workers by default, and a restarted
    # round can then read the dead round's gloo addresses ("Connection refused";
    # pytorch/pytorch#135712). A store per round avoids it.
    env["TORCH_DISABLE_SHARE_RDZV_TCP_STORE"] = "1"
    env.pop("WORLD_SIZE", None)
    return env


def _torchrun() -> list[str]:
    exe = Path(sys.executable).with_name("torchrun")
    return [str(exe)] if exe.exists() else [sys.executable, "-m", "torch.distributed.run"]


def _run(args: list[str], timeout: int = 300) -> subprocess.CompletedProcess:
    result = subprocess.run(args, env=_env(), capture_output=True, text=True, timeout=timeout)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    return result


def _single(tmp_path: Path) -> dict[str, torch.Tensor]:
    out = tmp_path / "single"
    out.mkdir()
    _run([sys.executable, str(SCRIPT), str(out)])
    return read_tensors(out / "final.safetensors")


def _close(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor]) -> None:
    assert a.keys() == b.keys()
    for k in a:
        assert torch.allclose(a[k], b[k], atol=1e-5, rtol=1e-4), (k, (a[k] - b[k]).abs().max())


def test_two_processes_match_one_with_the_same_global_batch(tmp_path: Path) -> None:
    one = _single(tmp_path)
    out = tmp_path / "ddp"
    out.mkdir()
    _run([*_torchrun(), "--standalone", "--nproc_per_node=2", str(SCRIPT), str(out)])
    _close(one, read_tensors(out / "final.safetensors"))
    single_valid = (tmp_path / "single" / "valid.txt").read_text().split()
    ddp_valid = (out / "valid.txt").read_text().split()
    assert float(ddp_valid[0]) == pytest.approx(
        float(single_valid[0]), rel=1e-4
    )  # reduced over ranks
    assert float(ddp_valid[1]) == pytest.approx(float(single_valid[1]))


def test_killed_rank_restarts_from_the_last_checkpoint(tmp_path: Path) -> None:
    one = _single(tmp_path)
    out = tmp_path / "restart"
    out.mkdir()
    _run(
        [
            *_torchrun(),
            "--standalone",
            "--nproc_per_node=2",
            "--max-restarts=1",
            str(SCRIPT),
            str(out),
            "13",
        ]
    )
    # The second attempt resumed mid-epoch from the checkpoint of step 12 (saved every 3).
    assert [(out / f"start1-rank{r}").read_text() for r in (0, 1)] == ["12", "12"]
    _close(one, read_tensors(out / "final.safetensors"))
    leftovers = [p.name for p in (out / "ckpt").iterdir()]
    assert leftovers == ["last"]  # no half-written checkpoint left beside it
    from nnblocks.train.checkpoint import read_training_document

    assert read_training_document(out / "ckpt" / "last")["epoch"] == 3
    shutil.rmtree(out)
