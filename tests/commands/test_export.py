"""`nnblocks export`: a saved model to a checked ONNX file from the command line."""

import numpy as np
import pytest
import torch

import nnblocks
from nnblocks.cli import main


def test_export_a_saved_model_and_run_it(tmp_path, capsys):
    ort = pytest.importorskip("onnxruntime")
    model = nnblocks.build(
        {"name": "transformer_lm", "vocab_size": 20, "dim": 16, "heads": 2, "layers": 1}
    )
    nnblocks.save(model, tmp_path / "m")
    out = tmp_path / "lm.onnx"
    argv = ["export", str(tmp_path / "m"), "--onnx", str(out), "--input", "2x6:tokens=20",
            "--exporter", "torchscript"]  # fmt: skip
    assert main(argv) == 0
    assert "largest difference" in capsys.readouterr().out
    tokens = torch.randint(3, 20, (3, 9))  # another batch and length than the example
    session = ort.InferenceSession(str(out), providers=["CPUExecutionProvider"])
    (logits,) = session.run(None, {session.get_inputs()[0].name: tokens.numpy()})
    with torch.no_grad():
        np.testing.assert_allclose(logits, model.eval()(tokens).numpy(), rtol=1e-4, atol=1e-4)


def test_export_without_example_inputs_says_what_to_give(tmp_path, capsys):
    model = nnblocks.build(
        {"name": "transformer_lm", "vocab_size": 20, "dim": 16, "heads": 2, "layers": 1}
    )
    nnblocks.save(model, tmp_path / "m")
    assert main(["export", str(tmp_path / "m"), "--onnx", str(tmp_path / "x.onnx")]) == 1
    assert "--input" in capsys.readouterr().err
    assert not (tmp_path / "x.onnx").exists()
