"""strategy="fsdp" under torchrun on CPU (gloo): the same losses as one process, and a
checkpoint written by 4 processes resumed by 2 continues the same loss curve."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
import torch

from nnblocks.io import read_tensors

sys.path.insert(0, str(Path(__file__).parent))
from fsdp_launch import train  # noqa: E402

pytestmark = pytest.mark.slow

# Sharded and single-process runs sum the same numbers in another order (reduce-scatter
# over processes, then the mean of equal shards): float32 rounding, nothing more.
LOSS_RTOL = 1e-5
WEIGHT_ATOL = 1e-5


@pytest.fixture(scope="module")
def single(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, list[float]]:
    out = tmp_path_factory.mktemp("single")
    return out, train(out, "none")["losses"]


def _same_weights(a: Path, b: Path) -> None:
    wa, wb = read_tensors(a / "final.safetensors"), read_tensors(b / "final.safetensors")
    assert wa.keys() == wb.keys()
    for k in wa:
        assert torch.allclose(wa[k], wb[k], atol=WEIGHT_ATOL, rtol=0), (
            k,
            (wa[k] - wb[k]).abs().max(),
        )


@pytest.mark.parametrize("nproc", [2, 4])
def test_fsdp_trains_to_the_losses_of_one_process(
    nproc: int, single: tuple[Path, list[float]], tmp_path: Path
) -> None:
    one_dir, one = single
    losses = train(tmp_path / "fsdp", "fsdp", nproc)["losses"]
    assert len(losses) == len(one) == 18
    assert losses == pytest.approx(one, rel=LOSS_RTOL)
    assert one[-1] < one[0] - 1.0  # it learned something: the comparison is not of noise
    _same_weights(one_dir, tmp_path / "fsdp")
    ckpt = tmp_path / "fsdp" / "ckpt" / "last"
    shards = sorted(p.name for p in (ckpt / "sharded").iterdir())
    assert shards == [".metadata", *(f"__{r}_0.distcp" for r in range(nproc))]
    assert not (ckpt / "model.safetensors").exists()  # the weights live in the shards only


def test_checkpoint_of_four_processes_resumes_on_two(
    single: tuple[Path, list[float]], tmp_path: Path
) -> None:
    one_dir, one = single
    first = train(tmp_path / "four", "fsdp", 4, "--stop-at", "9")
    assert first["losses"] == pytest.approx(one[:9], rel=LOSS_RTOL)
    ckpt = tmp_path / "four" / "ckpt" / "last"
    second = train(tmp_path / "two", "fsdp", 2, "--resume", str(ckpt))
    assert second["start"] == 9  # epoch 1, batch 3 of 6
    assert second["losses"] == pytest.approx(one[9:], rel=LOSS_RTOL)
    _same_weights(one_dir, tmp_path / "two")


def test_sharded_checkpoint_resumes_in_one_process(
    single: tuple[Path, list[float]], tmp_path: Path
) -> None:
    one_dir, one = single
    train(tmp_path / "two", "fsdp", 2, "--stop-at", "6")
    again = train(tmp_path / "one", "none", 1, "--resume", str(tmp_path / "two" / "ckpt" / "last"))
    assert again["start"] == 6
    assert again["losses"] == pytest.approx(one[6:], rel=LOSS_RTOL)
    _same_weights(one_dir, tmp_path / "one")
