"""Datasets feed the library's own models: model_args build them, evaluate runs them."""

import pytest
import torch

import nnblocks
from nnblocks.data import load

TINY = {"train_size": 200, "valid_size": 20, "test_size": 40, "long_size": 10}


@pytest.fixture(autouse=True)
def _cache(tmp_path, monkeypatch):
    monkeypatch.setenv("NNBLOCKS_CACHE", str(tmp_path / "cache"))


def _model(spec, bundle):
    if "model" not in {k.name for k in nnblocks.registry.kinds()} or spec[
        "name"
    ] not in nnblocks.list_parts("model"):
        pytest.skip(f"model `{spec['name']}` is not available")
    return nnblocks.build(spec, "model", **bundle.task.model_args)


def test_numbers_with_transformer_seq2seq_and_real_greedy_decoding():
    bundle = load("numbers", **TINY)
    model = _model(
        {
            "name": "transformer_seq2seq",
            "dim": 16,
            "heads": 2,
            "encoder_layers": 1,
            "decoder_layers": 1,
        },
        bundle,
    )
    src, tgt_in, tgt_out = bundle.train[torch.arange(8)]
    logits = model(src, tgt_in)
    assert logits.shape == (*tgt_out.shape, bundle.task.model_args["tgt_vocab_size"])
    assert torch.isfinite(bundle.task.loss(logits, tgt_out))
    result = bundle.evaluate(model, "long")
    assert set(result) == {"exact_match", "token_accuracy", "loss", "n"} and result["n"] == 10
    assert 0.0 <= result["exact_match"] <= 1.0


def test_digits_with_cnn_and_wine_with_mlp():
    digits = load("digits")
    cnn = _model({"name": "cnn", "stages": [[8, 1]]}, digits)
    assert cnn(digits.train[torch.arange(4)][0]).shape == (4, 10)
    assert 0.0 <= digits.evaluate(cnn, "test")["accuracy"] <= 1.0
    wine = load("wine")
    mlp = _model({"name": "mlp", "hidden": [16]}, wine)
    assert wine.evaluate(mlp, "valid")["n"] == len(wine.valid)


def test_python_source_with_transformer_lm():
    bundle = load("python_source", max_chars=20_000, block_size=32)
    model = _model({"name": "transformer_lm", "dim": 16, "heads": 2, "layers": 1}, bundle)
    result = bundle.evaluate(model, "valid")
    # an untrained model is close to uniform: perplexity near the vocabulary size
    assert (
        0.3 * bundle.task.model_args["vocab_size"]
        < result["perplexity"]
        < 3 * bundle.task.model_args["vocab_size"]
    )
