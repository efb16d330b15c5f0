"""Model `cnn`: ResNet-style stages, norm and activation slots, specs and bad input."""

import json
from pathlib import Path

import pytest
import torch
import yaml
from torch import nn

import nnblocks
from nnblocks.errors import ShapeError, SpecError


def assert_close(actual, expected, rtol=1e-5, atol=1e-6):
    # torch.testing.assert_close costs a second of imports on first use; this is the same check.
    assert actual.shape == expected.shape, (actual.shape, expected.shape)
    assert torch.allclose(actual, expected, rtol=rtol, atol=atol), (actual - expected).abs().max()


def make(**options):
    spec = {"name": "cnn", "num_classes": 10, "in_channels": 1, "stages": [[4, 1], [8, 2]]}
    return nnblocks.build({**spec, **options}, "model")


def test_digit_and_cifar_sized_images():
    digits = make()
    assert digits(torch.randn(5, 1, 8, 8)).shape == (5, 10)
    cifar = make(in_channels=3, stages=[[8, 1], [16, 1], [32, 1]], num_classes=7)
    assert cifar(torch.randn(2, 3, 32, 32)).shape == (2, 7)


def test_stages_halve_resolution_and_set_widths():
    model = make(stages=[[4, 1], [8, 2], [16, 1]])
    seen = []
    for stage in model.stages:
        stage[-1].register_forward_hook(lambda m, args, out: seen.append(tuple(out.shape[1:])))
    model(torch.randn(2, 1, 32, 32))
    assert seen == [(4, 32, 32), (8, 16, 16), (16, 8, 8)]
    assert [len(stage) for stage in model.stages] == [1, 2, 1]
    # A shortcut projection exactly where the shape changes (He et al. 2016, option B).
    assert [b.shortcut_conv is not None for stage in model.stages for b in stage] == [
        False, True, False, True,
    ]  # fmt: skip


def test_parameter_count_matches_the_architecture():
    # stem 3x3 1->4 + 2 BN(4); block 4->4: two 3x3 convs + 2 BN; block 4->8 (stride 2): two
    # 3x3 convs + 2 BN + 1x1 shortcut + BN; head 8->10.
    model = make(stages=[[4, 1], [8, 1]])
    bn = lambda c: 2 * c  # noqa: E731  (weight and bias)
    expected = (
        (9 * 1 * 4 + bn(4))
        + (2 * 9 * 4 * 4 + 2 * bn(4))
        + (9 * 4 * 8 + 9 * 8 * 8 + 2 * bn(8) + 4 * 8 + bn(8))
        + (8 * 10 + 10)
    )
    assert sum(p.numel() for p in model.parameters()) == expected


def test_default_norm_is_batch_norm_over_channels():
    model = make()
    norms = [m for m in model.modules() if nnblocks.kind_of(m) == "norm"]
    assert len(norms) == 1 + 2 + 2 * 2 + 1  # stem, block 1, two blocks of stage 2, shortcut
    assert all(nnblocks.spec_of(m)["name"] == "batch" for m in norms)
    assert all(nnblocks.spec_of(m)["channels_first"] is True for m in norms)
    stats = [b.clone() for n, b in model.named_buffers() if n.endswith("running_mean")]
    assert stats, "BatchNorm keeps running statistics"
    x = torch.randn(6, 1, 8, 8) * 3 + 2
    model.eval()
    model(x)
    after_eval = [b for n, b in model.named_buffers() if n.endswith("running_mean")]
    assert all(torch.equal(a, b) for a, b in zip(stats, after_eval))
    model.train()
    model(x)
    after_train = [b for n, b in model.named_buffers() if n.endswith("running_mean")]
    assert not torch.equal(stats[0], after_train[0])


class LastAxisLayerNorm(nn.LayerNorm):
    """A user's norm that follows the plain norm contract: features on the last axis only."""

    inputs: list = []

    def __init__(self, dim):
        super().__init__(dim)

    def forward(self, x):
        LastAxisLayerNorm.inputs.append(tuple(x.shape))
        return super().forward(x)


def test_norm_without_channels_first_gets_channels_last_input():
    LastAxisLayerNorm.inputs.clear()
    custom = make(norm=LastAxisLayerNorm, stages=[[4, 1]]).eval()
    builtin = make(norm="layer", stages=[[4, 1]]).eval()
    assert nnblocks.spec_of(builtin.stem.norm)["channels_first"] is True
    with torch.no_grad():
        for a, b in zip(builtin.state_dict().values(), custom.state_dict().values()):
            assert a.shape == b.shape
            value = a + torch.randn_like(a) * 0.1  # same non-trivial weights in both
            a.copy_(value)
            b.copy_(value)
    x = torch.randn(2, 1, 6, 5)
    assert_close(custom(x), builtin(x))
    assert LastAxisLayerNorm.inputs[0] == (2, 6, 5, 4)  # [B, H, W, C]


def test_no_norm_gives_convolutions_a_bias():
    model = make(norm="none")
    assert not [m for m in model.modules() if nnblocks.kind_of(m) == "norm"]
    convs = [m for m in model.modules() if isinstance(m, nn.Conv2d)]
    assert convs and all(c.bias is not None for c in convs)
    assert all(c.bias is None for c in make().modules() if isinstance(c, nn.Conv2d))
    assert model(torch.randn(2, 1, 8, 8)).shape == (2, 10)


def test_activation_slot_is_swappable_with_one_module_per_call_site():
    model = make(activation={"name": "leaky_relu", "negative_slope": 0.2})
    acts = [m for m in model.modules() if nnblocks.kind_of(m) == "activation"]
    assert len(acts) == 1 + 2 * 3  # stem, two per block
    assert len({id(m) for m in acts}) == len(acts)
    assert all(nnblocks.spec_of(m) == {"name": "leaky_relu", "negative_slope": 0.2} for m in acts)


def test_zero_init_residual_starts_blocks_as_identity():
    model = make(zero_init_residual=True)
    assert all(not b.norm2.weight.any() for stage in model.stages for b in stage)
    assert all(make().stages[0][0].norm2.weight == 1)


def test_gradients_reach_every_parameter_and_eval_is_batch_independent():
    model = make()
    model(torch.randn(4, 1, 8, 8)).logsumexp(-1).sum().backward()
    assert all(p.grad is not None and p.grad.any() for p in model.parameters())
    model.eval()
    x = torch.randn(4, 1, 8, 8)
    with torch.no_grad():
        full = model(x)
        x[1:] = torch.randn(3, 1, 8, 8)
        assert_close(model(x)[0], full[0])


def test_spec_round_trip_rebuilds_the_same_architecture():
    model = make(norm={"name": "rms", "eps": 1e-5}, activation="gelu", dropout=0.1)
    spec = nnblocks.spec_of(model)
    assert json.loads(json.dumps(spec)) == spec
    again = nnblocks.build(spec)
    assert nnblocks.spec_of(again) == spec
    shapes = {k: v.shape for k, v in model.state_dict().items()}
    assert {k: v.shape for k, v in again.state_dict().items()} == shapes


def test_unknown_slot_fails_at_build_naming_it():
    with pytest.raises(SpecError, match=r"unknown argument `nrom` \(did you mean `norm`"):
        make(nrom="batch")


@pytest.mark.parametrize("slot, wrong", [("norm", "relu"), ("activation", "norm/layer")])
def test_wrong_kind_in_a_slot_names_the_slot_path_and_kind(slot, wrong):
    spec = {"name": "cnn", "num_classes": 3, slot: wrong}
    with pytest.raises(SpecError) as info:
        nnblocks.build(spec, "model", at="model")
    assert f"model.stem.{slot}" in str(info.value)
    assert f"{slot}" in str(info.value).replace(f"model.stem.{slot}", "")


@pytest.mark.parametrize("stages", [[], [[4]], [[4, 0]], "64", [[4, 1.5]], [[True, 1]]], ids=str)
def test_bad_stages_fail_at_build(stages):
    with pytest.raises(SpecError, match=r"stages.*\[channels, blocks\]"):
        make(stages=stages)


def test_bad_images_raise_shape_error_naming_the_model_and_shape():
    model = make(in_channels=3)
    with pytest.raises(ShapeError, match=r"cnn.*\[B, 3, H, W\].*\(2, 1, 8, 8\)"):
        model(torch.randn(2, 1, 8, 8))
    with pytest.raises(ShapeError, match=r"cnn.*\(2, 64\)"):
        model(torch.randn(2, 64))
    with pytest.raises(ShapeError, match="torch.int64"):
        model(torch.zeros(2, 3, 8, 8, dtype=torch.long))


@pytest.mark.slow
def test_learns_sklearn_digits():
    datasets = pytest.importorskip("sklearn.datasets")
    digits = datasets.load_digits()
    x = torch.tensor(digits.images, dtype=torch.float32)[:, None] / 16.0  # [N, 1, 8, 8]
    y = torch.tensor(digits.target)
    perm = torch.randperm(len(y))
    train, test = perm[:1400], perm[1400:]
    model = make(stages=[[16, 1], [32, 1]])
    opt = torch.optim.Adam(model.parameters(), lr=3e-3)
    for _ in range(4):
        for idx in train.split(64):
            loss = nn.functional.cross_entropy(model(x[idx]), y[idx])
            opt.zero_grad()
            loss.backward()
            opt.step()
    model.eval()
    with torch.no_grad():
        accuracy = (model(x[test]).argmax(-1) == y[test]).float().mean()
    assert accuracy > 0.9


RECIPE = Path(__file__).resolve().parents[2] / "recipes" / "cnn_digits.yaml"


def test_recipe_model_builds_with_the_datasets_model_args():
    recipe = yaml.safe_load(RECIPE.read_text())
    assert recipe["data"]["name"] == "digits"
    model = nnblocks.build(recipe["model"], "model", at="model", num_classes=10, in_channels=1)
    assert model(torch.randn(2, 1, 8, 8)).shape == (2, 10)


@pytest.mark.slow
def test_recipe_runs_a_batch_of_its_dataset():
    recipe = yaml.safe_load(RECIPE.read_text())
    bundle = nnblocks.build(recipe["data"], "dataset")
    model = nnblocks.build(recipe["model"], "model", **bundle.task.model_args)
    x, y = bundle.train[torch.arange(16)]
    assert torch.isfinite(bundle.task.loss(model(x), y))


def test_save_and_load_keep_weights_and_running_statistics(tmp_path):
    pytest.importorskip("nnblocks.io")
    model = make()
    model(torch.randn(8, 1, 8, 8) * 2 + 1)  # move the running statistics off their start
    model.eval()
    nnblocks.save(model, tmp_path / "cnn")
    loaded = nnblocks.load(tmp_path / "cnn")
    x = torch.randn(3, 1, 8, 8)
    with torch.no_grad():
        assert torch.equal(loaded(x), model(x))
