"""`nnblocks export`: a saved model to a checked ONNX file from the command line."""

import logging

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


_EXPORTER_LOGGERS = ("torch.onnx", "onnxscript", "onnx_ir")


def _exporter_records(caplog):
    return [r for r in caplog.records if r.name.startswith(_EXPORTER_LOGGERS)]


@pytest.mark.slow  # two dynamo exports: ~20 s on 2 loaded cores
def test_export_keeps_the_exporters_info_logs_for_verbose(tmp_path, capsys, caplog):
    pytest.importorskip("onnxruntime")
    pytest.importorskip("onnxscript")
    model = nnblocks.build(
        {"name": "transformer_lm", "vocab_size": 20, "dim": 16, "heads": 2, "layers": 1}
    )
    nnblocks.save(model, tmp_path / "m")
    argv = ["export", str(tmp_path / "m"), "--onnx", str(tmp_path / "lm.onnx"),
            "--input", "2x6:tokens=20", "--exporter", "dynamo"]  # fmt: skip
    caplog.set_level(logging.INFO)
    before = {name: logging.getLogger(name).level for name in _EXPORTER_LOGGERS}
    assert main(argv) == 0
    assert not [r for r in _exporter_records(caplog) if r.levelno < logging.WARNING]
    assert "largest difference" in capsys.readouterr().out
    caplog.clear()
    assert main(["-v", *argv]) == 0
    assert [r for r in _exporter_records(caplog) if r.levelno == logging.INFO]  # they exist
    # and the levels are as they were before the export
    assert {name: logging.getLogger(name).level for name in _EXPORTER_LOGGERS} == before


@pytest.mark.parametrize("verbose", [False, True])
def test_exporter_info_lines_only_when_verbose(caplog, verbose):
    from nnblocks.commands.export import _exporter_logs

    caplog.set_level(logging.INFO)
    before = logging.getLogger("onnxscript").level
    child = logging.getLogger("onnxscript.optimizer._constant_folding")
    with _exporter_logs(verbose=verbose):
        child.info("Skipping constant folding for node")
        child.warning("a warning stays")
    messages = [r.getMessage() for r in caplog.records]
    assert ("Skipping constant folding for node" in messages) is verbose
    assert "a warning stays" in messages
    assert logging.getLogger("onnxscript").level == before  # restored
