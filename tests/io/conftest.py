"""Tiny registered parts for the io tests (the real models are written elsewhere)."""

from __future__ import annotations

import pickle
from pathlib import Path

import pytest
import torch
from torch import nn

import nnblocks


class IoTestNorm(nn.Module):
    """RMS-style norm with a learned gain (a nested part of the test model)."""

    def __init__(self, dim: int, eps: float = 1e-6):
        super().__init__()
        self.eps = eps
        self.gain = nn.Parameter(torch.ones(dim))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + self.eps) * self.gain


class IoTestLM(nn.Module):
    """Embedding -> norm -> head, with the head tied to the embedding (Press & Wolf 2017)."""

    def __init__(self, vocab_size: int = 13, dim: int = 8, norm: str | dict = "io_test_norm"):
        super().__init__()
        self.embed = nn.Embedding(vocab_size, dim)
        self.norm = nnblocks.build(norm, "norm", at="norm", dim=dim)
        self.mix = nn.Linear(dim, dim)
        self.register_buffer("scale", torch.full((dim,), 0.5))
        self.head = nn.Linear(dim, vocab_size, bias=False)
        self.head.weight = self.embed.weight  # tied

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:  # [B, T] -> [B, T, V]
        return self.head(self.mix(self.norm(self.embed(tokens))) * self.scale)


@pytest.fixture(autouse=True, scope="module")
def _io_test_parts():
    # Registered only while the io tests run, so tests parametrised over the registry
    # elsewhere see the built-in parts alone.
    nnblocks.register("norm", "io_test_norm", override=True)(IoTestNorm)
    nnblocks.register("model", "io_test_lm", override=True)(IoTestLM)
    yield
    nnblocks.registry.unregister("norm", "io_test_norm")
    nnblocks.registry.unregister("model", "io_test_lm")


@pytest.fixture
def tiny_model() -> nn.Module:
    model = nnblocks.build({"name": "io_test_lm", "dim": 8})
    with torch.no_grad():  # make every tensor differ from a fresh build's
        for p in model.parameters():
            p.add_(torch.randn_like(p))
        model.scale.fill_(1.5)
    return model


class MarkerPayload:
    """Unpickling this writes a marker file: proof that a loader ran the file's code."""

    def __init__(self, marker: Path):
        self.marker = str(marker)

    def __reduce__(self):
        return (exec, (f"__import__('pathlib').Path({self.marker!r}).write_text('pwned')",))


@pytest.fixture
def hostile_pickle(tmp_path: Path) -> tuple[bytes, Path]:
    """Pickle bytes that create ``marker`` when unpickled; the control proves it works."""
    control = tmp_path / "control_marker"
    pickle.loads(pickle.dumps(MarkerPayload(control)))
    assert control.exists(), "the payload must be live for the refusal tests to mean anything"
    marker = tmp_path / "marker"
    return pickle.dumps(MarkerPayload(marker)), marker
