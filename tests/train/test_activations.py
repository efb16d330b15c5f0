"""Activation checkpointing by slot pattern: same losses and gradients, less kept."""

from __future__ import annotations

import pytest
import torch

import nnblocks
from nnblocks.data import TensorData
from nnblocks.errors import TrainingError
from nnblocks.train import Learner
from nnblocks.train.activations import checkpoint_activations, remove_activation_checkpointing


def _lm(seed: int = 0) -> torch.nn.Module:
    torch.manual_seed(seed)
    spec = {"name": "transformer_lm", "vocab_size": 40, "dim": 32, "heads": 2, "layers": 3,
            "max_len": 16, "dropout": 0.1}  # fmt: skip
    return nnblocks.build(spec)


def _grads(model: torch.nn.Module, tokens: torch.Tensor) -> tuple[float, list[torch.Tensor]]:
    torch.manual_seed(123)  # the same dropout masks on both sides
    model.train()
    logits = model(tokens)
    loss = torch.nn.functional.cross_entropy(logits.flatten(0, 1), tokens.roll(-1, 1).flatten())
    loss.backward()
    return float(loss.detach()), [p.grad.clone() for p in model.parameters()]


def test_checkpointed_layers_give_the_same_loss_and_gradients() -> None:
    tokens = torch.randint(4, 40, (4, 12))
    plain, ckpt = _lm(), _lm()
    names = checkpoint_activations(ckpt, "decoder.layers.*")
    assert names == ["decoder.layers.0", "decoder.layers.1", "decoder.layers.2"]
    loss_a, grads_a = _grads(plain, tokens)
    loss_b, grads_b = _grads(ckpt, tokens)
    assert loss_a == loss_b
    assert all(torch.allclose(a, b, atol=1e-6) for a, b in zip(grads_a, grads_b))
    assert set(plain.state_dict()) == set(ckpt.state_dict())  # no wrapper in the names


def test_checkpointing_frees_activations_in_the_forward_pass() -> None:
    from torch.autograd.graph import saved_tensors_hooks

    def saved_bytes(model: torch.nn.Module) -> int:
        total = 0

        def pack(t: torch.Tensor) -> torch.Tensor:
            nonlocal total
            total += t.numel() * t.element_size()
            return t

        with saved_tensors_hooks(pack, lambda t: t):
            model.train()(torch.randint(4, 40, (8, 16))).sum()
        return total

    plain, ckpt = _lm(), _lm()
    checkpoint_activations(ckpt, ["decoder.layers.*"])
    assert saved_bytes(ckpt) < 0.6 * saved_bytes(plain)
    remove_activation_checkpointing(ckpt)
    assert saved_bytes(ckpt) == saved_bytes(plain)


def test_learner_option_trains_like_without_it() -> None:
    x = torch.randint(4, 40, (32, 12))
    data = (TensorData(x, x.roll(-1, 1)), TensorData(x[:8], x[:8].roll(-1, 1)))
    runs = []
    for pattern in (None, "decoder.layers.*"):
        learn = Learner(
            _lm(), data, "cross_entropy", batch_size=8, seed=0, progress=False, audit="off",
            checkpoint_activations=pattern,
        )  # fmt: skip
        torch.manual_seed(7)
        runs.append([row["train_loss"] for row in learn.fit(2)])
        assert learn.checkpointed == (
            [] if pattern is None else [f"decoder.layers.{i}" for i in range(3)]
        )
    assert runs[0] == pytest.approx(runs[1], rel=1e-5)


def test_a_pattern_matching_nothing_is_refused() -> None:
    with pytest.raises(TrainingError, match="encoder.layers"):
        checkpoint_activations(_lm(), "encoder.layers.*")
    with pytest.raises(TrainingError, match="glob"):
        checkpoint_activations(_lm(), [3])  # type: ignore[list-item]
