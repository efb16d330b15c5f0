"""Sources: tensors, numpy, DataFrames, CSV, image folders, text files, parallel text — and bad input."""

import numpy as np
import pandas as pd
import pytest
import torch

from nnblocks.data import (
    AugmentedData,
    TensorData,
    from_csv,
    from_dataframe,
    from_documents,
    from_image_folder,
    from_numpy,
    from_pairs,
    from_parallel_text,
    from_tensors,
    from_text_files,
    from_texts,
)
from nnblocks.errors import DataError


# -- tensors and numpy -----------------------------------------------------------------------
def test_from_tensors_classification_model_args():
    bundle = from_tensors(torch.randn(50, 4), torch.arange(50) % 5)
    assert bundle.task.model_args == {"num_classes": 5, "in_features": 4}
    assert bundle.sizes() == {"train": 40, "valid": 10}
    assert isinstance(bundle.train, TensorData) and bundle.train.n_inputs == 1


def test_from_tensors_images_and_regression_with_several_targets():
    bundle = from_tensors(torch.rand(30, 3, 8, 8), torch.arange(30) % 3)
    assert bundle.task.model_args == {"num_classes": 3, "in_channels": 3}
    assert bundle.task.input_kind == "image"
    reg = from_tensors(
        torch.randn(40, 2), torch.randn(40, 3), task="regression", target_names=["a", "b", "c"]
    )
    assert reg.task.model_args["out_features"] == 3 and reg.train.tensors[1].shape[1] == 3


def test_from_tensors_label_never_seen_in_training():
    y = torch.zeros(20, dtype=torch.long)
    y[3] = 7  # one item of class 7, put into validation
    with pytest.raises(
        DataError, match="`valid` split has 1 item.*label 7.*never occurs in the training split"
    ):
        from_tensors(torch.randn(20, 2), y, split={"name": "indices", "valid": [3, 4]})


def test_from_tensors_length_mismatch():
    with pytest.raises(DataError, match="10 rows but `y` has 9"):
        from_tensors(torch.randn(10, 2), torch.zeros(9))


def test_from_numpy_converts_float64_and_multilabel():
    bundle = from_numpy(
        np.random.rand(40, 3), (np.random.rand(40, 2) > 0.5).astype(float), task="multilabel"
    )
    assert bundle.train.tensors[0].dtype == torch.float32
    assert bundle.task.name == "multilabel" and bundle.task.model_args["num_classes"] == 2
    with pytest.raises(DataError, match="mixed types"):
        from_numpy(np.array([[1, "a"]] * 10, dtype=object), np.zeros(10))


# -- DataFrame and CSV ------------------------------------------------------------------------
def _frame(n=40):
    rng = np.random.default_rng(0)
    return pd.DataFrame(
        {
            "age": rng.integers(20, 70, n).astype(float),
            "city": rng.choice(["paris", "rome", "oslo"], n),
            "income": rng.normal(50, 10, n),
            "label": np.array(["yes", "no"])[np.arange(n) % 2],
        }
    )


def test_dataframe_tensors_codes_and_model_args():
    bundle = from_dataframe(_frame(), "label")
    assert bundle.task.model_args == {"num_classes": 2, "in_features": 2, "categories": [4]}
    x_num, x_cat, y = bundle.train[torch.arange(4)]
    assert x_num.shape == (4, 2) and x_cat.dtype == torch.long and y.dtype == torch.long
    assert bundle.train.n_inputs == 2
    assert bundle.task.classes == ["no", "yes"]
    assert "city=" in bundle.task.decode_example(bundle.train[0])["input"]


def test_dataframe_unknown_category_goes_to_bucket_zero():
    df = _frame()
    df.loc[0, "city"] = "lima"  # only in the validation row 0
    bundle = from_dataframe(df, "label", split={"name": "indices", "valid": [0, 1]})
    assert bundle.valid.tensors[1][0, 0].item() == 0
    assert bool((bundle.train.tensors[1] > 0).all())


def test_dataframe_missing_values_filled_with_train_median():
    df = _frame()
    df.loc[[0, 5], "age"] = np.nan
    df.loc[30:, "age"] = 1000.0  # validation rows: must not shift the fill value
    bundle = from_dataframe(
        df, "label", split={"name": "indices", "valid": list(range(30, 40))}, normalize=None
    )
    train_median = df.loc[:29, "age"].median()
    assert bundle.train.tensors[0][0, 0].item() == pytest.approx(train_median)
    assert bundle.info["cont_names"] == ["age", "income", "age_na"]


def test_dataframe_split_by_column_drops_that_column():
    df = _frame()
    df["fold"] = ["train"] * 30 + ["valid"] * 10
    bundle = from_dataframe(df, "label", split={"name": "column", "column": "fold"})
    assert bundle.sizes() == {"train": 30, "valid": 10}
    assert "fold" not in bundle.info["cont_names"] + bundle.info["cat_names"]


def test_dataframe_regression_infers_task():
    bundle = from_dataframe(_frame().drop(columns="label"), "income")
    assert bundle.task.name == "regression" and bundle.task.model_args["out_features"] == 1


def test_csv_missing_target_column(tmp_path):
    path = tmp_path / "data.csv"
    _frame().to_csv(path, index=False)
    with pytest.raises(
        DataError, match=r"CSV file `.*data.csv`: target column\(s\) \['price'\] not found"
    ):
        from_csv(path, "price")


def test_csv_mixed_types_in_a_column(tmp_path):
    df = _frame()
    df["age"] = df["age"].astype(object)
    df.loc[7, "age"] = "forty"
    path = tmp_path / "mixed.csv"
    df.to_csv(path, index=False)
    with pytest.raises(DataError, match="column `age` mixes numbers and text.*'forty'"):
        from_csv(path, "label")
    bundle = from_csv(path, "label", cat_names=["age", "city"])  # declared categorical: accepted
    assert bundle.task.model_args["in_features"] == 1


def test_csv_unseen_label_and_missing_file(tmp_path):
    df = _frame()
    df.loc[39, "label"] = "maybe"
    path = tmp_path / "d.csv"
    df.to_csv(path, index=False)
    with pytest.raises(DataError, match="label 'maybe'"):
        from_csv(path, "label", split={"name": "indices", "valid": [38, 39]})
    with pytest.raises(DataError, match="not found"):
        from_csv(tmp_path / "none.csv", "label")


def test_csv_empty_split_and_missing_targets(tmp_path):
    with pytest.raises(DataError, match="`valid` split is empty"):
        from_dataframe(_frame(4), "label", split={"name": "random", "valid": 0.05})
    df = _frame()
    df.loc[2, "label"] = None
    with pytest.raises(DataError, match=r"target column `label` has missing values \(rows \[2\]\)"):
        from_dataframe(df, "label")


def test_dataframe_multilabel_with_delimiter():
    df = pd.DataFrame({"x": np.arange(30.0), "tags": ["a;b", "b", "a", "c;a", "b;c"] * 6})
    bundle = from_dataframe(df, "tags", label_delim=";")
    assert bundle.task.name == "multilabel" and bundle.task.labels == ["a", "b", "c"]
    assert bundle.train.tensors[-1].shape[1] == 3


# -- image folders ----------------------------------------------------------------------------
def _image_folder(root, corrupt=False):
    from PIL import Image

    rng = np.random.default_rng(0)
    for cls in ("cat", "dog"):
        (root / cls).mkdir(parents=True)
        for i in range(6):
            arr = (rng.random((10, 12, 3)) * 255).astype("uint8")
            Image.fromarray(arr).save(root / cls / f"{i}.png")
    if corrupt:
        (root / "dog" / "broken.png").write_bytes(b"not a png at all")
    return root


def test_image_folder_loads_and_resizes(tmp_path):
    bundle = from_image_folder(
        _image_folder(tmp_path / "imgs"), size=8, split={"name": "stratified", "valid": 0.34}
    )
    x, y = bundle.train[torch.arange(2)]
    assert x.shape == (2, 3, 8, 8) and bundle.task.classes == ["cat", "dog"]
    assert bundle.task.model_args == {"num_classes": 2, "in_channels": 3}
    assert bundle.sizes() == {"train": 8, "valid": 4}


def test_image_folder_skips_a_corrupt_image_with_a_warning(tmp_path):
    root = _image_folder(tmp_path / "imgs", corrupt=True)
    with pytest.warns(UserWarning, match=r"skipping image `.*broken.png`"):
        bundle = from_image_folder(root, size=8, channels=1, augment=["flip"])
    assert sum(bundle.sizes().values()) == 12  # the broken one is left out
    assert isinstance(bundle.train, AugmentedData) and bundle.train.tensors[0].shape[1] == 1


def test_image_folder_errors(tmp_path):
    with pytest.raises(DataError, match="not found"):
        from_image_folder(tmp_path / "missing")
    (tmp_path / "empty").mkdir()
    with pytest.raises(DataError, match="no sub-folders"):
        from_image_folder(tmp_path / "empty")


# -- text for language modelling ------------------------------------------------------------------
def test_documents_windows_are_next_token_pairs():
    text = "hello world, " * 40
    bundle = from_documents([text], block_size=16)
    x, y = bundle.train.tensors
    assert x.shape[1] == 16 and torch.equal(x[:, 1:], y[:, :-1])
    assert torch.equal(x[1:, 0], y[:-1, -1])  # windows continue one another
    assert bundle.task.name == "lm" and bundle.task.model_args["max_len"] == 16
    assert bundle.task.decode_example(bundle.train[0])["input"] == text[:16]


def test_many_documents_split_by_document(tmp_path):
    docs = [f"document number {i} " * 5 for i in range(30)]
    for i, d in enumerate(docs):
        (tmp_path / f"{i:02d}.txt").write_text(d)
    bundle = from_text_files(tmp_path, block_size=8)
    assert set(bundle.sizes()) == {"train", "valid", "test"}
    # a document's unique number never shows up in two splits
    decoded = {
        k: bundle.task.tokenizer.decode(v.tensors[0].flatten(), stop_at_eos=False)
        for k, v in bundle.splits().items()
    }
    for i in range(30):
        owners = [k for k, text in decoded.items() if f"number {i} " in text]
        assert len(owners) <= 1, (i, owners)


def test_text_files_missing(tmp_path):
    with pytest.raises(DataError, match="not found"):
        from_text_files([tmp_path / "nope.txt"])


def test_sequence_classification_from_texts():
    bundle = from_texts(
        ["good film", "bad film", "great fun", "awful plot"] * 5, ["pos", "neg", "pos", "neg"] * 5
    )
    args = bundle.task.model_args
    assert args["num_classes"] == 2 and args["pad_id"] == 0 and args["vocab_size"] > 4
    assert bundle.task.name == "sequence_classification"
    assert bundle.task.decode_example(bundle.train[0])["input"] in {
        "good film",
        "bad film",
        "great fun",
        "awful plot",
    }


# -- parallel text --------------------------------------------------------------------------
def test_pairs_columns_bos_eos_and_trim():
    pairs = [(f"w{i} x", f"y{i}") for i in range(40)]
    bundle = from_pairs(pairs, split={"name": "group", "valid": 5, "test": 5})
    src, tgt_in, tgt_out = bundle.train.tensors
    tok = bundle.tokenizers["tgt"]
    assert bool((tgt_in[:, 0] == tok.bos_id).all())
    lengths = (tgt_out != tok.pad_id).sum(1)
    assert bool((tgt_out[torch.arange(len(tgt_out)), lengths - 1] == tok.eos_id).all())
    assert torch.equal(tgt_in[:, 1:][tgt_out[:, :-1] != 0], tgt_out[:, :-1][tgt_out[:, :-1] != 0])
    assert bundle.train.n_inputs == 2 and set(bundle.train.trim) == {0, 1, 2}


def test_pairs_test_source_never_in_training():
    pairs = [(f"s{i % 15}", f"t{i}") for i in range(45)]  # each source has 3 translations
    bundle = from_pairs(pairs, split={"name": "group", "valid": 6, "test": 6})
    bundle.check_leakage()  # group split: passes
    with pytest.raises(DataError, match="source sentence.*`test` split also appear in `train`"):
        from_pairs(pairs, split={"name": "indices", "test": [0]})


def test_pairs_tokenizers_fit_on_training_only():
    pairs = [("a b", "x"), ("a", "y"), ("b", "x y"), ("a a", "y"), ("zzz", "x")]
    bundle = from_pairs(pairs, split={"name": "indices", "test": [4]})
    assert "zzz" not in bundle.tokenizers["src"].vocab
    assert bundle.test.tensors[0][0, 0].item() == bundle.tokenizers["src"].unk_id


def test_parallel_text_files_and_csv(tmp_path):
    (tmp_path / "a.en").write_text("\n".join(f"one {i}" for i in range(30)))
    (tmp_path / "a.de").write_text("\n".join(f"eins {i}" for i in range(30)))
    bundle = from_parallel_text(tmp_path / "a.en", tmp_path / "a.de")
    assert sum(bundle.sizes().values()) == 30
    (tmp_path / "b.de").write_text("only one line")
    with pytest.raises(DataError, match="has 30 lines, .*b.de` has 1"):
        from_parallel_text(tmp_path / "a.en", tmp_path / "b.de")
    pd.DataFrame({"en": [f"x {i}" for i in range(20)], "fr": [f"y {i}" for i in range(20)]}).to_csv(
        tmp_path / "p.csv", index=False
    )
    assert from_parallel_text(tmp_path / "p.csv", columns=("en", "fr")).task.name == "seq2seq"
    with pytest.raises(DataError, match=r"column\(s\) \['source'\] not found"):
        from_parallel_text(tmp_path / "p.csv", columns=("source", "fr"))
