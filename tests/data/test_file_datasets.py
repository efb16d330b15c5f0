"""Your own files from recipes: each file source is a registered dataset, paths relative to
the recipe, checked before training; each trains one epoch from a recipe run."""

import inspect
import json

import numpy as np
import pytest
import torch
import yaml

import nnblocks
from nnblocks.data.datasets import files
from nnblocks.data.paths import data_root
from nnblocks.data.sources import from_csv, from_image_folder, from_parallel_text, from_text_files
from nnblocks.data.sources.arrays import from_tensor_file
from nnblocks.data.sources.records import read_columns
from nnblocks.data.sources.text import from_text_table
from nnblocks.errors import DataError, SpecError
from nnblocks.experiment.recipe import load_recipe
from nnblocks.experiment.run import check_recipe, run_recipe

TRAIN = {"epochs": 1, "batch_size": 8, "lr": 0.01, "threads": 1, "checkpoint": False}


def _recipe(folder, data, model):
    path = folder / "recipe.yaml"
    path.write_text(yaml.safe_dump({"seed": 0, "data": data, "model": model, "train": TRAIN}))
    return path


def _run(path):
    result = run_recipe(load_recipe(path), None, progress=False, root=path.parent)
    assert result.metrics["epochs_run"] == 1
    assert np.isfinite(result.metrics["train_loss"])
    return result


def _write_csv(path, n=40):
    rng = np.random.default_rng(0)
    rows = ["a,b,colour,y"] + [
        f"{rng.normal():.3f},{rng.normal():.3f},{['red', 'blue'][i % 2]},{i % 2}" for i in range(n)
    ]
    path.write_text("\n".join(rows) + "\n")


@pytest.mark.parametrize(
    ("name", "fn", "forwards"),
    [
        ("csv", from_csv, "from_dataframe"),
        ("image_folder", from_image_folder, None),
        ("text_files", from_text_files, "from_documents"),
        ("texts", from_text_table, "from_texts"),
        ("pairs", from_parallel_text, "from_pairs"),
        ("tensors", from_tensor_file, "from_tensors"),
    ],
)
def test_registered_part_takes_the_options_of_its_function(name, fn, forwards):
    part = nnblocks.get_part("dataset", name)
    accepted = set(inspect.signature(part).parameters)
    own = {p.name for p in inspect.signature(fn).parameters.values() if p.kind is not p.VAR_KEYWORD}
    assert own <= accepted
    if forwards:
        below = getattr(nnblocks.data, forwards)
        forwarded = {
            p.name for p in inspect.signature(below).parameters.values() if p.kind is p.KEYWORD_ONLY
        } - {"where", "info", "names"}
        assert forwarded <= accepted
    assert "allow_outside" in accepted


def test_unknown_option_of_a_file_dataset_names_it(tmp_path):
    _write_csv(tmp_path / "t.csv")
    with (
        data_root(tmp_path),
        pytest.raises(SpecError, match="`cat_name`.*did you mean `cat_names`"),
    ):
        nnblocks.build(
            {"name": "csv", "path": "t.csv", "target": "y", "cat_name": ["c"]}, "dataset"
        )


def test_csv_recipe_trains_with_a_path_relative_to_the_recipe(tmp_path, monkeypatch):
    (tmp_path / "data").mkdir()
    _write_csv(tmp_path / "data" / "table.csv")
    path = _recipe(
        tmp_path,
        {"name": "csv", "path": "data/table.csv", "target": "y"},
        {"name": "mlp", "hidden": [8]},
    )
    monkeypatch.chdir("/")  # the working folder must not matter
    result = _run(path)
    assert result.data.task.model_args["categories"] == [3]  # 2 colours + unknown bucket


def test_tensors_recipe_safetensors_and_npy(tmp_path):
    from safetensors.torch import save_file

    x, y = torch.randn(40, 3), torch.arange(40) % 2
    save_file({"features": x, "label": y}, tmp_path / "t.safetensors")
    path = _recipe(
        tmp_path,
        {"name": "tensors", "path": "t.safetensors", "x": "features", "y": "label"},
        {"name": "mlp", "hidden": [8]},
    )
    assert _run(path).data.task.model_args == {"num_classes": 2, "in_features": 3}
    np.save(tmp_path / "x.npy", x.numpy())
    np.save(tmp_path / "y.npy", y.numpy())
    with data_root(tmp_path):
        bundle = nnblocks.build(
            {"name": "tensors", "path": "x.npy", "targets": "y.npy", "task": "classification"},
            "dataset",
        )
    assert sum(bundle.sizes().values()) == 40
    with data_root(tmp_path), pytest.raises(DataError, match=r"no tensor named \['inputs', 'y'\]"):
        nnblocks.build({"name": "tensors", "path": "t.safetensors", "x": "inputs"}, "dataset")


def test_image_folder_recipe(tmp_path):
    from PIL import Image

    rng = np.random.default_rng(0)
    for c in ("cat", "dog"):
        (tmp_path / "images" / c).mkdir(parents=True)
        for i in range(8):
            pixels = rng.integers(0, 255, (6, 6, 3), dtype=np.uint8)
            Image.fromarray(pixels).save(tmp_path / "images" / c / f"{i}.png")
    path = _recipe(
        tmp_path,
        {"name": "image_folder", "root": "images", "size": 8},
        {"name": "cnn", "stages": [[4, 1]]},
    )
    result = _run(path)
    assert result.data.task.model_args["num_classes"] == 2


def test_text_files_recipe(tmp_path):
    (tmp_path / "corpus").mkdir()
    for i in range(3):
        (tmp_path / "corpus" / f"{i}.txt").write_text("def f(x):\n    return x + 1\n" * 20)
    path = _recipe(
        tmp_path,
        {"name": "text_files", "paths": "corpus", "block_size": 16},
        {"name": "transformer_lm", "dim": 16, "heads": 2, "layers": 1},
    )
    assert _run(path).data.task.name == "lm"


def test_texts_recipe_from_jsonl_and_csv(tmp_path):
    rows = [
        {"review": f"good film {i}" if i % 2 else f"bad film {i}", "stars": i % 2}
        for i in range(30)
    ]
    (tmp_path / "r.jsonl").write_text("\n".join(json.dumps(r) for r in rows))
    path = _recipe(
        tmp_path,
        {"name": "texts", "path": "r.jsonl", "text": "review", "label": "stars"},
        {"name": "transformer_classifier", "dim": 16, "heads": 2, "layers": 1},
    )
    assert _run(path).data.task.model_args["num_classes"] == 2
    (tmp_path / "r.csv").write_text("text,label\n" + "\n".join(f"w{i},{i % 3}" for i in range(30)))
    assert from_text_table(tmp_path / "r.csv").task.model_args["num_classes"] == 3


def test_pairs_recipe_from_tsv(tmp_path):
    lines = ["source\ttarget"] + [f'say "{i}"\tsag {i}' for i in range(40)]
    (tmp_path / "p.tsv").write_text("\n".join(lines) + "\n")
    path = _recipe(
        tmp_path,
        {"name": "pairs", "src": "p.tsv"},
        {
            "name": "transformer_seq2seq",
            "dim": 16,
            "heads": 2,
            "encoder_layers": 1,
            "decoder_layers": 1,
        },
    )
    result = _run(path)
    assert result.data.task.name == "seq2seq"
    assert sum(result.data.sizes().values()) == 40
    table = read_columns(tmp_path / "p.tsv", ["source", "target"])
    assert table["source"][0] == 'say "0"'  # TSV fields are literal: quotes are text


# --- bad input: a clear error naming the file, column or key, before training ---


def test_path_outside_the_recipe_folder_is_refused(tmp_path):
    outside = tmp_path / "elsewhere"
    outside.mkdir()
    _write_csv(outside / "t.csv")
    project = tmp_path / "project"
    project.mkdir()
    path = _recipe(project, {"name": "csv", "path": "../elsewhere/t.csv", "target": "y"}, "mlp")
    with pytest.raises(DataError, match=r"`data.path`.*leads outside the recipe's folder"):
        check_recipe(load_recipe(path), root=project)
    absolute = _recipe(
        project, {"name": "csv", "path": str(outside / "t.csv"), "target": "y"}, "mlp"
    )
    with pytest.raises(DataError, match="outside the recipe's folder"):
        check_recipe(load_recipe(absolute), root=project)
    (project / "link.csv").symlink_to(outside / "t.csv")
    linked = _recipe(project, {"name": "csv", "path": "link.csv", "target": "y"}, "mlp")
    with pytest.raises(DataError, match="outside the recipe's folder"):
        check_recipe(load_recipe(linked), root=project)
    allowed = _recipe(
        project,
        {"name": "csv", "path": "../elsewhere/t.csv", "target": "y", "allow_outside": True},
        {"name": "mlp", "hidden": [4]},
    )
    assert check_recipe(load_recipe(allowed), root=project).data.task.name == "classification"


def test_missing_file_names_the_key_and_the_folder(tmp_path):
    path = _recipe(tmp_path, {"name": "csv", "path": "nope.csv", "target": "y"}, "mlp")
    with pytest.raises(DataError, match=r"`data.path`: `nope.csv` not found \(relative to"):
        check_recipe(load_recipe(path), root=tmp_path)
    path = _recipe(tmp_path, {"name": "image_folder", "root": "recipe.yaml"}, "cnn")
    with pytest.raises(DataError, match="`data.root`: expected a folder"):
        check_recipe(load_recipe(path), root=tmp_path)


def test_missing_column_and_wrong_type_name_the_file_and_column(tmp_path):
    (tmp_path / "r.jsonl").write_text('{"text": "a", "label": 1}\n{"text": 5, "label": 0}\n')
    with pytest.raises(DataError, match=r"r.jsonl`: column `text` must hold text; row 2 holds 5"):
        from_text_table(tmp_path / "r.jsonl")
    with pytest.raises(
        DataError, match=r"column\(s\) \['stars'\] not found. Columns: \['text', 'label'\]"
    ):
        from_text_table(tmp_path / "r.jsonl", label="stars")
    _write_csv(tmp_path / "t.csv")
    with pytest.raises(DataError, match=r"t.csv`: target column\(s\) \['price'\] not found"):
        from_csv(tmp_path / "t.csv", "price")
    with pytest.raises(DataError, match="regression target column `colour` must be numeric"):
        from_csv(tmp_path / "t.csv", "colour", task="regression")


def test_empty_split_and_empty_file_are_named(tmp_path):
    (tmp_path / "p.jsonl").write_text("")
    with pytest.raises(DataError, match="p.jsonl`: column"):
        from_parallel_text(tmp_path / "p.jsonl")
    (tmp_path / "q.tsv").write_text("source\ttarget\n")
    with pytest.raises(DataError, match="q.tsv`: the file has no rows"):
        from_parallel_text(tmp_path / "q.tsv")
    _write_csv(tmp_path / "t.csv", n=6)
    with pytest.raises(DataError, match=r"t.csv`.split`: the `train` split is empty"):
        from_csv(tmp_path / "t.csv", "y", split={"name": "indices", "valid": list(range(6))})


def test_pickled_npy_is_not_loaded(tmp_path):
    np.save(tmp_path / "x.npy", np.array([{"a": 1}], dtype=object), allow_pickle=True)
    np.save(tmp_path / "y.npy", np.array([0]))
    with pytest.raises(DataError, match="pickled"):
        from_tensor_file(tmp_path / "x.npy", targets=tmp_path / "y.npy")


def test_file_parts_are_listed():
    names = set(nnblocks.list_parts("dataset"))
    assert {"csv", "image_folder", "text_files", "texts", "pairs", "tensors"} <= names
    assert files.csv.__name__ == "csv"


def _image_folder(root, n=8, size=6):
    from PIL import Image

    rng = np.random.default_rng(0)
    for c in ("cat", "dog"):
        (root / c).mkdir(parents=True)
        for i in range(n):
            pixels = rng.integers(0, 255, (size, size, 3), dtype=np.uint8)
            Image.fromarray(pixels).save(root / c / f"{i}.png")
    return root


def test_image_folder_from_files_matches_memory_and_augments_train_only(tmp_path):
    from nnblocks.data.sources.images import ImageFiles

    root = _image_folder(tmp_path / "images")
    memory = from_image_folder(root, size=8, decode="memory")
    files = from_image_folder(root, size=8, decode="files")
    assert isinstance(files.train, ImageFiles) and files.sizes() == memory.sizes()
    assert files.task.model_args == memory.task.model_args
    auto = from_image_folder(root, size=8, memory_limit_mb=0.001)  # too big for the limit
    assert isinstance(auto.train, ImageFiles) and auto.info["decode"] == "files"
    # the same split and normalisation (statistics of the same training images): same tensors
    for i in range(len(files.valid)):
        x, y = files.valid[i]
        assert torch.allclose(x, memory.valid.tensors[0][i], atol=1e-5)
        assert int(y) == int(memory.valid.tensors[1][i])
    flipped = from_image_folder(root, size=8, decode="files", augment=[{"name": "flip", "p": 1.0}])
    assert torch.allclose(flipped.train[0][0], files.train[0][0].flip(-1), atol=1e-6)
    assert torch.allclose(flipped.valid[0][0], files.valid[0][0])  # never augmented


def test_image_folder_from_files_trains_in_worker_processes(tmp_path):
    from nnblocks.train.loaders import DatasetLoader, make_loader

    _image_folder(tmp_path / "images")
    path = _recipe(
        tmp_path,
        {"name": "image_folder", "root": "images", "size": 8, "decode": "files"},
        {"name": "cnn", "stages": [[4, 1]]},
    )
    result = _run(path)
    loader = make_loader(result.data.train, 4, shuffle=True, num_workers=1)
    assert isinstance(loader, DatasetLoader) and loader.loader.num_workers == 1
    xb, yb = next(iter(loader))
    assert xb.shape == (4, 3, 8, 8) and yb.shape == (4,)
