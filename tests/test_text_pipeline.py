"""`nnblocks.pipeline`: text in, text out, encoded exactly as the training data was."""

import subprocess
import sys

import pytest
import torch

import nnblocks
from nnblocks.data import from_documents, from_texts, load
from nnblocks.generate import greedy


def _save(model, bundle, folder):
    nnblocks.save(model, folder)
    bundle.save_state(folder)
    return folder


@pytest.fixture(scope="module")
def numbers_folder(tmp_path_factory):
    data = load("numbers", lang="de", train_size=300, valid_size=50, test_size=50, long_size=10)
    spec = {"name": "transformer_seq2seq", "dim": 16, "heads": 2, "encoder_layers": 1,
            "decoder_layers": 1}  # fmt: skip
    model = nnblocks.build(spec, "model", **data.task.model_args)
    folder = _save(model, data, tmp_path_factory.mktemp("numbers") / "model")
    return data, model, folder


def test_seq2seq_encodes_like_the_training_data(numbers_folder):
    data, _, folder = numbers_folder
    pipe = nnblocks.pipeline(folder)
    src = data.test[:1][0][0]
    text = data.task.src_tokenizer.decode(src)
    encoded = pipe.encode([text])[0]
    assert torch.equal(encoded, src[src != data.task.src_tokenizer.pad_id])


def test_seq2seq_translates_as_greedy_decoding(numbers_folder):
    data, model, folder = numbers_folder
    pipe = nnblocks.pipeline(folder.parent)  # a run folder holding model/ works too
    src = data.test[:3][0]
    texts = [data.task.src_tokenizer.decode(row) for row in src]
    expected = [data.task.tgt_tokenizer.decode(row[1:]) for row in greedy(model.eval(), src)]
    assert pipe(texts) == expected
    assert pipe(texts[0]) == expected[0]


def test_lm_continues_the_prompt(tmp_path):
    docs = ["def add(a, b):\n    return a + b\n"] * 40
    data = from_documents(docs, tokenizer="char", block_size=16)
    model = nnblocks.build({"name": "transformer_lm", "dim": 16, "heads": 2, "layers": 1},
                           "model", **data.task.model_args)  # fmt: skip
    pipe = nnblocks.pipeline(_save(model, data, tmp_path / "lm"), max_new_tokens=5)
    out = pipe("def ")
    assert out.startswith("def ") and len(out) <= len("def ") + 5


def test_sequence_classification_names_the_class(tmp_path):
    texts = ["good film", "bad film", "great plot", "awful plot"] * 10
    data = from_texts(texts, ["pos", "neg", "pos", "neg"] * 10)
    model = nnblocks.build({"name": "transformer_classifier", "dim": 16, "heads": 2,
                            "layers": 1}, "model", **data.task.model_args)  # fmt: skip
    pipe = nnblocks.pipeline(_save(model, data, tmp_path / "cls"))
    assert set(pipe(["good film", "awful plot"])) <= {"pos", "neg"}


def test_folder_without_tokenizers_says_so(tmp_path):
    model = nnblocks.build({"name": "mlp", "hidden": [4]}, "model", in_features=3, num_classes=2)
    nnblocks.save(model, tmp_path / "plain")
    with pytest.raises(nnblocks.DataError, match="plain"):
        nnblocks.pipeline(tmp_path / "plain")


def test_predict_command(numbers_folder):
    data, _, folder = numbers_folder
    text = data.task.src_tokenizer.decode(data.test[:1][0][0])
    proc = subprocess.run(
        [sys.executable, "-m", "nnblocks.cli", "predict", str(folder), text],
        capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == nnblocks.pipeline(folder)(text)
