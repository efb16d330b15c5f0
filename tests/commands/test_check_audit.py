"""`nnblocks check` and `nnblocks audit`: tables printed, exit codes, user modules."""

import textwrap

import pytest
import torch
from torch import nn

import nnblocks
from nnblocks.cli import main

USER_PARTS = textwrap.dedent(
    '''
    import torch
    from torch import nn

    class Mean(nn.Module):
        """Attention that averages every visible key (correct, if crude)."""

        def __init__(self, dim, heads):
            super().__init__()
            self.v = nn.Linear(dim, dim)

        def forward(self, x, context=None, mask=None, causal=False):
            src = x if context is None else context
            Tq, Tk = x.shape[1], src.shape[1]
            allowed = torch.ones(x.shape[0], Tq, Tk, dtype=torch.bool)
            if mask is not None:
                allowed = allowed & (mask[:, None, :] if mask.dim() == 2 else mask)
            if causal:
                allowed = allowed & torch.ones(Tq, Tk, dtype=torch.bool).tril()
            w = allowed.to(x.dtype)
            w = w / w.sum(-1, keepdim=True).clamp(min=1)
            return w @ self.v(src)

    class Future(Mean):
        def forward(self, x, context=None, mask=None, causal=False):
            return super().forward(x, context, mask, causal=False)
    '''
)


@pytest.fixture
def user_file(tmp_path):
    path = tmp_path / "my_parts.py"
    path.write_text(USER_PARTS)
    return path


def test_check_prints_the_table_and_exits_zero(capsys):
    assert main(["check", "attention:mha", "--only", "shape_self", "causal_leakage"]) == 0
    out = capsys.readouterr().out
    assert "check attention:mha" in out and "causal_leakage" in out and "pass" in out


def test_check_a_class_from_the_users_file(user_file, capsys):
    only = ["--only", "causal_leakage", "padding_mask"]
    assert main(["check", "attention:Mean", "--module", str(user_file), *only]) == 0
    capsys.readouterr()
    assert main(["check", "attention:Future", "--module", str(user_file), *only]) == 1
    lines = capsys.readouterr().out.splitlines()
    assert "fail" in next(line for line in lines if "causal_leakage" in line)


def test_check_against_a_reference(user_file, capsys):
    code = main(["check", "attention:Mean", "--module", str(user_file), "--against", "Future",
                 "--only", "shape_self"])  # fmt: skip
    out = capsys.readouterr().out
    assert code == 1  # causal and non-causal means differ under the causal example call
    assert "against_float64" in out


def test_check_errors_are_reported_not_raised(capsys, tmp_path):
    assert main(["check", "mha"]) == 1  # no kind
    assert main(["check", "attention:mha", "--module", str(tmp_path / "missing.py")]) == 1
    err = capsys.readouterr().err
    assert "KIND:NAME" in err and "missing.py" in err


def test_check_json_output(capsys):
    assert main(["check", "norm:layer", "--only", "statistics", "--json"]) == 0
    assert '"ok": true' in capsys.readouterr().out


class Shared(nn.Module):
    def __init__(self):
        super().__init__()
        self.a, self.b = nn.Linear(4, 4), nn.Linear(4, 4)
        self.b.weight = self.a.weight  # undeclared sharing

    def forward(self, x):
        return self.b(self.a(x))


def test_audit_a_recipe_without_data(tmp_path, capsys):
    recipe = tmp_path / "lm.yaml"
    recipe.write_text(
        "model: {name: transformer_lm, vocab_size: 20, dim: 16, heads: 2, layers: 1}\n"
    )
    assert main(["audit", str(recipe)]) == 0
    out = capsys.readouterr().out
    assert "no example inputs" in out


def test_audit_a_checkpoint_folder(tmp_path, capsys):
    model = nnblocks.build(
        {"name": "transformer_lm", "vocab_size": 20, "dim": 16, "heads": 2, "layers": 1}, "model"
    )
    nnblocks.save(model, tmp_path / "ckpt")
    assert main(["audit", str(tmp_path / "ckpt")]) == 0
    assert "TransformerLM" in capsys.readouterr().out


def test_example_batch_takes_the_model_inputs_of_the_training_split():
    from nnblocks.data import TensorData
    from nnblocks.experiment.targets import example_batch

    class Bundle:
        train = TensorData(torch.randn(5, 3), torch.randn(5, 2), torch.zeros(5), n_inputs=2)

    inputs = example_batch(Bundle(), 2)
    assert [t.shape for t in inputs] == [torch.Size([2, 3]), torch.Size([2, 2])]


@pytest.mark.slow
def test_audit_a_recipe_with_data_traces_a_batch(tmp_path, capsys):
    recipe = tmp_path / "wine.yaml"
    recipe.write_text("data: {name: wine}\nmodel: {name: mlp, hidden: [8], norm: batch}\n")
    assert main(["audit", str(recipe)]) == 0
    assert "traced" in capsys.readouterr().out


def test_audit_command_exit_code_on_failure(monkeypatch, capsys):
    from nnblocks.commands import audit as audit_command

    monkeypatch.setattr(
        audit_command, "load_target", lambda *a, **k: (Shared(), (torch.randn(2, 4),))
    )
    assert main(["audit", "whatever.yaml"]) == 1
    assert "a.weight = b.weight" in capsys.readouterr().out
