"""Tokenizers: specials, train-only vocabularies, lossless round trips, JSON save/load."""

import json

import pytest
import torch

import nnblocks
from nnblocks.data.tokenizers import (
    BOS_ID,
    EOS_ID,
    PAD_ID,
    UNK_ID,
    BPETokenizer,
    CharTokenizer,
    LexiconTokenizer,
    WordTokenizer,
    load_tokenizer,
    tokenizer_from_dict,
)
from nnblocks.errors import DataError

TEXTS = ["the cat sat on the mat", "the dog sat", "a cat and a dog"]


def test_specials_have_fixed_ids():
    for tok in (CharTokenizer().fit(TEXTS), WordTokenizer().fit(TEXTS)):
        assert (tok.pad_id, tok.bos_id, tok.eos_id, tok.unk_id) == (0, 1, 2, 3)
        assert tok.vocab[:4] == ["<pad>", "<bos>", "<eos>", "<unk>"]
        ids = tok.encode("the cat", bos=True, eos=True)
        assert ids[0] == BOS_ID and ids[-1] == EOS_ID and PAD_ID not in ids


def test_char_round_trip_and_unknown_characters():
    tok = CharTokenizer().fit(TEXTS)
    assert tok.decode(tok.encode("the mat")) == "the mat"
    assert tok.encode("z") == [UNK_ID]  # 'z' is not in the training texts


def test_word_min_frequency_sends_rare_words_to_unk():
    tok = WordTokenizer(min_freq=2).fit(TEXTS)
    ids = tok.encode("the mat")
    assert ids[0] != UNK_ID  # "the" occurs 3 times
    assert ids[1] == UNK_ID  # "mat" occurs once
    assert "mat" not in tok.vocab and "sat" in tok.vocab


def test_word_max_vocab_keeps_most_frequent():
    tok = WordTokenizer(max_vocab=6).fit(TEXTS)
    assert tok.vocab_size == 6
    assert tok.vocab[4] == "the"  # most frequent word first


def test_word_pattern_option():
    tok = WordTokenizer(pattern="[a-z]+").fit(["twenty-two thousand, one"])
    assert [tok.vocab[i] for i in tok.encode("twenty-two thousand, one")] == [
        "twenty",
        "two",
        "thousand",
        "one",
    ]


def test_decode_stops_at_eos_and_drops_specials():
    tok = CharTokenizer().fit(["ab"])
    a, b = tok.encode("ab")
    assert tok.decode([BOS_ID, a, PAD_ID, b, EOS_ID, a]) == "ab"
    assert tok.decode([a, EOS_ID, b], stop_at_eos=False) == "ab"


def test_encode_batch_pads_with_pad_id():
    tok = WordTokenizer().fit(TEXTS)
    batch = tok.encode_batch(["the cat", "the"], eos=True)
    assert batch.shape == (2, 3)
    assert batch[1, 2].item() == PAD_ID and batch[1, 1].item() == EOS_ID
    assert tok.decode_batch(batch) == ["the cat", "the"]


def test_unfitted_tokenizer_refuses_to_encode():
    with pytest.raises(DataError, match="not fitted"):
        CharTokenizer().encode("a")


def test_lexicon_splits_german_number_words_into_morphemes():
    from nnblocks.data.datasets._morphemes import GERMAN

    tok = LexiconTokenizer(GERMAN)
    pieces = [tok.vocab[i] for i in tok.encode("siebzehntausendsechzehn")]
    assert pieces == ["sieb", "zehn", "tausend", "sech", "zehn"]
    assert tok.decode(tok.encode("zweiundzwanzig")) == "zweiundzwanzig"
    assert tok.encode("x") == [UNK_ID]


def test_lexicon_rejects_specials_and_empty_pieces():
    with pytest.raises(DataError, match="lexicon"):
        LexiconTokenizer(["a", ""])
    with pytest.raises(DataError, match="lexicon"):
        LexiconTokenizer(["<pad>"])


def test_bpe_round_trip_is_lossless_and_learns_merges():
    text = ["low lower lowest newer wider"] * 20 + ["def f(x):\n    return x"]
    tok = BPETokenizer(vocab_size=300, min_frequency=2).fit(text)
    assert tok.vocab_size <= 300 and tok.vocab_size > 260
    for s in ("lowest newer", "def f(x):\n    return x", "ünïcödé"):
        assert tok.decode(tok.encode(s)) == s
    assert len(tok.encode("lowest")) < len("lowest")  # merges were learned
    assert tok.encode("low", bos=True, eos=True)[0] == BOS_ID


def test_bpe_vocab_size_too_small():
    with pytest.raises(DataError, match="vocab_size"):
        BPETokenizer(vocab_size=100)


@pytest.mark.parametrize(
    "tok",
    [
        lambda: CharTokenizer(min_freq=2, lowercase=True).fit(TEXTS),
        lambda: WordTokenizer(min_freq=1, pattern=r"\w+").fit(TEXTS),
        lambda: LexiconTokenizer(["ab", "a", "b"]),
        lambda: BPETokenizer(vocab_size=280).fit(TEXTS * 5),
    ],
)
def test_to_dict_is_json_and_rebuilds_an_equal_tokenizer(tok, tmp_path):
    tok = tok()
    data = json.loads(json.dumps(tok.to_dict()))
    again = tokenizer_from_dict(data)
    assert type(again) is type(tok) and again.vocab_size == tok.vocab_size
    for s in TEXTS + ["unseen zzz"]:
        assert again.encode(s) == tok.encode(s)
    loaded = load_tokenizer(tok.save(tmp_path / "tok.json"))
    assert loaded.encode(TEXTS[0]) == tok.encode(TEXTS[0])


def test_tokenizer_from_bad_data():
    with pytest.raises(DataError, match="tokenizer data"):
        tokenizer_from_dict({"vocab": []})


def test_registered_and_buildable():
    assert {"char", "word", "bpe", "lexicon"} <= set(nnblocks.list_parts("tokenizer"))
    tok = nnblocks.build({"name": "word", "min_freq": 2}, "tokenizer")
    assert isinstance(tok, WordTokenizer) and tok.min_freq == 2
    assert nnblocks.spec_of(tok)["min_freq"] == 2


def test_encode_batch_matches_encode():
    tok = BPETokenizer(vocab_size=280).fit(TEXTS * 5)
    batch = tok.encode_batch(TEXTS, bos=True)
    for row, text in zip(batch, TEXTS):
        ids = tok.encode(text, bos=True)
        assert row[: len(ids)].tolist() == ids and bool((row[len(ids) :] == PAD_ID).all())
    assert isinstance(batch, torch.Tensor) and batch.dtype == torch.long
