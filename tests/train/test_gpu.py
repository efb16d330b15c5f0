"""The GPU path: bf16 autocast by default, pinned non-blocking copies, SDPA's fast kernels.

CI has no GPU: every test that needs CUDA is skipped there.
"""

from __future__ import annotations

import math

import pytest
import torch

import nnblocks
from nnblocks.data import TensorData
from nnblocks.train import Callback, Learner
from nnblocks.train.callbacks.mixed_precision import resolve_precision

from .conftest import TinyNet, blobs

cuda = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")


def test_auto_precision_is_off_on_cpu_and_explicit_values_pass() -> None:
    cpu = torch.device("cpu")
    assert resolve_precision("auto", cpu) is None
    assert resolve_precision("bf16", cpu) == "bf16" and resolve_precision(None, cpu) is None


def test_cpu_learner_keeps_fp32_by_default(data) -> None:  # type: ignore[no-untyped-def]
    learn = Learner(TinyNet(), data, "cross_entropy", progress=False, audit="off", device="cpu")
    assert not any(type(cb).__name__ == "MixedPrecision" for cb in learn.cbs.callbacks)


class _Dtype(Callback):
    def __init__(self) -> None:
        self.dtypes: set[torch.dtype] = set()

    def after_forward(self, learn):  # type: ignore[no-untyped-def]
        self.dtypes.add(learn.pred.dtype)


@cuda
def test_cuda_learner_defaults_to_bf16_autocast() -> None:
    seen = _Dtype()
    learn = Learner(
        TinyNet(), (blobs(64), blobs(32, seed=1)), "cross_entropy", batch_size=16,
        progress=False, audit="off", device="cuda", callbacks=[seen],
    )  # fmt: skip
    learn.fit(1)
    expected = torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float32
    assert seen.dtypes == {expected}


@cuda
def test_large_tensors_move_pinned_and_non_blocking(monkeypatch) -> None:  # type: ignore[no-untyped-def]
    import nnblocks.train.loaders as loaders

    monkeypatch.setattr(loaders, "_MOVE_WHOLE_BYTES", 0)  # force the per-batch copy path
    pinned = []
    original = torch.Tensor.pin_memory

    def spy(self, *args, **kwargs):  # type: ignore[no-untyped-def]
        out = original(self, *args, **kwargs)
        pinned.append(out.is_pinned())
        return out

    monkeypatch.setattr(torch.Tensor, "pin_memory", spy)
    loader = loaders.TensorLoader(blobs(64), 16, shuffle=True, device="cuda")
    batches = list(loader)
    assert all(t.is_cuda for b in batches for t in b) and pinned and all(pinned)
    dataset = torch.utils.data.TensorDataset(torch.randn(8, 4), torch.zeros(8))
    assert loaders.DatasetLoader(dataset, 4, shuffle=False, device="cuda").loader.pin_memory


@cuda
@pytest.mark.parametrize("attention", ["mha", "gqa"])
def test_sdpa_runs_a_fused_kernel_on_cuda(attention: str) -> None:
    from torch.profiler import ProfilerActivity, profile

    spec = {"name": "transformer_lm", "vocab_size": 64, "dim": 128, "heads": 4, "layers": 2,
            "max_len": 256, "self_attention": attention}  # fmt: skip
    model = nnblocks.build(spec).cuda().train()
    tokens = torch.randint(4, 64, (2, 256), device="cuda")
    activities = [ProfilerActivity.CPU, ProfilerActivity.CUDA]
    with profile(activities=activities) as prof, torch.autocast("cuda", dtype=torch.bfloat16):
        model(tokens).float().sum().backward()
    names = {e.name for e in prof.events()}
    fused = {"aten::_scaled_dot_product_flash_attention", "aten::_scaled_dot_product_efficient_attention",
             "aten::_scaled_dot_product_cudnn_attention"}  # fmt: skip
    assert names & fused, sorted(n for n in names if "scaled_dot_product" in n)
    assert "aten::_scaled_dot_product_attention_math" not in names


@cuda
def test_cuda_fit_on_data_larger_than_the_move_threshold(monkeypatch) -> None:  # type: ignore[no-untyped-def]
    import nnblocks.train.loaders as loaders

    monkeypatch.setattr(loaders, "_MOVE_WHOLE_BYTES", 0)
    x, y = torch.randn(64, 4), torch.randint(0, 3, (64,))
    learn = Learner(
        TinyNet(), (TensorData(x, y), TensorData(x[:16], y[:16])), "cross_entropy",
        batch_size=16, progress=False, audit="off", device="cuda",
    )  # fmt: skip
    history = learn.fit(1)
    assert math.isfinite(history[-1]["valid_loss"]) and learn.train_step == 4
