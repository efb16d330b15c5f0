"""`nnblocks audit --input`: example inputs for a recipe without data."""

import pytest
import torch
import yaml

from nnblocks.cli import main
from nnblocks.errors import SpecError
from nnblocks.experiment.targets import parse_input


def test_parse_input_shapes():
    assert parse_input("2x8").shape == (2, 8)
    tokens = parse_input("3x5:tokens=20")
    assert tokens.dtype == torch.long and tokens.shape == (3, 5)
    assert int(tokens.min()) >= 3 and int(tokens.max()) < 20
    for bad in ("2xa", "0x3", "2x3:tokens=2", "2x3:ids=9"):
        with pytest.raises(SpecError, match="--input"):
            parse_input(bad)


def test_audit_command_traces_a_recipe_without_data(tmp_path, capsys):
    recipe = tmp_path / "lm.yaml"
    spec = {"name": "transformer_lm", "vocab_size": 30, "dim": 16, "heads": 2, "layers": 1}
    recipe.write_text(yaml.safe_dump({"model": spec}))
    assert main(["audit", str(recipe), "--input", "2x6:tokens=30"]) == 0  # ties are declared
    assert "traced" in capsys.readouterr().out
