"""The decoding benchmark explains a disagreement with transformers instead of only flagging it."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

import nnblocks

BENCH = Path(__file__).resolve().parents[1] / "benchmarks"


def test_differing_rows_are_named_with_both_log_probabilities(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.syspath_prepend(str(BENCH))
    import decode
    import run_all

    torch.manual_seed(0)
    spec = {"name": "transformer_lm", "vocab_size": 20, "dim": 16, "heads": 2, "layers": 1}
    model = nnblocks.build(spec).eval()
    ours = nnblocks.generate.greedy(model, batch_size=3, max_new_tokens=6)  # the likeliest path
    theirs = ours.clone()
    theirs[1, 4] = (theirs[1, 4] + 1) % 20  # another token in row 1 only
    d = decode.disagreement(model, ours, theirs, prompt_len=1)
    assert d["rows"] == [1]
    expected = decode.sequence_logprob(model, theirs[1:2], 1).item()
    assert d["transformers_logprob"][0] == pytest.approx(expected)
    # Greedy is not always the likeliest sequence, so compare with what was computed.
    assert d["nnblocks_at_least_as_likely"] == (
        d["nnblocks_logprob"][0] >= d["transformers_logprob"][0] - 1e-4
    )
    row = {"decode": "beam 4", "batch": 3, "tokens": 6, "cache_speedup": 1.0,
           "tokens_per_s": {"nnblocks": 1.0, "nnblocks_uncached": 1.0, "transformers": 1.0},
           "same_tokens_uncached": True, "same_tokens_as_transformers": False,
           "differences": d}  # fmt: skip
    doc = {"config": decode.CONFIG, "parameters": 1, "transformers_skipped": None,
           "results": [row], "cache_at_length": row}  # fmt: skip
    text = "\n".join(run_all._md_decode(doc))
    assert "rows [1] differ" in text and f"{d['nnblocks_logprob'][0]:.2f}" in text


def test_the_plain_loop_decodes_the_same_tokens_as_nnblocks(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # The decoding table's floor is only a floor if it computes the same model.
    monkeypatch.syspath_prepend(str(BENCH))
    import decode
    import plain_llama_decode

    config = {**decode.CONFIG, "vocab_size": 50, "hidden_size": 32, "intermediate_size": 88,
              "num_hidden_layers": 2, "max_position_embeddings": 64}  # fmt: skip
    torch.manual_seed(0)
    model = decode.nnblocks_llama(config).eval()
    model.eos_id = -1
    prompt = torch.randint(3, 50, (3, 5))
    state = {name: t.detach() for name, t in model.state_dict().items()}
    plain = plain_llama_decode.greedy(state, config, prompt, 12)
    ours = nnblocks.generate.greedy(model, prefix=prompt, max_new_tokens=12)
    assert torch.equal(plain, ours)
    state["decoder.layers.1.feedforward.down.weight"] = torch.randn_like(
        state["decoder.layers.1.feedforward.down.weight"]
    )  # another model: other tokens, so the comparison can fail
    assert not torch.equal(plain_llama_decode.greedy(state, config, prompt, 12), ours)
