"""Known sizes: the Transformer recipes build the published architectures.

Built on the meta device: shapes only, no memory, no initialisation work. (The first meta
``normal_`` of a process imports ``torch._dynamo``, a one-time cost of a few seconds.)
"""

from pathlib import Path

import torch
import yaml

import nnblocks

RECIPES = Path(__file__).resolve().parents[2] / "recipes"


def model_spec(recipe):
    return yaml.safe_load((RECIPES / recipe).read_text())["model"]


def build_on_meta(spec, **defaults):
    with torch.device("meta"):
        return nnblocks.build(spec, **defaults)


def unique_parameters(model):
    return sum(p.numel() for p in model.parameters())  # a tied Parameter counts once


def test_gpt2_small_has_the_published_parameter_count():
    model = build_on_meta(model_spec("gpt2_small.yaml"))
    assert unique_parameters(model) == 124_439_808
    assert model.tied_parameters == [("embedding.weight", "head.weight")]
    # The published layout: 12 blocks of 4 * 768^2 + 4 * 768 (attention) +
    # 2 * 768 * 3072 + 3072 + 768 (MLP) + 4 * 768 (two LayerNorms), plus wte, wpe, ln_f.
    per_layer = 4 * 768 * 768 + 4 * 768 + 2 * 768 * 3072 + 3072 + 768 + 4 * 768
    assert unique_parameters(model.decoder.layers[0]) == per_layer
    assert unique_parameters(model.position) == 1024 * 768


def test_transformer_base_is_within_three_percent_of_65m():
    model = build_on_meta(model_spec("transformer_base.yaml"))
    count = unique_parameters(model)
    attention = 4 * (512 * 512 + 512)
    ffn = 512 * 2048 + 2048 + 2048 * 512 + 512
    encoder_layer = attention + ffn + 2 * 2 * 512
    decoder_layer = 2 * attention + ffn + 3 * 2 * 512
    embedding = 37000 * 512  # shared by source, target and the output projection
    assert count == embedding + 6 * encoder_layer + 6 * decoder_layer == 63_082_496
    assert abs(count - 65e6) / 65e6 < 0.03
    assert model.tied_parameters == [
        ("src_embedding.weight", "tgt_embedding.weight", "head.weight")
    ]
    assert model.encoder.final_norm is None and model.decoder.final_norm is None  # post-norm


def test_lm_tiny_builds_with_the_datasets_vocabulary():
    spec = model_spec("lm_tiny.yaml")
    assert "vocab_size" not in spec  # offered by the dataset's task
    model = build_on_meta(spec, vocab_size=1000)
    assert len(model.decoder.layers) == 4 and model.dim == 256
    assert model.head.weight.shape == (1000, 256)
