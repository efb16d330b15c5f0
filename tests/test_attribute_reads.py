"""Decoding reads children and parameters as plain attributes, and leaves the modules as
they were."""

import pytest
import torch
from torch import nn

import nnblocks
from nnblocks import generate
from nnblocks._attribute_reads import direct_attribute_reads


def _lm() -> nn.Module:
    torch.manual_seed(0)
    spec = {"name": "transformer_lm", "vocab_size": 40, "dim": 16, "heads": 2, "layers": 2}
    return nnblocks.build({**spec, "position": "rotary", "norm": "rms"}).eval()


def _attributes(model: nn.Module) -> list[dict]:
    return [dict(m.__dict__) for m in model.modules()]


def test_inside_the_block_children_and_parameters_are_instance_attributes_of_the_same_objects():
    model = _lm()
    attention = model.decoder.layers[0].self_attention
    q_proj = attention._modules["q_proj"]
    with direct_attribute_reads(model):
        assert attention.__dict__["q_proj"] is q_proj
        assert q_proj.__dict__["weight"] is q_proj._parameters["weight"]
        assert model.decoder.layers[0].__dict__["cross_attention"] is None  # no cross part
        assert attention.q_proj is q_proj


def test_buffers_are_not_aliased():
    bn = nn.BatchNorm1d(3)
    with direct_attribute_reads(bn):
        assert "running_mean" not in bn.__dict__
        bn.running_mean = torch.full((3,), 2.0)  # a part may assign a buffer while it runs
        assert torch.equal(bn.running_mean, torch.full((3,), 2.0))


def test_afterwards_every_module_dict_is_as_before_also_after_an_exception():
    model = _lm()
    before = _attributes(model)
    with direct_attribute_reads(model):
        pass
    assert _attributes(model) == before
    with pytest.raises(RuntimeError, match="stop"), direct_attribute_reads(model):
        raise RuntimeError("stop")
    assert _attributes(model) == before


def test_a_child_or_parameter_assigned_inside_the_block_is_read_and_kept():
    model = _lm()
    layer = model.decoder.layers[1]
    new_ff = nn.Identity()
    new_weight = nn.Parameter(torch.zeros(16))
    with direct_attribute_reads(model):
        layer.feedforward = new_ff  # Module.__setattr__ drops the alias of this name
        layer.feedforward_norm.weight = new_weight
        assert layer.feedforward is new_ff
        assert layer.feedforward_norm.weight is new_weight
    assert layer.feedforward is new_ff and layer._modules["feedforward"] is new_ff
    assert layer.feedforward_norm.weight is new_weight
    assert "feedforward" not in layer.__dict__


def test_shared_modules_and_objects_that_are_not_modules():
    shared = nn.Linear(2, 2)
    model = nn.Sequential(shared, nn.ReLU(), shared)
    before = _attributes(model)
    with direct_attribute_reads(model):
        assert model.__dict__["0"] is shared and model.__dict__["2"] is shared
    assert _attributes(model) == before
    with direct_attribute_reads(object()):  # the decoding protocol does not need a module
        pass


def test_decoding_gives_the_same_tokens_and_leaves_the_model_as_it_was():
    model = _lm()
    prompt = torch.tensor([[1, 5, 6], [1, 7, 7]])
    before = _attributes(model)
    with torch.inference_mode():
        expected = torch.cat([prompt, torch.zeros(2, 0, dtype=torch.long)], 1)
        for _ in range(6):  # the plain loop: the whole prefix each step, no cache
            nxt = model(expected)[:, -1].argmax(-1, keepdim=True)
            expected = torch.cat([expected, nxt], 1)
    out = generate.greedy(model, prefix=prompt, max_new_tokens=6)
    assert torch.equal(out, expected)
    beams = generate.beam(model, prefix=prompt, beam_size=3, max_new_tokens=6)
    assert beams.shape[0] == 2
    assert _attributes(model) == before


def test_a_class_attribute_that_shadows_a_child_keeps_shadowing_it():
    class Shadowed(nn.Module):
        head = None  # a class default: plain reads find it before Module.__getattr__

        def __init__(self):
            super().__init__()
            self.head = nn.Linear(2, 2)  # registered in _modules, never read as `self.head`

    model = Shadowed()
    assert model.head is None
    with direct_attribute_reads(model):
        assert model.head is None
    assert model.head is None


@pytest.mark.filterwarnings("ignore:`torch.jit.script` is deprecated:DeprecationWarning")
def test_a_scripted_module_is_left_as_it_is():
    scripted = torch.jit.script(nn.Sequential(nn.Linear(2, 2), nn.ReLU()))
    before = dict(scripted.__dict__)
    with direct_attribute_reads(scripted):
        assert set(scripted.__dict__) == set(before)
        assert scripted(torch.ones(1, 2)).shape == (1, 2)
    assert set(scripted.__dict__) == set(before)
