"""from_transformers refuses what it cannot map, naming it, before allocating the model."""

from __future__ import annotations

import json
import sys

import pytest
import torch
from safetensors.torch import load_file, save_file

from nnblocks.errors import CheckpointError, SpecError
from nnblocks.interop import from_transformers

pytest.importorskip("transformers")


@pytest.fixture
def llama_folder(ref, tmp_path):
    model_class, config_class, options = ref.CAUSAL["llama"]
    ref.reference(model_class, config_class, options).save_pretrained(tmp_path)
    return tmp_path


def _edit_config(folder, **changes):
    path = folder / "config.json"
    config = {**json.loads(path.read_text()), **changes}
    path.write_text(json.dumps(config))


def _edit_weights(folder, edit):
    path = folder / "model.safetensors"
    tensors = load_file(path)
    edit(tensors)
    save_file(tensors, path, metadata={"format": "pt"})


def test_folder_import_does_not_need_transformers(llama_folder, monkeypatch):
    monkeypatch.setitem(sys.modules, "transformers", None)  # `import transformers` fails
    model = from_transformers(llama_folder)
    assert model(torch.randint(0, 100, (1, 4))).shape == (1, 4, 100)


def test_unsupported_rope_type_names_itself(llama_folder):
    _edit_config(llama_folder, rope_parameters={"rope_type": "yarn", "factor": 4.0,
                                                "rope_theta": 10000.0})  # fmt: skip
    with pytest.raises(SpecError, match=r"LlamaConfig\.rope_parameters\.type 'yarn' is not "
                       r"supported; supported: linear, llama3"):  # fmt: skip
        from_transformers(llama_folder)


def test_old_style_rope_scaling_is_read(llama_folder):
    config = json.loads((llama_folder / "config.json").read_text())
    del config["rope_parameters"]
    config.update(rope_theta=10000.0, rope_scaling={"type": "dynamic", "factor": 2.0})
    (llama_folder / "config.json").write_text(json.dumps(config))
    with pytest.raises(SpecError, match=r"rope_scaling\.type 'dynamic' is not supported"):
        from_transformers(llama_folder)


def test_unsupported_architecture_lists_supported(llama_folder):
    _edit_config(llama_folder, model_type="t5", architectures=["T5ForConditionalGeneration"])
    with pytest.raises(SpecError, match="'t5'.*supported: GPT2LMHeadModel.*LlamaForCausalLM"):
        from_transformers(llama_folder)


def test_unsupported_option_value(llama_folder):
    _edit_config(llama_folder, hidden_act="relu6")
    with pytest.raises(SpecError, match=r"LlamaConfig\.hidden_act 'relu6' is not supported"):
        from_transformers(llama_folder)


def test_remote_code_is_refused(llama_folder):
    (llama_folder / "modeling_evil.py").write_text("raise SystemExit('executed')\n")
    _edit_config(llama_folder, auto_map={"AutoModelForCausalLM": "modeling_evil.Evil"})
    with pytest.raises(SpecError, match="never runs code from a model folder"):
        from_transformers(llama_folder)


def test_left_over_and_missing_weights_are_listed(llama_folder):
    _edit_weights(llama_folder, lambda t: t.update(extra_scale=torch.ones(3)))
    with pytest.raises(CheckpointError, match="does not use.*extra_scale"):
        from_transformers(llama_folder)
    _edit_weights(
        llama_folder, lambda t: (t.pop("extra_scale"), t.pop("model.layers.1.mlp.up_proj.weight"))
    )
    with pytest.raises(CheckpointError, match=r"lacks: model\.layers\.1\.mlp\.up_proj\.weight"):
        from_transformers(llama_folder)


def test_sizes_that_disagree_fail_before_allocating(llama_folder, monkeypatch):
    _edit_config(llama_folder, intermediate_size=4096)
    allocated = []
    import nnblocks.interop.importing as importing

    monkeypatch.setattr(importing, "materialise", lambda *a, **k: allocated.append(1))
    with pytest.raises(CheckpointError, match=r"gate_proj.*\[8192, 32\].*expect \[4096, 32\]|"
                       r"config and the weights disagree"):  # fmt: skip
        from_transformers(llama_folder)
    assert not allocated


def test_pickled_weights_only_are_refused(tmp_path):
    (tmp_path / "config.json").write_text(json.dumps({"model_type": "llama"}))
    (tmp_path / "pytorch_model.bin").write_bytes(b"not loaded")
    with pytest.raises(CheckpointError, match="pytorch_model.bin: pickled weights"):
        from_transformers(tmp_path)


def test_not_a_model(tmp_path):
    with pytest.raises(CheckpointError, match="config.json"):
        from_transformers(tmp_path)
    with pytest.raises(SpecError, match="expected a Hugging Face model folder"):
        from_transformers(42)
