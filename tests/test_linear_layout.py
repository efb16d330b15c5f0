"""Decoding holds linear weights column-major on the CPU, and puts them back as they were."""

import pytest
import torch
from torch import nn

import nnblocks
from nnblocks import _linear_layout, generate
from nnblocks._linear_layout import column_major_linears


def _lm(tie: bool = True) -> nn.Module:
    torch.manual_seed(0)
    spec = {"name": "transformer_lm", "vocab_size": 40, "dim": 16, "heads": 2, "layers": 2}
    return nnblocks.build({**spec, "tie_embeddings": tie}).eval()


def _column_major(w: torch.Tensor) -> bool:
    return w.stride() == (1, w.shape[0])


def test_inside_the_block_the_linear_weights_are_column_major_and_hold_the_same_values():
    model = _lm(tie=False)
    before = {n: p.detach().clone() for n, p in model.named_parameters()}
    with column_major_linears(model):
        q = model.decoder.layers[0].self_attention.q_proj.weight
        assert _column_major(q) and not q.is_contiguous()
        assert _column_major(model.head.weight)  # the `linear` head declares linear_weight_only
        assert model.embedding.weight.is_contiguous()  # read by F.embedding: left alone
        for name, p in model.named_parameters():
            assert torch.equal(p, before[name]), name


def test_afterwards_the_original_tensors_are_back_and_the_parameters_are_the_same_objects():
    model = _lm(tie=False)
    params = dict(model.named_parameters())
    pointers = {n: p.data_ptr() for n, p in params.items()}
    with column_major_linears(model):
        pass
    for name, p in model.named_parameters():
        assert p is params[name]
        assert p.is_contiguous() and p.data_ptr() == pointers[name], name


def test_the_weights_are_restored_when_the_block_raises():
    model = _lm(tie=False)
    with pytest.raises(RuntimeError, match="boom"), column_major_linears(model):
        raise RuntimeError("boom")
    assert all(p.is_contiguous() for p in model.parameters())


def test_a_weight_tied_to_an_embedding_or_a_view_of_a_larger_buffer_is_left_alone():
    model = _lm(tie=True)
    flat = torch.randn(2 * 16 * 16)
    layer = nn.Linear(16, 16)
    layer.weight = nn.Parameter(flat[: 16 * 16].view(16, 16))  # shares storage with `flat`
    holder = nn.ModuleDict({"lm": model, "view": layer})
    with column_major_linears(holder):
        assert model.head.weight.is_contiguous()  # the same Parameter as embedding.weight
        assert layer.weight.is_contiguous()
        assert _column_major(model.decoder.layers[0].feedforward.up.weight)


def test_a_subclass_with_its_own_forward_is_left_alone():
    class Scaled(nn.Linear):
        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return x @ self.weight.view(-1).view(self.out_features, -1).t()  # needs contiguity

    model = nn.Sequential(Scaled(8, 4), nn.Linear(4, 3))
    with column_major_linears(model):
        assert model[0].weight.is_contiguous()
        assert _column_major(model[1].weight)
        model(torch.randn(2, 8))


def test_models_over_the_memory_limit_are_left_alone(monkeypatch):
    model = _lm(tie=False)
    monkeypatch.setattr(_linear_layout, "MAX_BYTES", 0)
    with column_major_linears(model):
        assert all(p.is_contiguous() for p in model.parameters())


def test_decoding_gives_the_same_tokens_with_and_without_the_layout(monkeypatch):
    model = _lm(tie=False)
    prompt = torch.randint(3, 40, (3, 4), generator=torch.Generator().manual_seed(1))
    up = model.decoder.layers[0].feedforward.up
    layouts = []
    up.register_forward_pre_hook(lambda m, _: layouts.append(_column_major(m.weight)))
    relaid = generate.greedy(model, prefix=prompt, max_new_tokens=40)
    assert layouts and all(layouts)  # the relaid weights served every step
    beams = generate.beam(model, prefix=prompt, beam_size=3, max_new_tokens=40)
    monkeypatch.setattr(generate, "_RELAYOUT_FROM_STEPS", 10**9)
    assert torch.equal(relaid, generate.greedy(model, prefix=prompt, max_new_tokens=40))
    assert torch.equal(beams, generate.beam(model, prefix=prompt, beam_size=3, max_new_tokens=40))


def test_training_after_decoding_updates_the_same_parameters():
    model = _lm(tie=False).train()
    opt = torch.optim.AdamW(model.parameters(), lr=1e-2)
    generate.greedy(model, batch_size=2, max_new_tokens=40)
    assert model.training  # decoding restored the mode
    before = model.head.weight.detach().clone()
    tokens = torch.randint(3, 40, (2, 6))
    model(tokens).sum().backward()
    opt.step()
    assert not torch.equal(before, model.head.weight)
    assert model.head.weight.is_contiguous()
