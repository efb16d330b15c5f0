"""Optional model inputs: attention_mask, position_ids, token_type_ids (docs/interfaces.md)."""

from __future__ import annotations

import pytest
import torch

import nnblocks
from nnblocks.errors import ShapeError, SpecError

LM = {"name": "transformer_lm", "vocab_size": 50, "dim": 32, "heads": 2, "layers": 2,
      "dropout": 0.0}  # fmt: skip


@pytest.mark.parametrize("position", ["learned", "sinusoidal", "rotary", "alibi"])
def test_left_padded_rows_equal_rows_alone(position):
    lm = nnblocks.build({**LM, "position": position}).eval()
    tokens = torch.randint(3, 50, (2, 8))
    mask = torch.ones_like(tokens, dtype=torch.bool)
    mask[1, :3] = False
    with torch.no_grad():
        out = lm(tokens, attention_mask=mask)
        alone = lm(tokens[1:, 3:])
    assert torch.allclose(out[1, 3:], alone[0], atol=1e-5)
    assert torch.allclose(out[0], lm(tokens[:1])[0], atol=1e-5)


def test_without_inputs_the_mask_still_comes_from_pad_id():
    lm = nnblocks.build(LM).eval()
    tokens = torch.randint(3, 50, (2, 6))
    tokens[1, 4:] = 0  # right padding with pad_id 0
    real = tokens != 0
    with torch.no_grad():  # real positions agree (padded ones attend nothing that matters)
        assert torch.allclose(lm(tokens)[real], lm(tokens, attention_mask=real)[real], atol=1e-6)


def test_position_ids_are_used_by_absolute_positions():
    lm = nnblocks.build(LM).eval()
    tokens = torch.randint(3, 50, (1, 5))
    shifted = torch.arange(5)[None] + 3
    with torch.no_grad():
        assert not torch.allclose(lm(tokens), lm(tokens, position_ids=shifted))


def test_relative_positions_refuse_position_ids_they_cannot_follow():
    lm = nnblocks.build({**LM, "position": "rotary"}).eval()
    tokens = torch.randint(3, 50, (1, 5))
    with torch.no_grad():
        shifted = lm(tokens, position_ids=torch.arange(5)[None] + 7)
        assert torch.allclose(shifted, lm(tokens), atol=1e-5)  # a shift changes nothing
        with pytest.raises(SpecError, match="relative position part"):
            lm(tokens, position_ids=torch.tensor([[0, 2, 4, 6, 8]]))


def test_bad_optional_inputs_name_themselves():
    lm = nnblocks.build(LM)
    tokens = torch.randint(3, 50, (2, 6))
    with pytest.raises(ShapeError, match="attention_mask"):
        lm(tokens, attention_mask=torch.ones(2, 5))
    with pytest.raises(ShapeError, match="position_ids"):
        lm(tokens, position_ids=torch.zeros(2, 6))


def test_greedy_on_left_padded_prompt_continues_as_alone():
    lm = nnblocks.build({**LM, "eos_id": 49}).eval()  # learned positions
    prompt = torch.randint(3, 49, (2, 5))
    prompt[1, :2] = 0
    out = nnblocks.generate.greedy(lm, prefix=prompt, max_new_tokens=6)
    alone = nnblocks.generate.greedy(lm, prefix=prompt[1:, 2:], max_new_tokens=6)
    assert torch.equal(out[1, 2:], alone[0])
    uncached = nnblocks.generate.greedy(lm, prefix=prompt, max_new_tokens=6, use_cache=False)
    assert torch.equal(out, uncached)


def test_classifier_token_types_embedding_norm_and_tied_head():
    spec = {"name": "transformer_classifier", "vocab_size": 40, "num_classes": 40, "dim": 16,
            "heads": 2, "layers": 1, "embedding": {"name": "token", "type_vocab_size": 2},
            "embedding_norm": "layer", "pool": "none", "tie_embeddings": True,
            "head": {"name": "mlp", "activation": "gelu", "norm": "layer"}}  # fmt: skip
    model = nnblocks.build(spec).eval()
    assert model.head.weight is model.embedding.weight
    assert model.tied_parameters == [("embedding.weight", "head.proj.weight")]
    tokens = torch.randint(1, 40, (2, 7))
    types = torch.zeros_like(tokens)
    types[:, 4:] = 1
    with torch.no_grad():
        out = model(tokens, token_type_ids=types)
        assert out.shape == (2, 7, 40)
        assert not torch.allclose(out, model(tokens))
        hidden = model.hidden_states(tokens, token_type_ids=types)
    assert hidden.shape == (2, 7, 16)
    assert nnblocks.check.audit_reuse(model, tokens).ok


def test_seq2seq_masks_replace_pad_id_masks():
    spec = {"name": "transformer_seq2seq", "vocab_size": 30, "dim": 16, "heads": 2,
            "encoder_layers": 1, "decoder_layers": 1, "dropout": 0.0}  # fmt: skip
    model = nnblocks.build(spec).eval()
    src = torch.randint(3, 30, (2, 6))
    tgt = torch.randint(3, 30, (2, 5))
    src_mask = torch.ones_like(src)
    src_mask[1, 4:] = 0
    padded = src.clone()
    padded[1, 4:] = 0  # pad_id
    with torch.no_grad():
        assert torch.allclose(model(src, tgt, attention_mask=src_mask), model(padded, tgt),
                              atol=1e-6)  # fmt: skip
        tgt_mask = torch.ones_like(tgt, dtype=torch.bool)
        tgt_mask[0, 3:] = False
        out = model(src, tgt, decoder_attention_mask=tgt_mask)
        assert torch.allclose(out[0, :3], model(src, tgt)[0, :3], atol=1e-6)  # causal anyway
    with pytest.raises(ShapeError, match="decoder_attention_mask"):
        model(src, tgt, decoder_attention_mask=torch.ones(2, 4))


def test_imported_style_model_saves_and_loads(tmp_path):
    spec = {**LM, "position": {"name": "rotary", "scaling": {"type": "linear", "factor": 2.0}},
            "self_attention": {"name": "gqa", "kv_heads": 1, "head_dim": 8, "out_bias": False},
            "pad_id": None}  # fmt: skip
    model = nnblocks.build(spec).eval()
    nnblocks.save(model, tmp_path)
    back = nnblocks.load(tmp_path).eval()
    tokens = torch.randint(0, 50, (2, 6))
    with torch.no_grad():
        assert torch.equal(back(tokens), model(tokens))
