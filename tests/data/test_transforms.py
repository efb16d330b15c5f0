"""Transforms: statistics from the training split only; augmentation of training batches only."""

import pandas as pd
import pytest
import torch

import nnblocks
from nnblocks.data import TensorData, from_tensors
from nnblocks.data.transforms import (
    Affine,
    AugmentedData,
    Categorify,
    FillMissing,
    Flip,
    Noise,
    Normalize,
    RandomCrop,
    Table,
    fit_apply,
)
from nnblocks.errors import DataError, ShapeError


def test_normalize_uses_training_statistics_only():
    train = torch.randn(200, 3) * torch.tensor([1.0, 5.0, 0.1]) + torch.tensor([0.0, 10.0, -3.0])
    test = torch.randn(50, 3) * 7 + 100  # very different: must not move the statistics
    out = fit_apply(Normalize(), {"train": train, "test": test})
    assert torch.allclose(out["train"].mean(0), torch.zeros(3), atol=1e-5)
    assert torch.allclose(out["train"].std(0, unbiased=False), torch.ones(3), atol=1e-4)
    both = torch.cat([train, test])
    expected = (test - train.mean(0)) / train.std(0, unbiased=False)
    assert torch.allclose(out["test"], expected, atol=1e-4)
    assert not torch.allclose(out["test"], (test - both.mean(0)) / both.std(0), atol=1e-2)


def test_normalize_images_per_channel_and_constant_features():
    x = torch.rand(10, 3, 4, 4)
    x[:, 2] = 5.0  # constant channel: centred, not divided by zero
    norm = Normalize().fit(x)
    assert norm.mean.shape == (3, 1, 1)
    y = norm(x)
    assert torch.isfinite(y).all() and torch.allclose(y[:, 2], torch.zeros(10, 4, 4))
    assert torch.allclose(norm.inverse(y), x, atol=1e-5)


def test_normalize_errors():
    with pytest.raises(DataError, match="not fitted"):
        Normalize()(torch.zeros(2, 2))
    with pytest.raises(DataError, match="float tensor"):
        Normalize().fit(torch.zeros(3, 2, dtype=torch.long))
    norm = Normalize().fit(torch.randn(5, 3))
    with pytest.raises(DataError, match=r"fitted on rows of shape \(3,\)"):
        norm(torch.zeros(2, 4))


def test_source_normalisation_statistics_come_from_train_rows():
    x = torch.randn(100, 2)
    x[:20] += 50.0  # rows that will be valid/test if the split puts them there
    bundle = from_tensors(
        x, torch.arange(100) % 2, split={"name": "indices", "valid": list(range(20))}
    )
    norm = bundle.transforms["x"]
    assert torch.allclose(norm.mean, x[20:].mean(0), atol=1e-5)
    assert torch.allclose(bundle.train.tensors[0].mean(0), torch.zeros(2), atol=1e-5)
    assert bundle.valid.tensors[0].mean() > 10  # valid keeps its offset: not re-centred on itself


def test_fill_missing_uses_training_medians_and_adds_indicators():
    train = pd.DataFrame({"a": [1.0, None, 3.0, 5.0], "c": ["x", None, "y", "x"]})
    valid = pd.DataFrame({"a": [None, 100.0], "c": [None, "z"]})
    fill = FillMissing()
    out = fit_apply(
        fill, {"train": Table(train, ["c"], ["a"]), "valid": Table(valid, ["c"], ["a"])}
    )
    assert out["valid"].df["a"].tolist() == [3.0, 100.0]  # train median, not valid's
    assert out["valid"].df["a_na"].tolist() == [1.0, 0.0]
    assert out["valid"].cont_names == ["a", "a_na"]
    assert out["train"].df["c"].tolist()[1] == "#na#"


def test_fill_missing_errors():
    with pytest.raises(DataError, match="strategy"):
        FillMissing(strategy="mode")
    with pytest.raises(DataError, match="no value in the training split"):
        FillMissing().fit(Table(pd.DataFrame({"a": [None, None]}), [], ["a"]))


def test_categorify_unknown_bucket_and_min_freq():
    train = Table(pd.DataFrame({"c": ["a", "b", "a", "rare"]}), ["c"], [])
    cat = Categorify(min_freq=2).fit(train)
    assert cat.categories == {"c": ["a"]} and cat.cardinalities == [2]
    cat = Categorify().fit(train)
    codes = cat(Table(pd.DataFrame({"c": ["b", "never", "a"]}), ["c"], [])).df["c"].tolist()
    assert codes == [2, 0, 1]  # unseen -> 0, the unknown bucket
    assert cat.to_dict()["state"]["categories"]["c"] == ["a", "b", "rare"]


def test_augmentations_keep_shape_dtype_and_change_values():
    x = torch.rand(16, 3, 8, 8, dtype=torch.float64)
    for t in (RandomCrop(2), Flip(p=1.0), Affine(degrees=20, translate=0.2), Noise(0.1)):
        y = t(x)
        assert y.shape == x.shape and y.dtype == x.dtype
        assert not torch.equal(y, x), t


def test_random_crop_is_a_shift_of_each_image():
    x = torch.arange(64.0).view(1, 1, 8, 8).repeat(32, 1, 1, 1)
    y = RandomCrop(padding=1, mode="constant")(x)
    # every crop is the image shifted by at most one pixel, zeros entering at the border
    inner = y[:, 0, 1:-1, 1:-1]
    diffs = (inner - x[:, 0, 1:-1, 1:-1]).flatten(1)
    allowed = {0.0, 1.0, -1.0, 8.0, -8.0, 9.0, -9.0, 7.0, -7.0}
    assert all(set(d.unique().tolist()) <= allowed and len(d.unique()) == 1 for d in diffs)
    assert len({tuple(d.unique().tolist()) for d in diffs}) > 1  # offsets differ per image


def test_flip_probability_and_affine_identity():
    x = torch.rand(400, 1, 2, 2)
    flipped = (Flip(p=0.5)(x) != x).flatten(1).any(1).float().mean()
    assert 0.35 < float(flipped) < 0.65
    same = Affine(degrees=0, translate=0, scale=(1, 1))(x)
    assert torch.allclose(same, x, atol=1e-5)


def test_augmentation_checks_input():
    with pytest.raises(ShapeError, match=r"\[B, C, H, W\]"):
        RandomCrop()(torch.rand(3, 8, 8))
    with pytest.raises(DataError, match="p"):
        Flip(p=2.0)


def test_augmented_data_changes_batches_but_not_stored_tensors():
    x = torch.rand(10, 1, 4, 4)
    data = AugmentedData(x.clone(), torch.arange(10), augment=[Noise(0.5)])
    a, b = data[torch.arange(10)][0], data[torch.arange(10)][0]
    assert not torch.equal(a, b)  # fresh noise each batch
    assert torch.equal(data.tensors[0], x)  # stored data untouched
    assert data[3][0].shape == (1, 4, 4)  # single items too
    assert torch.equal(data.plain()[torch.arange(10)][0], x)
    assert isinstance(data.subset([1, 2]), AugmentedData)


def test_augmented_data_refuses_preprocessing():
    with pytest.raises(DataError, match="preprocessing"):
        AugmentedData(torch.rand(2, 1, 2, 2), augment=[Normalize()])
    with pytest.raises(DataError, match="augmentation"):
        fit_apply(Noise(), {"train": torch.zeros(2, 2)})


def test_augmentation_applies_to_the_training_split_only():
    x = torch.rand(60, 1, 8, 8)
    bundle = from_tensors(
        x,
        torch.arange(60) % 3,
        split={"name": "random", "valid": 0.2, "test": 0.2},
        normalize=None,
        augment=["noise"],
    )
    assert isinstance(bundle.train, AugmentedData)
    assert type(bundle.valid) is TensorData and type(bundle.test) is TensorData
    idx = torch.arange(len(bundle.valid))
    assert torch.equal(bundle.valid[idx][0], bundle.valid[idx][0])  # no randomness outside train
    train_idx = torch.arange(len(bundle.train))
    assert not torch.equal(bundle.train[train_idx][0], bundle.train.tensors[0])


def test_transforms_registered():
    assert set(nnblocks.list_parts("transform")) >= {
        "normalize",
        "fill_missing",
        "categorify",
        "random_crop",
        "flip",
        "affine",
        "noise",
    }
    crop = nnblocks.build({"name": "random_crop", "padding": 1}, "transform")
    assert isinstance(crop, RandomCrop) and crop.padding == 1 and crop.augmentation


def test_wrong_inputs_are_described_alike():
    with pytest.raises(DataError, match=r"Received: torch.int64 tensor of shape \(3, 2\)"):
        Normalize().fit(torch.zeros(3, 2, dtype=torch.long))
    with pytest.raises(ShapeError, match=r"Received: torch.float32 tensor of shape \(2, 3\)"):
        Flip()(torch.zeros(2, 3))
    with pytest.raises(ShapeError, match="Received: list"):
        Noise(0.1)([1.0])


def test_augmented_subset_and_plain_keep_options():
    x, y = torch.randn(6, 1, 2, 2), torch.arange(6)
    data = AugmentedData(x, y, augment=[Noise(0.1)], names=["img", "y"], trim={1: 0})
    part = data.subset([4, 1])
    assert isinstance(part, AugmentedData) and part.augment == data.augment
    assert (part.names, part.trim, part.n_inputs) == (["img", "y"], {1: 0}, 1)
    assert torch.equal(part.tensors[1], torch.tensor([4, 1]))
    plain = data.plain()
    assert type(plain) is TensorData and plain.names == ["img", "y"] and plain.trim == {1: 0}
