"""to_transformers: folders that transformers loads with equal logits; no silent export."""

from __future__ import annotations

import pytest
import torch

import nnblocks
from nnblocks.errors import SpecError
from nnblocks.interop import from_transformers, to_transformers

transformers = pytest.importorskip("transformers")

TOL = 1e-4


@pytest.mark.parametrize("name", ["gpt2", "llama_variants", "llama_linear", "mistral", "qwen2"])
def test_causal_round_trip(ref, name, tmp_path):
    model_class, config_class, options = ref.CAUSAL[name]
    model = from_transformers(ref.reference(model_class, config_class, options))
    to_transformers(model, tmp_path)
    back = transformers.AutoModelForCausalLM.from_pretrained(tmp_path).eval()
    assert type(back).__name__ == model_class
    tokens = torch.randint(0, ref.V, (2, ref.T))
    with torch.no_grad():
        assert (back(tokens).logits - model(tokens)).abs().max().item() < TOL


@pytest.mark.parametrize(
    ("model_class", "auto"),
    [
        ("BertModel", "AutoModel"),
        ("BertForMaskedLM", "AutoModelForMaskedLM"),
        ("BertForSequenceClassification", "AutoModelForSequenceClassification"),
    ],
)
def test_bert_round_trip(ref, model_class, auto, tmp_path):
    model = from_transformers(ref.reference(model_class, "BertConfig", ref.BERT))
    to_transformers(model, tmp_path)
    back = getattr(transformers, auto).from_pretrained(tmp_path).eval()
    tokens = torch.randint(3, ref.V, (2, ref.T))
    with torch.no_grad():
        out = back(tokens)
        theirs = out.pooler_output if model_class == "BertModel" else out.logits
        assert (theirs - model(tokens)).abs().max().item() < TOL


def test_native_model_exports_as_gpt2(tmp_path):
    spec = {"name": "transformer_lm", "vocab_size": 50, "dim": 32, "heads": 2, "layers": 2,
            "max_len": 64, "pad_id": None}  # fmt: skip
    model = nnblocks.build(spec).eval()
    to_transformers(model, tmp_path)
    back = transformers.AutoModelForCausalLM.from_pretrained(tmp_path).eval()
    tokens = torch.randint(0, 50, (2, 9))
    with torch.no_grad():
        assert (back(tokens).logits - model(tokens)).abs().max().item() < TOL


def test_swapped_part_without_counterpart_names_slot_and_part(ref, tmp_path):
    model_class, config_class, options = ref.CAUSAL["llama"]
    model = from_transformers(ref.reference(model_class, config_class, options))
    nnblocks.surgery.swap(model, "decoder.layers.1.self_attention", "linear")
    with pytest.raises(SpecError, match=r"decoder\.layers\.1\.self_attention.*`linear`"):
        to_transformers(model, tmp_path)
    assert not (tmp_path / "config.json").exists()


def test_option_without_counterpart_is_refused(tmp_path):
    spec = {"name": "transformer_lm", "vocab_size": 50, "dim": 32, "heads": 2, "layers": 2,
            "norm_placement": "post", "pad_id": None}  # fmt: skip
    with pytest.raises(SpecError, match="no transformers counterpart"):
        to_transformers(nnblocks.build(spec), tmp_path)
