"""watch_numerics names the first module where a NaN or Inf appeared, forward and backward."""

import random

import pytest
import torch
from torch import nn

from nnblocks.check import watch_numerics
from nnblocks.errors import NNBlocksError, NumericsError


def transformer() -> nn.Module:
    layer = nn.TransformerEncoderLayer(16, 2, 32, dropout=0.0, batch_first=True)
    return nn.Sequential(
        nn.Linear(8, 16),
        nn.TransformerEncoder(layer, 2, enable_nested_tensor=False),
        nn.Linear(16, 4),
    )


def running_modules(model: nn.Module, x: torch.Tensor) -> list[str]:
    """Names of the modules a forward pass actually calls (MultiheadAttention uses its
    out_proj's weights without calling it; a ModuleList is never called)."""
    called, handles = set(), []
    for name, module in model.named_modules():
        if name:
            handles.append(module.register_forward_hook(lambda m, a, o, n=name: called.add(n)))
    model(x)
    for h in handles:
        h.remove()
    return sorted(called)


def poison(value: float):
    def hook(module, args, out):
        if isinstance(out, tuple):
            return (poison(value)(module, args, out[0]),) + out[1:]
        spot = torch.zeros(out.numel(), dtype=torch.bool)
        spot[random.randrange(out.numel())] = True
        return torch.where(spot.view(out.shape), torch.full_like(out, value), out)

    return hook


def step(model: nn.Module, x: torch.Tensor) -> None:
    model.zero_grad(set_to_none=True)
    model(x).square().mean().backward()


def test_forward_nan_or_inf_names_the_planted_module():
    model, x = transformer(), torch.randn(2, 5, 8)
    names = running_modules(model, x)
    assert len(names) > 15
    for name in names:  # every module that runs, each with NaN or Inf at a random place
        value = random.choice([float("nan"), float("inf"), float("-inf")])
        handle = model.get_submodule(name).register_forward_hook(poison(value))
        try:
            with pytest.raises(NumericsError) as info, watch_numerics(model):
                step(model, x)
        finally:
            handle.remove()
        assert info.value.module_path == name
        assert info.value.phase == "forward"
        assert "input 0: [" in str(info.value)  # the module's input statistics


def test_backward_nan_names_the_planted_module():
    model, x = transformer(), torch.randn(2, 5, 8)
    names = [n for n in running_modules(model, x) if n != "0"]  # "0" gets no input gradient

    def poison_grad(module, grad_input, grad_output):
        return tuple(None if g is None else g * float("nan") for g in grad_input)

    for name in random.sample(names, 10):
        handle = model.get_submodule(name).register_full_backward_hook(poison_grad)
        try:
            with pytest.raises(NumericsError) as info, watch_numerics(model):
                step(model, x)
        finally:
            handle.remove()
        assert (info.value.module_path, info.value.phase) == (name, "backward")


def test_a_non_finite_parameter_gradient_names_its_module():
    model, x = transformer(), torch.randn(2, 5, 8)
    params = [(n, p) for n, p in model.named_parameters()]
    for pname, p in random.sample(params, 5):
        handle = p.register_hook(lambda g: g * float("inf"))
        try:
            with pytest.raises(NumericsError) as info, watch_numerics(model):
                step(model, x)
        finally:
            handle.remove()
        assert info.value.module_path == pname.rsplit(".", 1)[0]
        assert pname in str(info.value)


class OwnCode(nn.Module):
    """NaN made by this module's own code, between its two submodules."""

    def __init__(self, backward_only: bool = False):
        super().__init__()
        self.a, self.b = nn.Linear(4, 4), nn.Linear(4, 4)
        self.backward_only = backward_only

    def forward(self, x):
        h = torch.relu(self.a(x))
        if self.backward_only:
            h = torch.sqrt(h * 0.0)  # forward: zeros; backward: inf * 0 = NaN
        else:
            h = h / 0.0 * 0.0  # 0/0 = NaN
        return self.b(h)


def test_nan_made_by_a_modules_own_code_names_that_module_not_its_child():
    model = nn.Sequential(nn.Linear(4, 4), OwnCode())
    with pytest.raises(NumericsError) as info, watch_numerics(model):
        model(torch.randn(3, 4))
    assert (info.value.module_path, info.value.phase) == ("1", "forward")
    assert "own code" in str(info.value)

    model = nn.Sequential(nn.Linear(4, 4), OwnCode(backward_only=True))
    with pytest.raises(NumericsError) as info, watch_numerics(model):
        model(torch.randn(8, 4)).sum().backward()
    assert (info.value.module_path, info.value.phase) == ("1", "backward")
    assert "passes back to `1.a` (its own code)" in str(info.value)


def test_bad_input_and_bad_loss_are_blamed_on_what_is_outside_the_model():
    model = transformer()
    x = torch.randn(2, 5, 8)
    x[0, 1, 2] = float("nan")
    with pytest.raises(NumericsError) as info, watch_numerics(model):
        model(x)
    assert info.value.module_path == "Sequential"  # the root, by its class name
    assert "already non-finite" in str(info.value)

    with pytest.raises(NumericsError) as info, watch_numerics(model):
        (model(torch.randn(2, 5, 8)) * float("nan")).sum().backward()
    assert (info.value.module_path, info.value.phase) == ("Sequential", "backward")
    assert "loss" in str(info.value)


def test_quiet_when_finite_and_gone_after_the_block():
    model, x = transformer(), torch.randn(2, 5, 8)
    with watch_numerics(model):
        step(model, x)
        with torch.no_grad():
            model.eval()(x)
        model.train()
    assert all(not m._forward_hooks and not m._forward_pre_hooks for m in model.modules())
    handle = model[2].register_forward_hook(poison(float("nan")))
    step(model, x)  # no watch: no error
    handle.remove()


def test_inference_without_autograd_is_watched():
    model = nn.Sequential(nn.Linear(4, 4), nn.Linear(4, 4))
    handle = model[1].register_forward_hook(poison(float("inf")))
    with pytest.raises(NumericsError) as info, watch_numerics(model), torch.no_grad():
        model(torch.randn(2, 4))
    handle.remove()
    assert info.value.module_path == "1" and isinstance(info.value, NNBlocksError)


def test_a_crash_after_a_nan_gets_a_note_naming_the_module():
    class Crashes(nn.Module):
        def __init__(self):
            super().__init__()
            self.a = nn.Linear(4, 4)

        def forward(self, x):
            probs = torch.softmax(self.a(x), -1)
            return torch.multinomial(probs, 1)  # raises on NaN probabilities

    model = Crashes()
    model.a.register_forward_hook(poison(float("nan")))
    with pytest.raises(RuntimeError) as info, watch_numerics(model):
        model(torch.randn(2, 4))
    notes = "".join(getattr(info.value, "__notes__", []))
    assert "`a`" in notes


def test_the_parameter_that_went_bad_is_named():
    model = nn.Sequential(nn.Linear(4, 4), nn.Linear(4, 4))
    with torch.no_grad():
        model[1].weight[0, 0] = float("nan")  # as after a bad optimizer step
    with pytest.raises(NumericsError) as info, watch_numerics(model):
        model(torch.randn(2, 4))
    assert info.value.module_path == "1" and "parameter `weight`" in str(info.value)
