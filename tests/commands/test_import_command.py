"""`nnblocks import SOURCE OUT`, and recipes that start from a checkpoint (`model: {from: ...}`)."""

from __future__ import annotations

import json

import pytest
import torch
import yaml

import nnblocks
import nnblocks.interop
from nnblocks.cli import main
from nnblocks.io import CONFIG_NAME, is_nnblocks_config


def test_import_saves_an_nnblocks_folder_and_prints_the_slots(tmp_path, capsys, monkeypatch):
    # STAND-IN for nnblocks.interop.from_transformers (written on another branch): the
    # command's own work (save, tokenizer, table) is what this test checks.
    source = tmp_path / "hf"
    source.mkdir()
    (source / CONFIG_NAME).write_text(json.dumps({"model_type": "llama"}))
    from tokenizers import Tokenizer, models

    (source / "tokenizer.json").write_text(
        Tokenizer(models.WordLevel({"<unk>": 0, "a": 1}, unk_token="<unk>")).to_str()
    )
    seen = []

    def stand_in_from_transformers(path):
        seen.append(path)
        spec = {"name": "transformer_lm", "vocab_size": 8, "dim": 8, "heads": 2, "layers": 1}
        return nnblocks.build(spec)

    monkeypatch.setattr(
        nnblocks.interop, "from_transformers", stand_in_from_transformers, raising=False
    )
    out = tmp_path / "nb"
    assert main(["import", str(source), str(out)]) == 0
    assert seen == [str(source)]
    assert is_nnblocks_config(out / CONFIG_NAME) and (out / "tokenizer.json").is_file()
    printed = capsys.readouterr().out
    assert "decoder.layers.0.self_attention" in printed and "mha" in printed
    assert nnblocks.spec_of(nnblocks.load(out))["name"] == "transformer_lm"


def test_import_of_a_real_llama_folder(tmp_path, capsys):
    if not hasattr(nnblocks.interop, "from_transformers"):
        pytest.skip("nnblocks.interop.from_transformers is not in this build")
    transformers = pytest.importorskip("transformers")
    config = transformers.LlamaConfig(
        vocab_size=40, hidden_size=16, intermediate_size=32, num_hidden_layers=2,
        num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=32,
    )  # fmt: skip
    torch.manual_seed(0)
    reference = transformers.LlamaForCausalLM(config).eval()
    reference.save_pretrained(tmp_path / "hf")
    assert main(["import", str(tmp_path / "hf"), str(tmp_path / "nb")]) == 0
    model = nnblocks.load(tmp_path / "nb")
    tokens = torch.randint(0, 40, (2, 7))
    with torch.no_grad():
        expected = reference(tokens).logits
        torch.testing.assert_close(model(tokens), expected, rtol=1e-4, atol=1e-4)


def _wine(tmp_path, model, **train):
    recipe = {
        "seed": 0,
        "data": {"name": "wine"},
        "model": model,
        "train": {"epochs": 1, "lr": 0.01, "batch_size": 32, "threads": 1, **train},
    }
    path = tmp_path / f"recipe{len(list(tmp_path.glob('recipe*')))}.yaml"
    path.write_text(yaml.safe_dump(recipe))
    return str(path)


def test_recipe_model_from_a_checkpoint_is_loaded_then_swapped(tmp_path):
    from nnblocks.experiment.model_source import build_recipe_model, check_recipe_model

    torch.manual_seed(0)
    source = nnblocks.build({"name": "mlp", "hidden": [16]}, "model", in_features=13, num_classes=3)
    nnblocks.save(source, tmp_path / "start")
    record = {"pattern": "layers.0.activation", "spec": "gelu"}
    spec = {"from": str(tmp_path / "start"), "surgery": [record]}
    check_recipe_model(spec, {})
    model = build_recipe_model(spec, {"num_classes": 99})  # the checkpoint's sizes win
    assert model.training and nnblocks.spec_of(model)["surgery"] == [record]
    assert nnblocks.spec_of(model.layers[0].activation)["name"] == "gelu"
    for name, t in source.state_dict().items():
        assert torch.equal(model.state_dict()[name], t), name
    bad = {"from": str(tmp_path / "start"), "surgery": [{"pattern": "nope.*", "spec": "gelu"}]}
    with pytest.raises(nnblocks.SpecError, match="nope"):
        check_recipe_model(bad, {})  # on the meta device, before any data is made


@pytest.mark.slow
def test_train_starts_from_a_checkpoint_and_applies_the_surgery(tmp_path, capsys):
    torch.manual_seed(0)
    source = nnblocks.build({"name": "mlp", "hidden": [16]}, "model", in_features=13, num_classes=3)
    nnblocks.save(source, tmp_path / "start")
    record = {"pattern": "layers.0.activation", "spec": "gelu"}
    # A tiny learning rate: the weights of the new run must still be the checkpoint's own
    # (a fresh initialisation would differ by ~0.1), while the swapped slot holds `gelu`.
    model = {"from": str(tmp_path / "start"), "surgery": [record]}
    recipe = _wine(tmp_path, model, lr=1e-9, checkpoint=False)
    assert main(["train", recipe, "--out", str(tmp_path / "b"), "--no-progress", "--json"]) == 0
    tuned = nnblocks.load(tmp_path / "b" / "model")
    assert nnblocks.spec_of(tuned)["surgery"] == [record]
    assert nnblocks.spec_of(tuned.layers[0].activation)["name"] == "gelu"
    for name, t in source.state_dict().items():
        if t.is_floating_point() and "running" not in name:
            torch.testing.assert_close(tuned.state_dict()[name], t, rtol=0, atol=1e-6)


@pytest.mark.parametrize(
    "model, message",
    [
        ({"from": "no/such/folder"}, "model.from`: `no/such/folder` is not a model folder"),
        ({"from": ".", "dim": 3}, r"unknown key\(s\) \['dim'\] beside `from`"),
    ],
)
def test_bad_checkpoint_sources_fail_before_training(tmp_path, capsys, model, message):
    recipe = _wine(tmp_path, model)
    assert main(["train", recipe, "--out", str(tmp_path / "run"), "--no-progress"]) == 1
    assert pytest.importorskip("re").search(message, capsys.readouterr().err)
    assert not (tmp_path / "run").exists()
