"""Offline datasets: load in one line, right shapes and args, no leakage, cached generation."""

import datetime
import importlib
import random

import pytest
import torch

import nnblocks
from nnblocks.data import AugmentedData, load
from nnblocks.data.datasets._morphemes import FRENCH, GERMAN
from nnblocks.data.datasets.dates import date_formats
from nnblocks.data.tokenizers import UNK_ID, LexiconTokenizer
from nnblocks.errors import DataError, SpecError

numbers_module = importlib.import_module("nnblocks.data.datasets.numbers")
TINY = {"train_size": 300, "valid_size": 30, "test_size": 60, "long_size": 20}


@pytest.fixture(autouse=True)
def _cache(tmp_path, monkeypatch):
    monkeypatch.setenv("NNBLOCKS_CACHE", str(tmp_path / "cache"))


def test_every_dataset_is_registered():
    assert set(nnblocks.list_parts("dataset")) >= {
        "digits",
        "wine",
        "diabetes",
        "numbers",
        "dates",
        "python_source",
    }


def test_digits_images_and_train_only_normalisation():
    bundle = load("digits")
    assert bundle.task.model_args == {"num_classes": 10, "in_channels": 1}
    assert sum(bundle.sizes().values()) == 1797 and bundle.train.tensors[0].shape[1:] == (1, 8, 8)
    assert bundle.train.tensors[0].mean().abs() < 1e-5  # normalised with its own statistics
    assert bundle.test.tensors[0].mean().abs() > 1e-4  # test only shifted by train's mean/std
    test_classes = set(bundle.test.tensors[1].tolist())
    assert test_classes == set(range(10))  # stratified


def test_digits_flatten_and_augment():
    assert load("digits", flatten=True).task.model_args == {"num_classes": 10, "in_features": 64}
    bundle = load("digits", augment=[{"name": "random_crop", "padding": 1}])
    assert isinstance(bundle.train, AugmentedData) and not isinstance(bundle.valid, AugmentedData)
    with pytest.raises(DataError, match="flatten"):
        load("digits", flatten=True, augment=["noise"])


def test_wine_and_diabetes():
    wine = load("wine")
    assert wine.task.model_args == {"num_classes": 3, "in_features": 13}
    assert wine.task.classes == ["class_0", "class_1", "class_2"]
    diabetes = load("diabetes")
    assert diabetes.task.name == "regression" and diabetes.task.model_args == {
        "out_features": 1,
        "in_features": 10,
    }

    class Zero(torch.nn.Module):
        def forward(self, x):
            return torch.zeros(len(x), 1)

    result = diabetes.evaluate(Zero(), "test")
    assert 40 < result["mae"] < 100  # original units (targets 25..346), not normalised ones


def test_numbers_splits_never_share_a_number_and_long_split_is_longer():
    bundle = load("numbers", lang="de", **TINY)
    assert bundle.sizes() == {"train": 300, "valid": 30, "test": 60, "long": 20}
    bundle.check_leakage(column=0, what="source sentence")  # raises on any shared source
    src_tok = bundle.tokenizers["src"]
    train_words = (bundle.train.tensors[0] != 0).sum(1)
    long_words = (bundle.extra["long"].tensors[0] != 0).sum(1)
    assert int(train_words.max()) < 11 <= int(long_words.min())
    text = src_tok.decode(bundle.test.tensors[0][0])
    assert text and all(w.isalpha() for w in text.split())


def test_numbers_targets_are_num2words_morphemes():
    from num2words import num2words

    bundle = load("numbers", lang="de", **TINY)
    data = numbers_module._generate(
        "de", {"train": 300, "valid": 30, "test": 60, "long": 20}, 999_999, 11, 0
    )
    n, en, de = data["train"][0]
    assert de == num2words(n, lang="de")
    tgt = bundle.tokenizers["tgt"]
    assert isinstance(tgt, LexiconTokenizer) and bundle.task.model_args[
        "tgt_vocab_size"
    ] == 4 + len(GERMAN)
    shown = bundle.task.decode_example(bundle.train[0])
    assert shown == {"input": " ".join(numbers_module.english_words(en)), "target": de}


def test_numbers_cache_is_reused(monkeypatch):
    load("numbers", lang="fr", **TINY)

    def fail(*args, **kwargs):
        raise AssertionError("generated again instead of reading the cache")

    monkeypatch.setattr(numbers_module, "_generate", fail)
    again = load("numbers", lang="fr", **TINY)
    assert again.sizes()["train"] == 300


def test_numbers_french_and_chars():
    fr = load("numbers", lang="fr", target_tokens="chars", **TINY)
    assert fr.tokenizers["tgt"].name == "char"
    target = fr.task.decode_example(fr.train[0])["target"]
    assert any(
        w in target
        for w in ("cent", "mille", "vingt", "un", "deux", "trois", "six", "huit", "neuf")
    )


def test_numbers_errors():
    with pytest.raises(DataError, match="`lang` must be one of"):
        load("numbers", lang="es")
    with pytest.raises(DataError, match="target_tokens"):
        load("numbers", target_tokens="words")
    with pytest.raises(DataError, match="hold only"):
        load("numbers", max_number=50, train_size=100, valid_size=0, test_size=0, long_size=0)
    with pytest.raises(SpecError, match="unknown argument `langs`"):
        load("numbers", langs="de")


@pytest.mark.parametrize("lang,lexicon", [("de", GERMAN), ("fr", FRENCH)])
def test_morpheme_lexicon_covers_numbers(lang, lexicon):
    from num2words import num2words

    tok = LexiconTokenizer(lexicon)
    rng = random.Random(0)
    for n in list(range(121)) + rng.sample(range(1_000_000), 300):
        text = num2words(n, lang=lang)
        ids = tok.encode(text)
        assert UNK_ID not in ids, (n, text)
        assert tok.decode(ids) == text


def test_dates_targets_are_iso_and_test_days_unseen():
    bundle = load("dates", train_size=400, valid_size=40, test_size=80)
    tok = bundle.tokenizers["tgt"]
    decoded = {name: set(tok.decode_batch(d.tensors[2])) for name, d in bundle.splits().items()}
    for days in decoded.values():
        for day in days:
            datetime.date.fromisoformat(day)  # every target is an ISO date
    assert not decoded["test"] & decoded["train"] and not decoded["valid"] & decoded["train"]
    shown = bundle.task.decode_example(bundle.test[0])
    assert shown["input"] != shown["target"] and shown["target"][:2] in ("19", "20")


def test_date_formats_skip_two_digit_years_and_bad_locales():
    styles = date_formats(["en_US", "de_DE"], ["short", "long"])
    assert ("en_US", "short") not in styles and ("de_DE", "long") in styles
    with pytest.raises(DataError, match="unknown locale"):
        date_formats(["xx_YY"], ["long"])
    with pytest.raises(DataError, match="distinct days"):
        load("dates", start="2020-01-01", end="2020-01-10", train_size=20)


def test_python_source_files_are_split_whole():
    bundle = load("python_source", max_chars=30_000, block_size=32)
    files = bundle.info["files"]
    assert files["train"] and files["valid"] and files["test"]
    assert not set(files["train"]) & set(files["test"]) and not set(files["train"]) & set(
        files["valid"]
    )
    x, y = bundle.train.tensors
    assert x.shape[1] == 32 and torch.equal(x[:, 1:], y[:, :-1])
    assert bundle.task.model_args["vocab_size"] == bundle.tokenizers["text"].vocab_size
    assert "def" in bundle.task.decode_example(bundle.train[0])["input"] or len(bundle.train) > 5
