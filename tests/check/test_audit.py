"""The reuse audit: shared weights fail, shared statistics warn, harmless reuse passes."""

import torch
from torch import nn

import nnblocks
from nnblocks.check import audit_reuse


class SharedLinear(nn.Module):
    def __init__(self):
        super().__init__()
        self.proj = nn.Linear(8, 8)

    def forward(self, x):
        return self.proj(torch.relu(self.proj(x)))  # one line, two places


class SharedReLU(nn.Module):
    def __init__(self):
        super().__init__()
        self.a, self.b, self.act = nn.Linear(8, 8), nn.Linear(8, 8), nn.ReLU()

    def forward(self, x):
        h = self.act(self.a(x))
        return self.act(self.b(h))


class TiedLM(nn.Module):
    """A tiny language model whose output layer shares the embedding matrix (Press & Wolf 2017)."""

    tied_parameters = [("embedding.weight", "head.weight")]

    def __init__(self, vocab=20, dim=8):
        super().__init__()
        self.embedding = nn.Embedding(vocab, dim)
        self.mix = nn.Linear(dim, dim)
        self.head = nn.Linear(dim, vocab, bias=False)
        self.head.weight = self.embedding.weight

    def forward(self, tokens):
        return self.head(torch.tanh(self.mix(self.embedding(tokens))))


class UndeclaredTie(TiedLM):
    tied_parameters = []


def _status(report, name):
    return report[name].status


def test_one_linear_called_from_two_places_fails():
    report = audit_reuse(SharedLinear(), torch.randn(2, 8))
    assert not report.ok
    record = report["proj"]
    assert record.status == "fail"
    assert "2 places" in record.message and "tied_parameters" in record.message


def test_a_reused_relu_is_fine():
    report = audit_reuse(SharedReLU(), torch.randn(2, 8))
    assert report.ok and not report.warnings, str(report)
    assert "act" in report["parameter_free"].message


def test_declared_tied_embeddings_pass_and_undeclared_fail():
    tokens = torch.randint(0, 20, (2, 5))
    tied = audit_reuse(TiedLM(), tokens)
    assert tied.ok and not tied.warnings, str(tied)
    assert _status(tied, "embedding.weight = head.weight") == "pass"
    untied = audit_reuse(UndeclaredTie(), tokens)
    assert _status(untied, "embedding.weight = head.weight") == "fail"


def test_a_broken_declared_tie_warns():
    model = TiedLM()
    model.head.weight = nn.Parameter(model.embedding.weight.detach().clone())  # tie lost
    report = audit_reuse(model, torch.randint(0, 20, (2, 5)))
    assert any(r.status == "warn" and "tie is broken" in r.message for r in report), str(report)


def test_batchnorm_on_two_streams_warns_and_is_left_as_it_was():
    class TwoStreams(nn.Module):
        def __init__(self):
            super().__init__()
            self.norm = nn.BatchNorm1d(4)

        def forward(self, a, b):
            return self.norm(a) + self.norm(b)

    model = TwoStreams().train()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    report = audit_reuse(model, torch.randn(3, 4), 5 + torch.randn(3, 4))
    assert report.ok and _status(report, "norm") == "warn"
    assert "running statistics" in report["norm"].message
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())


def test_the_same_module_twice_in_a_sequential_fails():
    layer = nn.Linear(4, 4)
    report = audit_reuse(nn.Sequential(layer, nn.Tanh(), layer), torch.randn(2, 4))
    assert _status(report, "0") == "fail"
    assert "registered as 0, 2" in report["0"].message


def test_a_reused_block_is_reported_once_with_its_submodules():
    block = nn.Sequential(nn.Linear(4, 4), nn.ReLU())

    class Twice(nn.Module):
        def __init__(self):
            super().__init__()
            self.block = block

        def forward(self, x):
            return self.block(self.block(x))

    report = audit_reuse(Twice(), torch.randn(2, 4))
    assert _status(report, "block") == "fail"
    assert "block.0" in report["block"].message and "block.0" not in report


def test_recurrence_passes_but_leaking_state_warns():
    class Decoder(nn.Module):
        def __init__(self):
            super().__init__()
            self.rnn, self.out = nn.GRU(4, 4, batch_first=True), nn.Linear(4, 4)

        def forward(self, x):
            h, outs = None, []
            for t in range(x.shape[1]):  # step by step, as decoding without teacher forcing
                o, h = self.rnn(x[:, t : t + 1], h)
                outs.append(self.out(o))
            return torch.cat(outs, 1)

    report = audit_reuse(Decoder(), torch.randn(2, 3, 4))
    assert report.ok and not report.warnings, str(report)
    assert "stepped" in report["rnn"].message and "time step" in report["out"].message

    class Leaky(nn.Module):
        def __init__(self):
            super().__init__()
            self.rnn = nn.GRU(4, 4, batch_first=True)
            self.rnn2 = nn.GRU(4, 4, batch_first=True)

        def forward(self, a, b):
            _, h = self.rnn2(a)
            _, h2 = self.rnn(a)
            out, _ = self.rnn(b, h2)  # b starts from a's final state: unrelated sequences
            return out

    leaky = audit_reuse(Leaky(), torch.randn(2, 3, 4), torch.randn(2, 3, 4))
    assert any(r.status == "warn" and "state leaks" in r.message for r in leaky), str(leaky)


def test_state_kept_in_an_attribute_warns_and_is_undone():
    class Stateful(nn.Module):
        def __init__(self):
            super().__init__()
            self.lin, self.memory = nn.Linear(4, 4), None

        def forward(self, x):
            self.memory = self.lin(x) if self.memory is None else self.lin(x) + self.memory
            return self.memory

    model = Stateful()
    report = audit_reuse(model, torch.randn(2, 4))
    assert _status(report, "Stateful") == "warn" and "`memory`" in report["Stateful"].message
    assert model.memory is None


def test_without_inputs_only_static_checks_run():
    report = audit_reuse(UndeclaredTie())
    assert _status(report, "forward") == "skip"
    assert _status(report, "embedding.weight = head.weight") == "fail"


def test_builtin_language_model_passes():
    if "transformer_lm" not in nnblocks.list_parts("model"):
        return
    model = nnblocks.build(
        {"name": "transformer_lm", "vocab_size": 20, "dim": 16, "heads": 2, "layers": 1}, "model"
    )
    report = audit_reuse(model, torch.randint(1, 20, (2, 5)))
    assert report.ok and not report.warnings, str(report)
