"""show_batch: tables of decoded examples; PNG grids of images."""

import io

import pytest
import torch
from rich.console import Console

from nnblocks.data import TensorData, from_pairs, from_tensors, show_batch
from nnblocks.errors import DataError


def test_show_batch_prints_decoded_text():
    bundle = from_pairs(
        [(f"zahl {i}", f"number {i}") for i in range(30)], split={"name": "group", "valid": 5}
    )
    out = io.StringIO()
    text = show_batch(bundle, n=3, console=Console(file=out, width=120))
    assert len(text.splitlines()) == 3
    first = bundle.task.decode_example(bundle.train[0])
    assert first["input"] in out.getvalue() and first["target"] in out.getvalue()


def test_show_batch_saves_a_png_grid_of_images(tmp_path):
    bundle = from_tensors(torch.rand(20, 1, 8, 8), torch.arange(20) % 2, augment=["noise"])
    path = bundle.show_batch(n=6, path=tmp_path / "grid.png")
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_show_batch_needs_a_task():
    with pytest.raises(DataError, match="task"):
        show_batch(TensorData(torch.zeros(2, 2)))
