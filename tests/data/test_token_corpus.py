"""Token corpora on disk: written atomically once, read memory-mapped, batched by index with
the same batches for the same seed and an exact resume position."""

import json

import numpy as np
import pytest
import torch
import yaml

import nnblocks
from nnblocks.data import (
    CharTokenizer,
    TokenBlocks,
    from_token_corpus,
    open_token_corpus,
    write_token_corpus,
)
from nnblocks.data.paths import data_root
from nnblocks.data.sources.text import _windows
from nnblocks.errors import DataError, TrainingError
from nnblocks.experiment.recipe import load_recipe
from nnblocks.experiment.run import run_recipe
from nnblocks.io.manifest import verify_manifest
from nnblocks.train import Callback, Learner, SaveCheckpoint
from nnblocks.train.loaders import TensorLoader

DOCS = [f"def f{i}(x):\n    return x * {i} + {i % 7}\n" * 3 for i in range(60)]


@pytest.fixture
def corpus(tmp_path):
    tok = CharTokenizer().fit(DOCS)
    write_token_corpus(tmp_path / "corpus", DOCS, tok, valid=0.2, seed=0)
    return tmp_path / "corpus", tok


def test_written_corpus_holds_every_document_once_with_a_manifest(corpus):
    folder, tok = corpus
    meta = json.loads((folder / "corpus.json").read_text())
    assert meta["dtype"] == "<u2" and set(meta["tokens"]) == {"train", "valid"}
    opened = open_token_corpus(folder, verify=True)
    stream = np.concatenate([opened.splits["train"], opened.splits["valid"]])
    expected = sum(len(tok.encode(d, eos=True)) for d in DOCS)
    assert len(stream) == expected  # each document whole in one split, EOS after each
    assert int((stream == tok.eos_id).sum()) == len(DOCS)
    verify_manifest(folder)  # the SHA-256 of every file matches


def test_blocks_are_the_in_memory_windows_without_a_copy(corpus):
    folder, tok = corpus
    opened = open_token_corpus(folder)
    mapped = opened.splits["train"]
    blocks = TokenBlocks(mapped, block_size=16)
    assert blocks.stream.data_ptr() == mapped.ctypes.data  # a view of the mapped file
    assert not mapped.flags.owndata
    ids = [int(v) for v in mapped]
    x_mem, y_mem = _windows(ids, 16, tok.pad_id)  # the in-memory source's cutting of a stream
    idx = torch.tensor([0, 5, len(blocks) - 1])
    x, y = blocks[idx]
    assert torch.equal(x, x_mem[idx]) and torch.equal(y, y_mem[idx])
    assert x.dtype == torch.long
    one_x, one_y = blocks[3]
    assert torch.equal(one_x, x_mem[3]) and torch.equal(one_y, y_mem[3])


def test_same_seed_same_batches_and_exact_resume_position(corpus):
    folder, _ = corpus
    blocks = from_token_corpus(folder, block_size=8).train
    full = TensorLoader(blocks, 4, shuffle=True, seed=3)
    full.set_epoch(2)
    batches = [b[0] for b in full]
    again = TensorLoader(blocks, 4, shuffle=True, seed=3)
    again.set_epoch(2, start=5)  # what a resumed run asks for: epoch 2 from its 6th batch
    resumed = [b[0] for b in again]
    assert len(resumed) == len(batches) - 5
    assert all(torch.equal(a, b) for a, b in zip(batches[5:], resumed))
    other = TensorLoader(blocks, 4, shuffle=True, seed=4)
    other.set_epoch(2)
    assert not torch.equal(next(iter(other))[0], batches[0])
    seen = torch.cat([b[:, 0] for b in batches])
    assert len(seen) == len(blocks)  # an epoch visits every block once


class _Crash(Callback):
    def __init__(self, at: int):
        self.at = at

    def after_batch(self, learn):  # type: ignore[no-untyped-def]
        if learn.training and learn.train_step == self.at:
            raise RuntimeError("simulated crash")


class _Losses(Callback):
    def __init__(self):
        self.losses = []

    def after_batch(self, learn):  # type: ignore[no-untyped-def]
        if learn.training:
            self.losses.append(float(learn.loss.detach()))


def _lm_learner(bundle, callbacks, path=None):
    torch.manual_seed(0)
    model = nnblocks.build(
        {"name": "transformer_lm", "dim": 16, "heads": 2, "layers": 1, "dropout": 0.0},
        "model",
        **bundle.task.model_args,
    )
    return Learner(
        model,
        bundle,
        batch_size=4,
        lr=1e-2,
        progress=False,
        audit="off",
        callbacks=callbacks,
        path=path,
    )


def test_learner_resumes_a_memory_mapped_corpus_exactly(corpus, tmp_path):
    folder, _ = corpus
    bundle = from_token_corpus(folder, block_size=24)
    ref = _Losses()
    _lm_learner(bundle, [ref]).fit(1)
    first = _Losses()
    saver = SaveCheckpoint(tmp_path / "ckpt", every_n_steps=4, save_last=False, save_best=False)
    with pytest.raises(TrainingError, match="simulated crash"):
        _lm_learner(bundle, [first, saver, _Crash(6)]).fit(1)
    second = _Losses()
    _lm_learner(bundle, [second]).fit(1, resume=tmp_path / "ckpt" / "last")
    assert first.losses[:4] + second.losses == ref.losses  # same batches, same floats


def test_corpus_of_another_tokenizer_is_refused(corpus):
    folder, _ = corpus
    other = CharTokenizer().fit(["completely different text!"])
    with pytest.raises(DataError, match="written by another tokenizer"):
        from_token_corpus(folder, tokenizer=other)
    other.save(folder.parent / "other.json")
    with data_root(folder.parent), pytest.raises(DataError, match="written by another tokenizer"):
        nnblocks.build(
            {"name": "token_corpus", "path": "corpus", "tokenizer": "other.json"}, "dataset"
        )


def test_truncated_or_missing_corpus_is_named(corpus, tmp_path):
    folder, _ = corpus
    with open(folder / "train.bin", "r+b") as f:
        f.truncate(100)
    with pytest.raises(
        DataError, match=r"train.bin`: expected \d+ tokens .* the file has 100 bytes"
    ):
        open_token_corpus(folder)
    with pytest.raises(DataError, match="is not a token corpus"):
        open_token_corpus(tmp_path)


def test_a_failed_write_leaves_the_old_corpus(corpus):
    folder, tok = corpus
    before = (folder / "train.bin").read_bytes()

    def documents():
        yield "print(1)\n"
        raise OSError("disk went away")

    with pytest.raises(OSError, match="disk went away"):
        write_token_corpus(folder, documents(), tok)
    assert (folder / "train.bin").read_bytes() == before
    assert not [p for p in folder.iterdir() if p.name.endswith(".tmp")]
    with pytest.raises(DataError, match=r"token ids must be in 0\.\."):
        write_token_corpus(folder, ["x"], _Lying(tok))


class _Lying(CharTokenizer):
    """A tokenizer whose ids overflow its vocabulary (a bug the writer must catch)."""

    def __init__(self, inner):
        super().__init__()
        self.__dict__.update(inner.__dict__)

    def encode(self, text, *, bos=False, eos=False):  # type: ignore[no-untyped-def]
        return [self.vocab_size + 5]


def test_token_corpus_recipe_trains(corpus):
    folder, _ = corpus
    recipe = {
        "seed": 0,
        "data": {"name": "token_corpus", "path": "corpus", "block_size": 32},
        "model": {"name": "transformer_lm", "dim": 16, "heads": 2, "layers": 1},
        "train": {"epochs": 1, "batch_size": 8, "lr": 0.01, "threads": 1, "checkpoint": False},
    }
    path = folder.parent / "lm.yaml"
    path.write_text(yaml.safe_dump(recipe))
    result = run_recipe(load_recipe(path), None, progress=False, root=folder.parent)
    assert result.metrics["epochs_run"] == 1 and np.isfinite(result.metrics["train_loss"])
    assert isinstance(result.data.train, TokenBlocks)


def test_dropping_resident_pages_keeps_the_data(corpus):
    folder, _ = corpus
    blocks = from_token_corpus(folder, block_size=8).train
    assert blocks._mapping is not None  # a view of the memory map, not a copy
    idx = torch.tensor([1, 7, 30])
    before = blocks[idx]
    blocks.release()
    after = blocks[idx]
    assert all(torch.equal(a, b) for a, b in zip(before, after))
