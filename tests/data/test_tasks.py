"""Tasks: losses, per-batch metrics (checked against torchmetrics), evaluate, decode_example."""

import math

import pytest
import torch
from torch import nn
from torchmetrics.functional.classification import multiclass_accuracy

from nnblocks.data import (
    ClassificationTask,
    LanguageModelTask,
    MeanAbsoluteError,
    MultiLabelAccuracy,
    SequenceCrossEntropy,
    TensorData,
    TokenAccuracy,
    from_pairs,
    from_tensors,
)
from nnblocks.data.tasks import exact_match
from nnblocks.data.tokenizers import CharTokenizer
from nnblocks.errors import DataError, ShapeError


def test_sequence_cross_entropy_ignores_pad():
    logits = torch.randn(2, 4, 7)
    target = torch.tensor([[3, 4, 0, 0], [5, 6, 2, 0]])
    real = target != 0
    expected = nn.functional.cross_entropy(logits[real], target[real])
    assert torch.allclose(SequenceCrossEntropy(0)(logits, target), expected)
    with pytest.raises(ShapeError, match="same B and T"):
        SequenceCrossEntropy()(logits, target[:, :3])


def test_token_accuracy_agrees_with_torchmetrics():
    logits = torch.randn(16, 9, 11)
    target = torch.randint(1, 11, (16, 9))
    target[:, 6:] = 0
    ours = TokenAccuracy(0)(logits, target)
    ref = multiclass_accuracy(
        logits.argmax(-1), target, num_classes=11, average="micro", ignore_index=0
    )
    assert torch.allclose(ours, ref)


def test_mae_in_original_units_and_multilabel_accuracy():
    assert MeanAbsoluteError([2.0, 10.0])(
        torch.zeros(1, 2), torch.ones(1, 2)
    ).item() == pytest.approx(6.0)
    assert MultiLabelAccuracy()(
        torch.tensor([[5.0, -5.0, 5.0]]), torch.tensor([[1.0, 0.0, 0.0]])
    ).item() == pytest.approx(2 / 3)


def test_exact_match_rules():
    target = torch.tensor([[5, 6, 2, 0], [7, 2, 0, 0], [8, 9, 2, 0]])
    generated = torch.tensor(
        [
            [1, 5, 6, 2, 4],  # BOS + right tokens + EOS (then junk): match
            [1, 7, 7, 2, 0],  # one extra token: no match
            [1, 8, 0, 9, 2],  # a generated pad is a wrong token, not padding: no match
        ]
    )
    assert exact_match(generated, target, bos_id=1, eos_id=2, pad_id=0).tolist() == [
        True,
        False,
        False,
    ]
    no_eos = torch.tensor([[1, 5, 6]])  # stopped before EOS: no match
    assert exact_match(no_eos, target[:1], bos_id=1, eos_id=2, pad_id=0).tolist() == [False]


def test_classification_evaluate_and_mode_restored():
    torch.manual_seed(0)
    x = torch.randn(120, 2)
    y = (x[:, 0] > 0).long()
    bundle = from_tensors(
        x, y, split={"name": "stratified", "valid": 0.25, "seed": 0}, normalize=None
    )
    model = nn.Linear(2, 2)
    with torch.no_grad():
        model.weight.copy_(torch.tensor([[-5.0, 0.0], [5.0, 0.0]]))
        model.bias.zero_()
    model.train()
    result = bundle.evaluate(model, "valid")
    assert result["accuracy"] == 1.0 and result["n"] == 30
    assert model.training  # evaluate restores the mode it found
    with torch.no_grad():
        model.weight.neg_()
    assert bundle.task.evaluate(model, "valid")["accuracy"] == 0.0
    with pytest.raises(DataError, match="no `test` split"):
        bundle.evaluate(model, "test")


def test_regression_evaluate_reports_original_units():
    x = torch.randn(100, 3)
    y = 50 + 10 * x[:, 0]
    bundle = from_tensors(
        x, y, task="regression", split={"name": "random", "valid": 0.2}, normalize=None
    )
    scaler = bundle.task.target_scaler
    assert float(bundle.train.tensors[1].mean()) == pytest.approx(
        0.0, abs=1e-5
    )  # trained on normalised y

    class Zero(nn.Module):
        def forward(self, x):
            return torch.zeros(len(x), 1)

    result = bundle.evaluate(Zero(), "valid")
    valid_y = scaler.inverse(bundle.valid.tensors[1])
    assert result["mae"] == pytest.approx(float((valid_y - scaler.mean).abs().mean()), rel=1e-5)
    assert bundle.task.metrics[0](torch.zeros(4, 1), torch.ones(4, 1)).item() == pytest.approx(
        float(scaler.std)
    )


class Oracle(nn.Module):
    """A seq2seq 'model' with the decoding protocol that knows the answers (for evaluate tests)."""

    bos_id, eos_id, pad_id = 1, 2, 0

    def __init__(self, data, vocab, wrong=()):
        super().__init__()
        self.vocab = vocab
        self.table = {}
        src, _, out = data.tensors
        for i in range(len(src)):
            answer = out[i][out[i] != 0].tolist()
            if i in wrong:
                answer = [answer[-2] if len(answer) > 1 else 3] + answer[1:]
                answer[0] = 3 if answer[0] != 3 else 4
            self.table[tuple(src[i][src[i] != 0].tolist())] = answer
        self.dummy = nn.Parameter(torch.zeros(1))

    def _answer(self, row):
        return self.table[tuple(row[row != 0].tolist())]

    def forward(self, src, tgt_in):
        logits = torch.zeros(len(src), tgt_in.shape[1], self.vocab)
        for b in range(len(src)):
            for t, tok in enumerate(self._answer(src[b])[: tgt_in.shape[1]]):
                logits[b, t, tok] = 10.0
        return logits

    def begin(self, src=None):
        return {"src": src}

    def step(self, prefix, state, use_cache=True):
        t = prefix.shape[1] - 1  # tokens generated so far
        logits = torch.zeros(len(prefix), self.vocab)
        for b in range(len(prefix)):
            answer = self._answer(state["src"][b])
            logits[b, answer[t] if t < len(answer) else self.eos_id] = 10.0
        return logits, state


def _pairs_bundle():
    pairs = [(f"{i}", f"{i * 7}") for i in range(60)]
    return from_pairs(
        pairs,
        src_tokenizer="char",
        tgt_tokenizer="char",
        split={"name": "group", "valid": 10, "test": 20},
    )


def test_seq2seq_evaluate_with_greedy_decoding():
    bundle = _pairs_bundle()
    vocab = bundle.task.model_args["tgt_vocab_size"]
    perfect = Oracle(bundle.test, vocab)
    result = bundle.evaluate(perfect, "test", batch_size=7)
    assert result["exact_match"] == 1.0 and result["token_accuracy"] == 1.0 and result["n"] == 20
    half = Oracle(bundle.test, vocab, wrong=set(range(10)))
    assert bundle.evaluate(half, "test")["exact_match"] == pytest.approx(0.5)


def test_seq2seq_evaluate_with_a_given_decoder_and_limit():
    bundle = _pairs_bundle()
    calls = []

    def nothing(model, src, max_new_tokens):
        calls.append(max_new_tokens)
        return torch.full((len(src), 1), 2)  # EOS at once: every answer is wrong

    oracle = Oracle(bundle.test, bundle.task.model_args["tgt_vocab_size"])
    result = bundle.task.evaluate(oracle, "test", decode=nothing, limit=5)
    assert result["exact_match"] == 0.0 and result["n"] == 5 and calls


def test_seq2seq_decode_example():
    bundle = _pairs_bundle()
    sample = bundle.test[0]
    shown = bundle.task.decode_example(sample)
    src_text = shown["input"]
    assert shown["target"] == str(int(src_text) * 7)
    shown = bundle.task.decode_example(sample, prediction=sample[2])  # ids as prediction
    assert shown["prediction"] == shown["target"]


def test_lm_evaluate_uniform_model_has_perplexity_of_the_vocabulary():
    tok = CharTokenizer().fit(["abcdefgh"])
    x = torch.randint(4, tok.vocab_size, (6, 8))
    data = TensorData(x, x.roll(-1, 1))
    task = LanguageModelTask(tok, block_size=8)
    task.bind({"test": data})

    class Uniform(nn.Module):
        def forward(self, tokens):
            return torch.zeros(*tokens.shape, tok.vocab_size)

    result = task.evaluate(Uniform(), "test")
    assert result["perplexity"] == pytest.approx(tok.vocab_size, rel=1e-4)
    assert result["tokens"] == 48 and math.isfinite(result["loss"])


def test_classification_render():
    task = ClassificationTask(3, classes=["cat", "dog", "owl"])
    task.bind({"train": TensorData(torch.zeros(2, 2), torch.zeros(2, dtype=torch.long))})
    shown = task.decode_example(
        (torch.tensor([0.5, 1.0]), torch.tensor(2)), torch.tensor([0.0, 3.0, 0.0])
    )
    assert shown["target"] == "owl" and shown["prediction"].startswith("dog")
    assert shown["input"] == "[0.5, 1]"
