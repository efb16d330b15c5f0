"""`nnblocks generate FOLDER --prompt TEXT`: a saved model and its tokenizer, text in and out."""

from __future__ import annotations

import json

import pytest
import torch

import nnblocks
from nnblocks.cli import main
from nnblocks.commands.generate import folder_tokenizers, generate_text
from nnblocks.data import BPETokenizer
from nnblocks.data.tokenizers.pretrained import PretrainedTokenizer

TEXTS = ["def add(a, b): return a + b", "def sub(a, b): return a - b"] * 20


@pytest.fixture(scope="module")
def bpe():
    pytest.importorskip("tokenizers")
    return BPETokenizer(vocab_size=300).fit(TEXTS)


def _lm(vocab_size: int, **ids):
    torch.manual_seed(0)
    spec = {"name": "transformer_lm", "dim": 16, "heads": 2, "layers": 1, "max_len": 64}
    return nnblocks.build({**spec, "vocab_size": vocab_size, **ids})


def test_generate_from_a_folder_saved_with_its_tokenizer(tmp_path, capsys, bpe):
    model = _lm(bpe.vocab_size)
    folder = nnblocks.save(model, tmp_path / "lm", tokenizer=bpe)
    assert (folder / "tokenizer.json").is_file()
    config = json.loads((folder / "tokenizer_config.json").read_text())
    assert config["bos_token"] == "<bos>" and config["pad_token"] == "<pad>"
    argv = ["generate", str(folder), "--prompt", "def add", "--max-new-tokens", "6"]
    assert main(argv) == 0
    printed = capsys.readouterr().out.rstrip("\n")
    # The same decoding done by hand: BOS + prompt ids, greedy, decoded without the BOS.
    prefix = torch.tensor([[model.bos_id, *bpe.encode("def add")]])
    expected = nnblocks.generate.greedy(model, prefix=prefix, max_new_tokens=6)
    assert printed == bpe.decode(expected[0, 1:])
    assert printed.startswith("def add")  # byte-level BPE gives the prompt back exactly


def test_pretrained_tokenizer_keeps_its_own_special_ids(tmp_path, bpe):
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers

    rust = Tokenizer(models.BPE(unk_token="[UNK]"))
    rust.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    rust.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=280,
        special_tokens=["[UNK]", "<s>", "</s>"],
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    rust.train_from_iterator(TEXTS, trainer=trainer)
    source = tmp_path / "hf"
    source.mkdir()
    (source / "tokenizer.json").write_text(rust.to_str())
    (source / "tokenizer_config.json").write_text(
        json.dumps({"bos_token": {"content": "<s>"}, "eos_token": "</s>"})
    )
    tok = PretrainedTokenizer.from_folder(source)
    assert (tok.bos_id, tok.eos_id, tok.unk_id, tok.pad_id) == (1, 2, 0, None)
    assert tok.encode("def", bos=True, eos=True)[0] == 1
    with pytest.raises(nnblocks.DataError, match="already trained"):
        tok.fit(["x"])
    model = _lm(tok.vocab_size, bos_id=tok.bos_id, eos_id=tok.eos_id, pad_id=None)
    folder = nnblocks.save(model, tmp_path / "m", tokenizer=tok)
    again = folder_tokenizers(folder)["text"]
    assert again.encode("def sub(a, b)") == tok.encode("def sub(a, b)")
    assert (again.bos_id, again.eos_id) == (1, 2)
    text = generate_text(folder, "def sub", max_new_tokens=4)
    assert text.startswith("def sub")


def test_saved_tokenizer_loads_in_transformers(tmp_path, bpe):
    transformers = pytest.importorskip("transformers")
    folder = nnblocks.save(_lm(bpe.vocab_size), tmp_path / "lm", tokenizer=bpe)
    hf = transformers.PreTrainedTokenizerFast.from_pretrained(str(folder))
    assert hf.encode("def add(a, b)", add_special_tokens=False) == bpe.encode("def add(a, b)")
    assert hf.bos_token_id == bpe.bos_id and hf.pad_token_id == bpe.pad_id


def test_folder_without_a_tokenizer_says_what_to_save(tmp_path, capsys, bpe):
    folder = nnblocks.save(_lm(bpe.vocab_size), tmp_path / "lm")
    assert main(["generate", str(folder), "--prompt", "x"]) == 1
    assert "holds no tokenizer" in capsys.readouterr().err


def test_generate_translates_with_an_encoder_decoder(tmp_path):
    from nnblocks.data import from_pairs

    pairs = [(f"{a} plus {b}", str(a + b)) for a in range(12) for b in range(12)]
    data = from_pairs(pairs, src_tokenizer="word", tgt_tokenizer="char")
    torch.manual_seed(0)
    spec = {"name": "transformer_seq2seq", "dim": 16, "heads": 2, "encoder_layers": 1,
            "decoder_layers": 1}  # fmt: skip
    model = nnblocks.build(spec, **data.model_args)
    folder = nnblocks.save(model, tmp_path / "s2s", data=data)
    assert not (folder / "tokenizer.json").exists()  # word/char tokenizers live in data.json
    text = generate_text(folder, "3 plus 4", method="sample", max_new_tokens=3)
    src_tok, tgt_tok = data.tokenizers["src"], data.tokenizers["tgt"]
    expected = nnblocks.generate.greedy(model, torch.tensor([src_tok.encode("3 plus 4")]))
    assert generate_text(folder, "3 plus 4", max_new_tokens=None) == tgt_tok.decode(expected[0, 1:])
    assert set(text) <= set("0123456789")  # sampled, but only from the target's characters
