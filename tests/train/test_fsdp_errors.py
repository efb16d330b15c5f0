"""Bad strategy, wrapping pattern or batch size: an error naming the key, before any
process group is formed (these run in one process, with torchrun's variables faked)."""

from __future__ import annotations

import pytest
import torch.distributed as dist
from torch import nn

import nnblocks
from nnblocks.errors import TrainingError
from nnblocks.train import Learner
from nnblocks.train.fsdp import wrap_targets

from .conftest import TinyNet, blobs


def _lm() -> nn.Module:
    spec = {"name": "transformer_lm", "vocab_size": 16, "dim": 16, "heads": 2, "layers": 2}
    return nnblocks.build(spec, kind="model")


def _learner(model: nn.Module, **options: object) -> Learner:
    return Learner(model, (blobs(32), blobs(16, seed=1)), "cross_entropy", progress=False,
                   audit="off", **options)  # fmt: skip


@pytest.fixture
def two_processes(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("WORLD_SIZE", "2")
    monkeypatch.setenv("RANK", "0")
    monkeypatch.setenv("LOCAL_RANK", "0")


def test_fsdp_with_one_process_names_train_strategy() -> None:
    with pytest.raises(TrainingError, match=r"`train.strategy` is 'fsdp'.*WORLD_SIZE=1"):
        _learner(TinyNet(), strategy="fsdp")
    assert not dist.is_initialized()


def test_unknown_strategy_names_the_key() -> None:
    with pytest.raises(TrainingError, match=r"`train.strategy`.*Received: strategy='zero3'"):
        _learner(TinyNet(), strategy="zero3")


def test_wrap_pattern_that_matches_nothing_names_fsdp_wrap(two_processes: None) -> None:
    with pytest.raises(TrainingError, match=r"`fsdp_wrap` pattern `encoder.layers.\*`.*decoder"):
        _learner(_lm(), strategy="fsdp", fsdp_wrap="encoder.layers.*")
    assert not dist.is_initialized()  # refused before joining a process group


def test_fsdp_wrap_without_fsdp_is_refused() -> None:
    with pytest.raises(TrainingError, match=r"`fsdp_wrap` is only used with strategy 'fsdp'"):
        _learner(TinyNet(), fsdp_wrap="fc1")


def test_world_size_that_does_not_divide_the_batch_names_train_batch_size(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("WORLD_SIZE", "3")
    with pytest.raises(TrainingError, match=r"`train.batch_size`.*batch_size=16, WORLD_SIZE=3"):
        _learner(TinyNet(), batch_size=16)
    assert not dist.is_initialized()


def test_default_wrapping_is_each_transformer_layer_and_globs_keep_outermost() -> None:
    model = _lm()
    assert wrap_targets(model, None) == ["decoder.layers.0", "decoder.layers.1"]
    assert wrap_targets(model, "decoder.layers.*") == ["decoder.layers.0", "decoder.layers.1"]
    assert wrap_targets(model, ["decoder.layers.1", "embedding"]) == [
        "embedding",
        "decoder.layers.1",
    ]
    assert wrap_targets(TinyNet(), None) == []  # no layers: the model is one unit
    with pytest.raises(TrainingError, match="`fsdp_wrap`"):
        wrap_targets(model, [])


def test_recipe_passes_strategy_to_the_learner() -> None:
    from nnblocks.experiment.run import _learner_kwargs

    assert _learner_kwargs({"strategy": "fsdp", "lr": 0.1}) == {"strategy": "fsdp", "lr": 0.1}
