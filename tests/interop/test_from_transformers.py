"""from_transformers: equal logits and greedy tokens against small random transformers models."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest
import torch

import nnblocks
from nnblocks.interop import from_transformers

pytest.importorskip("transformers")

CAUSAL_NAMES = [
    "gpt2",
    "gpt2_untied",
    "llama",
    "llama_variants",
    "llama_linear",
    "mistral",
    "qwen2",
]
TOL = 1e-4


def _causal(ref, name: str, **extra):
    model_class, config_class, options = ref.CAUSAL[name]
    return ref.reference(model_class, config_class, options, **extra)


@pytest.mark.parametrize("name", CAUSAL_NAMES)
def test_causal_logits_match_unpadded(ref, name):
    hf = _causal(ref, name)
    model = from_transformers(hf)
    tokens = torch.randint(0, ref.V, (3, ref.T))
    with torch.no_grad():
        diff = (model(tokens) - hf(tokens).logits).abs().max().item()
    assert diff < TOL, f"{name}: max logit difference {diff}"


@pytest.mark.parametrize("name", CAUSAL_NAMES)
def test_causal_logits_match_left_padded(ref, name):
    hf = _causal(ref, name)
    model = from_transformers(hf)
    tokens = torch.randint(0, ref.V, (3, ref.T))
    mask = ref.left_padding()
    with torch.no_grad():
        ours = model(tokens, attention_mask=mask)
        theirs = hf(tokens, attention_mask=mask, position_ids=ref.positions_of(mask)).logits
        real = mask.bool()
        assert (ours - theirs)[real].abs().max().item() < TOL
        for row in range(1, 3):  # each left-padded row as if it were alone
            start = int((~real[row]).sum())
            alone = model(tokens[row : row + 1, start:])
            assert (ours[row, start:] - alone[0]).abs().max().item() < TOL


def _until_eos(ids: torch.Tensor, eos: int, start: int = 0, pad: int | None = None) -> list:
    """Each row up to its first generated EOS (kept), or up to a generated pad token.

    nnblocks' decoding protocol masks tokens equal to ``pad_id`` (the prompt's padding) at
    every step, so a pad id the model itself generates is masked from then on, while
    transformers keeps attending it; the tokens after one are not comparable.
    """
    rows = []
    for row in ids.tolist():
        new = row[start:]
        cut = [new.index(t) + (t == eos) for t in (eos, pad) if t is not None and t in new]
        rows.append(row[: start + min(cut)] if cut else row)
    return rows


@pytest.mark.parametrize("name", CAUSAL_NAMES)
def test_greedy_tokens_match_generate(ref, name):
    hf = _causal(ref, name, pad_token_id=0)
    model = from_transformers(hf)
    prompt = torch.randint(3, ref.V, (3, 5))
    prompt[1, :2] = 0  # left padding
    prompt[2, :3] = 0
    mask = (prompt != 0).long()
    ours = nnblocks.generate.greedy(model, prefix=prompt, max_new_tokens=8)
    theirs = hf.generate(
        prompt, attention_mask=mask, do_sample=False, max_new_tokens=8, pad_token_id=0
    )
    assert _until_eos(ours, 2, 5, pad=0) == _until_eos(theirs, 2, 5, pad=0)
    assert len(_until_eos(ours, 2, 5, pad=0)[1]) > 5  # something was compared
    # the unpadded row alone continues the same way
    alone = nnblocks.generate.greedy(model, prefix=prompt[:1], max_new_tokens=8)
    assert _until_eos(alone, 2, 5, pad=0)[0] == _until_eos(ours, 2, 5, pad=0)[0]


def test_every_listed_eos_id_ends_a_sequence_as_in_generate(ref):
    # Llama 3 configs list several end ids; transformers stops at any of them.
    ends = [5, 7, 9]
    hf = _causal(ref, "llama", eos_token_id=ends, pad_token_id=0)
    model = from_transformers(hf)
    assert model.eos_id == ends and nnblocks.spec_of(model)["eos_id"] == ends

    def cut(ids):  # each row up to the first generated end id
        rows = []
        for row in ids.tolist():
            hit = [i for i in range(5, len(row)) if row[i] in ends]
            rows.append(row[: hit[0] + 1] if hit else row)
        return rows

    stopped = 0
    for seed in range(8):
        prompt = torch.randint(3, ref.V, (4, 5), generator=torch.Generator().manual_seed(seed))
        ours = nnblocks.generate.greedy(model, prefix=prompt, max_new_tokens=10)
        theirs = hf.generate(prompt, attention_mask=torch.ones_like(prompt), do_sample=False,
                             max_new_tokens=10, pad_token_id=0)  # fmt: skip
        assert cut(ours) == cut(theirs) and ours.shape == theirs.shape
        stopped += sum(len(row) < 15 and row[-1] != ends[0] for row in cut(ours))
    assert stopped > 0  # some row ended on an id after the first, so the list mattered


def test_rope_scaling_is_applied(ref):
    """The llama3 frequencies change the logits, so the agreement above is not vacuous."""
    hf = _causal(ref, "llama_variants")
    model = from_transformers(hf)
    spec = nnblocks.spec_of(model)
    del spec["position"]["scaling"]
    plain = nnblocks.build(spec)
    plain.load_state_dict(model.state_dict())
    tokens = torch.randint(0, ref.V, (2, ref.T))
    with torch.no_grad():
        assert (plain.eval()(tokens) - hf(tokens).logits).abs().max().item() > 10 * TOL


def test_folder_single_and_sharded(ref, tmp_path):
    hf = _causal(ref, "llama")
    tokens = torch.randint(0, ref.V, (2, ref.T))
    with torch.no_grad():
        expected = hf(tokens).logits
    for folder, shard in ((tmp_path / "one", "10GB"), (tmp_path / "shards", "20KB")):
        hf.save_pretrained(folder, max_shard_size=shard)
        model = from_transformers(folder)
        with torch.no_grad():
            assert (model(tokens) - expected).abs().max().item() < TOL
    assert (tmp_path / "shards" / "model.safetensors.index.json").is_file()


@pytest.mark.slow
def test_fresh_interpreter_reads_folder_without_transformers(ref, tmp_path):
    _causal(ref, "llama").save_pretrained(tmp_path / "shards", max_shard_size="20KB")
    code = (
        "import sys, nnblocks.interop as i; i.from_transformers(sys.argv[1]); "
        "assert 'transformers' not in sys.modules, 'transformers was imported'"
    )
    done = subprocess.run(
        [sys.executable, "-c", code, str(tmp_path / "shards")], capture_output=True, text=True
    )
    assert done.returncode == 0, done.stderr


def test_imported_model_is_plain_nnblocks(ref):
    model = from_transformers(_causal(ref, "llama"))
    spec = nnblocks.spec_of(model)
    assert json.loads(json.dumps(spec)) == spec
    rebuilt = nnblocks.build(spec)
    rebuilt.load_state_dict(model.state_dict())
    tokens = torch.randint(0, ref.V, (2, 6))
    with torch.no_grad():
        assert torch.allclose(rebuilt.eval()(tokens), model(tokens))
    nnblocks.surgery.swap(model, "decoder.layers.1.self_attention", {"name": "local", "window": 2})
    assert nnblocks.spec_of(model.decoder.layers[1].self_attention)["name"] == "local"
    assert model(tokens).shape == (2, 6, ref.V)


def test_gpt2_base_model_hidden_states(ref):
    model_class, config_class, options = ref.CAUSAL["gpt2"]
    hf = ref.reference("GPT2Model", config_class, options)
    model = from_transformers(hf)
    tokens = torch.randint(0, ref.V, (2, ref.T))
    mask = ref.left_padding(2)
    with torch.no_grad():
        theirs = hf(tokens, attention_mask=mask, position_ids=ref.positions_of(mask))
        ours = model.hidden_states(tokens, attention_mask=mask)
    real = mask.bool()
    assert (ours - theirs.last_hidden_state)[real].abs().max().item() < TOL


@pytest.mark.parametrize(
    "model_class", ["BertModel", "BertForMaskedLM", "BertForSequenceClassification"]
)
def test_bert_matches_with_padding_and_token_types(ref, model_class):
    hf = ref.reference(model_class, "BertConfig", ref.BERT)
    model = from_transformers(hf)
    tokens = torch.randint(3, ref.V, (3, ref.T))
    mask = torch.ones_like(tokens)
    mask[1, 8:] = 0  # right padding, as BERT's tokenizers pad
    mask[2, 5:] = 0
    types = torch.randint(0, 2, tokens.shape)
    with torch.no_grad():
        theirs = hf(tokens, attention_mask=mask, token_type_ids=types)
        ours = model(tokens, attention_mask=mask, token_type_ids=types)
        if model_class == "BertModel":
            hidden = model.hidden_states(tokens, attention_mask=mask, token_type_ids=types)
            real = mask.bool()
            assert (hidden - theirs.last_hidden_state)[real].abs().max().item() < TOL
            assert (ours - theirs.pooler_output).abs().max().item() < TOL
        elif model_class == "BertForMaskedLM":
            assert (ours - theirs.logits)[mask.bool()].abs().max().item() < TOL
            assert model.head.weight is model.embedding.weight  # the tied masked-LM head
        else:
            assert (ours - theirs.logits).abs().max().item() < TOL
