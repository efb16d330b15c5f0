"""Launching tests/train/fsdp_script.py alone or under torchrun (shared by the slow tests)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

SCRIPT = Path(__file__).with_name("fsdp_script.py")
ROOT = Path(__file__).parents[2]


def env() -> dict[str, str]:
    out = dict(os.environ, OMP_NUM_THREADS="1", PYTHONPATH=str(ROOT))
    # A rendezvous store per round: a restarted round could otherwise read the dead
    # round's gloo addresses (pytorch/pytorch#135712; see nnblocks.train.distributed).
    out["TORCH_DISABLE_SHARE_RDZV_TCP_STORE"] = "1"
    for name in ("WORLD_SIZE", "RANK", "LOCAL_RANK", "MASTER_ADDR", "MASTER_PORT"):
        out.pop(name, None)
    return out


def torchrun() -> list[str]:
    exe = Path(sys.executable).with_name("torchrun")
    return [str(exe)] if exe.exists() else [sys.executable, "-m", "torch.distributed.run"]


def run(args: list[str], timeout: int = 600, cwd: Path | None = None) -> str:
    result = subprocess.run(
        args, env=env(), capture_output=True, text=True, timeout=timeout, cwd=cwd
    )
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-4000:]
    return result.stdout


def train(out: Path, strategy: str, nproc: int = 1, *extra: str) -> dict[str, Any]:
    """Run the script into ``out`` (created) and return its losses.json."""
    out.mkdir(parents=True, exist_ok=True)
    if nproc == 1:
        run([sys.executable, str(SCRIPT), str(out), strategy, *extra])
    else:
        launch = [*torchrun(), "--standalone", f"--nproc_per_node={nproc}"]
        run([*launch, str(SCRIPT), str(out), strategy, *extra])
    return json.loads((out / "losses.json").read_text())
