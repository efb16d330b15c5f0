"""Local Hugging Face datasets: saved folders and data files, memory-mapped, column-mapped."""

import numpy as np
import pytest
import yaml

import nnblocks
from nnblocks.data.paths import data_root
from nnblocks.data.sources.hf import ArrowData, from_hf
from nnblocks.errors import DataError
from nnblocks.experiment.recipe import load_recipe
from nnblocks.experiment.run import run_recipe
from nnblocks.train.loaders import TensorLoader

datasets = pytest.importorskip("datasets")


@pytest.fixture(autouse=True)
def _offline(monkeypatch):
    monkeypatch.setenv("HF_DATASETS_OFFLINE", "1")


def _table(n=40, seed=0):
    rng = np.random.default_rng(seed)
    return {
        "a": rng.normal(size=n).tolist(),
        "b": rng.normal(size=n).tolist(),
        "label": ["cat" if i % 2 else "dog" for i in range(n)],
        "note": [f"row {i}" for i in range(n)],
    }


def test_saved_dataset_dict_is_memory_mapped_and_column_mapped(tmp_path):
    dd = datasets.DatasetDict(
        {
            "train": datasets.Dataset.from_dict(_table(40)),
            "validation": datasets.Dataset.from_dict(_table(10, seed=1)),
        }
    )
    dd.save_to_disk(str(tmp_path / "saved"))
    bundle = from_hf(tmp_path / "saved", inputs=["a", "b"], targets="label")
    assert bundle.sizes() == {"train": 40, "valid": 10}
    assert bundle.task.model_args == {"num_classes": 2, "in_features": 2}
    train = bundle.train
    assert isinstance(train, ArrowData)
    files = [f["filename"] for f in train.dataset.cache_files]
    assert files and all(f.startswith(str(tmp_path / "saved")) for f in files)  # rows stay in Arrow
    x, y = train[np.array([0, 3])]
    table = _table(40)
    assert np.allclose(x.numpy(), [[table["a"][0], table["b"][0]], [table["a"][3], table["b"][3]]])
    assert y.tolist() == [bundle.task.classes.index(table["label"][i]) for i in (0, 3)]


def test_parquet_and_jsonl_files_through_datasets_with_a_split(tmp_path):
    ds = datasets.Dataset.from_dict(_table(50))
    ds.to_parquet(str(tmp_path / "train.parquet"))
    bundle = from_hf(
        tmp_path / "train.parquet", inputs=["a"], targets="b", cache_dir=str(tmp_path / "cache")
    )
    assert bundle.task.name == "regression" and bundle.sizes() == {"train": 40, "valid": 10}
    (tmp_path / "j").mkdir()
    ds.to_json(str(tmp_path / "j" / "train.jsonl"))
    datasets.Dataset.from_dict(_table(8, seed=2)).to_json(str(tmp_path / "j" / "test.jsonl"))
    bundle = from_hf(
        tmp_path / "j", inputs=["a", "b"], targets="label", cache_dir=str(tmp_path / "c")
    )
    assert bundle.sizes()["test"] == 8
    loader = TensorLoader(bundle.train, 16, shuffle=True, seed=0)  # the Learner's index path
    xb, yb = next(iter(loader))
    assert xb.shape == (16, 2) and yb.shape == (16,)


def test_hf_recipe_trains(tmp_path):
    datasets.Dataset.from_dict(_table(40)).save_to_disk(str(tmp_path / "data"))
    recipe = {
        "seed": 0,
        "data": {"name": "hf", "path": "data", "inputs": ["a", "b"], "targets": "label"},
        "model": {"name": "mlp", "hidden": [8]},
        "train": {"epochs": 1, "batch_size": 8, "lr": 0.01, "threads": 1, "checkpoint": False},
    }
    (tmp_path / "r.yaml").write_text(yaml.safe_dump(recipe))
    result = run_recipe(load_recipe(tmp_path / "r.yaml"), None, progress=False, root=tmp_path)
    assert result.metrics["epochs_run"] == 1 and np.isfinite(result.metrics["train_loss"])


def test_bad_columns_and_splits_are_named(tmp_path):
    dd = datasets.DatasetDict(
        {
            "train": datasets.Dataset.from_dict(_table(20)),
            "test": datasets.Dataset.from_dict({**_table(4), "label": ["bird"] * 4}),
        }
    )
    dd.save_to_disk(str(tmp_path / "saved"))
    with pytest.raises(DataError, match=r"column\(s\) \['c'\] not found in the `train` split"):
        from_hf(tmp_path / "saved", inputs=["a", "c"], targets="label")
    with pytest.raises(DataError, match="input column `note` must be numeric"):
        from_hf(tmp_path / "saved", inputs=["note"], targets="label")
    with pytest.raises(DataError, match="`test` split has label 'bird'"):
        from_hf(tmp_path / "saved", inputs=["a"], targets="label")
    with pytest.raises(DataError, match=r"no split\(s\) \['dev'\]"):
        from_hf(
            tmp_path / "saved",
            inputs=["a"],
            targets="label",
            splits={"train": "train", "valid": "dev"},
        )
    with data_root(tmp_path), pytest.raises(DataError, match="`path`: `missing` not found"):
        nnblocks.build({"name": "hf", "path": "missing", "inputs": "a", "targets": "b"}, "dataset")
